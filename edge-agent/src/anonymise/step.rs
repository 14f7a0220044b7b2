//! The pipeline's anonymisation step: find the faces in a selected frame,
//! redact them (not the plate), count what was done.

use std::time::Instant;

use image::RgbImage;
use inspection_core::geometry::BBox;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::{AnonymiseConfig, FaceDetector, FaceError, Method, redact};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CameraLabel {
    camera: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: &'static str,
}

/// `edge_anonymise_*`. Clones share the values.
#[derive(Debug, Clone)]
pub struct AnonymiseMetrics {
    searched: Family<CameraLabel, Counter>,
    anonymised: Family<CameraLabel, Counter>,
    faces: Family<CameraLabel, Counter>,
    withheld: Family<CodeLabel, Counter>,
    duration: Histogram,
}

impl Default for AnonymiseMetrics {
    fn default() -> Self {
        AnonymiseMetrics {
            searched: Family::default(),
            anonymised: Family::default(),
            faces: Family::default(),
            withheld: Family::default(),
            // 10 ms to ~20 s: a 640 frame on a fast core to the first frame
            // of a size (its plan is built then) on a slow board.
            duration: Histogram::new(exponential_buckets(0.01, 2.0, 12)),
        }
    }
}

impl AnonymiseMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "edge_anonymise_frames_searched",
            "Selected frames searched for faces before entering the outbox, by camera",
            self.searched.clone(),
        );
        registry.register(
            "edge_anonymise_frames_anonymised",
            "Selected frames in which at least one face was redacted, by camera",
            self.anonymised.clone(),
        );
        registry.register(
            "edge_anonymise_faces_redacted",
            "Faces blurred or pixelated, by camera",
            self.faces.clone(),
        );
        registry.register(
            "edge_anonymise_frames_withheld",
            "Selected frames kept off the outbox because the face search failed, by error code",
            self.withheld.clone(),
        );
        registry.register(
            "edge_anonymise_duration_seconds",
            "Time to search one frame for faces and redact them",
            self.duration.clone(),
        );
    }

    pub fn searched(&self, camera: &str) -> u64 {
        self.searched.get_or_create(&camera_label(camera)).get()
    }

    pub fn anonymised(&self, camera: &str) -> u64 {
        self.anonymised.get_or_create(&camera_label(camera)).get()
    }

    pub fn faces(&self, camera: &str) -> u64 {
        self.faces.get_or_create(&camera_label(camera)).get()
    }

    pub fn withheld(&self, code: &'static str) -> u64 {
        self.withheld.get_or_create(&CodeLabel { code }).get()
    }

    /// A frame was kept back: the search failed (`code`: a
    /// [`FaceError::code`], `encode` or `panic`).
    pub fn count_withheld(&self, code: &'static str) {
        self.withheld.get_or_create(&CodeLabel { code }).inc();
    }
}

fn camera_label(camera: &str) -> CameraLabel {
    CameraLabel {
        camera: camera.to_owned(),
    }
}

/// What the search did to one frame.
#[derive(Debug)]
pub struct Outcome {
    /// The frame with its faces redacted; `None` when none was found (the
    /// camera's bytes can be kept as they are).
    pub redacted: Option<RgbImage>,
    /// Faces redacted.
    pub faces: u32,
}

/// The loaded model and how to redact, shared by the pipeline's writer.
#[derive(Debug)]
pub struct Anonymiser {
    detector: FaceDetector,
    margin: f32,
    method: Method,
    metrics: AnonymiseMetrics,
}

impl Anonymiser {
    /// Loads the model of `[anonymise]`.
    pub fn load(config: &AnonymiseConfig, metrics: AnonymiseMetrics) -> Result<Self, FaceError> {
        Ok(Anonymiser {
            detector: FaceDetector::load(&config.model, config.max_side, config.threshold)?,
            margin: config.margin,
            method: config.method,
            metrics,
        })
    }

    pub fn metrics(&self) -> &AnonymiseMetrics {
        &self.metrics
    }

    /// Searches `frame` for faces and redacts them, leaving the `keep`
    /// boxes (the plate) as they are. Blocks for the inference.
    pub fn anonymise(
        &self,
        camera: &str,
        frame: &RgbImage,
        keep: &[BBox],
    ) -> Result<Outcome, FaceError> {
        let started = Instant::now();
        let faces = self.detector.detect(frame)?;
        let label = camera_label(camera);
        self.metrics.searched.get_or_create(&label).inc();
        let outcome = if faces.is_empty() {
            Outcome {
                redacted: None,
                faces: 0,
            }
        } else {
            let mut redacted = frame.clone();
            let boxes: Vec<BBox> = faces.iter().map(|f| f.bbox).collect();
            let n = redact(&mut redacted, &boxes, keep, self.margin, self.method);
            self.metrics.anonymised.get_or_create(&label).inc();
            self.metrics
                .faces
                .get_or_create(&label)
                .inc_by(u64::from(n));
            Outcome {
                redacted: Some(redacted),
                faces: n,
            }
        };
        self.metrics
            .duration
            .observe(started.elapsed().as_secs_f64());
        Ok(outcome)
    }
}

/// The boxes a redaction must leave alone: the pre-screen's plates (any
/// label with "plate" in it: `plate`, `license_plate`, `licence-plate`).
pub fn plate_boxes<'a>(detections: impl IntoIterator<Item = (&'a str, BBox)>) -> Vec<BBox> {
    detections
        .into_iter()
        .filter(|(label, _)| label.to_ascii_lowercase().contains("plate"))
        .map(|(_, b)| b)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plate_labels_are_kept() {
        let b = BBox::new(1.0, 2.0, 3.0, 4.0);
        let kept = plate_boxes([
            ("plate", b),
            ("car", BBox::new(0.0, 0.0, 10.0, 10.0)),
            ("License_Plate", b),
            ("dent", b),
        ]);
        assert_eq!(kept, vec![b, b]);
    }
}
