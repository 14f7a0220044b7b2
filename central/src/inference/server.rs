//! Listener, model loading and readiness of the inference role (connections:
//! [`crate::https`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::http::{AppState, Models, Slot, router};
use super::metrics::InferenceMetrics;
use super::{InferenceConfig, InferenceError};
use crate::detect::{DetectMetrics, DetectorConfig, RuntimeConfig, load_batching};
use crate::ops::Readiness;

/// The readiness part this role reports.
pub const READINESS_PART: &str = "inference";

/// First retry of a model that failed to load, doubling to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(30);
const RETRY_MAX: Duration = Duration::from_secs(300);

/// The inference role, bound (models loading in the background) but not
/// yet serving.
pub struct InferenceServer {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    metrics: InferenceMetrics,
    request_timeout: Duration,
    models: Models,
    stop_loading: watch::Sender<bool>,
}

impl std::fmt::Debug for InferenceServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InferenceServer")
            .field("addr", &self.local_addr())
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl InferenceServer {
    /// Checks the config, binds the listener and starts loading the models
    /// on ONNX Runtime from `runtime` (in the background: `readiness` part
    /// `inference` turns true once all are loaded). `detect_metrics` are the
    /// process's model metrics (shared with a local worker's detectors).
    pub async fn bind(
        config: &InferenceConfig,
        runtime: &RuntimeConfig,
        detect_metrics: DetectMetrics,
        metrics: InferenceMetrics,
        readiness: Readiness,
    ) -> Result<InferenceServer, InferenceError> {
        let mut problems = config.problems("inference", false);
        problems.extend(config.serving_problems("inference"));
        problems.extend(runtime.problems("onnxruntime"));
        if !problems.is_empty() {
            return Err(InferenceError::Config(problems));
        }
        let tls = match &config.tls {
            Some(tls) => Some(TlsAcceptor::from(tls.server_config(&[b"http/1.1"])?)),
            None => None,
        };
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|e| InferenceError::Bind {
                    addr: config.listen,
                    reason: e.to_string(),
                })?;
        let models: Models = Arc::new(
            config
                .models
                .keys()
                .map(|name| (name.clone(), RwLock::new(Slot::Loading)))
                .collect(),
        );
        let request_timeout = Duration::from_secs(config.request_timeout_s);
        let state = Arc::new(AppState {
            models: models.clone(),
            metrics: metrics.clone(),
            max_body_bytes: config.max_body_bytes,
            request_timeout,
        });
        let (stop_loading, stop_rx) = watch::channel(false);
        readiness.set(READINESS_PART, false, "loading models");
        tokio::spawn(load_models(
            config.models.clone(),
            runtime.clone(),
            models.clone(),
            detect_metrics,
            readiness,
            stop_rx,
        ));
        Ok(InferenceServer {
            listener,
            tls,
            router: router(state),
            metrics,
            request_timeout,
            models,
            stop_loading,
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Whether every model is loaded.
    pub fn all_loaded(&self) -> bool {
        self.models
            .values()
            .all(|s| matches!(*s.read().unwrap_or_else(|e| e.into_inner()), Slot::Ready(_)))
    }

    /// Serves until `shutdown` becomes true (or its sender is dropped), then
    /// stops accepting, lets requests in progress finish (each bounded by
    /// `request_timeout_s`) and returns. The models' runners stop when the
    /// last request holding them ends.
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> Result<(), InferenceError> {
        let InferenceServer {
            listener,
            tls,
            router,
            metrics,
            request_timeout,
            models,
            stop_loading,
        } = self;
        let failed: crate::https::ConnectionFailed = {
            let metrics = metrics.clone();
            Arc::new(move |code| metrics.connection_failed(code))
        };
        crate::https::serve(
            "inference",
            listener,
            tls,
            router,
            request_timeout,
            failed,
            shutdown,
        )
        .await;
        let _ = stop_loading.send(true);
        // Dropping the detectors ends their runner threads.
        for slot in models.values() {
            *slot.write().unwrap_or_else(|e| e.into_inner()) = Slot::Failed("stopped".into());
        }
        Ok(())
    }
}

/// Loads every model, one after another (loading is CPU- and disk-bound;
/// in parallel they would only slow each other), retrying failures with
/// backoff until all are loaded or the role stops.
async fn load_models(
    configs: BTreeMap<String, DetectorConfig>,
    runtime: RuntimeConfig,
    models: Models,
    metrics: DetectMetrics,
    readiness: Readiness,
    mut stop: watch::Receiver<bool>,
) {
    let mut pending: Vec<String> = configs.keys().cloned().collect();
    let mut delay = RETRY_FIRST;
    loop {
        let mut failures = Vec::new();
        for name in &pending {
            if *stop.borrow() {
                return;
            }
            let config = &configs[name];
            match load_batching(name, config, &runtime, &metrics).await {
                Ok(detector) => {
                    tracing::info!(
                        model = %name,
                        id = %crate::detect::Detector::info(&detector).id,
                        provider = %detector.provider(),
                        "inference model loaded"
                    );
                    *models[name].write().unwrap_or_else(|e| e.into_inner()) =
                        Slot::Ready(Arc::new(detector));
                }
                Err(error) => {
                    tracing::error!(model = %name, %error, retry_in_s = delay.as_secs(), "inference model failed to load");
                    *models[name].write().unwrap_or_else(|e| e.into_inner()) =
                        Slot::Failed(error.to_string());
                    failures.push((name.clone(), error.to_string()));
                }
            }
        }
        if failures.is_empty() {
            let loaded: Vec<String> = models
                .iter()
                .map(
                    |(name, slot)| match &*slot.read().unwrap_or_else(|e| e.into_inner()) {
                        Slot::Ready(d) => format!("{name} on {}", d.provider()),
                        _ => name.clone(),
                    },
                )
                .collect();
            readiness.set(
                READINESS_PART,
                true,
                format!("models loaded: {}", loaded.join(", ")),
            );
            return;
        }
        let detail = failures
            .iter()
            .map(|(name, error)| format!("model {name}: {error}"))
            .collect::<Vec<_>>()
            .join("; ");
        readiness.set(
            READINESS_PART,
            false,
            format!("{detail} (retrying in {} s)", delay.as_secs()),
        );
        pending = failures.into_iter().map(|(name, _)| name).collect();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopped(&mut stop) => return,
        }
        delay = (delay * 2).min(RETRY_MAX);
    }
}

async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}
