//! Camera configuration: `[[cameras]]` entries with their source and retry policy.
//!
//! ```toml
//! [[cameras]]
//! id = "cam-front"
//! position = "front"
//! source = { kind = "v4l2", device = "/dev/video0", width = 1280, height = 720, fps = 15.0, format = "mjpeg" }
//! retry = { initial_backoff_s = 0.5, max_backoff_s = 30.0, jitter = 0.5 }
//!
//! [[cameras]]
//! id = "cam-left"
//! position = "left"
//! source = { kind = "directory", path = "/var/lib/edge-agent/replay/left", fps = 5.0, loop = false }
//!
//! [[cameras]]
//! id = "cam-test"
//! position = "rear"
//! source = { kind = "synthetic", width = 640, height = 480, fps = 0, frames = 60, enter_at = 10, stay = 30 }
//! ```
//!
//! Unknown keys are refused by serde; everything else (ids, ranges) is
//! reported at once by [`CameraConfig::problems`] and [`cameras_problems`].

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use inspection_core::config::FileChecks;
use inspection_core::ids::CameraId;
use inspection_core::wire::CameraInfo;
use serde::Deserialize;

use super::CaptureError;

/// Highest frame rate accepted. No camera in a return bay needs more, and a
/// typo such as `fps = 1500` must not make a replay spin.
pub const MAX_FPS: f64 = 120.0;

/// One camera: its id, where it looks from, where its frames come from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Camera id (the id alphabet: it appears in events, object keys and metric labels).
    pub id: String,
    /// Where it looks from: `front`, `rear`, `left`, `right`, ... (same alphabet).
    pub position: String,
    /// Where the frames come from.
    pub source: SourceConfig,
    /// How a failing source is reopened; every key defaults.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Search this camera's selected frames for faces and redact them
    /// (`[anonymise]`). Default true; false for a camera that cannot film
    /// people (an underbody camera), or when `[anonymise]` is off.
    #[serde(default = "yes")]
    pub anonymise_faces: bool,
}

fn yes() -> bool {
    true
}

/// Where a camera's frames come from, chosen by `kind`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceConfig {
    /// A V4L2 device node (USB/CSI camera).
    V4l2(V4l2Config),
    /// A directory of JPEG files, replayed in name order.
    Directory(DirectoryConfig),
    /// Generated frames of a car that arrives and leaves, for tests and demos.
    Synthetic(SyntheticConfig),
}

/// Pixel format requested from a V4L2 camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PixelFormat {
    /// Motion JPEG: each buffer is a JPEG, kept as the frame's bytes.
    #[default]
    Mjpeg,
    /// Packed 4:2:2 YUV, converted to RGB (BT.601) by the agent.
    Yuyv,
}

impl PixelFormat {
    /// The V4L2 four-character code.
    pub fn fourcc(self) -> [u8; 4] {
        match self {
            Self::Mjpeg => *b"MJPG",
            Self::Yuyv => *b"YUYV",
        }
    }
}

/// `source = { kind = "v4l2", ... }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct V4l2Config {
    /// Device node, e.g. `/dev/video0` (better: a stable
    /// `/dev/v4l/by-path/...` link, since USB enumeration order changes).
    pub device: PathBuf,
    /// Requested width. Default 1280: every UVC camera of the last decade
    /// offers 1280x720 in MJPEG, it is ample for the pre-screen at 640 and
    /// for damage crops, and decoding it costs less than half of 1080p.
    /// The driver may pick another size; the source reports and uses it.
    #[serde(default = "default_v4l2_width")]
    pub width: u32,
    /// Requested height. Default 720, with `width`.
    #[serde(default = "default_v4l2_height")]
    pub height: u32,
    /// Requested frame rate. Default 15: a car enters the bay at walking
    /// pace, so 15 frames per second give several sharp frames per metre,
    /// and the pre-screen handles far fewer anyway (extra frames are dropped
    /// at capture).
    #[serde(default = "default_v4l2_fps")]
    pub fps: f64,
    /// `mjpeg` (default) or `yuyv`. MJPEG because YUYV 720p at 15 fps is
    /// 28 MB/s, most of a USB 2.0 bus for one camera, while MJPEG is about a
    /// tenth of it and its bytes are uploaded as they are, with no re-encode.
    #[serde(default)]
    pub format: PixelFormat,
    /// Seconds without a frame after which the camera counts as hung and is
    /// reopened. Default 5: UVC cameras take 1-2 s to deliver the first
    /// frame after stream-on (auto exposure settles), so less would flap.
    #[serde(default = "default_v4l2_timeout")]
    pub timeout_s: f64,
    /// Number of mmap buffers. Default 4 (the `v4l` crate's default): enough
    /// to ride over one slow decode without the driver dropping frames,
    /// little memory even at 1080p.
    #[serde(default = "default_v4l2_buffers")]
    pub buffers: u32,
}

fn default_v4l2_width() -> u32 {
    1280
}
fn default_v4l2_height() -> u32 {
    720
}
fn default_v4l2_fps() -> f64 {
    15.0
}
fn default_v4l2_timeout() -> f64 {
    5.0
}
fn default_v4l2_buffers() -> u32 {
    4
}

/// `source = { kind = "directory", ... }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    /// Directory of `.jpg` files, replayed in byte order of their names
    /// (name them `0001.jpg`, `0002.jpg`, ...). Files that are not complete
    /// JPEGs are skipped, logged and counted.
    pub path: PathBuf,
    /// Frames per second. Default 5, the rate of a slow camera, so a replay
    /// exercises the pipeline like a real camera would; `0` means as fast
    /// as the consumer takes frames, for tests and benchmarks.
    #[serde(default = "default_directory_fps")]
    pub fps: f64,
    /// Start again after the last file. Default false: a replay normally
    /// ends, which ends the camera; true for demos and soak tests. The
    /// directory is listed again on every pass, so files can be added.
    #[serde(default, rename = "loop")]
    pub looped: bool,
}

fn default_directory_fps() -> f64 {
    5.0
}

/// `source = { kind = "synthetic", ... }`: a textured bay floor; a car with
/// a bright EU-style plate appears at frame `enter_at`, stays `stay` frames
/// and leaves. Deterministic: the same settings give the same pixels and
/// the same JPEG bytes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyntheticConfig {
    /// Frame width. Default 640, the pre-screen's input size, so tests spend
    /// no time resizing.
    pub width: u32,
    /// Frame height. Default 480 (4:3, like most UVC cameras at 640 wide).
    pub height: u32,
    /// Frames per second. Default 10; `0` means unpaced. With a virtual
    /// clock the timestamps are still 1/fps apart while nothing waits.
    pub fps: f64,
    /// Frames in the timeline. Default 60: six seconds at 10 fps, enough for
    /// an arrival, a stay and a departure.
    pub frames: u64,
    /// Replay the timeline forever. Default false (the source ends).
    #[serde(rename = "loop")]
    pub looped: bool,
    /// First frame with the car. Default 10: an empty bay first, as in life.
    pub enter_at: u64,
    /// Frames the car stays. Default 30 (three seconds at 10 fps).
    pub stay: u64,
    /// Frame indices (within the timeline) rendered out of focus, for the
    /// quality gate. Default none.
    pub blurred_frames: Vec<u64>,
    /// Frame indices rendered underexposed. Default none.
    pub dark_frames: Vec<u64>,
    /// Seed of the floor texture. Default 0.
    pub seed: u64,
    /// With `loop`, render each pass of the timeline with the next seed
    /// (`seed + pass`), so every pass's frames are new JPEG bytes. Default
    /// false (every pass repeats the first, byte for byte). For soak and
    /// full-disk runs: the outbox stores images by content, so repeated
    /// bytes would be stored once.
    pub vary_per_loop: bool,
    /// JPEG quality of the frame bytes. Default 90, a typical camera's MJPEG quality.
    pub jpeg_quality: u8,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            width: 640,
            height: 480,
            fps: 10.0,
            frames: 60,
            looped: false,
            enter_at: 10,
            stay: 30,
            blurred_frames: Vec::new(),
            dark_frames: Vec::new(),
            seed: 0,
            vary_per_loop: false,
            jpeg_quality: 90,
        }
    }
}

/// `retry = { ... }`: reopening a failed source with exponential backoff and jitter.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// First delay in seconds. Default 0.5: a replugged USB camera
    /// re-enumerates in about a second, so the second or third try finds it.
    pub initial_backoff_s: f64,
    /// Longest delay in seconds. Default 30: a dead camera costs two log
    /// lines a minute, and a repaired one is back within 30 s.
    pub max_backoff_s: f64,
    /// Fraction (0-1) of each delay that is random. Default 0.5: cameras on
    /// one USB hub fail together when the hub resets; jitter spreads their
    /// reopen attempts instead of hammering the hub in lockstep.
    pub jitter: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            initial_backoff_s: 0.5,
            max_backoff_s: 30.0,
            jitter: 0.5,
        }
    }
}

fn fps_problem(at: &str, fps: f64, zero_allowed: bool) -> Option<String> {
    let ok = fps.is_finite() && fps <= MAX_FPS && (fps > 0.0 || (zero_allowed && fps == 0.0));
    (!ok).then(|| {
        if zero_allowed {
            format!("{at}.fps: {fps} must be in [0, {MAX_FPS}] (0 = unpaced)")
        } else {
            format!("{at}.fps: {fps} must be in (0, {MAX_FPS}]")
        }
    })
}

impl CameraConfig {
    /// Every problem serde cannot see, each prefixed by `at` (e.g. `cameras[0]`).
    /// Touches no files; see [`file_problems`](Self::file_problems).
    pub fn problems(&self, at: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = CameraId::new(self.id.as_str()) {
            problems.push(format!("{at}.id: {e}"));
        }
        if let Err(e) = CameraId::new(self.position.as_str()) {
            problems.push(format!("{at}.position: {e}"));
        }
        problems.extend(self.source.problems(&format!("{at}.source")));
        problems.extend(self.retry.problems(&format!("{at}.retry")));
        problems
    }

    /// Problems with the files the camera names: a replay directory must
    /// exist. A V4L2 node is not checked: cameras are plugged in after boot
    /// and reopened by the retry wrapper.
    pub fn file_problems(&self, at: &str) -> Vec<String> {
        match &self.source {
            SourceConfig::Directory(d) if !d.path.is_dir() => vec![format!(
                "{at}.source.path: {} is not a directory",
                d.path.display()
            )],
            _ => Vec::new(),
        }
    }

    /// The typed id.
    pub fn camera_id(&self) -> Result<CameraId, CaptureError> {
        CameraId::new(self.id.as_str()).map_err(|e| CaptureError::InvalidConfig(format!("id: {e}")))
    }

    /// The camera as it appears in events.
    pub fn info(&self) -> Result<CameraInfo, CaptureError> {
        CameraId::new(self.position.as_str())
            .map_err(|e| CaptureError::InvalidConfig(format!("position: {e}")))?;
        Ok(CameraInfo {
            id: self.camera_id()?,
            position: self.position.clone(),
        })
    }
}

impl SourceConfig {
    /// Every bad value, prefixed by `at` (e.g. `cameras[0].source`).
    pub fn problems(&self, at: &str) -> Vec<String> {
        match self {
            Self::V4l2(c) => c.problems(at),
            Self::Directory(c) => c.problems(at),
            Self::Synthetic(c) => c.problems(at),
        }
    }
}

impl V4l2Config {
    /// Every bad value, prefixed by `at`.
    pub fn problems(&self, at: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if self.device.as_os_str().is_empty() {
            problems.push(format!("{at}.device: must not be empty"));
        }
        for (key, value) in [("width", self.width), ("height", self.height)] {
            if !(1..=8192).contains(&value) {
                problems.push(format!("{at}.{key}: {value} must be in [1, 8192]"));
            }
        }
        if self.format == PixelFormat::Yuyv && self.width % 2 == 1 {
            problems.push(format!(
                "{at}.width: {} must be even for yuyv (two pixels share their chroma)",
                self.width
            ));
        }
        problems.extend(fps_problem(at, self.fps, false));
        let min_timeout = if self.fps > 0.0 { 2.0 / self.fps } else { 0.0 };
        if !(self.timeout_s.is_finite() && self.timeout_s > 0.0 && self.timeout_s >= min_timeout) {
            problems.push(format!(
                "{at}.timeout_s: {} must be positive and at least two frame intervals",
                self.timeout_s
            ));
        }
        if !(2..=32).contains(&self.buffers) {
            problems.push(format!("{at}.buffers: {} must be in [2, 32]", self.buffers));
        }
        problems
    }

    /// The stall timeout as a duration (meaningful once `problems` is empty).
    pub fn timeout(&self) -> Duration {
        Duration::try_from_secs_f64(self.timeout_s).unwrap_or(Duration::from_secs(5))
    }
}

impl DirectoryConfig {
    /// Every bad value, prefixed by `at`.
    pub fn problems(&self, at: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if self.path.as_os_str().is_empty() {
            problems.push(format!("{at}.path: must not be empty"));
        }
        problems.extend(fps_problem(at, self.fps, true));
        problems
    }
}

impl SyntheticConfig {
    /// Every bad value, prefixed by `at`.
    pub fn problems(&self, at: &str) -> Vec<String> {
        let mut problems = Vec::new();
        // The scene needs room for a car with a legible plate.
        if !(160..=7680).contains(&self.width) {
            problems.push(format!("{at}.width: {} must be in [160, 7680]", self.width));
        }
        if !(120..=4320).contains(&self.height) {
            problems.push(format!(
                "{at}.height: {} must be in [120, 4320]",
                self.height
            ));
        }
        problems.extend(fps_problem(at, self.fps, true));
        if self.frames == 0 {
            problems.push(format!("{at}.frames: must be at least 1"));
        }
        for (key, list) in [
            ("blurred_frames", &self.blurred_frames),
            ("dark_frames", &self.dark_frames),
        ] {
            if let Some(bad) = list.iter().find(|&&i| i >= self.frames) {
                problems.push(format!(
                    "{at}.{key}: frame {bad} is beyond the timeline of {} frames",
                    self.frames
                ));
            }
        }
        if !(1..=100).contains(&self.jpeg_quality) {
            problems.push(format!(
                "{at}.jpeg_quality: {} must be in [1, 100]",
                self.jpeg_quality
            ));
        }
        problems
    }
}

impl RetryConfig {
    /// Every bad value, prefixed by `at`.
    pub fn problems(&self, at: &str) -> Vec<String> {
        let mut problems = Vec::new();
        // An hour is far beyond any sensible backoff; it also keeps
        // `Duration::from_secs_f64` away from overflow.
        let sane = |s: f64| s.is_finite() && s > 0.0 && s <= 3600.0;
        if !sane(self.initial_backoff_s) {
            problems.push(format!(
                "{at}.initial_backoff_s: {} must be in (0, 3600]",
                self.initial_backoff_s
            ));
        }
        if !sane(self.max_backoff_s) || self.max_backoff_s < self.initial_backoff_s {
            problems.push(format!(
                "{at}.max_backoff_s: {} must be in (0, 3600] and at least initial_backoff_s",
                self.max_backoff_s
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            problems.push(format!("{at}.jitter: {} must be in [0, 1]", self.jitter));
        }
        problems
    }
}

/// Every problem of a whole `[[cameras]]` list, prefixed `cameras[i]`:
/// each camera's own, duplicate ids, an empty list, and with
/// [`FileChecks::On`] missing replay directories.
pub fn cameras_problems(cameras: &[CameraConfig], files: FileChecks) -> Vec<String> {
    let mut problems = Vec::new();
    if cameras.is_empty() {
        problems.push("cameras: at least one [[cameras]] entry is needed".to_owned());
    }
    let mut seen = HashSet::new();
    for (i, camera) in cameras.iter().enumerate() {
        let at = format!("cameras[{i}]");
        let mut own = camera.problems(&at);
        if !seen.insert(camera.id.as_str()) {
            own.insert(
                0,
                format!("{at}.id: {:?} is used by another camera", camera.id),
            );
        }
        if files == FileChecks::On {
            own.extend(camera.file_problems(&at));
        }
        problems.extend(own);
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct File {
        cameras: Vec<CameraConfig>,
    }

    fn parse(text: &str) -> Result<Vec<CameraConfig>, toml::de::Error> {
        toml::from_str::<File>(text).map(|f| f.cameras)
    }

    #[test]
    fn the_documented_example_parses_with_defaults() {
        let cameras = parse(
            r#"
            [[cameras]]
            id = "cam-front"
            position = "front"
            source = { kind = "v4l2", device = "/dev/video0" }
            [[cameras]]
            id = "cam-left"
            position = "left"
            source = { kind = "directory", path = "/replay", fps = 0, loop = true }
            retry = { max_backoff_s = 10.0 }
            [[cameras]]
            id = "cam-test"
            position = "rear"
            source = { kind = "synthetic", frames = 20, blurred_frames = [3] }
            "#,
        )
        .unwrap();
        assert_eq!(
            cameras[0].source,
            SourceConfig::V4l2(V4l2Config {
                device: "/dev/video0".into(),
                width: 1280,
                height: 720,
                fps: 15.0,
                format: PixelFormat::Mjpeg,
                timeout_s: 5.0,
                buffers: 4,
            })
        );
        assert_eq!(cameras[0].retry, RetryConfig::default());
        assert_eq!(
            cameras[1].source,
            SourceConfig::Directory(DirectoryConfig {
                path: "/replay".into(),
                fps: 0.0,
                looped: true,
            })
        );
        assert_eq!(cameras[1].retry.max_backoff_s, 10.0);
        let SourceConfig::Synthetic(s) = &cameras[2].source else {
            panic!("{:?}", cameras[2].source)
        };
        assert_eq!(
            (s.frames, s.width, s.blurred_frames.as_slice()),
            (20, 640, &[3][..])
        );
        assert!(cameras_problems(&cameras, FileChecks::Off).is_empty());
    }

    #[test]
    fn unknown_keys_and_kinds_are_refused() {
        for text in [
            r#"source = { kind = "v4l2", device = "/dev/video0", fsp = 15 }"#,
            r#"source = { kind = "webcam", device = "/dev/video0" }"#,
            r#"source = { kind = "v4l2", device = "/dev/video0", format = "h264" }"#,
            r#"source = { kind = "directory", path = "/x", looping = true }"#,
            r#"source = { kind = "synthetic", colour = "red" }"#,
            "source = { kind = \"synthetic\" }\nretry = { backoff = 1 }",
        ] {
            let doc = format!("[[cameras]]\nid = \"c\"\nposition = \"front\"\n{text}\n");
            assert!(parse(&doc).is_err(), "accepted: {text}");
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let cameras = parse(
            r#"
            [[cameras]]
            id = "cam"
            position = "front"
            source = { kind = "v4l2", device = "", width = 0, height = 720, fps = 0.0, format = "yuyv", timeout_s = 0, buffers = 1 }
            retry = { initial_backoff_s = 0, max_backoff_s = -1, jitter = 2 }
            [[cameras]]
            id = "cam"
            position = "left side"
            source = { kind = "directory", path = "/x", fps = -1 }
            [[cameras]]
            id = "-bad"
            position = "rear"
            source = { kind = "synthetic", width = 10, height = 10, fps = 500, frames = 0, dark_frames = [1], jpeg_quality = 0 }
            "#,
        )
        .unwrap();
        let problems = cameras_problems(&cameras, FileChecks::Off);
        let keys: Vec<&str> = problems
            .iter()
            .map(|p| p.split(':').next().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "cameras[0].source.device",
                "cameras[0].source.width",
                "cameras[0].source.fps",
                "cameras[0].source.timeout_s",
                "cameras[0].source.buffers",
                "cameras[0].retry.initial_backoff_s",
                "cameras[0].retry.max_backoff_s",
                "cameras[0].retry.jitter",
                "cameras[1].id",
                "cameras[1].position",
                "cameras[1].source.fps",
                "cameras[2].id",
                "cameras[2].source.width",
                "cameras[2].source.height",
                "cameras[2].source.fps",
                "cameras[2].source.frames",
                "cameras[2].source.dark_frames",
                "cameras[2].source.jpeg_quality",
            ],
            "{problems:#?}"
        );
        assert_eq!(
            cameras_problems(&[], FileChecks::Off),
            ["cameras: at least one [[cameras]] entry is needed"]
        );
    }

    #[test]
    fn odd_yuyv_width_and_missing_directory_are_problems() {
        let cameras = parse(
            r#"
            [[cameras]]
            id = "a"
            position = "front"
            source = { kind = "v4l2", device = "/dev/video0", width = 641, format = "yuyv" }
            [[cameras]]
            id = "b"
            position = "rear"
            source = { kind = "directory", path = "/nonexistent/replay" }
            "#,
        )
        .unwrap();
        assert_eq!(
            cameras_problems(&cameras, FileChecks::Off)
                .iter()
                .map(|p| p.split(':').next().unwrap())
                .collect::<Vec<_>>(),
            ["cameras[0].source.width"]
        );
        let with_files = cameras_problems(&cameras, FileChecks::On);
        assert!(
            with_files
                .last()
                .unwrap()
                .starts_with("cameras[1].source.path: /nonexistent/replay"),
            "{with_files:?}"
        );
    }

    #[test]
    fn info_carries_id_and_position() {
        let camera = CameraConfig {
            id: "cam-front".into(),
            position: "front".into(),
            source: SourceConfig::Synthetic(SyntheticConfig::default()),
            retry: RetryConfig::default(),
            anonymise_faces: true,
        };
        let info = camera.info().unwrap();
        assert_eq!(
            (info.id.as_str(), info.position.as_str()),
            ("cam-front", "front")
        );
    }
}
