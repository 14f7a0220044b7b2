//! `[worker]`: how the worker claims jobs and what it runs on each frame.

use std::time::Duration;

use inspection_core::compare::ChangeConfig;
use inspection_core::quality::QualityThresholds;
use serde::Deserialize;

use crate::config::valid_instance_id;
use crate::detect::DetectionSource;

/// `[worker]`. Every key has a default, so an absent section is valid.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// This worker's name in job leases and the audit log. Default: the
    /// `HOSTNAME` environment variable (the pod name in Kubernetes), else
    /// `worker`. Two live workers must not share a name.
    pub id: Option<String>,
    /// Jobs processed at once. Default 1: one inspection already runs its
    /// frames' detections concurrently, and a pod is scaled by replicas.
    pub concurrency: usize,
    /// How often an idle worker asks for a job, in milliseconds. Default 500.
    pub poll_interval_ms: u64,
    /// How long a claimed job stays this worker's without a heartbeat, in
    /// seconds. Default 120: a killed worker's job is retried by another
    /// after at most this long. It must exceed `heartbeat_s` by a margin.
    pub lease_s: u64,
    /// Heartbeat interval while a job runs, in seconds. Default 20.
    pub heartbeat_s: u64,
    /// First retry delay after a failed attempt, in seconds; doubled each
    /// attempt up to `retry_max_s`, with full jitter. Default 15.
    pub retry_base_s: u64,
    /// Default 900 (15 minutes).
    pub retry_max_s: u64,
    /// How long an inspection may wait for images that are not yet in the
    /// object store (the device uploads them after the events), in seconds,
    /// counted from the job's enqueue time. After it the inspection becomes
    /// `images_missing`. Default 3600: a board whose uplink is down keeps
    /// its images until it is back, and most outages are shorter.
    pub image_wait_s: u64,
    /// How often a waiting inspection is checked again, in seconds. Default 30.
    pub image_recheck_s: u64,
    /// After how long an inspection its board can no longer complete is
    /// processed with what arrived, in seconds (0: never). Default 1800.
    /// It must exceed the boards' longest inspection (`[session]
    /// max_duration_seconds`, 600 by default): the board's own telemetry,
    /// taken this long after the inspection started, must report an empty
    /// outbox (the store's INSPECTION STATUS). Such an inspection is
    /// processed as usual and its status detail says what was missing.
    pub close_incomplete_after_s: u64,
    /// Frames of a camera position the comparison uses (best first).
    /// Default 1: the best frame of each position.
    pub frames_per_position: u32,
    /// Least vehicle-relative IoU for a return finding to match a pickup
    /// finding of the same class. Default 0.3: the car is never in exactly
    /// the same place and boxes of one dent differ between two photos.
    pub match_min_iou: f32,
    /// Central's re-check of frame quality (the edge gate already ran; this
    /// catches a misconfigured board). Same keys as the edge's `[quality]`.
    pub quality: QualityThresholds,
    /// Where damage detection runs: `{ kind = "local", model = "damage" }`
    /// (the `[detectors.damage]` model, in this process, batched) or
    /// `{ kind = "remote", url = "https://inference:8444", model = "damage" }`
    /// (the inference role). Default: local when `[detectors.damage]` is
    /// configured, else none (no damage model ships with the project; change
    /// detection still runs).
    pub damage: Option<DetectionSource>,
    /// Where plate detection runs, as for `damage`. Default: local when
    /// `[detectors.plate]` is configured, else plates are read by the
    /// text-detection fallback alone.
    pub plate: Option<DetectionSource>,
    /// Model-free change detection between pickup and return frames
    /// (`[worker.change]`, `[worker.change.align]`).
    pub change: ChangeConfig,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            id: None,
            concurrency: 1,
            poll_interval_ms: 500,
            lease_s: 120,
            heartbeat_s: 20,
            retry_base_s: 15,
            retry_max_s: 900,
            image_wait_s: 3600,
            image_recheck_s: 30,
            close_incomplete_after_s: 1800,
            frames_per_position: 1,
            match_min_iou: 0.3,
            quality: QualityThresholds::default(),
            damage: None,
            plate: None,
            change: ChangeConfig::default(),
        }
    }
}

impl WorkerConfig {
    /// The worker's id (see [`WorkerConfig::id`]).
    pub fn worker_id(&self) -> String {
        self.id
            .clone()
            .or_else(|| {
                std::env::var("HOSTNAME")
                    .ok()
                    .filter(|h| valid_instance_id(h))
            })
            .unwrap_or_else(|| "worker".to_owned())
    }

    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_s)
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_s)
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }

    /// `close_incomplete_after_s`, `None` when off.
    pub fn close_incomplete_after(&self) -> Option<Duration> {
        (self.close_incomplete_after_s > 0)
            .then(|| Duration::from_secs(self.close_incomplete_after_s))
    }

    /// The damage model's source: as configured, else the local `damage`
    /// detector when `has_local` says one is configured.
    pub fn damage_source(&self, has_local: impl Fn(&str) -> bool) -> Option<DetectionSource> {
        self.damage.clone().or_else(|| {
            has_local("damage").then(|| DetectionSource::Local {
                model: "damage".into(),
            })
        })
    }

    /// The plate detector's source, as for [`WorkerConfig::damage_source`].
    pub fn plate_source(&self, has_local: impl Fn(&str) -> bool) -> Option<DetectionSource> {
        self.plate.clone().or_else(|| {
            has_local("plate").then(|| DetectionSource::Local {
                model: "plate".into(),
            })
        })
    }

    /// Every problem with the values as written, each prefixed by `at`.
    /// `local_models` are the configured `[detectors.*]` names.
    pub fn problems(&self, at: &str, check_files: bool, local_models: &[&str]) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, source) in [("damage", &self.damage), ("plate", &self.plate)] {
            if let Some(source) = source {
                problems.extend(source.problems(&format!("{at}.{key}"), check_files, local_models));
            }
        }
        if let Err(errors) = self.change.validate() {
            problems.extend(errors.into_iter().map(|e| format!("{at}.change: {e}")));
        }
        if let Some(id) = &self.id
            && !valid_instance_id(id)
        {
            problems.push(format!("{at}.id: {id:?} must be 1-64 of A-Z a-z 0-9 - _ ."));
        }
        if !(1..=64).contains(&self.concurrency) {
            problems.push(format!("{at}.concurrency: must be between 1 and 64"));
        }
        if !(10..=60_000).contains(&self.poll_interval_ms) {
            problems.push(format!(
                "{at}.poll_interval_ms: must be between 10 and 60000"
            ));
        }
        if !(1..=3600).contains(&self.heartbeat_s) {
            problems.push(format!("{at}.heartbeat_s: must be between 1 and 3600"));
        }
        if self.lease_s < self.heartbeat_s.saturating_mul(2) || self.lease_s > 86_400 {
            problems.push(format!(
                "{at}.lease_s: must be at least twice heartbeat_s ({}) and at most 86400",
                self.heartbeat_s
            ));
        }
        if self.retry_base_s == 0 || self.retry_base_s > self.retry_max_s {
            problems.push(format!(
                "{at}.retry_base_s: must be at least 1 and at most retry_max_s"
            ));
        }
        if self.retry_max_s > 86_400 {
            problems.push(format!("{at}.retry_max_s: must be at most 86400"));
        }
        if self.image_wait_s > 7 * 86_400 {
            problems.push(format!("{at}.image_wait_s: must be at most 7 days"));
        }
        if !(1..=3600).contains(&self.image_recheck_s) {
            problems.push(format!("{at}.image_recheck_s: must be between 1 and 3600"));
        }
        if self.close_incomplete_after_s > 30 * 86_400 {
            problems.push(format!(
                "{at}.close_incomplete_after_s: must be at most 30 days (0 turns it off)"
            ));
        }
        if !(1..=16).contains(&self.frames_per_position) {
            problems.push(format!(
                "{at}.frames_per_position: must be between 1 and 16"
            ));
        }
        if !(self.match_min_iou > 0.0 && self.match_min_iou <= 1.0) {
            problems.push(format!("{at}.match_min_iou: must be in (0, 1]"));
        }
        if let Err(errors) = self.quality.validate() {
            problems.extend(errors.into_iter().map(|e| format!("{at}.quality: {e}")));
        }
        problems
    }

    /// The delay before attempt `attempt + 1` after `attempt` failed:
    /// exponential from `retry_base_s`, capped, with full jitter.
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        let exp = self
            .retry_base_s
            .saturating_mul(1u64 << attempt.saturating_sub(1).min(20))
            .min(self.retry_max_s);
        let jittered = rand::random_range(exp / 2..=exp.max(1));
        Duration::from_secs(jittered.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(
            WorkerConfig::default().problems("worker", false, &[]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let config = WorkerConfig {
            id: Some("a b".into()),
            concurrency: 0,
            lease_s: 10,
            heartbeat_s: 20,
            match_min_iou: 0.0,
            ..WorkerConfig::default()
        };
        let problems = config.problems("worker", false, &[]);
        for key in [
            "worker.id",
            "worker.concurrency",
            "worker.lease_s",
            "worker.match_min_iou",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(key)),
                "{key} missing in {problems:?}"
            );
        }
    }

    #[test]
    fn retry_delay_grows_and_is_capped() {
        let config = WorkerConfig {
            retry_base_s: 10,
            retry_max_s: 100,
            ..WorkerConfig::default()
        };
        for _ in 0..50 {
            let first = config.retry_delay(1).as_secs();
            assert!((5..=10).contains(&first), "{first}");
            let late = config.retry_delay(12).as_secs();
            assert!((50..=100).contains(&late), "{late}");
        }
    }
}
