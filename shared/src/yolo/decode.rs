//! Decoding of YOLOv8 detect and seg heads (`[B, 4 + nc (+ nm), N]`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::nms::rank_and_suppress;
use super::{Letterbox, YoloError};
use crate::geometry::BBox;

/// Mask coefficients per anchor of a stock Ultralytics seg head (and
/// channels of its prototype tensor).
pub const MASK_COEFFS: usize = 32;

/// Candidates kept (best scores first) before NMS, as Ultralytics' `max_nms`:
/// an untrained or corrupted model that fires everywhere cannot make NMS run
/// for ever.
pub const MAX_NMS_CANDIDATES: usize = 30_000;

/// Thresholds for turning raw head outputs into detections. Part of the TOML
/// configuration of both services; call [`DecodeConfig::validate`] after
/// loading (decoding also refuses an invalid one).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DecodeConfig {
    /// Minimum class score (0..=1) for a candidate to be considered.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub conf_threshold: f32,
    /// A box is suppressed when its IoU (0..=1) with a better box of the same
    /// class (any class if `class_agnostic`) is above this.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub iou_threshold: f32,
    /// Most detections returned per image (1 to [`MAX_DETECTIONS_LIMIT`]).
    #[schemars(range(min = 1, max = 3000))]
    pub max_detections: usize,
    /// Let boxes of different classes suppress each other.
    pub class_agnostic: bool,
}

/// Upper bound of `max_detections`: NMS work grows with the square of the
/// kept boxes, and no camera frame holds thousands of real objects.
pub const MAX_DETECTIONS_LIMIT: usize = 3000;

impl Default for DecodeConfig {
    /// Ultralytics' predict defaults, except `iou` 0.45 (the YOLOv5/v8 CLI
    /// value) rather than 0.7.
    fn default() -> Self {
        Self {
            conf_threshold: 0.25,
            iou_threshold: 0.45,
            max_detections: 300,
            class_agnostic: false,
        }
    }
}

impl DecodeConfig {
    /// Checks every field and reports all problems at once, one message each.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        for (name, v) in [
            ("conf_threshold", self.conf_threshold),
            ("iou_threshold", self.iou_threshold),
        ] {
            if !(0.0..=1.0).contains(&v) {
                problems.push(format!("{name} must be within [0, 1], got {v}"));
            }
        }
        if !(1..=MAX_DETECTIONS_LIMIT).contains(&self.max_detections) {
            problems.push(format!(
                "max_detections must be between 1 and {MAX_DETECTIONS_LIMIT}, got {}",
                self.max_detections
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// One detected object, in pixels of the original (not letterboxed) image.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// Box clamped to the original image; finite with a positive area.
    pub bbox: BBox,
    /// The best class score, in the export's (sigmoid) scale.
    pub score: f32,
    /// Index into the model's class names.
    pub class_id: usize,
    /// Mask coefficients for the prototypes of a seg head; empty for detect.
    pub mask_coeffs: Vec<f32>,
}

/// Which head produced an output, derived from its channel count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadKind {
    /// `4 + nc` channels.
    Detect,
    /// `4 + nc + mask_coeffs` channels (`mask_coeffs` is 32 in stock models).
    Segment {
        /// Number of mask coefficients per anchor.
        mask_coeffs: usize,
    },
}

/// The validated layout of a `[batch, channels, anchors]` head output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLayout {
    /// Images in the batch.
    pub batch: usize,
    /// `4 + num_classes (+ mask coefficients)`.
    pub channels: usize,
    /// Anchor points (8400 for a 640 input).
    pub anchors: usize,
    /// Classes in the model.
    pub num_classes: usize,
    /// Detect or seg head.
    pub kind: HeadKind,
}

impl OutputLayout {
    /// Reads a head output shape: `4 + num_classes` channels is a detect
    /// head, `4 + num_classes + 32` a seg head (stock Ultralytics). Anything
    /// else, including a transposed `[batch, anchors, channels]` tensor or a
    /// class count that does not match the model, is an error.
    pub fn from_shape(shape: &[usize], num_classes: usize) -> Result<Self, YoloError> {
        Self::from_shape_with_mask_coeffs(shape, num_classes, MASK_COEFFS)
    }

    /// As [`OutputLayout::from_shape`] for seg heads with `mask_coeffs`
    /// coefficients instead of 32 (a custom `Segment(nm=...)` head).
    pub fn from_shape_with_mask_coeffs(
        shape: &[usize],
        num_classes: usize,
        mask_coeffs: usize,
    ) -> Result<Self, YoloError> {
        if num_classes == 0 {
            return Err(YoloError::NoClasses);
        }
        let &[batch, channels, anchors] = shape else {
            return Err(YoloError::ShapeRank {
                what: "detection output",
                expected: "[batch, 4 + classes (+ mask coefficients), anchors]",
                actual: shape.to_vec(),
            });
        };
        let detect = num_classes
            .checked_add(4)
            .ok_or_else(|| overflow("detection output", shape))?;
        let segment = detect
            .checked_add(mask_coeffs)
            .ok_or_else(|| overflow("detection output", shape))?;
        let kind = if channels == detect {
            HeadKind::Detect
        } else if channels == segment && mask_coeffs > 0 {
            HeadKind::Segment { mask_coeffs }
        } else {
            return Err(YoloError::ChannelMismatch {
                channels,
                num_classes,
                mask_coeffs,
                detect,
                segment,
            });
        };
        checked_len("detection output", shape)?;
        Ok(Self {
            batch,
            channels,
            anchors,
            num_classes,
            kind,
        })
    }

    /// Mask coefficients per anchor (0 for a detect head).
    pub fn mask_coeffs(&self) -> usize {
        match self.kind {
            HeadKind::Detect => 0,
            HeadKind::Segment { mask_coeffs } => mask_coeffs,
        }
    }
}

fn overflow(what: &'static str, shape: &[usize]) -> YoloError {
    YoloError::ShapeOverflow {
        what,
        shape: shape.to_vec(),
    }
}

/// The product of a shape, or an error when it overflows.
pub(super) fn checked_len(what: &'static str, shape: &[usize]) -> Result<usize, YoloError> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| overflow(what, shape))
}

/// Decodes a batch-1 head output (`[1, 4 + nc (+ 32), N]`) into detections
/// in original-image pixels, best first. `num_classes` comes from the model's
/// `names` metadata ([`ClassNames::len`](super::ClassNames::len)).
pub fn decode(
    output: &[f32],
    shape: &[usize],
    num_classes: usize,
    letterbox: &Letterbox,
    cfg: &DecodeConfig,
) -> Result<Vec<Detection>, YoloError> {
    let layout = OutputLayout::from_shape(shape, num_classes)?;
    if layout.batch != 1 {
        return Err(YoloError::LetterboxCount {
            letterboxes: 1,
            batch: layout.batch,
        });
    }
    decode_with_layout(output, &layout, 0, letterbox, cfg)
}

/// Decodes item `batch_index` of a batched head output.
pub fn decode_item(
    output: &[f32],
    shape: &[usize],
    num_classes: usize,
    batch_index: usize,
    letterbox: &Letterbox,
    cfg: &DecodeConfig,
) -> Result<Vec<Detection>, YoloError> {
    let layout = OutputLayout::from_shape(shape, num_classes)?;
    decode_with_layout(output, &layout, batch_index, letterbox, cfg)
}

/// Decodes every item of a batched head output; `letterboxes[i]` belongs to
/// batch item `i`.
pub fn decode_batch(
    output: &[f32],
    shape: &[usize],
    num_classes: usize,
    letterboxes: &[Letterbox],
    cfg: &DecodeConfig,
) -> Result<Vec<Vec<Detection>>, YoloError> {
    let layout = OutputLayout::from_shape(shape, num_classes)?;
    if letterboxes.len() != layout.batch {
        return Err(YoloError::LetterboxCount {
            letterboxes: letterboxes.len(),
            batch: layout.batch,
        });
    }
    letterboxes
        .iter()
        .enumerate()
        .map(|(b, lb)| decode_with_layout(output, &layout, b, lb, cfg))
        .collect()
}

/// Decodes item `batch_index` of an output whose layout the caller built,
/// e.g. with [`OutputLayout::from_shape_with_mask_coeffs`] for a custom seg
/// head. The layout is re-checked against the data (its fields are public).
pub fn decode_with_layout(
    output: &[f32],
    layout: &OutputLayout,
    batch_index: usize,
    letterbox: &Letterbox,
    cfg: &DecodeConfig,
) -> Result<Vec<Detection>, YoloError> {
    cfg.validate().map_err(YoloError::InvalidConfig)?;
    let shape = [layout.batch, layout.channels, layout.anchors];
    // The fields are public: re-derive the layout from them so that an
    // inconsistent hand-built one is an error, not an out-of-bounds slice.
    OutputLayout::from_shape_with_mask_coeffs(&shape, layout.num_classes, layout.mask_coeffs())?;
    let expected = checked_len("detection output", &shape)?;
    if output.len() != expected {
        return Err(YoloError::DataLength {
            what: "detection output",
            shape: shape.to_vec(),
            expected,
            actual: output.len(),
        });
    }
    if batch_index >= layout.batch {
        return Err(YoloError::BatchIndex {
            index: batch_index,
            batch: layout.batch,
        });
    }
    let len = layout.channels * layout.anchors;
    let item = &output[batch_index * len..(batch_index + 1) * len];
    Ok(decode_slice(item, layout, letterbox, cfg))
}

/// A candidate before NMS; mask coefficients are gathered only for winners.
struct Candidate {
    anchor: usize,
    bbox: BBox,
    score: f32,
    class_id: usize,
}

/// Decodes one `[channels, anchors]` item whose length `prepare` checked.
fn decode_slice(
    item: &[f32],
    layout: &OutputLayout,
    lb: &Letterbox,
    cfg: &DecodeConfig,
) -> Vec<Detection> {
    let n = layout.anchors;
    let nc = layout.num_classes;
    if n == 0 {
        return Vec::new();
    }
    // Best class per anchor, row by row: each class row is contiguous, so
    // this streams through memory instead of striding by N per anchor.
    let mut best = vec![f32::NEG_INFINITY; n];
    let mut best_class = vec![0usize; n];
    for (c, row) in item[4 * n..(4 + nc) * n].chunks_exact(n).enumerate() {
        for ((&s, b), bc) in row.iter().zip(best.iter_mut()).zip(best_class.iter_mut()) {
            // NaN compares false and is never picked.
            if s > *b {
                *b = s;
                *bc = c;
            }
        }
    }

    let (cx, rest) = item.split_at(n);
    let (cy, rest) = rest.split_at(n);
    let (w, rest) = rest.split_at(n);
    let h = &rest[..n];
    let mut candidates: Vec<Candidate> = Vec::new();
    for (anchor, (&score, &class_id)) in best.iter().zip(&best_class).enumerate() {
        if !(score >= cfg.conf_threshold && score.is_finite()) {
            continue;
        }
        let raw = [cx[anchor], cy[anchor], w[anchor], h[anchor]];
        // Checked before clamping, which would turn infinities into edges.
        if !raw.iter().all(|v| v.is_finite()) {
            continue;
        }
        let bbox = lb.to_original(BBox::from_cxcywh(raw[0], raw[1], raw[2], raw[3]));
        if !bbox.is_finite() || bbox.area() <= 0.0 {
            continue;
        }
        candidates.push(Candidate {
            anchor,
            bbox,
            score,
            class_id,
        });
    }

    // Stable: equal scores keep anchor order. Mask coefficients are gathered
    // only for the kept few, after NMS.
    let kept = rank_and_suppress(&mut candidates, |c| (c.bbox, c.score, c.class_id), cfg);

    let coeff_rows = &item[(4 + nc) * n..];
    kept.into_iter()
        .map(|k| {
            let c = &candidates[k];
            Detection {
                bbox: c.bbox,
                score: c.score,
                class_id: c.class_id,
                mask_coeffs: coeff_rows
                    .iter()
                    .skip(c.anchor)
                    .step_by(n)
                    .copied()
                    .collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A `[1, channels, n]` tensor from per-anchor columns.
    fn tensor(columns: &[Vec<f32>]) -> (Vec<f32>, Vec<usize>) {
        let n = columns.len();
        let c = columns[0].len();
        let mut data = vec![0.0; c * n];
        for (a, col) in columns.iter().enumerate() {
            for (ch, v) in col.iter().enumerate() {
                data[ch * n + a] = *v;
            }
        }
        (data, vec![1, c, n])
    }

    fn lb_1280x720() -> Letterbox {
        Letterbox::new(1280, 720, 640).unwrap()
    }

    #[test]
    fn detect_head_decodes_maps_and_sorts() {
        // Two classes. Anchor 0: class 1 at 0.9, box centred (320, 320) 100x50
        // in letterbox pixels. Anchor 1: below threshold. Anchor 2: class 0 at
        // 0.6 elsewhere. Anchor 3: entirely in the top padding -> dropped.
        let (data, shape) = tensor(&[
            vec![320.0, 320.0, 100.0, 50.0, 0.1, 0.9],
            vec![100.0, 300.0, 20.0, 20.0, 0.2, 0.1],
            vec![100.0, 300.0, 20.0, 20.0, 0.6, 0.3],
            vec![100.0, 50.0, 20.0, 20.0, 0.0, 0.95],
        ]);
        let dets = decode(&data, &shape, 2, &lb_1280x720(), &DecodeConfig::default()).unwrap();
        assert_eq!(dets.len(), 2);
        assert_eq!(dets[0].class_id, 1);
        assert_eq!(dets[0].score, 0.9);
        // (270..370, 295..345) letterbox -> minus pad_y 140, times 2.
        assert_eq!(dets[0].bbox, BBox::new(540.0, 310.0, 740.0, 410.0));
        assert!(dets[0].mask_coeffs.is_empty());
        assert_eq!(dets[1].class_id, 0);
        assert_eq!(dets[1].bbox, BBox::new(180.0, 300.0, 220.0, 340.0));
    }

    #[test]
    fn seg_head_carries_mask_coefficients() {
        let coeffs: Vec<f32> = (0..32).map(|k| k as f32).collect();
        let mut a0 = vec![320.0, 320.0, 100.0, 50.0, 0.8];
        a0.extend(&coeffs);
        let mut a1 = vec![320.0, 320.0, 100.0, 50.0, 0.1];
        a1.extend(coeffs.iter().map(|c| -c));
        let (data, shape) = tensor(&[a0, a1]);
        assert_eq!(shape, vec![1, 37, 2]);
        let layout = OutputLayout::from_shape(&shape, 1).unwrap();
        assert_eq!(layout.kind, HeadKind::Segment { mask_coeffs: 32 });
        let dets = decode(&data, &shape, 1, &lb_1280x720(), &DecodeConfig::default()).unwrap();
        assert_eq!(dets.len(), 1);
        assert_eq!(dets[0].mask_coeffs, coeffs);
    }

    #[test]
    fn custom_seg_heads_need_an_explicit_layout() {
        let (data, shape) = tensor(&[vec![320.0, 320.0, 100.0, 50.0, 0.8, 1.0, 2.0, 3.0]]);
        let lb = lb_1280x720();
        let cfg = DecodeConfig::default();
        assert!(matches!(
            decode(&data, &shape, 1, &lb, &cfg),
            Err(YoloError::ChannelMismatch { channels: 8, .. })
        ));
        let layout = OutputLayout::from_shape_with_mask_coeffs(&shape, 1, 3).unwrap();
        assert_eq!(layout.mask_coeffs(), 3);
        let dets = decode_with_layout(&data, &layout, 0, &lb, &cfg).unwrap();
        assert_eq!(dets[0].mask_coeffs, vec![1.0, 2.0, 3.0]);
        // A hand-built inconsistent layout is refused, not trusted.
        let bad = OutputLayout {
            anchors: 1000,
            ..layout
        };
        assert!(matches!(
            decode_with_layout(&data, &bad, 0, &lb, &cfg),
            Err(YoloError::DataLength { .. })
        ));
        let bad = OutputLayout {
            kind: HeadKind::Detect,
            ..layout
        };
        assert!(decode_with_layout(&data, &bad, 0, &lb, &cfg).is_err());
    }

    #[test]
    fn wrong_shapes_are_typed_errors() {
        let cfg = DecodeConfig::default();
        let lb = lb_1280x720();
        // Class count that does not match the model.
        let data = vec![0.0; 8400 * 6];
        let err = decode(&data, &[1, 6, 8400], 80, &lb, &cfg).unwrap_err();
        assert_eq!(
            err,
            YoloError::ChannelMismatch {
                channels: 6,
                num_classes: 80,
                mask_coeffs: 32,
                detect: 84,
                segment: 116,
            }
        );
        assert!(
            err.to_string()
                .starts_with("output has 6 channels but 4 + 80 classes (+ 32 mask coefficients)"),
            "{err}"
        );
        // Transposed [1, N, C].
        let data = vec![0.0; 8400 * 84];
        assert!(matches!(
            decode(&data, &[1, 8400, 84], 80, &lb, &cfg),
            Err(YoloError::ChannelMismatch { .. })
        ));
        assert!(matches!(
            decode(&data, &[84, 8400], 80, &lb, &cfg),
            Err(YoloError::ShapeRank { .. })
        ));
        assert!(matches!(
            decode(&data[1..], &[1, 84, 8400], 80, &lb, &cfg),
            Err(YoloError::DataLength { .. })
        ));
        assert!(matches!(
            decode(&data, &[1, 84, 8400], 0, &lb, &cfg),
            Err(YoloError::NoClasses)
        ));
        assert!(matches!(
            decode(&[], &[usize::MAX, 84, 8400], 80, &lb, &cfg),
            Err(YoloError::ShapeOverflow { .. })
        ));
        assert!(matches!(
            decode(&[], &[1, usize::MAX, 1], usize::MAX, &lb, &cfg),
            Err(YoloError::ShapeOverflow { .. })
        ));
        let empty = decode(&[], &[1, 84, 0], 80, &lb, &cfg).unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn batches_decode_per_item() {
        let (mut data, _) = tensor(&[vec![320.0, 320.0, 100.0, 50.0, 0.9]]);
        data.extend([320.0, 320.0, 10.0, 10.0, 0.3]);
        let shape = [2, 5, 1];
        let cfg = DecodeConfig::default();
        let lbs = [lb_1280x720(), Letterbox::new(640, 640, 640).unwrap()];
        let all = decode_batch(&data, &shape, 1, &lbs, &cfg).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1][0].bbox, BBox::new(315.0, 315.0, 325.0, 325.0));
        assert_eq!(all[1][0].score, 0.3);
        assert_eq!(
            decode_item(&data, &shape, 1, 1, &lbs[1], &cfg).unwrap(),
            all[1]
        );
        assert!(matches!(
            decode_item(&data, &shape, 1, 2, &lbs[1], &cfg),
            Err(YoloError::BatchIndex { index: 2, batch: 2 })
        ));
        assert!(matches!(
            decode(&data, &shape, 1, &lbs[0], &cfg),
            Err(YoloError::LetterboxCount { .. })
        ));
        assert!(matches!(
            decode_batch(&data, &shape, 1, &lbs[..1], &cfg),
            Err(YoloError::LetterboxCount { .. })
        ));
    }

    #[test]
    fn nan_and_infinite_values_are_skipped() {
        let (data, shape) = tensor(&[
            vec![320.0, 320.0, 100.0, 50.0, f32::NAN, 0.5],
            vec![f32::NAN, 320.0, 100.0, 50.0, 0.9, 0.1],
            vec![320.0, 320.0, f32::INFINITY, 50.0, 0.9, 0.1],
            vec![320.0, 320.0, 10.0, 10.0, f32::INFINITY, 0.1],
            vec![320.0, 320.0, 10.0, 0.0, 0.9, 0.1],
        ]);
        let dets = decode(&data, &shape, 2, &lb_1280x720(), &DecodeConfig::default()).unwrap();
        assert_eq!(dets.len(), 1);
        assert_eq!((dets[0].class_id, dets[0].score), (1, 0.5));
    }

    #[test]
    fn nms_in_decode_is_class_aware_unless_agnostic() {
        let (data, shape) = tensor(&[
            vec![320.0, 320.0, 100.0, 100.0, 0.9, 0.0],
            vec![322.0, 320.0, 100.0, 100.0, 0.8, 0.0],
            vec![321.0, 320.0, 100.0, 100.0, 0.0, 0.7],
        ]);
        let lb = Letterbox::new(640, 640, 640).unwrap();
        let dets = decode(&data, &shape, 2, &lb, &DecodeConfig::default()).unwrap();
        let got: Vec<(usize, f32)> = dets.iter().map(|d| (d.class_id, d.score)).collect();
        assert_eq!(got, vec![(0, 0.9), (1, 0.7)]);
        let cfg = DecodeConfig {
            class_agnostic: true,
            ..DecodeConfig::default()
        };
        assert_eq!(decode(&data, &shape, 2, &lb, &cfg).unwrap().len(), 1);
        let cfg = DecodeConfig {
            max_detections: 1,
            ..DecodeConfig::default()
        };
        assert_eq!(decode(&data, &shape, 2, &lb, &cfg).unwrap().len(), 1);
    }

    #[test]
    fn config_defaults_validation_and_toml_shape() {
        let cfg = DecodeConfig::default();
        assert_eq!(cfg.validate(), Ok(()));
        let bad = DecodeConfig {
            conf_threshold: f32::NAN,
            iou_threshold: 1.5,
            max_detections: 0,
            class_agnostic: false,
        };
        let problems = bad.validate().unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        let (data, shape) = tensor(&[vec![1.0, 1.0, 1.0, 1.0, 1.0]]);
        assert!(matches!(
            decode(&data, &shape, 1, &lb_1280x720(), &bad),
            Err(YoloError::InvalidConfig(p)) if p.len() == 3
        ));
        // Missing fields take defaults; unknown (misspelt) fields are refused.
        let partial: DecodeConfig = serde_json::from_str(r#"{"iou_threshold": 0.6}"#).unwrap();
        assert_eq!(partial.iou_threshold, 0.6);
        assert_eq!(partial.conf_threshold, 0.25);
        assert!(serde_json::from_str::<DecodeConfig>(r#"{"iou_treshold": 0.6}"#).is_err());
        let schema = serde_json::to_value(schemars::schema_for!(DecodeConfig)).unwrap();
        assert_eq!(schema["properties"]["conf_threshold"]["maximum"], 1.0);
    }

    /// Random outputs: `(cx, cy, w, h, class, score)` per anchor.
    fn anchors() -> impl Strategy<Value = Vec<(f32, f32, f32, f32, usize, f32)>> {
        prop::collection::vec(
            (
                -50.0f32..700.0,
                -50.0f32..700.0,
                0.0f32..300.0,
                0.0f32..300.0,
                0usize..3,
                0.0f32..=1.0,
            ),
            0..200,
        )
    }

    proptest! {
        #[test]
        fn decoded_detections_satisfy_the_invariants(
            anchors in anchors(),
            src_w in 1u32..3000,
            src_h in 1u32..3000,
            conf in 0.0f32..0.6,
            iou in 0.05f32..0.95,
            max_det in 1usize..50,
            agnostic in any::<bool>(),
            seg in any::<bool>(),
        ) {
            let nc = 3;
            let nm = if seg { MASK_COEFFS } else { 0 };
            let columns: Vec<Vec<f32>> = anchors
                .iter()
                .map(|&(cx, cy, w, h, class, score)| {
                    let mut col = vec![cx, cy, w, h];
                    col.extend((0..nc).map(|c| if c == class { score } else { score * 0.5 }));
                    col.extend((0..nm).map(|k| k as f32));
                    col
                })
                .collect();
            let (data, shape) = if columns.is_empty() {
                (Vec::new(), vec![1, 4 + nc + nm, 0])
            } else {
                tensor(&columns)
            };
            let lb = Letterbox::new(src_w, src_h, 640).unwrap();
            let cfg = DecodeConfig {
                conf_threshold: conf,
                iou_threshold: iou,
                max_detections: max_det,
                class_agnostic: agnostic,
            };
            let dets = decode(&data, &shape, nc, &lb, &cfg).unwrap();
            prop_assert!(dets.len() <= max_det);
            for d in &dets {
                prop_assert!(d.bbox.is_finite() && d.score.is_finite());
                prop_assert!(d.bbox.area() > 0.0);
                prop_assert!(d.bbox.x1 >= 0.0 && d.bbox.y1 >= 0.0);
                prop_assert!(d.bbox.x2 <= src_w as f32 && d.bbox.y2 <= src_h as f32);
                prop_assert!(d.score >= conf);
                prop_assert!(d.class_id < nc);
                prop_assert_eq!(d.mask_coeffs.len(), nm);
            }
            for pair in dets.windows(2) {
                prop_assert!(pair[0].score >= pair[1].score);
            }
            for (i, a) in dets.iter().enumerate() {
                for b in &dets[i + 1..] {
                    if agnostic || a.class_id == b.class_id {
                        prop_assert!(a.bbox.iou(&b.bbox) <= iou, "{:?} {:?}", a, b);
                    }
                }
            }
        }
    }
}
