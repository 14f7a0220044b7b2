//! Inspection sessions: which frames of which cameras make up one vehicle's inspection.
//!
//! [`SessionTracker`] is a pure, synchronous state machine: no tokio, no
//! I/O, no clock (every call carries its time) and no hashing, so every rule
//! below is tested by feeding scripts to it. The pipeline feeds it
//! [`Observation`]s (one pre-screened frame each), calls
//! [`tick`](SessionTracker::tick) when [`next_deadline`](SessionTracker::next_deadline)
//! passes, forwards [`SessionCommand`]s, and persists the
//! [`SessionOutput`]s it gets back in order (converting each with
//! [`SessionOutput::to_event_body`] and, for frames, [`jpeg_image_ref`]).
//!
//! # Rules
//!
//! - **Start by detection.** A trigger class (config `trigger_classes`, each
//!   with its minimum score) present in at least `trigger_frames` (N) of a
//!   camera's last `trigger_window` (M) frames starts an inspection of kind
//!   `default_kind`, with an id from the injected generator (UUIDv7 in the
//!   agent). Hits older than `absence_seconds` before the newest frame no
//!   longer count. The trigger reports the best score in the window.
//! - **Start by command.** `Start` starts one at once, of the command's kind,
//!   with or without a vehicle. Ignored while one runs, and for a `cmd_id`
//!   already executed (a redelivered command).
//! - **Selection.** While an inspection runs, each camera keeps its best
//!   `frames_per_camera` (K) frames by [`frame_score`] (quality score times
//!   `1 + detection_weight * best detection score`). Frames the quality gate
//!   rejected are never kept; at most K frames per camera are held, a better
//!   frame evicting the worst. The triggering frame is the first candidate;
//!   frames captured before the start (a lagging camera) are not.
//! - **Completion.** In order of the earliest deadline:
//!   `vehicle_left` when no trigger class was seen on any camera for
//!   `absence_seconds` (only once one was seen during the inspection, so a
//!   command-started inspection of a car the trigger misses is ended by a
//!   stop or the maximum duration, not after T seconds); `timeout` after
//!   `max_duration_seconds`; `command` on `Stop` (of the running one, or of
//!   the id given); `shutdown` on `Shutdown`, after which the tracker ignores
//!   everything. Completion emits, per camera in configuration order, its
//!   frames best first (rank 1..k), then `Completed` with the frame count.
//! - **Capture now.** `CaptureNow` (all cameras, or the one named) makes
//!   the camera's next accepted frame of the running inspection ship at
//!   once, as a `FrameSelected` ranked after the best K (K+1, K+2, ...),
//!   instead of competing for the best K; `Completed` counts it. Refused
//!   when no inspection runs or the camera is unknown.
//!   **An inspection with no acceptable frame is still reported**
//!   (`frames` 0), so staff see a failed capture instead of nothing.
//! - **One vehicle, one inspection.** After `vehicle_left` the windows are
//!   empty, so the next car needs N fresh hits and gets a new id: no merge.
//!   After a stop or timeout with the vehicle still there, the trigger stays
//!   disarmed until it has been absent for `absence_seconds`, so a car left
//!   parked (or a stopped inspection) does not restart at once. The tracker
//!   cannot tell two cars apart when the second arrives within
//!   `absence_seconds` of the first leaving: that is one inspection.
//! - **Input hygiene.** Frames of cameras not configured are ignored, and so
//!   are frames older than their camera's previous frame (equal times are
//!   accepted); both are counted. Time never runs backwards: a call with an
//!   earlier time than already seen acts at the latest time seen.
//!
//! Metrics: [`SessionMetrics`] (`edge_session_*`).

mod config;
mod metrics;
mod select;
mod tracker;
mod wire;

#[cfg(test)]
mod tests;

use uuid::Uuid;

pub use config::{MAX_FRAMES_PER_CAMERA, MAX_SECONDS, MAX_TRIGGER_WINDOW, SessionConfig};
pub use metrics::{
    CommandLabels, IgnoredLabels, ReasonLabels, SessionMetrics, TriggerLabels, reason_label,
};
pub use select::frame_score;
pub use tracker::{
    Applied, MAX_CAMERAS, Observation, SessionCommand, SessionOutput, SessionTracker,
};
pub use wire::{JPEG, jpeg_image_ref, wire_detection};

/// What can go wrong in this module.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SessionError {
    /// The configuration or camera list cannot run; every problem is listed.
    #[error("invalid session configuration: {}", .0.join("; "))]
    InvalidConfig(Vec<String>),
    /// A `FrameSelected` output was converted without its image reference.
    #[error("frame {rank} of inspection {inspection_id} has no image reference")]
    MissingImage { inspection_id: Uuid, rank: u32 },
    /// An image with no bytes or no pixels cannot be shipped.
    #[error("image is empty ({bytes} bytes, {width}x{height} pixels)")]
    EmptyImage {
        bytes: usize,
        width: u32,
        height: u32,
    },
}
