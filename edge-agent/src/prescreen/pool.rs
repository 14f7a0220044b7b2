//! Running the blocking pre-screen from async code, a bounded number at once.

use std::sync::Arc;

use image::RgbImage;
use inspection_core::yolo::Detection;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Semaphore;

use super::{PrescreenError, Prescreener};

/// A [`Prescreener`] behind a semaphore of `threads` permits, each frame run
/// with `spawn_blocking` so inference never stalls the async runtime.
/// Callers beyond `threads` wait for a slot; the pipeline keeps that queue
/// short by dropping frames at capture. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PrescreenPool {
    prescreener: Arc<Prescreener>,
    permits: Arc<Semaphore>,
    threads: usize,
}

/// Increments a gauge now and decrements it when dropped, so a cancelled
/// caller or a panicking worker cannot leave it counting.
struct GaugeGuard(Gauge);

impl GaugeGuard {
    fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl PrescreenPool {
    /// A pool allowing `threads` frames in inference at once (at least 1).
    pub fn new(prescreener: Arc<Prescreener>, threads: usize) -> Self {
        let threads = threads.max(1);
        Self {
            prescreener,
            permits: Arc::new(Semaphore::new(threads)),
            threads,
        }
    }

    /// The model this pool runs.
    pub fn prescreener(&self) -> &Arc<Prescreener> {
        &self.prescreener
    }

    /// How many frames may be in inference at once.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Free inference slots now: 0 means a new frame would wait.
    pub fn idle_slots(&self) -> usize {
        self.permits.available_permits()
    }

    /// Screens `image` on the blocking pool once a slot is free. Dropping
    /// the future while it waits gives up the place in the queue; dropping
    /// it during inference lets the inference finish (it cannot be
    /// interrupted) and frees the slot then.
    pub async fn detect(&self, image: Arc<RgbImage>) -> Result<Vec<Detection>, PrescreenError> {
        let metrics = self.prescreener.metrics().clone();
        let permit = {
            let _waiting = GaugeGuard::new(&metrics.waiting);
            self.permits.clone().acquire_owned().await
        }
        .map_err(|_| PrescreenError::Worker("the pool is closed".into()))?;
        let prescreener = Arc::clone(&self.prescreener);
        let in_flight = metrics.in_flight.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _in_flight = GaugeGuard::new(&in_flight);
            prescreener.detect(&image)
        })
        .await;
        joined.unwrap_or_else(|e| {
            let error = PrescreenError::Worker(e.to_string());
            metrics.error(error.code());
            tracing::error!(%error, "pre-screen worker failed");
            Err(error)
        })
    }
}
