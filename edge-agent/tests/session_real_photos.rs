//! The session tracker on real photos: the quality gate's verdicts decide which frames ship, and
//! the shipped JPEGs become valid wire events addressed by their SHA-256.

#[path = "../../shared/tests/common/mod.rs"]
mod common;

use std::io::Cursor;

use chrono::{DateTime, TimeDelta, Utc};
use edge_agent::session::{
    Observation, SessionCommand, SessionConfig, SessionOutput, SessionTracker, jpeg_image_ref,
};
use image::{DynamicImage, ImageFormat};
use inspection_core::BBox;
use inspection_core::ids::{CameraId, DeviceId, SiteId};
use inspection_core::quality::{QualityThresholds, Verdict, assess};
use inspection_core::wire::{
    CameraInfo, CompletionReason, Event, EventBody, Sha256Hex, V1, decode, encode,
};
use inspection_core::yolo::Detection;
use sha2::{Digest, Sha256};
use uuid::Uuid;

struct Photo {
    jpeg: Vec<u8>,
    image: DynamicImage,
    verdict: Verdict,
}

fn photo(jpeg: Vec<u8>) -> Photo {
    let image = image::load_from_memory(&jpeg).unwrap();
    let verdict = assess(&image, &QualityThresholds::default());
    Photo {
        jpeg,
        image,
        verdict,
    }
}

fn fetched_photo(name: &str) -> Photo {
    photo(std::fs::read(common::fetched(&format!("photos/{name}"))).unwrap())
}

/// The bus photo blurred (σ 1): still accepted, but less sharp.
fn soft(bus: &Photo) -> Photo {
    let mut jpeg = Vec::new();
    bus.image
        .blur(1.0)
        .to_rgb8()
        .write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg)
        .unwrap();
    photo(jpeg)
}

/// The bus's front plate where platedet finds it (score 0.32 with ONNX
/// Runtime); the pre-screen itself is another module's test.
fn plate() -> (String, Detection) {
    let detection = Detection {
        bbox: BBox::new(416.6, 365.2, 443.7, 374.9),
        score: 0.32,
        class_id: 0,
        mask_coeffs: vec![],
    };
    ("plate".to_owned(), detection)
}

fn at(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_750_000_000, 0).unwrap() + TimeDelta::seconds(t)
}

#[test]
fn the_sharpest_real_frames_ship_and_the_blurred_one_never_does() {
    let bus = fetched_photo("pexels_double_decker_bus.jpg");
    let sedan = fetched_photo("licenseplate_motion.jpg");
    let soft_bus = soft(&bus);
    assert!(bus.verdict.accepted() && soft_bus.verdict.accepted());
    assert!(
        !sedan.verdict.accepted(),
        "the motion-blurred sedan is the reject"
    );
    assert!(bus.verdict.score() > soft_bus.verdict.score());

    // The bus's plate scores 0.32: this bay's camera is far from the car.
    let config = SessionConfig {
        min_trigger_score: 0.3,
        frames_per_camera: 2,
        ..SessionConfig::default()
    };
    let camera = CameraInfo {
        id: CameraId::new("front").unwrap(),
        position: "front".into(),
    };
    let mut ids = (1..).map(Uuid::from_u128);
    let mut tracker = SessionTracker::new(config, vec![camera.clone()], move || {
        ids.next().unwrap_or_default()
    })
    .unwrap();

    // Sedan frames (rejected, but their plate counts for the trigger), then
    // the soft and the sharp bus, then the sedan again.
    let frames = [&sedan, &sedan, &soft_bus, &bus, &sedan, &soft_bus];
    let mut outputs = Vec::new();
    for (t, p) in (0..).zip(frames) {
        outputs.extend(tracker.observe(Observation {
            camera: camera.id.clone(),
            captured_at: at(t),
            verdict: p.verdict.clone(),
            detections: vec![plate()],
            frame: (p.jpeg.clone(), p.image.width(), p.image.height()),
        }));
    }
    // Before the absence time (5 s after the last plate at 5 s) runs out.
    outputs.extend(tracker.command(
        SessionCommand::Stop {
            inspection_id: None,
        },
        at(7),
    ));

    let shipped: Vec<(u32, &Vec<u8>)> = outputs
        .iter()
        .filter_map(|o| match o {
            SessionOutput::FrameSelected {
                rank,
                frame: (jpeg, _, _),
                ..
            } => Some((*rank, jpeg)),
            _ => None,
        })
        .collect();
    assert_eq!(shipped, [(1, &bus.jpeg), (2, &soft_bus.jpeg)]);
    assert!(matches!(
        outputs.last(),
        Some(SessionOutput::Completed {
            reason: CompletionReason::Command,
            frames: 2,
            ..
        })
    ));

    // Every output becomes a valid event; frames carry their content address.
    let mut events = Vec::new();
    for (seq, output) in (1..).zip(&outputs) {
        let image = match output {
            SessionOutput::FrameSelected {
                frame: (jpeg, w, h),
                ..
            } => Some(jpeg_image_ref(jpeg, *w, *h).unwrap()),
            _ => None,
        };
        let event = Event {
            v: V1,
            msg_id: Uuid::from_u128(1000 + u128::from(seq)),
            seq,
            site: SiteId::new("bay-7").unwrap(),
            device: DeviceId::new("edge-7").unwrap(),
            inspection_id: Some(output.inspection_id()),
            at: at(10),
            event: output.to_event_body(image.as_ref()).unwrap(),
        };
        let back: Event = decode(&encode(&event).unwrap()).unwrap();
        assert_eq!(back, event);
        events.push(back);
    }
    let EventBody::FrameSelected {
        image,
        detections,
        rank: 1,
        ..
    } = &events[1].event
    else {
        panic!("{:?}", events[1]);
    };
    let digest: [u8; 32] = Sha256::digest(&bus.jpeg).into();
    assert_eq!(image.sha256, Sha256Hex::from_digest(&digest));
    assert_eq!(image.bytes, bus.jpeg.len() as u64);
    assert_eq!(
        (image.width, image.height),
        (bus.image.width(), bus.image.height())
    );
    assert_eq!(detections[0].label, "plate");
}
