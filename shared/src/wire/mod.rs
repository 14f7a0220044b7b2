//! The wire protocol between edge agents and the central service.
//!
//! Payloads are JSON, one type per topic kind (see [`crate::topic`]):
//!
//! | topic       | direction      | type          |
//! |-------------|----------------|---------------|
//! | `status`    | edge -> central | [`Status`]    |
//! | `events`    | edge -> central | [`Event`]     |
//! | `telemetry` | edge -> central | [`Telemetry`] |
//! | `ack`       | central -> edge | [`Ack`]       |
//! | `cmd`       | central -> edge | [`Command`]   |
//!
//! Versioning: every payload carries `"v": 1`. Within a version, new fields may
//! only be added as optional, and unknown fields are ignored, so a newer edge
//! agent can talk to an older central during a rolling upgrade. Anything else
//! is a new version; a payload with a version this build does not speak is
//! refused with [`WireError::UnsupportedVersion`], never guessed at.
//!
//! Decoding never panics: size, JSON shape, version and field values are
//! checked in that order and each failure has its own [`WireError`] variant
//! with a stable [`WireError::code`] for metrics. The JSON Schemas committed
//! under `shared/schema/` are generated from these types by [`schemas`]; a
//! test fails when the two drift apart.

mod ack;
mod command;
mod common;
mod event;
mod status;
mod telemetry;

pub mod examples;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use ack::{Ack, MAX_ACK_IDS};
pub use command::{Command, CommandBody, CommandOutcome};
pub use common::{
    FrameQuality, ImageRef, InspectionKind, Sha256Error, Sha256Hex, V1, WIRE_VERSION, WireDetection,
};
pub use event::{
    Anonymised, CameraImages, CameraInfo, CompletionReason, Event, EventBody, Trigger,
};
pub use status::{DeviceState, Status};
pub use telemetry::{
    CameraState, CameraStatus, MAX_CLOCK_OFFSET_MS, OutboxStats, Telemetry, clock_offset_from_ms,
};

use crate::ids::{CameraId, DeviceId, SiteId};
use crate::topic::{Topic, TopicKind};

/// Largest payload accepted or produced, in bytes. Images never travel over
/// MQTT; a `frame_selected` event with the maximum of 100 detections is about
/// 12 KiB, and 16 KiB stays under the 20 KB cap of rumqttd's sample config.
pub const MAX_PAYLOAD_BYTES: usize = 16 * 1024;

/// Most detections carried by one `frame_selected` event.
pub const MAX_DETECTIONS_PER_FRAME: usize = 100;

/// Most frames one inspection may ship.
pub const MAX_FRAMES_PER_INSPECTION: u32 = 10_000;

/// Longest free-text field (labels, versions, positions, content types).
pub const MAX_TEXT_LEN: usize = 64;

/// Why a payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("payload is {size} bytes; at most {max} are allowed")]
    TooLarge { size: usize, max: usize },
    #[error("payload is not valid JSON for this message: {0}")]
    Malformed(String),
    #[error("payload has no \"v\" version field")]
    MissingVersion,
    #[error("payload version {found} is not supported; this build speaks version {WIRE_VERSION}")]
    UnsupportedVersion { found: String },
    #[error("field {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error(
        "payload claims {payload_site}/{payload_device} but arrived on the topic of {topic_site}/{topic_device}"
    )]
    SourceMismatch {
        topic_site: SiteId,
        topic_device: DeviceId,
        payload_site: SiteId,
        payload_device: DeviceId,
    },
    #[error("topic kind {0} does not carry messages from devices")]
    NotFromDevice(TopicKind),
}

impl WireError {
    /// A stable, low-cardinality code for metric labels and dead-letter rows.
    pub fn code(&self) -> &'static str {
        match self {
            WireError::TooLarge { .. } => "too_large",
            WireError::Malformed(_) => "malformed",
            WireError::MissingVersion => "missing_version",
            WireError::UnsupportedVersion { .. } => "unsupported_version",
            WireError::Invalid { .. } => "invalid",
            WireError::SourceMismatch { .. } => "source_mismatch",
            WireError::NotFromDevice(_) => "not_from_device",
        }
    }
}

/// A payload type of the protocol.
pub trait Payload: Serialize + DeserializeOwned + schemars::JsonSchema {
    /// The topic kind that carries it.
    const KIND: TopicKind;
    /// The stem of its schema file, e.g. `event` for `event.v1.schema.json`.
    const NAME: &'static str;

    /// Checks the rules that serde's types cannot express.
    fn validate(&self) -> Result<(), WireError>;

    /// The device the payload claims to come from, for payloads that name one.
    fn source(&self) -> Option<(&SiteId, &DeviceId)> {
        None
    }
}

/// Decodes and validates one payload.
pub fn decode<T: Payload>(bytes: &[u8]) -> Result<T, WireError> {
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return Err(WireError::TooLarge {
            size: bytes.len(),
            max: MAX_PAYLOAD_BYTES,
        });
    }
    // The version is read on its own first so that a payload of another
    // version gets a version error, not a confusing field error.
    #[derive(serde::Deserialize)]
    struct Header {
        v: Option<serde_json::Value>,
    }
    let header: Header =
        serde_json::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))?;
    match header.v {
        None => return Err(WireError::MissingVersion),
        Some(v) if v.as_u64() == Some(u64::from(WIRE_VERSION)) => {}
        Some(v) => {
            // By characters, not bytes: the value may be any unicode string.
            let found = v.to_string().chars().take(32).collect();
            return Err(WireError::UnsupportedVersion { found });
        }
    }
    let msg: T = serde_json::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))?;
    msg.validate()?;
    Ok(msg)
}

/// Validates and encodes one payload.
pub fn encode<T: Payload>(msg: &T) -> Result<Vec<u8>, WireError> {
    msg.validate()?;
    let bytes = serde_json::to_vec(msg).map_err(|e| WireError::Malformed(e.to_string()))?;
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return Err(WireError::TooLarge {
            size: bytes.len(),
            max: MAX_PAYLOAD_BYTES,
        });
    }
    Ok(bytes)
}

/// A message a device published, decoded according to its topic.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceMessage {
    Status(Status),
    Event(Event),
    Telemetry(Telemetry),
}

/// Decodes what arrived on a device topic and checks that the payload claims
/// the same site and device as the topic (which the broker's ACL ties to the
/// authenticated client).
pub fn decode_device_message(topic: &Topic, bytes: &[u8]) -> Result<DeviceMessage, WireError> {
    let msg = match topic.kind {
        TopicKind::Status => DeviceMessage::Status(decode(bytes)?),
        TopicKind::Events => DeviceMessage::Event(decode(bytes)?),
        TopicKind::Telemetry => DeviceMessage::Telemetry(decode(bytes)?),
        kind @ (TopicKind::Ack | TopicKind::Cmd) => return Err(WireError::NotFromDevice(kind)),
    };
    let (site, device) = match &msg {
        DeviceMessage::Status(m) => (&m.site, &m.device),
        DeviceMessage::Event(m) => (&m.site, &m.device),
        DeviceMessage::Telemetry(m) => (&m.site, &m.device),
    };
    if site != &topic.site || device != &topic.device {
        return Err(WireError::SourceMismatch {
            topic_site: topic.site.clone(),
            topic_device: topic.device.clone(),
            payload_site: site.clone(),
            payload_device: device.clone(),
        });
    }
    Ok(msg)
}

/// The JSON Schema of every payload, as `(file name, schema)`.
pub fn schemas() -> Vec<(String, serde_json::Value)> {
    fn one<T: Payload>() -> (String, serde_json::Value) {
        let schema = schemars::schema_for!(T);
        let value = serde_json::to_value(schema).unwrap_or(serde_json::Value::Null);
        (format!("{}.v{WIRE_VERSION}.schema.json", T::NAME), value)
    }
    vec![
        one::<Status>(),
        one::<Event>(),
        one::<Telemetry>(),
        one::<Ack>(),
        one::<Command>(),
    ]
}

fn check_text(field: &'static str, s: &str) -> Result<(), WireError> {
    if s.is_empty() || s.len() > MAX_TEXT_LEN || s.chars().any(char::is_control) {
        return Err(WireError::Invalid {
            field,
            reason: format!("must be 1-{MAX_TEXT_LEN} bytes without control characters"),
        });
    }
    Ok(())
}

fn check_unit(field: &'static str, x: f64) -> Result<(), WireError> {
    if !(0.0..=1.0).contains(&x) {
        return Err(WireError::Invalid {
            field,
            reason: format!("{x} is not in [0, 1]"),
        });
    }
    Ok(())
}

fn check_non_negative(field: &'static str, x: f64) -> Result<(), WireError> {
    if !(x.is_finite() && x >= 0.0) {
        return Err(WireError::Invalid {
            field,
            reason: format!("{x} is not a finite, non-negative number"),
        });
    }
    Ok(())
}

fn check_camera(camera: &CameraInfo) -> Result<(), WireError> {
    // The position is a label like `front`; the id rule keeps it tidy.
    CameraId::new(camera.position.as_str()).map_err(|e| WireError::Invalid {
        field: "camera.position",
        reason: e.to_string(),
    })?;
    Ok(())
}

impl Payload for Status {
    const KIND: TopicKind = TopicKind::Status;
    const NAME: &'static str = "status";

    fn validate(&self) -> Result<(), WireError> {
        check_text("agent_version", &self.agent_version)
    }

    fn source(&self) -> Option<(&SiteId, &DeviceId)> {
        Some((&self.site, &self.device))
    }
}

impl Payload for Event {
    const KIND: TopicKind = TopicKind::Events;
    const NAME: &'static str = "event";

    fn validate(&self) -> Result<(), WireError> {
        if self.event.is_inspection_step() && self.inspection_id.is_none() {
            return Err(WireError::Invalid {
                field: "inspection_id",
                reason: format!("is required for {}", self.event.name()),
            });
        }
        match &self.event {
            EventBody::CommandResult {
                command, detail, ..
            } => {
                check_text("command", command)?;
                if let Some(detail) = detail
                    && detail.chars().count() > 256
                {
                    return Err(WireError::Invalid {
                        field: "detail",
                        reason: "at most 256 characters".into(),
                    });
                }
                Ok(())
            }
            EventBody::InspectionStarted {
                trigger,
                cameras,
                agent_version,
                models,
                ..
            } => {
                if let Some(version) = agent_version {
                    check_text("agent_version", version)?;
                }
                if models.len() > 8 {
                    return Err(WireError::Invalid {
                        field: "models",
                        reason: "at most 8 models".into(),
                    });
                }
                for model in models {
                    check_text("models", model)?;
                }
                if let Trigger::Detection { label, score } = trigger {
                    check_text("trigger.label", label)?;
                    check_unit("trigger.score", f64::from(*score))?;
                }
                if cameras.is_empty() || cameras.len() > 32 {
                    return Err(WireError::Invalid {
                        field: "cameras",
                        reason: "an inspection has 1 to 32 cameras".into(),
                    });
                }
                cameras.iter().try_for_each(check_camera)
            }
            EventBody::FrameSelected {
                camera,
                image,
                quality,
                detections,
                rank,
                anonymised,
                ..
            } => {
                check_camera(camera)?;
                if anonymised.is_some_and(|a| a.faces > 1000) {
                    return Err(WireError::Invalid {
                        field: "anonymised.faces",
                        reason: "at most 1000 faces a frame".into(),
                    });
                }
                check_text("image.content_type", &image.content_type)?;
                if image.width == 0 || image.height == 0 || image.bytes == 0 {
                    return Err(WireError::Invalid {
                        field: "image",
                        reason: "width, height and bytes must be positive".into(),
                    });
                }
                check_non_negative("quality.sharpness", quality.sharpness)?;
                check_non_negative("quality.mean_luma", quality.mean_luma)?;
                if quality.mean_luma > 255.0 {
                    return Err(WireError::Invalid {
                        field: "quality.mean_luma",
                        reason: format!("{} is above 255", quality.mean_luma),
                    });
                }
                check_unit("quality.dark_fraction", quality.dark_fraction)?;
                check_unit("quality.bright_fraction", quality.bright_fraction)?;
                if detections.len() > MAX_DETECTIONS_PER_FRAME {
                    return Err(WireError::Invalid {
                        field: "detections",
                        reason: format!(
                            "{} detections; at most {MAX_DETECTIONS_PER_FRAME} are allowed",
                            detections.len()
                        ),
                    });
                }
                if *rank == 0 {
                    return Err(WireError::Invalid {
                        field: "rank",
                        reason: "ranks start at 1".into(),
                    });
                }
                let (w, h) = (image.width as f32, image.height as f32);
                for d in detections {
                    check_text("detections.label", &d.label)?;
                    check_unit("detections.score", f64::from(d.score))?;
                    let b = d.bbox;
                    // Deserialisation bypasses `BBox::new`, so order and bounds
                    // are checked here; boxes are in the frame's pixels.
                    let ordered = b.is_finite() && b.x1 <= b.x2 && b.y1 <= b.y2;
                    let inside = b.x1 >= 0.0 && b.y1 >= 0.0 && b.x2 <= w && b.y2 <= h;
                    if !(ordered && inside) {
                        return Err(WireError::Invalid {
                            field: "detections.bbox",
                            reason: format!(
                                "{b:?} is not an ordered box inside the {}x{} frame",
                                image.width, image.height
                            ),
                        });
                    }
                }
                Ok(())
            }
            EventBody::InspectionCompleted { frames, images, .. } => {
                let listed: usize = images.iter().map(|c| c.sha256.len()).sum();
                if !images.is_empty() && listed != *frames as usize {
                    return Err(WireError::Invalid {
                        field: "images",
                        reason: format!("lists {listed} images for {frames} frames"),
                    });
                }
                if images.len() > 32 {
                    return Err(WireError::Invalid {
                        field: "images",
                        reason: "at most 32 cameras".into(),
                    });
                }
                if *frames > MAX_FRAMES_PER_INSPECTION {
                    return Err(WireError::Invalid {
                        field: "frames",
                        reason: format!("{frames} is more than {MAX_FRAMES_PER_INSPECTION}"),
                    });
                }
                Ok(())
            }
        }
    }

    fn source(&self) -> Option<(&SiteId, &DeviceId)> {
        Some((&self.site, &self.device))
    }
}

impl Payload for Telemetry {
    const KIND: TopicKind = TopicKind::Telemetry;
    const NAME: &'static str = "telemetry";

    fn validate(&self) -> Result<(), WireError> {
        check_text("agent_version", &self.agent_version)?;
        if self.cameras.len() > 32 {
            return Err(WireError::Invalid {
                field: "cameras",
                reason: "at most 32 cameras".into(),
            });
        }
        for c in &self.cameras {
            check_non_negative("cameras.fps", f64::from(c.fps))?;
        }
        if let Some(ms) = self.prescreen_latency_ms {
            check_non_negative("prescreen_latency_ms", f64::from(ms))?;
        }
        if let Some(t) = self.cpu_temperature_celsius
            && !t.is_finite()
        {
            return Err(WireError::Invalid {
                field: "cpu_temperature_celsius",
                reason: "must be finite".into(),
            });
        }
        if let Some(ms) = self.central_clock_offset_ms
            && ms.unsigned_abs() > MAX_CLOCK_OFFSET_MS
        {
            return Err(WireError::Invalid {
                field: "central_clock_offset_ms",
                reason: "at most a year either way".into(),
            });
        }
        Ok(())
    }

    fn source(&self) -> Option<(&SiteId, &DeviceId)> {
        Some((&self.site, &self.device))
    }
}

impl Payload for Ack {
    const KIND: TopicKind = TopicKind::Ack;
    const NAME: &'static str = "ack";

    fn validate(&self) -> Result<(), WireError> {
        if self.msg_ids.is_empty() || self.msg_ids.len() > MAX_ACK_IDS {
            return Err(WireError::Invalid {
                field: "msg_ids",
                reason: format!(
                    "{} ids; an ack carries 1 to {MAX_ACK_IDS}",
                    self.msg_ids.len()
                ),
            });
        }
        Ok(())
    }
}

impl Payload for Command {
    const KIND: TopicKind = TopicKind::Cmd;
    const NAME: &'static str = "command";

    fn validate(&self) -> Result<(), WireError> {
        if let Some(expires) = self.expires_at
            && expires < self.at
        {
            return Err(WireError::Invalid {
                field: "expires_at",
                reason: "is before `at`".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
