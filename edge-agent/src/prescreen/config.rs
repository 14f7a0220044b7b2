//! The `[prescreen]` configuration section.

use std::path::PathBuf;

use inspection_core::yolo::{DecodeConfig, check_input_size};
use serde::Deserialize;

/// Most frames in inference at once. Far above any board's core count; a
/// larger value is a typo, and each in-flight frame holds ~20 MB of tract
/// activations for a 640 YOLOv8s.
pub const MAX_THREADS: usize = 64;

/// Which model the pre-screen runs and how.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrescreenConfig {
    /// Ultralytics YOLOv8 ONNX export (detect or seg head; fp32, fp16 or int8
    /// QDQ). Required: no model ships with the agent.
    pub model: PathBuf,
    /// Loaded instead when `model` cannot be loaded (e.g. the fp32 model
    /// beside an int8 one). Default: none, since a wrong model should stop
    /// the agent rather than quietly run something else.
    #[serde(default)]
    pub fallback_model: Option<PathBuf>,
    /// Square input size. Default: the model's fixed input size, else its
    /// `imgsz` metadata, else 640 (the Ultralytics default), because a size
    /// the model was not exported for either fails or loses accuracy.
    #[serde(default)]
    pub input_size: Option<u32>,
    /// Post-processing thresholds. Default: `DecodeConfig::default()`
    /// (Ultralytics' predict defaults, iou 0.45), shared with central.
    #[serde(default)]
    pub decode: DecodeConfig,
    /// How many frames may be in inference at once. Each frame runs on one
    /// core (tract runs a model single-threaded), so this is the number of
    /// cores given to inference: at most the board's cores minus one, which
    /// capture, JPEG decoding, the quality gate and the outbox need. Default
    /// 1, right for 4-core boards that also encode and upload; raise it to 2
    /// or 3 on 6- and 8-core Jetsons.
    #[serde(default = "default_threads")]
    pub threads: usize,
}

fn default_threads() -> usize {
    1
}

impl PrescreenConfig {
    /// A configuration for `model` with every other key at its default.
    pub fn new(model: impl Into<PathBuf>) -> Self {
        Self {
            model: model.into(),
            fallback_model: None,
            input_size: None,
            decode: DecodeConfig::default(),
            threads: default_threads(),
        }
    }

    /// Every bad value, each prefixed with `at` (e.g. `prescreen`). File
    /// existence is checked by [`Prescreener::load`](super::Prescreener::load),
    /// so a config can be validated away from its board.
    pub fn problems(&self, at: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if self.model.as_os_str().is_empty() {
            problems.push(format!("{at}.model: must name an ONNX file"));
        }
        if self
            .fallback_model
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            problems.push(format!("{at}.fallback_model: must name an ONNX file"));
        }
        if let Some(size) = self.input_size
            && let Err(e) = check_input_size(size)
        {
            problems.push(format!("{at}.input_size: {e}"));
        }
        if let Err(errors) = self.decode.validate() {
            problems.extend(errors.into_iter().map(|e| format!("{at}.decode: {e}")));
        }
        if !(1..=MAX_THREADS).contains(&self.threads) {
            problems.push(format!(
                "{at}.threads: must be between 1 and {MAX_THREADS}, got {}",
                self.threads
            ));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_from_a_minimal_table() {
        let c: PrescreenConfig = toml::from_str("model = 'm.onnx'").unwrap();
        assert_eq!(c, PrescreenConfig::new("m.onnx"));
        assert_eq!(c.threads, 1);
        assert_eq!(c.input_size, None);
        assert!(c.problems("prescreen").is_empty());
    }

    #[test]
    fn unknown_keys_and_missing_model_are_parse_errors() {
        assert!(toml::from_str::<PrescreenConfig>("model = 'm'\nthread = 2").is_err());
        assert!(toml::from_str::<PrescreenConfig>("threads = 2").is_err());
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let c: PrescreenConfig = toml::from_str(
            "model = ''\nfallback_model = ''\ninput_size = 0\nthreads = 0\n[decode]\nconf_threshold = 2.0\nmax_detections = 0",
        )
        .unwrap();
        let p = c.problems("prescreen");
        assert_eq!(p.len(), 6, "{p:#?}");
        for key in [
            "prescreen.model:",
            "prescreen.fallback_model:",
            "prescreen.input_size:",
            "prescreen.threads:",
            "prescreen.decode: conf_threshold",
            "prescreen.decode: max_detections",
        ] {
            assert!(p.iter().any(|m| m.starts_with(key)), "{key} not in {p:#?}");
        }
        let c = PrescreenConfig {
            threads: MAX_THREADS + 1,
            ..PrescreenConfig::new("m")
        };
        assert_eq!(c.problems("x").len(), 1);
    }
}
