//! Comparison settings, as read from the worker's TOML configuration.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How far the return frame may be from the pickup frame, and how well it
/// must match to count as the same view.
///
/// ```toml
/// [compare.align]
/// max_shift = 0.12
/// min_match_score = 0.45
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AlignConfig {
    /// Largest translation searched, as a fraction of the frame's width
    /// (horizontally) and height (vertically), in each direction.
    ///
    /// Defaults to 0.12: a car stops within a few percent of its pickup
    /// position in the bay; 0.12 leaves room for a sloppy stop plus the
    /// shift a scale change adds, while keeping at least 76% overlap.
    pub max_shift: f32,
    /// Largest scale change searched, in each direction (0.07 = 0.93 to 1.07).
    ///
    /// Defaults to 0.07: a car half a metre nearer to a camera 8 m away
    /// is 6% larger.
    pub max_scale_change: f32,
    /// Minimum match score (normalised cross-correlation of the two frames'
    /// saturated gradient magnitude, -1 to 1) below which the frames are
    /// reported as not showing the same scene.
    ///
    /// Defaults to 0.45. Measured in `shared/tests/compare_real_photos.rs`:
    /// the bus photo against 30 shifted, scaled, relit, noisy and JPEG
    /// re-encoded copies of itself (some with painted damage) scores 0.91 at
    /// worst, two different scenes (the bus against the sedan) 0.16. 0.45
    /// sits between them with a wide margin on both sides; a real car that
    /// stands at a slight angle scores lower than these pure shifts, which
    /// is why it is not set higher.
    pub min_match_score: f32,
    /// Minimum fraction (0-1) of the return frame that the aligned pickup
    /// frame must cover for a candidate transform to be considered.
    ///
    /// Defaults to 0.5: a correlation over a sliver of the frame is high by
    /// chance, and the search ranges above never need less than 0.76.
    pub min_overlap: f32,
}

impl Default for AlignConfig {
    fn default() -> Self {
        Self {
            max_shift: 0.12,
            max_scale_change: 0.07,
            min_match_score: 0.45,
            min_overlap: 0.5,
        }
    }
}

impl AlignConfig {
    /// Checks every value and reports all problems at once.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        self.collect_problems("", &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn collect_problems(&self, prefix: &str, errors: &mut Vec<String>) {
        let mut in_range = |name: &str, value: f32, min: f32, max: f32| {
            if !(value.is_finite() && (min..=max).contains(&value)) {
                errors.push(format!(
                    "{prefix}{name} must be between {min} and {max}, got {value}"
                ));
            }
        };
        in_range("max_shift", self.max_shift, 0.0, 0.4);
        in_range("max_scale_change", self.max_scale_change, 0.0, 0.3);
        in_range("min_match_score", self.min_match_score, -1.0, 1.0);
        in_range("min_overlap", self.min_overlap, 0.05, 1.0);
    }
}

/// How [`detect_changes`](super::detect_changes) decides what changed.
///
/// Every field has a default (see each field); unknown keys are an error.
/// Call [`validate`](Self::validate) after deserialising.
///
/// ```toml
/// [compare]
/// analysis_max_side = 960
/// threshold_sigmas = 6.0
///
/// [compare.align]
/// max_shift = 0.12
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ChangeConfig {
    /// Alignment search ranges and the same-scene threshold.
    pub align: AlignConfig,
    /// Upper bound on the longer side, in pixels, of the analysis images:
    /// both frames are area-downscaled by the smallest integer factor that
    /// brings them within it (never upscaled; see
    /// [`analysis_factor`](super::analysis_factor)), and alignment
    /// refinement and change detection run at that size.
    ///
    /// Defaults to 960: 1080p and 720p frames are halved (960x540,
    /// 640x360), so a scratch two camera pixels wide is still one analysis
    /// pixel at half its contrast, while the work per pair is a quarter of
    /// full resolution.
    pub analysis_max_side: u32,
    /// The detection threshold, in robust standard deviations of the
    /// difference map above its median (the "noise" of this pair: sensor
    /// noise, JPEG, residual misalignment).
    ///
    /// Defaults to 6. A Gaussian exceeds 6σ once in 10⁹ pixels; the
    /// difference map has heavier tails (edges, specular glints), so a
    /// lower multiple would flag them. On clean camera frames the floor
    /// [`min_threshold`](Self::min_threshold) usually decides; this term
    /// raises the threshold on noisy pairs (dim light, high gain, heavy
    /// compression).
    pub threshold_sigmas: f32,
    /// Floor of the detection threshold, in mean absolute difference over
    /// the three channels (0-255).
    ///
    /// Defaults to 10. On clean pairs the difference map is nearly zero
    /// almost everywhere, so `threshold_sigmas` alone would land at 2-8
    /// levels and flag JPEG blocks; on the 30 clean pairs of the real-photo
    /// test a floor of 4 let 15 false regions through, 6 let 2, 10 none,
    /// while every painted scratch and dent (contrast 25-90 levels) was
    /// still found at 10. With heavy sensor noise (σ 12 levels) the
    /// adaptive part takes over and the pairs stayed (almost) clean: one
    /// false region in 30.
    pub min_threshold: f32,
    /// Low hysteresis threshold as a fraction of the high one (0-1): a
    /// region is seeded by pixels above the threshold and grows over
    /// connected pixels above this fraction of it.
    ///
    /// Defaults to 0.5, so a scratch whose contrast fades along its length
    /// is reported as one region, not as beads.
    pub hysteresis_ratio: f32,
    /// Texture masking: the difference at a pixel is lowered by this
    /// fraction of the pickup frame's local contrast (max - min over 3x3),
    /// so busy structure that never resamples identically (lettering, a
    /// grille, a lamp post against the sky) is not flagged while smooth
    /// paint keeps full sensitivity. 0 turns it off.
    ///
    /// Defaults to 0.1. On the 30 clean pairs of the real-photo test,
    /// without masking 66 false regions were flagged (lettering on the bus,
    /// its window frames, a lamp post) and precision on the damage pairs was
    /// 0.48; at 0.1 no false region remained, with recall unchanged (1.0);
    /// 0.15 and 0.25 behaved the same on these pairs, so the smallest
    /// value keeps the most sensitivity on textured parts of the car.
    pub texture_masking: f32,
    /// Radius, in analysis pixels, within which flagged pixels are grouped
    /// into one region (a morphological closing used for grouping only; the
    /// reported box and area come from the flagged pixels themselves).
    ///
    /// Defaults to 3: a scratch interrupted by a highlight stays one finding.
    pub merge_radius: u32,
    /// Minimum area of a region, in return-frame pixels (flagged pixels
    /// only, not its box).
    ///
    /// Defaults to 40: a scratch 40 pixels long and one pixel wide, the
    /// smallest damage a reviewer is asked to look at.
    pub min_region_area_px: f32,
    /// Pixels, in analysis resolution, ignored along the edges of the area
    /// both frames cover.
    ///
    /// Defaults to 3: resampling and the 3x3 neighbourhoods below reach
    /// that far, and the outermost pixels of a resampled frame repeat
    /// their neighbours.
    pub border_margin: u32,
}

impl Default for ChangeConfig {
    fn default() -> Self {
        Self {
            align: AlignConfig::default(),
            analysis_max_side: 960,
            threshold_sigmas: 6.0,
            min_threshold: 10.0,
            hysteresis_ratio: 0.5,
            texture_masking: 0.1,
            merge_radius: 3,
            min_region_area_px: 40.0,
            border_margin: 3,
        }
    }
}

impl ChangeConfig {
    /// Checks every value, including the nested [`AlignConfig`], and reports
    /// all problems at once, so an operator fixes a config file in one round.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        self.align.collect_problems("align.", &mut errors);
        // The alignment pyramid needs a few dozen pixels at its finest level.
        if !(64..=8192).contains(&self.analysis_max_side) {
            errors.push(format!(
                "analysis_max_side must be between 64 and 8192, got {}",
                self.analysis_max_side
            ));
        }
        let mut in_range = |name: &str, value: f32, min: f32, max: f32| {
            if !(value.is_finite() && (min..=max).contains(&value)) {
                errors.push(format!(
                    "{name} must be between {min} and {max}, got {value}"
                ));
            }
        };
        in_range("threshold_sigmas", self.threshold_sigmas, 0.5, 100.0);
        in_range("min_threshold", self.min_threshold, 0.0, 255.0);
        in_range("hysteresis_ratio", self.hysteresis_ratio, 0.05, 1.0);
        in_range("texture_masking", self.texture_masking, 0.0, 2.0);
        in_range("min_region_area_px", self.min_region_area_px, 0.0, 1.0e9);
        if self.merge_radius > 32 {
            errors.push(format!(
                "merge_radius must be at most 32, got {}",
                self.merge_radius
            ));
        }
        if self.border_margin > 64 {
            errors.push(format!(
                "border_margin must be at most 64, got {}",
                self.border_margin
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
        ChangeConfig::default().validate().unwrap();
        AlignConfig::default().validate().unwrap();
    }

    #[test]
    fn validate_reports_every_problem_at_once() {
        let config = ChangeConfig {
            align: AlignConfig {
                max_shift: -0.1,
                min_match_score: f32::NAN,
                ..AlignConfig::default()
            },
            analysis_max_side: 8,
            threshold_sigmas: 0.0,
            hysteresis_ratio: 2.0,
            merge_radius: 100,
            ..ChangeConfig::default()
        };
        let errors = config.validate().unwrap_err();
        assert_eq!(errors.len(), 6, "{errors:?}");
        assert!(errors[0].starts_with("align.max_shift"), "{errors:?}");
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("align.min_match_score"))
        );
        assert!(errors.iter().any(|e| e.starts_with("merge_radius")));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = serde_json::from_str::<ChangeConfig>(r#"{"treshold_sigmas": 5}"#).unwrap_err();
        assert!(err.to_string().contains("treshold_sigmas"), "{err}");
        let partial: ChangeConfig =
            serde_json::from_str(r#"{"align": {"max_shift": 0.2}}"#).unwrap();
        assert_eq!(partial.align.max_shift, 0.2);
        assert_eq!(partial.analysis_max_side, 960);
    }
}
