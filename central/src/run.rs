//! `central run --roles ...`: starts the chosen roles in one process, with
//! one metrics registry, one `/metrics` + `/healthz` + `/readyz` endpoint,
//! and one shutdown signal (SIGTERM or SIGINT: every role stops accepting,
//! finishes what it holds, and returns).
//!
//! Each Kubernetes Deployment runs one role; a laptop or the demo runs all
//! of them in one process (the bridge then talks to the embedded broker on
//! its internal loopback port).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::bridge::{Bridge, BridgeMetrics};
use crate::broker::{BrokerMetrics, BrokerServer};
use crate::config::Config;
use crate::detect::DetectMetrics;
use crate::inference::{InferenceMetrics, InferenceServer};
use crate::ops::{self, Readiness};
use crate::privacy::Verdict;
use crate::store::open_store;
use crate::upload::{UploadMetrics, UploadServer};
use crate::worker::{Components, Worker, WorkerMetrics};

/// How often the fleet gauges are recomputed.
const FLEET_INTERVAL: Duration = Duration::from_secs(15);

/// An online device with no telemetry for this long counts as silent: five
/// of the edge's default 60 s telemetry intervals.
const FLEET_SILENCE: Duration = Duration::from_secs(300);

/// What a process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Broker,
    Bridge,
    Upload,
    Worker,
    Inference,
    Api,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Broker,
        Role::Bridge,
        Role::Upload,
        Role::Worker,
        Role::Inference,
        Role::Api,
    ];

    /// The roles this build can run.
    pub const BUILT: [Role; 6] = [
        Role::Broker,
        Role::Bridge,
        Role::Upload,
        Role::Worker,
        Role::Inference,
        Role::Api,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Broker => "broker",
            Role::Bridge => "bridge",
            Role::Upload => "upload",
            Role::Worker => "worker",
            Role::Inference => "inference",
            Role::Api => "api",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown role {s:?}; roles: {}",
                    Role::ALL.map(Role::name).join(", ")
                )
            })
    }
}

/// Why the process could not start or a role failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("role {0} is not built yet")]
    NotBuilt(Role),
    #[error("no role chosen")]
    NoRole,
    #[error("ops endpoint on {addr}: {reason}")]
    Ops { addr: String, reason: String },
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("broker: {0}")]
    Broker(#[from] crate::broker::BrokerError),
    #[error("bridge: {0}")]
    Bridge(#[from] crate::bridge::BridgeError),
    #[error("upload: {0}")]
    Upload(#[from] crate::upload::UploadError),
    #[error("inference: {0}")]
    Inference(#[from] crate::inference::InferenceError),
    #[error("{0}")]
    Api(#[from] crate::api::ApiError),
    #[error("role task: {0}")]
    Task(String),
    #[error("residency: {}", .0.join("; "))]
    Residency(Vec<String>),
}

/// The metrics of every role a process may run, registered once.
#[derive(Clone, Default)]
pub struct RoleMetrics {
    pub broker: BrokerMetrics,
    pub bridge: BridgeMetrics,
    pub upload: UploadMetrics,
    /// Model metrics, shared by the inference role and a local worker's
    /// detectors: register once.
    pub detect: DetectMetrics,
    pub inference: InferenceMetrics,
    pub worker: WorkerMetrics,
    pub fleet: crate::fleet::FleetMetrics,
    pub report: crate::report::ReportMetrics,
    pub api: crate::api::ApiMetrics,
    pub retention: crate::retention::RetentionMetrics,
}

/// Starts `roles` from `config` and runs until `shutdown` becomes true or a
/// role fails (then the others are stopped too and the first error is
/// returned).
pub async fn run(
    config: Config,
    roles: &[Role],
    metrics: RoleMetrics,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), RunError> {
    if roles.is_empty() {
        return Err(RunError::NoRole);
    }
    if let Some(role) = roles.iter().find(|r| !Role::BUILT.contains(r)) {
        return Err(RunError::NotBuilt(*role));
    }
    // Checked here as well as in validation: a configuration built in code
    // (the demo, tests) goes through the same guard.
    match config.residency.check(&config) {
        Verdict::Resident => {}
        Verdict::Refused(refused) => return Err(RunError::Residency(refused)),
        Verdict::Overridden { reason, refused } => {
            for endpoint in &refused {
                tracing::warn!(override_reason = %reason, refused = %endpoint, "residency override: personal data may leave the EU");
            }
        }
        Verdict::Off => tracing::warn!(
            "residency guard off ([residency] region = \"any\"): endpoints are not checked for EU residency"
        ),
    }
    if roles.contains(&Role::Api) {
        let problems = config.api.serving_problems("api");
        if !problems.is_empty() {
            return Err(RunError::Api(crate::api::ApiError::Config(problems)));
        }
    }
    let prefix = config
        .mqtt
        .prefix()
        .map_err(|e| RunError::Task(format!("mqtt.topic_prefix: {e}")))?;

    // Each role names its metrics in full (`central_upload_*`,
    // `central_worker_*`, and `inference_duration_seconds` as the design's
    // alert names it), so the registry adds no prefix of its own.
    let mut registry = Registry::default();
    let readiness = Readiness::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks: JoinSet<Result<&'static str, RunError>> = JoinSet::new();

    // The broker first: an in-process bridge connects to it.
    if roles.contains(&Role::Broker) {
        metrics.broker.register(&mut registry);
        let credentials = config.broker.load_credentials()?;
        let server = BrokerServer::bind(
            &config.broker,
            prefix.clone(),
            credentials,
            metrics.broker.clone(),
        )
        .await?;
        let addrs = server.local_addr();
        tracing::info!(?addrs, "broker listening");
        readiness.set("broker", true, "listening");
        let stop = stop_rx.clone();
        tasks.spawn(async move {
            server.run(stop).await?;
            Ok("broker")
        });
    }
    if roles.contains(&Role::Upload) {
        let problems = config.upload.serving_problems("upload");
        if !problems.is_empty() {
            return Err(RunError::Upload(crate::upload::UploadError::Config(
                problems,
            )));
        }
        metrics.upload.register(&mut registry);
        let credentials = match &config.upload.credentials {
            Some(path) => Some(
                crate::auth::Credentials::load(path)
                    .map_err(|e| RunError::Task(format!("upload.credentials: {e}")))?,
            ),
            None => None,
        };
        let server =
            UploadServer::bind(&config.upload, credentials, metrics.upload.clone()).await?;
        tracing::info!(addrs = ?server.local_addrs(), "upload listening");
        readiness.set("upload", true, "listening");
        let stop = stop_rx.clone();
        tasks.spawn(async move {
            server.run(stop).await?;
            Ok("upload")
        });
    }
    // One store per process, shared by the bridge and the worker (one pool;
    // with SQLite, one writer at a time anyway).
    let store = if roles.contains(&Role::Bridge)
        || roles.contains(&Role::Worker)
        || roles.contains(&Role::Api)
    {
        let store = open_store(&config.store).await?;
        tracing::info!(backend = store.backend(), "store open");
        Some(store)
    } else {
        None
    };

    // Model metrics are shared by the inference role and a worker's local
    // detectors: registered once.
    if roles.contains(&Role::Inference) || roles.contains(&Role::Worker) {
        metrics.detect.register(&mut registry);
    }
    if roles.contains(&Role::Inference) {
        let problems = config.inference.serving_problems("inference");
        if !problems.is_empty() {
            return Err(RunError::Inference(
                crate::inference::InferenceError::Config(problems),
            ));
        }
        metrics.inference.register(&mut registry);
        let server = InferenceServer::bind(
            &config.inference,
            &config.onnxruntime,
            metrics.detect.clone(),
            metrics.inference.clone(),
            readiness.clone(),
        )
        .await?;
        tracing::info!(addr = ?server.local_addr(), "inference listening; models loading");
        let stop = stop_rx.clone();
        tasks.spawn(async move {
            server.run(stop).await?;
            Ok("inference")
        });
    }
    if roles.contains(&Role::Bridge) {
        metrics.bridge.register(&mut registry);
        let store = store.clone().expect("opened for the bridge");
        let bridge = Bridge::new(
            &config.bridge,
            prefix.clone(),
            store.clone(),
            metrics.bridge.clone(),
        )?;
        let health = bridge.health();
        let ready = readiness.clone();
        let mut stop = stop_rx.clone();
        // Readiness follows the bridge's own view (connected, store writable).
        tokio::spawn(async move {
            loop {
                let ok = health.is_ready();
                let detail = if ok {
                    "connected, store writable"
                } else if !health.is_connected() {
                    "not connected to the broker"
                } else {
                    "store failing"
                };
                ready.set("bridge", ok, detail);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        });
        let stop = stop_rx.clone();
        tasks.spawn(async move {
            bridge.run(stop).await?;
            Ok("bridge")
        });
        // The fleet gauges come from what the bridge stores; every bridge
        // replica exports the same figures (dashboards take the max).
        metrics.fleet.register(&mut registry);
        tokio::spawn(crate::fleet::run(
            store.clone(),
            metrics.fleet.clone(),
            FLEET_INTERVAL,
            FLEET_SILENCE,
            stop_rx.clone(),
        ));
    }

    if roles.contains(&Role::Worker) {
        metrics.worker.register(&mut registry);
        metrics.report.register(&mut registry);
        let store = store.clone().expect("opened for the worker");
        let images = crate::upload::open_object_store(&config.upload.object_store)?;
        readiness.set("worker", false, "loading models");
        let config = config.clone();
        let ready = readiness.clone();
        let detect_metrics = metrics.detect.clone();
        let worker_metrics = metrics.worker.clone();
        let report_metrics = metrics.report.clone();
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            // A model that fails to load (a wrong path, CUDA missing, the
            // inference role not up yet) leaves the worker not ready and is
            // tried again; it never ends the process.
            let mut delay = Duration::from_secs(5);
            let components = loop {
                match worker_components(&config, &detect_metrics, &report_metrics).await {
                    Ok(c) => break c,
                    Err(e) => {
                        tracing::error!(error = %e, retry_in_s = delay.as_secs(), "worker cannot load its models");
                        ready.set("worker", false, format!("{e} (retrying in {} s)", delay.as_secs()));
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = stop.wait_for(|s| *s) => return Ok("worker"),
                        }
                        delay = (delay * 2).min(Duration::from_secs(300));
                    }
                }
            };
            ready.set("worker", true, "models loaded");
            let worker = Worker::new(
                config.worker.clone(),
                store,
                images,
                components,
                worker_metrics,
            );
            worker.run(stop).await;
            Ok("worker")
        });
    }

    if roles.contains(&Role::Api) {
        metrics.api.register(&mut registry);
        let store = store.clone().expect("opened for the api");
        let images = crate::upload::open_object_store(&config.upload.object_store)?;
        let (store_for_retention, images_for_retention) = (store.clone(), images.clone());
        let server = crate::api::ApiServer::bind(
            &config.api,
            &config.report.export,
            prefix.clone(),
            store,
            images,
            metrics.api.clone(),
        )
        .await?;
        tracing::info!(addr = ?server.local_addr(), "api listening");
        if config.retention.is_active() {
            metrics.retention.register(&mut registry);
            tokio::spawn(crate::retention::run(
                store_for_retention,
                images_for_retention,
                config.retention.clone(),
                metrics.retention.clone(),
                stop_rx.clone(),
            ));
        }
        readiness.set("api", true, "listening");
        let stop = stop_rx.clone();
        tasks.spawn(async move {
            server.run(stop).await?;
            Ok("api")
        });
    }

    let listener = tokio::net::TcpListener::bind(config.ops.listen)
        .await
        .map_err(|e| RunError::Ops {
            addr: config.ops.listen.to_string(),
            reason: e.to_string(),
        })?;
    tracing::info!(addr = %config.ops.listen, "ops endpoint listening");
    let ops_task = tokio::spawn(ops::serve(
        listener,
        Arc::new(registry),
        readiness,
        stop_rx.clone(),
    ));

    let roles_text = roles.iter().map(|r| r.name()).collect::<Vec<_>>().join(",");
    tracing::info!(roles = %roles_text, "central running");

    let mut failure = None;
    tokio::select! {
        _ = shutdown.wait_for(|s| *s) => {
            tracing::info!("shutting down");
        }
        Some(done) = tasks.join_next() => {
            failure = Some(match done {
                Ok(Ok(role)) => RunError::Task(format!("role {role} stopped on its own")),
                Ok(Err(e)) => e,
                Err(e) => RunError::Task(e.to_string()),
            });
        }
    }
    let _ = stop_tx.send(true);
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(role)) => tracing::info!(role, "stopped"),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "role failed while stopping");
                failure.get_or_insert(e);
            }
            Err(e) => {
                failure.get_or_insert(RunError::Task(e.to_string()));
            }
        }
    }
    let _ = ops_task.await;
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A watch that turns true on SIGTERM or SIGINT.
pub fn shutdown_on_signals() -> std::io::Result<watch::Receiver<bool>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM"),
            _ = int.recv() => tracing::info!("SIGINT"),
        }
        let _ = tx.send(true);
    });
    Ok(rx)
}

/// Loads what the worker runs: the damage and plate detectors (local or
/// remote), the plate reader and the report writers.
pub async fn worker_components(
    config: &Config,
    metrics: &crate::detect::DetectMetrics,
    report_metrics: &crate::report::ReportMetrics,
) -> Result<Components, String> {
    let has_local = |name: &str| config.local_detector(name).is_some();
    let open = |source: crate::detect::DetectionSource, what: &'static str| async move {
        crate::detect::open_detector(
            &source,
            config.local_detector(source.model()),
            &config.onnxruntime,
            metrics,
        )
        .await
        .map_err(|e| format!("{what} detector: {e}"))
    };
    let damage = match config.worker.damage_source(has_local) {
        Some(source) => Some(open(source, "damage").await?),
        None => None,
    };
    let plate_detector = match config.worker.plate_source(has_local) {
        Some(source) => Some(open(source, "plate").await?),
        None => None,
    };
    let library = config
        .onnxruntime_library()
        .ok_or_else(|| "onnxruntime.library: not set and no cache directory".to_owned())?;
    let plates = config.plates.clone();
    let plate_reader = tokio::task::spawn_blocking(move || {
        let env = crate::detect::init_runtime(&library).map_err(|e| e.to_string())?;
        crate::plates::PlateReader::load(env, &plates).map_err(|e| format!("plate reader: {e}"))
    })
    .await
    .map_err(|e| format!("plate reader task: {e}"))??;
    Ok(Components {
        damage,
        plate_detector,
        plate_reader: Some(Arc::new(plate_reader)),
        change: config.worker.change.clone(),
        reports: Arc::new(
            crate::report::chain::build(&config.report, report_metrics.clone()).await,
        ),
        language: config.report.language(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_by_name_and_unknown_ones_are_listed() {
        assert_eq!("bridge".parse::<Role>(), Ok(Role::Bridge));
        let err = "brdge".parse::<Role>().expect_err("unknown");
        assert!(
            err.contains("broker, bridge, upload, worker, inference, api"),
            "{err}"
        );
    }
}
