//! V4L2 without a camera: the build machines have no /dev/video*, so these
//! check that a missing or foreign device is a clear, typed error and that
//! the retry wrapper keeps trying instead of crashing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use edge_agent::capture::{
    CameraConfig, CaptureError, CaptureMetrics, FrameSource, PixelFormat, RetryConfig,
    SourceConfig, SourceContext, Stop, V4l2Config, VirtualClock, open_camera, open_source,
};

fn epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(1_750_000_000, 0).unwrap()
}

fn camera(device: PathBuf, retry: RetryConfig) -> CameraConfig {
    CameraConfig {
        id: "cam-front".into(),
        position: "front".into(),
        source: SourceConfig::V4l2(V4l2Config {
            device,
            width: 1280,
            height: 720,
            fps: 15.0,
            format: PixelFormat::Yuyv,
            timeout_s: 5.0,
            buffers: 4,
        }),
        retry,
        anonymise_faces: true,
    }
}

fn context(clock: Arc<VirtualClock>) -> SourceContext {
    SourceContext {
        clock,
        stop: Stop::new(),
        metrics: CaptureMetrics::new(),
    }
}

fn missing_device() -> PathBuf {
    let dir = tempfile::tempdir().unwrap();
    // The directory is deleted on drop: the path certainly does not exist.
    dir.path().join("video9")
}

#[test]
fn a_missing_device_is_an_open_error_naming_it_and_the_os_error() {
    let device = missing_device();
    let ctx = context(Arc::new(VirtualClock::new(epoch())));
    let Err(error) = open_source(&camera(device.clone(), RetryConfig::default()), &ctx) else {
        panic!("opened a device that does not exist")
    };
    let CaptureError::Open {
        device: named,
        source,
    } = &error
    else {
        panic!("expected CaptureError::Open, got {error:?}")
    };
    assert_eq!(named, &device);
    assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
    let text = error.to_string();
    assert!(text.contains(&device.display().to_string()), "{text}");
    assert!(text.contains("os error 2"), "{text}");
    assert_eq!(error.code(), "open");
}

#[test]
fn a_node_that_is_no_camera_is_refused_with_a_clear_error() {
    let ctx = context(Arc::new(VirtualClock::new(epoch())));
    let Err(error) = open_source(&camera("/dev/null".into(), RetryConfig::default()), &ctx) else {
        panic!("/dev/null opened as a camera")
    };
    // VIDIOC_QUERYCAP on a character device that is no V4L2 node: ENOTTY.
    assert!(
        matches!(
            error,
            CaptureError::Configure { .. } | CaptureError::NotCapture { .. }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("/dev/null"), "{error}");
}

#[test]
fn a_missing_camera_is_retried_with_growing_backoff_until_stopped() {
    let clock = Arc::new(VirtualClock::with_sleep_limit(epoch(), 5));
    let ctx = context(clock.clone());
    let retry = RetryConfig {
        initial_backoff_s: 0.5,
        max_backoff_s: 4.0,
        jitter: 0.0,
    };
    let mut camera = open_camera(&camera(missing_device(), retry), &ctx).unwrap();
    // Six attempts: five backoffs, and the sixth sleep is refused (stopped).
    assert!(matches!(camera.next_frame(), Err(CaptureError::Stopped)));
    let secs: Vec<f64> = clock.sleeps().iter().map(Duration::as_secs_f64).collect();
    assert_eq!(secs, [0.5, 1.0, 2.0, 4.0, 4.0]);
    assert_eq!(ctx.metrics.errors_of("cam-front", "open"), 6);
    assert_eq!(ctx.metrics.up_of("cam-front"), 0);
    assert_eq!(ctx.metrics.reconnects_of("cam-front"), 0);
    assert_eq!(ctx.metrics.frames_of("cam-front"), 0);
}

#[test]
fn an_invalid_camera_config_is_refused_before_any_retry() {
    let ctx = context(Arc::new(VirtualClock::new(epoch())));
    let mut config = camera(missing_device(), RetryConfig::default());
    config.id = "bad id".into();
    assert!(matches!(
        open_camera(&config, &ctx),
        Err(CaptureError::InvalidConfig(_))
    ));
}
