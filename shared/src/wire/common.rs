//! Building blocks shared by several payloads: the version marker, image
//! hashes, detections and frame quality as they travel on the wire.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::geometry::BBox;

/// The payload version this build speaks.
pub const WIRE_VERSION: u32 = 1;

/// The `v` field of every payload. It serialises as `1` and refuses any other
/// value, so a typed struct can never hold a payload of another version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct V1;

impl Serialize for V1 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(WIRE_VERSION)
    }
}

impl<'de> Deserialize<'de> for V1 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        if v == u64::from(WIRE_VERSION) {
            Ok(V1)
        } else {
            Err(serde::de::Error::custom(format_args!(
                "unsupported payload version {v}; this build speaks version {WIRE_VERSION}"
            )))
        }
    }
}

impl JsonSchema for V1 {
    fn schema_name() -> Cow<'static, str> {
        "PayloadVersion".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Payload version. Additive, optional fields may appear within a version; anything else bumps it.",
            "type": "integer",
            "const": WIRE_VERSION,
        })
    }
}

/// Whether a car is being handed out or coming back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InspectionKind {
    Pickup,
    Return,
}

/// A lowercase hex SHA-256 digest: the content address of an image.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256Hex(String);

/// Why a string is not a SHA-256 hex digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected 64 lowercase hex characters, got {0:?}")]
pub struct Sha256Error(String);

impl Sha256Hex {
    pub fn new(s: impl Into<String>) -> Result<Self, Sha256Error> {
        let s = s.into();
        if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(s))
        } else {
            // Keep the error small even when the input is not.
            Err(Sha256Error(s.chars().take(80).collect()))
        }
    }

    /// From the 32 raw digest bytes.
    pub fn from_digest(digest: &[u8; 32]) -> Self {
        use fmt::Write;
        let mut s = String::with_capacity(64);
        for b in digest {
            let _ = write!(s, "{b:02x}");
        }
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Sha256Hex {
    type Error = Sha256Error;
    fn try_from(s: String) -> Result<Self, Sha256Error> {
        Self::new(s)
    }
}

impl From<Sha256Hex> for String {
    fn from(h: Sha256Hex) -> String {
        h.0
    }
}

impl FromStr for Sha256Hex {
    type Err = Sha256Error;
    fn from_str(s: &str) -> Result<Self, Sha256Error> {
        Self::new(s)
    }
}

impl fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl JsonSchema for Sha256Hex {
    fn schema_name() -> Cow<'static, str> {
        "Sha256Hex".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "SHA-256 of the image bytes, 64 lowercase hex characters.",
            "type": "string",
            "pattern": "^[0-9a-f]{64}$",
        })
    }
}

/// A reference to an image uploaded over HTTPS (`PUT /v1/images/{sha256}`);
/// images never travel inside MQTT payloads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ImageRef {
    pub sha256: Sha256Hex,
    /// Size of the encoded image in bytes.
    #[schemars(range(min = 1))]
    pub bytes: u64,
    #[schemars(range(min = 1))]
    pub width: u32,
    #[schemars(range(min = 1))]
    pub height: u32,
    /// Media type of the encoded image; `image/jpeg` today.
    #[schemars(length(min = 1, max = 64))]
    pub content_type: String,
}

/// One pre-screen detection, in pixels of the original frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WireDetection {
    /// Class name from the model's metadata, e.g. `plate` or `dent`.
    #[schemars(length(min = 1, max = 64))]
    pub label: String,
    pub class_id: u32,
    /// Confidence in `[0, 1]`.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub score: f32,
    /// In pixels of the frame: `0 <= x1 <= x2 <= width`, likewise for y.
    pub bbox: BBox,
}

/// The quality metrics of a frame as the edge measured them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FrameQuality {
    /// Variance of the Laplacian of the luma, after downscaling.
    #[schemars(range(min = 0.0))]
    pub sharpness: f64,
    /// Mean luma, 0-255.
    #[schemars(range(min = 0.0, max = 255.0))]
    pub mean_luma: f64,
    /// Fraction of pixels at or below the dark clipping level.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub dark_fraction: f64,
    /// Fraction of pixels at or above the bright clipping level.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub bright_fraction: f64,
}
