//! Latency of pickup-vs-return change detection per frame pair, beside a naive peer in the same run.
//!
//! The peer is what a first attempt would do: per-pixel absolute difference
//! of the unaligned frames and a fixed threshold. It is cheap, and useless on
//! real pairs (a moved, relit car differs almost everywhere), so the table
//! prints what it flags too: the ratio is the price of an answer that means
//! something.
//!
//! Frames: the bus photo, resampled to 1280x720 and 1920x1080 (and at its
//! own 546x413), against a copy shifted by 2%, scaled by 1.5%, relit, with
//! one painted scratch. Each configuration runs a few warm-up rounds, then
//! reports the median and minimum of the timed rounds.
//!
//! Run: `cargo bench -p inspection-core --bench compare` (release profile);
//! `cargo bench -p inspection-core --bench compare --profile dev` reuses the
//! test build (dependencies at opt-level 3, this crate at 2).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use image::{GrayImage, RgbImage};
use inspection_core::BBox;
use inspection_core::compare::{ChangeConfig, detect_changes, synth};

const ROUNDS: usize = 15;
const WARMUP: usize = 2;

/// The fetched photo, found the way the tests find it (`tests/common`).
fn photo() -> RgbImage {
    let base = std::env::var_os("INSPECTION_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .map(|c| c.join("inspection-system"))
        })
        .expect("neither INSPECTION_CACHE_DIR, XDG_CACHE_HOME nor HOME is set");
    let path = base.join("models/photos/pexels_double_decker_bus.jpg");
    image::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `bash models/fetch.sh`)", path.display()))
        .to_rgb8()
}

/// A pickup/return pair of `width` x `height` made from the photo, and the
/// painted scratch's box.
fn pair(photo: &RgbImage, width: u32, height: u32) -> (RgbImage, RgbImage, BBox) {
    // Both windows cover 85% of the photo, resampled to the target size.
    let s = 0.85 * (photo.width() as f32 / width as f32).min(photo.height() as f32 / height as f32);
    let (x0, y0) = (
        (photo.width() as f32 - s * width as f32) / 2.0,
        (photo.height() as f32 - s * height as f32) / 2.0,
    );
    let pickup = synth::shift_scale(photo, width, height, x0, y0, s);
    let rs = s * 1.015;
    let mut ret = synth::shift_scale(
        photo,
        width,
        height,
        x0 + 0.02 * s * width as f32 - 0.0075 * s * width as f32,
        y0 - 0.01 * s * height as f32,
        rs,
    );
    let (w, h) = (width as f32, height as f32);
    let scratch = synth::Scratch::irregular(
        (0.4 * w, 0.5 * h),
        0.4,
        0.12 * w,
        (w / 400.0).max(1.5),
        -70.0,
        7,
    );
    let painted = synth::paint_scratch(&mut ret, &scratch);
    let ret = synth::relight(
        &ret,
        &synth::Relight {
            gain: [1.1, 1.08, 1.12],
            offset: [-6.0, -4.0, -8.0],
            gamma: 0.9,
            gradient: [0.08, -0.05],
        },
    );
    (pickup, synth::add_noise(&ret, 2.0, 1), painted)
}

/// The naive peer: unaligned per-pixel absolute luma difference, fixed
/// threshold 25; returns the mask and the fraction flagged.
fn naive(pickup: &RgbImage, ret: &RgbImage) -> (GrayImage, f32) {
    let (w, h) = pickup.dimensions();
    let mut flagged = 0usize;
    let mut mask = GrayImage::new(w, h);
    for ((a, b), m) in pickup.pixels().zip(ret.pixels()).zip(mask.iter_mut()) {
        let d = (0..3)
            .map(|c| (i32::from(a[c]) - i32::from(b[c])).unsigned_abs())
            .sum::<u32>()
            / 3;
        if d > 25 {
            *m = 255;
            flagged += 1;
        }
    }
    (mask, flagged as f32 / (w * h) as f32)
}

fn time<T>(mut f: impl FnMut() -> T) -> (Duration, Duration) {
    for _ in 0..WARMUP {
        black_box(f());
    }
    let mut times: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed()
        })
        .collect();
    times.sort();
    (times[ROUNDS / 2], times[0])
}

#[path = "support/record.rs"]
mod record;

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects sizes by name.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let photo = photo();
    let config = ChangeConfig::default();
    let sizes = [
        ("photo", photo.width(), photo.height()),
        ("720p", 1280, 720),
        ("1080p", 1920, 1080),
    ];
    println!(
        "{:<7} {:>11} {:>12} {:>10} {:>12} {:>10} {:>8} {:>14}",
        "size",
        "analysis",
        "ours median",
        "ours min",
        "naive median",
        "naive min",
        "ratio",
        "flagged o/n"
    );
    for (name, w, h) in sizes {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let (pickup, ret, painted) = pair(&photo, w, h);
        let roi = Some(BBox::new(0.0, 0.0, w as f32, h as f32));
        let result = detect_changes(&pickup, &ret, roi, &config).expect("the pair aligns");
        let (_, naive_fraction) = naive(&pickup, &ret);
        let (ours, ours_min) = time(|| detect_changes(&pickup, &ret, roi, &config));
        let (peer, peer_min) = time(|| naive(&pickup, &ret));
        println!(
            "{:<7} {:>11} {:>10.1}ms {:>8.1}ms {:>10.2}ms {:>8.2}ms {:>7.1}x {:>6.3}/{:.3}",
            name,
            format!("{}x{}", result.analysis_width, result.analysis_height),
            ours.as_secs_f64() * 1e3,
            ours_min.as_secs_f64() * 1e3,
            peer.as_secs_f64() * 1e3,
            peer_min.as_secs_f64() * 1e3,
            ours.as_secs_f64() / peer.as_secs_f64(),
            result.changed_fraction,
            naive_fraction,
        );
        record::compared(
            "cargo bench --profile dev -p inspection-core --bench compare",
            &format!(
                "change detection on a {w}x{h} pickup/return pair, median (flagged: {:.3} vs {:.3} of the frame)",
                result.changed_fraction, naive_fraction
            ),
            record::Figure::new("aligned change detection", ours.as_secs_f64() * 1e3, "ms"),
            record::Figure::new("naive difference", peer.as_secs_f64() * 1e3, "ms"),
        );
        let on_scratch = result
            .regions
            .iter()
            .filter(|r| r.bbox.intersection(&painted).is_some())
            .count();
        println!(
            "        ours: {} region(s), {on_scratch} on the painted scratch; alignment scale {:.4} (true 1.015), score {:.3}",
            result.regions.len(),
            result.alignment.scale,
            result.alignment.score
        );
    }
}
