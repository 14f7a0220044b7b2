//! `BatchingDetector`: concurrent `detect` calls on one model gathered into
//! batches.
//!
//! ```text
//! DESIGN
//!
//! callers (any number of tasks)            runner (one OS thread per model)
//!   letterbox on a blocking thread    ->    bounded queue (`queue`)
//!   try_send, or Overloaded at once         take the first request (blocking)
//!   await the oneshot answer          <-    gather up to `max_batch`, waiting at
//!                                           most `max_wait_ms` after the first
//!                                           one session.run, decode, answer each
//! ```
//!
//! Letterboxing happens in the callers (in parallel, off the runner), so the
//! runner only feeds ONNX Runtime and decodes. The queue is bounded: a
//! request that finds it full gets `DetectError::Overloaded` immediately,
//! which the `inference` role answers as 503 with `Retry-After`, instead of
//! letting latency grow without bound. The runner thread ends when the
//! detector is dropped (the queue's sender goes away). A panic inside a run
//! fails that batch's callers, not the runner.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use image::RgbImage;
use inspection_core::yolo::Detection;
use tokio::sync::oneshot;

use super::metrics::{BatchLabels, DetectMetrics, ModelLabels};
use super::onnx::{OnnxDetector, Prepared, Provider};
use super::{DetectError, Detector, DetectorConfig, ModelInfo};

/// How one answered request ran.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchRun {
    /// Images in the `session.run` this one was part of.
    pub batch_size: usize,
    /// Duration of that run (ONNX Runtime and decoding).
    pub run: Duration,
    /// Time this request waited in the queue.
    pub waited: Duration,
}

struct Request {
    prepared: Prepared,
    enqueued: Instant,
    reply: oneshot::Sender<Result<(Vec<Detection>, BatchRun), DetectError>>,
}

/// A model with a batching runner in front of it. Cheap to share (`Arc`).
pub struct BatchingDetector {
    name: String,
    detector: Arc<OnnxDetector>,
    queue: SyncSender<Request>,
    queue_bound: usize,
    max_batch: usize,
    metrics: DetectMetrics,
}

impl std::fmt::Debug for BatchingDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchingDetector")
            .field("name", &self.name)
            .field("detector", &self.detector)
            .field("max_batch", &self.max_batch)
            .field("queue", &self.queue_bound)
            .finish()
    }
}

impl BatchingDetector {
    /// Starts the runner for `detector`, named `name` in metrics and logs,
    /// with `config`'s `max_batch`, `max_wait_ms` and `queue`.
    pub fn new(
        name: &str,
        detector: OnnxDetector,
        config: &DetectorConfig,
        metrics: DetectMetrics,
    ) -> Result<Self, DetectError> {
        let detector = Arc::new(detector);
        let queue_bound = config.queue.max(1);
        // A fixed-batch export runs images one by one anyway; gathering them
        // would only add `max_wait_ms` of latency.
        let max_batch = if detector.dynamic_batch() {
            config.max_batch.max(1)
        } else {
            1
        };
        let (tx, rx) = sync_channel(queue_bound);
        let runner = Runner {
            name: name.to_owned(),
            detector: detector.clone(),
            max_batch,
            max_wait: Duration::from_millis(config.max_wait_ms),
            metrics: metrics.clone(),
        };
        std::thread::Builder::new()
            .name(format!("detect-{name}"))
            .spawn(move || runner.run(rx))
            .map_err(|e| DetectError::Unavailable {
                model: name.to_owned(),
                reason: format!("cannot start the runner thread: {e}"),
            })?;
        tracing::info!(
            model = name,
            id = %detector.info().id,
            provider = %detector.provider(),
            max_batch,
            max_wait_ms = config.max_wait_ms,
            queue = queue_bound,
            "detector ready"
        );
        Ok(Self {
            name: name.to_owned(),
            detector,
            queue: tx,
            queue_bound,
            max_batch,
            metrics,
        })
    }

    /// The configured name (the metrics' `model` label).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn provider(&self) -> Provider {
        self.detector.provider()
    }

    /// Largest batch the runner forms (1 for a fixed-batch model).
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// The loaded model, e.g. for the benchmark's bare runs.
    pub fn onnx(&self) -> &Arc<OnnxDetector> {
        &self.detector
    }

    /// Detects in `image` and says how the run went (batch size, times).
    pub async fn detect_timed(
        &self,
        image: Arc<RgbImage>,
    ) -> Result<(Vec<Detection>, BatchRun), DetectError> {
        let detector = self.detector.clone();
        let prepared = tokio::task::spawn_blocking(move || detector.prepare(&image))
            .await
            .map_err(|e| DetectError::Inference(format!("letterbox task: {e}")))??;
        let (reply, answer) = oneshot::channel();
        let request = Request {
            prepared,
            enqueued: Instant::now(),
            reply,
        };
        // Cloned out of the family: holding its guard would block the
        // registration of other labels (and an encode) meanwhile.
        let depth = self
            .metrics
            .queue_depth
            .get_or_create(&ModelLabels {
                model: self.name.clone(),
            })
            .clone();
        // Counted before the send so the runner's decrement never precedes it.
        depth.inc();
        match self.queue.try_send(request) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                depth.dec();
                self.metrics.image(&self.name, "overloaded");
                return Err(DetectError::Overloaded {
                    model: self.name.clone(),
                    queue: self.queue_bound,
                });
            }
            Err(TrySendError::Disconnected(_)) => {
                depth.dec();
                return Err(self.stopped());
            }
        }
        answer.await.map_err(|_| self.stopped())?
    }

    fn stopped(&self) -> DetectError {
        DetectError::Unavailable {
            model: self.name.clone(),
            reason: "the runner stopped".into(),
        }
    }
}

#[async_trait]
impl Detector for BatchingDetector {
    fn info(&self) -> &ModelInfo {
        self.detector.info()
    }

    async fn detect(&self, image: Arc<RgbImage>) -> Result<Vec<Detection>, DetectError> {
        Ok(self.detect_timed(image).await?.0)
    }
}

struct Runner {
    name: String,
    detector: Arc<OnnxDetector>,
    max_batch: usize,
    max_wait: Duration,
    metrics: DetectMetrics,
}

impl Runner {
    fn run(self, rx: Receiver<Request>) {
        let depth = self
            .metrics
            .queue_depth
            .get_or_create(&ModelLabels {
                model: self.name.clone(),
            })
            .clone();
        // Ends when every sender (the detector) is gone.
        while let Ok(first) = rx.recv() {
            depth.dec();
            let deadline = Instant::now() + self.max_wait;
            let mut batch = vec![first];
            while batch.len() < self.max_batch {
                // Take what is already queued without waiting, then wait
                // until the deadline for the rest.
                let next = match rx.try_recv() {
                    Ok(r) => Ok(r),
                    Err(_) => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        rx.recv_timeout(left)
                    }
                };
                match next {
                    Ok(r) => {
                        depth.dec();
                        batch.push(r);
                    }
                    Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            self.run_batch(batch);
        }
        tracing::debug!(model = %self.name, "detector runner stopped");
    }

    fn run_batch(&self, batch: Vec<Request>) {
        let n = batch.len();
        let started = Instant::now();
        let (items, replies): (Vec<Prepared>, Vec<_>) = batch
            .into_iter()
            .map(|r| (r.prepared, (r.reply, r.enqueued)))
            .unzip();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.detector.run_prepared(&items)
        }))
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(model = %self.name, panic = %what, "detection panicked");
            Err(DetectError::Inference(format!(
                "detection panicked: {what}"
            )))
        });
        let run = started.elapsed();
        let labels = BatchLabels {
            model: self.name.clone(),
            batch_size: n as u32,
        };
        self.metrics
            .duration
            .get_or_create(&labels)
            .observe(run.as_secs_f64());
        self.metrics.batches.get_or_create(&labels).inc();
        let wait = self
            .metrics
            .queue_wait
            .get_or_create(&ModelLabels {
                model: self.name.clone(),
            })
            .clone();
        match result {
            Ok(all) if all.len() == n => {
                for ((reply, enqueued), detections) in replies.into_iter().zip(all) {
                    let waited = started.saturating_duration_since(enqueued);
                    wait.observe(waited.as_secs_f64());
                    self.metrics.image(&self.name, "ok");
                    let stats = BatchRun {
                        batch_size: n,
                        run,
                        waited,
                    };
                    // The caller may have gone (request cancelled): fine.
                    let _ = reply.send(Ok((detections, stats)));
                }
            }
            other => {
                let message = match other {
                    Err(e) => e.to_string(),
                    Ok(all) => format!("{} results for {n} images", all.len()),
                };
                tracing::warn!(model = %self.name, batch = n, error = %message, "detection failed");
                for (reply, _) in replies {
                    self.metrics.image(&self.name, "error");
                    let _ = reply.send(Err(DetectError::Inference(message.clone())));
                }
            }
        }
    }
}
