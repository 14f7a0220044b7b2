//! Damage and plate detection with YOLOv8 ONNX models through ONNX Runtime.
//!
//! Architecture invariant: only `central` links ONNX Runtime, and it loads it
//! at run time (`load-dynamic`) from the path in the config or the cache that
//! `models/fetch.sh` fills, so the binary builds without it. Pre- and
//! post-processing are `inspection_core::yolo`, the same code the edge runs.

mod config;
mod onnx;

pub use config::{DetectorConfig, RuntimeConfig};
pub use onnx::{DetectError, InputPrecision, OnnxDetector, init_runtime};
