//! The api role's Prometheus metrics (`central_api_*`).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A request: its matched route (`/api/v1/inspections/{id}`; `unmatched`
/// when none), method and status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
}

/// Handles to the api role's metrics; clones share the same values.
#[derive(Clone, Debug)]
pub struct ApiMetrics {
    requests: Family<RequestLabels, Counter>,
    seconds: Family<RouteLabels, Histogram>,
    auth_refusals: Family<ReasonLabels, Counter>,
    rate_limited: Counter,
    writes: Family<ActionLabels, Counter>,
    connections_failed: Family<CodeLabels, Counter>,
    /// The read cache's lookups and Redis errors.
    pub cache: super::cache::CacheMetrics,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        ApiMetrics {
            requests: Family::default(),
            seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.002, 2.0, 14))
            }),
            auth_refusals: Family::default(),
            rate_limited: Counter::default(),
            writes: Family::default(),
            connections_failed: Family::default(),
            cache: Default::default(),
        }
    }
}

impl ApiMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "central_api_requests",
            "Staff API requests by matched route, method and status",
            self.requests.clone(),
        );
        registry.register(
            "central_api_request_duration_seconds",
            "Staff API request time by matched route",
            self.seconds.clone(),
        );
        registry.register(
            "central_api_auth_refusals",
            "Bearer tokens refused, by reason (expired, wrong_audience, unknown_key, ...)",
            self.auth_refusals.clone(),
        );
        registry.register(
            "central_api_rate_limited",
            "Requests refused by a caller's rate limit",
            self.rate_limited.clone(),
        );
        registry.register(
            "central_api_writes",
            "Staff writes committed (each with its audit entry), by action",
            self.writes.clone(),
        );
        registry.register(
            "central_api_connections_failed",
            "Connections dropped before any request, by code (tls_handshake, handshake_timeout, accept)",
            self.connections_failed.clone(),
        );
        self.cache.register(registry);
    }

    pub(crate) fn connection_failed(&self, code: &'static str) {
        self.connections_failed
            .get_or_create(&CodeLabels { code })
            .inc();
    }

    /// For tests: connections dropped before any request, by code.
    pub fn connections_failed(&self, code: &'static str) -> u64 {
        self.connections_failed
            .get_or_create(&CodeLabels { code })
            .get()
    }

    pub(crate) fn observe(&self, route: &str, method: &str, status: u16, took: Duration) {
        // A fixed set: any other method string (sent before authentication)
        // must not make a new series.
        let method = match method {
            "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => method,
            _ => "other",
        };
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status,
            })
            .inc();
        self.seconds
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    pub(crate) fn auth_refused(&self, reason: &'static str) {
        self.auth_refusals
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub(crate) fn rate_limited(&self) {
        self.rate_limited.inc();
    }

    pub(crate) fn wrote(&self, action: &'static str) {
        self.writes.get_or_create(&ActionLabels { action }).inc();
    }

    /// For tests: requests counted for a route and status.
    pub fn requests(&self, route: &str, method: &str, status: u16) -> u64 {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status,
            })
            .get()
    }

    /// For tests: refusals counted for a reason.
    pub fn auth_refusals(&self, reason: &'static str) -> u64 {
        self.auth_refusals
            .get_or_create(&ReasonLabels { reason })
            .get()
    }

    /// For tests: requests refused by a rate limit.
    pub fn rate_limited_count(&self) -> u64 {
        self.rate_limited.get()
    }
}
