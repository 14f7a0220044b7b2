//! Frame sources: V4L2 cameras, JPEG directories and a synthetic scene, behind one trait.
//!
//! Every camera of the agent is a [`FrameSource`]: a blocking iterator of
//! [`Frame`]s, run on its own thread (or `spawn_blocking`) by the pipeline.
//!
//! - [`V4l2Source`]: a V4L2 device through the `v4l` crate, MJPEG (the
//!   JPEG bytes are kept for upload) or YUYV (converted to RGB, BT.601).
//! - [`DirectorySource`]: the JPEG files of a directory in name order,
//!   optionally looping; incomplete or foreign files are skipped and counted.
//! - [`SyntheticSource`]: a deterministic scene of a car with a plate that
//!   arrives, stays and leaves, with optional blurred and dark frames.
//!
//! [`open_camera`] wraps a camera's source in [`Retrying`], which reopens
//! it with exponential backoff and jitter whenever it fails: a missing,
//! busy or unplugged camera is logged, counted and retried, never a crash.
//! Time comes from a [`Clock`] and every wait ends early on [`Stop`], so
//! tests run paced sources and backoffs on a [`VirtualClock`] without
//! sleeping, and shutdown never waits for a backoff to expire.

mod clock;
pub mod config;
mod directory;
mod error;
pub mod jpeg;
mod metrics;
mod retry;
pub mod synthetic;
mod v4l2;
pub mod yuyv;

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use inspection_core::ids::CameraId;

pub use clock::{Clock, Stop, SystemClock, VirtualClock};
pub use config::{
    CameraConfig, DirectoryConfig, PixelFormat, RetryConfig, SourceConfig, SyntheticConfig,
    V4l2Config, cameras_problems,
};
pub use directory::DirectorySource;
pub use error::CaptureError;
pub use metrics::{CameraLabels, CaptureMetrics, ErrorLabels};
pub use retry::{Backoff, Opener, Retrying};
pub use synthetic::SyntheticSource;
pub use v4l2::{Negotiated, V4l2Source};

/// One captured frame.
#[derive(Clone)]
pub struct Frame {
    /// The camera it comes from.
    pub camera: CameraId,
    /// Position in the camera's stream, from 0, with no gaps: skipped files
    /// and frames take no index, and [`Retrying`] keeps counting across reopens.
    pub index: u64,
    /// When it was captured (for a replay: when it was read).
    pub captured_at: DateTime<Utc>,
    /// The pixels.
    pub image: Arc<image::RgbImage>,
    /// The encoded bytes when the source had them (MJPEG, files, synthetic):
    /// uploaded as they are, with no re-encoding.
    pub jpeg: Option<Arc<[u8]>>,
}

impl fmt::Debug for Frame {
    // The derived form would print every pixel.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("camera", &self.camera)
            .field("index", &self.index)
            .field("captured_at", &self.captured_at)
            .field("size", &self.image.dimensions())
            .field("jpeg_bytes", &self.jpeg.as_ref().map(|j| j.len()))
            .finish()
    }
}

/// A camera, or anything that stands in for one.
pub trait FrameSource: Send {
    /// Blocks until the next frame is due and returns it; `Ok(None)` at the
    /// end of a finite source; [`CaptureError::Stopped`] once the context's
    /// [`Stop`] fired.
    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError>;

    /// What this is, for logs (device and negotiated format, path, ...).
    fn describe(&self) -> String;
}

impl<S: FrameSource + ?Sized> FrameSource for Box<S> {
    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        (**self).next_frame()
    }

    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// What every source of an agent shares: the clock, the shutdown signal and
/// the metrics. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SourceContext {
    /// Time for pacing, timestamps and backoff.
    pub clock: Arc<dyn Clock>,
    /// Fired on shutdown; wakes every sleeping source.
    pub stop: Stop,
    /// Where the sources count frames and errors.
    pub metrics: CaptureMetrics,
}

impl SourceContext {
    /// The production context: the system clock and a fresh stop signal.
    pub fn new(metrics: CaptureMetrics) -> Self {
        Self {
            clock: Arc::new(SystemClock::new()),
            stop: Stop::new(),
            metrics,
        }
    }
}

fn validated(camera: &CameraConfig) -> Result<CameraId, CaptureError> {
    let problems = camera.problems("camera");
    if !problems.is_empty() {
        return Err(CaptureError::InvalidConfig(problems.join("; ")));
    }
    camera.camera_id()
}

/// Opens a camera's source once (no retry): the typed error says why not.
pub fn open_source(
    camera: &CameraConfig,
    ctx: &SourceContext,
) -> Result<Box<dyn FrameSource>, CaptureError> {
    let id = validated(camera)?;
    Ok(match &camera.source {
        SourceConfig::V4l2(c) => Box::new(V4l2Source::open(id, c, ctx)?),
        SourceConfig::Directory(c) => Box::new(DirectorySource::open(id, c, ctx)?),
        SourceConfig::Synthetic(c) => Box::new(SyntheticSource::new(id, c, ctx)?),
    })
}

/// A camera that reopens itself on failure, per its `retry` settings.
///
/// Fails only on an invalid configuration; the source itself is opened by
/// the first `next_frame`, so a camera that is missing at start-up is
/// retried like one that fails later.
pub fn open_camera(camera: &CameraConfig, ctx: &SourceContext) -> Result<Retrying, CaptureError> {
    let id = validated(camera)?;
    let config = camera.clone();
    let opener_ctx = ctx.clone();
    let opener: Opener = Box::new(move || open_source(&config, &opener_ctx));
    Ok(Retrying::new(id, opener, &camera.retry, ctx))
}
