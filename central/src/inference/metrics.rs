//! The inference role's HTTP metrics (`inference_http_*`); the model metrics
//! (`inference_duration_seconds` and the rest) are `crate::detect::DetectMetrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StatusLabels {
    pub(crate) status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CodeLabels {
    pub(crate) code: &'static str,
}

/// Handles to the role's HTTP metrics; clones share the same values.
#[derive(Clone, Debug)]
pub struct InferenceMetrics {
    pub(crate) requests: Family<StatusLabels, Counter>,
    pub(crate) refusals: Family<CodeLabels, Counter>,
    pub(crate) connection_failures: Family<CodeLabels, Counter>,
    pub(crate) request_seconds: Histogram,
}

impl Default for InferenceMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl InferenceMetrics {
    pub fn new() -> Self {
        Self {
            requests: Family::default(),
            refusals: Family::default(),
            connection_failures: Family::default(),
            // 1 ms .. ~33 s: from a refusal to a queued CPU batch.
            request_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
        }
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "inference_http_requests",
            "HTTP requests answered, by status code",
            self.requests.clone(),
        );
        registry.register(
            "inference_http_refusals",
            "Requests refused, by stable error code (the `code` of the JSON error body)",
            self.refusals.clone(),
        );
        registry.register(
            "inference_http_connection_failures",
            "Connections dropped before any request, by code (tls_handshake, handshake_timeout, accept)",
            self.connection_failures.clone(),
        );
        registry.register(
            "inference_http_request_duration_seconds",
            "Time from request head to response (body read, decode, queue, run)",
            self.request_seconds.clone(),
        );
    }

    /// Refusals so far with `code`.
    pub fn refusals(&self, code: &'static str) -> u64 {
        self.refusals
            .get(&CodeLabels { code })
            .map(|c| c.get())
            .unwrap_or(0)
    }

    pub(crate) fn refused(&self, code: &'static str) {
        self.refusals.get_or_create(&CodeLabels { code }).inc();
    }

    pub(crate) fn connection_failed(&self, code: &'static str) {
        self.connection_failures
            .get_or_create(&CodeLabels { code })
            .inc();
    }
}
