//! A YOLOv8 detector on ONNX Runtime, for fp32 and fp16 exports alike.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use half::f16;
use image::RgbImage;
use inspection_core::yolo::{self, ClassNames, Detection, Letterbox, ModelMetadata, Proto};
use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{Tensor, TensorElementType, ValueType};

use super::config::DetectorConfig;

/// Why detection could not be set up or run.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error(
        "cannot load ONNX Runtime from {path}: {reason} (run `bash models/fetch.sh`, or set the library path in the config)"
    )]
    Runtime { path: PathBuf, reason: String },
    #[error("cannot load model {path}: {reason}")]
    Model { path: PathBuf, reason: String },
    #[error("model {path} is not a usable YOLOv8 export: {reason}")]
    UnsupportedModel { path: PathBuf, reason: String },
    #[error("inference failed: {0}")]
    Inference(String),
    #[error(transparent)]
    Yolo(#[from] yolo::YoloError),
}

// The check and the initialisation happen under one lock: ONNX Runtime allows
// one environment per process, and a second concurrent `build()` fails.
static RUNTIME: Mutex<Option<(PathBuf, &'static Environment)>> = Mutex::new(None);

/// Loads ONNX Runtime from `library` once per process and returns its
/// environment. Asking for a different library later is an error, since a
/// process can hold only one.
pub fn init_runtime(library: &Path) -> Result<&'static Environment, DetectError> {
    let fail = |reason: String| DetectError::Runtime {
        path: library.to_owned(),
        reason,
    };
    // A panic elsewhere while holding the lock leaves the state consistent
    // (it is written last), so a poisoned lock is still usable.
    let mut runtime = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((path, env)) = runtime.as_ref() {
        return if path == library {
            Ok(env)
        } else {
            Err(fail(format!(
                "ONNX Runtime is already loaded from {}",
                path.display()
            )))
        };
    }
    if !library.is_file() {
        return Err(fail("no such file".into()));
    }
    let env = ort::init_from(library)
        .map_err(|e| fail(e.to_string()))?
        .with_name("inspection-central")
        .build()
        .map_err(|e| fail(e.to_string()))?;
    // The environment lives as long as the process, like the library itself.
    let env: &'static Environment = Box::leak(Box::new(env));
    *runtime = Some((library.to_owned(), env));
    Ok(env)
}

/// The element type the model wants as input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputPrecision {
    F32,
    /// fp16 exports (such as platedet) take and return half floats.
    F16,
}

/// A loaded model, ready to run on images.
pub struct OnnxDetector {
    // `Session::run` needs `&mut`; one run at a time per session is what
    // ONNX Runtime's intra-op threads are sized for anyway. Batching across
    // requests is the inference role's job. A panic while holding the lock
    // cannot leave the session half-updated, so a poisoned lock is reused.
    session: Mutex<Session>,
    path: PathBuf,
    input_name: String,
    precision: InputPrecision,
    size: u32,
    metadata: ModelMetadata,
    decode: yolo::DecodeConfig,
}

impl std::fmt::Debug for OnnxDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxDetector")
            .field("path", &self.path)
            .field("precision", &self.precision)
            .field("size", &self.size)
            .field("classes", &self.metadata.names.len())
            .finish()
    }
}

impl OnnxDetector {
    /// Loads `config.model` into a session on `env` (CPU execution provider).
    pub fn load(env: &Environment, config: &DetectorConfig) -> Result<Self, DetectError> {
        let path = config.model.clone();
        let model_err = |reason: String| DetectError::Model {
            path: path.clone(),
            reason,
        };
        let unsupported = |reason: String| DetectError::UnsupportedModel {
            path: path.clone(),
            reason,
        };
        if !path.is_file() {
            return Err(model_err("no such file".into()));
        }
        let mut builder = Session::builder(env)
            .map_err(|e| model_err(e.to_string()))?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| model_err(e.to_string()))?;
        if config.intra_threads > 0 {
            builder = builder
                .with_intra_threads(config.intra_threads)
                .map_err(|e| model_err(e.to_string()))?;
        }
        let session = builder
            .commit_from_file(&path)
            .map_err(|e| model_err(e.to_string()))?;

        let metadata = {
            let meta = session.metadata().map_err(|e| model_err(e.to_string()))?;
            let keys = meta.custom_keys().map_err(|e| model_err(e.to_string()))?;
            let pairs: Vec<(String, String)> = keys
                .into_iter()
                .filter_map(|k| meta.custom(&k).map(|v| (k, v)))
                .collect();
            ModelMetadata::from_pairs(pairs).map_err(|e| unsupported(e.to_string()))?
        };

        let [input] = session.inputs() else {
            return Err(unsupported(format!(
                "expected one input, found {}",
                session.inputs().len()
            )));
        };
        let (precision, dims) = match input.dtype() {
            ValueType::Tensor {
                ty: TensorElementType::Float32,
                shape,
                ..
            } => (InputPrecision::F32, shape.to_vec()),
            ValueType::Tensor {
                ty: TensorElementType::Float16,
                shape,
                ..
            } => (InputPrecision::F16, shape.to_vec()),
            other => {
                return Err(unsupported(format!(
                    "input type {other:?} is not f32 or f16"
                )));
            }
        };
        // ONNX Runtime marks dynamic dimensions with -1.
        let dims: Vec<Option<i64>> = dims.iter().map(|&d| (d > 0).then_some(d)).collect();
        let fixed = yolo::fixed_input_size(&dims).map_err(&unsupported)?;
        let input_name = input.name().to_owned();
        let size =
            yolo::resolve_input_size(config.input_size, fixed, &metadata).map_err(&unsupported)?;
        if session.outputs().is_empty() {
            return Err(unsupported("the model has no outputs".into()));
        }
        Ok(Self {
            session: Mutex::new(session),
            path,
            input_name,
            precision,
            size,
            metadata,
            decode: config.decode,
        })
    }

    pub fn class_names(&self) -> &ClassNames {
        &self.metadata.names
    }

    pub fn input_size(&self) -> u32 {
        self.size
    }

    pub fn precision(&self) -> InputPrecision {
        self.precision
    }

    /// Detects objects in one image; boxes are in the image's pixels.
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<Detection>, DetectError> {
        Ok(self.detect_with_masks(image, false)?.0)
    }

    /// Detects objects and, for seg heads when `masks` is set, their masks.
    pub fn detect_with_masks(
        &self,
        image: &RgbImage,
        masks: bool,
    ) -> Result<(Vec<Detection>, Vec<yolo::Mask>), DetectError> {
        let (letterbox, tensor) = yolo::preprocess(image, self.size)?;
        let s = self.size as usize;
        let shape = [1usize, 3, s, s];
        let infer = |e: ort::Error| DetectError::Inference(e.to_string());
        // Outputs are copied out so the session is free again before the
        // post-processing (decode, NMS, masks) runs.
        let (out_shape, out, proto) = {
            let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
            let outputs = match self.precision {
                InputPrecision::F32 => {
                    let input = Tensor::from_array((shape, tensor)).map_err(infer)?;
                    session
                        .run(ort::inputs![self.input_name.as_str() => input])
                        .map_err(infer)?
                }
                InputPrecision::F16 => {
                    let half: Vec<f16> = tensor.into_iter().map(f16::from_f32).collect();
                    let input = Tensor::from_array((shape, half)).map_err(infer)?;
                    session
                        .run(ort::inputs![self.input_name.as_str() => input])
                        .map_err(infer)?
                }
            };
            let (out_shape, out) = extract_f32(&outputs[0])?;
            let proto = if masks && outputs.len() > 1 {
                Some(extract_f32(&outputs[1])?)
            } else {
                None
            };
            (out_shape, out, proto)
        };
        let nc = self.metadata.names.len();
        let detections = yolo::decode(&out, &out_shape, nc, &letterbox, &self.decode)?;
        let mut mask_out = Vec::new();
        if let Some((proto_shape, proto)) = proto {
            let proto = Proto::new(&proto, &proto_shape)?;
            for d in &detections {
                mask_out.push(yolo::mask_for(d, &proto, &letterbox)?);
            }
        }
        Ok((detections, mask_out))
    }

    /// The letterbox geometry this detector applies to an image of that size.
    pub fn letterbox_for(&self, width: u32, height: u32) -> Result<Letterbox, DetectError> {
        Ok(Letterbox::new(width, height, self.size)?)
    }
}

/// An output tensor as f32, whatever its float precision.
fn extract_f32(value: &ort::value::DynValue) -> Result<(Vec<usize>, Vec<f32>), DetectError> {
    let infer = |e: ort::Error| DetectError::Inference(e.to_string());
    let to_dims = |shape: &ort::value::Shape| -> Vec<usize> {
        shape
            .iter()
            .map(|&d| usize::try_from(d).unwrap_or(0))
            .collect()
    };
    match value.dtype() {
        ValueType::Tensor {
            ty: TensorElementType::Float32,
            ..
        } => {
            let (shape, data) = value.try_extract_tensor::<f32>().map_err(infer)?;
            Ok((to_dims(shape), data.to_vec()))
        }
        ValueType::Tensor {
            ty: TensorElementType::Float16,
            ..
        } => {
            let (shape, data) = value.try_extract_tensor::<f16>().map_err(infer)?;
            Ok((to_dims(shape), data.iter().map(|h| h.to_f32()).collect()))
        }
        other => Err(DetectError::Inference(format!(
            "output type {other:?} is not f32 or f16"
        ))),
    }
}
