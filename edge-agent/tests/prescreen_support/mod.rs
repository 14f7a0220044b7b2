//! Shared by the pre-screen tests and benchmark: where the models are, and the
//! same YOLOv8 models run in ONNX Runtime as the peer that tract is compared to.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use central::detect::{DetectorConfig, OnnxDetector, init_runtime};
use image::RgbImage;
use inspection_core::yolo::DecodeConfig;

#[path = "../../../shared/tests/common/mod.rs"]
mod common;
pub use common::{cache_dir, fetched};

/// A model that `models/quantize.sh` derives; panics naming the command when
/// it is missing, so the tests that need it fail rather than skip.
pub fn quantized(name: &str) -> PathBuf {
    let path = cache_dir().join("models/platedet").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `bash models/quantize.sh` first (after `bash models/fetch.sh`)",
        path.display()
    );
    path
}

/// The bus photo and its front plate (models/README.md).
pub fn bus() -> RgbImage {
    image::open(fetched("photos/pexels_double_decker_bus.jpg"))
        .unwrap()
        .to_rgb8()
}

/// The bus front plate, x1, y1, x2, y2 in photo pixels.
pub const BUS_PLATE: [f32; 4] = [416.0, 366.0, 443.0, 376.0];

/// Thresholds low enough for the bus plate (platedet scores it ~0.32).
pub fn decode() -> DecodeConfig {
    DecodeConfig {
        conf_threshold: 0.2,
        ..DecodeConfig::default()
    }
}

/// The same model in ONNX Runtime through central's detector, the path
/// production runs (one intra-op thread, like one tract run), with
/// inspection-core's pre/post-processing.
pub fn ort(path: &Path) -> OnnxDetector {
    let env = init_runtime(&fetched("onnxruntime/libonnxruntime.so.1.31.1")).unwrap();
    let config = DetectorConfig {
        decode: decode(),
        intra_threads: 1,
        ..DetectorConfig::for_model(path)
    };
    OnnxDetector::load(env, &config).unwrap()
}
