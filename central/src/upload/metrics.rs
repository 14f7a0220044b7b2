//! The upload role's Prometheus metrics (`central_upload_*`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A request's method (PUT, HEAD or `other`) and status code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub(crate) method: &'static str,
    pub(crate) status: u16,
}

/// A refusal's stable code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CodeLabels {
    pub(crate) code: &'static str,
}

/// An outcome of a successful PUT: `created` or `existing`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    pub(crate) outcome: &'static str,
}

/// An object store operation: `put` or `head`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OpLabels {
    pub(crate) op: &'static str,
}

/// Handles to the upload role's metrics; clones share the same values.
#[derive(Clone, Debug)]
pub struct UploadMetrics {
    pub(crate) requests: Family<RequestLabels, Counter>,
    pub(crate) refusals: Family<CodeLabels, Counter>,
    pub(crate) images: Family<OutcomeLabels, Counter>,
    pub(crate) stored_bytes: Counter,
    pub(crate) store_errors: Family<OpLabels, Counter>,
    pub(crate) connection_failures: Family<CodeLabels, Counter>,
    pub(crate) in_flight: Gauge,
    pub(crate) uploads_in_progress: Gauge,
    pub(crate) request_seconds: Histogram,
}

impl Default for UploadMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl UploadMetrics {
    /// Fresh metrics, all zero.
    pub fn new() -> Self {
        Self {
            requests: Family::default(),
            refusals: Family::default(),
            images: Family::default(),
            stored_bytes: Counter::default(),
            store_errors: Family::default(),
            connection_failures: Family::default(),
            in_flight: Gauge::default(),
            uploads_in_progress: Gauge::default(),
            // 1 ms .. ~65 s: a HEAD is about a millisecond, a 16 MiB PUT over
            // a slow bay uplink tens of seconds.
            request_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
        }
    }

    /// Registers every metric (the registry gets clones of the handles).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "central_upload_requests",
            "HTTP requests answered, by method (PUT, HEAD, other) and status code",
            self.requests.clone(),
        );
        registry.register(
            "central_upload_refusals",
            "Requests refused, by stable error code (the `code` of the JSON error body)",
            self.refusals.clone(),
        );
        registry.register(
            "central_upload_images",
            "Images accepted, by outcome (created, existing: already stored, not rewritten)",
            self.images.clone(),
        );
        registry.register(
            "central_upload_stored_bytes",
            "Bytes of images newly written to the object store",
            self.stored_bytes.clone(),
        );
        registry.register(
            "central_upload_store_errors",
            "Object store operations that failed, by operation (put, head)",
            self.store_errors.clone(),
        );
        registry.register(
            "central_upload_connection_failures",
            "Connections dropped before any request, by code (tls_handshake, handshake_timeout, accept)",
            self.connection_failures.clone(),
        );
        registry.register(
            "central_upload_in_flight_requests",
            "Requests being handled now",
            self.in_flight.clone(),
        );
        registry.register(
            "central_upload_uploads_in_progress",
            "PUTs holding one of the max_concurrent_uploads slots (reading, checking or writing)",
            self.uploads_in_progress.clone(),
        );
        registry.register(
            "central_upload_request_duration_seconds",
            "Time from request head to response, refusals included",
            self.request_seconds.clone(),
        );
    }

    pub(crate) fn refused(&self, code: &'static str) {
        self.refusals.get_or_create(&CodeLabels { code }).inc();
    }

    pub(crate) fn connection_failed(&self, code: &'static str) {
        self.connection_failures
            .get_or_create(&CodeLabels { code })
            .inc();
    }

    pub(crate) fn store_error(&self, op: &'static str) {
        self.store_errors.get_or_create(&OpLabels { op }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let metrics = UploadMetrics::new();
        metrics
            .requests
            .get_or_create(&RequestLabels {
                method: "PUT",
                status: 201,
            })
            .inc();
        metrics.refused("hash_mismatch");
        metrics.store_error("put");
        metrics.request_seconds.observe(0.01);
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "central_upload_requests_total{method=\"PUT\",status=\"201\"} 1",
            "central_upload_refusals_total{code=\"hash_mismatch\"} 1",
            "central_upload_store_errors_total{op=\"put\"} 1",
            "central_upload_stored_bytes_total 0",
            "central_upload_in_flight_requests 0",
            "central_upload_uploads_in_progress 0",
            "central_upload_request_duration_seconds_count 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
