//! `PlateReader`: plate boxes (or, without any, plate-shaped text) to
//! validated plate readings.

use std::time::{Duration, Instant};

use image::RgbImage;
use inspection_core::geometry::BBox;
use inspection_core::ids::CameraId;
use inspection_core::plate::{self, PlateCandidate};
use inspection_core::yolo::Detection;
use ort::environment::Environment;

use super::PlatesError;
use super::config::PlatesConfig;
use super::image_ops::{band_end, cut_left, estimate_tilt, straightened_crop};
use super::rec::{Decoding, MAX_REC_WIDTH, REC_HEIGHT, Recognition, Recognizer};
use super::textdet::{TextDetector, merge_line_boxes};
use crate::store::{PlateBoxSource, PlateOutcome, PlateReadRecord};

/// Each letter/digit substitution normalisation needed costs this factor of
/// the confidence: the text as read was not a plate, the fix is a guess.
const SUBSTITUTION_FACTOR: f32 = 0.9;

/// Text boxes from the fallback count as plate-shaped between these
/// width/height ratios: an EU plate's text line is about 4-6 times as wide
/// as high (1-line plates only), allowing for the band and loose boxes.
const TEXT_ASPECT: std::ops::RangeInclusive<f32> = 2.0..=10.0;

/// One plate box's reading on one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct PlateObservation {
    pub outcome: PlateOutcome,
    /// In the frame's pixels; `None` for `NotFound`.
    pub bbox: Option<BBox>,
    pub box_source: Option<PlateBoxSource>,
    /// The detector's (or text detector's) score for the box.
    pub box_score: f32,
    /// The OCR's text as read.
    pub raw_text: Option<String>,
    /// The best validated reading, also for `Unreadable` reads that
    /// validated below the floor (kept for diagnosis, not for the record).
    pub candidate: Option<PlateCandidate>,
    /// 0..1: the weakest character's probability, lowered by 10% per
    /// substitution; 0 when nothing validated.
    pub confidence: f32,
    /// The weakest character's probability as the OCR gave it.
    pub ocr_confidence: f32,
    /// The tilt correction of the crop that was kept, in degrees.
    pub deskew_degrees: f32,
}

impl PlateObservation {
    fn not_found() -> Self {
        Self {
            outcome: PlateOutcome::NotFound,
            bbox: None,
            box_source: None,
            box_score: 0.0,
            raw_text: None,
            candidate: None,
            confidence: 0.0,
            ocr_confidence: 0.0,
            deskew_degrees: 0.0,
        }
    }

    /// The canonical plate when read.
    pub fn plate(&self) -> Option<&str> {
        match self.outcome {
            PlateOutcome::Read => self.candidate.as_ref().map(|c| c.plate.as_str()),
            _ => None,
        }
    }

    /// The stored record. The plate and country are filled only for `Read`:
    /// a plate under the floor must not find another car's pickup.
    pub fn record(&self, camera: CameraId, sha256: String) -> PlateReadRecord {
        let read = self.outcome == PlateOutcome::Read;
        PlateReadRecord {
            camera,
            sha256,
            outcome: self.outcome,
            bbox: self.bbox,
            box_source: self.box_source,
            raw_text: self.raw_text.clone(),
            plate: self
                .candidate
                .as_ref()
                .filter(|_| read)
                .map(|c| c.plate.clone()),
            country: self
                .candidate
                .as_ref()
                .filter(|_| read)
                .map(|c| c.country.code().to_owned()),
            confidence: self.confidence,
        }
    }
}

/// The observation that stands for a frame: the most confident `Read`, else
/// the most confident `Unreadable`, else the first (a `NotFound`).
pub fn best_observation(observations: &[PlateObservation]) -> Option<&PlateObservation> {
    let rank = |o: &PlateObservation| match o.outcome {
        PlateOutcome::Read => 2,
        PlateOutcome::Unreadable => 1,
        PlateOutcome::NotFound => 0,
    };
    observations.iter().reduce(|best, o| {
        if (rank(o), o.confidence) > (rank(best), best.confidence) {
            o
        } else {
            best
        }
    })
}

/// Where the time of the last read went (for benchmarks and logs).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReadTimings {
    pub text_detection: Duration,
    pub recognition: Duration,
}

/// Reads plates with a PP-OCR recogniser; see the module documentation.
#[derive(Debug)]
pub struct PlateReader {
    config: PlatesConfig,
    recognizer: Recognizer,
    text_detector: Option<TextDetector>,
    model_ids: Vec<String>,
}

impl PlateReader {
    /// Loads the configured models on `env` (from
    /// [`crate::detect::init_runtime`]).
    pub fn load(env: &Environment, config: &PlatesConfig) -> Result<Self, PlatesError> {
        let problems = config.problems("plates", false);
        if !problems.is_empty() {
            return Err(PlatesError::Config(problems));
        }
        let no_cache = |key: &str| {
            PlatesError::Config(vec![format!(
                "plates.{key}: not set and no model cache (set HOME or INSPECTION_CACHE_DIR)"
            )])
        };
        let rec_path = config
            .rec_model_path()
            .ok_or_else(|| no_cache("rec_model"))?;
        let recognizer = Recognizer::load(env, &rec_path, config.intra_threads)?;
        let mut model_ids = vec![model_id(&rec_path)];
        let text_detector = if config.text_fallback {
            let path = config
                .text_det_model_path()
                .ok_or_else(|| no_cache("text_det_model"))?;
            model_ids.push(model_id(&path));
            Some(TextDetector::load(
                env,
                &path,
                config.text_det_max_side,
                config.intra_threads,
            )?)
        } else {
            None
        };
        Ok(Self {
            config: config.clone(),
            recognizer,
            text_detector,
            model_ids,
        })
    }

    pub fn config(&self) -> &PlatesConfig {
        &self.config
    }

    /// `file@sha256-prefix` of each loaded model, for
    /// `InspectionResult::plate_models`.
    pub fn model_ids(&self) -> &[String] {
        &self.model_ids
    }

    /// Reads the plates in `plate_boxes` (the plate detector's output for
    /// `image`, any order; the best `max_plates` by score are read). With no
    /// box, or when no box reads as a valid plate, plate-shaped text from the
    /// text detector is read too; when nothing is found at all the one
    /// observation is `NotFound`.
    /// Inference errors are logged and make that box `Unreadable`.
    pub fn read(&self, image: &RgbImage, plate_boxes: &[Detection]) -> Vec<PlateObservation> {
        self.read_timed(image, plate_boxes, self.config.decoding).0
    }

    /// [`Self::read`] with a chosen decoding, and where the time went.
    pub fn read_timed(
        &self,
        image: &RgbImage,
        plate_boxes: &[Detection],
        decoding: Decoding,
    ) -> (Vec<PlateObservation>, ReadTimings) {
        let mut timings = ReadTimings::default();
        let mut boxes: Vec<&Detection> = plate_boxes.iter().collect();
        boxes.sort_by(|a, b| b.score.total_cmp(&a.score));
        boxes.truncate(self.config.max_plates);
        let mut from_detector: Vec<PlateObservation> = Vec::new();
        if !boxes.is_empty() {
            let started = Instant::now();
            from_detector = boxes
                .into_iter()
                .map(|d| self.read_box(image, &d.bbox, d.score, PlateBoxSource::Detector, decoding))
                .collect();
            timings.recognition = started.elapsed();
            // The detector can find the wrong plate (a smaller one further
            // away, another car's) and miss the one that matters: when none
            // of its boxes reads, the text detector looks too.
            if from_detector
                .iter()
                .any(|o| o.outcome == PlateOutcome::Read)
            {
                return (from_detector, timings);
            }
        }
        let fallback_or = |from_detector: Vec<PlateObservation>| {
            if from_detector.is_empty() {
                vec![PlateObservation::not_found()]
            } else {
                from_detector
            }
        };
        let Some(detector) = &self.text_detector else {
            return (fallback_or(from_detector), timings);
        };
        let started = Instant::now();
        let text = match detector.detect(image) {
            Ok(t) => t,
            Err(error) => {
                tracing::warn!(%error, "text detection failed; no plate box");
                return (fallback_or(from_detector), timings);
            }
        };
        timings.text_detection = started.elapsed();
        let started = Instant::now();
        let mut found: Vec<PlateObservation> = merge_line_boxes(text)
            .into_iter()
            .filter(|t| {
                let (w, h) = (t.bbox.width(), t.bbox.height());
                h >= 8.0 && TEXT_ASPECT.contains(&(w / h))
            })
            .take(2 * self.config.max_plates)
            .map(|t| {
                self.read_box(
                    image,
                    &t.bbox,
                    t.score,
                    PlateBoxSource::TextDetection,
                    decoding,
                )
            })
            // Text that is no country's plate is signage, not an unreadable plate.
            .filter(|o| o.candidate.is_some())
            .collect();
        timings.recognition = started.elapsed();
        found.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        found.truncate(self.config.max_plates);
        if found.is_empty() {
            return (fallback_or(from_detector), timings);
        }
        // What the detector found but could not read stays on record.
        found.extend(from_detector);
        (found, timings)
    }

    /// Reads one box: crop with margin, level and tilted-back variants in one
    /// batch, normalise and validate, keep the best.
    pub fn read_box(
        &self,
        image: &RgbImage,
        bbox: &BBox,
        box_score: f32,
        source: PlateBoxSource,
        decoding: Decoding,
    ) -> PlateObservation {
        let mut obs = PlateObservation {
            outcome: PlateOutcome::Unreadable,
            bbox: Some(*bbox),
            box_source: Some(source),
            box_score,
            ..PlateObservation::not_found()
        };
        if bbox.width() < 4.0 || bbox.height() < 3.0 {
            return obs;
        }
        let margin = self.config.crop_margin;
        let level = straightened_crop(image, bbox, margin, REC_HEIGHT, MAX_REC_WIDTH, 0.0);
        let mut angles = vec![0.0];
        if self.config.deskew {
            let tilt = estimate_tilt(&level, self.config.max_deskew_degrees);
            if tilt != 0.0 {
                angles.push(tilt);
            }
        }
        let mut lines = vec![level];
        for &a in &angles[1..] {
            lines.push(straightened_crop(
                image,
                bbox,
                margin,
                REC_HEIGHT,
                MAX_REC_WIDTH,
                a,
            ));
        }
        let lines: Vec<RgbImage> = lines
            .into_iter()
            .map(|l| {
                let from = band_end(&l);
                cut_left(l, from)
            })
            .collect();
        let recs = match self.recognizer.recognize(&lines, decoding) {
            Ok(r) => r,
            Err(error) => {
                tracing::warn!(%error, "plate recognition failed");
                return obs;
            }
        };
        let best = recs
            .iter()
            .zip(&angles)
            .map(|(r, &a)| (evaluate(r), r, a))
            .max_by(|(a, ..), (b, ..)| {
                (a.0.is_some(), a.1)
                    .partial_cmp(&(b.0.is_some(), b.1))
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
        let Some(((candidate, confidence), rec, angle)) = best else {
            return obs;
        };
        obs.raw_text = Some(rec.text.clone());
        obs.ocr_confidence = rec.min_prob();
        obs.deskew_degrees = angle;
        obs.confidence = confidence;
        let tall_enough = bbox.height() >= self.config.min_plate_height as f32;
        if candidate.is_some() && confidence >= self.config.min_confidence && tall_enough {
            obs.outcome = PlateOutcome::Read;
        }
        obs.candidate = candidate;
        obs
    }
}

/// The best country reading of the OCR text and its confidence (0 when none).
fn evaluate(rec: &Recognition) -> (Option<PlateCandidate>, f32) {
    // Characters that are neither plate characters nor separators (the EU
    // band's stars read as `*` or `☆`, stray punctuation) would make the
    // strict matcher reject the whole text: read them as separators.
    let cleaned: String = rec
        .text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || plate::normalize(&c.to_string()).len() == 1
            {
                c
            } else {
                ' '
            }
        })
        .collect();
    let Some(best) = plate::candidates(cleaned.trim()).into_iter().next() else {
        return (None, 0.0);
    };
    let confidence = rec.min_prob() * SUBSTITUTION_FACTOR.powi(i32::from(best.substitutions));
    (Some(best), confidence)
}

/// `file-name@sha256-prefix` of a model file (`?` for an unreadable one).
fn model_id(path: &std::path::Path) -> String {
    use sha2::{Digest, Sha256};
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let hash = std::fs::read(path).map_or_else(
        |_| "?".to_owned(),
        |bytes| {
            let digest = Sha256::digest(&bytes);
            digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
        },
    );
    format!("{name}@{hash}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(outcome: PlateOutcome, confidence: f32) -> PlateObservation {
        PlateObservation {
            outcome,
            confidence,
            ..PlateObservation::not_found()
        }
    }

    #[test]
    fn the_reader_can_be_shared_across_threads() {
        // The worker holds one reader in an `Arc` and calls it from
        // `spawn_blocking`.
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<PlateReader>();
    }

    #[test]
    fn a_read_stands_for_the_frame_before_any_unreadable_box() {
        let all = [
            obs(PlateOutcome::Unreadable, 0.7),
            obs(PlateOutcome::Read, 0.85),
            obs(PlateOutcome::Read, 0.95),
        ];
        assert_eq!(best_observation(&all).unwrap().confidence, 0.95);
        let unread = [
            obs(PlateOutcome::Unreadable, 0.2),
            obs(PlateOutcome::Unreadable, 0.6),
        ];
        assert_eq!(best_observation(&unread).unwrap().confidence, 0.6);
        assert_eq!(best_observation(&[]), None);
    }

    #[test]
    fn only_a_read_records_its_plate() {
        let candidate = plate::validate("AB-123-CD", plate::Country::FR).ok();
        let mut o = obs(PlateOutcome::Unreadable, 0.6);
        o.candidate = candidate;
        let camera: CameraId = "front".parse().unwrap();
        let r = o.record(camera.clone(), "0".repeat(64));
        assert_eq!((r.plate, r.country), (None, None));
        o.outcome = PlateOutcome::Read;
        let r = o.record(camera, "0".repeat(64));
        assert_eq!(r.plate.as_deref(), Some("AB123CD"));
        assert_eq!(r.country.as_deref(), Some("FR"));
        assert_eq!(r.outcome, PlateOutcome::Read);
    }
}
