//! Frames per second through the whole edge pipeline (capture -> quality
//! gate -> tract pre-screen -> session -> outbox on disk), on a synthetic
//! replay of 24 frames (a car arrives, stays, leaves), for platedet fp32 at
//! 320 and at 640 in the same run; the model is loaded once, outside the
//! timed part. Needs `models/fetch.sh` and `models/quantize.sh`.
//!
//! Run: `cargo bench -p edge-agent --bench pipeline`.

#[path = "../../shared/tests/common/mod.rs"]
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use edge_agent::capture::{CaptureMetrics, SourceContext, SyntheticConfig, SyntheticSource};
use edge_agent::ops::{Health, Heartbeat};
use edge_agent::outbox::{Outbox, OutboxConfig, OutboxMetrics};
use edge_agent::pipeline::{Camera, Pipeline, PipelineMetrics, WhenFull};
use edge_agent::prescreen::{PrescreenConfig, PrescreenPool, Prescreener};
use edge_agent::session::{SessionConfig, SessionTracker};
use inspection_core::ids::{CameraId, DeviceId, SiteId};
use inspection_core::quality::QualityThresholds;
use inspection_core::wire::CameraInfo;
use uuid::Uuid;

const FRAMES: u64 = 24;

fn run_once(pool: &PrescreenPool, dir: &std::path::Path, runtime: &tokio::runtime::Runtime) {
    let ctx = SourceContext::new(CaptureMetrics::default());
    let camera_id = CameraId::new("cam-bench").unwrap();
    let synthetic = SyntheticConfig {
        fps: 0.0,
        frames: FRAMES,
        enter_at: 4,
        stay: 12,
        ..SyntheticConfig::default()
    };
    let source = SyntheticSource::new(camera_id.clone(), &synthetic, &ctx).unwrap();
    let info = CameraInfo {
        id: camera_id,
        position: "front".into(),
    };
    let session = SessionConfig {
        trigger_frames: 1,
        trigger_window: 1,
        // At 320 the synthetic plate scores below the 0.4 default.
        min_trigger_score: 0.25,
        ..SessionConfig::default()
    };
    let tracker = SessionTracker::new(session, vec![info.clone()], Uuid::now_v7).unwrap();
    let path = dir.join(format!("outbox-{}.sqlite3", Uuid::now_v7()));
    let (outbox, _) = Outbox::open(
        &OutboxConfig {
            path,
            ..OutboxConfig::default()
        },
        OutboxMetrics::default(),
    )
    .unwrap();
    let (_quality_tx, quality) = tokio::sync::watch::channel(Arc::new(QualityThresholds {
        max_motion: 255.0,
        ..QualityThresholds::default()
    }));
    let (_commands_tx, commands) = tokio::sync::mpsc::channel(1);
    let pipeline = Pipeline {
        site: SiteId::new("bench").unwrap(),
        device: DeviceId::new("bench").unwrap(),
        agent_version: "bench".into(),
        model_ids: vec![pool.prescreener().model_id().to_owned()],
        cameras: vec![Camera {
            info,
            source: Box::new(source),
            when_full: WhenFull::Wait,
            anonymise_faces: false,
        }],
        quality,
        prescreen: pool.clone(),
        anonymiser: None,
        tracker,
        outbox: Arc::new(Mutex::new(outbox)),
        commands,
        metrics: PipelineMetrics::default(),
        health: Health::new(),
        heartbeat: Heartbeat::default(),
        stop: ctx.stop.clone(),
    };
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let report = runtime.block_on(pipeline.run(stop)).unwrap();
    assert!(report.inspections_completed >= 1, "{report:?}");
}

fn pipeline(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("pipeline_24_frames");
    group.throughput(Throughput::Elements(FRAMES));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    for (name, model) in [
        ("tract_fp32_320", "platedet/platedet.fp32.320.onnx"),
        ("tract_fp32_640", "platedet/platedet.fp32.onnx"),
    ] {
        let prescreener = Prescreener::load(&PrescreenConfig::new(common::fetched(model))).unwrap();
        let pool = PrescreenPool::new(Arc::new(prescreener), 1);
        group.bench_function(name, |b| b.iter(|| run_once(&pool, dir.path(), &runtime)));
    }
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
