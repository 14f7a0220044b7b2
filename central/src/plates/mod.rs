//! Licence plates: OCR of plate crops (PP-OCR recognition, CTC decoding), the text-detection fallback, and the vote across frames.
//!
//! ```text
//! worker: platedet (its Detector) ──boxes──► PlateReader::read(image, boxes)
//!   boxes found:  crop (margin) ─► deskew candidates ─► Recognizer (PP-OCR rec, CTC)
//!   no box:       TextDetector (PP-OCR det, DB) ─► plate-shaped text boxes ─► Recognizer
//!   ─► inspection_core::plate::candidates (normalise, validate) ─► PlateObservation
//!   per frame: PlateObservation::record(camera, sha256) ─► PlateReadRecord
//!   per inspection: vote(&records) ─► Option<VehiclePlate>
//! ```
//!
//! Design rules:
//!
//! - A plate is `Read` only when the OCR's confidence clears the floor *and*
//!   some country's format matches; everything else found is `Unreadable`.
//!   A wrong plate is worse than none: it links a return to another car's
//!   pickup. Boxes shorter than [`PlatesConfig::min_plate_height`] are never
//!   `Read` (on the bus photo's ~31x14 px plate both OCR models return wrong
//!   strings, at ~0.7 mean character probability per BUILD-NOTES).
//! - One frame may give several observations (several boxes); the record
//!   for the frame is [`best_observation`]'s.
//! - ONNX Runtime is the process-wide one from
//!   [`crate::detect::init_runtime`]; sessions sit behind a `Mutex` like
//!   [`crate::detect::OnnxDetector`]: the API is synchronous and the worker
//!   calls it from `spawn_blocking`.
//! - Measured on the synthetic set of `tests/plates_synthetic.rs`; the
//!   defaults of [`PlatesConfig`] cite those measurements.

mod config;
mod image_ops;
mod reader;
mod rec;
mod textdet;
mod vote;

pub use config::{PlatesConfig, RecModel};
pub use reader::{PlateObservation, PlateReader, ReadTimings, best_observation};
pub use rec::{Decoding, Recognition, Recognizer, ctc_greedy};
pub use textdet::{TextBox, TextDetector, boxes_from_probability_map, merge_line_boxes};
pub use vote::vote;

use std::path::PathBuf;

/// Why plate reading could not be set up or run.
#[derive(Debug, thiserror::Error)]
pub enum PlatesError {
    #[error(transparent)]
    Runtime(#[from] crate::detect::DetectError),
    #[error("cannot load OCR model {path}: {reason}")]
    Model { path: PathBuf, reason: String },
    #[error("OCR model {path} is not a usable PP-OCR export: {reason}")]
    UnsupportedModel { path: PathBuf, reason: String },
    #[error("OCR inference failed: {0}")]
    Inference(String),
    #[error("invalid plates config: {}", .0.join("; "))]
    Config(Vec<String>),
}

/// Loads an ONNX model into a CPU session on the process's runtime.
fn load_session(
    env: &ort::environment::Environment,
    path: &std::path::Path,
    intra_threads: usize,
) -> Result<ort::session::Session, PlatesError> {
    let fail = |reason: String| PlatesError::Model {
        path: path.to_owned(),
        reason,
    };
    if !path.is_file() {
        return Err(fail("no such file".into()));
    }
    let mut builder = ort::session::Session::builder(env)
        .map_err(|e| fail(e.to_string()))?
        .with_optimization_level(ort::session::builder::GraphOptimizationLevel::Level3)
        .map_err(|e| fail(e.to_string()))?;
    if intra_threads > 0 {
        builder = builder
            .with_intra_threads(intra_threads)
            .map_err(|e| fail(e.to_string()))?;
    }
    builder
        .commit_from_file(path)
        .map_err(|e| fail(e.to_string()))
}
