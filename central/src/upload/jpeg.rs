//! Is this body a complete, decodable JPEG?

use std::io::Cursor;

use image::{ImageFormat, ImageReader};

/// Why a body is not an image this service stores.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JpegProblem {
    /// It does not start with the JPEG start-of-image marker.
    #[error("the body is not a JPEG (no start-of-image marker)")]
    NotJpeg,
    /// It starts like a JPEG but does not end with the end-of-image marker:
    /// cut off in transit or on the device.
    #[error("the JPEG is truncated (no end-of-image marker at the end)")]
    Truncated,
    /// Both markers are there but the decoder refuses what lies between.
    #[error("the JPEG cannot be decoded: {0}")]
    Corrupt(String),
}

impl JpegProblem {
    /// The stable refusal code.
    pub fn code(&self) -> &'static str {
        match self {
            JpegProblem::NotJpeg => "not_jpeg",
            JpegProblem::Truncated => "truncated_jpeg",
            JpegProblem::Corrupt(_) => "corrupt_jpeg",
        }
    }
}

/// Checks the markers, then decodes the whole image (within the decoder's
/// default memory limits, so a tiny file declaring a huge image is refused
/// rather than allocated). Returns the dimensions. CPU-bound: call it from a
/// blocking thread.
pub fn check_jpeg(bytes: &[u8]) -> Result<(u32, u32), JpegProblem> {
    if !bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Err(JpegProblem::NotJpeg);
    }
    // The decoder happily returns an image from a JPEG cut in half (the
    // missing rows come out grey), so the end marker is checked explicitly.
    if bytes.len() < 4 || !bytes.ends_with(&[0xFF, 0xD9]) {
        return Err(JpegProblem::Truncated);
    }
    let image = ImageReader::with_format(Cursor::new(bytes), ImageFormat::Jpeg)
        .decode()
        .map_err(|e| JpegProblem::Corrupt(e.to_string().chars().take(200).collect()))?;
    Ok((image.width(), image.height()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let img =
            image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7) as u8, (y * 5) as u8, 90]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Jpeg).expect("encode");
        out.into_inner()
    }

    #[test]
    fn a_whole_jpeg_passes_and_damaged_ones_are_named() {
        let good = jpeg(64, 48);
        assert_eq!(check_jpeg(&good), Ok((64, 48)));
        assert_eq!(check_jpeg(b"\x89PNG\r\n\x1a\n"), Err(JpegProblem::NotJpeg));
        assert_eq!(check_jpeg(b""), Err(JpegProblem::NotJpeg));
        assert_eq!(
            check_jpeg(&good[..good.len() / 2]),
            Err(JpegProblem::Truncated)
        );
        // Markers intact, the middle replaced: the decoder must refuse it.
        let mut corrupt = good[..20].to_vec();
        corrupt.extend_from_slice(&[0xFF, 0xD9]);
        assert_eq!(
            check_jpeg(&corrupt).map_err(|e| e.code()),
            Err("corrupt_jpeg")
        );
    }

    #[test]
    fn the_decoder_alone_would_accept_a_half_jpeg() {
        // Why the end-of-image check exists: if this ever starts failing,
        // the explicit check is merely redundant, not wrong.
        let good = jpeg(64, 64);
        let half = &good[..good.len() / 2];
        assert!(image::load_from_memory_with_format(half, ImageFormat::Jpeg).is_ok());
    }
}
