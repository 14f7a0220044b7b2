//! Pixel kernels behind the quality metrics: downscale, Laplacian variance, exposure, motion.
//!
//! These run on every camera frame on a small ARM board, so they work on the
//! raw `u8` slices of a [`GrayImage`] with integer arithmetic and no per-pixel
//! `get_pixel` calls (each of which would bounds-check and copy a pixel).

use image::GrayImage;

/// The size of the analysis image for a `width` x `height` frame: the longer
/// side is scaled down to at most `max_side`, keeping the aspect ratio; a frame
/// that already fits is left as is (never upscaled).
///
/// `max_side` 0 is treated as 1 so that no input panics;
/// [`QualityThresholds::validate`](super::QualityThresholds::validate) rejects it.
/// A non-empty frame never maps to an empty side (each side is at least 1),
/// and an empty one stays empty.
pub fn analysis_size(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let max_side = max_side.max(1);
    let longer = width.max(height);
    if longer <= max_side || width == 0 || height == 0 {
        return (width, height);
    }
    // Integer rounding in u64: no overflow for any u32 input, no float corner cases.
    let scale = |side: u32| -> u32 {
        let scaled =
            (u64::from(side) * u64::from(max_side) + u64::from(longer) / 2) / u64::from(longer);
        // `scaled <= max_side`, so the conversion cannot fail; 1 keeps thin frames non-empty.
        u32::try_from(scaled).unwrap_or(max_side).max(1)
    };
    (scale(width), scale(height))
}

/// Downscales `luma` so its longer side is at most `max_side`, by area
/// averaging (every source pixel counts towards exactly one output pixel);
/// returns a copy when the image already fits, never an upscaled image.
///
/// Area averaging is the cheapest anti-aliased reduction: without it,
/// dropping pixels would alias fine texture (grilles, gravel) into fake edges
/// and inflate the sharpness of a blurred frame.
pub fn downscale(luma: &GrayImage, max_side: u32) -> GrayImage {
    let (width, height) = luma.dimensions();
    let (out_w, out_h) = analysis_size(width, height, max_side);
    if (out_w, out_h) == (width, height) {
        return luma.clone();
    }
    let (w, h, ow, oh) = (
        width as usize,
        height as usize,
        out_w as usize,
        out_h as usize,
    );
    // Source column band of each output column: [bounds[i], bounds[i + 1]).
    // `ow <= w`, so every band holds at least one column.
    let col_bounds: Vec<usize> = (0..=ow).map(|i| band_start(i, w, ow)).collect();
    let src = luma.as_raw();
    let mut out = Vec::with_capacity(ow * oh);
    // Per-column sums over the rows of one output row's band; a band holds at
    // most `h` rows of values <= 255, and u64 cannot overflow for any image
    // that fits in memory.
    let mut column_sums = vec![0u64; w];
    for oy in 0..oh {
        let (y0, y1) = (band_start(oy, h, oh), band_start(oy + 1, h, oh));
        column_sums.fill(0);
        for row in src[y0 * w..y1 * w].chunks_exact(w) {
            for (sum, &p) in column_sums.iter_mut().zip(row) {
                *sum += u64::from(p);
            }
        }
        let rows = (y1 - y0) as u64;
        for bounds in col_bounds.windows(2) {
            let (x0, x1) = (bounds[0], bounds[1]);
            let count = rows * (x1 - x0) as u64;
            let total: u64 = column_sums[x0..x1].iter().sum();
            // Rounded mean of values <= 255 is <= 255.
            out.push(u8::try_from((total + count / 2) / count).unwrap_or(u8::MAX));
        }
    }
    GrayImage::from_raw(out_w, out_h, out).unwrap_or_else(|| GrayImage::new(out_w, out_h))
}

/// Start of band `i` when `len` source pixels are split into `bands` bands.
fn band_start(i: usize, len: usize, bands: usize) -> usize {
    // u128 so that `i * len` cannot overflow on 64-bit targets either.
    (i as u128 * len as u128 / bands as u128) as usize
}

/// Variance of the Laplacian (kernel `0 1 0 / 1 -4 1 / 0 1 0`) over the
/// interior pixels of `luma`: the classic focus measure (Pech-Pacheco et al.,
/// 2000). Blur removes high frequencies, which the Laplacian responds to, so
/// a blurred frame has a lower variance than a sharp one of the same scene.
///
/// The border row and column are skipped rather than padded, since padding
/// would invent edges. Images narrower or shorter than 3 pixels have no
/// interior and get 0, like a flat image.
pub fn laplacian_variance(luma: &GrayImage) -> f64 {
    let (w, h) = (luma.width() as usize, luma.height() as usize);
    if w < 3 || h < 3 {
        return 0.0;
    }
    let data = luma.as_raw();
    let mut sum = 0f64;
    let mut sum_sq = 0f64;
    for y in 1..h - 1 {
        let above = &data[(y - 1) * w..y * w];
        let row = &data[y * w..(y + 1) * w];
        let below = &data[(y + 1) * w..(y + 2) * w];
        // Exact integer sums per row (|l| <= 1020, so l² <= 1_040_400 and a
        // row of up to u32::MAX pixels stays below i64::MAX); rows are then
        // added in f64, which no image size can overflow.
        let mut row_sum = 0i64;
        let mut row_sq = 0i64;
        for ((centre, &up), &down) in row.windows(3).zip(&above[1..]).zip(&below[1..]) {
            let l = i32::from(centre[0]) + i32::from(centre[2]) + i32::from(up) + i32::from(down)
                - 4 * i32::from(centre[1]);
            row_sum += i64::from(l);
            row_sq += i64::from(l * l);
        }
        sum += row_sum as f64;
        sum_sq += row_sq as f64;
    }
    let n = ((w - 2) * (h - 2)) as f64;
    let mean = sum / n;
    // E[l²] - E[l]²; rounding can make a flat image come out a hair below 0.
    (sum_sq / n - mean * mean).max(0.0)
}

/// Exposure of a luma image: mean and the fractions of clipped pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exposure {
    /// Mean luma, 0-255; 0 for an empty image.
    pub mean_luma: f64,
    /// Fraction of pixels with luma `<= dark_level`, in `[0, 1]`; 0 for an empty image.
    pub dark_fraction: f64,
    /// Fraction of pixels with luma `>= bright_level`, in `[0, 1]`; 0 for an empty image.
    pub bright_fraction: f64,
}

/// Mean luma and clipped fractions of `luma`, from one histogram pass.
pub fn exposure(luma: &GrayImage, dark_level: u8, bright_level: u8) -> Exposure {
    let data = luma.as_raw();
    if data.is_empty() {
        return Exposure {
            mean_luma: 0.0,
            dark_fraction: 0.0,
            bright_fraction: 0.0,
        };
    }
    let mut histogram = [0u64; 256];
    for &p in data {
        histogram[usize::from(p)] += 1;
    }
    let n = data.len() as f64;
    let weighted: f64 = histogram
        .iter()
        .enumerate()
        .map(|(value, &count)| value as f64 * count as f64)
        .sum();
    let dark: u64 = histogram[..=usize::from(dark_level)].iter().sum();
    let bright: u64 = histogram[usize::from(bright_level)..].iter().sum();
    Exposure {
        mean_luma: weighted / n,
        dark_fraction: dark as f64 / n,
        bright_fraction: bright as f64 / n,
    }
}

/// Mean absolute difference of two equally long luma buffers, 0-255; `None`
/// when they differ in length or are empty.
pub fn mean_abs_diff(a: &[u8], b: &[u8]) -> Option<f64> {
    if a.len() != b.len() || a.is_empty() {
        return None;
    }
    // Chunked so the inner sum stays in u32 (4096 * 255 fits) and vectorises.
    let total: u64 = a
        .chunks(4096)
        .zip(b.chunks(4096))
        .map(|(ca, cb)| {
            let chunk: u32 = ca
                .iter()
                .zip(cb)
                .map(|(&x, &y)| u32::from(x.abs_diff(y)))
                .sum();
            u64::from(chunk)
        })
        .sum();
    Some(total as f64 / a.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Luma;

    fn checkerboard(size: u32, cell: u32) -> GrayImage {
        GrayImage::from_fn(size, size, |x, y| {
            Luma([if (x / cell + y / cell).is_multiple_of(2) {
                0
            } else {
                255
            }])
        })
    }

    #[test]
    fn analysis_size_keeps_aspect_and_never_upscales() {
        assert_eq!(analysis_size(1920, 1080, 640), (640, 360));
        assert_eq!(analysis_size(1080, 1920, 640), (360, 640));
        assert_eq!(analysis_size(320, 200, 640), (320, 200));
        assert_eq!(analysis_size(640, 640, 640), (640, 640));
        assert_eq!(analysis_size(10_000, 1, 640), (640, 1));
        assert_eq!(analysis_size(0, 0, 640), (0, 0));
        assert_eq!(analysis_size(u32::MAX, u32::MAX, 640), (640, 640));
        assert_eq!(analysis_size(7, 5, 0), (1, 1));
        assert_eq!(analysis_size(0, 6, 0), (0, 6));
        assert_eq!(analysis_size(9000, 0, 640), (9000, 0));
    }

    #[test]
    fn downscale_does_not_upscale() {
        let small = checkerboard(100, 5);
        assert_eq!(downscale(&small, 640), small);
        let big = GrayImage::new(2000, 1000);
        assert_eq!(downscale(&big, 640).dimensions(), (640, 320));
    }

    #[test]
    fn downscale_averages_areas() {
        let img = GrayImage::from_raw(4, 2, vec![0, 255, 10, 20, 255, 0, 30, 40]).unwrap();
        let out = downscale(&img, 2);
        assert_eq!(out.dimensions(), (2, 1));
        // (0 + 255 + 255 + 0) / 4 rounds to 128; (10 + 20 + 30 + 40) / 4 = 25.
        assert_eq!(out.as_raw(), &vec![128, 25]);
    }

    #[test]
    fn laplacian_of_flat_image_is_zero() {
        let flat = GrayImage::from_pixel(50, 40, Luma([128]));
        assert_eq!(laplacian_variance(&flat), 0.0);
    }

    #[test]
    fn laplacian_matches_a_naive_computation() {
        let img = GrayImage::from_fn(13, 9, |x, y| {
            Luma([((x * 37 + y * 91 + x * y) % 256) as u8])
        });
        let mut values = Vec::new();
        for y in 1i32..8 {
            for x in 1i32..12 {
                let p = |dx: i32, dy: i32| {
                    f64::from(img.get_pixel((x + dx) as u32, (y + dy) as u32)[0])
                };
                values.push(p(0, -1) + p(0, 1) + p(-1, 0) + p(1, 0) - 4.0 * p(0, 0));
            }
        }
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
        assert!((laplacian_variance(&img) - variance).abs() < 1e-6 * variance.max(1.0));
    }

    #[test]
    fn laplacian_of_tiny_images_is_zero() {
        for (w, h) in [(0, 0), (1, 1), (2, 5), (5, 2)] {
            assert_eq!(laplacian_variance(&GrayImage::new(w, h)), 0.0);
        }
    }

    #[test]
    fn exposure_counts_clipped_pixels() {
        let img = GrayImage::from_raw(4, 1, vec![0, 16, 128, 239]).unwrap();
        let e = exposure(&img, 16, 239);
        assert_eq!(e.mean_luma, (16.0 + 128.0 + 239.0) / 4.0);
        assert_eq!(e.dark_fraction, 0.5);
        assert_eq!(e.bright_fraction, 0.25);
    }

    #[test]
    fn mean_abs_diff_needs_equal_non_empty_buffers() {
        assert_eq!(mean_abs_diff(&[0, 10], &[10, 0]), Some(10.0));
        assert_eq!(mean_abs_diff(&[0, 10], &[0]), None);
        assert_eq!(mean_abs_diff(&[], &[]), None);
        let long_a = vec![255u8; 10_000];
        let long_b = vec![0u8; 10_000];
        assert_eq!(mean_abs_diff(&long_a, &long_b), Some(255.0));
    }
}
