//! Benchmarks of the capture hot paths, each beside a peer in the same run
//! so the ratio, not the absolute time, is what to read:
//!
//! - YUYV to RGB at 720p and 1080p: ours (integer BT.601, one pass) vs a
//!   straightforward floating-point conversion of the same formula;
//! - MJPEG/file decoding of a 1080p frame: ours (end-of-image check, then
//!   `image`) vs `image::load_from_memory` alone, the cost of the check;
//! - one frame from the directory source (read + check + decode) over the
//!   real bus photo, and from the synthetic source (cached frames, unpaced),
//!   vs rendering and encoding a synthetic frame from scratch.
//!
//! Run: `cargo bench -p edge-agent --bench capture`.

#[path = "../../shared/tests/common/mod.rs"]
mod common;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use edge_agent::capture::synthetic::{encode, render};
use edge_agent::capture::{
    CameraConfig, CaptureMetrics, DirectoryConfig, FrameSource, RetryConfig, SourceConfig,
    SourceContext, SyntheticConfig, jpeg, open_source, yuyv,
};
use image::RgbImage;

/// A deterministic YUYV frame with gradients and noise.
fn yuyv_frame(width: u32, height: u32) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..width as usize * height as usize * 2)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (i as u64 / 7 % 200 + (state & 0x1f)) as u8
        })
        .collect()
}

/// The peer: the BT.601 formula in floating point, pixel by pixel.
fn yuyv_to_rgb_float(data: &[u8], width: u32, height: u32) -> RgbImage {
    let mut out = RgbImage::new(width, height);
    for (i, pair) in data.chunks_exact(4).enumerate() {
        let x = (i * 2) as u32 % width;
        let y = (i * 2) as u32 / width;
        let (u, v) = (f32::from(pair[1]) - 128.0, f32::from(pair[3]) - 128.0);
        for (dx, luma) in [(0, pair[0]), (1, pair[2])] {
            let c = 1.164 * (f32::from(luma) - 16.0);
            let px = [
                (c + 1.596 * v).clamp(0.0, 255.0) as u8,
                (c - 0.392 * u - 0.813 * v).clamp(0.0, 255.0) as u8,
                (c + 2.017 * u).clamp(0.0, 255.0) as u8,
            ];
            out.put_pixel(x + dx, y, image::Rgb(px));
        }
    }
    out
}

fn yuyv(c: &mut Criterion) {
    for (name, w, h) in [("720p", 1280, 720), ("1080p", 1920, 1080)] {
        let data = yuyv_frame(w, h);
        let mut group = c.benchmark_group(format!("yuyv_to_rgb_{name}"));
        group.bench_function("ours_integer_bt601", |b| {
            b.iter(|| yuyv::yuyv_to_rgb(black_box(&data), w, h, 0).unwrap())
        });
        group.bench_function("peer_float_per_pixel", |b| {
            b.iter(|| yuyv_to_rgb_float(black_box(&data), w, h))
        });
        group.finish();
    }
}

fn jpeg_decode(c: &mut Criterion) {
    let config = SyntheticConfig {
        width: 1920,
        height: 1080,
        ..SyntheticConfig::default()
    };
    let bytes = encode(&render(&config, config.enter_at), 90).unwrap();
    let mut group = c.benchmark_group("jpeg_decode_1080p");
    group.bench_function("ours_eoi_check_then_image", |b| {
        b.iter(|| jpeg::decode_jpeg(black_box(&bytes)).unwrap())
    });
    group.bench_function("peer_image_load_from_memory", |b| {
        b.iter(|| {
            image::load_from_memory(black_box(&bytes))
                .unwrap()
                .into_rgb8()
        })
    });
    group.finish();
}

fn camera(source: SourceConfig) -> CameraConfig {
    CameraConfig {
        id: "bench".into(),
        position: "front".into(),
        source,
        retry: RetryConfig::default(),
        anonymise_faces: true,
    }
}

fn sources(c: &mut Criterion) {
    let ctx = SourceContext::new(CaptureMetrics::new());
    let photos = common::fetched("photos/pexels_double_decker_bus.jpg");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&photos, dir.path().join("bus.jpg")).unwrap();
    let mut directory = open_source(
        &camera(SourceConfig::Directory(DirectoryConfig {
            path: dir.path().to_path_buf(),
            fps: 0.0,
            looped: true,
        })),
        &ctx,
    )
    .unwrap();
    let synthetic_config = SyntheticConfig {
        fps: 0.0,
        looped: true,
        ..SyntheticConfig::default()
    };
    let mut synthetic = open_source(
        &camera(SourceConfig::Synthetic(synthetic_config.clone())),
        &ctx,
    )
    .unwrap();

    let mut group = c.benchmark_group("source_next_frame");
    group.bench_function("directory_bus_photo_read_check_decode", |b| {
        b.iter(|| directory.next_frame().unwrap().unwrap())
    });
    group.bench_function("synthetic_640x480_cached", |b| {
        b.iter(|| synthetic.next_frame().unwrap().unwrap())
    });
    group.bench_function("peer_synthetic_640x480_render_and_encode", |b| {
        b.iter(|| {
            let image = render(black_box(&synthetic_config), synthetic_config.enter_at);
            encode(&image, synthetic_config.jpeg_quality).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, yuyv, jpeg_decode, sources);
criterion_main!(benches);
