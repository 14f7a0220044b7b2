//! Prometheus metrics of the frame sources, labelled by camera id.
//!
//! Camera ids are fine as labels: a board has a handful of cameras, and the
//! ids come from its configuration, never from what a camera sees.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label set of the per-camera metrics.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CameraLabels {
    pub camera: String,
}

/// Label set of `edge_capture_errors_total`: the camera and
/// [`CaptureError::code`](super::CaptureError::code).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ErrorLabels {
    pub camera: String,
    pub reason: &'static str,
}

/// The capture metrics; clones share the same series.
#[derive(Debug, Clone, Default)]
pub struct CaptureMetrics {
    /// `edge_capture_frames_total{camera}`: frames delivered by the sources.
    pub frames: Family<CameraLabels, Counter>,
    /// `edge_capture_errors_total{camera,reason}`: skipped files and frames,
    /// failed opens and broken streams.
    pub errors: Family<ErrorLabels, Counter>,
    /// `edge_capture_reconnects_total{camera}`: times a camera delivered
    /// frames again after it had failed.
    pub reconnects: Family<CameraLabels, Counter>,
    /// `edge_capture_camera_up{camera}`: 1 while a camera delivers frames,
    /// 0 while it is failing, being reopened, or finished.
    pub camera_up: Family<CameraLabels, Gauge>,
}

impl CaptureMetrics {
    /// Fresh metrics, all zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the metrics to `registry` (the counters get their `_total`
    /// suffix from prometheus-client).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "edge_capture_frames",
            "Frames delivered by the frame sources",
            self.frames.clone(),
        );
        registry.register(
            "edge_capture_errors",
            "Skipped files and frames, failed opens and broken streams, by reason",
            self.errors.clone(),
        );
        registry.register(
            "edge_capture_reconnects",
            "Times a camera delivered frames again after it had failed",
            self.reconnects.clone(),
        );
        registry.register(
            "edge_capture_camera_up",
            "1 while a camera delivers frames, 0 while it is failing or finished",
            self.camera_up.clone(),
        );
    }

    /// Frames delivered by `camera` so far.
    pub fn frames_of(&self, camera: &str) -> u64 {
        self.frames
            .get(&CameraLabels::new(camera))
            .map_or(0, |c| c.get())
    }

    /// Errors of `camera` with `reason` so far.
    pub fn errors_of(&self, camera: &str, reason: &'static str) -> u64 {
        self.errors
            .get(&ErrorLabels {
                camera: camera.to_owned(),
                reason,
            })
            .map_or(0, |c| c.get())
    }

    /// Reconnects of `camera` so far.
    pub fn reconnects_of(&self, camera: &str) -> u64 {
        self.reconnects
            .get(&CameraLabels::new(camera))
            .map_or(0, |c| c.get())
    }

    /// The `camera_up` gauge of `camera` (0 if never set).
    pub fn up_of(&self, camera: &str) -> i64 {
        self.camera_up
            .get(&CameraLabels::new(camera))
            .map_or(0, |g| g.get())
    }

    /// A handle bound to one camera's labels.
    pub(crate) fn for_camera(&self, camera: &str) -> CameraMetrics {
        CameraMetrics {
            metrics: self.clone(),
            camera: camera.to_owned(),
        }
    }
}

impl CameraLabels {
    fn new(camera: &str) -> Self {
        Self {
            camera: camera.to_owned(),
        }
    }
}

/// The metrics of one camera, for the sources and the retry wrapper.
#[derive(Debug, Clone)]
pub(crate) struct CameraMetrics {
    metrics: CaptureMetrics,
    camera: String,
}

impl CameraMetrics {
    pub(crate) fn frame(&self) {
        self.metrics
            .frames
            .get_or_create(&CameraLabels::new(&self.camera))
            .inc();
    }

    pub(crate) fn error(&self, reason: &'static str) {
        self.metrics
            .errors
            .get_or_create(&ErrorLabels {
                camera: self.camera.clone(),
                reason,
            })
            .inc();
    }

    pub(crate) fn reconnect(&self) {
        self.metrics
            .reconnects
            .get_or_create(&CameraLabels::new(&self.camera))
            .inc();
    }

    pub(crate) fn set_up(&self, up: bool) {
        self.metrics
            .camera_up
            .get_or_create(&CameraLabels::new(&self.camera))
            .set(i64::from(up));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_uses_prometheus_names() {
        let metrics = CaptureMetrics::new();
        let cam = metrics.for_camera("cam-front");
        cam.frame();
        cam.error("truncated");
        cam.reconnect();
        cam.set_up(true);
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "edge_capture_frames_total{camera=\"cam-front\"} 1",
            "edge_capture_errors_total{camera=\"cam-front\",reason=\"truncated\"} 1",
            "edge_capture_reconnects_total{camera=\"cam-front\"} 1",
            "edge_capture_camera_up{camera=\"cam-front\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert_eq!(metrics.frames_of("cam-front"), 1);
        assert_eq!(metrics.errors_of("cam-front", "truncated"), 1);
        assert_eq!(metrics.errors_of("cam-front", "empty"), 0);
    }
}
