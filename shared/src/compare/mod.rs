//! Pickup-vs-return comparison: frame alignment, model-free change detection, and matching findings in vehicle-relative coordinates.
//!
//! A camera at a fixed place in the bay photographs the car at pickup and at
//! return. No trained damage model ships with the project, so new damage is
//! found by comparing the two photos: whatever changed on the car is put in
//! front of a human reviewer. The hard part is flagging *little else*: the
//! car never stops in the same place and the light is never the same.
//!
//! ```text
//! DESIGN
//!
//! detect_changes(pickup, return, roi, config)
//!
//!  1. Analysis images. Both frames are area-averaged by the smallest
//!     INTEGER factor that brings the longer side to at most
//!     `analysis_max_side` (960): 1080p -> 960x540 (k 2), 720p -> 640x360
//!     (k 2), 4K -> 960x540 (k 4). An integer factor keeps the grid
//!     uniform; a fractional one (1280 -> 960) makes bands of alternating
//!     width that jitter edges by a third of a pixel and show as change.
//!     A scratch two camera pixels wide survives at half contrast. Frames
//!     must have the same size (same camera).
//!
//!  2. Alignment (align.rs): scale s and offset (dx, dy) with
//!     pickup = s * return + (dx, dy).
//!     - Features: gradient magnitude of the blurred luma, saturated as
//!       g / (g + 8). It drops the light's level and colour (what differs
//!       between visits) and keeps the car's edges (what does not); the
//!       saturation keeps one strong new edge (a dark scratch on smooth
//!       paint) from dominating the score.
//!     - Score: normalised cross-correlation (NCC) of the features over
//!       the overlap, which also cancels a global contrast change.
//!     - Search: a pyramid down to <= 80 px; at the coarsest level EVERY
//!       integer shift within +-max_shift (12%) and every scale within
//!       +-max_scale_change (7%, steps moving the frame edge <= 0.5 px) is
//!       scored; the 3 best distinct peaks are refined on the next level
//!       and the best is refined by hill climbing level by level, down to
//!       0.25 px at analysis resolution.
//!     - Why not phase correlation: it needs an FFT (a dependency this pure
//!       crate does not have), gives translation only (scale needs a
//!       log-polar resampling that is fragile on 6% changes) and its peak
//!       does not read as a calibrated "same scene" score. The exhaustive
//!       coarse search cannot fall into a wrong local optimum within its
//!       range and costs a few million multiply-adds at 80 px.
//!     - "Could not align": the best NCC below min_match_score (0.45; the
//!       same scene moved and relit scores >= 0.91 in the tests, two
//!       different scenes 0.16) or no candidate with enough overlap ->
//!       CompareError::NotAligned.
//!
//!  3. Warp: the pickup frame is resampled (bilinear) onto the return
//!     frame's analysis grid. Return pixels the pickup does not see, and a
//!     border_margin strip along both frames' edges, are excluded.
//!
//!  4. Photometric normalisation (photometric.rs): per channel, a grid of
//!     tone curves (4 cells on the long side), each curve the MEDIAN return
//!     level for every pickup level (32 bins) in its cell, blended
//!     bilinearly between cells as CLAHE does. This absorbs per-channel
//!     gain, offset and gamma and a smooth gradient of light across the
//!     bay; the median keeps damage (a minority of the pixels of any
//!     pickup level in a cell) from being fitted away.
//!
//!  5. Difference map (detect.rs): both frames lightly blurred ([1 2 1]);
//!     per pixel the mean absolute RGB difference to the BEST-matching
//!     pixel of the other frame's 3x3 neighbourhood, the larger of the
//!     two directions. The best-neighbour rule makes an edge that moved by
//!     a pixel (residual misalignment, different resampling) vanish while
//!     a new scratch, whose colour is nowhere near it in the pickup,
//!     stays; colour catches paint scraped to the primer, structure
//!     catches the dent's shading.
//!
//!  6. Texture masking: the difference is lowered by texture_masking (0.1)
//!     x the pickup's local 3x3 contrast. Fine high-contrast structure
//!     (lettering, grilles, a lamp post against the sky) never resamples
//!     identically; without masking it made 66 false regions on 30 clean
//!     test pairs, with it none. Smooth paint, where damage shows, keeps
//!     full sensitivity; damage on busy texture needs more contrast.
//!     The map is then blurred once more.
//!
//!  7. Threshold adapted to the pair: median + threshold_sigmas (6) x the
//!     robust spread (1.4826 MAD) of the map inside the roi, never below
//!     min_threshold (10 levels). Hysteresis down to half of it, grouping
//!     within merge_radius, 8-connected components, min_region_area_px.
//!     Regions are boxes in return-frame pixels, scored 0-1 by how far
//!     their pixels exceed the threshold, sorted by score.
//!
//! MEASURED (shared/tests/compare_real_photos.rs, 30 + 30 seeded pairs from
//! the real bus photo: shift <= 4%, scale <= 3%, relit, noise, JPEG 80-95)
//!  - alignment error <= 0.16 px and 0.0004 in scale;
//!  - clean pairs: 0 false regions; damage pairs (45 scratches of 50-90
//!    levels and dents of 25-50): recall 1.0, precision 1.0; faint damage
//!    (scratches of 20-35 levels, dents of 10-20): recall 0.76, precision
//!    1.0; different scenes: NotAligned (score 0.16).
//!  - latency (benches/compare.rs, dev profile: dependencies at opt-level
//!    3, this crate at 2; shared 2-core build VM): median 150-190 ms per
//!    1080p pair (alignment about half of it), ~90 ms per 720p pair.
//!
//! LIMITS (what a reviewer must know)
//!  - Any change is flagged, not only damage: a sticker, dirt, a parking
//!    ticket, an opened door, a reflection of someone in the bay. That is
//!    the point of a model-free stage: it decides what a human looks at.
//!  - The transform is scale + translation. A car that stands at another
//!    angle (yaw), or a camera that was knocked, leaves misaligned edges
//!    that show as change; the score then drops and the caller should
//!    treat the result as low confidence.
//!  - When the car fills little of the frame, the static bay dominates the
//!    alignment; pass the vehicle's box as roi so only the car counts.
//!  - Specular highlights move with the light and the car's position;
//!    strong ones on glossy paint can be flagged.
//!  - A change as large as a tone-curve cell (a quarter of the frame's width),
//!    uniform in colour, can be absorbed by the normalisation.
//!  - Damage fainter than min_threshold, or thinner than one analysis
//!    pixel at low contrast, is missed; the trained detector (when the
//!    operator has one) complements this.
//! ```
//!
//! Findings from a detector are compared in vehicle-relative coordinates:
//! [`to_vehicle_relative`] and [`match_findings`] tell `new` from
//! `pre-existing`. [`synth`] makes test material: moved and relit copies of
//! a photo and painted scratches and dents.
//!
//! ```
//! use image::{Rgb, RgbImage};
//! use inspection_core::compare::{detect_changes, synth, ChangeConfig};
//!
//! // A textured "car", and the same view with a scratch.
//! let pickup = RgbImage::from_fn(320, 240, |x, y| {
//!     let v = 120.0 + 50.0 * ((x as f32 * 0.09).sin() * (y as f32 * 0.07).cos());
//!     Rgb([v as u8, v as u8, (v * 0.8) as u8])
//! });
//! let mut ret = pickup.clone();
//! let scratch = synth::Scratch::irregular((100.0, 120.0), 0.3, 80.0, 2.0, -70.0, 1);
//! let painted = synth::paint_scratch(&mut ret, &scratch);
//!
//! let result = detect_changes(&pickup, &ret, None, &ChangeConfig::default()).unwrap();
//! assert_eq!(result.regions.len(), 1);
//! assert!(result.regions[0].bbox.iou(&painted) > 0.5);
//! ```

mod align;
mod config;
mod detect;
mod findings;
mod photometric;
mod plane;
pub mod synth;

use image::RgbImage;

pub use align::{Alignment, align};
pub use config::{AlignConfig, ChangeConfig};
pub use detect::{ChangeRegion, ChangeResult, detect_changes};
pub use findings::{from_vehicle_relative, match_findings, to_vehicle_relative};

use crate::BBox;
use plane::Plane;

/// The smallest frame side compared: below it there is no structure to
/// align on.
pub const MIN_SIDE: u32 = 32;

/// Why two frames could not be compared.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CompareError {
    /// The configuration has problems (every one is listed).
    #[error("invalid comparison config: {}", .0.join("; "))]
    InvalidConfig(Vec<String>),
    /// The frames differ in size: not the same camera configuration.
    #[error(
        "frames differ in size: pickup {pickup_width}x{pickup_height}, \
         return {return_width}x{return_height}"
    )]
    SizeMismatch {
        /// Width of the pickup frame.
        pickup_width: u32,
        /// Height of the pickup frame.
        pickup_height: u32,
        /// Width of the return frame.
        return_width: u32,
        /// Height of the return frame.
        return_height: u32,
    },
    /// A frame is smaller than [`MIN_SIDE`] on a side.
    #[error("frames of {width}x{height} are too small to compare (minimum {MIN_SIDE} per side)")]
    TooSmall {
        /// Width of the frames.
        width: u32,
        /// Height of the frames.
        height: u32,
    },
    /// The region of interest is not finite or lies outside the return frame.
    #[error("region of interest {roi:?} is empty inside the return frame")]
    EmptyRoi {
        /// The region as given.
        roi: BBox,
    },
    /// The frames do not show the same scene within the search range: the
    /// best match scored below the configured minimum (-1 when no candidate
    /// overlapped enough or a frame has no structure at all).
    #[error("could not align the frames: best match score {score:.3} < {min_score}")]
    NotAligned {
        /// Best match score found.
        score: f32,
        /// The configured minimum.
        min_score: f32,
    },
}

impl CompareError {
    /// A stable machine-readable code, for metrics labels and API errors.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidConfig(_) => "invalid_config",
            Self::SizeMismatch { .. } => "size_mismatch",
            Self::TooSmall { .. } => "too_small",
            Self::EmptyRoi { .. } => "empty_roi",
            Self::NotAligned { .. } => "not_aligned",
        }
    }
}

fn check_inputs(
    pickup: &RgbImage,
    ret: &RgbImage,
    config: &ChangeConfig,
) -> Result<(), CompareError> {
    config.validate().map_err(CompareError::InvalidConfig)?;
    if pickup.dimensions() != ret.dimensions() {
        return Err(CompareError::SizeMismatch {
            pickup_width: pickup.width(),
            pickup_height: pickup.height(),
            return_width: ret.width(),
            return_height: ret.height(),
        });
    }
    if ret.width() < MIN_SIDE || ret.height() < MIN_SIDE {
        return Err(CompareError::TooSmall {
            width: ret.width(),
            height: ret.height(),
        });
    }
    Ok(())
}

/// The integer downscale factor that brings the longer side of a
/// `width` x `height` frame to at most `max_side` (1: full resolution).
pub fn analysis_factor(width: u32, height: u32, max_side: u32) -> u32 {
    width.max(height).div_ceil(max_side.max(1)).max(1)
}

/// The frame's R, G, B planes at analysis resolution, and the factor.
fn analysis_planes(img: &RgbImage, max_side: u32) -> ([Plane; 3], usize) {
    let k = analysis_factor(img.width(), img.height(), max_side) as usize;
    (Plane::downscale_rgb(img, k), k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analysis_factor_is_the_smallest_integer_that_fits() {
        assert_eq!(analysis_factor(1920, 1080, 960), 2);
        assert_eq!(analysis_factor(1280, 720, 960), 2);
        assert_eq!(analysis_factor(3840, 2160, 960), 4);
        assert_eq!(analysis_factor(546, 413, 960), 1);
        assert_eq!(analysis_factor(961, 10, 960), 2);
        assert_eq!(analysis_factor(100, 100, 0), 100);
    }

    #[test]
    fn inputs_are_checked_before_any_work() {
        let a = RgbImage::new(64, 48);
        let b = RgbImage::new(48, 64);
        let config = ChangeConfig::default();
        assert_eq!(
            check_inputs(&a, &b, &config).unwrap_err().code(),
            "size_mismatch"
        );
        let tiny = RgbImage::new(16, 16);
        assert_eq!(
            check_inputs(&tiny, &tiny, &config).unwrap_err().code(),
            "too_small"
        );
        let bad = ChangeConfig {
            threshold_sigmas: -1.0,
            ..ChangeConfig::default()
        };
        let err = check_inputs(&a, &a, &bad).unwrap_err();
        assert_eq!(err.code(), "invalid_config");
        assert!(err.to_string().contains("threshold_sigmas"), "{err}");
    }
}
