//! YUYV (packed YUV 4:2:2) to RGB, ITU-R BT.601 limited range.
//!
//! UVC cameras send YUYV in BT.601 with "studio" range (Y 16-235, Cb/Cr
//! 16-240), so black is Y=16 and white Y=235. The integer form below is the
//! classic 8-bit fixed-point one (coefficients scaled by 256), exact to
//! within one level of the floating-point formula.

use image::RgbImage;

use super::CaptureError;

/// The chroma terms of a pixel pair, added to each pixel's luma term.
#[inline]
fn chroma(u: u8, v: u8) -> [i32; 3] {
    let d = i32::from(u) - 128;
    let e = i32::from(v) - 128;
    [409 * e, -100 * d - 208 * e, 516 * d]
}

#[inline]
fn pixel(y: u8, [r, g, b]: [i32; 3]) -> [u8; 3] {
    // +128 rounds the fixed-point result to the nearest level.
    let c = 298 * (i32::from(y) - 16) + 128;
    let clamp = |x: i32| (x >> 8).clamp(0, 255) as u8;
    [clamp(c + r), clamp(c + g), clamp(c + b)]
}

/// One BT.601 limited-range pixel to RGB.
pub fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    pixel(y, chroma(u, v))
}

/// Converts a YUYV buffer (`Y0 U Y1 V` for each pair of pixels) to RGB.
///
/// `stride` is the driver's bytes per line (`0` means `2 * width`); drivers
/// may pad lines. The buffer may be longer than needed, never shorter.
pub fn yuyv_to_rgb(
    data: &[u8],
    width: u32,
    height: u32,
    stride: u32,
) -> Result<RgbImage, CaptureError> {
    let short = || CaptureError::ShortBuffer {
        len: data.len(),
        width,
        height,
        stride,
    };
    let row_bytes = width as usize * 2;
    let stride = if stride == 0 {
        row_bytes
    } else {
        stride as usize
    };
    if width % 2 == 1 || stride < row_bytes {
        return Err(short());
    }
    let needed = match height as usize {
        0 => 0,
        h => stride * (h - 1) + row_bytes,
    };
    if data.len() < needed {
        return Err(short());
    }
    let mut out = RgbImage::new(width, height);
    for (row, out_row) in out.chunks_exact_mut(width as usize * 3).enumerate() {
        let line = &data[row * stride..row * stride + row_bytes];
        for (pair, px) in line.chunks_exact(4).zip(out_row.chunks_exact_mut(6)) {
            // Both pixels of a pair share their chroma: compute it once.
            let terms = chroma(pair[1], pair[3]);
            px[..3].copy_from_slice(&pixel(pair[0], terms));
            px[3..].copy_from_slice(&pixel(pair[2], terms));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_bt601_colours() {
        // Reference values: BT.601 limited range, as in the V4L2 docs' tables.
        assert_eq!(yuv_to_rgb(16, 128, 128), [0, 0, 0]);
        assert_eq!(yuv_to_rgb(235, 128, 128), [255, 255, 255]);
        assert_eq!(yuv_to_rgb(126, 128, 128), [128, 128, 128]);
        assert_eq!(yuv_to_rgb(81, 90, 240), [255, 0, 0]);
        assert_eq!(yuv_to_rgb(145, 54, 34), [0, 255, 1]);
        assert_eq!(yuv_to_rgb(41, 240, 110), [0, 0, 255]);
        // Out-of-range input clamps instead of wrapping.
        assert_eq!(yuv_to_rgb(0, 128, 128), [0, 0, 0]);
        assert_eq!(yuv_to_rgb(255, 128, 128), [255, 255, 255]);
    }

    #[test]
    fn matches_the_floating_point_formula() {
        for y in (0..=255u8).step_by(7) {
            for u in (0..=255u8).step_by(11) {
                for v in (0..=255u8).step_by(13) {
                    let (yf, uf, vf) = (
                        1.164 * (f64::from(y) - 16.0),
                        f64::from(u) - 128.0,
                        f64::from(v) - 128.0,
                    );
                    let want = [
                        yf + 1.596 * vf,
                        yf - 0.392 * uf - 0.813 * vf,
                        yf + 2.017 * uf,
                    ];
                    let got = yuv_to_rgb(y, u, v);
                    for (g, w) in got.iter().zip(want) {
                        let w = w.clamp(0.0, 255.0);
                        assert!((f64::from(*g) - w).abs() <= 1.5, "{y} {u} {v}: {got:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn pairs_share_chroma_and_stride_padding_is_skipped() {
        // 2x2 image, lines padded to 6 bytes: red pair, then black/white pair.
        let data = [
            81, 90, 81, 240, 0xEE, 0xEE, //
            16, 128, 235, 128, 0xEE, 0xEE,
        ];
        let rgb = yuyv_to_rgb(&data, 2, 2, 6).unwrap();
        assert_eq!(rgb.get_pixel(0, 0).0, [255, 0, 0]);
        assert_eq!(rgb.get_pixel(1, 0).0, [255, 0, 0]);
        assert_eq!(rgb.get_pixel(0, 1).0, [0, 0, 0]);
        assert_eq!(rgb.get_pixel(1, 1).0, [255, 255, 255]);
        // The last line needs no padding.
        assert!(yuyv_to_rgb(&data[..10], 2, 2, 6).is_ok());
    }

    #[test]
    fn short_buffers_and_odd_widths_are_errors() {
        assert!(matches!(
            yuyv_to_rgb(&[0; 7], 2, 2, 0),
            Err(CaptureError::ShortBuffer { len: 7, .. })
        ));
        assert!(yuyv_to_rgb(&[0; 12], 3, 2, 0).is_err());
        assert!(yuyv_to_rgb(&[0; 12], 2, 2, 2).is_err());
    }
}
