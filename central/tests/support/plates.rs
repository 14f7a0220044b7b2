//! The synthetic plates of `central::demo::plates` with the tests' own
//! helpers: fonts and photos that must exist (a panic names what to
//! install), and the deterministic case set of the plate tests and bench.

#![allow(dead_code)]

use ab_glyph::FontVec;
pub use central::demo::plates::*;
use image::{Rgb, RgbImage};
use inspection_core::geometry::BBox;
use rand::Rng;

pub fn load_font(path: &str) -> FontVec {
    central::demo::plates::load_font(path).unwrap_or_else(|e| panic!("{e}"))
}

pub fn background(path: &std::path::Path, width: u32) -> RgbImage {
    central::demo::plates::background(path, width).unwrap_or_else(|e| panic!("{e}"))
}

/// One synthetic case: a frame with one plate, its box and its truth.
pub struct Case {
    pub spec: PlateSpec,
    pub look: Look,
    pub font: usize,
    pub frame: RgbImage,
    pub truth: BBox,
}

/// `n` deterministic cases from `seed` on the given backgrounds, cycling
/// through countries, fonts and backgrounds.
pub fn cases(seed: u64, n: usize, backgrounds: &[RgbImage], fonts: &[FontVec]) -> Vec<Case> {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let country = COUNTRIES[i % COUNTRIES.len()];
            let font = (i / COUNTRIES.len() + i) % fonts.len();
            let spec = random_plate(&mut rng, country);
            let look = Look::random(&mut rng);
            let mut frame = backgrounds[i % backgrounds.len()].clone();
            let rendered = render_plate(&spec, &fonts[font]);
            // Where a car's plate sits in a bay frame: the lower two thirds.
            let x = rng.random_range(20..frame.width() - look.width - 40);
            let y = rng.random_range(frame.height() / 3..frame.height() - 120);
            let truth = place(&mut frame, &rendered, &look, (x, y));
            let frame = jpeg_roundtrip(&frame);
            Case {
                spec,
                look,
                font,
                frame,
                truth,
            }
        })
        .collect()
}

/// Fills `frame` with grey: for "no plate here" checks.
pub fn blank(width: u32, height: u32) -> RgbImage {
    RgbImage::from_pixel(width, height, Rgb([128, 128, 128]))
}
