//! The agent's TOML configuration: parsed strictly, then validated as a whole.
//!
//! Parsing rejects unknown keys (a typo must not silently fall back to a
//! default on 5,000 boards). Validation then reports every problem at once,
//! so an operator fixes a file in one pass rather than one error per deploy.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub use inspection_core::config::{ConfigErrors, FileChecks};
use inspection_core::ids::{CameraId, DeviceId, SiteId};
use inspection_core::quality::QualityThresholds;
use inspection_core::topic::TopicPrefix;
use inspection_core::yolo::DecodeConfig;
use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub device: DeviceSection,
    #[serde(default)]
    pub mqtt: MqttSection,
    /// Frame quality gate; every key defaults (see `QualityThresholds`).
    #[serde(default)]
    pub quality: QualityThresholds,
    pub prescreen: PrescreenSection,
    pub cameras: Vec<CameraSection>,
}

/// Who this board is. Both ids appear in every topic and payload.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSection {
    pub site: String,
    pub device: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSection {
    /// Topic prefix; default `inspect`, shared with the central service.
    #[serde(default = "default_prefix")]
    pub topic_prefix: String,
}

impl Default for MqttSection {
    fn default() -> Self {
        Self {
            topic_prefix: default_prefix(),
        }
    }
}

fn default_prefix() -> String {
    inspection_core::topic::DEFAULT_PREFIX.to_owned()
}

/// The on-board YOLOv8 pre-screen model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrescreenSection {
    /// Path of an Ultralytics YOLOv8 ONNX export (detect or seg head).
    pub model: PathBuf,
    /// Square input size the model was exported with. Default 640, the
    /// Ultralytics default.
    #[serde(default = "default_input_size")]
    pub input_size: u32,
    #[serde(default)]
    pub decode: DecodeConfig,
}

fn default_input_size() -> u32 {
    640
}

/// One camera.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraSection {
    pub id: String,
    /// Where it looks from: `front`, `rear`, `left`, `right`, ...
    pub position: String,
    pub source: SourceSection,
}

/// Where a camera's frames come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceSection {
    /// A V4L2 device node.
    V4l2 {
        device: PathBuf,
        width: u32,
        height: u32,
        fps: f64,
        /// `mjpeg` (default) or `yuyv`.
        #[serde(default = "default_pixel_format")]
        format: String,
    },
    /// A directory of JPEG files, read in name order.
    Directory {
        path: PathBuf,
        fps: f64,
        #[serde(default, rename = "loop")]
        looped: bool,
    },
}

fn default_pixel_format() -> String {
    "mjpeg".to_owned()
}

/// The ids of a validated configuration, typed.
#[derive(Debug, Clone)]
pub struct Identity {
    pub site: SiteId,
    pub device: DeviceId,
    pub prefix: TopicPrefix,
}

impl Config {
    /// Parses and validates a TOML document.
    pub fn from_toml(text: &str, files: FileChecks) -> Result<(Config, Identity), ConfigErrors> {
        let config: Config = toml::from_str(text)
            .map_err(|e| ConfigErrors(vec![e.to_string().trim().to_owned()]))?;
        let identity = config.validate(files)?;
        Ok((config, identity))
    }

    /// Reads, parses and validates a file.
    pub fn load(path: &Path, files: FileChecks) -> Result<(Config, Identity), ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors(vec![format!("cannot read {}: {e}", path.display())]))?;
        Self::from_toml(&text, files)
    }

    /// Checks everything serde cannot, reporting all problems at once.
    pub fn validate(&self, files: FileChecks) -> Result<Identity, ConfigErrors> {
        let mut problems = Vec::new();
        let site = SiteId::new(self.device.site.as_str())
            .map_err(|e| problems.push(format!("device.site: {e}")))
            .ok();
        let device = DeviceId::new(self.device.device.as_str())
            .map_err(|e| problems.push(format!("device.device: {e}")))
            .ok();
        let prefix = TopicPrefix::new(self.mqtt.topic_prefix.as_str())
            .map_err(|e| problems.push(format!("mqtt.topic_prefix: {e}")))
            .ok();
        if let Err(errors) = self.quality.validate() {
            problems.extend(errors.into_iter().map(|e| format!("quality: {e}")));
        }
        if let Err(errors) = self.prescreen.decode.validate() {
            problems.extend(errors.into_iter().map(|e| format!("prescreen.decode: {e}")));
        }
        if let Err(e) = inspection_core::yolo::check_input_size(self.prescreen.input_size) {
            problems.push(format!("prescreen.input_size: {e}"));
        }
        if files == FileChecks::On && !self.prescreen.model.is_file() {
            problems.push(format!(
                "prescreen.model: {} is not a readable file",
                self.prescreen.model.display()
            ));
        }
        if self.cameras.is_empty() {
            problems.push("cameras: at least one [[cameras]] entry is needed".to_owned());
        }
        let mut seen = HashSet::new();
        for (i, cam) in self.cameras.iter().enumerate() {
            let at = format!("cameras[{i}]");
            if let Err(e) = CameraId::new(cam.id.as_str()) {
                problems.push(format!("{at}.id: {e}"));
            }
            if !seen.insert(cam.id.as_str()) {
                problems.push(format!("{at}.id: {:?} is used by another camera", cam.id));
            }
            if let Err(e) = CameraId::new(cam.position.as_str()) {
                problems.push(format!("{at}.position: {e}"));
            }
            let fps = match &cam.source {
                SourceSection::V4l2 {
                    width,
                    height,
                    fps,
                    format,
                    ..
                } => {
                    if *width == 0 || *height == 0 {
                        problems.push(format!("{at}.source: width and height must be positive"));
                    }
                    if !matches!(format.as_str(), "mjpeg" | "yuyv") {
                        problems.push(format!(
                            "{at}.source.format: {format:?} is not one of \"mjpeg\", \"yuyv\""
                        ));
                    }
                    *fps
                }
                SourceSection::Directory { path, fps, .. } => {
                    if files == FileChecks::On && !path.is_dir() {
                        problems.push(format!(
                            "{at}.source.path: {} is not a directory",
                            path.display()
                        ));
                    }
                    *fps
                }
            };
            if !(fps.is_finite() && fps > 0.0 && fps <= 120.0) {
                problems.push(format!("{at}.source.fps: {fps} must be in (0, 120]"));
            }
        }
        match (site, device, prefix) {
            (Some(site), Some(device), Some(prefix)) if problems.is_empty() => Ok(Identity {
                site,
                device,
                prefix,
            }),
            _ => Err(ConfigErrors(problems)),
        }
    }
}
