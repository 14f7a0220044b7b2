//! Pixel work on plate crops: a straightened, rescaled crop around a box, and
//! the tilt estimate that picks its angle. The crops are small (a few
//! hundred by ~60 px), so plain loops are cheap even unoptimised.

use image::{Rgb, RgbImage};
use inspection_core::geometry::BBox;

/// The crop of `image` around `bbox` (grown by `margin` of its width and
/// height on each side), scaled so the grown box is `out_h` pixels high and
/// rotated by `-degrees` about its centre, i.e. a plate tilted by `degrees`
/// (clockwise on screen, y pointing down) comes out level. Pixels outside the
/// image repeat the edge.
pub fn straightened_crop(
    image: &RgbImage,
    bbox: &BBox,
    margin: f32,
    out_h: u32,
    max_w: u32,
    degrees: f32,
) -> RgbImage {
    let bw = bbox.width() * (1.0 + 2.0 * margin);
    let bh = bbox.height() * (1.0 + 2.0 * margin);
    let (cx, cy) = bbox.center();
    let scale = out_h as f32 / bh.max(1.0);
    let out_w = ((bw * scale).round() as u32).clamp(8, max_w);
    // Shrinking by more than ~1.5x with bilinear taps aliases strokes away:
    // pre-scale the surrounding region with a proper filter first.
    let (src, sx, sy, s) = if scale < 0.67 {
        let pad = 0.5 * bw.max(bh) * (degrees.abs().to_radians().sin() + 0.1);
        let x0 = (cx - bw / 2.0 - pad).floor().max(0.0) as u32;
        let y0 = (cy - bh / 2.0 - pad).floor().max(0.0) as u32;
        let x1 = ((cx + bw / 2.0 + pad).ceil() as u32).min(image.width());
        let y1 = ((cy + bh / 2.0 + pad).ceil() as u32).min(image.height());
        let (w, h) = (x1.saturating_sub(x0).max(1), y1.saturating_sub(y0).max(1));
        let region = image::imageops::crop_imm(image, x0, y0, w, h).to_image();
        let nw = ((w as f32 * scale).round() as u32).max(1);
        let nh = ((h as f32 * scale).round() as u32).max(1);
        let small = image::imageops::resize(&region, nw, nh, image::imageops::FilterType::Triangle);
        let fx = nw as f32 / w as f32;
        let fy = nh as f32 / h as f32;
        (
            std::borrow::Cow::Owned(small),
            (cx - x0 as f32) * fx,
            (cy - y0 as f32) * fy,
            1.0,
        )
    } else {
        (std::borrow::Cow::Borrowed(image), cx, cy, scale)
    };
    let (sin, cos) = degrees.to_radians().sin_cos();
    let mut out = RgbImage::new(out_w, out_h);
    let (hw, hh) = (out_w as f32 / 2.0, out_h as f32 / 2.0);
    for v in 0..out_h {
        for u in 0..out_w {
            let dx = (u as f32 + 0.5 - hw) / s;
            let dy = (v as f32 + 0.5 - hh) / s;
            let x = sx + dx * cos - dy * sin;
            let y = sy + dx * sin + dy * cos;
            out.put_pixel(u, v, bilinear(&src, x - 0.5, y - 0.5));
        }
    }
    out
}

fn bilinear(img: &RgbImage, x: f32, y: f32) -> Rgb<u8> {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let x0 = x.floor();
    let y0 = y.floor();
    let (fx, fy) = (x - x0, y - y0);
    let at = |xi: i64, yi: i64| img.get_pixel(xi.clamp(0, w - 1) as u32, yi.clamp(0, h - 1) as u32);
    let (xi, yi) = (x0 as i64, y0 as i64);
    let (p00, p10, p01, p11) = (
        at(xi, yi),
        at(xi + 1, yi),
        at(xi, yi + 1),
        at(xi + 1, yi + 1),
    );
    let mut px = [0u8; 3];
    for (c, out) in px.iter_mut().enumerate() {
        let top = f32::from(p00[c]) * (1.0 - fx) + f32::from(p10[c]) * fx;
        let bottom = f32::from(p01[c]) * (1.0 - fx) + f32::from(p11[c]) * fx;
        *out = (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8;
    }
    Rgb(px)
}

/// The column where the plate's characters start: after the blue EU band
/// when the crop has one on its left (the band's small country letters and
/// stars otherwise come out as an extra, often misread, first character:
/// `D` as `B`, `I` as `F`), else 0. Blue columns are searched in the left
/// 30% only, so a blue car around a band-less plate costs only margin.
pub fn band_end(crop: &RgbImage) -> u32 {
    let (w, h) = crop.dimensions();
    if w < 16 || h < 8 {
        return 0;
    }
    let is_blue = |p: &image::Rgb<u8>| {
        let (r, g, b) = (i32::from(p[0]), i32::from(p[1]), i32::from(p[2]));
        b > 70 && b > r + 35 && b > g + 15
    };
    let limit = w * 3 / 10;
    let mut run = 0u32;
    let (mut band, mut end) = (0u32, 0u32);
    for x in 0..limit {
        let blue = (0..h).filter(|&y| is_blue(crop.get_pixel(x, y))).count() as u32;
        if blue * 100 >= h * 35 {
            run += 1;
            if run * 100 >= w * 3 {
                (band, end) = (run, x + 1);
            }
        } else if end == 0 {
            run = 0;
        } else if x > end + 2 {
            break;
        }
    }
    // JPEG's subsampled chroma bleeds the band's blue into the first
    // character of a small plate: keep the band's last quarter rather than
    // risk cutting into it (a sliver of blue reads as nothing).
    end.saturating_sub(band / 4)
}

/// `crop` without its first `from` columns.
pub fn cut_left(crop: RgbImage, from: u32) -> RgbImage {
    if from == 0 || from >= crop.width() {
        return crop;
    }
    image::imageops::crop_imm(&crop, from, 0, crop.width() - from, crop.height()).to_image()
}

/// The tilt of the text in a level crop, in degrees within `±max_degrees`
/// (1° steps), by the projection profile: horizontal edges (character tops
/// and bottoms, the plate's border) pile up into the fewest rows when the
/// rows follow the text. 0 for a flat profile.
pub fn estimate_tilt(crop: &RgbImage, max_degrees: f32) -> f32 {
    let (w, h) = (crop.width() as usize, crop.height() as usize);
    if w < 8 || h < 8 || max_degrees < 1.0 {
        return 0.0;
    }
    let luma: Vec<f32> = crop
        .pixels()
        .map(|p| 0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]))
        .collect();
    // Vertical gradient magnitude, kept only where it is strong, so that
    // flat background does not dilute the profile.
    let mut edges = Vec::new();
    for y in 1..h - 1 {
        for x in 0..w {
            let g = (luma[(y + 1) * w + x] - luma[(y - 1) * w + x]).abs();
            if g > 40.0 {
                edges.push((x as f32 - w as f32 / 2.0, y as f32, g));
            }
        }
    }
    if edges.len() < 16 {
        return 0.0;
    }
    let steps = max_degrees.floor() as i32;
    let pad = (w as f32 * max_degrees.to_radians().tan()).ceil() as usize + 1;
    let mut bins = vec![0f32; h + 2 * pad];
    let mut best = (f32::MIN, 0.0);
    for step in -steps..=steps {
        let a = step as f32;
        let t = a.to_radians().tan();
        bins.iter_mut().for_each(|b| *b = 0.0);
        for &(x, y, g) in &edges {
            let r = (y - x * t).round() as i64 + pad as i64;
            if let Some(b) = usize::try_from(r).ok().and_then(|r| bins.get_mut(r)) {
                *b += g;
            }
        }
        let score: f32 = bins.iter().map(|b| b * b).sum();
        // Ties (and near-ties) go to the smaller angle.
        if score > best.0 * 1.0001 || (score >= best.0 * 0.9999 && a.abs() < f32::abs(best.1)) {
            best = (score, a);
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A white image with black horizontal bars tilted by `degrees`.
    fn bars(degrees: f32) -> RgbImage {
        let t = degrees.to_radians().tan();
        RgbImage::from_fn(240, 60, |x, y| {
            let r = y as f32 - (x as f32 - 120.0) * t;
            let on = (14.0..20.0).contains(&r) || (40.0..46.0).contains(&r);
            if on {
                Rgb([0, 0, 0])
            } else {
                Rgb([255, 255, 255])
            }
        })
    }

    #[test]
    fn tilt_is_found_to_the_degree() {
        for deg in [-6.0, -3.0, 0.0, 2.0, 5.0] {
            let got = estimate_tilt(&bars(deg), 8.0);
            assert!((got - deg).abs() <= 1.0, "tilt {deg}: estimated {got}");
        }
    }

    #[test]
    fn the_blue_band_is_cut_and_a_plain_crop_is_not() {
        let plate = RgbImage::from_fn(240, 48, |x, _| {
            if (6..26).contains(&x) {
                Rgb([0, 51, 153])
            } else {
                Rgb([240, 240, 240])
            }
        });
        assert_eq!(band_end(&plate), 21, "the band's last quarter is kept");
        assert_eq!(cut_left(plate, 21).width(), 219);
        assert_eq!(band_end(&bars(0.0)), 0);
    }

    #[test]
    fn straightening_undoes_the_tilt() {
        let tilted = bars(5.0);
        let bbox = BBox::new(0.0, 0.0, 240.0, 60.0);
        let level = straightened_crop(&tilted, &bbox, 0.0, 60, 640, 5.0);
        assert_eq!(level.height(), 60);
        let got = estimate_tilt(&level, 8.0);
        assert!(got.abs() <= 1.0, "after straightening: {got}");
    }
}
