//! Deterministic example payloads: documentation, schema tests and fixtures
//! for the crates that speak the protocol.

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

use super::*;
use crate::geometry::BBox;

fn at(second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 9, 15, second)
        .single()
        .unwrap_or_default()
}

fn site() -> SiteId {
    SiteId::new("de-muc-airport").expect("valid example id")
}

fn device() -> DeviceId {
    DeviceId::new("bay-03").expect("valid example id")
}

fn camera(id: &str, position: &str) -> CameraInfo {
    CameraInfo {
        id: CameraId::new(id).expect("valid example id"),
        position: position.to_owned(),
    }
}

/// Fixed UUIDv7-shaped ids so examples are byte-for-byte stable.
pub const INSPECTION_ID: Uuid = Uuid::from_u128(0x0193_4f2a_7c00_7000_8000_0000_0000_0001);

fn msg_id(n: u128) -> Uuid {
    Uuid::from_u128(0x0193_4f2a_7c00_7000_8000_0000_0001_0000 + n)
}

pub fn status() -> Status {
    Status {
        v: V1,
        site: site(),
        device: device(),
        state: DeviceState::Online,
        at: at(0),
        boot_id: Uuid::from_u128(0x0193_4f2a_0000_7000_8000_0000_0000_00b0),
        agent_version: "0.1.0".into(),
    }
}

/// An inspection as the edge sends it: started, one frame, completed.
pub fn inspection() -> Vec<Event> {
    let bodies = [
        EventBody::InspectionStarted {
            kind: InspectionKind::Return,
            trigger: Trigger::Detection {
                label: "plate".into(),
                score: 0.82,
            },
            cameras: vec![camera("cam-front", "front"), camera("cam-left", "left")],
            agent_version: Some("0.1.0".into()),
            models: vec!["platedet.int8.onnx@3f2a9c41d0be".into()],
        },
        EventBody::FrameSelected {
            camera: camera("cam-front", "front"),
            captured_at: at(3),
            image: ImageRef {
                sha256: Sha256Hex::new(
                    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                )
                .expect("valid example hash"),
                bytes: 412_733,
                width: 1920,
                height: 1080,
                content_type: "image/jpeg".into(),
            },
            quality: FrameQuality {
                sharpness: 412.5,
                mean_luma: 118.2,
                dark_fraction: 0.01,
                bright_fraction: 0.002,
            },
            detections: vec![WireDetection {
                label: "plate".into(),
                class_id: 0,
                score: 0.82,
                bbox: BBox::new(812.0, 640.0, 1010.0, 690.0),
            }],
            rank: 1,
            anonymised: Some(Anonymised { faces: 1 }),
        },
        EventBody::InspectionCompleted {
            reason: CompletionReason::VehicleLeft,
            frames: 1,
            images: vec![CameraImages {
                camera: CameraId::new("cam-front").expect("valid example id"),
                sha256: vec![
                    Sha256Hex::new(
                        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                    )
                    .expect("valid example hash"),
                ],
            }],
        },
    ];
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, event)| Event {
            v: V1,
            msg_id: msg_id(i as u128),
            seq: 41 + i as u64,
            site: site(),
            device: device(),
            inspection_id: Some(INSPECTION_ID),
            at: at(i as u32 * 2),
            event,
        })
        .collect()
}

pub fn telemetry() -> Telemetry {
    Telemetry {
        v: V1,
        site: site(),
        device: device(),
        at: at(30),
        agent_version: "0.1.0".into(),
        uptime_seconds: 86_400,
        frames_captured_total: 1_296_000,
        frames_rejected_total: 8_812,
        frames_dropped_total: 140,
        inspections_total: 57,
        prescreen_latency_ms: Some(205.0),
        outbox: OutboxStats {
            entries: 3,
            bytes: 1_250_000,
            oldest_age_seconds: 12,
            dropped_total: 0,
        },
        cameras: vec![CameraStatus {
            id: CameraId::new("cam-front").expect("valid example id"),
            state: CameraState::Ok,
            fps: 14.8,
        }],
        disk_free_bytes: Some(12_000_000_000),
        cpu_temperature_celsius: Some(54.5),
        central_clock_offset_ms: Some(-1_250),
    }
}

pub fn ack() -> Ack {
    Ack {
        v: V1,
        msg_ids: vec![msg_id(0), msg_id(1)],
        at: at(5),
    }
}

pub fn command() -> Command {
    Command {
        v: V1,
        cmd_id: Uuid::from_u128(0x0193_4f2a_7c00_7000_8000_0000_0c0d_0001),
        at: at(10),
        expires_at: Some(at(40)),
        command: CommandBody::StartInspection {
            kind: InspectionKind::Pickup,
        },
    }
}

/// A device's report on [`command`]: it started the inspection.
pub fn command_result() -> Event {
    Event {
        v: V1,
        msg_id: msg_id(90),
        seq: 40,
        site: site(),
        device: device(),
        inspection_id: Some(INSPECTION_ID),
        at: at(11),
        event: EventBody::CommandResult {
            cmd_id: command().cmd_id,
            command: command().command.name().into(),
            outcome: CommandOutcome::Executed,
            detail: None,
        },
    }
}

/// Every example, encoded, with the schema file it must satisfy.
pub fn all_encoded() -> Vec<(String, serde_json::Value)> {
    fn one<T: Payload>(msg: &T) -> (String, serde_json::Value) {
        (
            format!("{}.v{WIRE_VERSION}.schema.json", T::NAME),
            serde_json::to_value(msg).unwrap_or(serde_json::Value::Null),
        )
    }
    let mut out = vec![
        one(&status()),
        one(&telemetry()),
        one(&ack()),
        one(&command()),
    ];
    out.extend(inspection().iter().map(one));
    out.push(one(&Command {
        command: CommandBody::StopInspection {
            inspection_id: Some(INSPECTION_ID),
        },
        ..command()
    }));
    out.push(one(&command_result()));
    out.push(one(&Command {
        command: CommandBody::CaptureNow {
            camera: Some(CameraId::new("cam-front").expect("valid example id")),
        },
        ..command()
    }));
    out.push(one(&Command {
        command: CommandBody::ReloadConfig,
        expires_at: None,
        ..command()
    }));
    out
}
