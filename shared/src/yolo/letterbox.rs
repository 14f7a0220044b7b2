//! Letterboxing (Ultralytics `LetterBox(auto=False, scaleup=True)`) and the
//! NCHW input tensor.

use image::RgbImage;

use super::YoloError;
use crate::geometry::BBox;

/// The input size of stock YOLOv8 exports.
pub const DEFAULT_INPUT_SIZE: u32 = 640;

/// The grey Ultralytics pads with, in every channel.
pub const LETTERBOX_FILL: u8 = 114;

/// The largest square input accepted; a guard against allocating gigabytes
/// for a misconfigured size (4096² × 3 floats is already 200 MB).
pub const MAX_INPUT_SIZE: u32 = 4096;

/// The fixed square input size of a model whose input shape is
/// `[batch, 3, height, width]` (`None` marks a dynamic dimension): `Some(s)`
/// for a fixed `s x s` input, `None` for a fully dynamic one, an error for
/// any other shape. The same rule for tract and ONNX Runtime.
pub fn fixed_input_size(dims: &[Option<i64>]) -> Result<Option<u32>, String> {
    match dims {
        [_, None | Some(3), h, w] => match (*h, *w) {
            (None, None) => Ok(None),
            (Some(h), Some(w)) if h > 0 && h == w => u32::try_from(h)
                .map(Some)
                .map_err(|_| format!("input size {h} is too large")),
            (h, w) => Err(format!(
                "input is {h:?}x{w:?}; only square (or fully dynamic) inputs are supported"
            )),
        },
        _ => Err(format!(
            "input shape {dims:?} is not [batch, 3, size, size]"
        )),
    }
}

/// The size frames are letterboxed to: the configured one, else the model's
/// fixed input size, else its `imgsz` metadata, else 640. A configured size
/// that contradicts a fixed input is refused here, at load, rather than
/// failing every inference.
pub fn resolve_input_size(
    configured: Option<u32>,
    fixed: Option<u32>,
    metadata: &super::ModelMetadata,
) -> Result<u32, String> {
    match (configured, fixed) {
        (Some(want), Some(have)) if want != have => Err(format!(
            "input_size is configured as {want} but the model's input is fixed at {have}"
        )),
        (Some(want), _) => Ok(want),
        (None, Some(have)) => Ok(have),
        (None, None) => Ok(metadata.input_size().unwrap_or(DEFAULT_INPUT_SIZE)),
    }
}

/// Checks a configured model input size: a multiple of the YOLOv8 stride (32)
/// between 32 and [`MAX_INPUT_SIZE`].
pub fn check_input_size(size: u32) -> Result<(), String> {
    if (32..=MAX_INPUT_SIZE).contains(&size) && size.is_multiple_of(32) {
        Ok(())
    } else {
        Err(format!(
            "{size} must be a multiple of 32 (the YOLOv8 stride) between 32 and {MAX_INPUT_SIZE}"
        ))
    }
}

/// How a source image sits inside the square model input: scaled by `scale`
/// to `resized_width` x `resized_height`, then shifted by the integer padding
/// `pad_x`, `pad_y`. Build it with [`Letterbox::new`]; the fields are public
/// for logging and for callers that letterbox elsewhere (e.g. on a GPU).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Letterbox pixels per source pixel (Ultralytics' `gain`/`r`).
    pub scale: f32,
    /// Columns of padding left of the image.
    pub pad_x: u32,
    /// Rows of padding above the image.
    pub pad_y: u32,
    /// Width of the scaled image inside the square.
    pub resized_width: u32,
    /// Height of the scaled image inside the square.
    pub resized_height: u32,
    /// Width of the source image.
    pub src_width: u32,
    /// Height of the source image.
    pub src_height: u32,
    /// Side of the square model input.
    pub size: u32,
}

impl Letterbox {
    /// The letterbox geometry of a `src_width` x `src_height` image in a
    /// `size` x `size` input, computed exactly like Ultralytics (in `f64`,
    /// Python's half-to-even `round`).
    pub fn new(src_width: u32, src_height: u32, size: u32) -> Result<Self, YoloError> {
        if src_width == 0 || src_height == 0 {
            return Err(YoloError::EmptyImage {
                width: src_width,
                height: src_height,
            });
        }
        if size == 0 || size > MAX_INPUT_SIZE {
            return Err(YoloError::InvalidInputSize {
                size,
                max: MAX_INPUT_SIZE,
            });
        }
        let (w, h, s) = (f64::from(src_width), f64::from(src_height), f64::from(size));
        let r = (s / w).min(s / h);
        // Python's round() is half-to-even. Clamped to 1..=size so an extreme
        // aspect ratio still leaves one row or column instead of none.
        let side = |v: f64| (v * r).round_ties_even().clamp(1.0, s) as u32;
        let (resized_width, resized_height) = (side(w), side(h));
        let half = |pad: u32| (f64::from(pad) / 2.0 - 0.1).round_ties_even().max(0.0) as u32;
        Ok(Self {
            scale: r as f32,
            pad_x: half(size - resized_width),
            pad_y: half(size - resized_height),
            resized_width,
            resized_height,
            src_width,
            src_height,
            size,
        })
    }

    /// A letterbox point mapped back to source pixels, clamped to the image.
    pub fn to_original_point(&self, x: f32, y: f32) -> (f32, f32) {
        let (ox, oy) = self.unmap(x, y);
        (
            clamp_or_nan(ox, self.src_width as f32),
            clamp_or_nan(oy, self.src_height as f32),
        )
    }

    /// A source point mapped into letterbox pixels (not clamped: points
    /// outside the source land in the padding or outside the square).
    pub fn to_letterbox_point(&self, x: f32, y: f32) -> (f32, f32) {
        let s = f64::from(self.scale);
        (
            (f64::from(x) * s + f64::from(self.pad_x)) as f32,
            (f64::from(y) * s + f64::from(self.pad_y)) as f32,
        )
    }

    /// A box in letterbox pixels mapped back to source pixels and clamped to
    /// the source image (as Ultralytics' `scale_boxes` + `clip_boxes`).
    pub fn to_original(&self, b: BBox) -> BBox {
        let (x1, y1) = self.unmap(b.x1, b.y1);
        let (x2, y2) = self.unmap(b.x2, b.y2);
        let (w, h) = (self.src_width as f32, self.src_height as f32);
        // Not BBox::new/clamp_to: both silently turn NaN into a number, and
        // the caller must be able to see a non-finite box to drop it.
        BBox {
            x1: clamp_or_nan(x1, w),
            y1: clamp_or_nan(y1, h),
            x2: clamp_or_nan(x2, w),
            y2: clamp_or_nan(y2, h),
        }
    }

    /// A box in source pixels mapped into letterbox pixels (not clamped).
    pub fn to_letterbox(&self, b: BBox) -> BBox {
        let (x1, y1) = self.to_letterbox_point(b.x1, b.y1);
        let (x2, y2) = self.to_letterbox_point(b.x2, b.y2);
        BBox { x1, y1, x2, y2 }
    }

    /// Unclamped inverse mapping, in `f64` so a round trip stays well under a
    /// thousandth of a pixel even for 4000-pixel frames.
    fn unmap(&self, x: f32, y: f32) -> (f32, f32) {
        let s = f64::from(self.scale);
        (
            ((f64::from(x) - f64::from(self.pad_x)) / s) as f32,
            ((f64::from(y) - f64::from(self.pad_y)) / s) as f32,
        )
    }
}

/// `v` limited to `[0, max]`; NaN stays NaN (f32::clamp would keep it too,
/// but says so less plainly, and `max` is never below 0 here).
fn clamp_or_nan(v: f32, max: f32) -> f32 {
    if v.is_nan() {
        v
    } else {
        v.clamp(0.0, max.max(0.0))
    }
}

/// Letterboxes `img` into a `size` x `size` square and returns its geometry
/// and the NCHW `[1, 3, size, size]` tensor: RGB planes, values in `[0, 1]`,
/// padding `114 / 255`.
pub fn preprocess(img: &RgbImage, size: u32) -> Result<(Letterbox, Vec<f32>), YoloError> {
    let mut tensor = Vec::new();
    let lb = preprocess_into(img, size, &mut tensor)?;
    Ok((lb, tensor))
}

/// As [`preprocess`], writing into a reusable buffer (resized to
/// `3 * size * size`) so a camera loop does not allocate per frame.
pub fn preprocess_into(
    img: &RgbImage,
    size: u32,
    tensor: &mut Vec<f32>,
) -> Result<Letterbox, YoloError> {
    let lb = Letterbox::new(img.width(), img.height(), size)?;
    let side = size as usize;
    let plane = side * side;
    tensor.clear();
    tensor.resize(3 * plane, f32::from(LETTERBOX_FILL) / 255.0);

    let (rw, rh) = (lb.resized_width as usize, lb.resized_height as usize);
    let (px, py) = (lb.pad_x as usize, lb.pad_y as usize);
    let xs = axis_taps(img.width(), lb.resized_width);
    let ys = axis_taps(img.height(), lb.resized_height);
    let stride = img.width() as usize * 3;
    let raw = img.as_raw();
    let (r_plane, rest) = tensor.split_at_mut(plane);
    let (g_plane, b_plane) = rest.split_at_mut(plane);
    // Resize and HWC u8 -> CHW f32 in one pass, row by row over slices: no
    // intermediate image and no per-pixel get_pixel. `rw + px <= side` and
    // `rh + py <= side` by construction of Letterbox.
    for (y, ty) in ys.iter().enumerate().take(rh) {
        let row0 = &raw[ty.i0 * stride..][..stride];
        let row1 = &raw[ty.i1 * stride..][..stride];
        let start = (y + py) * side + px;
        let end = start + rw;
        for (((tx, r), g), b) in xs
            .iter()
            .zip(&mut r_plane[start..end])
            .zip(&mut g_plane[start..end])
            .zip(&mut b_plane[start..end])
        {
            let (a, c) = (tx.i0 * 3, tx.i1 * 3);
            let sample = |k: usize| {
                let top = lerp(row0[a + k], row0[c + k], tx.w1);
                let bottom = lerp(row1[a + k], row1[c + k], tx.w1);
                // Rounded like the u8 image cv2.resize returns.
                (top + (bottom - top) * ty.w1).round() * (1.0 / 255.0)
            };
            *r = sample(0);
            *g = sample(1);
            *b = sample(2);
        }
    }
    Ok(lb)
}

/// Source samples for one output row or column of a bilinear resize.
struct AxisTap {
    i0: usize,
    i1: usize,
    /// Weight of `i1`; `i0` gets `1 - w1`.
    w1: f32,
}

/// Bilinear taps mapping `dst` output positions onto `src` inputs the way
/// OpenCV's `INTER_LINEAR` does (half-pixel centres, edges clamped, no
/// antialiasing when shrinking), which is what Ultralytics' LetterBox calls.
/// Equal sizes give an exact copy. `src` and `dst` are at least 1.
fn axis_taps(src: u32, dst: u32) -> Vec<AxisTap> {
    let scale = f64::from(src) / f64::from(dst);
    let last = src as usize - 1;
    (0..dst)
        .map(|d| {
            let s = (f64::from(d) + 0.5) * scale - 0.5;
            let floor = s.floor();
            if floor < 0.0 {
                AxisTap {
                    i0: 0,
                    i1: 0,
                    w1: 0.0,
                }
            } else if floor as usize >= last {
                AxisTap {
                    i0: last,
                    i1: last,
                    w1: 0.0,
                }
            } else {
                let i0 = floor as usize;
                AxisTap {
                    i0,
                    i1: i0 + 1,
                    w1: (s - floor) as f32,
                }
            }
        })
        .collect()
}

fn lerp(a: u8, b: u8, t: f32) -> f32 {
    let a = f32::from(a);
    a + (f32::from(b) - a) * t
}

#[cfg(test)]
mod tests {
    #[test]
    fn fixed_and_resolved_input_sizes() {
        assert_eq!(
            fixed_input_size(&[Some(1), Some(3), Some(640), Some(640)]),
            Ok(Some(640))
        );
        assert_eq!(fixed_input_size(&[None, None, None, None]), Ok(None));
        for bad in [
            vec![Some(1), Some(3), Some(640), Some(480)],
            vec![Some(1), Some(3), Some(640), None],
            vec![Some(1), Some(1), Some(640), Some(640)],
            vec![Some(3), Some(640), Some(640)],
        ] {
            assert!(fixed_input_size(&bad).is_err(), "{bad:?}");
        }
        let meta = super::super::ModelMetadata::from_pairs([
            ("names", "{0: 'plate'}"),
            ("imgsz", "[480, 480]"),
        ])
        .unwrap();
        assert_eq!(resolve_input_size(None, None, &meta), Ok(480));
        assert_eq!(resolve_input_size(None, Some(640), &meta), Ok(640));
        assert_eq!(resolve_input_size(Some(320), None, &meta), Ok(320));
        let err = resolve_input_size(Some(320), Some(640), &meta).unwrap_err();
        assert!(err.contains("fixed at 640"), "{err}");
    }

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn landscape_1280x720_to_640() {
        let lb = Letterbox::new(1280, 720, 640).unwrap();
        assert_eq!(lb.scale, 0.5);
        assert_eq!((lb.resized_width, lb.resized_height), (640, 360));
        assert_eq!((lb.pad_x, lb.pad_y), (0, 140));
    }

    #[test]
    fn portrait_image_is_padded_left_and_right() {
        let lb = Letterbox::new(720, 1280, 640).unwrap();
        assert_eq!((lb.resized_width, lb.resized_height), (360, 640));
        assert_eq!((lb.pad_x, lb.pad_y), (140, 0));
        // Odd padding: Ultralytics puts the smaller half first (round(dh - 0.1)).
        let lb = Letterbox::new(1000, 333, 640).unwrap();
        assert_eq!(lb.resized_height, 213);
        assert_eq!(lb.pad_y, 213); // (640 - 213) / 2 = 213.5 -> 213
    }

    #[test]
    fn small_images_are_scaled_up() {
        let lb = Letterbox::new(320, 160, 640).unwrap();
        assert_eq!(lb.scale, 2.0);
        assert_eq!((lb.resized_width, lb.resized_height), (640, 320));
        assert_eq!((lb.pad_x, lb.pad_y), (0, 160));
    }

    #[test]
    fn bad_sizes_are_errors() {
        assert!(matches!(
            Letterbox::new(0, 10, 640),
            Err(YoloError::EmptyImage { .. })
        ));
        assert!(matches!(
            Letterbox::new(10, 10, 0),
            Err(YoloError::InvalidInputSize { .. })
        ));
        assert!(preprocess(&RgbImage::new(0, 0), 640).is_err());
        assert!(preprocess(&RgbImage::new(4, 4), MAX_INPUT_SIZE + 1).is_err());
        // Extreme aspect ratio still yields at least one column.
        let lb = Letterbox::new(1, 4000, 32).unwrap();
        assert_eq!(lb.resized_width, 1);
    }

    #[test]
    fn box_mapping_of_1280x720() {
        let lb = Letterbox::new(1280, 720, 640).unwrap();
        let b = BBox::new(100.0, 200.0, 300.0, 400.0);
        let l = lb.to_letterbox(b);
        assert_eq!(l, BBox::new(50.0, 240.0, 150.0, 340.0));
        assert_eq!(lb.to_original(l), b);
        // Boxes reaching into the padding are clamped to the image.
        let outside = BBox::new(-20.0, 0.0, 700.0, 639.0);
        assert_eq!(lb.to_original(outside), BBox::new(0.0, 0.0, 1280.0, 720.0));
        let nan = BBox {
            x1: f32::NAN,
            y1: 0.0,
            x2: 1.0,
            y2: 1.0,
        };
        assert!(!lb.to_original(nan).is_finite());
    }

    #[test]
    fn tensor_layout_is_nchw_rgb() {
        let mut img = RgbImage::from_pixel(4, 2, image::Rgb([0, 0, 0]));
        img.put_pixel(1, 0, image::Rgb([255, 0, 0]));
        img.put_pixel(2, 1, image::Rgb([0, 0, 51]));
        // 4x2 into a 4x4 input: scale 1 (no resampling), one padding row above.
        let (lb, t) = preprocess(&img, 4).unwrap();
        assert_eq!((lb.scale, lb.pad_x, lb.pad_y), (1.0, 0, 1));
        assert_eq!(t.len(), 3 * 16);
        let at = |c: usize, y: usize, x: usize| t[c * 16 + y * 4 + x];
        let fill = 114.0 / 255.0;
        // Padding rows 0 and 3 are grey in every channel.
        for c in 0..3 {
            for x in 0..4 {
                assert_eq!(at(c, 0, x), fill);
                assert_eq!(at(c, 3, x), fill);
            }
        }
        // The red pixel (1, 0) lands in channel 0 at row 0 + pad_y.
        assert_eq!(at(0, 1, 1), 1.0);
        assert_eq!(at(1, 1, 1), 0.0);
        assert_eq!(at(2, 1, 1), 0.0);
        assert!((at(2, 2, 2) - 0.2).abs() < 1e-6);
        assert_eq!(at(0, 2, 2), 0.0);
    }

    #[test]
    fn resized_tensor_has_expected_padding_and_range() {
        let img = RgbImage::from_pixel(1280, 720, image::Rgb([255, 0, 10]));
        let mut buf = vec![7.0; 3];
        let lb = preprocess_into(&img, 640, &mut buf).unwrap();
        assert_eq!(buf.len(), 3 * 640 * 640);
        let plane = 640 * 640;
        // Row 139 is padding, row 140 is image.
        assert_eq!(buf[139 * 640 + 5], 114.0 / 255.0);
        assert_eq!(buf[140 * 640 + 5], 1.0);
        assert_eq!(buf[plane + 140 * 640 + 5], 0.0);
        assert_eq!(buf[(140 + 360) * 640], 114.0 / 255.0);
        assert_eq!(lb.pad_y, 140);
        assert!(buf.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn resampling_is_bilinear_like_opencv() {
        // 2x1 -> 4x2 (size 4, scale 2): OpenCV INTER_LINEAR gives
        // 0, 64, 191, 255 for a 0..255 ramp (taps at -0.25, 0.25, 0.75, 1.25).
        let mut img = RgbImage::new(2, 1);
        img.put_pixel(1, 0, image::Rgb([255, 255, 255]));
        let (lb, t) = preprocess(&img, 4).unwrap();
        assert_eq!((lb.resized_width, lb.resized_height, lb.pad_y), (4, 2, 1));
        let row: Vec<u8> = t[4..8].iter().map(|v| (v * 255.0).round() as u8).collect();
        assert_eq!(row, vec![0, 64, 191, 255]);
        // Shrinking 4x4 -> 2x2 (size 2) samples between pixel pairs.
        let img = RgbImage::from_fn(4, 4, |x, _| image::Rgb([(x * 60) as u8, 0, 0]));
        let (_, t) = preprocess(&img, 2).unwrap();
        assert_eq!(
            t[..2]
                .iter()
                .map(|v| (v * 255.0).round() as u8)
                .collect::<Vec<_>>(),
            vec![30, 150]
        );
    }

    proptest! {
        #[test]
        fn forward_then_inverse_round_trips(
            w in 1u32..=4000,
            h in 1u32..=4000,
            size in 32u32..=1280,
            fx in 0.0f32..=1.0,
            fy in 0.0f32..=1.0,
            gx in 0.0f32..=1.0,
            gy in 0.0f32..=1.0,
        ) {
            let lb = Letterbox::new(w, h, size).unwrap();
            prop_assert!(lb.pad_x + lb.resized_width <= size);
            prop_assert!(lb.pad_y + lb.resized_height <= size);
            let (x, y) = (fx * w as f32, fy * h as f32);
            let (lx, ly) = lb.to_letterbox_point(x, y);
            let (bx, by) = lb.to_original_point(lx, ly);
            prop_assert!((bx - x).abs() <= 1e-3, "x {} -> {} -> {}", x, lx, bx);
            prop_assert!((by - y).abs() <= 1e-3, "y {} -> {} -> {}", y, ly, by);

            let b = BBox::new(x, y, gx * w as f32, gy * h as f32);
            let back = lb.to_original(lb.to_letterbox(b));
            for (a, o) in [(back.x1, b.x1), (back.y1, b.y1), (back.x2, b.x2), (back.y2, b.y2)] {
                prop_assert!((a - o).abs() <= 1e-3, "{:?} -> {:?}", b, back);
            }
        }
    }
}
