//! A YOLOv8 detector on ONNX Runtime, for fp32 and fp16 exports alike, on
//! the CPU or CUDA execution provider, one image or a batch per run.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use half::f16;
use image::RgbImage;
use inspection_core::yolo::{self, ClassNames, Detection, Letterbox, ModelMetadata, Proto};
use ort::environment::Environment;
use ort::ep::ExecutionProvider as _;
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::value::{Tensor, TensorElementType, ValueType};
use sha2::{Digest, Sha256};

use super::ModelInfo;
use super::config::{DetectorConfig, ExecutionProvider, RuntimeConfig};

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
    #[error("cannot put model {path} on {provider}: {reason}")]
    Provider {
        path: PathBuf,
        provider: &'static str,
        reason: String,
    },
    #[error("inference failed: {0}")]
    Inference(String),
    #[error(transparent)]
    Yolo(#[from] yolo::YoloError),
    /// The batching queue is full: retry later (HTTP 503 `overloaded`).
    #[error("model {model} is overloaded: {queue} requests already queued")]
    Overloaded { model: String, queue: usize },
    /// The model is not (or not yet) loaded, or its runner stopped.
    #[error("model {model} is unavailable: {reason}")]
    Unavailable { model: String, reason: String },
    /// The `inference` role refused the request (a 4xx other than overload).
    #[error("the inference service refused the request ({status} {code}): {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// The `inference` role could not be reached or answered garbage, after
    /// the configured retries.
    #[error("inference service at {url}: {reason}")]
    Remote { url: String, reason: String },
}

impl DetectError {
    /// A stable code for metric labels and logs.
    pub fn code(&self) -> &'static str {
        match self {
            DetectError::Runtime { .. } => "runtime",
            DetectError::Model { .. } => "model",
            DetectError::UnsupportedModel { .. } => "unsupported_model",
            DetectError::Provider { .. } => "provider",
            DetectError::Inference(_) => "inference",
            DetectError::Yolo(_) => "yolo",
            DetectError::Overloaded { .. } => "overloaded",
            DetectError::Unavailable { .. } => "unavailable",
            DetectError::Refused { .. } => "refused",
            DetectError::Remote { .. } => "remote",
        }
    }
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

/// The execution provider a session runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Cpu,
    Cuda { device: i32 },
}

impl fmt::Display for Provider {
    /// `cpu` or `cuda:N`, as logs and `/v1/models` show it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Provider::Cpu => f.write_str("cpu"),
            Provider::Cuda { device } => write!(f, "cuda:{device}"),
        }
    }
}

/// Whether the loaded ONNX Runtime library was built with the CUDA
/// execution provider (the `onnxruntime-gpu` wheel). Call after
/// [`init_runtime`]. It says nothing about a GPU being present: that shows
/// when a session is created on it.
pub fn cuda_available() -> bool {
    ort::ep::CUDA::is_available().unwrap_or(false)
}

/// An image letterboxed into the model's input, ready to be batched.
#[derive(Debug, Clone)]
pub struct Prepared {
    letterbox: Letterbox,
    tensor: Vec<f32>,
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
    provider: Provider,
    /// The input's batch dimension is dynamic: N images run in one call.
    dynamic_batch: bool,
    info: ModelInfo,
}

impl std::fmt::Debug for OnnxDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxDetector")
            .field("path", &self.path)
            .field("precision", &self.precision)
            .field("size", &self.size)
            .field("classes", &self.metadata.names.len())
            .field("provider", &self.provider)
            .field("dynamic_batch", &self.dynamic_batch)
            .finish()
    }
}

impl OnnxDetector {
    /// Loads `config.model` into a session on `env` on the CPU execution
    /// provider.
    pub fn load(env: &Environment, config: &DetectorConfig) -> Result<Self, DetectError> {
        let cpu = RuntimeConfig {
            execution_provider: ExecutionProvider::Cpu,
            ..RuntimeConfig::default()
        };
        Self::load_on(env, config, &cpu)
    }

    /// Loads `config.model` on the execution provider `runtime` asks for:
    /// with `cuda` a model that cannot go on the GPU is an error; with
    /// `auto` it falls back to the CPU (logged as a warning).
    pub fn load_on(
        env: &Environment,
        config: &DetectorConfig,
        runtime: &RuntimeConfig,
    ) -> Result<Self, DetectError> {
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
        let (session, provider) = open_session(env, config, runtime)?;

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
        let dynamic_batch = dims.first().is_some_and(|d| d.is_none());
        let fixed = yolo::fixed_input_size(&dims).map_err(&unsupported)?;
        let input_name = input.name().to_owned();
        let size =
            yolo::resolve_input_size(config.input_size, fixed, &metadata).map_err(&unsupported)?;
        if session.outputs().is_empty() {
            return Err(unsupported("the model has no outputs".into()));
        }
        let info = ModelInfo {
            id: model_id(&path).map_err(|e| model_err(e.to_string()))?,
            classes: metadata.names.as_slice().to_vec(),
            input_size: size,
        };
        tracing::info!(
            model = %path.display(),
            id = %info.id,
            %provider,
            dynamic_batch,
            input_size = size,
            "model loaded"
        );
        Ok(Self {
            session: Mutex::new(session),
            path,
            input_name,
            precision,
            size,
            metadata,
            decode: config.decode,
            provider,
            dynamic_batch,
            info,
        })
    }

    /// What this detector runs: weights id, classes, input size.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The execution provider the session runs on.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// Whether N images run in one `session.run` (dynamic batch dimension).
    pub fn dynamic_batch(&self) -> bool {
        self.dynamic_batch
    }

    /// Letterboxes `image` into this model's input (CPU work that callers
    /// may do in parallel before a batch runs).
    pub fn prepare(&self, image: &RgbImage) -> Result<Prepared, DetectError> {
        let (letterbox, tensor) = yolo::preprocess(image, self.size)?;
        Ok(Prepared { letterbox, tensor })
    }

    /// Detects objects in each image, in order. With a dynamic batch
    /// dimension all images go through one `session.run`; with a fixed
    /// batch of 1 they run one after another.
    pub fn detect_batch(&self, images: &[&RgbImage]) -> Result<Vec<Vec<Detection>>, DetectError> {
        let prepared = images
            .iter()
            .map(|image| self.prepare(image))
            .collect::<Result<Vec<_>, _>>()?;
        self.run_prepared(&prepared)
    }

    /// As [`OnnxDetector::detect_batch`], on images already prepared.
    pub fn run_prepared(&self, items: &[Prepared]) -> Result<Vec<Vec<Detection>>, DetectError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        if !self.dynamic_batch || items.len() == 1 {
            return items
                .iter()
                .map(|item| {
                    let tensor = item.tensor.clone();
                    let (shape, out) = self.run_tensor(1, tensor)?;
                    let nc = self.metadata.names.len();
                    Ok(yolo::decode(
                        &out,
                        &shape,
                        nc,
                        &item.letterbox,
                        &self.decode,
                    )?)
                })
                .collect();
        }
        let plane = items[0].tensor.len();
        let mut tensor = Vec::with_capacity(plane * items.len());
        for item in items {
            tensor.extend_from_slice(&item.tensor);
        }
        let (shape, out) = self.run_tensor(items.len(), tensor)?;
        let letterboxes: Vec<Letterbox> = items.iter().map(|i| i.letterbox).collect();
        let nc = self.metadata.names.len();
        Ok(yolo::decode_batch(
            &out,
            &shape,
            nc,
            &letterboxes,
            &self.decode,
        )?)
    }

    /// One `session.run` on an NCHW tensor of `batch` images; the first
    /// output (the detection head) as f32. Public for the benchmark, which
    /// times ONNX Runtime alone on the same session.
    pub fn run_tensor(
        &self,
        batch: usize,
        tensor: Vec<f32>,
    ) -> Result<(Vec<usize>, Vec<f32>), DetectError> {
        let s = self.size as usize;
        let shape = [batch, 3, s, s];
        let infer = |e: ort::Error| DetectError::Inference(e.to_string());
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
        extract_f32(&outputs[0])
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

/// A session builder with the per-model options (optimisation, threads).
fn base_builder(env: &Environment, config: &DetectorConfig) -> Result<SessionBuilder, String> {
    let mut builder = Session::builder(env)
        .map_err(|e| e.to_string())?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| e.to_string())?;
    if config.intra_threads > 0 {
        builder = builder
            .with_intra_threads(config.intra_threads)
            .map_err(|e| e.to_string())?;
    }
    Ok(builder)
}

/// Creates the session on the provider `runtime` asks for (see
/// [`ExecutionProvider`]).
fn open_session(
    env: &Environment,
    config: &DetectorConfig,
    runtime: &RuntimeConfig,
) -> Result<(Session, Provider), DetectError> {
    let path = &config.model;
    let model_err = |reason: String| DetectError::Model {
        path: path.clone(),
        reason,
    };
    let on_cpu = || -> Result<(Session, Provider), DetectError> {
        let session = base_builder(env, config)
            .map_err(model_err)?
            .commit_from_file(path)
            .map_err(|e| model_err(e.to_string()))?;
        Ok((session, Provider::Cpu))
    };
    let wanted = runtime.execution_provider;
    if wanted == ExecutionProvider::Cpu {
        return on_cpu();
    }
    let device = runtime.cuda_device;
    let cuda_failed = |reason: String| DetectError::Provider {
        path: path.clone(),
        provider: "cuda",
        reason,
    };
    let attempt = if cuda_available() {
        // `error_on_failure`: ort's default silently falls back to the CPU,
        // which would hide a broken GPU node behind slow answers.
        base_builder(env, config)
            .and_then(|builder| {
                builder
                    .with_execution_providers([ort::ep::CUDA::default()
                        .with_device_id(device)
                        .build()
                        .error_on_failure()])
                    .map_err(|e| e.to_string())
            })
            .and_then(|mut builder| builder.commit_from_file(path).map_err(|e| e.to_string()))
    } else {
        Err(
            "this ONNX Runtime library has no CUDA execution provider (use the onnxruntime-gpu build, \
             with CUDA 13 and cuDNN 9 installed)"
                .to_owned(),
        )
    };
    match (attempt, wanted) {
        (Ok(session), _) => Ok((session, Provider::Cuda { device })),
        (Err(reason), ExecutionProvider::Cuda) => Err(cuda_failed(reason)),
        (Err(reason), _) => {
            tracing::warn!(
                model = %path.display(),
                reason = %reason,
                "execution_provider = auto: CUDA is not usable, running on the CPU"
            );
            on_cpu()
        }
    }
}

/// `file-name@sha256-prefix`: names the exact weights in results and logs.
fn model_id(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    let digest = hasher.finalize();
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(format!("{name}@{hex}"))
}
