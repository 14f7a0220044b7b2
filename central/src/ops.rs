//! Operations endpoint of a central process: Prometheus metrics on
//! `/metrics`, liveness on `/healthz`, readiness on `/readyz`, and log set-up
//! (JSON lines for Loki, or text for a terminal).
//!
//! Liveness says the process is not wedged (Kubernetes restarts it when it
//! fails); readiness says every role of the process can do its work now
//! (the store answers, the broker is reachable), so a Service sends it
//! traffic. A role reports each of its parts under its own name.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

/// `[ops]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpsConfig {
    /// Where `/metrics`, `/healthz` and `/readyz` listen. Default
    /// `127.0.0.1:9465`; in Kubernetes `0.0.0.0:9465` (the pod port).
    pub listen: SocketAddr,
    /// The endpoint is plain HTTP: off loopback only with this set, an
    /// explicit choice (in Kubernetes a NetworkPolicy admits only
    /// Prometheus). Default false.
    pub plain_http: bool,
    pub log_format: LogFormat,
    /// A secret file (16 bytes or more) whose key turns a plate into the
    /// tag that identifies a vehicle in log lines (`v-` + 12 hex digits of
    /// an HMAC). Give every role and replica the same file to follow one
    /// car across them; without it each process draws its own key.
    pub log_key_file: Option<PathBuf>,
}

impl OpsConfig {
    /// Every problem, each prefixed by `at`.
    pub fn problems(&self, at: &str, check_files: bool) -> Vec<String> {
        let mut problems: Vec<String> =
            inspection_core::config::plain_ops_listener_problem(at, self.listen, self.plain_http)
                .into_iter()
                .collect();
        if let Some(path) = &self.log_key_file
            && check_files
            && !path.is_file()
        {
            problems.push(format!(
                "{at}.log_key_file: {} is not a readable file",
                path.display()
            ));
        }
        problems
    }
}

impl Default for OpsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9465)),
            plain_http: false,
            log_format: LogFormat::Json,
            log_key_file: None,
        }
    }
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One JSON object per line (for Loki).
    Json,
    /// Human-readable.
    Text,
}

/// Installs the global subscriber; the level comes from `RUST_LOG`
/// (default `info`, rumqttd at `warn`: it logs every connection at info).
/// A second call is ignored.
pub fn init_logging(format: LogFormat) {
    install(format, std::io::stderr, true, None);
}

/// Like [`init_logging`], into a file (the demo writes central's log there
/// and its own progress to the terminal).
pub fn init_logging_to(format: LogFormat, file: std::fs::File) {
    install(format, std::sync::Mutex::new(file), false, None);
}

/// The shipped level (`info`, whatever `RUST_LOG` says), into a file: for
/// tests that read what production would log.
pub fn init_logging_to_at_default_level(format: LogFormat, file: std::fs::File) {
    install(
        format,
        std::sync::Mutex::new(file),
        false,
        Some(DEFAULT_FILTER),
    );
}

/// The level when `RUST_LOG` is unset.
const DEFAULT_FILTER: &str = "info,rumqttd=warn,ort=warn";

fn install<W>(format: LogFormat, writer: W, ansi: bool, filter: Option<&str>)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = match filter {
        Some(f) => EnvFilter::new(f),
        None => {
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER))
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// One part's readiness.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Part {
    pub ready: bool,
    /// Why it is not ready (or a short status when it is).
    pub detail: String,
    pub since: DateTime<Utc>,
}

/// Shared, cheap to clone; the process is ready when every part is.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    parts: Arc<Mutex<BTreeMap<String, Part>>>,
}

impl Readiness {
    /// Records a part's state; `since` changes only when it flips.
    pub fn set(&self, part: &str, ready: bool, detail: impl Into<String>) {
        let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        let since = match parts.get(part) {
            Some(p) if p.ready == ready => p.since,
            _ => Utc::now(),
        };
        parts.insert(
            part.to_owned(),
            Part {
                ready,
                detail: detail.into(),
                since,
            },
        );
    }

    /// Overall readiness and every part's state. Not ready until some part
    /// has reported.
    pub fn snapshot(&self) -> (bool, BTreeMap<String, Part>) {
        let parts = self.parts.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let ready = !parts.is_empty() && parts.values().all(|p| p.ready);
        (ready, parts)
    }
}

#[derive(Clone)]
struct OpsState {
    registry: Arc<Registry>,
    readiness: Readiness,
}

/// The endpoint's routes.
pub fn router(registry: Arc<Registry>, readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(OpsState {
            registry,
            readiness,
        })
}

/// Serves the endpoint on `listener` until `shutdown` becomes true.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    readiness: Readiness,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    axum::serve(listener, router(registry, readiness))
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}

async fn metrics(State(state): State<OpsState>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot encode metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn readyz(State(state): State<OpsState>) -> Response {
    let (ready, parts) = state.readiness.snapshot();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(serde_json::json!({ "ready": ready, "parts": parts })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_some_part_reported_and_all_are_ready() {
        let r = Readiness::default();
        assert!(!r.snapshot().0, "nothing reported yet");
        r.set("store", true, "ok");
        assert!(r.snapshot().0);
        r.set("broker", false, "connecting");
        assert!(!r.snapshot().0);
        let since = r.snapshot().1["broker"].since;
        r.set("broker", false, "still connecting");
        assert_eq!(r.snapshot().1["broker"].since, since);
    }
}
