//! Report metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct WriterLabels {
    pub writer: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RejectionLabels {
    pub writer: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct AttemptLabels {
    pub writer: String,
    pub outcome: String,
}

fn writer_seconds() -> Histogram {
    Histogram::new([
        0.005, 0.05, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
    ])
}

/// `central_reports_total{writer}`, rejections by reason, and per-writer
/// attempts and time.
#[derive(Clone)]
pub struct ReportMetrics {
    pub reports: Family<WriterLabels, Counter>,
    pub rejections: Family<RejectionLabels, Counter>,
    pub attempts: Family<AttemptLabels, Counter>,
    pub seconds: Family<WriterLabels, Histogram, fn() -> Histogram>,
    /// Reports the fallback (GPT-4o) writer was asked for.
    pub fallback_requests: Counter,
}

impl Default for ReportMetrics {
    fn default() -> Self {
        ReportMetrics {
            reports: Family::default(),
            rejections: Family::default(),
            attempts: Family::default(),
            seconds: Family::new_with_constructor(writer_seconds),
            fallback_requests: Counter::default(),
        }
    }
}

impl ReportMetrics {
    /// Registers under `central_` in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "central_reports",
            "Reports stored, by the writer that produced them",
            self.reports.clone(),
        );
        registry.register(
            "central_report_rejections",
            "Drafts rejected by the grounding check, by writer and reason",
            self.rejections.clone(),
        );
        registry.register(
            "central_report_attempts",
            "Writers asked for a report, by outcome (accepted, rejected, error, skipped)",
            self.attempts.clone(),
        );
        registry.register(
            "central_report_writer_duration_seconds",
            "Time a writer took for one draft",
            self.seconds.clone(),
        );
        registry.register(
            "central_report_fallback_requests",
            "Reports the fallback (GPT-4o) writer was asked for, against its daily budget",
            self.fallback_requests.clone(),
        );
    }
}
