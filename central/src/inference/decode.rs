//! Strict image decoding: a body is a whole JPEG or PNG, or it is refused.

use std::io::Cursor;

use image::{ImageFormat, ImageReader, Limits, RgbImage};

/// The largest width or height accepted: 16384 px (a 12 MP frame is 4000 px
/// wide); a small file declaring a huge image is refused before allocating.
pub const MAX_DIMENSION: u32 = 16_384;

/// Why a body is not an image this role runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageProblem {
    #[error("the body is not a JPEG (no start-of-image marker)")]
    NotJpeg,
    #[error("the JPEG is truncated (no end-of-image marker at the end)")]
    TruncatedJpeg,
    #[error("the body is not a PNG (no PNG signature)")]
    NotPng,
    #[error("the PNG is truncated (no IEND chunk at the end)")]
    TruncatedPng,
    #[error("the image cannot be decoded: {0}")]
    Corrupt(String),
}

impl ImageProblem {
    /// The stable refusal code.
    pub fn code(&self) -> &'static str {
        match self {
            ImageProblem::NotJpeg => "not_jpeg",
            ImageProblem::TruncatedJpeg => "truncated_jpeg",
            ImageProblem::NotPng => "not_png",
            ImageProblem::TruncatedPng => "truncated_png",
            ImageProblem::Corrupt(_) => "corrupt_image",
        }
    }
}

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
/// An IEND chunk: zero length, type, CRC.
const PNG_IEND: &[u8] = b"\0\0\0\0IEND\xAE\x42\x60\x82";

/// Decodes `bytes` as `format` (JPEG or PNG) into RGB. The end markers are
/// checked explicitly because the decoders return an image from a file cut
/// in half (the missing rows come out grey). CPU-bound: call it from a
/// blocking thread.
pub fn decode_image(bytes: &[u8], format: ImageFormat) -> Result<RgbImage, ImageProblem> {
    match format {
        ImageFormat::Jpeg => {
            if !bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
                return Err(ImageProblem::NotJpeg);
            }
            if bytes.len() < 4 || !bytes.ends_with(&[0xFF, 0xD9]) {
                return Err(ImageProblem::TruncatedJpeg);
            }
        }
        ImageFormat::Png => {
            if !bytes.starts_with(PNG_SIGNATURE) {
                return Err(ImageProblem::NotPng);
            }
            if !bytes.ends_with(PNG_IEND) {
                return Err(ImageProblem::TruncatedPng);
            }
        }
        other => {
            return Err(ImageProblem::Corrupt(format!("{other:?} is not supported")));
        }
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_DIMENSION);
    limits.max_image_height = Some(MAX_DIMENSION);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits);
    let image = reader
        .decode()
        .map_err(|e| ImageProblem::Corrupt(e.to_string().chars().take(200).collect()))?;
    Ok(image.into_rgb8())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(format: ImageFormat) -> Vec<u8> {
        let img = RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 3) as u8, (y * 5) as u8, 7]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    #[test]
    fn whole_images_decode_and_damaged_ones_are_named() {
        for format in [ImageFormat::Jpeg, ImageFormat::Png] {
            let good = encoded(format);
            let img = decode_image(&good, format).unwrap();
            assert_eq!(img.dimensions(), (64, 48));
            let half = &good[..good.len() / 2];
            let code = decode_image(half, format).unwrap_err().code();
            assert!(code.starts_with("truncated_"), "{code}");
            assert!(
                decode_image(b"hello", format)
                    .unwrap_err()
                    .code()
                    .starts_with("not_")
            );
        }
        let png = encoded(ImageFormat::Png);
        assert_eq!(
            decode_image(&png, ImageFormat::Jpeg),
            Err(ImageProblem::NotJpeg)
        );
        let mut corrupt = encoded(ImageFormat::Jpeg)[..20].to_vec();
        corrupt.extend_from_slice(&[0xFF, 0xD9]);
        assert_eq!(
            decode_image(&corrupt, ImageFormat::Jpeg)
                .unwrap_err()
                .code(),
            "corrupt_image"
        );
    }
}
