//! Prometheus metrics of the pre-screen.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of `edge_prescreen_errors_total`: the error's stable code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ErrorLabels {
    /// [`PrescreenError::code`](super::PrescreenError::code).
    pub kind: &'static str,
}

/// The pre-screen's metrics. Clones share the same underlying values, so a
/// [`Prescreener`](super::Prescreener) and a registry can hold one each.
#[derive(Debug, Clone)]
pub struct PrescreenMetrics {
    /// `edge_prescreen_inference_duration_seconds`: letterbox, model and
    /// decode of one frame.
    pub inference_duration: Histogram,
    /// `edge_prescreen_frames_total`: frames screened successfully.
    pub frames: Counter,
    /// `edge_prescreen_errors_total{kind}`: frames that could not be screened.
    pub errors: Family<ErrorLabels, Counter>,
    /// `edge_prescreen_in_flight`: frames in inference now (at most `threads`).
    pub in_flight: Gauge,
    /// `edge_prescreen_waiting`: frames waiting for an inference slot.
    pub waiting: Gauge,
}

impl Default for PrescreenMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl PrescreenMetrics {
    /// Fresh, unregistered metrics.
    pub fn new() -> Self {
        Self {
            // 10 ms to ~41 s: a 320 int8 model on a fast core to an fp16
            // model that tract runs without native half arithmetic.
            inference_duration: Histogram::new(exponential_buckets(0.01, 2.0, 13)),
            frames: Counter::default(),
            errors: Family::default(),
            in_flight: Gauge::default(),
            waiting: Gauge::default(),
        }
    }

    /// Registers clones of the handles in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "edge_prescreen_inference_duration_seconds",
            "Time to pre-screen one frame (letterbox, model, decode)",
            self.inference_duration.clone(),
        );
        // prometheus-client appends `_total` to counters.
        registry.register(
            "edge_prescreen_frames",
            "Frames the pre-screen processed",
            self.frames.clone(),
        );
        registry.register(
            "edge_prescreen_errors",
            "Frames the pre-screen could not process, by error kind",
            self.errors.clone(),
        );
        registry.register(
            "edge_prescreen_in_flight",
            "Frames in pre-screen inference now",
            self.in_flight.clone(),
        );
        registry.register(
            "edge_prescreen_waiting",
            "Frames waiting for a pre-screen inference slot",
            self.waiting.clone(),
        );
    }

    /// Counts one failed frame.
    pub fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&ErrorLabels { kind }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let m = PrescreenMetrics::new();
        let mut registry = Registry::default();
        m.register(&mut registry);
        m.inference_duration.observe(0.4);
        m.error("inference");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for want in [
            "edge_prescreen_inference_duration_seconds_count 1",
            "edge_prescreen_errors_total{kind=\"inference\"} 1",
            "edge_prescreen_frames_total 0",
            "edge_prescreen_in_flight 0",
            "edge_prescreen_waiting 0",
        ] {
            assert!(text.contains(want), "{want} not in\n{text}");
        }
    }
}
