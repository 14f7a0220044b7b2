//! Benchmarks of inspection-core's hot paths, each beside a peer in the same
//! run so the ratio, not the absolute time, is what to read:
//!
//! - letterbox of a 1080p frame to 640: ours (one fused OpenCV-style
//!   bilinear pass straight into the NCHW tensor) vs `image::imageops::resize`
//!   with a triangle filter followed by the same padding and layout;
//! - decode + NMS of a YOLOv8 seg head `[1, 37, 8400]`;
//! - the quality gate on a 1080p frame: ours (integer area downscale) vs
//!   `image::imageops::thumbnail` for the downscale, both then measured;
//! - plate candidates for OCR strings.
//!
//! Run: `cargo bench -p inspection-core --bench core`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use image::{DynamicImage, GrayImage, RgbImage, imageops};
use inspection_core::quality::{self, QualityThresholds};
use inspection_core::yolo::{self, DecodeConfig, Letterbox};
use inspection_core::{plate, quality::laplacian_variance};

/// A deterministic 1920x1080 frame with gradients, edges and noise.
fn frame() -> RgbImage {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    RgbImage::from_fn(1920, 1080, |x, y| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let noise = (state & 0x1f) as u8;
        let edge = if (x / 60 + y / 60) % 2 == 0 { 80 } else { 0 };
        image::Rgb([
            (x / 8) as u8 / 2 + edge + noise,
            (y / 5) as u8 / 2 + edge,
            128u8.wrapping_add(noise),
        ])
    })
}

fn letterbox(c: &mut Criterion) {
    let img = frame();
    let mut group = c.benchmark_group("letterbox_1080p_to_640");
    group.bench_function("ours_fused_bilinear_nchw", |b| {
        let mut tensor = Vec::new();
        b.iter(|| yolo::preprocess_into(black_box(&img), 640, &mut tensor).unwrap())
    });
    group.bench_function("peer_image_resize_triangle_then_nchw", |b| {
        b.iter(|| {
            let lb = Letterbox::new(img.width(), img.height(), 640).unwrap();
            let resized = imageops::resize(
                black_box(&img),
                lb.resized_width,
                lb.resized_height,
                imageops::FilterType::Triangle,
            );
            let plane = 640 * 640;
            let mut tensor = vec![114.0f32 / 255.0; 3 * plane];
            for (x, y, p) in resized.enumerate_pixels() {
                let i = (y + lb.pad_y) as usize * 640 + (x + lb.pad_x) as usize;
                for ch in 0..3 {
                    tensor[ch * plane + i] = f32::from(p[ch]) / 255.0;
                }
            }
            tensor
        })
    });
    group.finish();
}

fn decode(c: &mut Criterion) {
    // 8400 anchors, 1 class, 32 mask coefficients; 60 candidates above the
    // threshold in 20 overlapping clusters, the rest background.
    let (nc, anchors) = (1usize, 8400usize);
    let channels = 4 + nc + 32;
    let mut out = vec![0.0f32; channels * anchors];
    for a in 0..anchors {
        let cluster = (a % 20) as f32;
        out[a] = 40.0 + cluster * 28.0 + (a % 3) as f32;
        out[anchors + a] = 300.0 + (a % 7) as f32;
        out[2 * anchors + a] = 30.0;
        out[3 * anchors + a] = 12.0;
        out[4 * anchors + a] = if a < 60 {
            0.5 + (a as f32) / 200.0
        } else {
            0.01
        };
    }
    let lb = Letterbox::new(1920, 1080, 640).unwrap();
    let cfg = DecodeConfig::default();
    c.bench_function("decode_nms_seg_1x37x8400", |b| {
        b.iter(|| yolo::decode(black_box(&out), &[1, channels, anchors], nc, &lb, &cfg).unwrap())
    });
}

fn quality_gate(c: &mut Criterion) {
    let img = DynamicImage::ImageRgb8(frame());
    let thresholds = QualityThresholds::default();
    let mut group = c.benchmark_group("quality_1080p");
    group.bench_function("ours_assess", |b| {
        b.iter(|| quality::assess(black_box(&img), &thresholds))
    });
    group.bench_function("peer_image_thumbnail_then_laplacian", |b| {
        b.iter(|| {
            let luma: GrayImage = black_box(&img).to_luma8();
            let small = imageops::thumbnail(&luma, 640, 360);
            laplacian_variance(&small)
        })
    });
    group.finish();
}

fn plates(c: &mut Criterion) {
    let reads = [
        "AB12 CDE",
        "B-MW 1234",
        "AB-123-CD",
        "1234 BCD",
        "A8I2CDE",
        "XX-999-X",
    ];
    c.bench_function("plate_candidates_6_reads", |b| {
        b.iter(|| {
            reads
                .iter()
                .map(|r| plate::candidates(black_box(r)).len())
                .sum::<usize>()
        })
    });
}

criterion_group!(benches, letterbox, decode, quality_gate, plates);
criterion_main!(benches);
