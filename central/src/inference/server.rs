//! Listener, connections, model loading and readiness of the inference role.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
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
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), InferenceError> {
        let InferenceServer {
            listener,
            tls,
            router,
            metrics,
            request_timeout,
            models,
            stop_loading,
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        tracing::info!(addr = ?listener.local_addr().ok(), tls = tls.is_some(), "inference role serving");
        loop {
            tokio::select! {
                _ = stopped(&mut shutdown) => break,
                accepted = listener.accept() => match accepted {
                    Ok((tcp, _)) => {
                        connections.spawn(serve_connection(
                            tcp, tls.clone(), router.clone(), metrics.clone(), request_timeout, stop_rx.clone(),
                        ));
                    }
                    Err(error) => {
                        // Out of file descriptors, usually: not fatal.
                        metrics.connection_failed("accept");
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(listener);
        let _ = stop_loading.send(true);
        let _ = stop_tx.send(true);
        tracing::info!(
            connections = connections.len(),
            "inference role stopping; finishing requests in progress"
        );
        let grace = request_timeout + Duration::from_secs(5);
        let finish = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, finish).await.is_err() {
            tracing::warn!(
                connections = connections.len(),
                "connections still open after the grace period; closing them"
            );
            connections.abort_all();
        }
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

async fn serve_connection(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    router: Router,
    metrics: InferenceMetrics,
    timeout: Duration,
    stop: watch::Receiver<bool>,
) {
    let Some(acceptor) = tls else {
        serve(tcp, router, timeout, stop).await;
        return;
    };
    match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => serve(stream, router, timeout, stop).await,
        Ok(Err(error)) => {
            metrics.connection_failed("tls_handshake");
            tracing::info!(%error, "TLS handshake refused");
        }
        Err(_) => metrics.connection_failed("handshake_timeout"),
    }
}

/// Serves HTTP/1.1 on one connection.
async fn serve<IO>(io: IO, router: Router, timeout: Duration, mut stop: watch::Receiver<bool>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(router));
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = stopped(&mut stop) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "connection ended with an error");
    }
}
