//! The worker loop: claim, heartbeat, process, settle; never ends on an error.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use object_store::ObjectStore;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::pipeline::{self, Components, Outcome, ProcessError};
use super::{WorkerConfig, WorkerMetrics};
use crate::fleet::clamp;
use crate::store::{InspectionStatus, Job, JobState, Store, StoreError};

/// How often the queue figures are read for the metrics.
const STATS_INTERVAL: Duration = Duration::from_secs(5);

/// How often, at most, the store is asked for incomplete inspections.
const CLOSE_INCOMPLETE_INTERVAL: Duration = Duration::from_secs(60);

/// Below this `close_incomplete_after_s` the worker warns at start.
const SHORT_CLOSE_INCOMPLETE: Duration = Duration::from_secs(900);

/// Most inspections closed per look.
const CLOSE_INCOMPLETE_BATCH: u32 = 500;

/// Back-off after the store itself failed while claiming or settling.
const STORE_BACKOFF: Duration = Duration::from_secs(2);

/// A worker: `concurrency` claim loops over one store.
pub struct Worker {
    inner: Arc<Inner>,
}

struct Inner {
    config: WorkerConfig,
    id: String,
    store: Arc<dyn Store>,
    images: Arc<dyn ObjectStore>,
    components: Components,
    metrics: WorkerMetrics,
}

impl Worker {
    pub fn new(
        config: WorkerConfig,
        store: Arc<dyn Store>,
        images: Arc<dyn ObjectStore>,
        components: Components,
        metrics: WorkerMetrics,
    ) -> Worker {
        let id = config.worker_id();
        Worker {
            inner: Arc::new(Inner {
                config,
                id,
                store,
                images,
                components,
                metrics,
            }),
        }
    }

    /// The id this worker leases jobs under.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// Runs until `shutdown` becomes true. A job in progress at shutdown is
    /// finished first (its lease keeps it ours meanwhile); a process killed
    /// instead leaves it to be claimed again when the lease ends.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        tracing::info!(
            worker = %self.inner.id,
            concurrency = self.inner.config.concurrency,
            damage_model = self.inner.components.damage.as_ref().map(|d| d.info().id.as_str()).unwrap_or("none"),
            plates = self.inner.components.plate_reader.is_some(),
            "worker started"
        );
        let mut loops = JoinSet::new();
        for slot in 0..self.inner.config.concurrency {
            let inner = self.inner.clone();
            let shutdown = shutdown.clone();
            loops.spawn(async move { inner.claim_loop(slot, shutdown).await });
        }
        let inner = self.inner.clone();
        let stats_shutdown = shutdown.clone();
        loops.spawn(async move { inner.stats_loop(stats_shutdown).await });
        if let Some(grace) = self.inner.config.close_incomplete_after() {
            if grace < SHORT_CLOSE_INCOMPLETE {
                tracing::warn!(
                    worker = %self.inner.id,
                    close_incomplete_after_s = grace.as_secs(),
                    "close_incomplete_after_s is shorter than the boards' default longest inspection (max_duration_seconds 600) with a margin: an inspection still running on a board may be closed early"
                );
            }
            let inner = self.inner.clone();
            let shutdown = shutdown.clone();
            loops.spawn(async move { inner.close_incomplete_loop(grace, shutdown).await });
        }
        while loops.join_next().await.is_some() {}
        tracing::info!(worker = %self.inner.id, "worker stopped");
    }
}

impl Inner {
    async fn claim_loop(&self, slot: usize, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            let wait = match self
                .store
                .claim_job(&self.id, self.config.lease(), Utc::now())
                .await
            {
                Ok(Some(job)) => {
                    self.run_job(job).await;
                    continue;
                }
                Ok(None) => self.config.poll_interval(),
                Err(e) => {
                    self.metrics.error("store");
                    tracing::warn!(worker = %self.id, slot, error = %e, "cannot claim a job");
                    STORE_BACKOFF
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }

    async fn run_job(&self, job: Job) {
        let started = Instant::now();
        self.metrics.jobs_in_progress.inc();
        tracing::info!(
            worker = %self.id,
            job = %job.id,
            inspection = %job.inspection_id,
            attempt = job.attempt,
            "job claimed"
        );
        // The heartbeat runs beside the work, in the same task (a worker
        // that dies stops both); losing the lease (another worker took the
        // job after ours expired) abandons the attempt.
        let heartbeat = async {
            loop {
                tokio::time::sleep(self.config.heartbeat()).await;
                match self
                    .store
                    .heartbeat_job(job.id, &self.id, self.config.lease(), Utc::now())
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => return,
                    // A failed heartbeat is retried at the next tick; the
                    // lease is long enough to survive a few.
                    Err(e) => tracing::warn!(job = %job.id, error = %e, "heartbeat failed"),
                }
            }
        };
        let ctx = pipeline::Context {
            config: &self.config,
            worker_id: &self.id,
            store: &self.store,
            images: &self.images,
            components: &self.components,
            metrics: &self.metrics,
        };
        let work = pipeline::process(&ctx, job.inspection_id, job.enqueued_at, Utc::now());
        let outcome = tokio::select! {
            outcome = work => Some(outcome),
            () = heartbeat => None,
        };
        match outcome {
            None => {
                self.metrics.job("lost_lease");
                tracing::warn!(job = %job.id, "lease lost to another worker; attempt abandoned");
            }
            Some(outcome) => {
                let result = self.settle(&job, outcome).await;
                self.metrics.job(result);
            }
        }
        self.metrics
            .job_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.jobs_in_progress.dec();
    }

    /// Records the attempt's end in the store; returns the metric label.
    async fn settle(&self, job: &Job, outcome: Result<Outcome, ProcessError>) -> &'static str {
        let now = Utc::now();
        let settled: Result<&'static str, StoreError> = async {
            match outcome {
                Ok(Outcome::Processed(result)) => {
                    tracing::info!(
                        job = %job.id,
                        inspection = %job.inspection_id,
                        findings = result.findings.len(),
                        new = result.summary.new,
                        possible_new_damage = result.summary.possible_new_damage,
                        plate_read = result.plate.is_some(),
                        // A keyed hash, never the plate (DATA-PROTECTION.md).
                        vehicle = result.plate.as_ref().map(|p| tracing::field::display(crate::privacy::vehicle_tag(&p.plate))),
                        "inspection processed"
                    );
                    self.store.complete_job(job.id, &self.id, now).await?;
                    Ok("processed")
                }
                Ok(Outcome::WaitForImages { missing }) => {
                    let until = now
                        + chrono::Duration::seconds(self.config.image_recheck_s as i64);
                    let reason = missing_text(&missing);
                    tracing::info!(job = %job.id, inspection = %job.inspection_id, %reason, "waiting for images");
                    self.store
                        .defer_job(job.id, &self.id, until, &reason, now)
                        .await?;
                    Ok("deferred")
                }
                Ok(Outcome::ImagesMissing { missing }) => {
                    let reason = missing_text(&missing);
                    tracing::warn!(job = %job.id, inspection = %job.inspection_id, %reason, "images still missing; inspection not processed");
                    self.store
                        .set_inspection_status(
                            job.inspection_id,
                            InspectionStatus::ImagesMissing,
                            Some(&reason),
                            now,
                        )
                        .await?;
                    self.store.complete_job(job.id, &self.id, now).await?;
                    Ok("images_missing")
                }
                Ok(Outcome::ReviewKept { reason }) => {
                    tracing::warn!(job = %job.id, inspection = %job.inspection_id, %reason, "inspection not reprocessed: staff decisions are kept, and so is its stored result");
                    // The claim made it `processing`; its result is the
                    // processed one it had.
                    self.store
                        .set_inspection_status(
                            job.inspection_id,
                            InspectionStatus::Processed,
                            None,
                            now,
                        )
                        .await?;
                    self.store.complete_job(job.id, &self.id, now).await?;
                    Ok("review_kept")
                }
                Err(e) => {
                    self.metrics.error(e.code());
                    let retry_at = now
                        + chrono::Duration::from_std(self.config.retry_delay(job.attempt))
                            .unwrap_or_else(|_| chrono::Duration::seconds(60));
                    let error = format!("{}: {e}", e.code());
                    let state = self
                        .store
                        .fail_job(job.id, &self.id, &error, retry_at, now)
                        .await?;
                    Ok(match state {
                        Some(JobState::Dead) => {
                            tracing::error!(job = %job.id, inspection = %job.inspection_id, attempt = job.attempt, %error, "job failed for the last time; dead-lettered");
                            "dead"
                        }
                        _ => {
                            tracing::warn!(job = %job.id, inspection = %job.inspection_id, attempt = job.attempt, %error, %retry_at, "job failed; will retry");
                            "retried"
                        }
                    })
                }
            }
        }
        .await;
        match settled {
            Ok(label) => label,
            Err(e) => {
                // The attempt's end could not be written: the lease runs out
                // and the job is claimed again, so nothing is lost.
                self.metrics.error("store");
                tracing::warn!(job = %job.id, error = %e, "cannot record the end of a job; it will be retried after its lease");
                "unrecorded"
            }
        }
    }

    /// Queues the inspections their boards can no longer complete (see
    /// `Store::close_incomplete`). Every replica runs it: closing is one
    /// conditional update per inspection, so two never close one twice.
    async fn close_incomplete_loop(&self, grace: Duration, mut shutdown: watch::Receiver<bool>) {
        let every = (grace / 4).clamp(Duration::from_secs(1), CLOSE_INCOMPLETE_INTERVAL);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            match self
                .store
                .close_incomplete(grace, Utc::now(), CLOSE_INCOMPLETE_BATCH)
                .await
            {
                Ok(closed) => {
                    for c in &closed {
                        self.metrics.closed_incomplete.inc();
                        tracing::warn!(
                            worker = %self.id,
                            inspection = %c.id,
                            site = %c.site,
                            device = %c.device,
                            frames_received = c.frames_received,
                            frames_expected = ?c.frames_expected,
                            "inspection closed incomplete: its board has nothing more to send; processing what arrived"
                        );
                    }
                }
                Err(e) => {
                    self.metrics.error("store");
                    tracing::warn!(worker = %self.id, error = %e, "cannot look for incomplete inspections");
                }
            }
        }
    }

    async fn stats_loop(&self, mut shutdown: watch::Receiver<bool>) {
        loop {
            match self.store.job_stats(Utc::now()).await {
                Ok(stats) => {
                    let m = &self.metrics;
                    m.queue_ready.set(clamp(stats.ready));
                    m.queue_scheduled.set(clamp(stats.scheduled));
                    m.queue_running.set(clamp(stats.running));
                    m.queue_dead.set(clamp(stats.dead));
                    m.queue_oldest_age_ms.set(
                        stats
                            .oldest_ready_age
                            .map_or(0, |a| a.as_millis().min(i64::MAX as u128) as i64),
                    );
                }
                Err(e) => {
                    self.metrics.error("store");
                    tracing::debug!(error = %e, "cannot read queue figures");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(STATS_INTERVAL) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }
}

/// "3 images missing: ab12…, cd34…" — short enough for a status line.
fn missing_text(missing: &[String]) -> String {
    let shown: Vec<String> = missing
        .iter()
        .take(4)
        .map(|s| s.chars().take(12).collect())
        .collect();
    let more = missing.len().saturating_sub(shown.len());
    let mut text = format!(
        "{} image{} missing: {}",
        missing.len(),
        if missing.len() == 1 { "" } else { "s" },
        shown.join(", ")
    );
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    text
}
