//! Greedy non-maximum suppression, class-aware or class-agnostic.

use super::{DecodeConfig, Detection, MAX_NMS_CANDIDATES};
use crate::geometry::BBox;

/// Greedy NMS over candidates already sorted by score, best first. Returns the
/// indices kept, in order. A candidate is suppressed when its IoU with an
/// already kept box is above `iou_threshold` (as torchvision's `nms`), only
/// against boxes of the same class unless `class_agnostic`. Stops after
/// `max_keep` boxes, which also bounds the work to `len * max_keep` IoUs.
/// Slices of different lengths are read up to the shorter one.
pub fn nms_sorted(
    boxes: &[BBox],
    classes: &[usize],
    iou_threshold: f32,
    class_agnostic: bool,
    max_keep: usize,
) -> Vec<usize> {
    let mut kept: Vec<usize> = Vec::new();
    for (i, (b, &c)) in boxes.iter().zip(classes).enumerate() {
        if kept.len() >= max_keep {
            break;
        }
        let suppressed = kept
            .iter()
            .any(|&k| (class_agnostic || classes[k] == c) && boxes[k].iou(b) > iou_threshold);
        if !suppressed {
            kept.push(i);
        }
    }
    kept
}

/// NMS over finished detections, e.g. to merge the results of several tiles
/// or models: drops non-finite boxes and scores, sorts by score (stable),
/// keeps the best [`MAX_NMS_CANDIDATES`], suppresses per `cfg` and returns at
/// most `cfg.max_detections`, best first. `cfg.conf_threshold` is not applied.
pub fn non_max_suppression(mut dets: Vec<Detection>, cfg: &DecodeConfig) -> Vec<Detection> {
    dets.retain(|d| d.bbox.is_finite() && d.score.is_finite());
    let kept = rank_and_suppress(&mut dets, |d| (d.bbox, d.score, d.class_id), cfg);
    let mut keep = vec![false; dets.len()];
    for k in kept {
        keep[k] = true;
    }
    let mut flags = keep.into_iter();
    dets.retain(|_| flags.next().unwrap_or(false));
    dets
}

/// Sorts `items` best first (stable: equal scores keep their order), keeps
/// the best [`MAX_NMS_CANDIDATES`] and returns the indices that survive NMS
/// per `cfg`, best first. `parts` gives an item's box, score and class.
pub(crate) fn rank_and_suppress<T>(
    items: &mut Vec<T>,
    parts: impl Fn(&T) -> (BBox, f32, usize),
    cfg: &DecodeConfig,
) -> Vec<usize> {
    items.sort_by(|a, b| parts(b).1.total_cmp(&parts(a).1));
    items.truncate(MAX_NMS_CANDIDATES);
    let (boxes, classes): (Vec<BBox>, Vec<usize>) = items
        .iter()
        .map(|item| {
            let (bbox, _, class) = parts(item);
            (bbox, class)
        })
        .unzip();
    nms_sorted(
        &boxes,
        &classes,
        cfg.iou_threshold,
        cfg.class_agnostic,
        cfg.max_detections,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x1: f32, score: f32, class_id: usize) -> Detection {
        Detection {
            bbox: BBox::new(x1, 0.0, x1 + 10.0, 10.0),
            score,
            class_id,
            mask_coeffs: Vec::new(),
        }
    }

    #[test]
    fn overlapping_boxes_of_one_class_keep_the_best() {
        // IoU of boxes shifted by 1 px: 90 / 110 = 0.82.
        let out = non_max_suppression(
            vec![det(1.0, 0.8, 0), det(0.0, 0.9, 0)],
            &DecodeConfig::default(),
        );
        assert_eq!(out, vec![det(0.0, 0.9, 0)]);
    }

    #[test]
    fn overlapping_boxes_of_different_classes_are_both_kept() {
        let out = non_max_suppression(
            vec![det(0.0, 0.9, 0), det(1.0, 0.8, 1)],
            &DecodeConfig::default(),
        );
        assert_eq!(out.len(), 2);
        let agnostic = DecodeConfig {
            class_agnostic: true,
            ..DecodeConfig::default()
        };
        let out = non_max_suppression(vec![det(0.0, 0.9, 0), det(1.0, 0.8, 1)], &agnostic);
        assert_eq!(out, vec![det(0.0, 0.9, 0)]);
    }

    #[test]
    fn threshold_is_exclusive_and_max_keep_caps() {
        // Shift 5 px: IoU 50 / 150 = 1/3.
        let boxes = [
            BBox::new(0.0, 0.0, 10.0, 10.0),
            BBox::new(5.0, 0.0, 15.0, 10.0),
        ];
        assert_eq!(nms_sorted(&boxes, &[0, 0], 0.5, false, 10), vec![0, 1]);
        assert_eq!(nms_sorted(&boxes, &[0, 0], 0.3, false, 10), vec![0]);
        assert_eq!(nms_sorted(&boxes, &[0, 1], 0.3, false, 1), vec![0]);
        // Mismatched lengths read the common prefix, no panic.
        assert_eq!(nms_sorted(&boxes, &[0], 0.5, false, 10), vec![0]);
    }

    #[test]
    fn non_finite_detections_are_dropped_and_ties_stay_stable() {
        let mut nan = det(50.0, 0.9, 0);
        nan.bbox.x2 = f32::NAN;
        let out = non_max_suppression(
            vec![
                det(0.0, 0.5, 0),
                nan,
                det(100.0, f32::NAN, 0),
                det(200.0, 0.5, 0),
            ],
            &DecodeConfig::default(),
        );
        assert_eq!(out, vec![det(0.0, 0.5, 0), det(200.0, 0.5, 0)]);
    }
}
