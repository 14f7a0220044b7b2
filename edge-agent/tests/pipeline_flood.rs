//! A camera far faster than the pre-screen: frames are dropped at capture
//! (newest wins), every frame is accounted for exactly once (screened or
//! dropped), and the pipeline still completes the inspection.

#[path = "../../shared/tests/common/mod.rs"]
mod common;

use std::sync::{Arc, Mutex};

use edge_agent::capture::{CaptureMetrics, SourceContext, SyntheticConfig, SyntheticSource};
use edge_agent::ops::{Health, Heartbeat};
use edge_agent::outbox::{Outbox, OutboxConfig, OutboxMetrics};
use edge_agent::pipeline::{Camera, Pipeline, PipelineMetrics, WhenFull};
use edge_agent::prescreen::{PrescreenConfig, PrescreenMetrics, PrescreenPool, Prescreener};
use edge_agent::session::{SessionConfig, SessionTracker};
use inspection_core::ids::{CameraId, DeviceId, SiteId};
use inspection_core::quality::QualityThresholds;
use inspection_core::wire::CameraInfo;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_camera_drops_at_capture_and_every_frame_is_counted() {
    let frames = 150;
    let dir = tempfile::tempdir().unwrap();
    let capture_metrics = CaptureMetrics::default();
    let ctx = SourceContext::new(capture_metrics.clone());
    let camera = CameraId::new("cam-flood").unwrap();
    // Unpaced: the source produces frames as fast as it can render them.
    let synthetic = SyntheticConfig {
        fps: 0.0,
        frames,
        enter_at: 0,
        stay: frames,
        ..SyntheticConfig::default()
    };
    let source = SyntheticSource::new(camera.clone(), &synthetic, &ctx).unwrap();
    let info = CameraInfo {
        id: camera.clone(),
        position: "front".into(),
    };
    let prescreen_metrics = PrescreenMetrics::default();
    let prescreener = Prescreener::load(&PrescreenConfig::new(common::fetched(
        "platedet/platedet.fp32.320.onnx",
    )))
    .unwrap()
    .with_metrics(prescreen_metrics.clone());
    let tracker = SessionTracker::new(
        SessionConfig {
            trigger_frames: 1,
            trigger_window: 1,
            min_trigger_score: 0.25,
            ..SessionConfig::default()
        },
        vec![info.clone()],
        Uuid::now_v7,
    )
    .unwrap();
    let (outbox, _) = Outbox::open(
        &OutboxConfig {
            path: dir.path().join("outbox.sqlite3"),
            ..OutboxConfig::default()
        },
        OutboxMetrics::default(),
    )
    .unwrap();
    let (_q, quality) = tokio::sync::watch::channel(Arc::new(QualityThresholds {
        max_motion: 255.0,
        ..QualityThresholds::default()
    }));
    let (_c, commands) = tokio::sync::mpsc::channel(1);
    let metrics = PipelineMetrics::default();
    let pipeline = Pipeline {
        site: SiteId::new("s").unwrap(),
        device: DeviceId::new("d").unwrap(),
        agent_version: "test".into(),
        model_ids: vec![],
        cameras: vec![Camera {
            info,
            source: Box::new(source),
            when_full: WhenFull::ReplaceOldest,
            anonymise_faces: false,
        }],
        quality,
        prescreen: PrescreenPool::new(Arc::new(prescreener), 1),
        anonymiser: None,
        tracker,
        outbox: Arc::new(Mutex::new(outbox)),
        commands,
        metrics: metrics.clone(),
        health: Health::new(),
        heartbeat: Heartbeat::default(),
        stop: ctx.stop.clone(),
    };
    let (_stop, stop) = tokio::sync::watch::channel(false);
    let report = pipeline.run(stop).await.unwrap();

    let captured = capture_metrics.frames_of("cam-flood");
    let dropped = metrics.dropped("cam-flood");
    let accepted = metrics.accepted("cam-flood");
    let screened = prescreen_metrics.frames.get();
    eprintln!("captured {captured}, dropped {dropped}, accepted {accepted}, screened {screened}");
    assert_eq!(captured, frames);
    assert!(
        dropped > 0,
        "a 150-frame burst against ~0.2 s inferences must drop"
    );
    assert_eq!(
        accepted + dropped,
        captured,
        "every frame: screened or dropped"
    );
    assert_eq!(screened, accepted);
    assert_eq!(report.inspections_completed, 1, "{report:?}");
}
