//! The worker role's Prometheus metrics (`central_worker_*`, `central_jobs_*`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResultLabels {
    pub(crate) result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StateLabels {
    pub(crate) state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct FindingLabels {
    pub(crate) source: &'static str,
    pub(crate) status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    pub(crate) outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CodeLabels {
    pub(crate) code: &'static str,
}

/// Handles to the worker's metrics; clones share the same values.
#[derive(Clone, Debug)]
pub struct WorkerMetrics {
    pub(crate) jobs: Family<ResultLabels, Counter>,
    pub(crate) job_seconds: Histogram,
    pub(crate) jobs_in_progress: Gauge,
    pub(crate) frames: Family<StateLabels, Counter>,
    pub(crate) findings: Family<FindingLabels, Counter>,
    pub(crate) plate_reads: Family<OutcomeLabels, Counter>,
    pub(crate) errors: Family<CodeLabels, Counter>,
    pub(crate) change_seconds: Histogram,
    pub(crate) closed_incomplete: Counter,
    // The queue as the store sees it: the autoscaling signal. Every worker
    // replica exports the same figures; dashboards take the max.
    pub(crate) queue_ready: Gauge,
    pub(crate) queue_scheduled: Gauge,
    pub(crate) queue_running: Gauge,
    pub(crate) queue_dead: Gauge,
    pub(crate) queue_oldest_age_ms: Gauge,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl WorkerMetrics {
    pub fn new() -> Self {
        Self {
            jobs: Family::default(),
            // 50 ms .. ~13 min: an inspection of a few frames on a GPU is
            // well under a second, a large one on CPU tens of seconds.
            job_seconds: Histogram::new(exponential_buckets(0.05, 2.0, 15)),
            jobs_in_progress: Gauge::default(),
            frames: Family::default(),
            findings: Family::default(),
            plate_reads: Family::default(),
            errors: Family::default(),
            change_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            closed_incomplete: Counter::default(),
            queue_ready: Gauge::default(),
            queue_scheduled: Gauge::default(),
            queue_running: Gauge::default(),
            queue_dead: Gauge::default(),
            queue_oldest_age_ms: Gauge::default(),
        }
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "central_worker_jobs",
            "Job attempts finished, by result (processed, retried, dead, deferred, images_missing, review_kept, lost_lease)",
            self.jobs.clone(),
        );
        registry.register(
            "central_worker_job_duration_seconds",
            "Time from claim to the end of an attempt",
            self.job_seconds.clone(),
        );
        registry.register(
            "central_worker_jobs_in_progress",
            "Jobs this worker holds now",
            self.jobs_in_progress.clone(),
        );
        registry.register(
            "central_worker_frames",
            "Frames processed, by state (ok, corrupt, rejected, missing)",
            self.frames.clone(),
        );
        registry.register(
            "central_worker_findings",
            "Findings stored, by source (model, change) and status",
            self.findings.clone(),
        );
        registry.register(
            "central_worker_plate_reads",
            "Plate read attempts, by outcome (read, unreadable, not_found)",
            self.plate_reads.clone(),
        );
        registry.register(
            "central_worker_errors",
            "Errors while processing, by code",
            self.errors.clone(),
        );
        registry.register(
            "central_worker_change_detection_duration_seconds",
            "Change detection per pickup/return frame pair",
            self.change_seconds.clone(),
        );
        registry.register(
            "central_inspections_closed_incomplete",
            "Inspections queued without all their events because their board had nothing more to send (its agent stopped mid-inspection, or frames were dropped on the board)",
            self.closed_incomplete.clone(),
        );
        registry.register(
            "central_jobs_ready",
            "Jobs due now and not held by a live lease (the worker autoscaling signal)",
            self.queue_ready.clone(),
        );
        registry.register(
            "central_jobs_scheduled",
            "Jobs queued for later (backing off after a failure, or waiting for images)",
            self.queue_scheduled.clone(),
        );
        registry.register(
            "central_jobs_running",
            "Jobs held by a worker's lease",
            self.queue_running.clone(),
        );
        registry.register(
            "central_jobs_dead",
            "Jobs that failed every attempt (dead-lettered), kept for operators",
            self.queue_dead.clone(),
        );
        registry.register(
            "central_jobs_oldest_ready_age_milliseconds",
            "Age of the oldest ready job since it was enqueued; 0 when none",
            self.queue_oldest_age_ms.clone(),
        );
    }

    pub(crate) fn job(&self, result: &'static str) {
        self.jobs.get_or_create(&ResultLabels { result }).inc();
    }

    pub(crate) fn error(&self, code: &'static str) {
        self.errors.get_or_create(&CodeLabels { code }).inc();
    }
}
