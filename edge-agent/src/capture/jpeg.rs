//! Checking and decoding one JPEG (a file of a replay, an MJPEG buffer).

use image::{ImageFormat, RgbImage};

use super::CaptureError;

/// JPEG start-of-image marker followed by the first marker's `FF`.
const SOI: [u8; 3] = [0xFF, 0xD8, 0xFF];
/// JPEG end-of-image marker.
const EOI: [u8; 2] = [0xFF, 0xD9];

/// Checks that `bytes` is a complete JPEG: the start-of-image marker at the
/// start, the end-of-image marker at the end.
///
/// The end check matters: `image` 0.25 decodes a JPEG cut off half-way
/// without an error (the rest comes out grey), and a half-grey frame must
/// not reach the quality gate or an upload. `FF D9` cannot occur inside
/// entropy-coded data (a data `FF` is always followed by `00` or a restart
/// marker), so finding it last is reliable. Trailing zero bytes are ignored:
/// some cameras pad MJPEG buffers with them.
pub fn check_jpeg(bytes: &[u8]) -> Result<(), CaptureError> {
    if bytes.is_empty() {
        return Err(CaptureError::Empty);
    }
    if !bytes.starts_with(&SOI) {
        return Err(CaptureError::NotJpeg);
    }
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    if !bytes[..end].ends_with(&EOI) {
        return Err(CaptureError::Truncated { len: bytes.len() });
    }
    Ok(())
}

/// [`check_jpeg`], then decode to RGB.
pub fn decode_jpeg(bytes: &[u8]) -> Result<RgbImage, CaptureError> {
    check_jpeg(bytes)?;
    let image = image::load_from_memory_with_format(bytes, ImageFormat::Jpeg)
        .map_err(CaptureError::Decode)?;
    Ok(image.into_rgb8())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_jpeg() -> Vec<u8> {
        let image = RgbImage::from_fn(32, 16, |x, y| {
            image::Rgb([(x * 8) as u8, (y * 16) as u8, 90])
        });
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
            .encode_image(&image)
            .unwrap();
        bytes
    }

    #[test]
    fn complete_jpeg_decodes_and_padding_is_tolerated() {
        let mut bytes = small_jpeg();
        assert_eq!(decode_jpeg(&bytes).unwrap().dimensions(), (32, 16));
        bytes.extend_from_slice(&[0, 0, 0]);
        assert_eq!(decode_jpeg(&bytes).unwrap().dimensions(), (32, 16));
    }

    #[test]
    fn empty_foreign_and_truncated_data_are_refused() {
        let bytes = small_jpeg();
        assert!(matches!(decode_jpeg(&[]), Err(CaptureError::Empty)));
        assert!(matches!(decode_jpeg(b"hello"), Err(CaptureError::NotJpeg)));
        assert!(matches!(
            decode_jpeg(&bytes[..bytes.len() / 2]),
            Err(CaptureError::Truncated { .. })
        ));
        assert!(matches!(
            decode_jpeg(&bytes[..bytes.len() - 1]),
            Err(CaptureError::Truncated { .. })
        ));
        // Complete markers around garbage: the decoder's refusal is reported.
        let garbage = [0xFF, 0xD8, 0xFF, 0x12, 0x34, 0xFF, 0xD9];
        assert!(matches!(
            decode_jpeg(&garbage),
            Err(CaptureError::Decode(_))
        ));
    }
}
