//! Photometric normalisation: maps the aligned pickup frame's colours onto the return frame's light with a grid of per-channel tone curves.

use super::plane::Plane;

/// Tone-curve bins over 0-255: 8 levels per bin follows a gamma curve
/// closely enough (the curve is interpolated between bin centres).
const BINS: usize = 32;
const BIN_WIDTH: f32 = 256.0 / BINS as f32;

/// A bin's median is trusted from this many samples on.
const MIN_BIN_COUNT: u32 = 12;

/// Cells along the longer side of the frame; the shorter side gets
/// proportionally fewer (at least 2). Four cells span a mild light gradient
/// across the bay in steps of a quarter, and each cell still holds tens of
/// thousands of pixels to fit its curve on.
const CELLS_LONG_SIDE: usize = 4;

/// A tone curve as a table over integer input levels 0..=255.
#[derive(Debug, Clone)]
struct Curve {
    lut: [f32; 256],
}

impl Curve {
    #[inline]
    fn apply(&self, v: f32) -> f32 {
        let v = v.clamp(0.0, 255.0);
        let i = (v as usize).min(254);
        let f = v - i as f32;
        self.lut[i] + f * (self.lut[i + 1] - self.lut[i])
    }
}

/// Per-bin histograms of return values, indexed by the pickup value's bin.
struct Fit {
    hist: Vec<[u32; 256]>,
    count: [u32; BINS],
    total: u32,
}

impl Fit {
    fn new() -> Self {
        Self {
            hist: vec![[0u32; 256]; BINS],
            count: [0; BINS],
            total: 0,
        }
    }

    #[inline]
    fn add(&mut self, pick: f32, ret: f32) {
        let b = ((pick.clamp(0.0, 255.0) / BIN_WIDTH) as usize).min(BINS - 1);
        let r = (ret.clamp(0.0, 255.0) + 0.5) as usize;
        self.hist[b][r.min(255)] += 1;
        self.count[b] += 1;
        self.total += 1;
    }

    /// The curve through each bin's median return value; empty bins are
    /// interpolated, and beyond the outermost filled bins the curve keeps
    /// slope 1. The median (not the mean) keeps damage, a minority of the
    /// pixels of any pickup level, from bending the curve towards itself.
    fn curve(&self) -> Option<Curve> {
        let points: Vec<(f32, f32)> = (0..BINS)
            .filter(|&b| self.count[b] >= MIN_BIN_COUNT)
            .map(|b| {
                let half = self.count[b].div_ceil(2);
                let mut seen = 0;
                let median = self.hist[b]
                    .iter()
                    .position(|&c| {
                        seen += c;
                        seen >= half
                    })
                    .unwrap_or(0);
                ((b as f32 + 0.5) * BIN_WIDTH, median as f32)
            })
            .collect();
        let (first, last) = (*points.first()?, *points.last()?);
        let mut lut = [0f32; 256];
        let mut seg = 0;
        for (v, out) in lut.iter_mut().enumerate() {
            let v = v as f32;
            *out = if v <= first.0 {
                first.1 + (v - first.0)
            } else if v >= last.0 {
                last.1 + (v - last.0)
            } else {
                while points[seg + 1].0 < v {
                    seg += 1;
                }
                let (a, b) = (points[seg], points[seg + 1]);
                a.1 + (v - a.0) / (b.0 - a.0) * (b.1 - a.1)
            };
        }
        Some(Curve { lut })
    }
}

/// Returns the warped pickup channels `pick` mapped to the return frame's
/// light, fitted on the pixels where `fit_mask` is set.
///
/// Each channel gets a tone curve per cell of a coarse grid (the median
/// return level for each pickup level); a pixel's value blends the curves
/// of its four nearest cells bilinearly, the way CLAHE blends its
/// histograms. Per-cell curves absorb a global gain, offset and gamma per
/// channel and a smooth light gradient across the frame, none of which is
/// damage. A cell with too few fitted pixels uses the whole frame's curve.
pub(crate) fn normalise(pick: &[Plane; 3], ret: &[Plane; 3], fit_mask: &[u8]) -> [Plane; 3] {
    let (w, h) = (ret[0].w, ret[0].h);
    let (gx, gy) = if w >= h {
        (CELLS_LONG_SIDE, (CELLS_LONG_SIDE * h).div_ceil(w).max(2))
    } else {
        ((CELLS_LONG_SIDE * w).div_ceil(h).max(2), CELLS_LONG_SIDE)
    };
    let (cw, ch) = (w as f32 / gx as f32, h as f32 / gy as f32);
    let cell_of = |x: usize, y: usize| -> usize {
        let cx = ((x as f32 / cw) as usize).min(gx - 1);
        let cy = ((y as f32 / ch) as usize).min(gy - 1);
        cy * gx + cx
    };

    std::array::from_fn(|c| {
        let (p, r) = (&pick[c], &ret[c]);
        let mut global = Fit::new();
        let mut cells: Vec<Fit> = (0..gx * gy).map(|_| Fit::new()).collect();
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                if fit_mask[i] != 0 {
                    global.add(p.data[i], r.data[i]);
                    cells[cell_of(x, y)].add(p.data[i], r.data[i]);
                }
            }
        }
        let identity = Curve {
            lut: std::array::from_fn(|v| v as f32),
        };
        let global = global.curve().unwrap_or(identity);
        // A cell needs enough pixels to fill most bins it spans.
        let curves: Vec<Curve> = cells
            .iter()
            .map(|f| {
                if f.total >= (BINS as u32) * MIN_BIN_COUNT * 2 {
                    f.curve().unwrap_or_else(|| global.clone())
                } else {
                    global.clone()
                }
            })
            .collect();

        let mut out = Plane::new(w, h);
        // Bilinear blend between cell centres, clamped at the outer half cells.
        let coord = |v: usize, size: f32, n: usize| -> (usize, usize, f32) {
            let f = ((v as f32 + 0.5) / size - 0.5).clamp(0.0, (n - 1) as f32);
            let i0 = (f as usize).min(n.saturating_sub(2));
            let i1 = (i0 + 1).min(n - 1);
            (i0, i1, f - i0 as f32)
        };
        for y in 0..h {
            let (y0, y1, ty) = coord(y, ch, gy);
            for x in 0..w {
                let (x0, x1, tx) = coord(x, cw, gx);
                let i = y * w + x;
                let v = p.data[i];
                let top =
                    curves[y0 * gx + x0].apply(v) * (1.0 - tx) + curves[y0 * gx + x1].apply(v) * tx;
                let bottom =
                    curves[y1 * gx + x0].apply(v) * (1.0 - tx) + curves[y1 * gx + x1].apply(v) * tx;
                out.data[i] = top * (1.0 - ty) + bottom * ty;
            }
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plane(w: usize, h: usize, f: impl Fn(usize, usize) -> f32) -> Plane {
        Plane {
            w,
            h,
            data: (0..w * h).map(|i| f(i % w, i / w)).collect(),
        }
    }

    #[test]
    fn gain_gamma_and_gradient_are_undone() {
        let (w, h) = (200, 120);
        let base = |x: usize, y: usize| ((x * 7 + y * 13) % 256) as f32;
        // The return light: gamma 0.8, gain 1.1, offset 12, and 6% brighter
        // on the right than on the left.
        let relit = |x: usize, y: usize| {
            let v = 255.0 * (base(x, y) / 255.0).powf(0.8);
            (v * 1.1 * (0.97 + 0.06 * x as f32 / w as f32) + 12.0).min(255.0)
        };
        let pick = [plane(w, h, base), plane(w, h, base), plane(w, h, base)];
        let ret = [plane(w, h, relit), plane(w, h, relit), plane(w, h, relit)];
        let mask = vec![1u8; w * h];
        let out = normalise(&pick, &ret, &mask);
        let mean_err: f32 = out[0]
            .data
            .iter()
            .zip(&ret[0].data)
            .map(|(a, b)| (a - b).abs())
            .sum::<f32>()
            / (w * h) as f32;
        let raw_err: f32 = pick[0]
            .data
            .iter()
            .zip(&ret[0].data)
            .map(|(a, b)| (a - b).abs())
            .sum::<f32>()
            / (w * h) as f32;
        assert!(mean_err < 2.5, "normalised error {mean_err}, raw {raw_err}");
        assert!(raw_err > 15.0, "raw {raw_err}");
    }
}
