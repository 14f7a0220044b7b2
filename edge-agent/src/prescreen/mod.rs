//! The on-board YOLOv8 pre-screen: an Ultralytics ONNX export run by `tract`.
//!
//! The pre-screen decides whether a frame shows a vehicle or plate (the
//! session trigger) and proposes damage candidates. It runs on the board's
//! CPU, so the model is small (int8 QDQ from `models/quantize.sh`, or fp32 as
//! a fallback) and pre/post-processing is inspection-core's `yolo` module,
//! the same code the central service runs after ONNX Runtime: both sides
//! letterbox and decode identically.
//!
//! - [`Prescreener`] loads a model (fp16 exports are translated to fp32 at
//!   load, because tract's fp16 kernels are ~250x slower on CPUs without
//!   native half arithmetic) and runs one frame at a time, blocking.
//! - [`PrescreenPool`] runs it from async code on tokio's blocking pool, with
//!   at most `threads` frames in inference at once.
//! - [`PrescreenConfig`] is the `[prescreen]` section; [`PrescreenMetrics`]
//!   its Prometheus metrics.

mod config;
mod metrics;
mod model;
mod pool;

pub use config::PrescreenConfig;
pub use metrics::{ErrorLabels, PrescreenMetrics};
pub use model::{Precision, Prescreener};
pub use pool::PrescreenPool;

use std::path::PathBuf;

/// Why a model could not be loaded or a frame could not be screened.
#[derive(Debug, thiserror::Error)]
pub enum PrescreenError {
    /// The model file does not exist.
    #[error("model {path} does not exist")]
    MissingModel { path: PathBuf },
    /// The model file exists but cannot be read.
    #[error("cannot read model {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    /// The file is not a readable ONNX protobuf (truncated, or another format).
    #[error("model {path} is not a valid ONNX file: {reason}")]
    NotOnnx { path: PathBuf, reason: String },
    /// The ONNX model is not an Ultralytics YOLOv8 export this agent can run:
    /// no `names` metadata, an input that is not `[1, 3, S, S]` float, or
    /// outputs that match no YOLOv8 head.
    #[error("model {path} is not a usable YOLOv8 export: {reason}")]
    UnsupportedModel { path: PathBuf, reason: String },
    /// tract could not type, translate or optimise the graph.
    #[error("tract cannot prepare model {path}: {reason}")]
    Prepare { path: PathBuf, reason: String },
    /// The configuration is invalid (see [`PrescreenConfig::problems`]).
    #[error("invalid prescreen configuration: {}", .0.join("; "))]
    Config(Vec<String>),
    /// Running the model failed.
    #[error("inference failed: {0}")]
    Inference(String),
    /// Letterboxing the frame or decoding the head failed.
    #[error(transparent)]
    Yolo(#[from] inspection_core::yolo::YoloError),
    /// The blocking task running the model panicked or was cancelled.
    #[error("pre-screen worker failed: {0}")]
    Worker(String),
}

impl PrescreenError {
    /// A stable, low-cardinality code for metrics labels and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingModel { .. } => "missing_model",
            Self::Read { .. } => "read",
            Self::NotOnnx { .. } => "not_onnx",
            Self::UnsupportedModel { .. } => "unsupported_model",
            Self::Prepare { .. } => "prepare",
            Self::Config(_) => "config",
            Self::Inference(_) => "inference",
            Self::Yolo(_) => "yolo",
            Self::Worker(_) => "worker",
        }
    }
}
