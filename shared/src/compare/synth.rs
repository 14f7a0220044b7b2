//! Synthetic test material: a return frame made from a photo (moved, rescaled, relit, noisy) and painted damage (scratches, dents).
//!
//! No public data set has pickup/return pairs of the same car with known
//! new damage, so the tests and the demo make them: two windows of one
//! photo stand for the two visits, [`relight`] and [`add_noise`] for the
//! light and the sensor, [`paint_scratch`] and [`paint_dent`] for the
//! damage. Every function is pure and deterministic (noise and random
//! shapes take a seed), so a failing case can be replayed.

use image::{Rgb, RgbImage};

use crate::BBox;

/// A `width` x `height` frame that sees `src` from a moved camera: output
/// pixel `(x, y)` shows source point `(x0 + scale * x, y0 + scale * y)`,
/// sampled bilinearly; points outside `src` repeat its edge.
///
/// Two calls on the same photo give a pickup/return pair whose true
/// alignment is known: with the pickup at `(px0, py0, 1.0)` and the return
/// at `(x0, y0, scale)`, a return pixel `p` is pickup pixel
/// `scale * p + (x0 - px0, y0 - py0)`. Windows inside the photo give
/// realistic content at the frame edges instead of black borders.
pub fn shift_scale(
    src: &RgbImage,
    width: u32,
    height: u32,
    x0: f32,
    y0: f32,
    scale: f32,
) -> RgbImage {
    let (sw, sh) = (
        src.width().max(1) as f32 - 1.0,
        src.height().max(1) as f32 - 1.0,
    );
    RgbImage::from_fn(width, height, |x, y| {
        let sx = (x0 + scale * x as f32).clamp(0.0, sw);
        let sy = (y0 + scale * y as f32).clamp(0.0, sh);
        let (ix, iy) = (sx as u32, sy as u32);
        let (jx, jy) = ((ix + 1).min(sw as u32), (iy + 1).min(sh as u32));
        let (fx, fy) = (sx - ix as f32, sy - iy as f32);
        let (a, b) = (src.get_pixel(ix, iy), src.get_pixel(jx, iy));
        let (c, d) = (src.get_pixel(ix, jy), src.get_pixel(jx, jy));
        Rgb(std::array::from_fn(|k| {
            let top = f32::from(a[k]) + fx * (f32::from(b[k]) - f32::from(a[k]));
            let bottom = f32::from(c[k]) + fx * (f32::from(d[k]) - f32::from(c[k]));
            (top + fy * (bottom - top)).round().clamp(0.0, 255.0) as u8
        }))
    })
}

/// A change of light between the two visits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Relight {
    /// Gain per channel (R, G, B), applied after the gamma.
    pub gain: [f32; 3],
    /// Offset per channel, in levels (0-255), applied after the gain.
    pub offset: [f32; 3],
    /// Gamma on the normalised value: `255 * (v / 255) ^ gamma`.
    pub gamma: f32,
    /// Extra gain across the frame: `1 + gradient[0] * (x / width - 0.5) +
    /// gradient[1] * (y / height - 0.5)`; 0.1 is 10% brighter on the right
    /// edge than on the left.
    pub gradient: [f32; 2],
}

impl Default for Relight {
    /// No change.
    fn default() -> Self {
        Self {
            gain: [1.0; 3],
            offset: [0.0; 3],
            gamma: 1.0,
            gradient: [0.0; 2],
        }
    }
}

/// Applies `light` to every pixel of `img`, clamping to 0-255.
pub fn relight(img: &RgbImage, light: &Relight) -> RgbImage {
    let (w, h) = (img.width().max(1) as f32, img.height().max(1) as f32);
    let lut: Vec<f32> = (0..256)
        .map(|v| 255.0 * (v as f32 / 255.0).powf(light.gamma))
        .collect();
    RgbImage::from_fn(img.width(), img.height(), |x, y| {
        let g = 1.0
            + light.gradient[0] * (x as f32 / w - 0.5)
            + light.gradient[1] * (y as f32 / h - 0.5);
        let p = img.get_pixel(x, y);
        Rgb(std::array::from_fn(|k| {
            (lut[usize::from(p[k])] * light.gain[k] * g + light.offset[k])
                .round()
                .clamp(0.0, 255.0) as u8
        }))
    })
}

/// Adds zero-mean Gaussian noise of standard deviation `sigma` levels to
/// every channel, from a deterministic generator seeded with `seed`.
pub fn add_noise(img: &RgbImage, sigma: f32, seed: u64) -> RgbImage {
    let mut rng = SplitMix64(seed);
    let mut out = img.clone();
    for v in out.iter_mut() {
        *v = (f32::from(*v) + sigma * rng.gaussian())
            .round()
            .clamp(0.0, 255.0) as u8;
    }
    out
}

/// A scratch: a thin line along a polyline, lighter (paint scraped to the
/// primer) or darker (dirt in the groove) than the paint around it.
#[derive(Debug, Clone, PartialEq)]
pub struct Scratch {
    /// The line's vertices, in pixels.
    pub points: Vec<(f32, f32)>,
    /// Line width in pixels (anti-aliased).
    pub width: f32,
    /// Added to every channel on the line, in levels: negative is darker.
    pub delta: f32,
}

impl Scratch {
    /// An irregular scratch starting at `start` in direction `angle`
    /// (radians), `length` pixels long, whose direction wanders a little
    /// every few pixels (seeded by `seed`), as a key or a branch draws it.
    pub fn irregular(
        start: (f32, f32),
        angle: f32,
        length: f32,
        width: f32,
        delta: f32,
        seed: u64,
    ) -> Self {
        let mut rng = SplitMix64(seed);
        let mut points = vec![start];
        let (mut x, mut y) = start;
        let mut a = angle;
        let step = 6.0f32;
        let mut travelled = 0.0;
        while travelled < length {
            let d = step.min(length - travelled);
            a += 0.25 * (rng.unit() * 2.0 - 1.0);
            x += d * a.cos();
            y += d * a.sin();
            points.push((x, y));
            travelled += d;
        }
        Self {
            points,
            width,
            delta,
        }
    }

    /// The scratch's bounding box, including its width.
    pub fn bbox(&self) -> BBox {
        let r = self.width / 2.0 + 0.5;
        let (mut b, rest) = match self.points.split_first() {
            Some((&(x, y), rest)) => (BBox::new(x, y, x, y), rest),
            None => return BBox::new(0.0, 0.0, 0.0, 0.0),
        };
        for &(x, y) in rest {
            b = BBox::new(b.x1.min(x), b.y1.min(y), b.x2.max(x), b.y2.max(y));
        }
        BBox::new(b.x1 - r, b.y1 - r, b.x2 + r, b.y2 + r)
    }
}

/// Paints `scratch` onto `img` and returns its box clipped to the image.
pub fn paint_scratch(img: &mut RgbImage, scratch: &Scratch) -> BBox {
    let (w, h) = (img.width() as f32, img.height() as f32);
    let b = scratch.bbox().clamp_to(w, h);
    let half = scratch.width / 2.0;
    for y in b.y1 as u32..(b.y2.ceil() as u32).min(img.height()) {
        for x in b.x1 as u32..(b.x2.ceil() as u32).min(img.width()) {
            let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
            let d = scratch
                .points
                .windows(2)
                .map(|s| segment_distance((px, py), s[0], s[1]))
                .fold(f32::MAX, f32::min);
            // One pixel of anti-aliasing at the line's edge.
            let coverage = (half + 0.5 - d).clamp(0.0, 1.0);
            if coverage > 0.0 {
                let p = img.get_pixel_mut(x, y);
                for v in p.0.iter_mut() {
                    *v = (f32::from(*v) + scratch.delta * coverage)
                        .round()
                        .clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
    b
}

/// A dent: a shallow bowl in the panel, which the bay's light shades as a
/// highlight on one side and a shadow on the other.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dent {
    /// Centre, in pixels.
    pub center: (f32, f32),
    /// Semi-axes, in pixels.
    pub radii: (f32, f32),
    /// Rotation of the first axis, in radians.
    pub rotation: f32,
    /// Direction the light comes from, in radians in the image plane.
    pub light: f32,
    /// Peak brightening (and darkening on the other side), in levels.
    pub strength: f32,
}

impl Dent {
    /// The dent's bounding box (of its ellipse).
    pub fn bbox(&self) -> BBox {
        let (c, s) = (self.rotation.cos(), self.rotation.sin());
        let (a, b) = self.radii;
        let ex = ((a * c).powi(2) + (b * s).powi(2)).sqrt();
        let ey = ((a * s).powi(2) + (b * c).powi(2)).sqrt();
        BBox::new(
            self.center.0 - ex,
            self.center.1 - ey,
            self.center.0 + ex,
            self.center.1 + ey,
        )
    }
}

/// Paints `dent` onto `img` and returns its box clipped to the image.
///
/// The shading is the slope of a bowl `(1 - r²)²` along the light
/// direction: zero at the centre and the rim, strongest in between, one
/// side brighter and the other darker, as a dent looks under a bay light.
pub fn paint_dent(img: &mut RgbImage, dent: &Dent) -> BBox {
    let (w, h) = (img.width() as f32, img.height() as f32);
    let b = dent.bbox().clamp_to(w, h);
    let (c, s) = (dent.rotation.cos(), dent.rotation.sin());
    let (lc, ls) = (dent.light.cos(), dent.light.sin());
    let (ra, rb) = (dent.radii.0.max(1.0), dent.radii.1.max(1.0));
    for y in b.y1 as u32..(b.y2.ceil() as u32).min(img.height()) {
        for x in b.x1 as u32..(b.x2.ceil() as u32).min(img.width()) {
            let (dx, dy) = (
                x as f32 + 0.5 - dent.center.0,
                y as f32 + 0.5 - dent.center.1,
            );
            let (u, v) = ((dx * c + dy * s) / ra, (-dx * s + dy * c) / rb);
            let r2 = u * u + v * v;
            if r2 >= 1.0 {
                continue;
            }
            // The slope along the light, in ellipse units, is proportional
            // to `along * (1 - r²)`, whose peak 2/(3√3) ≈ 0.385 is scaled to 1.
            let along = u * (lc * c + ls * s) + v * (ls * c - lc * s);
            let shade = dent.strength * along * (1.0 - r2) * 2.6;
            let p = img.get_pixel_mut(x, y);
            for v in p.0.iter_mut() {
                *v = (f32::from(*v) + shade).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    b
}

fn segment_distance(p: (f32, f32), a: (f32, f32), b: (f32, f32)) -> f32 {
    let (abx, aby) = (b.0 - a.0, b.1 - a.1);
    let len2 = abx * abx + aby * aby;
    let t = if len2 > 0.0 {
        (((p.0 - a.0) * abx + (p.1 - a.1) * aby) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    (p.0 - a.0 - t * abx).hypot(p.1 - a.1 - t * aby)
}

/// SplitMix64: a tiny deterministic generator, so this module needs no
/// random-number crate and a seed replays the same picture everywhere.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Standard normal, by Box-Muller.
    fn gaussian(&mut self) -> f32 {
        let u1 = self.unit().max(1e-7);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gray(w: u32, h: u32, v: u8) -> RgbImage {
        RgbImage::from_pixel(w, h, Rgb([v, v, v]))
    }

    #[test]
    fn shift_scale_identity_is_a_crop() {
        let src = RgbImage::from_fn(20, 10, |x, y| Rgb([x as u8, y as u8, 7]));
        let crop = shift_scale(&src, 5, 4, 3.0, 2.0, 1.0);
        assert_eq!(crop.get_pixel(0, 0), &Rgb([3, 2, 7]));
        assert_eq!(crop.get_pixel(4, 3), &Rgb([7, 5, 7]));
    }

    #[test]
    fn relight_applies_gamma_gain_offset() {
        let img = gray(4, 4, 64);
        let out = relight(
            &img,
            &Relight {
                gain: [2.0, 1.0, 1.0],
                offset: [0.0, 10.0, 0.0],
                gamma: 1.0,
                gradient: [0.0, 0.0],
            },
        );
        assert_eq!(out.get_pixel(1, 1), &Rgb([128, 74, 64]));
        assert_eq!(relight(&img, &Relight::default()), img);
    }

    #[test]
    fn scratch_and_dent_change_only_their_box() {
        let mut img = gray(100, 80, 128);
        let scratch = Scratch::irregular((10.0, 20.0), 0.2, 50.0, 2.0, -60.0, 1);
        let b = paint_scratch(&mut img, &scratch);
        assert!(b.width() > 35.0, "{b:?}");
        let mut darkened = 0;
        for (x, y, p) in img.enumerate_pixels() {
            if p[0] != 128 {
                darkened += 1;
                assert!(
                    b.intersection(&BBox::new(
                        x as f32,
                        y as f32,
                        x as f32 + 1.0,
                        y as f32 + 1.0
                    ))
                    .is_some()
                );
            }
        }
        assert!(darkened > 80, "{darkened}");

        let mut img = gray(100, 80, 128);
        let dent = Dent {
            center: (50.0, 40.0),
            radii: (20.0, 12.0),
            rotation: 0.3,
            light: 0.0,
            strength: 40.0,
        };
        let b = paint_dent(&mut img, &dent);
        let values: Vec<u8> = img.pixels().map(|p| p[0]).collect();
        let (lo, hi) = (values.iter().min().unwrap(), values.iter().max().unwrap());
        assert!(*lo < 100 && *hi > 156, "{lo} {hi}");
        assert!(b.width() > 38.0 && b.width() < 42.0, "{b:?}");
    }

    #[test]
    fn noise_is_deterministic_and_zero_mean() {
        let img = gray(64, 64, 128);
        let a = add_noise(&img, 3.0, 7);
        assert_eq!(a, add_noise(&img, 3.0, 7));
        let mean = a.iter().map(|&v| f32::from(v)).sum::<f32>() / a.len() as f32;
        assert!((mean - 128.0).abs() < 0.2, "{mean}");
    }
}
