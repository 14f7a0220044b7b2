//! Loading a YOLOv8 ONNX export into tract and running it on one frame.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use image::RgbImage;
use inspection_core::yolo::{self, ClassNames, DecodeConfig, Detection, ModelMetadata};
use sha2::{Digest, Sha256};
use tract_onnx::pb;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::floats::FloatPrecisionTranslator;
use tract_onnx::tract_core::transform::ModelTransform;

use super::{PrescreenConfig, PrescreenError, PrescreenMetrics};

/// How the model file stores its weights (what tract was given, before the
/// fp16 translation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Plain fp32.
    F32,
    /// fp16 tensors, translated to fp32 at load.
    F16,
    /// int8 QDQ (QuantizeLinear/DequantizeLinear pairs), e.g. from
    /// `models/quantize.sh`.
    Int8Qdq,
}

/// A YOLOv8 model loaded into tract, ready to screen frames. `Send + Sync`:
/// any number of threads may call [`detect`](Self::detect) at once (each
/// call gets its own tract state); [`PrescreenPool`](super::PrescreenPool)
/// bounds how many do.
pub struct Prescreener {
    plan: Arc<TypedRunnableModel>,
    path: PathBuf,
    model_id: String,
    metadata: ModelMetadata,
    precision: Precision,
    size: u32,
    decode: DecodeConfig,
    metrics: PrescreenMetrics,
}

impl std::fmt::Debug for Prescreener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prescreener")
            .field("model_id", &self.model_id)
            .field("precision", &self.precision)
            .field("size", &self.size)
            .field("classes", &self.metadata.names.len())
            .finish()
    }
}

impl Prescreener {
    /// Loads `config.model` (or, when that fails, `config.fallback_model`),
    /// checks that it is a YOLOv8 export, translates fp16 to fp32 and
    /// optimises it for this CPU. Takes a few seconds for a YOLOv8s.
    pub fn load(config: &PrescreenConfig) -> Result<Self, PrescreenError> {
        let problems = config.problems("prescreen");
        if !problems.is_empty() {
            return Err(PrescreenError::Config(problems));
        }
        match (
            Self::load_model(&config.model, config),
            &config.fallback_model,
        ) {
            (Ok(p), _) => Ok(p),
            (Err(error), Some(fallback)) => {
                tracing::warn!(
                    model = %config.model.display(),
                    fallback = %fallback.display(),
                    %error,
                    "pre-screen model cannot be loaded; loading the fallback"
                );
                Self::load_model(fallback, config)
            }
            (Err(error), None) => Err(error),
        }
    }

    fn load_model(path: &Path, config: &PrescreenConfig) -> Result<Self, PrescreenError> {
        let started = Instant::now();
        let bytes = std::fs::read(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => PrescreenError::MissingModel {
                path: path.to_owned(),
            },
            _ => PrescreenError::Read {
                path: path.to_owned(),
                reason: e.to_string(),
            },
        })?;
        let model_id = model_id(path, &bytes);
        let not_onnx = |reason: String| PrescreenError::NotOnnx {
            path: path.to_owned(),
            reason,
        };
        let unsupported = |reason: String| PrescreenError::UnsupportedModel {
            path: path.to_owned(),
            reason,
        };
        let prepare = |e: TractError| PrescreenError::Prepare {
            path: path.to_owned(),
            reason: format!("{e:#}"),
        };

        let onnx = tract_onnx::onnx();
        let proto = onnx
            .proto_model_for_read(&mut bytes.as_slice())
            .map_err(|e| not_onnx(format!("{e:#}")))?;
        drop(bytes);
        // An empty or foreign file can decode as an empty protobuf message.
        let Some(graph) = proto.graph.as_ref().filter(|g| !g.node.is_empty()) else {
            return Err(not_onnx("the file holds no graph".into()));
        };
        let metadata = ModelMetadata::from_pairs(
            proto
                .metadata_props
                .iter()
                .map(|p| (p.key.as_str(), p.value.as_str())),
        )
        .map_err(|e| unsupported(e.to_string()))?;
        let precision = if graph
            .node
            .iter()
            .any(|n| n.op_type == "QuantizeLinear" || n.op_type == "DequantizeLinear")
        {
            Precision::Int8Qdq
        } else {
            Precision::F32
        };
        let (input_dt, fixed) = input_spec(graph).map_err(unsupported)?;
        let precision = if input_dt == DatumType::F16 {
            Precision::F16
        } else {
            precision
        };
        let size =
            yolo::resolve_input_size(config.input_size, fixed, &metadata).map_err(unsupported)?;
        yolo::check_input_size(size).map_err(unsupported)?;

        let s = size as usize;
        let mut model = onnx.model_for_proto_model(&proto).map_err(prepare)?;
        model
            .set_input_fact(0, InferenceFact::dt_shape(input_dt, tvec![1, 3, s, s]))
            .map_err(prepare)?;
        let mut typed = model.into_typed().map_err(prepare)?;
        // tract has no fast fp16 kernels on CPUs without native half
        // arithmetic (~110 s per 640 frame against ~0.4 s in fp32), so any
        // fp16 in the graph, not only in its input, is translated.
        let has_f16 = typed.nodes().iter().any(|n| {
            n.outputs
                .iter()
                .any(|o| o.fact.datum_type == DatumType::F16)
        });
        if has_f16 {
            FloatPrecisionTranslator::new(DatumType::F16, DatumType::F32)
                .transform(&mut typed)
                .map_err(prepare)?;
        }
        let plan = typed
            .into_optimized()
            .map_err(prepare)?
            .into_runnable()
            .map_err(prepare)?;

        check_outputs(plan.model(), metadata.names.len()).map_err(unsupported)?;
        tracing::info!(
            model = %path.display(),
            %model_id,
            ?precision,
            input_size = size,
            classes = metadata.names.len(),
            load_seconds = started.elapsed().as_secs_f64(),
            "pre-screen model loaded"
        );
        Ok(Self {
            plan,
            path: path.to_owned(),
            model_id,
            metadata,
            precision,
            size,
            decode: config.decode,
            metrics: PrescreenMetrics::new(),
        })
    }

    /// Replaces the metrics handles (e.g. with ones already registered).
    pub fn with_metrics(mut self, metrics: PrescreenMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Screens one frame: letterbox, model, decode with the configured
    /// thresholds. Boxes are in the frame's pixels, best first. Blocks for
    /// the whole inference (~0.4 s for a 640 YOLOv8s on one x86 core): call
    /// it from [`PrescreenPool`](super::PrescreenPool) in async code.
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<Detection>, PrescreenError> {
        let started = Instant::now();
        let result = self.run(image);
        match &result {
            Ok(_) => {
                self.metrics
                    .inference_duration
                    .observe(started.elapsed().as_secs_f64());
                self.metrics.frames.inc();
            }
            Err(error) => {
                self.metrics.error(error.code());
                tracing::warn!(model_id = %self.model_id, %error, "pre-screen failed on a frame");
            }
        }
        result
    }

    fn run(&self, image: &RgbImage) -> Result<Vec<Detection>, PrescreenError> {
        let infer = |e: TractError| PrescreenError::Inference(format!("{e:#}"));
        let (letterbox, data) = yolo::preprocess(image, self.size)?;
        let s = self.size as usize;
        let input = tract_ndarray::Array4::from_shape_vec((1, 3, s, s), data)
            .map_err(|e| PrescreenError::Inference(e.to_string()))?
            .into_tensor();
        let outputs = self.plan.run(tvec![input.into()]).map_err(infer)?;
        let first = outputs
            .first()
            .ok_or_else(|| PrescreenError::Inference("the model returned no output".into()))?;
        let view = first.try_as_plain_ram().map_err(infer)?;
        let values = view.as_slice::<f32>().map_err(infer)?;
        Ok(yolo::decode(
            values,
            view.shape(),
            self.metadata.names.len(),
            &letterbox,
            &self.decode,
        )?)
    }

    /// The model's classes, from its `names` metadata.
    pub fn class_names(&self) -> &ClassNames {
        &self.metadata.names
    }

    /// All the Ultralytics metadata read from the model.
    pub fn metadata(&self) -> &ModelMetadata {
        &self.metadata
    }

    /// `file name@first 12 hex digits of its SHA-256`, e.g.
    /// `platedet.int8.onnx@1a2b3c4d5e6f`: names the exact weights in events.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// The square input size frames are letterboxed to.
    pub fn input_size(&self) -> u32 {
        self.size
    }

    /// How the file stores its weights.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The file that was loaded (the fallback, if the primary failed).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The decode thresholds in use.
    pub fn decode_config(&self) -> &DecodeConfig {
        &self.decode
    }

    /// The metrics this prescreener records into.
    pub fn metrics(&self) -> &PrescreenMetrics {
        &self.metrics
    }
}

/// `name@sha256[..12]`.
fn model_id(path: &Path, bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{name}@{hex}")
}

/// The element type of the one real input and its fixed square size, if any.
fn input_spec(graph: &pb::GraphProto) -> Result<(DatumType, Option<u32>), String> {
    use pb::tensor_shape_proto::dimension::Value as Dim;
    // Old exporters list initializers among the inputs too.
    let initializers: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<&pb::ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !initializers.contains(i.name.as_str()))
        .collect();
    let [input] = inputs[..] else {
        return Err(format!("expected one input, found {}", inputs.len()));
    };
    let Some(pb::type_proto::Value::TensorType(tensor)) =
        input.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err(format!("input {:?} is not a tensor", input.name));
    };
    let dt = if tensor.elem_type == pb::tensor_proto::DataType::Float as i32 {
        DatumType::F32
    } else if tensor.elem_type == pb::tensor_proto::DataType::Float16 as i32 {
        DatumType::F16
    } else {
        return Err(format!(
            "input {:?} has ONNX element type {}; float32 or float16 is needed",
            input.name, tensor.elem_type
        ));
    };
    // Symbolic or missing dimensions are `None`.
    let dims: Vec<Option<i64>> = tensor
        .shape
        .as_ref()
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match d.value {
                    Some(Dim::DimValue(v)) if v > 0 => Some(v),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    // One frame at a time: the batch must be 1 or dynamic.
    if !matches!(dims.first(), Some(None | Some(1))) {
        return Err(format!(
            "input {:?} has shape {dims:?}; [1, 3, size, size] is needed",
            input.name
        ));
    }
    let fixed = yolo::fixed_input_size(&dims)?;
    Ok((dt, fixed))
}

/// The first output must be a float YOLOv8 detect or seg head for `classes`.
fn check_outputs(model: &TypedModel, classes: usize) -> Result<(), String> {
    let fact = model
        .output_fact(0)
        .map_err(|_| "the model has no outputs".to_owned())?;
    if fact.datum_type != DatumType::F32 {
        return Err(format!(
            "first output is {:?}; float is needed",
            fact.datum_type
        ));
    }
    let shape = fact
        .shape
        .as_concrete()
        .ok_or_else(|| format!("first output has a symbolic shape {:?}", fact.shape))?;
    yolo::OutputLayout::from_shape(shape, classes)
        .map(|_| ())
        .map_err(|e| format!("first output: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_id_is_file_name_and_short_digest() {
        // sha256("") = e3b0c44298fc1c149afbf4c8996fb924...
        assert_eq!(
            model_id(Path::new("/x/y/m.onnx"), b""),
            "m.onnx@e3b0c44298fc"
        );
    }

    fn value_info(name: &str, elem_type: i32, dims: &[i64]) -> pb::ValueInfoProto {
        use pb::tensor_shape_proto::{Dimension, dimension::Value as Dim};
        pb::ValueInfoProto {
            name: name.into(),
            r#type: Some(pb::TypeProto {
                denotation: String::new(),
                value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                    elem_type,
                    shape: Some(pb::TensorShapeProto {
                        dim: dims
                            .iter()
                            .map(|&d| Dimension {
                                denotation: String::new(),
                                value: Some(if d > 0 {
                                    Dim::DimValue(d)
                                } else {
                                    Dim::DimParam("n".into())
                                }),
                            })
                            .collect(),
                    }),
                })),
            }),
            doc_string: String::new(),
        }
    }

    fn graph(inputs: Vec<pb::ValueInfoProto>) -> pb::GraphProto {
        pb::GraphProto {
            input: inputs,
            ..Default::default()
        }
    }

    #[test]
    fn input_specs() {
        let f32_ = pb::tensor_proto::DataType::Float as i32;
        let f16_ = pb::tensor_proto::DataType::Float16 as i32;
        let u8_ = pb::tensor_proto::DataType::Uint8 as i32;
        let ok = |dt, dims: &[i64]| input_spec(&graph(vec![value_info("images", dt, dims)]));
        assert_eq!(ok(f16_, &[1, 3, 640, 640]), Ok((DatumType::F16, Some(640))));
        assert_eq!(ok(f32_, &[0, 3, 0, 0]), Ok((DatumType::F32, None)));
        assert_eq!(ok(f32_, &[1, 3, 320, 320]), Ok((DatumType::F32, Some(320))));
        for (dt, dims) in [
            (u8_, &[1, 3, 640, 640][..]),
            (f32_, &[1, 3, 480, 640]),
            (f32_, &[1, 3, 0, 640]),
            (f32_, &[1, 1, 640, 640]),
            (f32_, &[2, 3, 640, 640]),
            (f32_, &[1, 3, 640]),
        ] {
            assert!(ok(dt, dims).is_err(), "{dt} {dims:?}");
        }
        assert!(input_spec(&graph(vec![])).is_err());
        assert!(
            input_spec(&graph(vec![
                value_info("a", f32_, &[1, 3, 64, 64]),
                value_info("b", f32_, &[1, 3, 64, 64])
            ]))
            .is_err()
        );
    }
}
