//! Inspections for the staff API tests: a pickup and its return, stored the
//! way the bridge and the worker store them (events, then a result and a
//! report), with real JPEG frames in the object store.

use std::sync::Arc;

use central::report::{Language, Report, ReportSummary, SummaryDamage};
use central::store::{
    Comparison, DamageModel, Finding, FindingSource, FindingStatus, FrameRecord, FrameState,
    InspectionResult, PlateOutcome, PlateReadRecord, Store, Summary, VehiclePlate,
};
use central::upload::object_key;
use chrono::{DateTime, Duration, Utc};
use image::{Rgb, RgbImage};
use inspection_core::geometry::BBox;
use inspection_core::ids::{CameraId, DeviceId, SiteId};
use inspection_core::wire::{EventBody, InspectionKind, Sha256Hex};
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// What `seed_pair` stored.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub pickup: Uuid,
    pub ret: Uuid,
    pub plate: String,
    /// The pickup's finding (status `baseline`).
    pub baseline: Uuid,
    /// Return findings: a new dent, a possible new damage (change), and a
    /// scratch already there at pickup.
    pub new_dent: Uuid,
    pub possible: Uuid,
    pub pre_existing: Uuid,
    /// The return's frames: front and left stored, rear stored cut in half
    /// (does not decode), right never uploaded.
    pub front: String,
    pub left: String,
    pub rear_truncated: String,
    pub right_missing: String,
}

/// A car-ish picture: a gradient with a darker body; `seed` varies it so
/// every frame has its own SHA-256.
pub fn frame_jpeg(seed: u32) -> Vec<u8> {
    let img = RgbImage::from_fn(480, 320, |x, y| {
        let body = (60..420).contains(&x) && (100..260).contains(&y);
        let base = if body { 70 } else { 180 };
        Rgb([
            (base + (x / 8) as u8 % 40).wrapping_add(seed as u8),
            base + (y / 8) as u8 % 40,
            (base as u32 + seed % 50) as u8,
        ])
    });
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 85)
        .encode(img.as_raw(), 480, 320, image::ExtendedColorType::Rgb8)
        .expect("encode jpeg");
    bytes
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Stores bytes under their SHA-256 (or the given one) as the upload role
/// does; returns the SHA-256.
pub async fn put_frame(images: &Arc<dyn ObjectStore>, bytes: Vec<u8>) -> String {
    let sha = sha256_hex(&bytes);
    put_as(images, &sha, bytes).await;
    sha
}

pub async fn put_as(images: &Arc<dyn ObjectStore>, sha: &str, bytes: Vec<u8>) {
    let key = object_key(&Sha256Hex::new(sha).expect("sha"));
    images
        .put(&key, PutPayload::from(bytes))
        .await
        .expect("put frame");
}

fn cam(name: &str) -> CameraId {
    CameraId::new(name).expect("camera id")
}

fn frame(camera: &str, position: &str, sha: &str, state: FrameState) -> FrameRecord {
    FrameRecord {
        camera: cam(camera),
        position: position.into(),
        sha256: sha.into(),
        rank: 1,
        state,
        width: Some(480),
        height: Some(320),
        sharpness: Some(250.5),
        brightness: Some(120.0),
        vehicle_box: Some(BBox::new(60.0, 100.0, 420.0, 260.0)),
    }
}

#[allow(clippy::too_many_arguments)]
fn finding(
    id: Uuid,
    camera: &str,
    position: &str,
    sha: &str,
    class: &str,
    source: FindingSource,
    status: FindingStatus,
    bbox: BBox,
    matched: Option<Uuid>,
) -> Finding {
    Finding {
        id,
        camera: cam(camera),
        position: position.into(),
        sha256: sha.into(),
        class: class.into(),
        confidence: 0.87,
        source,
        status,
        bbox,
        vehicle_bbox: None,
        matched_finding: matched,
    }
}

fn vehicle_plate(plate: &str) -> VehiclePlate {
    VehiclePlate {
        plate: plate.into(),
        display: plate.into(),
        country: "DE".into(),
        confidence: 0.97,
        votes: 2,
        readable_frames: 2,
    }
}

/// Records one inspection's events at `site`/`device`; its id.
async fn record(
    store: &Arc<dyn Store>,
    site: &str,
    device: &str,
    kind: InspectionKind,
    seq: u64,
    started: DateTime<Utc>,
) -> Uuid {
    let mut events = super::events::inspection(seq);
    for (i, e) in events.iter_mut().enumerate() {
        e.site = SiteId::new(site).expect("site");
        e.device = DeviceId::new(device).expect("device");
        e.at = started + Duration::seconds(i as i64);
        if let EventBody::InspectionStarted { kind: k, .. } = &mut e.event {
            *k = kind;
        }
    }
    store
        .record_events(&events, started + Duration::seconds(5))
        .await
        .expect("record events");
    events[0].inspection_id.expect("inspection id")
}

/// A pickup and its return of `plate` at `site`/`device`, processed, the
/// return with a report. `seq` must be fresh per device (each inspection
/// takes three).
pub async fn seed_pair(
    store: &Arc<dyn Store>,
    images: &Arc<dyn ObjectStore>,
    site: &str,
    device: &str,
    plate: &str,
    seq: u64,
    started: DateTime<Utc>,
) -> Seeded {
    // Every call its own pictures (distinct SHA-256s), so no two
    // inspections of a fixture share an image unless a test makes them.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let salt = NEXT.fetch_add(6, std::sync::atomic::Ordering::Relaxed) % 252;
    let pickup = record(store, site, device, InspectionKind::Pickup, seq, started).await;
    let ret = record(
        store,
        site,
        device,
        InspectionKind::Return,
        seq + 3,
        started + Duration::hours(30),
    )
    .await;

    let p_front = put_frame(images, frame_jpeg(salt)).await;
    let p_left = put_frame(images, frame_jpeg(salt + 1)).await;
    let front = put_frame(images, frame_jpeg(salt + 2)).await;
    let left = put_frame(images, frame_jpeg(salt + 3)).await;
    let whole = frame_jpeg(salt + 4);
    let rear_truncated = sha256_hex(&whole);
    put_as(images, &rear_truncated, whole[..whole.len() / 2].to_vec()).await;
    let right_missing = sha256_hex(&frame_jpeg(salt + 5));

    let baseline = Uuid::now_v7();
    let processed_at = started + Duration::minutes(1);
    let pickup_result = InspectionResult {
        inspection_id: pickup,
        processed_at,
        worker: "worker-test".into(),
        damage_model: DamageModel::Used {
            model: "damage.onnx@0123456789ab".into(),
            classes: vec!["dent".into(), "scratch".into()],
        },
        plate_models: vec!["platedet.onnx@abcdef012345".into()],
        frames: vec![
            frame("cam-front", "front", &p_front, FrameState::Ok),
            frame("cam-left", "left", &p_left, FrameState::Ok),
        ],
        findings: vec![finding(
            baseline,
            "cam-front",
            "front",
            &p_front,
            "scratch",
            FindingSource::Model,
            FindingStatus::Baseline,
            BBox::new(100.0, 120.0, 160.0, 150.0),
            None,
        )],
        plate_reads: vec![PlateReadRecord {
            camera: cam("cam-front"),
            sha256: p_front.clone(),
            outcome: PlateOutcome::Read,
            bbox: Some(BBox::new(200.0, 230.0, 280.0, 250.0)),
            box_source: None,
            raw_text: Some(plate.into()),
            plate: Some(plate.into()),
            country: Some("DE".into()),
            confidence: 0.97,
        }],
        plate: Some(vehicle_plate(plate)),
        comparison: Comparison::NotApplicable,
        summary: Summary {
            frames_ok: 2,
            ..Summary::default()
        },
    };
    store
        .record_result(&pickup_result)
        .await
        .expect("pickup result");

    let (new_dent, possible, pre_existing) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let return_result = InspectionResult {
        inspection_id: ret,
        processed_at: started + Duration::hours(30) + Duration::minutes(1),
        worker: "worker-test".into(),
        damage_model: pickup_result.damage_model.clone(),
        plate_models: pickup_result.plate_models.clone(),
        frames: vec![
            frame("cam-front", "front", &front, FrameState::Ok),
            frame("cam-left", "left", &left, FrameState::Ok),
            frame("cam-rear", "rear", &rear_truncated, FrameState::Ok),
            frame("cam-right", "right", &right_missing, FrameState::Missing),
        ],
        findings: vec![
            finding(
                new_dent,
                "cam-front",
                "front",
                &front,
                "dent",
                FindingSource::Model,
                FindingStatus::New,
                BBox::new(300.0, 140.0, 380.0, 200.0),
                None,
            ),
            finding(
                possible,
                "cam-left",
                "left",
                &left,
                "change",
                FindingSource::Change,
                FindingStatus::PossibleNewDamage,
                BBox::new(150.0, 150.0, 220.0, 210.0),
                None,
            ),
            finding(
                pre_existing,
                "cam-front",
                "front",
                &front,
                "scratch",
                FindingSource::Model,
                FindingStatus::PreExisting,
                BBox::new(102.0, 121.0, 161.0, 152.0),
                Some(baseline),
            ),
        ],
        plate_reads: pickup_result.plate_reads.clone(),
        plate: Some(vehicle_plate(plate)),
        comparison: Comparison::Compared {
            pickup_inspection_id: pickup,
            positions: vec!["front".into(), "left".into()],
        },
        summary: Summary {
            new: 1,
            pre_existing: 1,
            possible_new_damage: 1,
            frames_ok: 3,
            frames_skipped: 1,
            ..Summary::default()
        },
    };
    let report = Report {
        id: Uuid::now_v7(),
        inspection_id: ret,
        writer: "template".into(),
        model: None,
        language: Language::En,
        summary: ReportSummary {
            plate: Some(plate.into()),
            damages: vec![SummaryDamage {
                finding: "F1".into(),
                class: "dent".into(),
                position: "front".into(),
                status: "new".into(),
            }],
        },
        narrative: format!("Vehicle {plate} returned with a new dent at the front (F1)."),
        attempts: Vec::new(),
        created_at: started + Duration::hours(30) + Duration::minutes(1),
    };
    // As the worker does: the report first, then the result.
    store.record_report(&report).await.expect("report");
    store
        .record_result(&return_result)
        .await
        .expect("return result");

    Seeded {
        pickup,
        ret,
        plate: plate.into(),
        baseline,
        new_dent,
        possible,
        pre_existing,
        front,
        left,
        rear_truncated,
        right_missing,
    }
}
