//! V4L2 cameras through the `v4l` crate: MJPEG or YUYV, memory-mapped streaming.
//!
//! Opening negotiates the format: V4L2 drivers answer a `VIDIOC_S_FMT` with
//! what they will actually deliver, which may be another size (the nearest
//! they support) or another pixel format. The source logs and reports the
//! difference ([`Negotiated`], [`FrameSource::describe`]) and uses what the
//! driver chose; a pixel format other than MJPG or YUYV is an error.
//!
//! Every failure names the device and carries the OS error: `ENOENT` (no
//! such node), `EACCES` (not in the `video` group), `EBUSY` (another process
//! streams from it), `ENODEV` (unplugged). None of them panics; the
//! [`Retrying`](super::Retrying) wrapper reopens the camera with backoff.

use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use inspection_core::ids::CameraId;
use v4l::buffer::{Flags as BufferFlags, Type};
use v4l::capability::Flags as CapFlags;
use v4l::io::mmap::Stream as MmapStream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::video::capture::Parameters;
use v4l::{Device, Format, FourCC, Fraction};

use super::config::{PixelFormat, V4l2Config};
use super::metrics::CameraMetrics;
use super::{CaptureError, Frame, FrameSource, SourceContext, jpeg, yuyv};

/// How long one dequeue waits before checking the stop signal again.
const POLL: Duration = Duration::from_millis(500);
/// Unusable frames in a row after which the stream is reopened.
const MAX_CORRUPT_IN_A_ROW: u32 = 50;

/// The pixels of a buffer, and its bytes when they are a JPEG.
type Decoded = (image::RgbImage, Option<Arc<[u8]>>);

/// What the driver agreed to, next to what was asked.
#[derive(Debug, Clone, PartialEq)]
pub struct Negotiated {
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
    /// Bytes per line (YUYV), as reported by the driver.
    pub stride: u32,
    /// Frame rate the driver reports; `None` when it cannot say.
    pub fps: Option<f64>,
    /// Whether anything differs from the configuration.
    pub differs: bool,
}

/// A V4L2 camera, streaming.
pub struct V4l2Source {
    camera: CameraId,
    device: PathBuf,
    negotiated: Negotiated,
    timeout: Duration,
    /// Options only so that `Drop` can take them: the stream is dropped
    /// (stream off, buffers unmapped) before the device is closed.
    stream: Option<MmapStream<'static>>,
    device_handle: Option<Device>,
    index: u64,
    corrupt_in_a_row: u32,
    ctx: SourceContext,
    metrics: CameraMetrics,
}

impl std::fmt::Debug for V4l2Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V4l2Source")
            .field("camera", &self.camera)
            .field("device", &self.device)
            .field("negotiated", &self.negotiated)
            .finish_non_exhaustive()
    }
}

fn pixel_format(fourcc: FourCC) -> Option<PixelFormat> {
    match &fourcc.repr {
        b"MJPG" => Some(PixelFormat::Mjpeg),
        b"YUYV" => Some(PixelFormat::Yuyv),
        _ => None,
    }
}

impl V4l2Source {
    /// Opens the device, negotiates format and rate, and maps the buffers.
    /// Streaming starts with the first [`next_frame`](FrameSource::next_frame).
    pub fn open(
        camera: CameraId,
        config: &V4l2Config,
        ctx: &SourceContext,
    ) -> Result<Self, CaptureError> {
        let device_path = config.device.clone();
        let configure = |step: &'static str| {
            let device = device_path.clone();
            move |source: io::Error| CaptureError::Configure {
                device,
                step,
                source,
            }
        };
        let device = Device::with_path(&config.device).map_err(|source| CaptureError::Open {
            device: device_path.clone(),
            source,
        })?;
        let caps = device
            .query_caps()
            .map_err(configure("query capabilities (VIDIOC_QUERYCAP)"))?;
        if !caps.capabilities.contains(CapFlags::VIDEO_CAPTURE)
            || !caps.capabilities.contains(CapFlags::STREAMING)
        {
            return Err(CaptureError::NotCapture {
                device: device_path,
                detail: format!(
                    "driver {}, card {}, {}",
                    caps.driver, caps.card, caps.capabilities
                ),
            });
        }

        let wanted = Format::new(
            config.width,
            config.height,
            FourCC::new(&config.format.fourcc()),
        );
        let got = device
            .set_format(&wanted)
            .map_err(configure("set the format (VIDIOC_S_FMT)"))?;
        let Some(format) = pixel_format(got.fourcc) else {
            return Err(CaptureError::UnsupportedFormat {
                device: device_path,
                fourcc: got.fourcc.to_string(),
            });
        };

        // Not every driver can set a rate (some fix it by the format): a
        // refusal is worth a warning, not a dead camera.
        let interval = Fraction::new(1000, (config.fps * 1000.0).round().max(1.0) as u32);
        let fps = match device.set_params(&Parameters::new(interval)) {
            Ok(params) if params.interval.numerator > 0 => {
                Some(f64::from(params.interval.denominator) / f64::from(params.interval.numerator))
            }
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(camera = %camera, device = %device_path.display(), %error, "cannot set the frame rate; using the driver's");
                None
            }
        };

        let differs = got.width != config.width
            || got.height != config.height
            || format != config.format
            || fps.is_some_and(|f| (f - config.fps).abs() > 0.01 * config.fps);
        let negotiated = Negotiated {
            width: got.width,
            height: got.height,
            format,
            stride: got.stride,
            fps,
            differs,
        };
        if differs {
            tracing::warn!(
                camera = %camera,
                device = %device_path.display(),
                wanted_width = config.width,
                wanted_height = config.height,
                wanted_format = ?config.format,
                wanted_fps = config.fps,
                width = got.width,
                height = got.height,
                format = ?format,
                fps = ?fps,
                "the camera driver chose other settings than configured; using them"
            );
        } else {
            tracing::info!(camera = %camera, device = %device_path.display(), width = got.width, height = got.height, format = ?format, fps = ?fps, "camera opened");
        }

        let mut stream = MmapStream::with_buffers(&device, Type::VideoCapture, config.buffers)
            .map_err(configure("map buffers (VIDIOC_REQBUFS)"))?;
        stream.set_timeout(POLL);
        Ok(Self {
            metrics: ctx.metrics.for_camera(camera.as_str()),
            camera,
            device: device_path,
            negotiated,
            timeout: config.timeout(),
            stream: Some(stream),
            device_handle: Some(device),
            index: 0,
            corrupt_in_a_row: 0,
            ctx: ctx.clone(),
        })
    }

    /// What the driver agreed to.
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// Decodes one dequeued buffer.
    fn decode(&self, data: &[u8]) -> Result<Decoded, CaptureError> {
        match self.negotiated.format {
            PixelFormat::Mjpeg => {
                let image = jpeg::decode_jpeg(data)?;
                Ok((image, Some(data.into())))
            }
            PixelFormat::Yuyv => {
                let n = &self.negotiated;
                Ok((yuyv::yuyv_to_rgb(data, n.width, n.height, n.stride)?, None))
            }
        }
    }
}

impl FrameSource for V4l2Source {
    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        let started = self.ctx.clock.monotonic();
        loop {
            if self.ctx.stop.is_stopped() {
                return Err(CaptureError::Stopped);
            }
            let Some(stream) = self.stream.as_mut() else {
                return Err(CaptureError::Stream {
                    device: self.device.clone(),
                    source: io::Error::other("stream already closed"),
                });
            };
            let (data, flags) = match CaptureStream::next(stream) {
                Ok((buffer, meta)) => {
                    // MJPEG buffers are only partly used; YUYV ones fully,
                    // and some drivers leave `bytesused` at 0 for them.
                    let used = match meta.bytesused as usize {
                        0 => buffer.len(),
                        n => n.min(buffer.len()),
                    };
                    (buffer[..used].to_vec(), meta.flags)
                }
                Err(error) if error.kind() == io::ErrorKind::TimedOut => {
                    let waited = self.ctx.clock.monotonic().saturating_sub(started);
                    if waited >= self.timeout {
                        return Err(CaptureError::Stalled {
                            device: self.device.clone(),
                            waited,
                        });
                    }
                    continue;
                }
                Err(source) => {
                    return Err(CaptureError::Stream {
                        device: self.device.clone(),
                        source,
                    });
                }
            };
            let captured_at = self.ctx.clock.now();
            let decoded = if flags.contains(BufferFlags::ERROR) {
                Err(CaptureError::Decode(image::ImageError::IoError(
                    io::Error::other("driver flagged the buffer as corrupt"),
                )))
            } else {
                self.decode(&data)
            };
            match decoded {
                Ok((image, jpeg)) => {
                    self.corrupt_in_a_row = 0;
                    let frame = Frame {
                        camera: self.camera.clone(),
                        index: self.index,
                        captured_at,
                        image: Arc::new(image),
                        jpeg,
                    };
                    self.index += 1;
                    self.metrics.frame();
                    return Ok(Some(frame));
                }
                Err(error) => {
                    self.metrics.error(error.code());
                    tracing::warn!(camera = %self.camera, device = %self.device.display(), reason = error.code(), %error, "skipping an unusable frame");
                    self.corrupt_in_a_row += 1;
                    if self.corrupt_in_a_row >= MAX_CORRUPT_IN_A_ROW {
                        return Err(CaptureError::Corrupt {
                            device: self.device.clone(),
                            count: self.corrupt_in_a_row,
                        });
                    }
                }
            }
        }
    }

    fn describe(&self) -> String {
        let n = &self.negotiated;
        format!(
            "v4l2 {} {}x{} {:?}{}{}",
            self.device.display(),
            n.width,
            n.height,
            n.format,
            n.fps.map(|f| format!(" at {f:.1} fps")).unwrap_or_default(),
            if n.differs {
                " (driver's choice, differs from the configuration)"
            } else {
                ""
            }
        )
    }
}

impl Drop for V4l2Source {
    fn drop(&mut self) {
        // The `v4l` crate panics in its destructors when stream-off or
        // close fails (for any reason but ENODEV); a camera in a bad state
        // must not take the agent down with it, so the panic stops here.
        let stream = self.stream.take();
        let device = self.device_handle.take();
        let contained = catch_unwind(AssertUnwindSafe(move || {
            drop(stream);
            drop(device);
        }));
        if contained.is_err() {
            tracing::error!(camera = %self.camera, device = %self.device.display(), "closing the V4L2 device failed");
        }
    }
}
