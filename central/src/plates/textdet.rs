//! PP-OCR text detection (DB, "differentiable binarisation"): a probability
//! map of text pixels, thresholded into connected components whose boxes are
//! grown back to the text's extent ("unclip"), in image pixels.
//!
//! Input `[1, 3, H, W]` with `H` and `W` multiples of 32, BGR channel order
//! and ImageNet mean/std (the PaddleOCR training pipeline reads images with
//! OpenCV); output `[1, 1, H, W]` probabilities.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use image::RgbImage;
use inspection_core::geometry::BBox;
use ort::environment::Environment;
use ort::session::Session;
use ort::value::Tensor;

use super::PlatesError;

/// A text region in image pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextBox {
    pub bbox: BBox,
    /// Mean text probability over the region's pixels.
    pub score: f32,
}

/// PaddleOCR's DB post-processing defaults: pixels above 0.3 are text, a
/// region is kept when its mean probability is at least 0.5, and boxes grow
/// by `area * 1.6 / perimeter` (the model predicts shrunk text kernels).
const PIXEL_THRESHOLD: f32 = 0.3;
const BOX_THRESHOLD: f32 = 0.5;
const UNCLIP_RATIO: f32 = 1.6;

/// A loaded PP-OCR detection model.
pub struct TextDetector {
    session: Mutex<Session>,
    path: PathBuf,
    input_name: String,
    max_side: u32,
}

impl std::fmt::Debug for TextDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextDetector")
            .field("path", &self.path)
            .field("max_side", &self.max_side)
            .finish()
    }
}

impl TextDetector {
    pub fn load(
        env: &Environment,
        path: &Path,
        max_side: u32,
        intra_threads: usize,
    ) -> Result<Self, PlatesError> {
        let session = super::load_session(env, path, intra_threads)?;
        let [input] = session.inputs() else {
            return Err(PlatesError::UnsupportedModel {
                path: path.to_owned(),
                reason: format!("expected one input, found {}", session.inputs().len()),
            });
        };
        let input_name = input.name().to_owned();
        Ok(Self {
            session: Mutex::new(session),
            path: path.to_owned(),
            input_name,
            max_side,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Text regions in `image`'s pixels, best score first.
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<TextBox>, PlatesError> {
        let (w0, h0) = image.dimensions();
        if w0 == 0 || h0 == 0 {
            return Ok(Vec::new());
        }
        let scale = (self.max_side as f32 / w0.max(h0) as f32).min(1.0);
        let round32 = |v: u32| ((v as f32 * scale / 32.0).round() as u32).max(1) * 32;
        let (w, h) = (round32(w0), round32(h0));
        let resized = image::imageops::resize(image, w, h, image::imageops::FilterType::Triangle);
        let (wu, hu) = (w as usize, h as usize);
        const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
        const STD: [f32; 3] = [0.229, 0.224, 0.225];
        let mut tensor = vec![0f32; 3 * wu * hu];
        for (i, p) in resized.pixels().enumerate() {
            // BGR: channel 0 is blue.
            for c in 0..3 {
                let v = f32::from(p[2 - c]) / 255.0;
                tensor[c * wu * hu + i] = (v - MEAN[c]) / STD[c];
            }
        }
        let infer = |e: ort::Error| PlatesError::Inference(e.to_string());
        let (shape, map) = {
            let input = Tensor::from_array(([1usize, 3, hu, wu], tensor)).map_err(infer)?;
            let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
            let outputs = session
                .run(ort::inputs![self.input_name.as_str() => input])
                .map_err(infer)?;
            let (shape, data) = outputs[0].try_extract_tensor::<f32>().map_err(infer)?;
            (shape.to_vec(), data.to_vec())
        };
        let (mh, mw) = match shape.as_slice() {
            [.., mh, mw] if (*mh * *mw) as usize == map.len() => (*mh as usize, *mw as usize),
            _ => {
                return Err(PlatesError::Inference(format!(
                    "probability map shape {shape:?} is not [1, 1, H, W]"
                )));
            }
        };
        let (fx, fy) = (w0 as f32 / mw as f32, h0 as f32 / mh as f32);
        let mut boxes = boxes_from_probability_map(&map, mw, mh);
        for b in &mut boxes {
            b.bbox = BBox::new(
                (b.bbox.x1 * fx).clamp(0.0, w0 as f32),
                (b.bbox.y1 * fy).clamp(0.0, h0 as f32),
                (b.bbox.x2 * fx).clamp(0.0, w0 as f32),
                (b.bbox.y2 * fy).clamp(0.0, h0 as f32),
            );
        }
        Ok(boxes)
    }
}

/// DB post-processing on a `width x height` probability map: 4-connected
/// components of pixels above 0.3, kept when their mean probability is at
/// least 0.5 and they are at least 3 px on each side, each grown by
/// `area * 1.6 / perimeter` on every side. Boxes are in map pixels, best
/// score first.
pub fn boxes_from_probability_map(map: &[f32], width: usize, height: usize) -> Vec<TextBox> {
    let mut seen = vec![false; map.len()];
    let mut stack = Vec::new();
    let mut out = Vec::new();
    for start in 0..map.len().min(width * height) {
        if seen[start] || map[start] <= PIXEL_THRESHOLD {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let (mut x1, mut y1, mut x2, mut y2) = (usize::MAX, usize::MAX, 0, 0);
        let (mut sum, mut n) = (0f32, 0usize);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % width, i / width);
            x1 = x1.min(x);
            y1 = y1.min(y);
            x2 = x2.max(x);
            y2 = y2.max(y);
            sum += map[i];
            n += 1;
            let mut visit = |j: usize| {
                if !seen[j] && map[j] > PIXEL_THRESHOLD {
                    seen[j] = true;
                    stack.push(j);
                }
            };
            if x > 0 {
                visit(i - 1);
            }
            if x + 1 < width {
                visit(i + 1);
            }
            if y > 0 {
                visit(i - width);
            }
            if y + 1 < height {
                visit(i + width);
            }
        }
        let (w, h) = ((x2 - x1 + 1) as f32, (y2 - y1 + 1) as f32);
        let score = sum / n as f32;
        if w < 3.0 || h < 3.0 || score < BOX_THRESHOLD {
            continue;
        }
        let d = w * h * UNCLIP_RATIO / (2.0 * (w + h));
        out.push(TextBox {
            bbox: BBox::new(
                x1 as f32 - d,
                y1 as f32 - d,
                x2 as f32 + 1.0 + d,
                y2 as f32 + 1.0 + d,
            ),
            score,
        });
    }
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out
}

/// Joins boxes that sit on one text line with a gap under one line height
/// between them: a plate's groups (`AB 123 CD`) may come out as separate
/// words.
pub fn merge_line_boxes(mut boxes: Vec<TextBox>) -> Vec<TextBox> {
    boxes.sort_by(|a, b| a.bbox.x1.total_cmp(&b.bbox.x1));
    let mut merged: Vec<TextBox> = Vec::new();
    'next: for b in boxes {
        for m in merged.iter_mut() {
            let overlap = m.bbox.y2.min(b.bbox.y2) - m.bbox.y1.max(b.bbox.y1);
            let min_h = m.bbox.height().min(b.bbox.height());
            let max_h = m.bbox.height().max(b.bbox.height());
            let gap = b.bbox.x1 - m.bbox.x2;
            if overlap > 0.6 * min_h && max_h < 1.5 * min_h && gap < min_h {
                m.bbox = BBox::new(
                    m.bbox.x1.min(b.bbox.x1),
                    m.bbox.y1.min(b.bbox.y1),
                    m.bbox.x2.max(b.bbox.x2),
                    m.bbox.y2.max(b.bbox.y2),
                );
                m.score = m.score.min(b.score);
                continue 'next;
            }
        }
        merged.push(b);
    }
    merged.sort_by(|a, b| b.score.total_cmp(&a.score));
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_become_unclipped_boxes_and_weak_ones_are_dropped() {
        let (w, h) = (40, 20);
        let mut map = vec![0f32; w * h];
        // A strong 10x4 region at (5, 8) and a weak one (mean 0.4) at (25, 8).
        for y in 8..12 {
            for x in 5..15 {
                map[y * w + x] = 0.9;
            }
            for x in 25..35 {
                map[y * w + x] = 0.4;
            }
        }
        let boxes = boxes_from_probability_map(&map, w, h);
        assert_eq!(boxes.len(), 1, "{boxes:?}");
        let b = boxes[0];
        let d = 10.0 * 4.0 * 1.6 / 28.0;
        assert!((b.bbox.x1 - (5.0 - d)).abs() < 1e-4 && (b.bbox.x2 - (15.0 + d)).abs() < 1e-4);
        assert!((b.bbox.y1 - (8.0 - d)).abs() < 1e-4 && (b.bbox.y2 - (12.0 + d)).abs() < 1e-4);
        assert!((b.score - 0.9).abs() < 1e-6);
    }

    #[test]
    fn words_on_one_line_merge_but_lines_do_not() {
        let tb = |x1, y1, x2, y2| TextBox {
            bbox: BBox::new(x1, y1, x2, y2),
            score: 0.8,
        };
        let merged = merge_line_boxes(vec![
            tb(0.0, 0.0, 30.0, 20.0),
            tb(40.0, 1.0, 80.0, 21.0),
            tb(0.0, 40.0, 30.0, 60.0),
        ]);
        assert_eq!(merged.len(), 2, "{merged:?}");
        assert!(merged.iter().any(|m| m.bbox.x2 == 80.0 && m.bbox.x1 == 0.0));
    }
}
