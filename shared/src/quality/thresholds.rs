//! Frame quality thresholds, as read from the edge agent's TOML configuration.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// When a camera frame is good enough to pre-screen.
///
/// Every field has a default (see each field), so a config file only names
/// what it changes; unknown keys are an error, so a typo such as
/// `min_sharpnes` fails loudly instead of silently keeping the default.
/// Call [`validate`](Self::validate) after deserialising.
///
/// ```toml
/// [quality]
/// min_sharpness = 80.0
/// max_motion = 2.5
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct QualityThresholds {
    /// Minimum sharpness (variance of the Laplacian at analysis resolution).
    ///
    /// Defaults to 50. Measured with these defaults on two real photos
    /// (`shared/tests/quality_real_photos.rs`; both are under 640 pixels, so
    /// not downscaled): the sharp street photo of a double-decker bus scores
    /// 2492, the motion-blurred photo of a sedan and its plate 12.3, and
    /// Gaussian-blurred copies of the bus 191 (σ 1), 19.1 (σ 2), 3.0 (σ 4)
    /// and 1.75 (σ 8). 50 rejects the sedan with a margin of 4x and the bus
    /// from σ 2 on, where scratches a few pixels wide are smeared out, yet
    /// keeps a mildly soft frame (σ 1) with a margin of almost 4x, since
    /// the variance also grows with scene texture and a close-up of a
    /// smooth panel has little of it.
    pub min_sharpness: f64,
    /// Minimum mean luma (0-255).
    ///
    /// Defaults to 40: below it the frame is so underexposed that scratches
    /// and dents, which show as small luma changes, drown in sensor noise.
    /// Dark paint in a lit bay stays well above it. The bus photo measures
    /// 142, the sedan 126.
    pub min_mean_luma: f64,
    /// Maximum mean luma (0-255).
    ///
    /// Defaults to 220: above it highlights have washed out, which hides
    /// damage on white and silver paint, the most common rental colours.
    pub max_mean_luma: f64,
    /// Maximum fraction (0-1) of pixels at or below [`dark_level`](Self::dark_level).
    ///
    /// Defaults to 0.35. Clipping is a backstop for gross failures (a dead
    /// light, a covered lens, sun through the bay door); general under- and
    /// overexposure is the mean luma's job. Shadows under the car and in
    /// the wheel arches are black anyway: the bus photo measures 0.10, the
    /// sedan 0.07.
    pub max_dark_fraction: f64,
    /// Maximum fraction (0-1) of pixels at or above [`bright_level`](Self::bright_level).
    ///
    /// Defaults to 0.35, for the same reason as
    /// [`max_dark_fraction`](Self::max_dark_fraction): a bright background
    /// (an open bay door, a white wall, sky) legitimately fills a good part
    /// of a frame whose car is well exposed. The bus photo's overcast sky
    /// makes 0.27 of it clipped (most at 250-253) with the bus itself well
    /// exposed; the sedan measures 0.04. A frame blown out by a flash or low
    /// sun typically clips over half its pixels.
    pub max_bright_fraction: f64,
    /// Luma at or below which a pixel counts as clipped dark.
    ///
    /// Defaults to 16, the black level of studio-range (BT.601/709) video,
    /// which many camera ISPs still emit: values below it carry no detail.
    pub dark_level: u8,
    /// Luma at or above which a pixel counts as clipped bright.
    ///
    /// Defaults to 239, symmetric to [`dark_level`](Self::dark_level)
    /// (255 - 16): JPEG ringing and gamma keep blown-out areas from reading
    /// exactly 255 (the bus photo's white sky sits at 250-253).
    pub bright_level: u8,
    /// Longer side, in pixels, the luma image is downscaled to before any
    /// metric is computed (never upscaled).
    ///
    /// Defaults to 640. The variance of the Laplacian depends on scale: the
    /// same blur spans three times as many pixels on a 1920-pixel camera as
    /// on a 640-pixel one, and the same edge is spread over more pixels, so
    /// raw values are not comparable between cameras and one threshold could
    /// not serve both. Bringing every frame to the same longer side makes them
    /// comparable, and 640 is the input size of the YOLOv8 detector that
    /// looks at the frame next, so blur that is invisible at 640 pixels does
    /// not matter to it. It also bounds the cost per frame on the board.
    pub analysis_max_side: u32,
    /// Maximum motion: mean absolute luma difference (0-255) from the
    /// previous frame, at analysis resolution.
    ///
    /// Defaults to 4.0, the geometric mean of two measurements on the bus
    /// photo: re-encoding it as JPEG (quality 85), which is all that changes
    /// between frames of a still scene apart from sensor noise, gives 1.54,
    /// and shifting it by a single pixel already gives 10.4 (15.9 for two,
    /// 21.4 for four pixels). A car still rolling through the bay moves far
    /// more than a pixel between frames.
    pub max_motion: f64,
}

impl Default for QualityThresholds {
    fn default() -> Self {
        Self {
            min_sharpness: 50.0,
            min_mean_luma: 40.0,
            max_mean_luma: 220.0,
            max_dark_fraction: 0.35,
            max_bright_fraction: 0.35,
            dark_level: 16,
            bright_level: 239,
            analysis_max_side: 640,
            max_motion: 4.0,
        }
    }
}

impl QualityThresholds {
    /// Checks every value and reports all problems at once, so an operator
    /// fixes a config file in one round instead of one error per restart.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        let mut non_negative = |name: &str, value: f64| {
            if !(value.is_finite() && value >= 0.0) {
                errors.push(format!("{name} must be a finite number >= 0, got {value}"));
            }
        };
        non_negative("min_sharpness", self.min_sharpness);
        non_negative("max_motion", self.max_motion);

        let mut in_range = |name: &str, value: f64, max: f64| {
            if !(value.is_finite() && (0.0..=max).contains(&value)) {
                errors.push(format!("{name} must be between 0 and {max}, got {value}"));
            }
        };
        in_range("min_mean_luma", self.min_mean_luma, 255.0);
        in_range("max_mean_luma", self.max_mean_luma, 255.0);
        in_range("max_dark_fraction", self.max_dark_fraction, 1.0);
        in_range("max_bright_fraction", self.max_bright_fraction, 1.0);

        if self.min_mean_luma > self.max_mean_luma {
            errors.push(format!(
                "min_mean_luma ({}) must not exceed max_mean_luma ({})",
                self.min_mean_luma, self.max_mean_luma
            ));
        }
        if self.dark_level >= self.bright_level {
            errors.push(format!(
                "dark_level ({}) must be below bright_level ({})",
                self.dark_level, self.bright_level
            ));
        }
        // The Laplacian needs a 3x3 neighbourhood; anything smaller measures nothing.
        if self.analysis_max_side < 3 {
            errors.push(format!(
                "analysis_max_side must be at least 3, got {}",
                self.analysis_max_side
            ));
        }

        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(QualityThresholds::default().validate(), Ok(()));
    }

    #[test]
    fn validate_reports_every_error_at_once() {
        let bad = QualityThresholds {
            min_sharpness: -1.0,
            min_mean_luma: 200.0,
            max_mean_luma: 100.0,
            max_dark_fraction: 1.5,
            max_bright_fraction: f64::NAN,
            dark_level: 240,
            bright_level: 239,
            analysis_max_side: 0,
            max_motion: f64::INFINITY,
        };
        let errors = bad.validate().unwrap_err();
        for field in [
            "min_sharpness",
            "max_motion",
            "max_dark_fraction",
            "max_bright_fraction",
            "min_mean_luma (200) must not exceed",
            "dark_level",
            "analysis_max_side",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(field)),
                "no error about {field} in {errors:?}"
            );
        }
        assert_eq!(errors.len(), 7, "{errors:?}");
    }

    #[test]
    fn deserialises_partial_config_and_rejects_unknown_keys() {
        let partial: QualityThresholds =
            serde_json::from_str(r#"{"min_sharpness": 80.0, "analysis_max_side": 320}"#).unwrap();
        assert_eq!(partial.min_sharpness, 80.0);
        assert_eq!(partial.analysis_max_side, 320);
        assert_eq!(partial.max_motion, QualityThresholds::default().max_motion);

        let typo = serde_json::from_str::<QualityThresholds>(r#"{"min_sharpnes": 80.0}"#);
        assert!(typo.unwrap_err().to_string().contains("unknown field"));
    }

    #[test]
    fn schema_names_every_field() {
        let schema = serde_json::to_value(schemars::schema_for!(QualityThresholds)).unwrap();
        let properties = schema["properties"].as_object().unwrap();
        assert_eq!(properties.len(), 9);
        assert_eq!(schema["additionalProperties"], false);
    }
}
