//! `f32` image planes and the few kernels the comparison needs: area downscale, small blurs, bilinear sampling, gradient magnitude.
//!
//! Everything here works on flat `Vec<f32>` rows without per-pixel
//! `get_pixel` calls: the comparison touches every pixel of two frames several
//! times and runs per camera per inspection on CPU.

use image::RgbImage;

/// One channel of an image as `f32` values (0-255 for intensities), row-major.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plane {
    pub(crate) w: usize,
    pub(crate) h: usize,
    pub(crate) data: Vec<f32>,
}

impl Plane {
    pub(crate) fn new(w: usize, h: usize) -> Self {
        Self {
            w,
            h,
            data: vec![0.0; w * h],
        }
    }

    #[cfg(test)]
    pub(crate) fn at(&self, x: usize, y: usize) -> f32 {
        self.data[y * self.w + x]
    }

    /// Area-averages `img` into three planes (R, G, B), each pixel the mean
    /// of a `k` x `k` block; the last `width % k` columns and `height % k`
    /// rows are left out.
    ///
    /// An integer factor keeps the analysis grid uniform (output pixel `i`
    /// is centred on camera pixel `k * i + (k - 1) / 2`, exactly), which the
    /// sub-pixel alignment relies on: bands of alternating width would
    /// jitter edges by a third of a pixel. Area averaging is the
    /// anti-aliased reduction: dropping pixels would alias fine texture into
    /// edges that differ between two slightly shifted frames.
    pub(crate) fn downscale_rgb(img: &RgbImage, k: usize) -> [Plane; 3] {
        let k = k.max(1);
        let (w, h) = (img.width() as usize, img.height() as usize);
        let (ow, oh) = (w / k, h / k);
        let src = img.as_raw();
        let mut out = [Plane::new(ow, oh), Plane::new(ow, oh), Plane::new(ow, oh)];
        let norm = 1.0 / (k * k) as f32;
        let mut sums = vec![0u32; ow * 3];
        for oy in 0..oh {
            sums.fill(0);
            for y in oy * k..(oy + 1) * k {
                let row = &src[y * w * 3..(y * w + ow * k) * 3];
                for (ox, block) in row.chunks_exact(3 * k).enumerate() {
                    let s = &mut sums[ox * 3..ox * 3 + 3];
                    for px in block.chunks_exact(3) {
                        s[0] += u32::from(px[0]);
                        s[1] += u32::from(px[1]);
                        s[2] += u32::from(px[2]);
                    }
                }
            }
            for ox in 0..ow {
                for (c, plane) in out.iter_mut().enumerate() {
                    plane.data[oy * ow + ox] = sums[ox * 3 + c] as f32 * norm;
                }
            }
        }
        out
    }

    /// BT.709 luma of three R, G, B planes of equal size.
    pub(crate) fn luma(rgb: &[Plane; 3]) -> Plane {
        let [r, g, b] = rgb;
        Plane {
            w: r.w,
            h: r.h,
            data: r
                .data
                .iter()
                .zip(&g.data)
                .zip(&b.data)
                .map(|((&r, &g), &b)| 0.2126 * r + 0.7152 * g + 0.0722 * b)
                .collect(),
        }
    }

    /// Area-averages 2 x 2 blocks (an odd last column or row is left out):
    /// the next pyramid level, on the same uniform grid as the one above.
    pub(crate) fn halve(&self) -> Plane {
        let (ow, oh) = (self.w / 2, self.h / 2);
        let mut out = Plane::new(ow, oh);
        for oy in 0..oh {
            let top = &self.data[2 * oy * self.w..];
            let bottom = &self.data[(2 * oy + 1) * self.w..];
            for ox in 0..ow {
                let x = 2 * ox;
                out.data[oy * ow + ox] = 0.25 * (top[x] + top[x + 1] + bottom[x] + bottom[x + 1]);
            }
        }
        out
    }

    /// Separable `[1 2 1] / 4` blur (Gaussian, σ ≈ 0.7), edges clamped.
    ///
    /// Enough to take sensor and JPEG noise off single pixels without
    /// smearing a scratch one or two pixels wide.
    pub(crate) fn blur3(&self) -> Plane {
        let (w, h) = (self.w, self.h);
        if w < 2 || h < 2 {
            return self.clone();
        }
        let mut tmp = Plane::new(w, h);
        for y in 0..h {
            let row = &self.data[y * w..(y + 1) * w];
            let out = &mut tmp.data[y * w..(y + 1) * w];
            out[0] = 0.75 * row[0] + 0.25 * row[1];
            for x in 1..w - 1 {
                out[x] = 0.25 * row[x - 1] + 0.5 * row[x] + 0.25 * row[x + 1];
            }
            out[w - 1] = 0.75 * row[w - 1] + 0.25 * row[w - 2];
        }
        let mut out = Plane::new(w, h);
        for y in 0..h {
            let up = &tmp.data[y.saturating_sub(1) * w..][..w];
            let mid = &tmp.data[y * w..][..w];
            let down = &tmp.data[(y + 1).min(h - 1) * w..][..w];
            for (x, o) in out.data[y * w..(y + 1) * w].iter_mut().enumerate() {
                *o = 0.25 * up[x] + 0.5 * mid[x] + 0.25 * down[x];
            }
        }
        out
    }

    /// L1 gradient magnitude `(|dI/dx| + |dI/dy|) / 2` by central
    /// differences, with edge pixels clamped (one-sided at the border).
    ///
    /// The border must not be a constant ring: two frames' rings coincide at
    /// the identity transform and would pull the alignment there.
    pub(crate) fn gradient_magnitude(&self) -> Plane {
        let (w, h) = (self.w, self.h);
        let mut out = Plane::new(w, h);
        if w < 2 || h < 2 {
            return out;
        }
        for y in 0..h {
            let (up, down) = (y.saturating_sub(1), (y + 1).min(h - 1));
            for x in 0..w {
                let (left, right) = (x.saturating_sub(1), (x + 1).min(w - 1));
                let gx = self.data[y * w + right] - self.data[y * w + left];
                let gy = self.data[down * w + x] - self.data[up * w + x];
                out.data[y * w + x] = 0.5 * (gx.abs() + gy.abs());
            }
        }
        out
    }

    /// Bilinear sample at `(x, y)`; the caller keeps the point inside
    /// `[0, w-1] x [0, h-1]`.
    #[inline]
    pub(crate) fn sample(&self, x: f32, y: f32) -> f32 {
        let x0 = (x as usize).min(self.w.saturating_sub(2));
        let y0 = (y as usize).min(self.h.saturating_sub(2));
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        let i = y0 * self.w + x0;
        let (x1, y1) = (usize::from(self.w > 1), if self.h > 1 { self.w } else { 0 });
        let top = self.data[i] + fx * (self.data[i + x1] - self.data[i]);
        let bottom = self.data[i + y1] + fx * (self.data[i + y1 + x1] - self.data[i + y1]);
        top + fy * (bottom - top)
    }
}

/// Grows a 0/1 mask by `r` pixels in every direction (a square structuring
/// element), separably.
pub(crate) fn dilate(mask: &[u8], w: usize, h: usize, r: usize) -> Vec<u8> {
    if r == 0 {
        return mask.to_vec();
    }
    let mut tmp = vec![0u8; w * h];
    for y in 0..h {
        let row = &mask[y * w..(y + 1) * w];
        // Distance to the last set pixel on the left, then on the right.
        let mut last: Option<usize> = None;
        for x in 0..w {
            if row[x] != 0 {
                last = Some(x);
            }
            if last.is_some_and(|l| x - l <= r) {
                tmp[y * w + x] = 1;
            }
        }
        last = None;
        for x in (0..w).rev() {
            if row[x] != 0 {
                last = Some(x);
            }
            if last.is_some_and(|l| l - x <= r) {
                tmp[y * w + x] = 1;
            }
        }
    }
    let mut out = vec![0u8; w * h];
    for x in 0..w {
        let mut last: Option<usize> = None;
        for y in 0..h {
            if tmp[y * w + x] != 0 {
                last = Some(y);
            }
            if last.is_some_and(|l| y - l <= r) {
                out[y * w + x] = 1;
            }
        }
        last = None;
        for y in (0..h).rev() {
            if tmp[y * w + x] != 0 {
                last = Some(y);
            }
            if last.is_some_and(|l| l - y <= r) {
                out[y * w + x] = 1;
            }
        }
    }
    out
}

/// Labels the 8-connected components of the non-zero pixels of `mask`;
/// returns one label per pixel (0 = background, 1.. = component) and the
/// number of components.
pub(crate) fn label_components(mask: &[u8], w: usize, h: usize) -> (Vec<u32>, u32) {
    let mut labels = vec![0u32; w * h];
    let mut next = 0u32;
    let mut stack = Vec::new();
    for start in 0..w * h {
        if mask[start] == 0 || labels[start] != 0 {
            continue;
        }
        next += 1;
        labels[start] = next;
        stack.push(start);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            for ny in y.saturating_sub(1)..=(y + 1).min(h - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                    let j = ny * w + nx;
                    if mask[j] != 0 && labels[j] == 0 {
                        labels[j] = next;
                        stack.push(j);
                    }
                }
            }
        }
    }
    (labels, next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn downscale_rgb_averages_areas() {
        // 5x5: the last column and row are left out at k = 2.
        let img = RgbImage::from_fn(5, 5, |x, _| Rgb([if x < 2 { 0 } else { 200 }, 10, 20]));
        let [r, g, b] = Plane::downscale_rgb(&img, 2);
        assert_eq!((r.w, r.h), (2, 2));
        assert_eq!(r.data, vec![0.0, 200.0, 0.0, 200.0]);
        assert_eq!(g.data, vec![10.0; 4]);
        assert_eq!(b.data, vec![20.0; 4]);
        let half = r.halve();
        assert_eq!(half.data, vec![100.0]);
    }

    #[test]
    fn bilinear_sample_interpolates_and_reaches_the_last_pixel() {
        let p = Plane {
            w: 2,
            h: 2,
            data: vec![0.0, 10.0, 20.0, 30.0],
        };
        assert_eq!(p.sample(0.5, 0.5), 15.0);
        assert_eq!(p.sample(1.0, 1.0), 30.0);
        assert_eq!(p.sample(1.0, 0.0), 10.0);
    }

    #[test]
    fn blur_keeps_a_constant_and_gradient_of_a_ramp_is_its_slope() {
        let ramp = Plane {
            w: 5,
            h: 4,
            data: (0..20).map(|i| (i % 5) as f32 * 2.0).collect(),
        };
        let g = ramp.gradient_magnitude();
        // The ramp rises 2 per pixel; central differences span 2 pixels.
        assert_eq!(g.at(2, 1), 2.0);
        let flat = Plane {
            w: 5,
            h: 4,
            data: vec![7.0; 20],
        };
        assert_eq!(flat.blur3().data, flat.data);
    }

    #[test]
    fn dilate_and_label_merge_nearby_pixels() {
        let (w, h) = (7, 3);
        let mut mask = vec![0u8; w * h];
        mask[w + 1] = 1;
        mask[w + 3] = 1;
        let (_, n) = label_components(&mask, w, h);
        assert_eq!(n, 2);
        let grown = dilate(&mask, w, h, 1);
        assert_eq!(grown.iter().filter(|&&m| m != 0).count(), 15);
        let (labels, n) = label_components(&grown, w, h);
        assert_eq!(n, 1);
        assert_eq!(labels[6], 0);
    }
}
