//! The `inference` role: detection served over HTTP (`POST /v1/detect`) with dynamic batching, and the client the worker uses.
//!
//! ```text
//! DESIGN
//!
//! API
//!
//! POST /v1/detect?model=NAME   body: one image (Content-Type image/jpeg or
//!                              image/png), at most `max_body_bytes`
//!   200 {"model": {"id", "classes", "input_size", "provider"},
//!        "detections": [{"bbox": {"x1","y1","x2","y2"}, "score",
//!                        "class_id", "class"}],
//!        "batch_size", "duration_ms"}
//!   boxes are in the posted image's pixels, best first after NMS;
//!   `batch_size` is how many images ran in the same session.run and
//!   `duration_ms` that run's time (queueing excluded).
//! GET /v1/models               {"models": [{"name", "ready", "model",
//!                              "max_batch", "error"}]}
//!
//! Refusals are `{"error": {"code", "message"}}` (codes in `http.rs`),
//! counted in `inference_http_refusals_total{code}`.
//!
//! MODELS AND READINESS
//!
//! `[inference.models.NAME]` is a `DetectorConfig`; NAME (a-z, 0-9, _, -)
//! is the URL's `model` and the metrics' `model` label. The server binds at
//! once and loads the models in the background, one after another; the
//! readiness part `inference` is false until every one is loaded. A model
//! that fails to load (missing file, not a YOLOv8 export, CUDA asked for and
//! absent) leaves the role not ready with the error in `/readyz` and the
//! log, and is retried with backoff (30 s doubling to 5 min: a volume may
//! be mounted late); the process keeps running and serving health and the
//! other models. It is never a crash loop.
//!
//! BATCHING
//!
//! Each model has a `BatchingDetector` (crate::detect): concurrent requests
//! are gathered into one session.run of up to `max_batch` images, waiting at
//! most `max_wait_ms` after the first; its bounded `queue` refuses the
//! excess with 503 `overloaded` and `Retry-After: 1`.
//!
//! TRANSPORT
//!
//! HTTPS with `tls` (the same `ServerTlsConfig` as the upload role; with
//! `client_ca`, clients must present a certificate from it), or plain HTTP
//! on a loopback `listen`, or anywhere with `plain_http = true` (inside the
//! cluster, behind a NetworkPolicy). The role has no tokens: who may reach
//! it is the network's and mTLS's business.
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Deserialize;

use crate::detect::{DetectorConfig, check_model_name};
use crate::tls::{ServerTlsConfig, TlsError};

mod decode;
mod http;
mod metrics;
mod server;

pub use decode::{ImageProblem, decode_image};
pub use metrics::InferenceMetrics;
pub use server::{InferenceServer, READINESS_PART};

/// The most `max_body_bytes` may be: bodies are buffered whole.
pub const MAX_BODY_BYTES_LIMIT: u64 = 256 * 1024 * 1024;

/// `[inference]`. Every key has a default, so an absent section is valid;
/// what the role needs to serve is checked by
/// [`InferenceConfig::serving_problems`].
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct InferenceConfig {
    /// Listener. Default `0.0.0.0:8444`.
    pub listen: SocketAddr,
    /// HTTPS. Without it the listener is plain HTTP, which needs a loopback
    /// `listen` or `plain_http = true`.
    pub tls: Option<ServerTlsConfig>,
    /// Serve plain HTTP on a non-loopback address (in-cluster traffic behind
    /// a NetworkPolicy). Default false: an explicit choice.
    pub plain_http: bool,
    /// Largest image body accepted, in bytes. Default 16 MiB (a 12 MP JPEG
    /// at high quality is 4-8 MB).
    pub max_body_bytes: u64,
    /// Bound on a TLS handshake, a request head and a whole request, in
    /// seconds. Default 60.
    pub request_timeout_s: u64,
    /// The models served, by name: `[inference.models.damage]`.
    pub models: BTreeMap<String, DetectorConfig>,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8444)),
            tls: None,
            plain_http: false,
            max_body_bytes: 16 * 1024 * 1024,
            request_timeout_s: 60,
            models: BTreeMap::new(),
        }
    }
}

impl InferenceConfig {
    /// Every problem with the values as written, each prefixed by `at`.
    /// Model files are not checked here even with `check_files`: a missing
    /// model is reported by readiness at run time (it may be mounted late),
    /// never by refusing to start.
    pub fn problems(&self, at: &str, check_files: bool) -> Vec<String> {
        let mut problems = Vec::new();
        if !(1..=MAX_BODY_BYTES_LIMIT).contains(&self.max_body_bytes) {
            problems.push(format!(
                "{at}.max_body_bytes: must be between 1 and {MAX_BODY_BYTES_LIMIT}"
            ));
        }
        if !(1..=3600).contains(&self.request_timeout_s) {
            problems.push(format!(
                "{at}.request_timeout_s: must be between 1 and 3600"
            ));
        }
        if let Some(tls) = &self.tls {
            problems.extend(tls.problems(&format!("{at}.tls"), check_files));
            if self.plain_http {
                problems.push(format!("{at}.plain_http: only meaningful without {at}.tls"));
            }
        }
        for (name, model) in &self.models {
            let at_model = format!("{at}.models.{name}");
            if let Err(e) = check_model_name(name) {
                problems.push(format!("{at_model}: {e}"));
            }
            problems.extend(model.problems(&at_model));
        }
        problems
    }

    /// What the role additionally needs to run: at least one model, and TLS
    /// unless it listens on loopback or plain HTTP is chosen explicitly.
    /// (Checked only when the role runs: a config for other roles need not
    /// have an `[inference]` section.)
    pub fn serving_problems(&self, at: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if self.models.is_empty() {
            problems.push(format!(
                "{at}.models: no model configured (add [{at}.models.NAME] with model = \"path.onnx\")"
            ));
        }
        problems.extend(crate::https::plain_listener_problem(
            at,
            self.listen,
            self.tls.is_some(),
            self.plain_http,
        ));
        problems
    }
}

/// Why the inference role could not start.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error("inference configuration: {}", .0.join("; "))]
    Config(Vec<String>),
    #[error("inference TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
}

impl InferenceError {
    /// A stable code for metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            InferenceError::Config(_) => "config",
            InferenceError::Tls(_) => "tls",
            InferenceError::Bind { .. } => "bind",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> InferenceConfig {
        #[derive(Deserialize)]
        struct W {
            inference: InferenceConfig,
        }
        toml::from_str::<W>(text).expect("parses").inference
    }

    #[test]
    fn defaults_a_full_section_and_every_problem() {
        let empty = parse("[inference]\n");
        assert_eq!(empty, InferenceConfig::default());
        // Valid as written (a config for other roles needs no section), but
        // not servable: no model, and 0.0.0.0 without TLS.
        assert_eq!(empty.problems("inference", true), Vec::<String>::new());
        assert_eq!(empty.serving_problems("inference").len(), 2);

        let full = parse(
            "[inference]\nlisten = \"0.0.0.0:8444\"\nplain_http = true\nmax_body_bytes = 1000\n\
             [inference.models.plate]\nmodel = \"/models/platedet.onnx\"\nmax_batch = 4\n\
             [inference.models.damage]\nmodel = \"/models/damage.onnx\"\n",
        );
        assert!(
            full.problems("inference", true).is_empty(),
            "{:?}",
            full.problems("inference", true)
        );
        assert!(full.serving_problems("inference").is_empty());
        assert_eq!(full.models["plate"].max_batch, 4);

        let bad = parse(
            "[inference]\nmax_body_bytes = 0\nrequest_timeout_s = 0\n\
             [inference.models.\"Bad Name\"]\nmodel = \"m\"\nmax_batch = 0\n",
        );
        let mut problems = bad.problems("inference", true);
        problems.extend(bad.serving_problems("inference"));
        for needle in [
            "inference.max_body_bytes",
            "inference.request_timeout_s",
            "inference.listen: 0.0.0.0:8444 is not a loopback",
            "inference.models.Bad Name: \"Bad Name\" is not a model name",
            "inference.models.Bad Name.max_batch",
        ] {
            assert!(
                problems.iter().any(|p| p.contains(needle)),
                "{needle} in {problems:#?}"
            );
        }
        assert_eq!(problems.len(), 5, "{problems:#?}");
    }
}
