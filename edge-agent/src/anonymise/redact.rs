//! Blurring or pixelating face regions of a frame, leaving the plate alone.

use image::RgbImage;
use image::imageops::FilterType;
use inspection_core::geometry::BBox;
use inspection_core::quality::laplacian_variance;
use serde::Deserialize;

/// How a face is made unrecognisable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// A smooth blur (the region shrunk to a few pixels and enlarged again
    /// with interpolation): no edges left to read a face from.
    #[default]
    Blur,
    /// Large blocks of one colour each.
    Pixelate,
}

/// Pixels across the shrunk region: what is left of a face's detail.
const CELLS: u32 = 6;

/// Redacts each box grown by `margin` (0.3: 30 % wider and taller, about
/// the head around a detected face), inside the ellipse the grown box
/// bounds, except pixels inside `keep` (the plate's boxes: the inspection
/// needs it readable). Returns how many regions were redacted.
pub fn redact(
    frame: &mut RgbImage,
    boxes: &[BBox],
    keep: &[BBox],
    margin: f32,
    method: Method,
) -> u32 {
    let (fw, fh) = (frame.width() as f32, frame.height() as f32);
    let mut done = 0;
    for b in boxes {
        let (w, h) = (b.x2 - b.x1, b.y2 - b.y1);
        if w <= 0.0 || h <= 0.0 {
            continue;
        }
        let (cx, cy) = ((b.x1 + b.x2) / 2.0, (b.y1 + b.y2) / 2.0);
        let (rx, ry) = (w * (1.0 + margin) / 2.0, h * (1.0 + margin) / 2.0);
        let x1 = (cx - rx).floor().clamp(0.0, fw) as u32;
        let y1 = (cy - ry).floor().clamp(0.0, fh) as u32;
        let x2 = (cx + rx).ceil().clamp(0.0, fw) as u32;
        let y2 = (cy + ry).ceil().clamp(0.0, fh) as u32;
        if x2 <= x1 + 1 || y2 <= y1 + 1 {
            continue;
        }
        let (cw, ch) = (x2 - x1, y2 - y1);
        let crop = image::imageops::crop_imm(frame, x1, y1, cw, ch).to_image();
        let small_w = CELLS.min(cw).max(1);
        let small_h = (CELLS * ch / cw.max(1)).clamp(1, ch);
        let small = image::imageops::resize(&crop, small_w, small_h, FilterType::Triangle);
        let filter = match method {
            Method::Blur => FilterType::Triangle,
            Method::Pixelate => FilterType::Nearest,
        };
        let covered = image::imageops::resize(&small, cw, ch, filter);
        for y in 0..ch {
            for x in 0..cw {
                let (px, py) = ((x1 + x) as f32 + 0.5, (y1 + y) as f32 + 0.5);
                let (dx, dy) = ((px - cx) / rx, (py - cy) / ry);
                if dx * dx + dy * dy > 1.0 {
                    continue;
                }
                if keep
                    .iter()
                    .any(|k| px >= k.x1 && px <= k.x2 && py >= k.y1 && py <= k.y2)
                {
                    continue;
                }
                frame.put_pixel(x1 + x, y1 + y, *covered.get_pixel(x, y));
            }
        }
        done += 1;
    }
    done
}

/// Variance of the Laplacian of the luma inside `b` (the quality gate's
/// focus measure): how much detail (edges) a region holds. For tests and
/// benchmarks.
pub fn detail(frame: &RgbImage, b: &BBox) -> f64 {
    let x1 = (b.x1.max(0.0) as u32).min(frame.width());
    let y1 = (b.y1.max(0.0) as u32).min(frame.height());
    let x2 = (b.x2.max(0.0) as u32).clamp(x1, frame.width());
    let y2 = (b.y2.max(0.0) as u32).clamp(y1, frame.height());
    let region = image::imageops::crop_imm(frame, x1, y1, x2 - x1, y2 - y1).to_image();
    laplacian_variance(&image::DynamicImage::ImageRgb8(region).to_luma8())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkerboard() -> RgbImage {
        RgbImage::from_fn(200, 120, |x, y| {
            if (x / 3 + y / 3) % 2 == 0 {
                image::Rgb([240, 240, 240])
            } else {
                image::Rgb([10, 10, 10])
            }
        })
    }

    #[test]
    fn a_redacted_region_loses_its_detail_and_the_kept_box_does_not() {
        for method in [Method::Blur, Method::Pixelate] {
            let mut frame = checkerboard();
            let face = BBox::new(20.0, 20.0, 80.0, 100.0);
            let plate = BBox::new(60.0, 60.0, 120.0, 80.0);
            let before = detail(&frame, &face);
            let n = redact(&mut frame, &[face], &[plate], 0.3, method);
            assert_eq!(n, 1);
            let inner = BBox::new(30.0, 30.0, 55.0, 55.0);
            let after = detail(&frame, &inner);
            assert!(after < before * 0.05, "{method:?}: {before} -> {after}");
            // The plate's pixels are untouched.
            let original = checkerboard();
            for y in 61..79 {
                for x in 61..119 {
                    assert_eq!(frame.get_pixel(x, y), original.get_pixel(x, y));
                }
            }
            // Outside the grown ellipse nothing changed.
            assert_eq!(frame.get_pixel(150, 10), original.get_pixel(150, 10));
        }
    }

    #[test]
    fn boxes_at_or_past_the_edges_are_clamped() {
        let mut frame = checkerboard();
        let n = redact(
            &mut frame,
            &[
                BBox::new(-20.0, -20.0, 15.0, 15.0),
                BBox::new(190.0, 110.0, 260.0, 180.0),
                BBox::new(300.0, 300.0, 400.0, 400.0),
            ],
            &[],
            0.3,
            Method::Blur,
        );
        assert_eq!(n, 2);
    }
}
