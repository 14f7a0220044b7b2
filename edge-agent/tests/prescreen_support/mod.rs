//! Shared by the pre-screen tests and benchmark: where the models are, and the
//! same YOLOv8 models run in ONNX Runtime as the peer that tract is compared to.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use half::f16;
use image::RgbImage;
use inspection_core::yolo::{self, DecodeConfig, Detection};
use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{Tensor, TensorElementType, ValueType};

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

fn environment() -> &'static Environment {
    static ENV: OnceLock<Environment> = OnceLock::new();
    ENV.get_or_init(|| {
        ort::init_from(fetched("onnxruntime/libonnxruntime.so.1.31.1"))
            .unwrap()
            .with_name("edge-prescreen-peer")
            .build()
            .unwrap()
    })
}

/// A YOLOv8 export in ONNX Runtime (CPU, one intra-op thread, like one
/// tract run), with inspection-core's pre/post-processing.
pub struct OrtYolo {
    session: Session,
    input: String,
    half: bool,
    size: u32,
    classes: usize,
}

impl OrtYolo {
    pub fn load(path: &Path, size: u32, classes: usize) -> Self {
        let session = Session::builder(environment())
            .unwrap()
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .unwrap()
            .with_intra_threads(1)
            .unwrap()
            .commit_from_file(path)
            .unwrap();
        let input = &session.inputs()[0];
        let half = matches!(
            input.dtype(),
            ValueType::Tensor {
                ty: TensorElementType::Float16,
                ..
            }
        );
        Self {
            input: input.name().to_owned(),
            session,
            half,
            size,
            classes,
        }
    }

    pub fn detect(&mut self, image: &RgbImage, cfg: &DecodeConfig) -> Vec<Detection> {
        let (letterbox, tensor) = yolo::preprocess(image, self.size).unwrap();
        let s = self.size as usize;
        let shape = [1usize, 3, s, s];
        let outputs = if self.half {
            let data: Vec<f16> = tensor.into_iter().map(f16::from_f32).collect();
            let input = Tensor::from_array((shape, data)).unwrap();
            self.session
                .run(ort::inputs![self.input.as_str() => input])
                .unwrap()
        } else {
            let input = Tensor::from_array((shape, tensor)).unwrap();
            self.session
                .run(ort::inputs![self.input.as_str() => input])
                .unwrap()
        };
        let out = &outputs[0];
        let (dims, values): (Vec<usize>, Vec<f32>) = if self.half {
            let (shape, data) = out.try_extract_tensor::<f16>().unwrap();
            (
                shape.iter().map(|&d| d as usize).collect(),
                data.iter().map(|h| h.to_f32()).collect(),
            )
        } else {
            let (shape, data) = out.try_extract_tensor::<f32>().unwrap();
            (shape.iter().map(|&d| d as usize).collect(), data.to_vec())
        };
        yolo::decode(&values, &dims, self.classes, &letterbox, cfg).unwrap()
    }
}
