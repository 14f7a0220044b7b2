//! Keeping a camera alive: reopen a failed source with exponential backoff and jitter.

use std::time::Duration;

use inspection_core::ids::CameraId;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::config::RetryConfig;
use super::metrics::CameraMetrics;
use super::{CaptureError, Frame, FrameSource, SourceContext};

/// Opens a camera's source; called again after every failure.
pub type Opener = Box<dyn FnMut() -> Result<Box<dyn FrameSource>, CaptureError> + Send>;

/// Exponential backoff with jitter: the n-th delay in a row is
/// `min(max, initial * 2^n)`, of which the fraction `jitter` is random
/// (so a delay lies in `[base * (1 - jitter), base]`).
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    jitter: f64,
    attempt: u32,
    rng: StdRng,
}

impl Backoff {
    /// A backoff whose jitter comes from `seed` (reproducible in tests).
    pub fn new(config: &RetryConfig, seed: u64) -> Self {
        // Validated configs are in range; these fallbacks only keep a bad
        // value from panicking in `Duration::from_secs_f64`.
        let secs = |s: f64, fallback: f64| {
            Duration::try_from_secs_f64(s).unwrap_or(Duration::from_secs_f64(fallback))
        };
        let initial = secs(config.initial_backoff_s, 0.5);
        Self {
            initial,
            max: secs(config.max_backoff_s, 30.0).max(initial),
            jitter: if (0.0..=1.0).contains(&config.jitter) {
                config.jitter
            } else {
                0.5
            },
            attempt: 0,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The delay before the next attempt; each call doubles the base.
    pub fn next_delay(&mut self) -> Duration {
        // 2^20 x any sane initial delay is far beyond any sane maximum.
        let factor = 1u32 << self.attempt.min(20);
        let base = self.initial.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let random: f64 = self.rng.random();
        base.mul_f64(1.0 - self.jitter * random)
    }

    /// Back to the initial delay (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A source that never gives up: it opens its camera lazily, and when
/// opening or reading fails it counts and logs the error, marks the camera
/// down, sleeps a backoff delay (interruptible by [`Stop`](super::Stop)) and
/// opens it again.
///
/// Frames are renumbered so that `index` keeps counting across reopens.
/// `next_frame` returns `Ok(None)` when a finite source ends (it is not
/// reopened) and `Err(CaptureError::Stopped)` on shutdown; it returns no
/// other error.
pub struct Retrying {
    camera: CameraId,
    opener: Opener,
    current: Option<Box<dyn FrameSource>>,
    description: String,
    backoff: Backoff,
    ctx: SourceContext,
    metrics: CameraMetrics,
    next_index: u64,
    failed_since_last_frame: bool,
    finished: bool,
}

impl std::fmt::Debug for Retrying {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retrying")
            .field("camera", &self.camera)
            .field("description", &self.description)
            .field("next_index", &self.next_index)
            .finish_non_exhaustive()
    }
}

impl Retrying {
    /// Wraps `opener` with random jitter.
    pub fn new(camera: CameraId, opener: Opener, retry: &RetryConfig, ctx: &SourceContext) -> Self {
        Self::with_seed(camera, opener, retry, ctx, rand::random())
    }

    /// Wraps `opener` with jitter drawn from `seed`, for reproducible tests.
    pub fn with_seed(
        camera: CameraId,
        opener: Opener,
        retry: &RetryConfig,
        ctx: &SourceContext,
        seed: u64,
    ) -> Self {
        Self {
            metrics: ctx.metrics.for_camera(camera.as_str()),
            camera,
            opener,
            current: None,
            description: "not open yet".to_owned(),
            backoff: Backoff::new(retry, seed),
            ctx: ctx.clone(),
            next_index: 0,
            failed_since_last_frame: false,
            finished: false,
        }
    }

    /// Counts and logs a failure, then waits before the next attempt.
    fn failed(&mut self, error: &CaptureError) -> Result<(), CaptureError> {
        self.current = None;
        self.failed_since_last_frame = true;
        self.metrics.set_up(false);
        self.metrics.error(error.code());
        let delay = self.backoff.next_delay();
        tracing::warn!(
            camera = %self.camera,
            reason = error.code(),
            %error,
            retry_in_s = delay.as_secs_f64(),
            "camera failed; reopening after a backoff"
        );
        self.ctx.clock.sleep(delay, &self.ctx.stop)
    }
}

impl FrameSource for Retrying {
    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        if self.finished {
            return Ok(None);
        }
        loop {
            if self.ctx.stop.is_stopped() {
                self.metrics.set_up(false);
                return Err(CaptureError::Stopped);
            }
            if self.current.is_none() {
                match (self.opener)() {
                    Ok(source) => {
                        self.description = source.describe();
                        tracing::info!(camera = %self.camera, source = %self.description, "camera source opened");
                        self.current = Some(source);
                    }
                    Err(CaptureError::Stopped) => {
                        self.metrics.set_up(false);
                        return Err(CaptureError::Stopped);
                    }
                    Err(error) => {
                        self.failed(&error)?;
                        continue;
                    }
                }
            }
            let Some(source) = self.current.as_mut() else {
                continue;
            };
            match source.next_frame() {
                Ok(Some(mut frame)) => {
                    if self.failed_since_last_frame {
                        self.failed_since_last_frame = false;
                        self.metrics.reconnect();
                        tracing::info!(camera = %self.camera, source = %self.description, "camera delivers frames again");
                    }
                    self.backoff.reset();
                    self.metrics.set_up(true);
                    frame.index = self.next_index;
                    self.next_index += 1;
                    return Ok(Some(frame));
                }
                Ok(None) => {
                    tracing::info!(camera = %self.camera, source = %self.description, "camera source ended");
                    self.current = None;
                    self.finished = true;
                    self.metrics.set_up(false);
                    return Ok(None);
                }
                Err(CaptureError::Stopped) => {
                    self.metrics.set_up(false);
                    return Err(CaptureError::Stopped);
                }
                Err(error) => self.failed(&error)?,
            }
        }
    }

    fn describe(&self) -> String {
        format!("{} (reopened on failure)", self.description)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(initial: f64, max: f64, jitter: f64) -> RetryConfig {
        RetryConfig {
            initial_backoff_s: initial,
            max_backoff_s: max,
            jitter,
        }
    }

    #[test]
    fn doubles_up_to_the_maximum_without_jitter() {
        let mut backoff = Backoff::new(&config(0.5, 5.0, 0.0), 1);
        let delays: Vec<f64> = (0..7).map(|_| backoff.next_delay().as_secs_f64()).collect();
        assert_eq!(delays, [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(500));
    }

    #[test]
    fn jitter_stays_within_its_fraction_and_varies() {
        let mut backoff = Backoff::new(&config(1.0, 1.0, 0.5), 7);
        let delays: Vec<Duration> = (0..200).map(|_| backoff.next_delay()).collect();
        assert!(
            delays
                .iter()
                .all(|d| *d >= Duration::from_millis(500) && *d <= Duration::from_secs(1))
        );
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(distinct.len() > 100, "{}", distinct.len());
        // Same seed, same delays.
        let mut again = Backoff::new(&config(1.0, 1.0, 0.5), 7);
        assert_eq!(again.next_delay(), delays[0]);
    }

    #[test]
    fn many_attempts_do_not_overflow() {
        let mut backoff = Backoff::new(&config(3600.0, 3600.0, 0.0), 0);
        for _ in 0..100 {
            assert_eq!(backoff.next_delay(), Duration::from_secs(3600));
        }
    }
}
