//! The `[session]` configuration: when an inspection starts and ends, and how many frames it keeps.

use std::collections::{BTreeMap, HashSet};

use inspection_core::wire::{InspectionKind, MAX_DETECTIONS_PER_FRAME, MAX_TEXT_LEN};
use serde::Deserialize;

/// Most frames kept per camera and inspection. Every kept frame is held in
/// memory until the inspection completes (a decoded 1080p frame is about
/// 6 MB), so the bound is what keeps a board with 8 cameras under 1 GB.
pub const MAX_FRAMES_PER_CAMERA: usize = 20;

/// Longest trigger window, in frames: the window is held per camera.
pub const MAX_TRIGGER_WINDOW: u32 = 1000;

/// Longest time accepted for `absence_seconds` and `max_duration_seconds`:
/// a day. Anything longer is a typo (minutes meant as hours), and the bound
/// keeps the time arithmetic far from overflow.
pub const MAX_SECONDS: f64 = 86_400.0;

/// How inspections are started, ended and filled. Every key has a default,
/// so a config file names only what it changes; unknown keys are an error.
/// Call [`problems`](Self::problems) after deserialising.
///
/// ```toml
/// [session]
/// trigger_classes = ["plate", "car"]
/// trigger_min_scores = { car = 0.6 }
/// absence_seconds = 8.0
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// Pre-screen class names whose presence means "a vehicle is in the bay".
    ///
    /// Defaults to `["plate"]`: the fetched pre-screen model (`platedet`) has
    /// that one class, and every car has a plate at the front and the rear,
    /// which the front and rear cameras see as it drives in.
    pub trigger_classes: Vec<String>,
    /// Minimum detection score (0-1) for a trigger class to count as present.
    ///
    /// Defaults to 0.4, above the decoder's 0.25 so that the weakest
    /// candidates that survive decoding cannot start an inspection; the
    /// N-of-M debounce below is the main guard against noise. Measured: the
    /// bus photo's distant plate (about 27 pixels wide) scores 0.32 with
    /// platedet, below this; in a bay the plate is several times larger.
    /// Lower it (or per class below) for cameras far from the car.
    pub min_trigger_score: f32,
    /// Per-class minimum scores overriding `min_trigger_score`, e.g.
    /// `{ car = 0.6 }`. Every key must be one of `trigger_classes`.
    ///
    /// Defaults to none: one threshold is enough for a one-class model.
    pub trigger_min_scores: BTreeMap<String, f32>,
    /// N: a camera must see a trigger class in at least this many of its
    /// last `trigger_window` frames for an inspection to start.
    ///
    /// Defaults to 3, so one or two spurious detections (a plate on a poster
    /// caught in passing, a reflection) never start an inspection.
    pub trigger_frames: u32,
    /// M: the number of a camera's most recent frames the trigger counts in.
    ///
    /// Defaults to 5: 3 of 5 tolerates two misses (the plate occluded by a
    /// person, frames the quality gate rejected while the car still moved)
    /// and, at the 2-3 pre-screened frames per second a board manages, takes
    /// one to two seconds of sustained presence.
    pub trigger_window: u32,
    /// T: an inspection started by the trigger completes when no trigger
    /// class has been seen on any camera for this many seconds.
    ///
    /// Defaults to 5: long enough to bridge a person walking in front of the
    /// plate or a few frames rejected while the car pulls out, short enough
    /// that the next car, which has to drive in (well over 5 s in a bay), is
    /// not merged into the previous inspection.
    pub absence_seconds: f64,
    /// K: frames kept per camera, the best by quality and pre-screen score.
    ///
    /// Defaults to 3: alternatives for central's damage detector when one
    /// frame is partly occluded, while an inspection of 4 cameras stays near
    /// 12 JPEGs (about 4 MB) to upload.
    pub frames_per_camera: usize,
    /// How much pre-screen confidence weighs against sharpness when ranking
    /// frames: a frame's score is the quality score times
    /// `1 + detection_weight * best detection score`.
    ///
    /// Defaults to 1.0: a frame with a confident detection (0.9) beats a frame
    /// without any unless that one is nearly twice as sharp. Sharpness stays
    /// the main criterion because side cameras rarely see a trigger class.
    pub detection_weight: f64,
    /// Most pre-screen detections kept per selected frame (the best scores).
    ///
    /// Defaults to 32: each costs about 120 bytes of the `frame_selected`
    /// event, which must fit the 16 KiB MQTT payload limit, and a frame with
    /// more candidate boxes than that is noise, not information.
    pub max_detections_per_frame: usize,
    /// An inspection still running after this many seconds completes with
    /// reason `timeout`.
    ///
    /// Defaults to 600: a return takes a minute or two; a car left parked in
    /// the bay, or a trigger stuck on a plate-like sign, must not hold an
    /// inspection (and its frames) open for hours. After a timeout the next
    /// inspection starts only once the vehicle has left, so a parked car does
    /// not produce an inspection every 10 minutes.
    pub max_duration_seconds: f64,
    /// The kind of inspections the trigger starts (commands name their own).
    ///
    /// Defaults to `return`: the boards stand in return bays.
    pub default_kind: InspectionKind,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            trigger_classes: vec!["plate".to_owned()],
            min_trigger_score: 0.4,
            trigger_min_scores: BTreeMap::new(),
            trigger_frames: 3,
            trigger_window: 5,
            absence_seconds: 5.0,
            frames_per_camera: 3,
            detection_weight: 1.0,
            max_detections_per_frame: 32,
            max_duration_seconds: 600.0,
            default_kind: InspectionKind::Return,
        }
    }
}

impl SessionConfig {
    /// Every bad value, each prefixed by `at` (e.g. `"session"` gives
    /// `"session.trigger_frames: ..."`), so an operator fixes a file in one
    /// pass. Empty when the configuration is usable.
    pub fn problems(&self, at: &str) -> Vec<String> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, msg: String| problems.push(format!("{at}.{key}: {msg}"));

        if self.trigger_classes.is_empty() {
            bad(
                "trigger_classes",
                "must name at least one class, or no inspection starts without a command".into(),
            );
        }
        let mut seen = HashSet::new();
        for label in &self.trigger_classes {
            if label.is_empty() || label.chars().count() > MAX_TEXT_LEN {
                bad(
                    "trigger_classes",
                    format!("{label:?} must be 1 to {MAX_TEXT_LEN} characters"),
                );
            }
            if !seen.insert(label.as_str()) {
                bad("trigger_classes", format!("{label:?} is listed twice"));
            }
        }
        if !unit(self.min_trigger_score) {
            bad(
                "min_trigger_score",
                format!("must be within [0, 1], got {}", self.min_trigger_score),
            );
        }
        for (label, score) in &self.trigger_min_scores {
            if !seen.contains(label.as_str()) {
                bad(
                    "trigger_min_scores",
                    format!("{label:?} is not one of trigger_classes"),
                );
            }
            if !unit(*score) {
                bad(
                    "trigger_min_scores",
                    format!("{label:?} must be within [0, 1], got {score}"),
                );
            }
        }
        if self.trigger_frames == 0 {
            bad("trigger_frames", "must be at least 1".into());
        }
        if !(1..=MAX_TRIGGER_WINDOW).contains(&self.trigger_window) {
            bad(
                "trigger_window",
                format!(
                    "must be between 1 and {MAX_TRIGGER_WINDOW}, got {}",
                    self.trigger_window
                ),
            );
        } else if self.trigger_frames > self.trigger_window {
            bad(
                "trigger_frames",
                format!(
                    "({}) must not exceed trigger_window ({}), or the trigger can never fire",
                    self.trigger_frames, self.trigger_window
                ),
            );
        }
        for (key, secs) in [
            ("absence_seconds", self.absence_seconds),
            ("max_duration_seconds", self.max_duration_seconds),
        ] {
            // At least a millisecond: time is handled in milliseconds.
            if !(secs.is_finite() && (0.001..=MAX_SECONDS).contains(&secs)) {
                bad(
                    key,
                    format!("must be between 0.001 and {MAX_SECONDS} seconds, got {secs}"),
                );
            }
        }
        if !(1..=MAX_FRAMES_PER_CAMERA).contains(&self.frames_per_camera) {
            bad(
                "frames_per_camera",
                format!(
                    "must be between 1 and {MAX_FRAMES_PER_CAMERA}, got {}",
                    self.frames_per_camera
                ),
            );
        }
        if !(self.detection_weight.is_finite() && (0.0..=100.0).contains(&self.detection_weight)) {
            bad(
                "detection_weight",
                format!("must be between 0 and 100, got {}", self.detection_weight),
            );
        }
        if self.max_detections_per_frame > MAX_DETECTIONS_PER_FRAME {
            bad(
                "max_detections_per_frame",
                format!(
                    "must be at most {MAX_DETECTIONS_PER_FRAME} (the wire limit), got {}",
                    self.max_detections_per_frame
                ),
            );
        }
        problems
    }

    /// The minimum score for `label` to count as a trigger, or `None` when
    /// `label` is not a trigger class.
    pub fn trigger_threshold(&self, label: &str) -> Option<f32> {
        if !self.trigger_classes.iter().any(|c| c == label) {
            return None;
        }
        Some(
            self.trigger_min_scores
                .get(label)
                .copied()
                .unwrap_or(self.min_trigger_score),
        )
    }
}

fn unit(v: f32) -> bool {
    (0.0..=1.0).contains(&v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_an_empty_table_gives_them() {
        assert_eq!(
            SessionConfig::default().problems("session"),
            Vec::<String>::new()
        );
        let parsed: SessionConfig = toml::from_str("").unwrap();
        assert_eq!(parsed, SessionConfig::default());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<SessionConfig>("trigger_frame = 3").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn every_bad_value_is_reported_with_its_key() {
        let config: SessionConfig = toml::from_str(
            r#"
            trigger_classes = ["plate", "plate", ""]
            min_trigger_score = 1.5
            trigger_min_scores = { car = 0.5, plate = -1.0 }
            trigger_frames = 6
            trigger_window = 5
            absence_seconds = 0.0
            max_duration_seconds = inf
            frames_per_camera = 0
            detection_weight = nan
            max_detections_per_frame = 101
            default_kind = "pickup"
            "#,
        )
        .unwrap();
        let problems = config.problems("session");
        let keys: Vec<&str> = problems
            .iter()
            .map(|p| p.split(':').next().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "session.trigger_classes",
                "session.trigger_classes",
                "session.min_trigger_score",
                "session.trigger_min_scores",
                "session.trigger_min_scores",
                "session.trigger_frames",
                "session.absence_seconds",
                "session.max_duration_seconds",
                "session.frames_per_camera",
                "session.detection_weight",
                "session.max_detections_per_frame",
            ],
            "{problems:#?}"
        );
    }

    #[test]
    fn per_class_thresholds_override_the_default() {
        let config = SessionConfig {
            trigger_classes: vec!["plate".into(), "car".into()],
            trigger_min_scores: [("car".to_owned(), 0.7)].into(),
            ..SessionConfig::default()
        };
        assert_eq!(config.trigger_threshold("plate"), Some(0.4));
        assert_eq!(config.trigger_threshold("car"), Some(0.7));
        assert_eq!(config.trigger_threshold("dent"), None);
    }
}
