//! The outbox's Prometheus metrics (`edge_outbox_*`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `kind` label: `event` or `image`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KindLabels {
    pub(crate) kind: &'static str,
}

/// Labels of a dropped entry: its kind and why it was dropped.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DropLabels {
    pub(crate) kind: &'static str,
    pub(crate) reason: &'static str,
}

/// Why a database was moved aside.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RecoveryLabels {
    pub(crate) reason: &'static str,
}

/// Handles to the outbox's metrics; clones share the same values.
#[derive(Clone, Debug)]
pub struct OutboxMetrics {
    pub(crate) entries: Gauge,
    pub(crate) bytes: Gauge,
    pub(crate) appended: Family<KindLabels, Counter>,
    pub(crate) acked: Family<KindLabels, Counter>,
    pub(crate) dropped: Family<DropLabels, Counter>,
    pub(crate) recovered: Family<RecoveryLabels, Counter>,
    pub(crate) commit_seconds: Histogram,
}

impl Default for OutboxMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl OutboxMetrics {
    /// Fresh metrics, all zero.
    pub fn new() -> Self {
        Self {
            entries: Gauge::default(),
            bytes: Gauge::default(),
            appended: Family::default(),
            acked: Family::default(),
            dropped: Family::default(),
            recovered: Family::default(),
            // 50 us .. ~1.6 s: a NORMAL commit of an event is tens of
            // microseconds, a FULL commit of an image on eMMC tens of ms.
            commit_seconds: Histogram::new(exponential_buckets(50e-6, 2.0, 16)),
        }
    }

    /// Registers every metric (the registry gets clones of the handles).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "edge_outbox_entries",
            "Entries waiting for an end-to-end ack",
            self.entries.clone(),
        );
        registry.register(
            "edge_outbox_bytes",
            "Payload bytes waiting for an end-to-end ack (what the budget counts)",
            self.bytes.clone(),
        );
        registry.register(
            "edge_outbox_appended",
            "Entries committed to the outbox, by kind",
            self.appended.clone(),
        );
        registry.register(
            "edge_outbox_acked",
            "Entries removed on an end-to-end ack, by kind",
            self.acked.clone(),
        );
        registry.register(
            "edge_outbox_dropped",
            "Entries lost, by kind and reason (evicted_for_space, refused_full, too_large, disk_full)",
            self.dropped.clone(),
        );
        registry.register(
            "edge_outbox_recovered",
            "Databases moved aside at start-up and replaced by a fresh one, by reason",
            self.recovered.clone(),
        );
        registry.register(
            "edge_outbox_commit_duration_seconds",
            "Time to commit one append transaction, evictions included",
            self.commit_seconds.clone(),
        );
    }

    pub(crate) fn dropped(&self, kind: &'static str, reason: &'static str, n: u64) {
        self.dropped
            .get_or_create(&DropLabels { kind, reason })
            .inc_by(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let metrics = OutboxMetrics::new();
        metrics.dropped("image", "evicted_for_space", 3);
        metrics
            .recovered
            .get_or_create(&RecoveryLabels { reason: "corrupt" })
            .inc();
        metrics.commit_seconds.observe(0.001);
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "edge_outbox_dropped_total{kind=\"image\",reason=\"evicted_for_space\"} 3",
            "edge_outbox_recovered_total{reason=\"corrupt\"} 1",
            "edge_outbox_entries 0",
            "edge_outbox_bytes 0",
            "edge_outbox_commit_duration_seconds_count 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
