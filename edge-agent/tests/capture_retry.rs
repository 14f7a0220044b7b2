//! The retry wrapper around sources that fail, then work.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use chrono::{DateTime, Utc};
use edge_agent::capture::{
    CaptureError, CaptureMetrics, Frame, FrameSource, Opener, RetryConfig, Retrying, SourceContext,
    Stop, SyntheticConfig, SyntheticSource, VirtualClock,
};
use inspection_core::ids::CameraId;

fn epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(1_750_000_000, 0).unwrap()
}

fn cam() -> CameraId {
    CameraId::new("cam-front").unwrap()
}

fn unplugged() -> CaptureError {
    CaptureError::Open {
        device: "/dev/video0".into(),
        source: std::io::Error::from_raw_os_error(19), // ENODEV
    }
}

/// A source that delivers `good` frames of a synthetic scene, then breaks
/// (when `breaks`) like an unplugged camera, or ends.
struct Flaky {
    inner: SyntheticSource,
    good: u64,
    delivered: u64,
    breaks: bool,
}

impl FrameSource for Flaky {
    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        if self.delivered == self.good {
            return if self.breaks {
                Err(CaptureError::Stream {
                    device: "/dev/video0".into(),
                    source: std::io::Error::from_raw_os_error(19),
                })
            } else {
                Ok(None)
            };
        }
        self.delivered += 1;
        self.inner.next_frame()
    }

    fn describe(&self) -> String {
        "flaky".into()
    }
}

/// Fails to open `fail_first` times; then the first source breaks after
/// three frames, the second ends after two.
fn opener(ctx: &SourceContext, fail_first: usize, opens: Arc<AtomicUsize>) -> Opener {
    let ctx = ctx.clone();
    Box::new(move || {
        let attempt = opens.fetch_add(1, Ordering::SeqCst);
        if attempt < fail_first {
            return Err(unplugged());
        }
        let config = SyntheticConfig {
            fps: 0.0,
            ..SyntheticConfig::default()
        };
        let first = attempt == fail_first;
        Ok(Box::new(Flaky {
            inner: SyntheticSource::new(cam(), &config, &ctx)?,
            good: if first { 3 } else { 2 },
            delivered: 0,
            breaks: first,
        }))
    })
}

fn no_jitter() -> RetryConfig {
    RetryConfig {
        initial_backoff_s: 0.5,
        max_backoff_s: 30.0,
        jitter: 0.0,
    }
}

#[test]
fn fails_three_times_then_works_breaks_and_recovers() {
    let clock = Arc::new(VirtualClock::new(epoch()));
    let ctx = SourceContext {
        clock: clock.clone(),
        stop: Stop::new(),
        metrics: CaptureMetrics::new(),
    };
    let opens = Arc::new(AtomicUsize::new(0));
    let mut camera =
        Retrying::with_seed(cam(), opener(&ctx, 3, opens.clone()), &no_jitter(), &ctx, 1);
    let m = &ctx.metrics;

    let first = camera.next_frame().unwrap().unwrap();
    assert_eq!(first.index, 0);
    assert_eq!(opens.load(Ordering::SeqCst), 4);
    assert_eq!(m.up_of("cam-front"), 1);
    assert_eq!(m.reconnects_of("cam-front"), 1);

    let mut indices = vec![first.index];
    while let Some(frame) = camera.next_frame().unwrap() {
        indices.push(frame.index);
        assert!(indices.len() < 100, "must end");
    }
    // 3 frames, the break, a reopen, 2 frames, the end: numbering continues.
    assert_eq!(indices, [0, 1, 2, 3, 4]);
    assert_eq!(opens.load(Ordering::SeqCst), 5);
    let secs: Vec<f64> = clock.sleeps().iter().map(Duration::as_secs_f64).collect();
    // Three growing delays for the failed opens; frames reset the backoff,
    // so the break waits the initial delay again.
    assert_eq!(secs, [0.5, 1.0, 2.0, 0.5]);
    assert_eq!(m.errors_of("cam-front", "open"), 3);
    assert_eq!(m.errors_of("cam-front", "stream"), 1);
    assert_eq!(m.reconnects_of("cam-front"), 2);
    assert_eq!(m.frames_of("cam-front"), 5);
    assert_eq!(m.up_of("cam-front"), 0, "down once the source ended");
    assert!(
        camera.next_frame().unwrap().is_none(),
        "an ended camera stays ended"
    );
    assert_eq!(opens.load(Ordering::SeqCst), 5, "and is not reopened");
}

#[test]
fn jittered_delays_stay_within_bounds() {
    let clock = Arc::new(VirtualClock::new(epoch()));
    let ctx = SourceContext {
        clock: clock.clone(),
        stop: Stop::new(),
        metrics: CaptureMetrics::new(),
    };
    let retry = RetryConfig {
        initial_backoff_s: 1.0,
        max_backoff_s: 8.0,
        jitter: 0.5,
    };
    let opens = Arc::new(AtomicUsize::new(0));
    let mut camera = Retrying::with_seed(cam(), opener(&ctx, 6, opens), &retry, &ctx, 42);
    assert_eq!(camera.next_frame().unwrap().unwrap().index, 0);
    let sleeps = clock.sleeps();
    assert_eq!(sleeps.len(), 6);
    for (sleep, base) in sleeps.iter().zip([1.0, 2.0, 4.0, 8.0, 8.0, 8.0]) {
        let s = sleep.as_secs_f64();
        assert!(
            (base * 0.5..=base).contains(&s),
            "{s} not in [{}, {base}]",
            base * 0.5
        );
    }
}

#[test]
fn stop_interrupts_a_long_backoff_on_the_real_clock() {
    // `new` is the production context: the system clock.
    let ctx = SourceContext::new(CaptureMetrics::new());
    let retry = RetryConfig {
        initial_backoff_s: 3600.0,
        max_backoff_s: 3600.0,
        jitter: 0.0,
    };
    let opens = Arc::new(AtomicUsize::new(0));
    let mut camera = Retrying::new(cam(), opener(&ctx, usize::MAX, opens.clone()), &retry, &ctx);
    let (done, result) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = done.send(camera.next_frame().map(|f| f.is_some()));
    });
    // Wait until the first open has failed (the worker is then in, or about
    // to enter, its hour-long backoff), with a deadline.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while opens.load(Ordering::SeqCst) == 0 {
        assert!(std::time::Instant::now() < deadline, "never tried to open");
        std::thread::yield_now();
    }
    ctx.stop.stop();
    let outcome = result
        .recv_timeout(Duration::from_secs(30))
        .expect("the backoff was not interrupted");
    assert!(matches!(outcome, Err(CaptureError::Stopped)), "{outcome:?}");
    worker.join().unwrap();
    assert_eq!(opens.load(Ordering::SeqCst), 1);
}
