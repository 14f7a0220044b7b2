//! Time for the sources: wall and monotonic clocks, interruptible sleeps, pacing.
//!
//! Sources and the retry wrapper never call `std::thread::sleep` directly:
//! they sleep through a [`Clock`] and a [`Stop`] signal. In production the
//! [`SystemClock`] really waits, and a shutdown wakes every sleeper at once;
//! in tests a [`VirtualClock`] advances instantly and records each sleep, so
//! pacing and backoff are tested exactly and without waiting.

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::CaptureError;

/// Locks a mutex, taking over the data if a previous holder panicked: the
/// guarded values here (a flag, counters) stay meaningful after a panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A shutdown signal shared by every camera of an agent; cheap to clone.
///
/// Sources run on blocking threads, so this is a condition variable rather
/// than a tokio token: a sleeping source wakes as soon as [`stop`](Self::stop)
/// is called, from any thread or task.
#[derive(Clone, Default)]
pub struct Stop {
    inner: Arc<(Mutex<bool>, Condvar)>,
}

impl fmt::Debug for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stop")
            .field("stopped", &self.is_stopped())
            .finish()
    }
}

impl Stop {
    /// A signal that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fires the signal and wakes every waiter. Idempotent.
    pub fn stop(&self) {
        let (flag, condvar) = &*self.inner;
        *lock(flag) = true;
        condvar.notify_all();
    }

    /// Whether [`stop`](Self::stop) was called.
    pub fn is_stopped(&self) -> bool {
        *lock(&self.inner.0)
    }

    /// Waits up to `timeout`; returns `true` when stopped (at once if already).
    pub fn wait(&self, timeout: Duration) -> bool {
        let (flag, condvar) = &*self.inner;
        let deadline = Instant::now() + timeout;
        let mut stopped = lock(flag);
        while !*stopped {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            stopped = condvar
                .wait_timeout(stopped, deadline - now)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
        true
    }
}

/// Where sources get the time and how they wait.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Wall-clock time, stamped on frames as `captured_at`.
    fn now(&self) -> DateTime<Utc>;
    /// Monotonic time since the clock was made, for pacing.
    fn monotonic(&self) -> Duration;
    /// Sleeps for `duration`, or less when `stop` fires, which returns
    /// [`CaptureError::Stopped`].
    fn sleep(&self, duration: Duration, stop: &Stop) -> Result<(), CaptureError>;
}

/// The real clock.
#[derive(Debug, Clone)]
pub struct SystemClock {
    start: Instant,
}

impl SystemClock {
    /// A clock whose monotonic time starts now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        // chrono is built without its `clock` feature; `SystemTime` is the same clock.
        DateTime::<Utc>::from(std::time::SystemTime::now())
    }

    fn monotonic(&self) -> Duration {
        self.start.elapsed()
    }

    fn sleep(&self, duration: Duration, stop: &Stop) -> Result<(), CaptureError> {
        if stop.wait(duration) {
            Err(CaptureError::Stopped)
        } else {
            Ok(())
        }
    }
}

#[derive(Debug)]
struct VirtualState {
    elapsed: Duration,
    sleeps: Vec<Duration>,
    sleep_limit: Option<usize>,
}

/// A test clock: sleeping advances it instantly, and every sleep is recorded.
///
/// With [`with_sleep_limit`](Self::with_sleep_limit) the n+1-th sleep fires
/// the caller's [`Stop`] instead, which ends a retry loop over a source that
/// never opens after exactly n backoffs.
#[derive(Debug)]
pub struct VirtualClock {
    start: DateTime<Utc>,
    state: Mutex<VirtualState>,
}

impl VirtualClock {
    /// A clock at `start` that never stops anything by itself.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            start,
            state: Mutex::new(VirtualState {
                elapsed: Duration::ZERO,
                sleeps: Vec::new(),
                sleep_limit: None,
            }),
        }
    }

    /// A clock that allows `limit` sleeps; the next one stops the caller.
    pub fn with_sleep_limit(start: DateTime<Utc>, limit: usize) -> Self {
        let clock = Self::new(start);
        lock(&clock.state).sleep_limit = Some(limit);
        clock
    }

    /// Every sleep so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        lock(&self.state).sleeps.clone()
    }

    /// Moves time forward without a sleep (as if work took `by`).
    pub fn advance(&self, by: Duration) {
        lock(&self.state).elapsed += by;
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = lock(&self.state).elapsed;
        // A virtual clock runs for minutes in a test; an overflow of
        // chrono's range is impossible there, but must not panic.
        chrono::Duration::from_std(elapsed)
            .ok()
            .and_then(|d| self.start.checked_add_signed(d))
            .unwrap_or(self.start)
    }

    fn monotonic(&self) -> Duration {
        lock(&self.state).elapsed
    }

    fn sleep(&self, duration: Duration, stop: &Stop) -> Result<(), CaptureError> {
        let mut state = lock(&self.state);
        if state
            .sleep_limit
            .is_some_and(|limit| state.sleeps.len() >= limit)
        {
            stop.stop();
        }
        if stop.is_stopped() {
            return Err(CaptureError::Stopped);
        }
        state.sleeps.push(duration);
        state.elapsed += duration;
        Ok(())
    }
}

/// Keeps a source at its configured rate: the first frame is due at once,
/// each next one an interval after the previous due time. A source that fell
/// behind by more than one interval (a slow disk, a stopped process) starts
/// afresh instead of bursting to catch up.
#[derive(Debug, Clone)]
pub(crate) struct Pacer {
    interval: Option<Duration>,
    next_due: Option<Duration>,
}

impl Pacer {
    /// `fps` of 0 (or anything not positive and finite) means unpaced.
    pub(crate) fn new(fps: f64) -> Self {
        let interval = (fps.is_finite() && fps > 0.0).then(|| Duration::from_secs_f64(1.0 / fps));
        Self {
            interval,
            next_due: None,
        }
    }

    /// Waits until the next frame is due.
    pub(crate) fn wait(&mut self, clock: &dyn Clock, stop: &Stop) -> Result<(), CaptureError> {
        if stop.is_stopped() {
            return Err(CaptureError::Stopped);
        }
        let Some(interval) = self.interval else {
            return Ok(());
        };
        let now = clock.monotonic();
        let due = match self.next_due {
            None => now,
            Some(due) if now > due + interval => now,
            Some(due) => due,
        };
        if due > now {
            clock.sleep(due - now, stop)?;
        }
        self.next_due = Some(due + interval);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    #[test]
    fn pacer_sleeps_the_remainder_of_each_interval() {
        let clock = VirtualClock::new(epoch());
        let stop = Stop::new();
        let mut pacer = Pacer::new(4.0);
        pacer.wait(&clock, &stop).unwrap(); // first frame: at once
        clock.advance(Duration::from_millis(50)); // work took 50 ms
        pacer.wait(&clock, &stop).unwrap();
        pacer.wait(&clock, &stop).unwrap();
        assert_eq!(
            clock.sleeps(),
            [Duration::from_millis(200), Duration::from_millis(250)]
        );
        assert_eq!(clock.now(), epoch() + chrono::Duration::milliseconds(500));
    }

    #[test]
    fn pacer_does_not_burst_after_falling_behind() {
        let clock = VirtualClock::new(epoch());
        let stop = Stop::new();
        let mut pacer = Pacer::new(10.0);
        pacer.wait(&clock, &stop).unwrap();
        clock.advance(Duration::from_secs(2));
        pacer.wait(&clock, &stop).unwrap(); // late: due at once, no sleep
        pacer.wait(&clock, &stop).unwrap(); // then one interval again
        assert_eq!(clock.sleeps(), [Duration::from_millis(100)]);
    }

    #[test]
    fn unpaced_never_sleeps_but_honours_stop() {
        let clock = VirtualClock::new(epoch());
        let stop = Stop::new();
        let mut pacer = Pacer::new(0.0);
        for _ in 0..5 {
            pacer.wait(&clock, &stop).unwrap();
        }
        assert!(clock.sleeps().is_empty());
        stop.stop();
        assert!(matches!(
            pacer.wait(&clock, &stop),
            Err(CaptureError::Stopped)
        ));
    }

    #[test]
    fn stop_wakes_a_system_sleep_from_another_thread() {
        let stop = Stop::new();
        let waker = stop.clone();
        let started = Instant::now();
        let handle =
            std::thread::spawn(move || SystemClock::new().sleep(Duration::from_secs(60), &waker));
        stop.stop();
        let result = handle.join().unwrap();
        assert!(matches!(result, Err(CaptureError::Stopped)));
        // Bounded by the test harness's own timeout otherwise; 60 s would fail it.
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn sleep_limit_fires_the_stop_signal() {
        let clock = VirtualClock::with_sleep_limit(epoch(), 2);
        let stop = Stop::new();
        clock.sleep(Duration::from_secs(1), &stop).unwrap();
        clock.sleep(Duration::from_secs(1), &stop).unwrap();
        assert!(clock.sleep(Duration::from_secs(1), &stop).is_err());
        assert!(stop.is_stopped());
        assert_eq!(clock.sleeps().len(), 2);
    }
}
