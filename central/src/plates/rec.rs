//! PP-OCR text recognition (v4 and v6 rec exports) with greedy CTC decoding.
//!
//! Input `[N, 3, 48, W]`, RGB, `(x / 255 - 0.5) / 0.5`; output `[N, T, C]`
//! class probabilities per time step, with class 0 the CTC blank, classes
//! `1..=D` the dictionary of the model's metadata key `character` (one entry
//! per line) and class `D + 1` a space.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use image::RgbImage;
use ort::environment::Environment;
use ort::session::Session;
use ort::value::Tensor;
use serde::Deserialize;

use super::PlatesError;

/// The recogniser's input height; PP-OCR rec models are trained at 48.
pub const REC_HEIGHT: u32 = 48;

/// How the CTC output is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decoding {
    /// Every class of the model's dictionary.
    Full,
    /// Only the blank, `A-Z`, `0-9`, space and `-`: the other classes are
    /// masked out of each time step and the rest renormalised, as if their
    /// logits were minus infinity.
    PlateAlphabet,
}

/// One crop's text.
#[derive(Debug, Clone, PartialEq)]
pub struct Recognition {
    pub text: String,
    /// Probability of each character of `text`, in order.
    pub char_probs: Vec<f32>,
}

impl Recognition {
    /// The weakest character's probability (0 for no text): a plate is only
    /// as right as its least certain character.
    pub fn min_prob(&self) -> f32 {
        if self.char_probs.is_empty() {
            0.0
        } else {
            self.char_probs.iter().copied().fold(1.0, f32::min)
        }
    }

    /// The mean character probability (PaddleOCR's score; 0 for no text).
    pub fn mean_prob(&self) -> f32 {
        if self.char_probs.is_empty() {
            0.0
        } else {
            self.char_probs.iter().sum::<f32>() / self.char_probs.len() as f32
        }
    }
}

/// A loaded PP-OCR recognition model.
pub struct Recognizer {
    // One run at a time per session, as in `OnnxDetector`; a poisoned lock
    // cannot leave the session half-updated, so it is reused.
    session: Mutex<Session>,
    path: PathBuf,
    input_name: String,
    /// Class index to its text: `""` for the blank, `" "` for the last class.
    labels: Vec<String>,
    /// Classes allowed by [`Decoding::PlateAlphabet`], the blank included.
    plate_mask: Vec<bool>,
    /// A fixed input width, when the export has one.
    fixed_width: Option<u32>,
}

impl std::fmt::Debug for Recognizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recognizer")
            .field("path", &self.path)
            .field("classes", &self.labels.len())
            .finish()
    }
}

impl Recognizer {
    pub fn load(env: &Environment, path: &Path, intra_threads: usize) -> Result<Self, PlatesError> {
        let session = super::load_session(env, path, intra_threads)?;
        let unsupported = |reason: String| PlatesError::UnsupportedModel {
            path: path.to_owned(),
            reason,
        };
        let dictionary = {
            let meta = session.metadata().map_err(|e| unsupported(e.to_string()))?;
            meta.custom("character")
                .ok_or_else(|| unsupported("no `character` metadata (the dictionary)".into()))?
        };
        let mut labels = vec![String::new()];
        labels.extend(dictionary.lines().map(str::to_owned));
        labels.push(" ".into());
        let plate_mask = labels
            .iter()
            .enumerate()
            .map(|(i, l)| i == 0 || is_plate_label(l))
            .collect();
        let [input] = session.inputs() else {
            return Err(unsupported(format!(
                "expected one input, found {}",
                session.inputs().len()
            )));
        };
        let dims: Vec<i64> = match input.dtype() {
            ort::value::ValueType::Tensor { shape, .. } => shape.to_vec(),
            other => return Err(unsupported(format!("input {other:?} is not a tensor"))),
        };
        if dims.len() != 4 || (dims[2] > 0 && dims[2] != i64::from(REC_HEIGHT)) {
            return Err(unsupported(format!(
                "input shape {dims:?} is not [N, 3, 48, W]"
            )));
        }
        let fixed_width = u32::try_from(dims[3]).ok().filter(|&w| w > 0);
        let input_name = input.name().to_owned();
        Ok(Self {
            session: Mutex::new(session),
            path: path.to_owned(),
            input_name,
            labels,
            plate_mask,
            fixed_width,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of output classes the dictionary implies.
    pub fn classes(&self) -> usize {
        self.labels.len()
    }

    /// Reads each line image (any size; resized to height 48, width by
    /// aspect, capped at `max_width`) in one batch.
    pub fn recognize(
        &self,
        lines: &[RgbImage],
        decoding: Decoding,
    ) -> Result<Vec<Recognition>, PlatesError> {
        if lines.is_empty() {
            return Ok(Vec::new());
        }
        let h = REC_HEIGHT as usize;
        let widths: Vec<usize> = lines
            .iter()
            .map(|l| {
                let w = if l.height() == REC_HEIGHT {
                    l.width()
                } else {
                    (l.width() as f32 * REC_HEIGHT as f32 / l.height().max(1) as f32).round() as u32
                };
                w.clamp(16, MAX_REC_WIDTH) as usize
            })
            .collect();
        // The batch is padded to its widest line (or the export's fixed width)
        // with zeros, i.e. mid-grey after normalisation, as PaddleOCR does.
        let batch_w = self.fixed_width.map_or_else(
            || widths.iter().copied().max().unwrap_or(16),
            |w| w as usize,
        );
        let n = lines.len();
        let mut tensor = vec![0f32; n * 3 * h * batch_w];
        for (i, (line, &w)) in lines.iter().zip(&widths).enumerate() {
            let w = w.min(batch_w);
            let resized;
            let img = if line.width() as usize == w && line.height() == REC_HEIGHT {
                line
            } else {
                resized = image::imageops::resize(
                    line,
                    w as u32,
                    REC_HEIGHT,
                    image::imageops::FilterType::Triangle,
                );
                &resized
            };
            let base = i * 3 * h * batch_w;
            for (x, y, p) in img.enumerate_pixels() {
                let (x, y) = (x as usize, y as usize);
                for c in 0..3 {
                    tensor[base + c * h * batch_w + y * batch_w + x] =
                        (f32::from(p[c]) / 255.0 - 0.5) / 0.5;
                }
            }
        }
        let infer = |e: ort::Error| PlatesError::Inference(e.to_string());
        let (shape, probs) = {
            let input = Tensor::from_array(([n, 3, h, batch_w], tensor)).map_err(infer)?;
            let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
            let outputs = session
                .run(ort::inputs![self.input_name.as_str() => input])
                .map_err(infer)?;
            let (shape, data) = outputs[0].try_extract_tensor::<f32>().map_err(infer)?;
            (shape.to_vec(), data.to_vec())
        };
        let [bn, t, c] = shape.as_slice() else {
            return Err(PlatesError::Inference(format!(
                "output shape {shape:?} is not [N, T, C]"
            )));
        };
        let (bn, t, c) = (*bn as usize, *t as usize, *c as usize);
        if bn != n || c != self.labels.len() {
            return Err(PlatesError::Inference(format!(
                "output [{bn}, {t}, {c}] does not fit {n} lines and {} classes",
                self.labels.len()
            )));
        }
        let mask = match decoding {
            Decoding::Full => None,
            Decoding::PlateAlphabet => Some(self.plate_mask.as_slice()),
        };
        Ok(probs
            .chunks_exact(t * c)
            .map(|frames| ctc_greedy(frames, c, &self.labels, mask))
            .collect())
    }
}

/// The widest line the recogniser is given; wider ones are squeezed. A plate
/// with its margin is about 5:1, i.e. 240 px at height 48.
pub const MAX_REC_WIDTH: u32 = 640;

fn is_plate_label(label: &str) -> bool {
    let mut chars = label.chars();
    matches!((chars.next(), chars.next()), (Some(c), None)
        if c.is_ascii_uppercase() || c.is_ascii_digit() || c == ' ' || c == '-')
}

/// Greedy CTC over `frames` (`T x classes`, row-major): the best class per
/// time step, repeats collapsed, blanks (class 0) dropped. Each character's
/// probability is the highest of its run. With `mask`, only classes marked
/// `true` compete and their probabilities are renormalised over the allowed
/// set. Raw scores (not summing to 1) are softmaxed first.
pub fn ctc_greedy(
    frames: &[f32],
    classes: usize,
    labels: &[String],
    mask: Option<&[bool]>,
) -> Recognition {
    let mut text = String::new();
    let mut char_probs: Vec<f32> = Vec::new();
    let mut prev = 0usize;
    let mut row = vec![0f32; classes];
    for frame in frames.chunks_exact(classes) {
        row.copy_from_slice(frame);
        let sum: f32 = row.iter().sum();
        if row.iter().any(|&p| p < 0.0) || (sum - 1.0).abs() > 0.05 {
            softmax(&mut row);
        }
        let mut best = 0usize;
        let mut best_p = f32::MIN;
        let mut allowed_sum = 0f32;
        for (k, &p) in row.iter().enumerate() {
            if mask.is_some_and(|m| !m.get(k).copied().unwrap_or(false)) {
                continue;
            }
            allowed_sum += p;
            if p > best_p {
                best_p = p;
                best = k;
            }
        }
        let p = if mask.is_some() && allowed_sum > 0.0 {
            best_p / allowed_sum
        } else {
            best_p
        };
        if best != 0 {
            if best == prev {
                if let Some(last) = char_probs.last_mut() {
                    *last = last.max(p);
                }
            } else {
                text.push_str(labels.get(best).map_or("", String::as_str));
                char_probs.push(p);
            }
        }
        prev = best;
    }
    // Labels are one character each in practice; keep probabilities aligned
    // with characters even if a label were longer.
    if text.chars().count() != char_probs.len() {
        let min = char_probs.iter().copied().fold(1.0, f32::min);
        char_probs = vec![min; text.chars().count()];
    }
    Recognition { text, char_probs }
}

fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::MIN, f32::max);
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in row.iter_mut() {
        *v /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<String> {
        ["", "A", "b", "1", "中", " "].map(String::from).to_vec()
    }

    fn frame(hot: usize, p: f32) -> Vec<f32> {
        let mut f = vec![(1.0 - p) / 5.0; 6];
        f[hot] = p;
        f
    }

    #[test]
    fn collapses_repeats_drops_blanks_and_keeps_the_best_probability_of_a_run() {
        let frames: Vec<f32> = [(1, 0.6), (1, 0.9), (0, 0.9), (1, 0.8), (3, 0.7), (5, 0.95)]
            .iter()
            .flat_map(|&(k, p)| frame(k, p))
            .collect();
        let r = ctc_greedy(&frames, 6, &labels(), None);
        assert_eq!(r.text, "AA1 ");
        assert_eq!(r.char_probs, vec![0.9, 0.8, 0.7, 0.95]);
        assert!((r.min_prob() - 0.7).abs() < 1e-6);
    }

    #[test]
    fn the_plate_mask_replaces_foreign_classes_and_renormalises() {
        // Step 0: "中" wins unmasked; masked, "A" (0.3) wins among blank,
        // "A", "1" and space.
        let frames = vec![0.05, 0.3, 0.05, 0.05, 0.5, 0.05];
        let full = ctc_greedy(&frames, 6, &labels(), None);
        assert_eq!(full.text, "中");
        let mask: Vec<bool> = labels()
            .iter()
            .enumerate()
            .map(|(i, l)| i == 0 || is_plate_label(l))
            .collect();
        let masked = ctc_greedy(&frames, 6, &labels(), Some(&mask));
        assert_eq!(masked.text, "A");
        assert!((masked.char_probs[0] - 0.3 / 0.45).abs() < 1e-5);
    }

    #[test]
    fn logits_are_softmaxed() {
        let frames = vec![0.0, 5.0, 0.0, 0.0, 0.0, 0.0];
        let r = ctc_greedy(&frames, 6, &labels(), None);
        assert_eq!(r.text, "A");
        assert!(r.char_probs[0] > 0.95 && r.char_probs[0] < 1.0);
        assert_eq!(ctc_greedy(&[], 6, &labels(), None).min_prob(), 0.0);
    }
}
