//! Frame quality metrics on real photos: a sharp street scene and a motion-blurred car.
//!
//! The photos come from OpenCV's documentation and samples, fetched by
//! `models/fetch.sh` into the cache (see `common`). Run with
//! `cargo test -p inspection-core --test quality_real_photos -- --nocapture`
//! to see the measured values that the defaults of `QualityThresholds` cite.

mod common;

use image::DynamicImage;
use inspection_core::quality::{
    AnalysisFrame, QualityThresholds, RejectReason, assess, measure, motion,
};

fn open(relative: &str) -> DynamicImage {
    let path = common::fetched(relative);
    image::open(&path).unwrap_or_else(|e| panic!("cannot decode {}: {e}", path.display()))
}

fn bus() -> DynamicImage {
    open("photos/pexels_double_decker_bus.jpg")
}

fn sedan() -> DynamicImage {
    open("photos/licenseplate_motion.jpg")
}

#[test]
fn quality_sharp_bus_beats_motion_blurred_sedan() {
    let t = QualityThresholds::default();
    let bus = measure(&bus(), &t);
    let sedan = measure(&sedan(), &t);
    println!("bus:   {bus:?}");
    println!("sedan: {sedan:?}");
    assert!(
        bus.sharpness > sedan.sharpness,
        "bus {} <= sedan {}",
        bus.sharpness,
        sedan.sharpness
    );
}

#[test]
fn quality_sharpness_falls_strictly_with_gaussian_blur() {
    let t = QualityThresholds::default();
    let bus = bus().to_rgb8();
    let original = measure(&DynamicImage::ImageRgb8(bus.clone()), &t).sharpness;
    println!("bus sigma 0: sharpness {original:.2}");
    let mut previous = original;
    for sigma in [1.0f32, 2.0, 4.0, 8.0] {
        let blurred = DynamicImage::ImageRgb8(image::imageops::blur(&bus, sigma));
        let verdict = assess(&blurred, &t);
        let sharpness = verdict.metrics.sharpness;
        let codes: Vec<_> = verdict.reasons.iter().map(RejectReason::code).collect();
        println!("bus sigma {sigma}: sharpness {sharpness:.2}, rejected for {codes:?}");
        assert!(
            sharpness < original,
            "sigma {sigma}: {sharpness} >= {original}"
        );
        assert!(
            sharpness < previous,
            "sigma {sigma}: {sharpness} >= {previous} (not strictly decreasing)"
        );
        // The default `min_sharpness` documents this split: mild softness
        // (σ 1) passes, σ 2 and beyond smear scratches and are rejected.
        assert_eq!(
            verdict.has_reason("blurry"),
            sigma >= 2.0,
            "sigma {sigma}: {:?}",
            verdict.reasons
        );
        previous = sharpness;
    }
}

#[test]
fn quality_defaults_accept_bus_and_reject_sedan_as_blurry() {
    let t = QualityThresholds::default();
    t.validate().unwrap();

    let bus = assess(&bus(), &t);
    println!("bus verdict: {bus:?}, score {:.2}", bus.score());
    assert!(bus.accepted(), "bus rejected: {:?}", bus.reasons);
    assert!(bus.score() > 0.0);

    let sedan = assess(&sedan(), &t);
    println!("sedan verdict: {sedan:?}");
    for reason in &sedan.reasons {
        println!("sedan rejected: {reason}");
    }
    assert!(sedan.has_reason("blurry"), "sedan: {:?}", sedan.reasons);
    assert_eq!(sedan.score(), 0.0);
}

#[test]
fn quality_shifted_copies_of_the_bus_count_as_motion() {
    let t = QualityThresholds::default();
    let bus = bus();
    assert_eq!(motion(&bus, &bus, t.analysis_max_side), Ok(0.0));

    let still = AnalysisFrame::new(&bus, t.analysis_max_side);
    let rgb = bus.to_rgb8();
    let (w, h) = rgb.dimensions();
    for shift in [1u32, 2, 4] {
        // The scene moved `shift` pixels left; the uncovered edge repeats the last column.
        let moved =
            image::RgbImage::from_fn(w, h, |x, y| *rgb.get_pixel((x + shift).min(w - 1), y));
        let moved = DynamicImage::ImageRgb8(moved);
        let m = motion(&bus, &moved, t.analysis_max_side).unwrap();
        println!("bus shifted by {shift} px: motion {m:.2}");
        assert!(m > t.max_motion, "shift {shift}: motion {m}");
        let verdict = AnalysisFrame::new(&moved, t.analysis_max_side).assess(Some(&still), &t);
        assert!(verdict.has_reason("moving"), "{:?}", verdict.reasons);
    }

    // JPEG re-encoding noise alone, as between two frames of a still camera,
    // must stay under the motion threshold.
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 85)
        .encode_image(&rgb)
        .unwrap();
    let reencoded = image::load_from_memory(&jpeg).unwrap();
    let noise = motion(&bus, &reencoded, t.analysis_max_side).unwrap();
    println!("bus re-encoded as JPEG q85: motion {noise:.2}");
    assert!(noise < t.max_motion, "re-encoding noise {noise}");
}
