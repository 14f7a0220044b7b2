//! Prometheus metrics of the inspection session tracker (`edge_session_*`).

use inspection_core::wire::CompletionReason;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// Label of `edge_session_inspections_started_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabels {
    /// `detection` or `command`.
    pub trigger: &'static str,
}

/// Label of `edge_session_inspections_completed_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// The completion reason in its wire spelling, e.g. `vehicle_left`.
    pub reason: &'static str,
}

/// Labels of `edge_session_observations_ignored_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IgnoredLabels {
    /// `unknown_camera`, `out_of_order` or `shut_down`.
    pub reason: &'static str,
}

/// Labels of `edge_session_commands_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    /// `start`, `stop` or `shutdown`.
    pub command: &'static str,
    /// `applied` or `ignored` (a start while busy, a stop of nothing, a
    /// repeated command id).
    pub outcome: &'static str,
}

/// Every completion reason with its label value.
pub(crate) const REASONS: [(CompletionReason, &str); 4] = [
    (CompletionReason::VehicleLeft, "vehicle_left"),
    (CompletionReason::Command, "command"),
    (CompletionReason::Timeout, "timeout"),
    (CompletionReason::Shutdown, "shutdown"),
];

/// The label value of a completion reason (its wire spelling).
pub fn reason_label(reason: CompletionReason) -> &'static str {
    match reason {
        CompletionReason::VehicleLeft => "vehicle_left",
        CompletionReason::Command => "command",
        CompletionReason::Timeout => "timeout",
        CompletionReason::Shutdown => "shutdown",
    }
}

/// The tracker's metrics. Clones share the same underlying values, so the
/// pipeline can keep one set across tracker rebuilds (config reloads).
#[derive(Debug, Clone)]
pub struct SessionMetrics {
    /// `edge_session_inspections_started_total{trigger}`.
    pub started: Family<TriggerLabels, Counter>,
    /// `edge_session_inspections_completed_total{reason}`.
    pub completed: Family<ReasonLabels, Counter>,
    /// `edge_session_frames_selected_total`: frames shipped as `frame_selected`.
    pub frames_selected: Counter,
    /// `edge_session_observations_ignored_total{reason}`.
    pub ignored: Family<IgnoredLabels, Counter>,
    /// `edge_session_commands_total{command, outcome}`.
    pub commands: Family<CommandLabels, Counter>,
    /// `edge_session_active`: 1 while an inspection runs, else 0.
    pub active: Gauge,
    /// `edge_session_inspection_duration_seconds`: from start to completion.
    pub duration: Histogram,
}

impl Default for SessionMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl SessionMetrics {
    /// Fresh metrics with every label value pre-created, so dashboards show
    /// zeros instead of gaps.
    pub fn new() -> Self {
        let m = Self {
            started: Family::default(),
            completed: Family::default(),
            frames_selected: Counter::default(),
            ignored: Family::default(),
            commands: Family::default(),
            active: Gauge::default(),
            // 5 s to about 21 min: quick manual stops up to past the
            // 10-minute default maximum duration.
            duration: Histogram::new(exponential_buckets(5.0, 2.0, 9)),
        };
        for trigger in ["detection", "command"] {
            let _ = m.started.get_or_create(&TriggerLabels { trigger });
        }
        for (_, reason) in REASONS {
            let _ = m.completed.get_or_create(&ReasonLabels { reason });
        }
        for reason in ["unknown_camera", "out_of_order", "shut_down"] {
            let _ = m.ignored.get_or_create(&IgnoredLabels { reason });
        }
        for command in ["start", "stop", "shutdown"] {
            for outcome in ["applied", "ignored"] {
                let _ = m
                    .commands
                    .get_or_create(&CommandLabels { command, outcome });
            }
        }
        m
    }

    /// Adds every metric to `registry` (the handles are shared, not copied).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "edge_session_inspections_started",
            "Inspections started, by what started them",
            self.started.clone(),
        );
        registry.register(
            "edge_session_inspections_completed",
            "Inspections completed, by reason",
            self.completed.clone(),
        );
        registry.register(
            "edge_session_frames_selected",
            "Frames selected for shipping across all inspections",
            self.frames_selected.clone(),
        );
        registry.register(
            "edge_session_observations_ignored",
            "Frames the session tracker ignored, by reason",
            self.ignored.clone(),
        );
        registry.register(
            "edge_session_commands",
            "Session commands received, by command and whether they were applied",
            self.commands.clone(),
        );
        registry.register(
            "edge_session_active",
            "1 while an inspection is running",
            self.active.clone(),
        );
        registry.register_with_unit(
            "edge_session_inspection_duration",
            "Duration of completed inspections",
            Unit::Seconds,
            self.duration.clone(),
        );
    }

    pub(crate) fn command(&self, command: &'static str, applied: bool) {
        let outcome = if applied { "applied" } else { "ignored" };
        self.commands
            .get_or_create(&CommandLabels { command, outcome })
            .inc();
    }

    pub(crate) fn ignored(&self, reason: &'static str) {
        self.ignored.get_or_create(&IgnoredLabels { reason }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_names_follow_prometheus_conventions() {
        let metrics = SessionMetrics::new();
        metrics.frames_selected.inc_by(2);
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "edge_session_inspections_started_total{trigger=\"detection\"} 0",
            "edge_session_inspections_completed_total{reason=\"vehicle_left\"} 0",
            "edge_session_frames_selected_total 2",
            "edge_session_observations_ignored_total{reason=\"out_of_order\"} 0",
            "edge_session_commands_total{command=\"stop\",outcome=\"ignored\"} 0",
            "edge_session_active 0",
            "edge_session_inspection_duration_seconds_count 0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn reason_labels_match_the_wire_spelling() {
        for (reason, label) in REASONS {
            assert_eq!(reason_label(reason), label);
            assert_eq!(serde_json::to_value(reason).unwrap(), label);
        }
    }
}
