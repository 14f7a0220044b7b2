//! Alignment of the return frame to the pickup frame: scale and translation, by coarse-to-fine search of gradient-magnitude correlation.

use image::RgbImage;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::config::{AlignConfig, ChangeConfig};
use super::plane::Plane;
use super::{CompareError, analysis_planes, check_inputs};
use crate::BBox;

/// The coarsest pyramid level has at most this many pixels on its longer
/// side: small enough that the exhaustive search over every shift and scale
/// costs a few million multiply-adds, large enough that a car still has
/// structure (windows, wheels, the roof line) to correlate.
const COARSE_MAX_SIDE: usize = 80;

/// Levels with more pixels than this correlate every other row: the estimate
/// is as good (neighbouring rows are nearly redundant after the blur) at half
/// the cost on the largest levels.
const ROW_SUBSAMPLE_ABOVE: usize = 150_000;

/// Where the return frame lies in the pickup frame, and how well they match.
///
/// The transform maps a point of the return frame to the pickup frame,
/// both in pixels of the frames as given:
/// `pickup = scale * return + (dx, dy)`. Scale above 1 means the car looks
/// smaller in the return frame (it stood further away).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Alignment {
    /// Scale factor from return to pickup pixels.
    pub scale: f32,
    /// Horizontal offset, in pickup pixels.
    pub dx: f32,
    /// Vertical offset, in pickup pixels.
    pub dy: f32,
    /// Normalised cross-correlation (-1 to 1) of the two frames' saturated
    /// gradient magnitude under this transform, at analysis resolution;
    /// 0.9 and above for the same scene in the tests, below 0.2 for
    /// different ones.
    pub score: f32,
    /// Fraction (0-1) of the return frame that the pickup frame covers
    /// under this transform.
    pub overlap: f32,
}

impl Alignment {
    /// The identity transform with a perfect score.
    pub fn identity() -> Self {
        Self {
            scale: 1.0,
            dx: 0.0,
            dy: 0.0,
            score: 1.0,
            overlap: 1.0,
        }
    }

    /// Maps a return-frame point to the pickup frame.
    pub fn to_pickup(&self, x: f32, y: f32) -> (f32, f32) {
        (self.scale * x + self.dx, self.scale * y + self.dy)
    }

    /// Maps a pickup-frame point to the return frame.
    pub fn to_return(&self, x: f32, y: f32) -> (f32, f32) {
        ((x - self.dx) / self.scale, (y - self.dy) / self.scale)
    }

    /// Maps a return-frame box to the pickup frame.
    pub fn box_to_pickup(&self, b: &BBox) -> BBox {
        let (x1, y1) = self.to_pickup(b.x1, b.y1);
        let (x2, y2) = self.to_pickup(b.x2, b.y2);
        BBox::new(x1, y1, x2, y2)
    }

    /// Maps a pickup-frame box to the return frame.
    pub fn box_to_return(&self, b: &BBox) -> BBox {
        let (x1, y1) = self.to_return(b.x1, b.y1);
        let (x2, y2) = self.to_return(b.x2, b.y2);
        BBox::new(x1, y1, x2, y2)
    }
}

/// Finds the scale and translation that map `ret` onto `pickup`.
///
/// Both frames are area-downscaled to `config.analysis_max_side`, then to a
/// pyramid whose coarsest level is at most 80 pixels wide. There every
/// scale and integer shift within `config.align`'s ranges is scored; the
/// best is refined level by level by hill climbing, down to a quarter pixel
/// at analysis resolution. Errors with [`CompareError::NotAligned`] when the
/// best score is below `config.align.min_match_score` (a different scene, a
/// covered lens, a car that is not there).
pub fn align(
    pickup: &RgbImage,
    ret: &RgbImage,
    config: &ChangeConfig,
) -> Result<Alignment, CompareError> {
    check_inputs(pickup, ret, config)?;
    let (p_rgb, k) = analysis_planes(pickup, config.analysis_max_side);
    let (r_rgb, _) = analysis_planes(ret, config.analysis_max_side);
    align_planes(
        &Plane::luma(&p_rgb),
        &Plane::luma(&r_rgb),
        k as f32,
        &config.align,
    )
}

/// One pyramid level: both frames' feature images (gradient magnitude) and
/// the size of a level pixel in full-resolution pixels.
struct Level {
    pick: Plane,
    ret: Plane,
    ax: f32,
    ay: f32,
}

/// Gradient magnitude of the blurred luma, saturated: `g / (g + G)`.
///
/// Saturation keeps a few very strong edges (a new dark scratch on smooth
/// paint, a sticker, a door seam in shadow) from dominating the
/// correlation: every clear edge counts about the same, so a change on the
/// car barely moves the score, while texture and edges everywhere else
/// still decide the match.
fn feature(luma: &Plane) -> Plane {
    /// Gradient (levels per pixel, L1 of central differences / 2) at which
    /// the feature reaches half its range: well above the blurred noise
    /// of a camera (1-2), well below a real edge (tens).
    const HALF_AT: f32 = 8.0;
    let mut g = luma.blur3().gradient_magnitude();
    for v in &mut g.data {
        *v /= *v + HALF_AT;
    }
    g
}

/// A transform at one level: `pickup_level = s * return_level + (ox, oy)`.
#[derive(Debug, Clone, Copy)]
struct LevelTransform {
    s: f32,
    ox: f32,
    oy: f32,
}

impl Level {
    fn new(pick_luma: &Plane, ret_luma: &Plane, factor: f32) -> Self {
        // The blur keeps the gradient of JPEG blocks and noise out of the
        // correlation; the gradient magnitude drops the brightness and
        // colour of the light, which is what differs between the visits.
        Self {
            pick: feature(pick_luma),
            ret: feature(ret_luma),
            ax: factor,
            ay: factor,
        }
    }

    // A level pixel's centre is at `a * l + (a - 1) / 2` full pixels, so the
    // offset of the same transform differs by `(s - 1) * (a - 1) / 2`.
    fn to_level(&self, a: &Alignment) -> LevelTransform {
        let (bx, by) = ((self.ax - 1.0) / 2.0, (self.ay - 1.0) / 2.0);
        LevelTransform {
            s: a.scale,
            ox: (a.dx + (a.scale - 1.0) * bx) / self.ax,
            oy: (a.dy + (a.scale - 1.0) * by) / self.ay,
        }
    }

    fn to_full(&self, t: LevelTransform, score: f32, overlap: f32) -> Alignment {
        let (bx, by) = ((self.ax - 1.0) / 2.0, (self.ay - 1.0) / 2.0);
        Alignment {
            scale: t.s,
            dx: self.ax * t.ox - (t.s - 1.0) * bx,
            dy: self.ay * t.oy - (t.s - 1.0) * by,
            score,
            overlap,
        }
    }

    /// Normalised cross-correlation of the return features with the pickup
    /// features sampled (bilinearly) under `t`, over the pixels both cover;
    /// `None` when they overlap less than `min_overlap` or either side is flat.
    fn ncc(&self, t: LevelTransform, min_overlap: f32) -> Option<(f32, f32)> {
        let (r, p) = (&self.ret, &self.pick);
        let row_step = if r.w * r.h > ROW_SUBSAMPLE_ABOVE {
            2
        } else {
            1
        };
        let (pw, ph) = ((p.w - 1) as f32, (p.h - 1) as f32);
        // Columns whose sample lands inside the pickup plane.
        let x_lo = ((-t.ox / t.s).ceil().max(0.0)) as usize;
        let x_hi_f = ((pw - t.ox) / t.s).floor();
        if x_hi_f < 0.0 {
            return None;
        }
        let x_hi = (x_hi_f as usize).min(r.w - 1);
        if x_lo > x_hi {
            return None;
        }
        let (mut n, mut rows) = (0usize, 0usize);
        let (mut sr, mut sp, mut srr, mut spp, mut srp) = (0f64, 0f64, 0f64, 0f64, 0f64);
        for y in (0..r.h).step_by(row_step) {
            rows += 1;
            let qy = t.s * y as f32 + t.oy;
            if !(0.0..=ph).contains(&qy) {
                continue;
            }
            let y0 = (qy as usize).min(p.h - 2);
            let fy = qy - y0 as f32;
            let top = &p.data[y0 * p.w..(y0 + 1) * p.w];
            let bottom = &p.data[(y0 + 1) * p.w..(y0 + 2) * p.w];
            let rrow = &r.data[y * r.w..(y + 1) * r.w];
            let (mut a, mut b, mut aa, mut bb, mut ab) = (0f32, 0f32, 0f32, 0f32, 0f32);
            for (x, &rv) in rrow.iter().enumerate().take(x_hi + 1).skip(x_lo) {
                let qx = t.s * x as f32 + t.ox;
                let x0 = (qx as usize).min(p.w - 2);
                let fx = qx - x0 as f32;
                let t0 = top[x0] + fx * (top[x0 + 1] - top[x0]);
                let b0 = bottom[x0] + fx * (bottom[x0 + 1] - bottom[x0]);
                let pv = t0 + fy * (b0 - t0);
                a += rv;
                b += pv;
                aa += rv * rv;
                bb += pv * pv;
                ab += rv * pv;
            }
            n += x_hi + 1 - x_lo;
            sr += f64::from(a);
            sp += f64::from(b);
            srr += f64::from(aa);
            spp += f64::from(bb);
            srp += f64::from(ab);
        }
        let overlap = n as f32 / (rows * r.w) as f32;
        if n < 16 || overlap < min_overlap {
            return None;
        }
        let nf = n as f64;
        let var_r = srr - sr * sr / nf;
        let var_p = spp - sp * sp / nf;
        let cov = srp - sr * sp / nf;
        // A flat frame (lens cap, dark bay) has no structure to align on.
        if var_r <= 1e-6 * nf || var_p <= 1e-6 * nf {
            return None;
        }
        Some(((cov / (var_r * var_p).sqrt()) as f32, overlap))
    }

    /// Moves `t` one step at a time (in x, y or scale) while that raises the
    /// score.
    fn hill_climb(
        &self,
        mut t: LevelTransform,
        mut best: (f32, f32),
        step_px: f32,
        step_s: f32,
        min_overlap: f32,
    ) -> (LevelTransform, (f32, f32)) {
        for _ in 0..64 {
            let moves = [
                (step_px, 0.0, 0.0),
                (-step_px, 0.0, 0.0),
                (0.0, step_px, 0.0),
                (0.0, -step_px, 0.0),
                (0.0, 0.0, step_s),
                (0.0, 0.0, -step_s),
            ];
            let mut improved = None;
            for (dx, dy, ds) in moves {
                // A scale step pivots about the frame centre so it does not
                // also move the frame.
                let (cx, cy) = ((self.ret.w - 1) as f32 / 2.0, (self.ret.h - 1) as f32 / 2.0);
                let cand = LevelTransform {
                    s: t.s + ds,
                    ox: t.ox + dx - ds * cx,
                    oy: t.oy + dy - ds * cy,
                };
                if let Some(score) = self.ncc(cand, min_overlap)
                    && score.0 > improved.map_or(best.0, |(_, s): (LevelTransform, (f32, f32))| s.0)
                {
                    improved = Some((cand, score));
                }
            }
            match improved {
                Some((cand, score)) => {
                    t = cand;
                    best = score;
                }
                None => break,
            }
        }
        (t, best)
    }
}

/// Aligns two analysis-resolution luma planes of the same size; `factor`
/// is the size of an analysis pixel in the frames' pixels, so the result is
/// in their pixels.
pub(crate) fn align_planes(
    pick_luma: &Plane,
    ret_luma: &Plane,
    factor: f32,
    config: &AlignConfig,
) -> Result<Alignment, CompareError> {
    // Pyramid, finest (analysis resolution) first.
    let mut lumas = vec![(pick_luma.clone(), ret_luma.clone())];
    loop {
        let (p, r) = &lumas[lumas.len() - 1];
        if r.w.max(r.h) <= COARSE_MAX_SIDE || r.w < 16 || r.h < 16 {
            break;
        }
        let next = (p.halve(), r.halve());
        lumas.push(next);
    }
    // Each level halves the one above, so its pixel is twice as large.
    let levels: Vec<Level> = lumas
        .iter()
        .enumerate()
        .map(|(i, (p, r))| Level::new(p, r, factor * (1u32 << i) as f32))
        .collect();

    // Exhaustive search at the coarsest level: every integer shift, and
    // scales in steps that move the frame edge by at most half a pixel.
    let coarse = &levels[levels.len() - 1];
    let (w, h) = (coarse.ret.w as f32, coarse.ret.h as f32);
    let (cx, cy) = ((w - 1.0) / 2.0, (h - 1.0) / 2.0);
    let ux = (config.max_shift * w).ceil() as i32;
    let uy = (config.max_shift * h).ceil() as i32;
    let scale_step = 1.0 / w.max(h);
    let n_scales = (config.max_scale_change / scale_step).ceil() as i32;
    let mut candidates: Vec<(LevelTransform, (f32, f32))> = Vec::new();
    for si in -n_scales..=n_scales {
        let s =
            1.0 + (si as f32 * scale_step).clamp(-config.max_scale_change, config.max_scale_change);
        for dy in -uy..=uy {
            for dx in -ux..=ux {
                // Shift `(dx, dy)` after scaling about the centre.
                let t = LevelTransform {
                    s,
                    ox: dx as f32 + cx * (1.0 - s),
                    oy: dy as f32 + cy * (1.0 - s),
                };
                if let Some(score) = coarse.ncc(t, config.min_overlap) {
                    candidates.push((t, score));
                }
            }
        }
    }
    candidates.sort_by(|a, b| b.1.0.total_cmp(&a.1.0));
    // Keep the best few that are not neighbours of a better one: a
    // repetitive pattern (a row of windows) can put the true match second
    // at the coarsest level.
    let mut seeds: Vec<(LevelTransform, (f32, f32))> = Vec::new();
    for c in candidates {
        if seeds.len() == 3 {
            break;
        }
        let near = seeds.iter().any(|(t, _)| {
            (t.ox - c.0.ox).abs() <= 2.0
                && (t.oy - c.0.oy).abs() <= 2.0
                && (t.s - c.0.s).abs() <= 2.0 * scale_step
        });
        if !near {
            seeds.push(c);
        }
    }
    let not_aligned = CompareError::NotAligned {
        score: -1.0,
        min_score: config.min_match_score,
    };
    if seeds.is_empty() {
        return Err(not_aligned);
    }

    let mut best: Option<Alignment> = None;
    for (li, level) in levels.iter().enumerate().rev() {
        let finest = li == 0;
        let step_s = 1.0 / level.ret.w.max(level.ret.h) as f32;
        let starts: Vec<Alignment> = match best {
            None => seeds
                .iter()
                .map(|&(t, sc)| coarse.to_full(t, sc.0, sc.1))
                .collect(),
            Some(b) => vec![b],
        };
        let mut level_best: Option<Alignment> = None;
        for start in starts {
            let t = level.to_level(&start);
            let Some(score) = level.ncc(t, config.min_overlap) else {
                continue;
            };
            let (mut t, mut score) = level.hill_climb(t, score, 1.0, step_s, config.min_overlap);
            if finest {
                for k in [0.5, 0.25] {
                    (t, score) = level.hill_climb(t, score, k, k * step_s, config.min_overlap);
                }
            }
            if level_best.is_none_or(|b| score.0 > b.score) {
                level_best = Some(level.to_full(t, score.0, score.1));
            }
        }
        best = Some(level_best.ok_or_else(|| not_aligned.clone())?);
    }
    let best = best.ok_or(not_aligned)?;
    if best.score < config.min_match_score {
        return Err(CompareError::NotAligned {
            score: best.score,
            min_score: config.min_match_score,
        });
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A textured plane: blobs of different sizes, so correlation has one clear peak.
    fn texture(w: usize, h: usize, shift: (f32, f32), scale: f32) -> Plane {
        let mut p = Plane::new(w, h);
        for y in 0..h {
            for x in 0..w {
                // The pattern is defined in "scene" coordinates; this frame
                // sees scene point scale * (x, y) + shift.
                let (sx, sy) = (scale * x as f32 + shift.0, scale * y as f32 + shift.1);
                let v = 100.0
                    + 60.0 * (sx * 0.11).sin() * (sy * 0.07).cos()
                    + 40.0 * ((sx * 0.031 + sy * 0.017).sin() > 0.3) as i32 as f32
                    + 30.0 * ((sx - 120.0).hypot(sy - 80.0) < 25.0) as i32 as f32;
                p.data[y * w + x] = v;
            }
        }
        p
    }

    #[test]
    fn recovers_a_known_shift_and_scale() {
        let pick = texture(240, 160, (0.0, 0.0), 1.0);
        let ret = texture(240, 160, (9.0, -5.0), 1.04);
        let a = align_planes(&pick, &ret, 1.0, &AlignConfig::default()).unwrap();
        assert!((a.scale - 1.04).abs() < 0.004, "{a:?}");
        assert!((a.dx - 9.0).abs() < 0.6, "{a:?}");
        assert!((a.dy + 5.0).abs() < 0.6, "{a:?}");
        assert!(a.score > 0.9, "{a:?}");
    }

    #[test]
    fn flat_frames_do_not_align() {
        let flat = Plane {
            w: 100,
            h: 80,
            data: vec![50.0; 8000],
        };
        let err = align_planes(&flat, &flat, 1.0, &AlignConfig::default()).unwrap_err();
        assert!(matches!(err, CompareError::NotAligned { .. }), "{err:?}");
    }

    #[test]
    fn transform_round_trips() {
        let a = Alignment {
            scale: 1.05,
            dx: 12.0,
            dy: -3.0,
            ..Alignment::identity()
        };
        let (x, y) = a.to_return(a.to_pickup(100.0, 50.0).0, a.to_pickup(100.0, 50.0).1);
        assert!((x - 100.0).abs() < 1e-3 && (y - 50.0).abs() < 1e-3);
        let b = BBox::new(10.0, 10.0, 20.0, 30.0);
        let back = a.box_to_return(&a.box_to_pickup(&b));
        assert!((back.x2 - 20.0).abs() < 1e-3 && (back.y2 - 30.0).abs() < 1e-3);
    }
}
