//! Change detection: warp, normalise, difference, adaptive threshold, regions.

use image::RgbImage;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::align::{Alignment, align_planes};
use super::config::ChangeConfig;
use super::photometric::normalise;
use super::plane::{Plane, dilate, label_components};
use super::{CompareError, analysis_planes, check_inputs};
use crate::BBox;

/// One area of the return frame that differs from the pickup frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChangeRegion {
    /// The region's box in the return frame's pixels.
    pub bbox: BBox,
    /// How clearly it changed, 0-1: `1 - threshold / mean`, where `mean`
    /// is the mean difference of the region's pixels above the threshold;
    /// 0.5 means twice the threshold, 0.8 five times.
    pub score: f32,
    /// Flagged pixels in the region (not its box), in return-frame pixels.
    pub area_px: f32,
}

/// What [`detect_changes`] found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChangeResult {
    /// The transform from the return frame to the pickup frame.
    pub alignment: Alignment,
    /// The changed regions, highest score first.
    pub regions: Vec<ChangeRegion>,
    /// Fraction (0-1) of the compared area (covered by both frames and
    /// inside the region of interest) that lies in reported regions.
    pub changed_fraction: f32,
    /// The detection threshold applied to this pair (mean absolute
    /// difference over the channels, 0-255).
    pub threshold: f32,
    /// The robust spread (1.4826 x median absolute deviation) of the
    /// difference map over the compared area: this pair's noise level.
    pub noise: f32,
    /// Width of the analysis images the map was computed on.
    pub analysis_width: u32,
    /// Height of the analysis images the map was computed on.
    pub analysis_height: u32,
}

/// Compares a return frame with the pickup frame of the same camera and
/// reports the regions that changed; see the [module documentation](super)
/// for the method and its limits.
///
/// `roi` is the area of the return frame where changes count, normally the
/// vehicle's box; `None` compares the whole frame. Errors when the config is
/// invalid, the frames differ in size or are tiny, the roi is empty or not
/// finite, or the frames do not show the same scene
/// ([`CompareError::NotAligned`]).
pub fn detect_changes(
    pickup: &RgbImage,
    ret: &RgbImage,
    roi: Option<BBox>,
    config: &ChangeConfig,
) -> Result<ChangeResult, CompareError> {
    check_inputs(pickup, ret, config)?;
    let (fw, fh) = (ret.width() as f32, ret.height() as f32);
    let roi = match roi {
        None => None,
        Some(b) => {
            let clamped = b.clamp_to(fw, fh);
            if !b.is_finite() || clamped.area() <= 0.0 {
                return Err(CompareError::EmptyRoi { roi: b });
            }
            Some(clamped)
        }
    };

    let (p_rgb, k) = analysis_planes(pickup, config.analysis_max_side);
    let (r_rgb, _) = analysis_planes(ret, config.analysis_max_side);
    let (w, h) = (r_rgb[0].w, r_rgb[0].h);
    let alignment = align_planes(
        &Plane::luma(&p_rgb),
        &Plane::luma(&r_rgb),
        k as f32,
        &config.align,
    )?;

    // The transform at analysis resolution (see `Level::to_level`).
    let (ax, ay) = (k as f32, k as f32);
    let s = alignment.scale;
    let ox = (alignment.dx + (s - 1.0) * (ax - 1.0) / 2.0) / ax;
    let oy = (alignment.dy + (s - 1.0) * (ay - 1.0) / 2.0) / ay;

    // A light blur on both sides before comparing: sensor noise and JPEG
    // blocks differ between any two shots and are not damage.
    let p_rgb = p_rgb.map(|p| p.blur3());
    let r_rgb = r_rgb.map(|p| p.blur3());

    // Pickup warped into the return grid; `covered` marks return pixels the
    // pickup frame sees, away from both frames' edges by the margin.
    let m = config.border_margin as f32;
    let (pw, ph) = ((w - 1) as f32, (h - 1) as f32);
    let mut covered = vec![0u8; w * h];
    let mut warped = [Plane::new(w, h), Plane::new(w, h), Plane::new(w, h)];
    for y in 0..h {
        let qy = s * y as f32 + oy;
        let y_in = y as f32 >= m && y as f32 <= ph - m && qy >= m && qy <= ph - m;
        for x in 0..w {
            let qx = s * x as f32 + ox;
            let i = y * w + x;
            let inside = y_in && x as f32 >= m && x as f32 <= pw - m && qx >= m && qx <= pw - m;
            let (qx, qy) = (qx.clamp(0.0, pw), qy.clamp(0.0, ph));
            for (out, src) in warped.iter_mut().zip(&p_rgb) {
                out.data[i] = src.sample(qx, qy);
            }
            covered[i] = u8::from(inside);
        }
    }

    // Where changes count: covered and inside the roi.
    let mut counted = covered.clone();
    if let Some(b) = roi {
        let x1 = (b.x1 / ax).floor() as usize;
        let y1 = (b.y1 / ay).floor() as usize;
        let x2 = ((b.x2 / ax).ceil() as usize).min(w);
        let y2 = ((b.y2 / ay).ceil() as usize).min(h);
        for y in 0..h {
            for x in 0..w {
                if !(x1..x2).contains(&x) || !(y1..y2).contains(&y) {
                    counted[y * w + x] = 0;
                }
            }
        }
    }
    let n_counted = counted.iter().filter(|&&c| c != 0).count();
    if n_counted == 0 {
        return Ok(ChangeResult {
            alignment,
            regions: Vec::new(),
            changed_fraction: 0.0,
            threshold: config.min_threshold,
            noise: 0.0,
            analysis_width: w as u32,
            analysis_height: h as u32,
        });
    }

    // The tone curves are fitted where changes count (the car), since the
    // bay's floor and walls may be lit differently from the car's paint.
    let fit_mask = if n_counted >= 4096 {
        &counted
    } else {
        &covered
    };
    let pick = normalise(&warped, &r_rgb, fit_mask);

    let mut diff = difference_map(&pick, &r_rgb, &covered);
    mask_texture(&mut diff, &pick, config.texture_masking);
    let diff = diff.blur3();

    // The pair's own noise level: median and MAD of the difference over the
    // compared area, by histogram.
    let (median, mad) = robust_stats(&diff.data, &counted);
    let noise = 1.4826 * mad;
    let threshold = (median + config.threshold_sigmas * noise).max(config.min_threshold);
    let low = threshold * config.hysteresis_ratio;

    // Hysteresis: components above `low` that hold a pixel above `threshold`.
    let weak: Vec<u8> = diff
        .data
        .iter()
        .zip(&counted)
        .map(|(&d, &c)| u8::from(c != 0 && d >= low))
        .collect();
    let (weak_labels, n_weak) = label_components(&weak, w, h);
    let mut seeded = vec![false; n_weak as usize + 1];
    for (i, &l) in weak_labels.iter().enumerate() {
        if l != 0 && diff.data[i] >= threshold {
            seeded[l as usize] = true;
        }
    }
    let mask: Vec<u8> = weak_labels
        .iter()
        .map(|&l| u8::from(l != 0 && seeded[l as usize]))
        .collect();

    // Group nearby pixels (closing for grouping only), then measure each
    // group on its own flagged pixels.
    let grouped = dilate(&mask, w, h, config.merge_radius as usize);
    let (labels, n) = label_components(&grouped, w, h);
    #[derive(Clone, Copy)]
    struct Acc {
        count: usize,
        x1: usize,
        y1: usize,
        x2: usize,
        y2: usize,
        strong_sum: f64,
        strong_n: usize,
    }
    let mut acc = vec![
        Acc {
            count: 0,
            x1: usize::MAX,
            y1: usize::MAX,
            x2: 0,
            y2: 0,
            strong_sum: 0.0,
            strong_n: 0,
        };
        n as usize + 1
    ];
    for (i, (&l, &flag)) in labels.iter().zip(&mask).enumerate() {
        if l == 0 || flag == 0 {
            continue;
        }
        let (x, y) = (i % w, i / w);
        let a = &mut acc[l as usize];
        a.count += 1;
        a.x1 = a.x1.min(x);
        a.y1 = a.y1.min(y);
        a.x2 = a.x2.max(x);
        a.y2 = a.y2.max(y);
        if diff.data[i] >= threshold {
            a.strong_sum += f64::from(diff.data[i]);
            a.strong_n += 1;
        }
    }
    let px_area = ax * ay;
    let mut flagged = 0usize;
    let mut regions: Vec<ChangeRegion> = acc
        .iter()
        .skip(1)
        .filter(|a| a.count > 0 && a.count as f32 * px_area >= config.min_region_area_px)
        .map(|a| {
            flagged += a.count;
            let mean_strong = if a.strong_n > 0 {
                (a.strong_sum / a.strong_n as f64) as f32
            } else {
                threshold
            };
            ChangeRegion {
                bbox: BBox::new(
                    a.x1 as f32 * ax,
                    a.y1 as f32 * ay,
                    (a.x2 + 1) as f32 * ax,
                    (a.y2 + 1) as f32 * ay,
                )
                .clamp_to(fw, fh),
                score: (1.0 - threshold / mean_strong.max(threshold)).clamp(0.0, 1.0),
                area_px: a.count as f32 * px_area,
            }
        })
        .collect();
    regions.sort_by(|a, b| b.score.total_cmp(&a.score));

    Ok(ChangeResult {
        alignment,
        regions,
        changed_fraction: flagged as f32 / n_counted as f32,
        threshold,
        noise,
        analysis_width: w as u32,
        analysis_height: h as u32,
    })
}

/// Per-pixel difference between the normalised pickup and the return frame,
/// tolerant of a pixel of residual misalignment: the mean absolute channel
/// difference of each pixel to the best-matching pixel of the other frame's
/// 3x3 neighbourhood, the larger of the two directions.
///
/// The "best neighbour" makes an edge that moved by a pixel (sub-pixel
/// alignment error, a slightly different resampling) score near zero,
/// while a new scratch still scores high: no pixel near it in the pickup
/// frame has its colour. Taking both directions catches a mark that
/// disappeared as well as one that appeared. 0 outside `covered`.
fn difference_map(pick: &[Plane; 3], ret: &[Plane; 3], covered: &[u8]) -> Plane {
    let (w, h) = (ret[0].w, ret[0].h);
    let mut out = Plane::new(w, h);
    let dist = |a: &[Plane; 3], i: usize, b: &[Plane; 3], j: usize| -> f32 {
        ((a[0].data[i] - b[0].data[j]).abs()
            + (a[1].data[i] - b[1].data[j]).abs()
            + (a[2].data[i] - b[2].data[j]).abs())
            / 3.0
    };
    for y in 1..h.saturating_sub(1) {
        for x in 1..w - 1 {
            let i = y * w + x;
            if covered[i] == 0 {
                continue;
            }
            let (mut ret_to_pick, mut pick_to_ret) = (f32::MAX, f32::MAX);
            for j in [
                i - w - 1,
                i - w,
                i - w + 1,
                i - 1,
                i,
                i + 1,
                i + w - 1,
                i + w,
                i + w + 1,
            ] {
                // Neighbours outside the covered area hold clamped samples.
                if covered[j] != 0 {
                    ret_to_pick = ret_to_pick.min(dist(ret, i, pick, j));
                }
                pick_to_ret = pick_to_ret.min(dist(pick, i, ret, j));
            }
            out.data[i] = ret_to_pick.max(pick_to_ret);
        }
    }
    out
}

/// Lowers the difference by `masking` times the local range (max - min over
/// 3x3) of the pickup frame's mean channel, never below 0.
///
/// Fine high-contrast structure (lettering, grilles, a lamp post against the
/// sky) never resamples identically in two shots taken from slightly
/// different places, and the residual grows with its contrast; a scratch on
/// smooth paint has almost no pickup structure under it and keeps its full
/// difference. This is the texture masking of perceptual image metrics: a
/// change is harder to see, and less likely to be real, on busy texture.
fn mask_texture(diff: &mut Plane, pick: &[Plane; 3], masking: f32) {
    let (w, h) = (diff.w, diff.h);
    if masking <= 0.0 || w < 3 || h < 3 {
        return;
    }
    let mean: Vec<f32> = pick[0]
        .data
        .iter()
        .zip(&pick[1].data)
        .zip(&pick[2].data)
        .map(|((&r, &g), &b)| (r + g + b) / 3.0)
        .collect();
    // Row-wise 3-wide min and max first, then 3 rows of those.
    let mut row_min = vec![0f32; w * h];
    let mut row_max = vec![0f32; w * h];
    for y in 0..h {
        for x in 0..w {
            let (a, b) = (x.saturating_sub(1), (x + 1).min(w - 1));
            let row = &mean[y * w + a..=y * w + b];
            row_min[y * w + x] = row.iter().copied().fold(f32::MAX, f32::min);
            row_max[y * w + x] = row.iter().copied().fold(f32::MIN, f32::max);
        }
    }
    for y in 0..h {
        let (a, b) = (y.saturating_sub(1), (y + 1).min(h - 1));
        for x in 0..w {
            let (mut lo, mut hi) = (f32::MAX, f32::MIN);
            for yy in a..=b {
                lo = lo.min(row_min[yy * w + x]);
                hi = hi.max(row_max[yy * w + x]);
            }
            let d = &mut diff.data[y * w + x];
            *d = (*d - masking * (hi - lo)).max(0.0);
        }
    }
}

/// Median and median absolute deviation of `values` where `mask` is set,
/// from histograms with 1/16-level bins over 0-256 (fine, because on a
/// clean pair most of the map is within a level or two of 0).
fn robust_stats(values: &[f32], mask: &[u8]) -> (f32, f32) {
    const PER_LEVEL: f32 = 16.0;
    const BINS: usize = 256 * 16;
    let bin = |v: f32| ((v.max(0.0) * PER_LEVEL) as usize).min(BINS - 1);
    let median_of = |hist: &[u32], n: u32| -> f32 {
        let half = n.div_ceil(2);
        let mut seen = 0;
        let b = hist
            .iter()
            .position(|&c| {
                seen += c;
                seen >= half
            })
            .unwrap_or(0);
        (b as f32 + 0.5) / PER_LEVEL
    };
    let mut hist = vec![0u32; BINS];
    let mut n = 0u32;
    for (&v, &m) in values.iter().zip(mask) {
        if m != 0 {
            hist[bin(v)] += 1;
            n += 1;
        }
    }
    if n == 0 {
        return (0.0, 0.0);
    }
    let median = median_of(&hist, n);
    hist.fill(0);
    for (&v, &m) in values.iter().zip(mask) {
        if m != 0 {
            hist[bin((v - median).abs())] += 1;
        }
    }
    (median, median_of(&hist, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::compare::synth;
    use image::Rgb;

    fn textured(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let (x, y) = (x as f32, y as f32);
            let v = 110.0
                + 40.0 * (x * 0.13).sin() * (y * 0.05).cos()
                + 30.0 * (x * 0.021 + y * 0.037).sin();
            Rgb([v as u8, (v * 0.9) as u8, (v * 0.7) as u8])
        })
    }

    #[test]
    fn roi_limits_where_changes_count() {
        let pickup = textured(320, 240);
        let mut ret = pickup.clone();
        let scratch = synth::Scratch::irregular((40.0, 60.0), 0.1, 70.0, 2.0, 80.0, 3);
        let painted = synth::paint_scratch(&mut ret, &scratch);
        let config = ChangeConfig::default();

        let all = detect_changes(&pickup, &ret, None, &config).unwrap();
        assert_eq!(all.regions.len(), 1, "{:?}", all.regions);
        assert!(all.regions[0].bbox.iou(&painted) > 0.5);
        assert!(all.changed_fraction > 0.0);

        let elsewhere = Some(BBox::new(160.0, 120.0, 320.0, 240.0));
        let none = detect_changes(&pickup, &ret, elsewhere, &config).unwrap();
        assert!(none.regions.is_empty(), "{:?}", none.regions);

        let outside = Some(BBox::new(400.0, 0.0, 500.0, 100.0));
        let err = detect_changes(&pickup, &ret, outside, &config).unwrap_err();
        assert_eq!(err.code(), "empty_roi");
    }

    #[test]
    fn texture_masking_lowers_difference_only_on_busy_structure() {
        let (w, h) = (6, 3);
        let flat = Plane {
            w,
            h,
            data: vec![100.0; w * h],
        };
        // Column 3 onwards jumps by 120 levels: an edge.
        let edge = Plane {
            w,
            h,
            data: (0..w * h)
                .map(|i| if i % w >= 3 { 220.0 } else { 100.0 })
                .collect(),
        };
        let pick = [edge.clone(), edge.clone(), edge];
        let mut diff = Plane {
            w,
            h,
            data: vec![20.0; w * h],
        };
        mask_texture(&mut diff, &pick, 0.1);
        // Next to the edge the local range is 120: 20 - 12 = 8; far from it, untouched.
        assert_eq!(diff.at(2, 1), 8.0);
        assert_eq!(diff.at(0, 1), 20.0);
        let mut unmasked = flat.clone();
        mask_texture(&mut unmasked, &[flat.clone(), flat.clone(), flat], 0.1);
        assert_eq!(unmasked.data, vec![100.0; w * h]);
    }

    #[test]
    fn robust_stats_ignore_outliers() {
        let mut values: Vec<f32> = (0..1000).map(|i| (i % 10) as f32).collect();
        values[0] = 250.0;
        values[1] = 240.0;
        let mask = vec![1u8; values.len()];
        let (median, mad) = robust_stats(&values, &mask);
        // Two of the 0s and 1s became outliers, which moves the median to 5.
        assert!((median - 5.0).abs() <= 0.25, "{median}");
        assert!((mad - 2.5).abs() <= 0.5, "{mad}");
    }

    #[test]
    fn a_one_pixel_shift_of_an_edge_is_not_a_difference_but_a_new_dot_is() {
        let (w, h) = (12, 10);
        let edge = |shift: usize| Plane {
            w,
            h,
            data: (0..w * h)
                .map(|i| if i % w >= 5 + shift { 200.0 } else { 20.0 })
                .collect(),
        };
        let covered = vec![1u8; w * h];
        let pick = [edge(0), edge(0), edge(0)];
        let moved = [edge(1), edge(1), edge(1)];
        let d = difference_map(&pick, &moved, &covered);
        assert!(d.data.iter().all(|&v| v == 0.0), "{:?}", d.data);

        let mut dotted = pick.clone();
        for p in &mut dotted {
            p.data[4 * w + 8] = 60.0;
        }
        let d = difference_map(&pick, &dotted, &covered);
        assert_eq!(d.at(8, 4), 140.0);
    }
}
