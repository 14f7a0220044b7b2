//! Cost of the session tracker per frame, and of addressing a selected JPEG by its SHA-256.
//!
//! `cargo bench -p edge-agent --bench session`. The tracker runs once per
//! pre-screened frame on the board's async pipeline, so its cost must stay
//! negligible beside the pre-screen (hundreds of milliseconds per frame).

use std::hint::black_box;

use chrono::{DateTime, TimeDelta, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use edge_agent::session::{
    Observation, SessionCommand, SessionConfig, SessionTracker, jpeg_image_ref,
};
use inspection_core::BBox;
use inspection_core::ids::CameraId;
use inspection_core::quality::{QualityMetrics, QualityThresholds, Verdict};
use inspection_core::wire::CameraInfo;
use inspection_core::yolo::Detection;
use uuid::Uuid;

const CAMERAS: [&str; 4] = ["front", "rear", "left", "right"];
const FRAMES: usize = 1000;

fn observations() -> Vec<Observation<u64>> {
    let base = DateTime::<Utc>::from_timestamp(1_750_000_000, 0).unwrap();
    (0..FRAMES)
        .map(|i| {
            let metrics = QualityMetrics {
                source_width: 1920,
                source_height: 1080,
                analysis_width: 640,
                analysis_height: 360,
                // Varying sharpness so frames keep displacing each other.
                sharpness: 60.0 + ((i * 7919) % 1000) as f64,
                mean_luma: 120.0,
                dark_fraction: 0.05,
                bright_fraction: 0.1,
                motion: Some(1.0),
            };
            let detections = (0..3)
                .map(|d| {
                    let detection = Detection {
                        bbox: BBox::new(100.0, 100.0, 300.0, 160.0),
                        score: 0.3 + 0.2 * d as f32,
                        class_id: d,
                        mask_coeffs: vec![0.0; 32],
                    };
                    (["plate", "dent", "scratch"][d].to_owned(), detection)
                })
                .collect();
            Observation {
                camera: CameraId::new(CAMERAS[i % CAMERAS.len()]).unwrap(),
                // 10 frames per second across the cameras.
                captured_at: base + TimeDelta::milliseconds(100 * i as i64),
                verdict: Verdict::from_metrics(metrics, &QualityThresholds::default()),
                detections,
                frame: i as u64,
            }
        })
        .collect()
}

fn tracker() -> SessionTracker<u64> {
    let cameras = CAMERAS
        .iter()
        .map(|c| CameraInfo {
            id: CameraId::new(*c).unwrap(),
            position: (*c).to_owned(),
        })
        .collect();
    let config = SessionConfig {
        // No timeout within the stream: the whole run is one inspection.
        max_duration_seconds: 3600.0,
        ..SessionConfig::default()
    };
    SessionTracker::new(config, cameras, Uuid::now_v7).unwrap()
}

fn bench(c: &mut Criterion) {
    let stream = observations();
    let end = stream
        .last()
        .map(|o| o.captured_at + TimeDelta::seconds(1))
        .unwrap();

    let mut group = c.benchmark_group("session");
    group.throughput(Throughput::Elements(FRAMES as u64));
    group.bench_function("observe_1000_frames_4_cameras", |b| {
        b.iter_batched(
            || (tracker(), stream.clone()),
            |(mut tracker, stream)| {
                let mut outputs = 0;
                for obs in stream {
                    outputs += tracker.observe(obs).len();
                }
                outputs += tracker
                    .command(
                        SessionCommand::Stop {
                            inspection_id: None,
                        },
                        end,
                    )
                    .len();
                black_box(outputs)
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();

    // A 1080p JPEG is typically 200-400 KB; 300 KB of pseudo-random bytes.
    let jpeg: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut group = c.benchmark_group("session_image_ref");
    group.throughput(Throughput::Bytes(jpeg.len() as u64));
    group.bench_function("sha256_300KB", |b| {
        b.iter(|| black_box(jpeg_image_ref(black_box(&jpeg), 1920, 1080)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
