//! Image bodies as the upload role (every frame a board sends) and the
//! inference role (JPEG or PNG request bodies) receive them.
//!
//! Must hold: no panic, no allocation beyond the decoder limits (libFuzzer's
//! -rss_limit_mb catches that), and a body the upload role accepts is within
//! MAX_DIMENSION and decodes the same way on the inference path.
#![no_main]

use image::ImageFormat;
use inspection_core::image_check::{MAX_DIMENSION, check_jpeg, decode_image};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((w, h)) = check_jpeg(data) {
        assert!(w <= MAX_DIMENSION && h <= MAX_DIMENSION);
        let image = decode_image(data, ImageFormat::Jpeg).expect("accepted by upload");
        assert_eq!(image.dimensions(), (w, h));
    }
    let _ = decode_image(data, ImageFormat::Png);
});
