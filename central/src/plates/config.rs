//! `[plates]`: which OCR models read plates and how strict the reading is.

use std::path::PathBuf;

use serde::Deserialize;

use super::rec::Decoding;

/// Which PP-OCR recognition model reads the crops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecModel {
    /// PP-OCRv4 rec (`rapidocr_onnxruntime==1.4.4`, 10.9 MB).
    V4,
    /// PP-OCRv6 rec small (`rapidocr==3.10.0`, 21 MB).
    V6,
}

impl RecModel {
    /// The model's path under the cache's `models/` folder.
    pub fn cache_path(self) -> &'static str {
        match self {
            RecModel::V4 => "rapidocr-v4/ch_PP-OCRv4_rec_infer.onnx",
            RecModel::V6 => "rapidocr-v6/PP-OCRv6_rec_small.onnx",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RecModel::V4 => "v4",
            RecModel::V6 => "v6",
        }
    }
}

/// The text detector used when the plate detector found nothing.
pub const TEXT_DET_CACHE_PATH: &str = "rapidocr-v4/ch_PP-OCRv4_det_infer.onnx";

/// Plate reading. Every key has a default; the reasons are the measurements
/// of `tests/plates_synthetic.rs` (synthetic EU plates 100-300 px wide on
/// the fetched photos).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlatesConfig {
    /// Default `v6`: on the synthetic set (33 plates, read from their own
    /// box) it read 30 exactly against v4's 26, and all its reads at or
    /// above 0.8 were right; v4 is ~25% faster per plate.
    pub recognizer: RecModel,
    /// Default: the recogniser's file in the model cache.
    pub rec_model: Option<PathBuf>,
    /// The PP-OCR text detector (DB) for the fallback. Default: PP-OCRv4 det
    /// in the cache (4.7 MB, the smaller and faster of the two).
    pub text_det_model: Option<PathBuf>,
    /// Default `plate_alphabet`: CTC decoding restricted to `A-Z`, `0-9`
    /// and separators (the dictionaries otherwise offer thousands of
    /// lookalikes). Measured: v4 26/33 exact against 24/33 unrestricted, v6
    /// 30/33 either way; no confident wrong read with either.
    pub decoding: Decoding,
    /// 0..1, default 0.8: below it a read is `Unreadable`. The confidence is
    /// the weakest character's probability (one wrong character makes a wrong
    /// plate), lowered by 10% per letter/digit substitution. On the synthetic
    /// set every read at or above 0.8 was right, while right reads also
    /// occur at 0.5-0.8 (mostly v4's): the floor trades those for safety.
    pub min_confidence: f32,
    /// Pixels, default 16: shorter plate boxes are never `Read`. At the bus
    /// photo's 14 px both models returned confident wrong strings.
    pub min_plate_height: u32,
    /// Fraction of the box's width and height added on each side before
    /// reading, default 0.08: detector boxes can clip the outer characters.
    pub crop_margin: f32,
    /// Default true: estimate the plate's tilt from the crop and read the
    /// straightened crop as well, keeping the more confident reading.
    pub deskew: bool,
    /// Degrees, default 8: the largest tilt the estimate considers.
    pub max_deskew_degrees: f32,
    /// Default true: with no plate box, or when no box reads as a valid
    /// plate, look for plate-shaped text (0.5-1 s per frame on a CPU).
    pub text_fallback: bool,
    /// Pixels, default 960: the text detector's input is scaled so that its
    /// longer side is at most this (rounded to a multiple of 32).
    pub text_det_max_side: u32,
    /// Default 4: at most this many boxes are read per frame, best first.
    pub max_plates: usize,
    /// Threads ONNX Runtime may use inside one operator; 0 (default) lets it
    /// choose. Set it to the pod's CPU limit in Kubernetes.
    pub intra_threads: usize,
}

impl Default for PlatesConfig {
    fn default() -> Self {
        Self {
            recognizer: RecModel::V6,
            rec_model: None,
            text_det_model: None,
            decoding: Decoding::PlateAlphabet,
            min_confidence: 0.8,
            min_plate_height: 16,
            crop_margin: 0.08,
            deskew: true,
            max_deskew_degrees: 8.0,
            text_fallback: true,
            text_det_max_side: 960,
            max_plates: 4,
            intra_threads: 0,
        }
    }
}

impl PlatesConfig {
    /// The recognition model to load: the configured path or the cache's.
    pub fn rec_model_path(&self) -> Option<PathBuf> {
        self.rec_model
            .clone()
            .or_else(|| crate::paths::fetched(self.recognizer.cache_path()))
    }

    /// The text detection model to load: the configured path or the cache's.
    pub fn text_det_model_path(&self) -> Option<PathBuf> {
        self.text_det_model
            .clone()
            .or_else(|| crate::paths::fetched(TEXT_DET_CACHE_PATH))
    }

    /// Every problem at once, each prefixed with `at`. With `check_files`,
    /// the model files must exist (the text detector only when the fallback
    /// is on).
    pub fn problems(&self, at: &str, check_files: bool) -> Vec<String> {
        let mut p = Vec::new();
        if !(self.min_confidence.is_finite() && (0.0..=1.0).contains(&self.min_confidence)) {
            p.push(format!(
                "{at}.min_confidence: {} is not in 0..1",
                self.min_confidence
            ));
        }
        if !(self.crop_margin.is_finite() && (0.0..=1.0).contains(&self.crop_margin)) {
            p.push(format!(
                "{at}.crop_margin: {} is not in 0..1",
                self.crop_margin
            ));
        }
        if !(self.max_deskew_degrees.is_finite() && (0.0..=30.0).contains(&self.max_deskew_degrees))
        {
            p.push(format!(
                "{at}.max_deskew_degrees: {} is not in 0..30",
                self.max_deskew_degrees
            ));
        }
        if self.min_plate_height > 1000 {
            p.push(format!(
                "{at}.min_plate_height: {} is more than 1000",
                self.min_plate_height
            ));
        }
        if !(64..=4096).contains(&self.text_det_max_side) {
            p.push(format!(
                "{at}.text_det_max_side: {} is not in 64..4096",
                self.text_det_max_side
            ));
        }
        if self.max_plates == 0 || self.max_plates > 64 {
            p.push(format!(
                "{at}.max_plates: {} is not in 1..64",
                self.max_plates
            ));
        }
        if self.intra_threads > 256 {
            p.push(format!(
                "{at}.intra_threads: {} is more than 256",
                self.intra_threads
            ));
        }
        if check_files {
            let mut check = |key: &str, path: Option<PathBuf>| match path {
                None => p.push(format!(
                    "{at}.{key}: not set and no model cache (set HOME or INSPECTION_CACHE_DIR)"
                )),
                Some(path) if !path.is_file() => p.push(format!(
                    "{at}.{key}: {} does not exist (run `bash models/fetch.sh`)",
                    path.display()
                )),
                Some(_) => {}
            };
            check("rec_model", self.rec_model_path());
            if self.text_fallback {
                check("text_det_model", self.text_det_model_path());
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_every_bad_value_is_reported() {
        assert!(PlatesConfig::default().problems("plates", false).is_empty());
        let bad: PlatesConfig = toml::from_str(
            "text_fallback = false\nmin_confidence = 1.5\ncrop_margin = -0.1\nmax_plates = 0\ntext_det_max_side = 10\nrec_model = '/nonexistent.onnx'",
        )
        .unwrap();
        let p = bad.problems("plates", true);
        assert_eq!(p.len(), 5, "{p:?}");
        assert!(p.iter().all(|s| s.starts_with("plates.")), "{p:?}");
        assert!(p.iter().any(|s| s.contains("/nonexistent.onnx")), "{p:?}");
    }

    #[test]
    fn parses_model_choice_and_rejects_unknown_keys() {
        let c: PlatesConfig = toml::from_str("recognizer = 'v4'\ndecoding = 'full'").unwrap();
        assert_eq!(c.recognizer, RecModel::V4);
        assert_eq!(c.decoding, Decoding::Full);
        assert!(toml::from_str::<PlatesConfig>("colour = 'blue'").is_err());
    }
}
