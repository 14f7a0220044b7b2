//! The inspection the report tests write about: a return with a new dent
//! at the front, a possible new damage at the left and a scratch at the
//! rear that was there at pickup, plate AB 12 CDE.

use central::report::{Language, PlateFact, ReportFinding, ReportInput};
use central::store::{Comparison, FindingSource, FindingStatus};
use chrono::{TimeZone, Utc};
use inspection_core::geometry::BBox;
use inspection_core::wire::InspectionKind;
use serde_json::json;
use uuid::Uuid;

pub fn finding(
    n: usize,
    class: &str,
    position: &str,
    status: FindingStatus,
    confidence: f32,
) -> ReportFinding {
    ReportFinding {
        reference: format!("F{n}"),
        id: Uuid::from_u128(n as u128),
        class: class.into(),
        status,
        position: position.into(),
        camera: format!("cam-{position}"),
        confidence,
        source: if class == "change" {
            FindingSource::Change
        } else {
            FindingSource::Model
        },
        sha256: "ab".repeat(32),
        bbox: BBox::new(100.0, 120.0, 220.0, 200.0),
    }
}

/// A return with a new dent at the front, a possible new damage at the
/// left and a scratch at the rear that was there at pickup.
pub fn return_input(language: Language) -> ReportInput {
    ReportInput {
        inspection_id: Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0042),
        kind: InspectionKind::Return,
        site: "site-0042".into(),
        device: "bay-1".into(),
        started_at: Some(Utc.with_ymd_and_hms(2026, 11, 30, 9, 15, 0).unwrap()),
        processed_at: Utc.with_ymd_and_hms(2026, 11, 30, 9, 16, 5).unwrap(),
        plate: PlateFact::Read {
            plate: "AB12CDE".into(),
            display: "AB 12 CDE".into(),
            country: "GB".into(),
            confidence: 0.93,
        },
        findings: vec![
            finding(1, "dent", "front", FindingStatus::New, 0.87),
            finding(2, "change", "left", FindingStatus::PossibleNewDamage, 0.64),
            finding(3, "scratch", "rear", FindingStatus::PreExisting, 0.71),
        ],
        comparison: Comparison::Compared {
            pickup_inspection_id: Uuid::from_u128(7),
            positions: vec!["front".into(), "left".into(), "rear".into()],
        },
        frames: Vec::new(),
        pickup: None,
        frames_ok: 6,
        frames_skipped: 1,
        damage_model: Some("cardd-yolov8s.onnx@3f2a9c1d".into()),
        language,
    }
}

/// What a good model answers for `return_input`.
pub fn draft_json() -> String {
    json!({
        "summary": {
            "plate": "AB 12 CDE",
            "damages": [
                {"finding": "F1", "class": "dent", "position": "front", "status": "new"},
                {"finding": "F2", "class": "change", "position": "left", "status": "possible_new_damage"},
                {"finding": "F3", "class": "scratch", "position": "rear", "status": "pre_existing"},
            ],
        },
        "narrative": "Return inspection of AB 12 CDE: a new dent at the front (F1), a change at the left to be checked (F2); the scratch at the rear (F3) was there at pickup.",
    })
    .to_string()
}
