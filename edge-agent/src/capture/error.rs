//! The one error type of the capture module, with a stable `code()` for metrics.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Why a frame source could not be opened, or could not produce a frame.
///
/// Two families share this enum. *Source* errors (everything but the frame
/// errors below) end a source: the [`Retrying`](super::Retrying) wrapper
/// drops it, backs off and opens it again. *Frame* errors
/// ([`is_frame_error`](Self::is_frame_error)) concern one file or one buffer:
/// sources skip it, count it and carry on, so they are only returned by the
/// helpers that check a single JPEG.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The camera's configuration is unusable (it did not pass `problems`).
    #[error("invalid camera configuration: {0}")]
    InvalidConfig(String),
    /// The device node could not be opened: missing (`ENOENT`), no
    /// permission (`EACCES`), or gone (`ENODEV`).
    #[error("cannot open V4L2 device {}: {source}", device.display())]
    Open { device: PathBuf, source: io::Error },
    /// The node opened but is no video capture device with streaming I/O.
    #[error("{} is not a V4L2 streaming capture device ({detail})", device.display())]
    NotCapture { device: PathBuf, detail: String },
    /// A setup step failed; `EBUSY` here means another process holds the camera.
    #[error("cannot {step} on V4L2 device {}: {source}", device.display())]
    Configure {
        device: PathBuf,
        step: &'static str,
        source: io::Error,
    },
    /// The driver replaced the requested pixel format by one this agent cannot read.
    #[error(
        "V4L2 device {} delivers pixel format {fourcc}; only MJPG and YUYV are supported",
        device.display()
    )]
    UnsupportedFormat { device: PathBuf, fourcc: String },
    /// Dequeuing a buffer failed (typically `ENODEV`: the camera was unplugged).
    #[error("V4L2 device {} stopped streaming: {source}", device.display())]
    Stream { device: PathBuf, source: io::Error },
    /// No frame arrived for longer than the configured timeout.
    #[error("V4L2 device {} delivered no frame for {waited:?}", device.display())]
    Stalled { device: PathBuf, waited: Duration },
    /// Too many frames in a row were corrupt or undecodable.
    #[error("V4L2 device {} delivered {count} unusable frames in a row", device.display())]
    Corrupt { device: PathBuf, count: u32 },
    /// The image directory could not be listed.
    #[error("cannot read directory {}: {source}", path.display())]
    Directory { path: PathBuf, source: io::Error },
    /// A looping directory went through a whole pass without one usable JPEG;
    /// returning instead of spinning lets the retry wrapper back off.
    #[error("directory {} holds no usable JPEG", path.display())]
    NoUsableFiles { path: PathBuf },
    /// A synthetic frame could not be JPEG-encoded.
    #[error("cannot encode a synthetic frame as JPEG: {0}")]
    Encode(#[source] image::ImageError),
    /// Frame error: a file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadFile { path: PathBuf, source: io::Error },
    /// Frame error: zero bytes.
    #[error("empty image data")]
    Empty,
    /// Frame error: no JPEG start-of-image marker (`FF D8 FF`).
    #[error("not a JPEG (no FF D8 FF start-of-image marker)")]
    NotJpeg,
    /// Frame error: no end-of-image marker (`FF D9`) at the end. The `image`
    /// crate decodes a JPEG cut in half without complaint (the missing part
    /// comes out grey), so this is checked before decoding.
    #[error("truncated JPEG (no FF D9 end-of-image marker at the end of {len} bytes)")]
    Truncated { len: usize },
    /// Frame error: the decoder refused the data.
    #[error("cannot decode JPEG: {0}")]
    Decode(#[source] image::ImageError),
    /// Frame error: a YUYV buffer is smaller than its format says.
    #[error("YUYV buffer of {len} bytes is too short for {width}x{height} with stride {stride}")]
    ShortBuffer {
        len: usize,
        width: u32,
        height: u32,
        stride: u32,
    },
    /// The agent is shutting down ([`Stop::stop`](super::Stop::stop) was called).
    #[error("capture stopped")]
    Stopped,
}

impl CaptureError {
    /// A stable, low-cardinality name: the `reason` label of
    /// `edge_capture_errors_total`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidConfig(_) => "config",
            Self::Open { .. } => "open",
            Self::NotCapture { .. } => "not_capture",
            Self::Configure { .. } => "configure",
            Self::UnsupportedFormat { .. } => "format",
            Self::Stream { .. } => "stream",
            Self::Stalled { .. } => "stalled",
            Self::Corrupt { .. } => "corrupt",
            Self::Directory { .. } => "directory",
            Self::NoUsableFiles { .. } => "no_usable_files",
            Self::Encode(_) => "encode",
            Self::ReadFile { .. } => "read",
            Self::Empty => "empty",
            Self::NotJpeg => "not_jpeg",
            Self::Truncated { .. } => "truncated",
            Self::Decode(_) => "decode",
            Self::ShortBuffer { .. } => "short_buffer",
            Self::Stopped => "stopped",
        }
    }

    /// Whether this concerns one file or buffer (skipped and counted by the
    /// sources) rather than the source as a whole.
    pub fn is_frame_error(&self) -> bool {
        matches!(
            self,
            Self::ReadFile { .. }
                | Self::Empty
                | Self::NotJpeg
                | Self::Truncated { .. }
                | Self::Decode(_)
                | Self::ShortBuffer { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_error_names_the_device_and_the_os_error() {
        let e = CaptureError::Open {
            device: "/dev/video7".into(),
            source: io::Error::from_raw_os_error(2),
        };
        let text = e.to_string();
        assert!(text.contains("/dev/video7"), "{text}");
        assert!(text.contains("os error 2"), "{text}");
        assert_eq!(e.code(), "open");
        assert!(!e.is_frame_error());
        assert!(CaptureError::Truncated { len: 3 }.is_frame_error());
    }
}
