//! Frame quality: reject camera frames that are blurred, badly exposed or still moving.
//!
//! The edge agent photographs cars in a return bay and must not pre-screen
//! (or upload) frames on which damage could not be seen anyway. For each
//! frame it measures, on the luma image:
//!
//! - **sharpness**: the variance of the Laplacian, the classic focus measure;
//! - **exposure**: the mean luma and the fractions of clipped-dark and
//!   clipped-bright pixels;
//! - **motion**: the mean absolute luma difference from the previous frame,
//!   so the agent can wait for the car to stop.
//!
//! Every metric is computed after downscaling the luma image so its longer
//! side is at most [`QualityThresholds::analysis_max_side`] (never
//! upscaling): the variance of the Laplacian depends on scale, so this is
//! what makes one sharpness threshold work for cameras of different
//! resolutions (see that field for the details).
//!
//! [`assess`] judges one frame; on a stream, build an [`AnalysisFrame`] per
//! frame, keep the previous one and call [`AnalysisFrame::assess`], which
//! reuses the downscaled luma for the motion check instead of converting the
//! previous frame again.
//!
//! ```
//! use image::{DynamicImage, GrayImage, Luma};
//! use inspection_core::quality::{assess, QualityThresholds};
//!
//! let black = DynamicImage::ImageLuma8(GrayImage::from_pixel(64, 48, Luma([0])));
//! let verdict = assess(&black, &QualityThresholds::default());
//! assert!(!verdict.accepted());
//! assert!(verdict.has_reason("too_dark"));
//! ```

mod kernels;
mod thresholds;
mod verdict;

use image::{DynamicImage, GrayImage};

pub use kernels::{Exposure, analysis_size, downscale, exposure, laplacian_variance};
pub use thresholds::QualityThresholds;
pub use verdict::{QualityMetrics, RejectReason, Verdict};

/// Why two frames could not be compared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QualityError {
    /// The frames have different sizes once downscaled, so they do not show
    /// the same view of the bay.
    #[error(
        "frames differ in size after downscaling: previous {prev_width}x{prev_height}, \
         current {cur_width}x{cur_height}"
    )]
    SizeMismatch {
        /// Analysis width of the previous frame.
        prev_width: u32,
        /// Analysis height of the previous frame.
        prev_height: u32,
        /// Analysis width of the current frame.
        cur_width: u32,
        /// Analysis height of the current frame.
        cur_height: u32,
    },
    /// The frames have no pixels, so there is nothing to compare.
    #[error("frames are empty ({width}x{height}), nothing to compare")]
    EmptyFrame {
        /// Width of the empty frames.
        width: u32,
        /// Height of the empty frames.
        height: u32,
    },
}

/// A frame prepared for analysis: its luma, downscaled so the longer side is
/// at most `analysis_max_side`, and the size it was captured at.
///
/// Cheap to keep around as the previous frame for [`motion`](Self::motion_since):
/// at 640 pixels it is at most 400 KiB.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisFrame {
    luma: GrayImage,
    source_width: u32,
    source_height: u32,
}

impl AnalysisFrame {
    /// Converts `image` to luma (BT.709 weights, as `image` does) and
    /// downscales it. `analysis_max_side` 0 is treated as 1, so no input panics.
    pub fn new(image: &DynamicImage, analysis_max_side: u32) -> Self {
        // A frame that already fits skips the copy `downscale` would make.
        let (width, height) = (image.width(), image.height());
        let luma = image.to_luma8();
        let luma = if analysis_size(width, height, analysis_max_side) == (width, height) {
            luma
        } else {
            downscale(&luma, analysis_max_side)
        };
        Self {
            luma,
            source_width: width,
            source_height: height,
        }
    }

    /// Like [`new`](Self::new), for a frame that is already luma.
    pub fn from_luma(luma: &GrayImage, analysis_max_side: u32) -> Self {
        Self {
            luma: downscale(luma, analysis_max_side),
            source_width: luma.width(),
            source_height: luma.height(),
        }
    }

    /// The downscaled luma image the metrics are computed on.
    pub fn luma(&self) -> &GrayImage {
        &self.luma
    }

    /// Width and height of the frame as captured.
    pub fn source_size(&self) -> (u32, u32) {
        (self.source_width, self.source_height)
    }

    /// Variance of the Laplacian of the analysis image; see [`laplacian_variance`].
    pub fn sharpness(&self) -> f64 {
        laplacian_variance(&self.luma)
    }

    /// Sharpness and exposure under `thresholds`' dark and bright levels;
    /// [`QualityMetrics::motion`] is left unset.
    ///
    /// `thresholds.analysis_max_side` is not applied again: the frame was
    /// downscaled when it was built.
    pub fn metrics(&self, thresholds: &QualityThresholds) -> QualityMetrics {
        let e = exposure(&self.luma, thresholds.dark_level, thresholds.bright_level);
        QualityMetrics {
            source_width: self.source_width,
            source_height: self.source_height,
            analysis_width: self.luma.width(),
            analysis_height: self.luma.height(),
            sharpness: self.sharpness(),
            mean_luma: e.mean_luma,
            dark_fraction: e.dark_fraction,
            bright_fraction: e.bright_fraction,
            motion: None,
        }
    }

    /// Mean absolute luma difference (0-255) between `prev` and this frame.
    ///
    /// Frames whose analysis images differ in size are an error rather than
    /// being resampled to a common size: a camera that changes resolution or
    /// aspect ratio mid-stream was reconfigured or swapped, its view is no
    /// longer the previous one's, and any number computed from the pair
    /// would be meaningless. The caller should drop its previous frame and
    /// start waiting for a still scene anew. Frames of different capture
    /// sizes that downscale to the same size (1920x1080 and 1280x720) are
    /// compared normally.
    pub fn motion_since(&self, prev: &AnalysisFrame) -> Result<f64, QualityError> {
        let (pw, ph) = prev.luma.dimensions();
        let (cw, ch) = self.luma.dimensions();
        if (pw, ph) != (cw, ch) {
            return Err(QualityError::SizeMismatch {
                prev_width: pw,
                prev_height: ph,
                cur_width: cw,
                cur_height: ch,
            });
        }
        kernels::mean_abs_diff(prev.luma.as_raw(), self.luma.as_raw()).ok_or(
            QualityError::EmptyFrame {
                width: cw,
                height: ch,
            },
        )
    }

    /// Judges this frame, and its motion since `prev` when one is given.
    ///
    /// When the motion cannot be measured (the sizes differ, see
    /// [`motion_since`](Self::motion_since)) it is left unset and not
    /// checked, since the previous frame is not a valid reference; an empty
    /// frame is rejected as [`RejectReason::EmptyFrame`] anyway.
    pub fn assess(&self, prev: Option<&AnalysisFrame>, thresholds: &QualityThresholds) -> Verdict {
        let mut metrics = self.metrics(thresholds);
        metrics.motion = prev.and_then(|p| self.motion_since(p).ok());
        Verdict::from_metrics(metrics, thresholds)
    }
}

/// Measures sharpness and exposure of `image` under `thresholds`' analysis
/// size and clip levels; motion is left unset.
pub fn measure(image: &DynamicImage, thresholds: &QualityThresholds) -> QualityMetrics {
    AnalysisFrame::new(image, thresholds.analysis_max_side).metrics(thresholds)
}

/// Judges one frame on its own (sharpness and exposure, no motion).
pub fn assess(image: &DynamicImage, thresholds: &QualityThresholds) -> Verdict {
    Verdict::from_metrics(measure(image, thresholds), thresholds)
}

/// Mean absolute luma difference (0-255) between two frames, each converted
/// to luma and downscaled so its longer side is at most `analysis_max_side`.
///
/// Errors when the downscaled frames differ in size or are empty; see
/// [`AnalysisFrame::motion_since`] for why sizes are not reconciled by
/// resampling. On a stream, prefer keeping the previous [`AnalysisFrame`]
/// to converting it again for every new frame.
pub fn motion(
    prev: &DynamicImage,
    cur: &DynamicImage,
    analysis_max_side: u32,
) -> Result<f64, QualityError> {
    AnalysisFrame::new(cur, analysis_max_side)
        .motion_since(&AnalysisFrame::new(prev, analysis_max_side))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Luma, Rgb, RgbImage};
    use proptest::prelude::*;

    fn gray(img: GrayImage) -> DynamicImage {
        DynamicImage::ImageLuma8(img)
    }

    fn checkerboard(width: u32, height: u32, cell: u32) -> GrayImage {
        GrayImage::from_fn(width, height, |x, y| {
            Luma([if (x / cell + y / cell).is_multiple_of(2) {
                40
            } else {
                210
            }])
        })
    }

    /// A 5x5 box blur written out, so the test does not lean on the code under test.
    fn box_blur(img: &GrayImage) -> GrayImage {
        let (w, h) = img.dimensions();
        GrayImage::from_fn(w, h, |x, y| {
            let (mut sum, mut n) = (0u32, 0u32);
            for yy in y.saturating_sub(2)..(y + 3).min(h) {
                for xx in x.saturating_sub(2)..(x + 3).min(w) {
                    sum += u32::from(img.get_pixel(xx, yy)[0]);
                    n += 1;
                }
            }
            Luma([(sum / n) as u8])
        })
    }

    #[test]
    fn checkerboard_is_sharper_than_its_blurred_copy() {
        let t = QualityThresholds::default();
        let sharp = checkerboard(200, 150, 8);
        let blurred = box_blur(&sharp);
        let s = measure(&gray(sharp), &t).sharpness;
        let b = measure(&gray(blurred), &t).sharpness;
        assert!(s > b, "sharp {s} <= blurred {b}");
        assert!(b > 0.0);
    }

    #[test]
    fn flat_grey_has_zero_sharpness() {
        let flat = gray(GrayImage::from_pixel(320, 240, Luma([128])));
        let verdict = assess(&flat, &QualityThresholds::default());
        assert_eq!(verdict.metrics.sharpness, 0.0);
        assert_eq!(verdict.metrics.mean_luma, 128.0);
        let codes: Vec<_> = verdict.reasons.iter().map(RejectReason::code).collect();
        assert_eq!(codes, ["blurry"]);
    }

    #[test]
    fn all_black_is_too_dark_and_clipped_dark() {
        let black = DynamicImage::ImageRgb8(RgbImage::new(320, 240));
        let verdict = assess(&black, &QualityThresholds::default());
        assert!(verdict.has_reason("too_dark"), "{:?}", verdict.reasons);
        assert!(verdict.has_reason("clipped_dark"), "{:?}", verdict.reasons);
        assert!(!verdict.has_reason("too_bright"));
        assert_eq!(verdict.metrics.dark_fraction, 1.0);
        assert_eq!(verdict.score(), 0.0);
    }

    #[test]
    fn all_white_is_too_bright() {
        let white = DynamicImage::ImageRgb8(RgbImage::from_pixel(320, 240, Rgb([255; 3])));
        let verdict = assess(&white, &QualityThresholds::default());
        assert!(verdict.has_reason("too_bright"), "{:?}", verdict.reasons);
        assert!(
            verdict.has_reason("clipped_bright"),
            "{:?}",
            verdict.reasons
        );
        assert!(!verdict.has_reason("too_dark"));
        assert_eq!(verdict.metrics.bright_fraction, 1.0);
    }

    #[test]
    fn well_exposed_sharp_frame_is_accepted() {
        let frame = gray(checkerboard(640, 480, 16));
        let verdict = assess(&frame, &QualityThresholds::default());
        assert!(verdict.accepted(), "{:?}", verdict.reasons);
        assert!(verdict.score() > 0.0);
    }

    #[test]
    fn frames_are_downscaled_but_never_upscaled() {
        let t = QualityThresholds::default();
        let big = measure(&gray(checkerboard(1920, 1080, 12)), &t);
        assert_eq!((big.source_width, big.source_height), (1920, 1080));
        assert_eq!((big.analysis_width, big.analysis_height), (640, 360));
        let small = measure(&gray(checkerboard(300, 200, 12)), &t);
        assert_eq!((small.analysis_width, small.analysis_height), (300, 200));
    }

    #[test]
    fn downscaling_makes_sharpness_comparable_across_resolutions() {
        // The same scene at 1x and 3x: without downscaling the 3x copy's
        // edges would be spread over three times fewer pixels per feature.
        let t = QualityThresholds::default();
        let low = measure(&gray(checkerboard(640, 360, 8)), &t).sharpness;
        let high = measure(&gray(checkerboard(1920, 1080, 24)), &t).sharpness;
        assert!((low - high).abs() / low < 0.05, "640: {low}, 1920: {high}");
        let raw_high = laplacian_variance(&checkerboard(1920, 1080, 24));
        assert!(raw_high < low / 2.0, "raw 1920: {raw_high}, 640: {low}");
    }

    #[test]
    fn motion_of_identical_frames_is_zero_and_of_shifted_frames_positive() {
        let frame = checkerboard(400, 300, 10);
        let shifted = GrayImage::from_fn(400, 300, |x, y| *frame.get_pixel((x + 3) % 400, y));
        let (a, b) = (gray(frame), gray(shifted));
        assert_eq!(motion(&a, &a, 640), Ok(0.0));
        let m = motion(&a, &b, 640).unwrap();
        assert!(m > 0.0 && m <= 255.0, "{m}");
    }

    #[test]
    fn motion_compares_after_downscaling() {
        // 1280x720 and 1920x1080 of the same scene both become 640x360.
        let a = gray(GrayImage::from_pixel(1280, 720, Luma([100])));
        let b = gray(GrayImage::from_pixel(1920, 1080, Luma([110])));
        assert_eq!(motion(&a, &b, 640), Ok(10.0));
        let c = gray(GrayImage::from_pixel(640, 480, Luma([100])));
        assert_eq!(
            motion(&a, &c, 640),
            Err(QualityError::SizeMismatch {
                prev_width: 640,
                prev_height: 360,
                cur_width: 640,
                cur_height: 480,
            })
        );
        let empty = gray(GrayImage::new(0, 0));
        assert_eq!(
            motion(&empty, &empty, 640),
            Err(QualityError::EmptyFrame {
                width: 0,
                height: 0
            })
        );
    }

    #[test]
    fn stream_assessment_rejects_a_moving_scene() {
        let t = QualityThresholds::default();
        let frame = checkerboard(640, 480, 16);
        let moved = GrayImage::from_fn(640, 480, |x, y| *frame.get_pixel((x + 4) % 640, y));
        let first = AnalysisFrame::from_luma(&frame, t.analysis_max_side);
        let second = AnalysisFrame::from_luma(&moved, t.analysis_max_side);
        let still = first.assess(Some(&first), &t);
        assert!(still.accepted(), "{:?}", still.reasons);
        assert_eq!(still.metrics.motion, Some(0.0));
        let moving = second.assess(Some(&first), &t);
        assert!(moving.has_reason("moving"), "{:?}", moving.reasons);

        // A frame of another size has no valid reference: motion is not checked.
        let other = AnalysisFrame::from_luma(&checkerboard(320, 320, 16), t.analysis_max_side);
        let unrelated = other.assess(Some(&first), &t);
        assert_eq!(unrelated.metrics.motion, None);
        assert!(!unrelated.has_reason("moving"));
    }

    #[test]
    fn tiny_and_empty_images_do_not_panic() {
        let t = QualityThresholds::default();
        for (w, h) in [(0, 0), (0, 5), (5, 0), (1, 1), (2, 2), (3, 3)] {
            let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(w, h, Rgb([90, 120, 60])));
            let verdict = assess(&img, &t);
            assert!(!verdict.accepted(), "{w}x{h}");
            if w == 0 || h == 0 {
                let codes: Vec<_> = verdict.reasons.iter().map(RejectReason::code).collect();
                assert_eq!(codes, ["empty_frame"], "{w}x{h}");
            }
            let m = verdict.metrics;
            assert!(m.sharpness.is_finite() && m.mean_luma.is_finite());
            let _ = motion(&img, &img, t.analysis_max_side);
        }
        // A zero analysis size (rejected by `validate`) must not panic either.
        let zero = QualityThresholds {
            analysis_max_side: 0,
            ..t
        };
        let v = assess(&gray(checkerboard(50, 40, 4)), &zero);
        assert_eq!(
            (v.metrics.analysis_width, v.metrics.analysis_height),
            (1, 1)
        );
    }

    fn small_image() -> impl Strategy<Value = GrayImage> {
        (0u32..12, 0u32..12).prop_flat_map(|(w, h)| {
            proptest::collection::vec(any::<u8>(), (w * h) as usize)
                .prop_map(move |data| GrayImage::from_raw(w, h, data).unwrap())
        })
    }

    proptest! {
        #[test]
        fn metrics_are_finite_and_fractions_bounded(
            img in small_image(),
            max_side in 0u32..16,
            dark in any::<u8>(),
            bright in any::<u8>(),
        ) {
            let t = QualityThresholds {
                analysis_max_side: max_side,
                dark_level: dark,
                bright_level: bright,
                ..QualityThresholds::default()
            };
            let verdict = assess(&gray(img), &t);
            let m = &verdict.metrics;
            prop_assert!(m.sharpness.is_finite() && m.sharpness >= 0.0);
            prop_assert!(m.mean_luma.is_finite() && (0.0..=255.0).contains(&m.mean_luma));
            prop_assert!((0.0..=1.0).contains(&m.dark_fraction));
            prop_assert!((0.0..=1.0).contains(&m.bright_fraction));
            prop_assert!(m.analysis_width.max(m.analysis_height) <= max_side.max(1)
                || (m.analysis_width, m.analysis_height) == (m.source_width, m.source_height));
            prop_assert!(verdict.score().is_finite() && verdict.score() >= 0.0);
        }

        #[test]
        fn motion_is_bounded_and_symmetric(a in small_image(), b in small_image()) {
            let (a, b) = (gray(a), gray(b));
            match (motion(&a, &b, 8), motion(&b, &a, 8)) {
                (Ok(ab), Ok(ba)) => {
                    prop_assert!((0.0..=255.0).contains(&ab));
                    prop_assert_eq!(ab, ba);
                }
                (Err(_), Err(_)) => {}
                other => prop_assert!(false, "asymmetric result {:?}", other),
            }
        }
    }
}
