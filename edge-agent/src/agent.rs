//! Wiring: builds every part from a validated configuration and runs the
//! pipeline until its sources end or a shutdown is requested.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use inspection_core::config::FileChecks;
use inspection_core::quality::QualityThresholds;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::anonymise::{AnonymiseMetrics, Anonymiser};
use crate::capture::{self, CaptureMetrics, SourceConfig, SourceContext};
use crate::config::{Config, Identity};
use crate::ops::{self, Health, Heartbeat, OpsState, ReloadMetrics, ReloadOutcome, Reloader};
use crate::outbox::{Outbox, OutboxMetrics};
use crate::pipeline::{Camera, DeviceCommand, Pipeline, PipelineMetrics, RunReport, WhenFull};
use crate::prescreen::{PrescreenMetrics, PrescreenPool, Prescreener};
use crate::session::{SessionMetrics, SessionTracker};
use crate::uplink::{ReloadFn, TelemetrySource, Uplink, UplinkMetrics};

/// The agent's version, as events and telemetry report it.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why the agent could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("outbox: {0}")]
    Outbox(#[from] crate::outbox::OutboxError),
    #[error("pre-screen: {0}")]
    Prescreen(#[from] crate::prescreen::PrescreenError),
    #[error("anonymise: {0}")]
    Anonymise(#[from] crate::anonymise::FaceError),
    #[error("camera: {0}")]
    Capture(#[from] crate::capture::CaptureError),
    #[error("session: {0}")]
    Session(#[from] crate::session::SessionError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::PipelineError),
    #[error(transparent)]
    Uplink(#[from] crate::uplink::UplinkError),
}

/// Runs the agent. `config_path` is re-read on SIGHUP. Returns when the
/// pipeline has finished: every source ended and the last inspection is in
/// the outbox, or `shutdown` became true and the running inspection was
/// completed and persisted.
pub async fn run(
    config_path: PathBuf,
    config: Config,
    identity: Identity,
    shutdown: watch::Receiver<bool>,
) -> Result<RunReport, AgentError> {
    let mut registry = Registry::default();
    let capture_metrics = CaptureMetrics::default();
    let prescreen_metrics = PrescreenMetrics::default();
    let session_metrics = SessionMetrics::default();
    let outbox_metrics = OutboxMetrics::default();
    let pipeline_metrics = PipelineMetrics::default();
    let reload_metrics = ReloadMetrics::default();
    let uplink_metrics = UplinkMetrics::default();
    let anonymise_metrics = AnonymiseMetrics::default();
    capture_metrics.register(&mut registry);
    prescreen_metrics.register(&mut registry);
    session_metrics.register(&mut registry);
    outbox_metrics.register(&mut registry);
    pipeline_metrics.register(&mut registry);
    reload_metrics.register(&mut registry);
    uplink_metrics.register(&mut registry);
    anonymise_metrics.register(&mut registry);
    let health = Health::new();

    // The outbox first: nothing is captured that could not be kept.
    let (outbox, report) = Outbox::open(&config.outbox, outbox_metrics)?;
    tracing::info!(path = %config.outbox.path.display(), ?report, "outbox open");
    health.set("outbox", true, "open");

    let prescreener = Prescreener::load(&config.prescreen)?.with_metrics(prescreen_metrics.clone());
    tracing::info!(
        model = prescreener.model_id(),
        input_size = prescreener.input_size(),
        classes = prescreener.class_names().len(),
        "pre-screen model loaded"
    );
    let model_ids = vec![prescreener.model_id().to_owned()];
    let pool = PrescreenPool::new(Arc::new(prescreener), config.prescreen.threads);

    // No frame is stored unanonymised: a missing or wrong face model stops
    // the agent here, with the file named.
    let anonymiser = if config.anonymise.enabled {
        let anonymiser = Anonymiser::load(&config.anonymise, anonymise_metrics)?;
        tracing::info!(
            model = %config.anonymise.model.display(),
            method = ?config.anonymise.method,
            cameras = config.cameras.iter().filter(|c| c.anonymise_faces).count(),
            "face anonymisation on"
        );
        health.set("anonymise", true, "model loaded");
        Some(Arc::new(anonymiser))
    } else {
        tracing::warn!(
            "face anonymisation is off ([anonymise] enabled = false): frames are stored as captured"
        );
        None
    };

    let ctx = SourceContext::new(capture_metrics.clone());
    let mut cameras = Vec::new();
    let mut infos = Vec::new();
    for camera in &config.cameras {
        let info = camera.info()?;
        // Live cameras drop the older waiting frame when the pipeline is
        // busy; replays (files, synthetic) wait instead, losing nothing.
        let when_full = match camera.source {
            SourceConfig::V4l2(_) => WhenFull::ReplaceOldest,
            _ => WhenFull::Wait,
        };
        let source = capture::open_camera(camera, &ctx)?;
        infos.push(info.clone());
        cameras.push(Camera {
            info,
            source: Box::new(source),
            when_full,
            anonymise_faces: camera.anonymise_faces,
        });
    }
    let camera_ids = infos.iter().map(|i| i.id.clone()).collect();
    let tracker = SessionTracker::new(config.session.clone(), infos, Uuid::now_v7)?
        .with_metrics(session_metrics.clone());

    // SIGHUP: the quality thresholds apply at once; other sections need a
    // restart (cameras, model and outbox hold open resources).
    // A `reload_config` command from central runs the same reload.
    let reload_path = config_path.clone();
    let reloader = Arc::new(Reloader::new(
        config.quality.clone(),
        move || Config::load(&reload_path, FileChecks::On).map(|(c, _)| c.quality),
        reload_metrics,
    ));
    let quality: watch::Receiver<Arc<QualityThresholds>> = reloader.subscribe();
    // The SIGHUP handler is installed here, before READY is sent, so a
    // reload that systemd (ExecReload) sends right after start can never
    // meet the default action, which would kill the agent.
    let hup = {
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::hangup())
            .inspect_err(|error| {
                tracing::error!(%error, "cannot listen for SIGHUP; reload by command only");
            })
            .ok()
    };
    let reload_task = tokio::spawn(reload_on_sighup(hup, reloader.clone(), shutdown.clone()));

    let listener = TcpListener::bind(config.ops.listen)
        .await
        .map_err(|source| AgentError::Listen {
            addr: config.ops.listen,
            source,
        })?;
    match listener.local_addr() {
        Ok(addr) => tracing::info!(%addr, "serving /metrics and /healthz"),
        Err(error) => tracing::warn!(%error, "serving /metrics and /healthz (address unknown)"),
    }
    let (ops_stop, ops_stopped) = tokio::sync::oneshot::channel::<()>();
    let ops_task = tokio::spawn(ops::serve(
        listener,
        OpsState {
            registry: Arc::new(registry),
            health: health.clone(),
        },
        async move {
            let _ = ops_stopped.await;
        },
    ));

    // Commands from central go through the session task, which appends
    // their results. Without an uplink the sender lives here so the session
    // task keeps listening.
    let (commands_tx, commands) = mpsc::channel::<DeviceCommand>(16);
    let outbox = Arc::new(Mutex::new(outbox));
    let (uplink_stop, uplink_stopped) = watch::channel(false);
    let uplink_task = match &config.uplink {
        Some(uplink_config) => {
            let telemetry = TelemetrySource {
                cameras: camera_ids,
                capture: capture_metrics,
                pipeline: pipeline_metrics.clone(),
                prescreen: prescreen_metrics,
                session: session_metrics,
            };
            let reload: ReloadFn = {
                let reloader = reloader.clone();
                Arc::new(move || match reloader.reload() {
                    ReloadOutcome::Applied => Ok(()),
                    ReloadOutcome::Rejected(errors) => Err(errors.0.join("; ")),
                })
            };
            let uplink = Uplink::new(
                uplink_config.clone(),
                &identity,
                outbox.clone(),
                commands_tx.clone(),
                telemetry,
                uplink_metrics,
                health.clone(),
            )?
            .with_reload(reload);
            tracing::info!(
                mqtt = %uplink_config.mqtt_url,
                upload = %uplink_config.upload_url,
                boot_id = %uplink.boot_id(),
                "uplink configured"
            );
            Some(tokio::spawn(uplink.run(uplink_stopped)))
        }
        None => {
            tracing::warn!("no [uplink] section: running offline, the outbox only fills");
            None
        }
    };
    // Held to the end, so the channel stays open with or without an uplink.
    let _commands_tx = commands_tx;
    let heartbeat = Heartbeat::default();
    heartbeat.beat();
    let watchdog = tokio::spawn(ops::run_watchdog(heartbeat.clone(), shutdown.clone()));

    let pipeline = Pipeline {
        site: identity.site,
        device: identity.device,
        agent_version: AGENT_VERSION.to_owned(),
        model_ids,
        cameras,
        quality,
        prescreen: pool,
        anonymiser,
        tracker,
        outbox,
        commands,
        metrics: pipeline_metrics,
        health,
        heartbeat,
        stop: ctx.stop.clone(),
    };
    ops::notify_ready();
    let result = pipeline.run(shutdown).await;
    ops::notify_stopping();
    // The uplink stops after the pipeline: the last inspection is in the
    // outbox by now, and goes out on the next start if not before.
    let _ = uplink_stop.send(true);
    if let Some(task) = uplink_task {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "uplink stopped with an error"),
            Err(error) => tracing::error!(%error, "uplink task failed"),
        }
    }
    let _ = ops_stop.send(());
    let _ = ops_task.await;
    reload_task.abort();
    watchdog.abort();
    let report = result?;
    tracing::info!(?report, "pipeline finished");
    Ok(report)
}

/// Reloads on every SIGHUP until `shutdown` fires (the reload itself runs
/// on the blocking pool: it reads and validates a file).
async fn reload_on_sighup(
    hup: Option<tokio::signal::unix::Signal>,
    reloader: Arc<Reloader<QualityThresholds>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(mut hup) = hup else { return };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                let reloader = reloader.clone();
                let _ = tokio::task::spawn_blocking(move || reloader.reload()).await;
            }
            _ = shutdown.changed() => return,
        }
    }
}
