//! Damage and plate detection with YOLOv8 ONNX models through ONNX Runtime.
//!
//! Architecture invariant: only `central` links ONNX Runtime, and it loads it
//! at run time (`load-dynamic`) from the path in the config or the cache that
//! `models/fetch.sh` fills, so the binary builds without it. Pre- and
//! post-processing are `inspection_core::yolo`, the same code the edge runs.
//!
//! - [`OnnxDetector`]: one model in one ONNX Runtime session, on the CPU or
//!   CUDA execution provider ([`RuntimeConfig::execution_provider`]), one
//!   image or a batch per run ([`OnnxDetector::detect_batch`]).
//! - [`BatchingDetector`]: a runner thread in front of it that gathers
//!   concurrent calls into batches (`max_batch`, `max_wait_ms`, a bounded
//!   `queue`), with the `inference_*` metrics ([`DetectMetrics`]).
//! - [`RemoteDetector`]: the `inference` role over HTTP(S).
//! - [`DetectionSource`] + [`open_detector`]: what a worker configures to get
//!   an `Arc<dyn Detector>`, local or remote.

mod batching;
mod config;
mod metrics;
mod onnx;
mod remote;

use std::sync::Arc;

use async_trait::async_trait;
use image::RgbImage;
use inspection_core::yolo::Detection;

pub use batching::{BatchRun, BatchingDetector};
pub use config::{DetectorConfig, ExecutionProvider, MAX_BATCH_LIMIT, RuntimeConfig};
pub use metrics::DetectMetrics;
pub use onnx::{
    DetectError, InputPrecision, OnnxDetector, Prepared, Provider, cuda_available, init_runtime,
};
pub use remote::{
    DetectResponse, DetectionSource, ImageEncoding, ModelStatus, ModelsResponse, RemoteDetector,
    ServedModel, WireDetection, check_model_name, encode, load_batching, open_detector,
};

/// What a detector runs, for results, logs and metric labels.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelInfo {
    /// `file-name@sha256-prefix`: names the exact weights.
    pub id: String,
    /// Class names from the model's metadata, by class id.
    pub classes: Vec<String>,
    /// Square input size the model runs at.
    pub input_size: u32,
}

/// Detection on one image at a time, from any number of tasks at once. An
/// implementation may batch concurrent calls (the local batching detector)
/// or send them to the `inference` role (the remote detector); callers see
/// the same interface.
#[async_trait]
pub trait Detector: Send + Sync + 'static {
    fn info(&self) -> &ModelInfo;

    /// Detections in `image`'s pixels, best first after NMS.
    async fn detect(&self, image: Arc<RgbImage>) -> Result<Vec<Detection>, DetectError>;
}
