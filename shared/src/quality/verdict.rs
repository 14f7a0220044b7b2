//! Measured metrics, reasons to reject a frame and the verdict that carries them on the wire.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::QualityThresholds;

/// What was measured on one frame. All values are finite; they are computed
/// on the analysis image (luma, longer side at most
/// [`QualityThresholds::analysis_max_side`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct QualityMetrics {
    /// Width of the frame as captured, in pixels.
    pub source_width: u32,
    /// Height of the frame as captured, in pixels.
    pub source_height: u32,
    /// Width of the analysis image the metrics were computed on.
    pub analysis_width: u32,
    /// Height of the analysis image the metrics were computed on.
    pub analysis_height: u32,
    /// Variance of the Laplacian; higher is sharper, 0 for a flat frame.
    pub sharpness: f64,
    /// Mean luma, 0-255.
    pub mean_luma: f64,
    /// Fraction of pixels clipped dark, in `[0, 1]`.
    pub dark_fraction: f64,
    /// Fraction of pixels clipped bright, in `[0, 1]`.
    pub bright_fraction: f64,
    /// Mean absolute luma difference from the previous frame, 0-255, when
    /// one was compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub motion: Option<f64>,
}

impl QualityMetrics {
    /// Whether the analysis image has no pixels, so no metric means anything.
    pub fn is_empty(&self) -> bool {
        self.analysis_width == 0 || self.analysis_height == 0
    }
}

/// Why a frame was rejected. Serialised with its [`code`](Self::code) in a
/// `"code"` field, next to the measured value and the threshold it failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum RejectReason {
    /// The frame has no pixels (a camera or decoder fault).
    EmptyFrame {
        /// Width of the frame as captured.
        width: u32,
        /// Height of the frame as captured.
        height: u32,
    },
    /// Out of focus or motion-blurred.
    Blurry {
        /// Measured variance of the Laplacian.
        sharpness: f64,
        /// [`QualityThresholds::min_sharpness`].
        min: f64,
    },
    /// Underexposed.
    TooDark {
        /// Measured mean luma.
        mean: f64,
        /// [`QualityThresholds::min_mean_luma`].
        min: f64,
    },
    /// Overexposed.
    TooBright {
        /// Measured mean luma.
        mean: f64,
        /// [`QualityThresholds::max_mean_luma`].
        max: f64,
    },
    /// Too much of the frame is crushed to black.
    ClippedDark {
        /// Measured fraction of clipped-dark pixels.
        fraction: f64,
        /// [`QualityThresholds::max_dark_fraction`].
        max: f64,
    },
    /// Too much of the frame is blown out.
    ClippedBright {
        /// Measured fraction of clipped-bright pixels.
        fraction: f64,
        /// [`QualityThresholds::max_bright_fraction`].
        max: f64,
    },
    /// The scene is still moving (the car has not stopped).
    Moving {
        /// Measured mean absolute luma difference from the previous frame.
        motion: f64,
        /// [`QualityThresholds::max_motion`].
        max: f64,
    },
}

impl RejectReason {
    /// Every [`code`](Self::code), for pre-registering metric label values so
    /// that dashboards show zeros instead of gaps.
    pub const CODES: [&'static str; 7] = [
        "empty_frame",
        "blurry",
        "too_dark",
        "too_bright",
        "clipped_dark",
        "clipped_bright",
        "moving",
    ];

    /// A stable snake_case identifier, usable as a Prometheus label value; it
    /// is also the `"code"` tag in the serialised form.
    pub fn code(&self) -> &'static str {
        match self {
            Self::EmptyFrame { .. } => "empty_frame",
            Self::Blurry { .. } => "blurry",
            Self::TooDark { .. } => "too_dark",
            Self::TooBright { .. } => "too_bright",
            Self::ClippedDark { .. } => "clipped_dark",
            Self::ClippedBright { .. } => "clipped_bright",
            Self::Moving { .. } => "moving",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyFrame { width, height } => {
                write!(f, "empty frame ({width}x{height} pixels)")
            }
            Self::Blurry { sharpness, min } => write!(
                f,
                "blurry: sharpness {sharpness:.1} is below the minimum {min:.1}"
            ),
            Self::TooDark { mean, min } => write!(
                f,
                "too dark: mean luma {mean:.1} is below the minimum {min:.1}"
            ),
            Self::TooBright { mean, max } => write!(
                f,
                "too bright: mean luma {mean:.1} is above the maximum {max:.1}"
            ),
            Self::ClippedDark { fraction, max } => write!(
                f,
                "clipped dark: {:.1}% of pixels are black, more than {:.1}%",
                fraction * 100.0,
                max * 100.0
            ),
            Self::ClippedBright { fraction, max } => write!(
                f,
                "clipped bright: {:.1}% of pixels are blown out, more than {:.1}%",
                fraction * 100.0,
                max * 100.0
            ),
            Self::Moving { motion, max } => write!(
                f,
                "moving: frame differs from the previous one by {motion:.2}, more than {max:.2}"
            ),
        }
    }
}

/// The quality verdict on one frame: what was measured and, if it was
/// rejected, every reason why (an empty list means accepted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Verdict {
    /// The measurements the verdict is based on.
    pub metrics: QualityMetrics,
    /// Every failed check, in a fixed order (empty frame, blur, exposure,
    /// clipping, motion); empty when the frame is accepted.
    pub reasons: Vec<RejectReason>,
}

impl Verdict {
    /// Judges `metrics` against `thresholds`, listing every failed check
    /// rather than the first, so logs and counters show all of them.
    ///
    /// An empty frame gets [`RejectReason::EmptyFrame`] alone: its other
    /// metrics are placeholders. Motion is only checked when
    /// [`QualityMetrics::motion`] is set. Comparisons are strict: a value
    /// exactly at a threshold passes.
    pub fn from_metrics(metrics: QualityMetrics, thresholds: &QualityThresholds) -> Self {
        let t = thresholds;
        let mut reasons = Vec::new();
        if metrics.is_empty() {
            reasons.push(RejectReason::EmptyFrame {
                width: metrics.source_width,
                height: metrics.source_height,
            });
            return Self { metrics, reasons };
        }
        if metrics.sharpness < t.min_sharpness {
            reasons.push(RejectReason::Blurry {
                sharpness: metrics.sharpness,
                min: t.min_sharpness,
            });
        }
        if metrics.mean_luma < t.min_mean_luma {
            reasons.push(RejectReason::TooDark {
                mean: metrics.mean_luma,
                min: t.min_mean_luma,
            });
        }
        if metrics.mean_luma > t.max_mean_luma {
            reasons.push(RejectReason::TooBright {
                mean: metrics.mean_luma,
                max: t.max_mean_luma,
            });
        }
        if metrics.dark_fraction > t.max_dark_fraction {
            reasons.push(RejectReason::ClippedDark {
                fraction: metrics.dark_fraction,
                max: t.max_dark_fraction,
            });
        }
        if metrics.bright_fraction > t.max_bright_fraction {
            reasons.push(RejectReason::ClippedBright {
                fraction: metrics.bright_fraction,
                max: t.max_bright_fraction,
            });
        }
        if let Some(motion) = metrics.motion
            && motion > t.max_motion
        {
            reasons.push(RejectReason::Moving {
                motion,
                max: t.max_motion,
            });
        }
        Self { metrics, reasons }
    }

    /// Whether the frame passed every check.
    pub fn accepted(&self) -> bool {
        self.reasons.is_empty()
    }

    /// Whether the frame was rejected for the reason with this
    /// [`code`](RejectReason::code).
    pub fn has_reason(&self, code: &str) -> bool {
        self.reasons.iter().any(|r| r.code() == code)
    }

    /// A scalar for picking the best of several frames of one camera (for
    /// example the sharpest frame after the car stopped): 0 when rejected,
    /// otherwise the sharpness scaled by the fraction of pixels that are not
    /// clipped, since clipped areas hide damage however sharp the rest is.
    ///
    /// Only comparable between frames of the same camera and scene: the
    /// variance of the Laplacian also grows with how much texture the scene
    /// has, not only with focus.
    pub fn score(&self) -> f64 {
        if !self.accepted() {
            return 0.0;
        }
        let m = &self.metrics;
        let unclipped = (1.0 - m.dark_fraction - m.bright_fraction).clamp(0.0, 1.0);
        let score = m.sharpness * unclipped;
        if score.is_finite() {
            score.max(0.0)
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> QualityMetrics {
        QualityMetrics {
            source_width: 1280,
            source_height: 720,
            analysis_width: 640,
            analysis_height: 360,
            sharpness: 500.0,
            mean_luma: 120.0,
            dark_fraction: 0.05,
            bright_fraction: 0.05,
            motion: None,
        }
    }

    fn every_reason() -> Vec<RejectReason> {
        vec![
            RejectReason::EmptyFrame {
                width: 0,
                height: 0,
            },
            RejectReason::Blurry {
                sharpness: 1.0,
                min: 60.0,
            },
            RejectReason::TooDark {
                mean: 3.0,
                min: 40.0,
            },
            RejectReason::TooBright {
                mean: 250.0,
                max: 220.0,
            },
            RejectReason::ClippedDark {
                fraction: 0.9,
                max: 0.25,
            },
            RejectReason::ClippedBright {
                fraction: 0.5,
                max: 0.1,
            },
            RejectReason::Moving {
                motion: 12.0,
                max: 3.0,
            },
        ]
    }

    #[test]
    fn good_metrics_are_accepted_with_a_positive_score() {
        let verdict = Verdict::from_metrics(metrics(), &QualityThresholds::default());
        assert!(verdict.accepted(), "{:?}", verdict.reasons);
        assert!((verdict.score() - 450.0).abs() < 1e-9);
    }

    #[test]
    fn every_failed_check_is_reported_and_score_is_zero() {
        let bad = QualityMetrics {
            sharpness: 1.0,
            mean_luma: 10.0,
            dark_fraction: 0.45,
            bright_fraction: 0.4,
            motion: Some(9.0),
            ..metrics()
        };
        let verdict = Verdict::from_metrics(bad, &QualityThresholds::default());
        let codes: Vec<_> = verdict.reasons.iter().map(RejectReason::code).collect();
        assert_eq!(
            codes,
            [
                "blurry",
                "too_dark",
                "clipped_dark",
                "clipped_bright",
                "moving"
            ]
        );
        assert_eq!(verdict.score(), 0.0);
    }

    #[test]
    fn motion_is_checked_only_when_measured() {
        let t = QualityThresholds::default();
        assert!(Verdict::from_metrics(metrics(), &t).accepted());
        let still = QualityMetrics {
            motion: Some(0.5),
            ..metrics()
        };
        assert!(Verdict::from_metrics(still, &t).accepted());
        let moving = QualityMetrics {
            motion: Some(20.0),
            ..metrics()
        };
        assert!(Verdict::from_metrics(moving, &t).has_reason("moving"));
    }

    #[test]
    fn codes_are_stable_snake_case_and_match_the_serde_tag() {
        let reasons = every_reason();
        let codes: Vec<_> = reasons.iter().map(RejectReason::code).collect();
        assert_eq!(codes, RejectReason::CODES);
        for reason in &reasons {
            let json = serde_json::to_value(reason).unwrap();
            assert_eq!(json["code"], reason.code());
            let back: RejectReason = serde_json::from_value(json).unwrap();
            assert_eq!(&back, reason);
            assert!(
                reason
                    .code()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_')
            );
        }
    }

    #[test]
    fn display_is_readable() {
        let shown: Vec<String> = every_reason().iter().map(ToString::to_string).collect();
        assert_eq!(shown[1], "blurry: sharpness 1.0 is below the minimum 60.0");
        assert_eq!(
            shown[4],
            "clipped dark: 90.0% of pixels are black, more than 25.0%"
        );
        assert_eq!(
            shown[6],
            "moving: frame differs from the previous one by 12.00, more than 3.00"
        );
    }

    #[test]
    fn verdict_round_trips_and_matches_its_schema() {
        let verdict = Verdict::from_metrics(
            QualityMetrics {
                sharpness: 1.0,
                motion: Some(4.0),
                ..metrics()
            },
            &QualityThresholds::default(),
        );
        let json = serde_json::to_value(&verdict).unwrap();
        let back: Verdict = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, verdict);

        let schema = serde_json::to_value(schemars::schema_for!(Verdict)).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        assert!(validator.is_valid(&json), "{json}");
        let mut broken = json;
        broken["reasons"][0]["code"] = "not_a_reason".into();
        assert!(!validator.is_valid(&broken));
    }
}
