//! Strict image decoding for what arrives over the network: a body is a
//! whole JPEG (or PNG, where a format allows it), within size limits, or it
//! is refused with a stable code.
//!
//! The upload role checks every frame a board sends with [`check_jpeg`]
//! before it is stored; the inference role decodes request bodies with
//! [`decode_image`]. Both share one set of checks, here, so that the fuzz
//! target `image_decode` (fuzz/) exercises the code that runs.

use std::io::Cursor;

use image::{ImageFormat, ImageReader, Limits, RgbImage};

/// The largest width or height accepted: 16384 px (a 12 MP frame is 4000 px
/// wide). A small file declaring a huge image is refused before allocating.
pub const MAX_DIMENSION: u32 = 16_384;

/// The most memory one decode may allocate: 256 MiB, eleven 12 MP RGB
/// frames' worth. A "decompression bomb" (a few kilobytes declaring
/// 16384 x 16384 px, 768 MiB decoded) is refused by this limit before any
/// pixel is allocated.
pub const MAX_DECODE_BYTES: u64 = 256 * 1024 * 1024;

/// Why a body is not an image this service runs.
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

/// The decoder's limits: [`MAX_DIMENSION`] and [`MAX_DECODE_BYTES`].
pub fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_DIMENSION);
    limits.max_image_height = Some(MAX_DIMENSION);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    limits
}

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
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits());
    let image = reader
        .decode()
        .map_err(|e| ImageProblem::Corrupt(e.to_string().chars().take(200).collect()))?;
    Ok(image.into_rgb8())
}

/// Why a body is not a frame the upload role stores.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JpegProblem {
    /// It does not start with the JPEG start-of-image marker.
    #[error("the body is not a JPEG (no start-of-image marker)")]
    NotJpeg,
    /// It starts like a JPEG but does not end with the end-of-image marker:
    /// cut off in transit or on the device.
    #[error("the JPEG is truncated (no end-of-image marker at the end)")]
    Truncated,
    /// Both markers are there but the decoder refuses what lies between, or
    /// it declares an image beyond the limits.
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

/// Checks that `bytes` is a whole JPEG within the limits by decoding all of
/// it ([`decode_image`]); returns the dimensions. CPU-bound: call it from a
/// blocking thread.
pub fn check_jpeg(bytes: &[u8]) -> Result<(u32, u32), JpegProblem> {
    match decode_image(bytes, ImageFormat::Jpeg) {
        Ok(image) => Ok(image.dimensions()),
        Err(ImageProblem::NotJpeg) => Err(JpegProblem::NotJpeg),
        Err(ImageProblem::TruncatedJpeg) => Err(JpegProblem::Truncated),
        Err(other) => Err(JpegProblem::Corrupt(match other {
            ImageProblem::Corrupt(why) => why,
            other => other.to_string(),
        })),
    }
}

/// Rewrites the first frame header (SOF0..SOF2) of a JPEG to declare
/// `width` x `height`, leaving the compressed data as it is: how a
/// decompression bomb is made. For tests and the fuzz corpus; `None` when
/// `jpeg` has no such header.
pub fn with_declared_size(jpeg: &[u8], width: u16, height: u16) -> Option<Vec<u8>> {
    let mut out = jpeg.to_vec();
    let mut i = 2;
    while i + 9 < out.len() {
        if out[i] != 0xFF {
            return None;
        }
        let marker = out[i + 1];
        let len = usize::from(u16::from_be_bytes([out[i + 2], out[i + 3]]));
        if (0xC0..=0xC2).contains(&marker) {
            out[i + 5..i + 7].copy_from_slice(&height.to_be_bytes());
            out[i + 7..i + 9].copy_from_slice(&width.to_be_bytes());
            return Some(out);
        }
        i += 2 + len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(format: ImageFormat, w: u32, h: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 3) as u8, (y * 5) as u8, 7]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    #[test]
    fn whole_images_decode_and_damaged_ones_are_named() {
        for format in [ImageFormat::Jpeg, ImageFormat::Png] {
            let good = encoded(format, 64, 48);
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
            assert!(
                decode_image(b"", format)
                    .unwrap_err()
                    .code()
                    .starts_with("not_")
            );
        }
        let png = encoded(ImageFormat::Png, 64, 48);
        assert_eq!(
            decode_image(&png, ImageFormat::Jpeg),
            Err(ImageProblem::NotJpeg)
        );
        let mut corrupt = encoded(ImageFormat::Jpeg, 64, 48)[..20].to_vec();
        corrupt.extend_from_slice(&[0xFF, 0xD9]);
        assert_eq!(
            decode_image(&corrupt, ImageFormat::Jpeg)
                .unwrap_err()
                .code(),
            "corrupt_image"
        );
    }

    #[test]
    fn a_whole_jpeg_passes_and_damaged_ones_are_named() {
        let good = encoded(ImageFormat::Jpeg, 64, 48);
        assert_eq!(check_jpeg(&good), Ok((64, 48)));
        assert_eq!(check_jpeg(b"\x89PNG\r\n\x1a\n"), Err(JpegProblem::NotJpeg));
        assert_eq!(check_jpeg(b""), Err(JpegProblem::NotJpeg));
        assert_eq!(check_jpeg(&[0xFF, 0xD8, 0xFF]), Err(JpegProblem::Truncated));
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
        let good = encoded(ImageFormat::Jpeg, 64, 64);
        let half = &good[..good.len() / 2];
        assert!(image::load_from_memory_with_format(half, ImageFormat::Jpeg).is_ok());
    }

    #[test]
    fn a_decompression_bomb_is_refused_before_it_is_decoded() {
        let small = encoded(ImageFormat::Jpeg, 16, 16);
        // 16384 x 16384 px (768 MiB of RGB) declared by a file of < 1 KiB:
        // within MAX_DIMENSION, beyond MAX_DECODE_BYTES.
        let bomb = with_declared_size(&small, 16_384, 16_384).unwrap();
        assert!(bomb.len() < 1024);
        assert!(matches!(check_jpeg(&bomb), Err(JpegProblem::Corrupt(_))));
        // Beyond MAX_DIMENSION on one side.
        let wide = with_declared_size(&small, 20_000, 8).unwrap();
        assert!(matches!(check_jpeg(&wide), Err(JpegProblem::Corrupt(_))));
        // The same rewrite with the size the file has decodes as before:
        // the refusals above come from the declared size alone.
        let same = with_declared_size(&small, 16, 16).unwrap();
        assert_eq!(check_jpeg(&same), Ok((16, 16)));
    }
}
