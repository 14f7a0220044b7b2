//! Configuration of the ONNX Runtime library and of one detection model.

use std::path::PathBuf;

use inspection_core::yolo::DecodeConfig;
use serde::Deserialize;

/// Where ONNX Runtime comes from.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Path of `libonnxruntime.so`. Default: the one `models/fetch.sh` puts in
    /// the cache (`onnxruntime/libonnxruntime.so.1.31.1`), so a laptop needs
    /// no configuration; production images set it explicitly.
    #[serde(default)]
    pub library: Option<PathBuf>,
}

/// One YOLOv8 model (Ultralytics ONNX export, detect or seg head).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DetectorConfig {
    pub model: PathBuf,
    /// Square input size. Default: the model's `imgsz` metadata, else 640.
    #[serde(default)]
    pub input_size: Option<u32>,
    #[serde(default)]
    pub decode: DecodeConfig,
    /// Threads ONNX Runtime may use inside one operator; 0 lets it choose
    /// (one per core). Set it to the pod's CPU limit in Kubernetes, where
    /// ONNX Runtime sees the node's cores, not the container's quota.
    #[serde(default)]
    pub intra_threads: usize,
}

impl DetectorConfig {
    /// A config for `model` with every other key at its default.
    pub fn for_model(model: impl Into<PathBuf>) -> Self {
        Self {
            model: model.into(),
            input_size: None,
            decode: DecodeConfig::default(),
            intra_threads: 0,
        }
    }

    /// Every problem at once, each prefixed with `at`.
    pub fn problems(&self, at: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(errors) = self.decode.validate() {
            problems.extend(errors.into_iter().map(|e| format!("{at}.decode: {e}")));
        }
        if let Some(Err(e)) = self.input_size.map(inspection_core::yolo::check_input_size) {
            problems.push(format!("{at}.input_size: {e}"));
        }
        if self.intra_threads > 256 {
            problems.push(format!(
                "{at}.intra_threads: {} is more than 256",
                self.intra_threads
            ));
        }
        problems
    }
}
