//! Bounded best-K frame selection for one camera, and the score that ranks frames.

use chrono::{DateTime, Utc};
use inspection_core::quality::{QualityMetrics, Verdict};
use inspection_core::yolo::Detection;

/// A frame kept as a candidate for shipping.
#[derive(Debug, Clone)]
pub(crate) struct Candidate<T> {
    pub captured_at: DateTime<Utc>,
    pub frame: T,
    pub quality: QualityMetrics,
    pub detections: Vec<(String, Detection)>,
    pub score: f64,
}

/// The ranking score of a frame: the quality score
/// ([`Verdict::score`], sharpness times the unclipped fraction) times
/// `1 + weight * best detection score`, or `None` when the quality gate
/// rejected it (such frames are never kept).
///
/// Multiplying keeps the two on one scale whatever the camera's scene
/// texture (which moves sharpness by orders of magnitude between cameras but
/// not between frames of one camera, the only comparison made). Any class
/// counts, damage candidates included: a frame where the pre-screen sees
/// something is worth more to central than an equally sharp one where it
/// sees nothing.
pub fn frame_score(
    verdict: &Verdict,
    detections: &[(String, Detection)],
    weight: f64,
) -> Option<f64> {
    if !verdict.accepted() {
        return None;
    }
    let best = detections
        .iter()
        .map(|(_, d)| d.score)
        .filter(|s| s.is_finite())
        .fold(0.0_f32, f32::max)
        .clamp(0.0, 1.0);
    let score = verdict.score() * (1.0 + weight * f64::from(best));
    Some(if score.is_finite() {
        score.max(0.0)
    } else {
        0.0
    })
}

/// The best `k` candidates of one camera, best first. Holds at most `k`
/// frames: a new frame either displaces the worst or is dropped at once.
#[derive(Debug)]
pub(crate) struct BestFrames<T> {
    k: usize,
    items: Vec<Candidate<T>>,
}

impl<T> BestFrames<T> {
    pub fn new(k: usize) -> Self {
        Self {
            k,
            items: Vec::with_capacity(k),
        }
    }

    /// Whether a frame scoring `score` would be kept. On a tie the frame
    /// already held wins, so the choice is stable and the earliest of equal
    /// frames ships.
    pub fn would_keep(&self, score: f64) -> bool {
        self.k > 0
            && (self.items.len() < self.k || self.items.last().is_some_and(|w| score > w.score))
    }

    /// Keeps `candidate` if it is among the best `k`, evicting the worst.
    pub fn offer(&mut self, candidate: Candidate<T>) -> bool {
        if !self.would_keep(candidate.score) {
            return false;
        }
        if self.items.len() >= self.k {
            self.items.pop();
        }
        let at = self.items.partition_point(|c| c.score >= candidate.score);
        self.items.insert(at, candidate);
        true
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Takes every candidate out, best first.
    pub fn drain(&mut self) -> Vec<Candidate<T>> {
        std::mem::take(&mut self.items)
    }

    pub fn clear(&mut self) {
        self.items.clear();
    }
}

#[cfg(test)]
mod tests {
    use inspection_core::BBox;
    use inspection_core::quality::QualityThresholds;

    use super::*;

    fn verdict(sharpness: f64, accepted: bool) -> Verdict {
        let metrics = QualityMetrics {
            source_width: 640,
            source_height: 480,
            analysis_width: 640,
            analysis_height: 480,
            sharpness,
            mean_luma: if accepted { 120.0 } else { 5.0 },
            dark_fraction: 0.0,
            bright_fraction: 0.0,
            motion: None,
        };
        Verdict::from_metrics(metrics, &QualityThresholds::default())
    }

    fn det(score: f32) -> (String, Detection) {
        let detection = Detection {
            bbox: BBox::new(0.0, 0.0, 10.0, 10.0),
            score,
            class_id: 0,
            mask_coeffs: vec![],
        };
        ("plate".to_owned(), detection)
    }

    fn cand(score: f64, tag: u32) -> Candidate<u32> {
        Candidate {
            captured_at: DateTime::UNIX_EPOCH,
            frame: tag,
            quality: verdict(100.0, true).metrics,
            detections: vec![],
            score,
        }
    }

    #[test]
    fn score_combines_quality_and_confidence_and_refuses_rejected_frames() {
        let score = |sharpness, accepted, dets: &[(String, Detection)], weight| {
            frame_score(&verdict(sharpness, accepted), dets, weight)
                .map(|s| (s * 1000.0).round() / 1000.0)
        };
        assert_eq!(score(100.0, true, &[], 1.0), Some(100.0));
        assert_eq!(score(100.0, true, &[det(0.5), det(0.9)], 1.0), Some(190.0));
        assert_eq!(score(100.0, true, &[det(0.9)], 0.0), Some(100.0));
        // A broken score never wins nor poisons the comparison.
        assert_eq!(score(100.0, true, &[det(f32::NAN)], 1.0), Some(100.0));
        assert_eq!(score(100.0, false, &[det(0.9)], 1.0), None);
    }

    #[test]
    fn keeps_the_best_k_best_first_and_ties_keep_the_earlier_frame() {
        let mut best = BestFrames::new(2);
        for (score, tag) in [(1.0, 1), (3.0, 2), (2.0, 3), (3.0, 4), (0.5, 5), (2.5, 6)] {
            best.offer(cand(score, tag));
            assert!(best.len() <= 2);
        }
        let tags: Vec<u32> = best.drain().into_iter().map(|c| c.frame).collect();
        assert_eq!(tags, [2, 4]);
        assert_eq!(best.len(), 0);
    }
}
