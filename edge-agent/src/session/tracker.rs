//! The session state machine: observations, ticks and commands in, inspection outputs out.

use std::collections::{HashSet, VecDeque};

use chrono::{DateTime, TimeDelta, Utc};
use inspection_core::ids::CameraId;
use inspection_core::quality::{QualityMetrics, Verdict};
use inspection_core::wire::{CameraInfo, CompletionReason, InspectionKind, Trigger};
use inspection_core::yolo::Detection;
use uuid::Uuid;

use super::SessionError;
use super::config::SessionConfig;
use super::metrics::{ReasonLabels, SessionMetrics, TriggerLabels, reason_label};
use super::select::{BestFrames, Candidate, frame_score};

/// Most cameras one inspection may name (the wire's limit).
pub const MAX_CAMERAS: usize = 32;

/// Command ids remembered to refuse a redelivered `start` (MQTT QoS 1 may
/// deliver a command twice); a few minutes of commands at most.
const REMEMBERED_COMMANDS: usize = 64;

/// One pre-screened frame of one camera.
#[derive(Debug, Clone)]
pub struct Observation<T> {
    /// Which camera; frames of cameras not given to the tracker are ignored.
    pub camera: CameraId,
    /// When the frame was captured. Time only moves forward: a frame older
    /// than the camera's previous one is ignored.
    pub captured_at: DateTime<Utc>,
    /// The quality gate's verdict; rejected frames can trigger (their
    /// detections count) but are never selected.
    pub verdict: Verdict,
    /// Pre-screen detections with their class names (empty when the frame
    /// was not pre-screened).
    pub detections: Vec<(String, Detection)>,
    /// The pipeline's handle on the image (e.g. its JPEG bytes); handed back
    /// in [`SessionOutput::FrameSelected`] if the frame is selected, dropped
    /// otherwise.
    pub frame: T,
}

/// What staff or the agent ask of the tracker.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionCommand {
    /// Start an inspection now, even without a vehicle detected. Ignored
    /// while one runs, and when `cmd_id` was already executed.
    Start { kind: InspectionKind, cmd_id: Uuid },
    /// Complete the running inspection (`None`) or the given one. Stopping
    /// nothing, or an inspection that already completed, does nothing, so a
    /// repeated stop is harmless.
    Stop { inspection_id: Option<Uuid> },
    /// Complete the running inspection with reason `shutdown` and ignore
    /// everything afterwards.
    Shutdown,
    /// Ship the next accepted frame of each camera (or of the one named) in
    /// the running inspection at once, whatever its rank. Refused when no
    /// inspection runs or the camera is unknown.
    CaptureNow { camera: Option<CameraId> },
}

/// What [`SessionTracker::apply`] did with a command.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied<T> {
    /// The outputs to persist, in order (as [`SessionTracker::command`]).
    pub outputs: Vec<SessionOutput<T>>,
    /// Why the command did not apply; `None` when it did.
    pub refused: Option<String>,
    /// The inspection it acted on (started, stopped, captured into, or the
    /// one running when it was refused), if any.
    pub inspection_id: Option<Uuid>,
}

/// One step of an inspection, in the order the pipeline must persist them.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionOutput<T> {
    /// An inspection began.
    Started {
        inspection_id: Uuid,
        kind: InspectionKind,
        trigger: Trigger,
        /// Every configured camera, in configuration order.
        cameras: Vec<CameraInfo>,
        started_at: DateTime<Utc>,
    },
    /// One selected frame, emitted at completion: per camera (configuration
    /// order) its best frames, best first.
    FrameSelected {
        inspection_id: Uuid,
        camera: CameraInfo,
        frame: T,
        captured_at: DateTime<Utc>,
        quality: QualityMetrics,
        /// The best-scoring detections, at most `max_detections_per_frame`.
        detections: Vec<(String, Detection)>,
        /// The ranking score (see [`frame_score`](super::frame_score)).
        score: f64,
        /// 1 for the camera's best frame, then 2, ...
        rank: u32,
    },
    /// The inspection ended; `frames` is how many `FrameSelected` preceded
    /// it. An inspection with no acceptable frame still completes (and is
    /// reported, with `frames` 0) so staff see a failed capture.
    Completed {
        inspection_id: Uuid,
        reason: CompletionReason,
        frames: u32,
        started_at: DateTime<Utc>,
        completed_at: DateTime<Utc>,
    },
}

impl<T> SessionOutput<T> {
    /// The inspection this output belongs to.
    pub fn inspection_id(&self) -> Uuid {
        match self {
            Self::Started { inspection_id, .. }
            | Self::FrameSelected { inspection_id, .. }
            | Self::Completed { inspection_id, .. } => *inspection_id,
        }
    }
}

/// One entry of a camera's trigger window.
#[derive(Debug)]
struct WindowEntry {
    at: DateTime<Utc>,
    /// The best trigger-class detection of the frame, if any.
    hit: Option<(String, f32)>,
}

#[derive(Debug)]
struct CameraState<T> {
    info: CameraInfo,
    last_seen: Option<DateTime<Utc>>,
    window: VecDeque<WindowEntry>,
    best: BestFrames<T>,
}

#[derive(Debug)]
struct Active {
    id: Uuid,
    started_at: DateTime<Utc>,
    /// Whether a trigger class was seen since the start; until then (a
    /// command-started inspection of a car the trigger misses) absence does
    /// not end it.
    seen_presence: bool,
    /// Per camera (configuration order): ship its next accepted frame now.
    capture_now: Vec<bool>,
    /// Per camera: frames shipped by `CaptureNow` so far; they are ranked
    /// after the best K (`frames_per_camera + n`).
    captured: Vec<u32>,
}

/// Turns a stream of per-frame observations from several cameras into
/// inspections. Pure and synchronous: no I/O, no clock (time comes in with
/// each call), no hashing. See the [module documentation](super) for the
/// rules.
pub struct SessionTracker<T> {
    config: SessionConfig,
    absence: TimeDelta,
    max_duration: TimeDelta,
    cameras: Vec<CameraState<T>>,
    ids: Box<dyn FnMut() -> Uuid + Send>,
    active: Option<Active>,
    /// The latest time seen in any call; never decreases.
    now: Option<DateTime<Utc>>,
    /// The latest capture time at which any camera saw a trigger class.
    last_presence: Option<DateTime<Utc>>,
    /// Whether the trigger may start an inspection: false after an
    /// inspection ended while the vehicle was still there (stop, timeout),
    /// until it has been absent for `absence_seconds`.
    armed: bool,
    shut_down: bool,
    recent_commands: VecDeque<Uuid>,
    metrics: SessionMetrics,
}

impl<T> std::fmt::Debug for SessionTracker<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTracker")
            .field("active", &self.active)
            .field("now", &self.now)
            .field("last_presence", &self.last_presence)
            .field("armed", &self.armed)
            .field("shut_down", &self.shut_down)
            .finish_non_exhaustive()
    }
}

fn delta(seconds: f64) -> TimeDelta {
    // In range: `SessionConfig::problems` bounds both durations to a day.
    TimeDelta::milliseconds((seconds * 1000.0).round() as i64)
}

impl<T> SessionTracker<T> {
    /// A tracker for `cameras` (1 to 32, distinct ids) under `config`, which
    /// must have no [`problems`](SessionConfig::problems). `ids` makes the
    /// inspection ids: `Uuid::now_v7` in the agent, a counter in tests.
    pub fn new(
        config: SessionConfig,
        cameras: Vec<CameraInfo>,
        ids: impl FnMut() -> Uuid + Send + 'static,
    ) -> Result<Self, SessionError> {
        let mut problems = config.problems("session");
        if cameras.is_empty() || cameras.len() > MAX_CAMERAS {
            problems.push(format!(
                "cameras: an inspection has 1 to {MAX_CAMERAS} cameras, got {}",
                cameras.len()
            ));
        }
        let mut seen = HashSet::new();
        for camera in &cameras {
            if !seen.insert(&camera.id) {
                problems.push(format!("cameras: {} is listed twice", camera.id));
            }
        }
        if !problems.is_empty() {
            return Err(SessionError::InvalidConfig(problems));
        }
        let window = config.trigger_window as usize;
        let cameras = cameras
            .into_iter()
            .map(|info| CameraState {
                info,
                last_seen: None,
                window: VecDeque::with_capacity(window),
                best: BestFrames::new(config.frames_per_camera),
            })
            .collect();
        Ok(Self {
            absence: delta(config.absence_seconds),
            max_duration: delta(config.max_duration_seconds),
            config,
            cameras,
            ids: Box::new(ids),
            active: None,
            now: None,
            last_presence: None,
            armed: true,
            shut_down: false,
            recent_commands: VecDeque::with_capacity(REMEMBERED_COMMANDS),
            metrics: SessionMetrics::new(),
        })
    }

    /// Uses `metrics` (e.g. ones already registered) instead of fresh ones.
    pub fn with_metrics(mut self, metrics: SessionMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The tracker's metrics, to [`register`](SessionMetrics::register).
    pub fn metrics(&self) -> &SessionMetrics {
        &self.metrics
    }

    /// The configuration in force.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The running inspection's id.
    pub fn active(&self) -> Option<Uuid> {
        self.active.as_ref().map(|a| a.id)
    }

    /// Candidate frames held per camera, in configuration order; each is at
    /// most `frames_per_camera`, whatever the stream.
    pub fn held_frames(&self) -> Vec<(CameraId, usize)> {
        self.cameras
            .iter()
            .map(|c| (c.info.id.clone(), c.best.len()))
            .collect()
    }

    /// When the running inspection will time out if nothing else happens
    /// (absence or maximum duration), for the pipeline to schedule a
    /// [`tick`](Self::tick). `None` when idle.
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        self.deadline().map(|(at, _)| at)
    }

    /// Feeds one frame. Returns what it caused: possibly the completion of
    /// a running inspection (its time advanced past a deadline), possibly a
    /// start.
    pub fn observe(&mut self, obs: Observation<T>) -> Vec<SessionOutput<T>> {
        if self.shut_down {
            self.metrics.ignored("shut_down");
            return Vec::new();
        }
        let Some(index) = self.cameras.iter().position(|c| c.info.id == obs.camera) else {
            tracing::debug!(camera = %obs.camera, "frame of an unknown camera ignored");
            self.metrics.ignored("unknown_camera");
            return Vec::new();
        };
        if self.cameras[index]
            .last_seen
            .is_some_and(|last| obs.captured_at < last)
        {
            tracing::debug!(camera = %obs.camera, captured_at = %obs.captured_at, "frame older than the camera's previous one ignored");
            self.metrics.ignored("out_of_order");
            return Vec::new();
        }
        self.cameras[index].last_seen = Some(obs.captured_at);

        // Deadlines first, with the presence known so far: a car seen again
        // after a gap longer than the absence time is a new arrival.
        let mut out = self.advance(obs.captured_at);
        let hit = self.trigger_hit(&obs.detections);
        if hit.is_some() {
            self.last_presence = Some(
                self.last_presence
                    .map_or(obs.captured_at, |p| p.max(obs.captured_at)),
            );
        }

        if let Some(active) = &mut self.active {
            active.seen_presence |= hit.is_some();
        } else if self.armed
            && let Some(trigger) = self.record(index, obs.captured_at, hit)
        {
            out.push(self.start(self.config.default_kind, trigger, obs.captured_at));
        }
        if self.active.is_some()
            && let Some(now) = self.offer(index, obs)
        {
            out.push(now);
        }
        out
    }

    /// Advances time to `now` (ignored if earlier than time already seen)
    /// and completes the running inspection if a deadline passed.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<SessionOutput<T>> {
        if self.shut_down {
            return Vec::new();
        }
        self.advance(now)
    }

    /// Applies a command at time `now`. Commands that cannot apply (a start
    /// while busy, a stop of nothing) are ignored, logged and counted.
    pub fn command(&mut self, cmd: SessionCommand, now: DateTime<Utc>) -> Vec<SessionOutput<T>> {
        self.apply(cmd, now).outputs
    }

    /// [`command`](Self::command), also saying whether the command applied
    /// and why not, for the `command_result` central gets back.
    pub fn apply(&mut self, cmd: SessionCommand, now: DateTime<Utc>) -> Applied<T> {
        if self.shut_down {
            return Applied {
                outputs: Vec::new(),
                refused: Some("the agent is shutting down".into()),
                inspection_id: None,
            };
        }
        let mut out = self.advance(now);
        let now = self.now.unwrap_or(now);
        let mut refused = None;
        let mut acted_on = self.active();
        match cmd {
            SessionCommand::Start { kind, cmd_id } => {
                if let Some(active) = &self.active {
                    tracing::info!(%cmd_id, inspection_id = %active.id, "start command ignored: an inspection is running");
                    refused = Some(format!("inspection {} is running", active.id));
                    self.metrics.command("start", false);
                } else if self.recent_commands.contains(&cmd_id) {
                    tracing::info!(%cmd_id, "start command ignored: already executed");
                    refused = Some("this command was executed already".to_owned());
                    self.metrics.command("start", false);
                } else {
                    if self.recent_commands.len() >= REMEMBERED_COMMANDS {
                        self.recent_commands.pop_front();
                    }
                    self.recent_commands.push_back(cmd_id);
                    self.metrics.command("start", true);
                    out.push(self.start(kind, Trigger::Command { cmd_id }, now));
                    acted_on = self.active();
                }
            }
            SessionCommand::Stop { inspection_id } => {
                let matches = self
                    .active
                    .as_ref()
                    .is_some_and(|a| inspection_id.is_none_or(|id| id == a.id));
                if matches {
                    self.metrics.command("stop", true);
                    out.extend(self.complete(CompletionReason::Command, now));
                } else {
                    tracing::info!(requested = ?inspection_id, running = ?self.active(), "stop command ignored: no such inspection running");
                    refused = Some(match (inspection_id, self.active()) {
                        (_, None) => "no inspection is running".to_owned(),
                        (Some(asked), Some(running)) => {
                            format!("inspection {asked} is not running (inspection {running} is)")
                        }
                        (None, Some(_)) => "no inspection is running".to_owned(),
                    });
                    self.metrics.command("stop", false);
                }
            }
            SessionCommand::Shutdown => {
                self.metrics.command("shutdown", true);
                if self.active.is_some() {
                    out.extend(self.complete(CompletionReason::Shutdown, now));
                }
                self.shut_down = true;
            }
            SessionCommand::CaptureNow { camera } => {
                let index = camera
                    .as_ref()
                    .map(|id| self.cameras.iter().position(|c| &c.info.id == id));
                match (&mut self.active, index) {
                    (None, _) => refused = Some("no inspection is running".to_owned()),
                    (Some(_), Some(None)) => {
                        refused = Some(format!(
                            "unknown camera {}",
                            camera.as_ref().map(CameraId::as_str).unwrap_or_default()
                        ));
                    }
                    (Some(active), Some(Some(i))) => active.capture_now[i] = true,
                    (Some(active), None) => active.capture_now.fill(true),
                }
                if refused.is_some() {
                    tracing::info!(
                        ?camera,
                        reason = refused.as_deref(),
                        "capture-now command refused"
                    );
                }
                self.metrics.command("capture_now", refused.is_none());
            }
        }
        Applied {
            outputs: out,
            refused,
            inspection_id: acted_on,
        }
    }

    /// The earliest deadline of the running inspection and the reason it
    /// would complete with. On a tie the vehicle leaving wins: that is the
    /// ordinary end.
    fn deadline(&self) -> Option<(DateTime<Utc>, CompletionReason)> {
        let active = self.active.as_ref()?;
        let timeout = active.started_at.checked_add_signed(self.max_duration);
        let left = if active.seen_presence {
            let since = self
                .last_presence
                .map_or(active.started_at, |p| p.max(active.started_at));
            since.checked_add_signed(self.absence)
        } else {
            None
        };
        match (left, timeout) {
            (Some(l), Some(t)) if t < l => Some((t, CompletionReason::Timeout)),
            (Some(l), _) => Some((l, CompletionReason::VehicleLeft)),
            (None, Some(t)) => Some((t, CompletionReason::Timeout)),
            // Only at the end of chrono's range: such an inspection never
            // times out by itself, but stop and shutdown still end it.
            (None, None) => None,
        }
    }

    fn advance(&mut self, now: DateTime<Utc>) -> Vec<SessionOutput<T>> {
        let now = match self.now {
            Some(prev) if prev > now => prev,
            _ => now,
        };
        self.now = Some(now);
        let mut out = Vec::new();
        if let Some((at, reason)) = self.deadline()
            && now >= at
        {
            out = self.complete(reason, now);
        }
        self.maybe_arm(now);
        out
    }

    fn maybe_arm(&mut self, now: DateTime<Utc>) {
        if self.armed || self.active.is_some() {
            return;
        }
        let absent = self.last_presence.is_none_or(|p| {
            p.checked_add_signed(self.absence)
                .is_some_and(|end| now >= end)
        });
        if absent {
            self.armed = true;
        }
    }

    /// The best trigger-class detection of a frame, if any passes its
    /// threshold.
    fn trigger_hit(&self, detections: &[(String, Detection)]) -> Option<(String, f32)> {
        detections
            .iter()
            .filter(|(label, d)| {
                self.config
                    .trigger_threshold(label)
                    .is_some_and(|min| d.score >= min && d.score <= 1.0)
            })
            .max_by(|a, b| a.1.score.total_cmp(&b.1.score))
            .map(|(label, d)| (label.clone(), d.score))
    }

    /// Records a frame in its camera's trigger window and returns the trigger
    /// when the window now holds enough hits. Hits older than the absence
    /// time count no more: after such a gap the vehicle may have changed.
    fn record(
        &mut self,
        index: usize,
        at: DateTime<Utc>,
        hit: Option<(String, f32)>,
    ) -> Option<Trigger> {
        let window = self.config.trigger_window as usize;
        let camera = &mut self.cameras[index];
        if camera.window.len() >= window {
            camera.window.pop_front();
        }
        camera.window.push_back(WindowEntry { at, hit });
        let oldest = at.checked_sub_signed(self.absence);
        let hits: Vec<&(String, f32)> = camera
            .window
            .iter()
            .filter(|e| oldest.is_none_or(|o| e.at > o))
            .filter_map(|e| e.hit.as_ref())
            .collect();
        if hits.len() < self.config.trigger_frames as usize {
            return None;
        }
        let (label, score) = hits
            .into_iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .cloned()?;
        Some(Trigger::Detection { label, score })
    }

    fn start(
        &mut self,
        kind: InspectionKind,
        trigger: Trigger,
        started_at: DateTime<Utc>,
    ) -> SessionOutput<T> {
        let id = (self.ids)();
        let by_detection = matches!(trigger, Trigger::Detection { .. });
        if by_detection {
            // The triggering frames count as presence at the start.
            self.last_presence = Some(self.last_presence.map_or(started_at, |p| p.max(started_at)));
        }
        for camera in &mut self.cameras {
            camera.window.clear();
            camera.best.clear();
        }
        self.active = Some(Active {
            id,
            started_at,
            seen_presence: by_detection,
            capture_now: vec![false; self.cameras.len()],
            captured: vec![0; self.cameras.len()],
        });
        let label = if by_detection { "detection" } else { "command" };
        self.metrics
            .started
            .get_or_create(&TriggerLabels { trigger: label })
            .inc();
        self.metrics.active.set(1);
        tracing::info!(inspection_id = %id, trigger = label, ?kind, %started_at, "inspection started");
        SessionOutput::Started {
            inspection_id: id,
            kind,
            trigger,
            cameras: self.cameras.iter().map(|c| c.info.clone()).collect(),
            started_at,
        }
    }

    /// Offers a frame of camera `index` to the running inspection. Frames
    /// captured before its start (a lagging camera) are not part of it. A
    /// camera asked to capture now ships its next accepted frame at once
    /// (returned), ranked after the best K, instead of competing for them.
    fn offer(&mut self, index: usize, obs: Observation<T>) -> Option<SessionOutput<T>> {
        let active = self.active.as_mut()?;
        if obs.captured_at < active.started_at {
            return None;
        }
        let score = frame_score(&obs.verdict, &obs.detections, self.config.detection_weight)?;
        let now = active.capture_now[index];
        if !now && !self.cameras[index].best.would_keep(score) {
            return None;
        }
        let mut detections = obs.detections;
        detections.sort_by(|a, b| b.1.score.total_cmp(&a.1.score));
        detections.truncate(self.config.max_detections_per_frame);
        if now {
            active.capture_now[index] = false;
            active.captured[index] += 1;
            // At most 20 + a few hundred captures: fits.
            let k = u32::try_from(self.config.frames_per_camera).unwrap_or(u32::MAX);
            let rank = k.saturating_add(active.captured[index]);
            tracing::info!(inspection_id = %active.id, camera = %self.cameras[index].info.id, rank, "frame captured on command");
            return Some(SessionOutput::FrameSelected {
                inspection_id: active.id,
                camera: self.cameras[index].info.clone(),
                frame: obs.frame,
                captured_at: obs.captured_at,
                quality: obs.verdict.metrics,
                detections,
                score,
                rank,
            });
        }
        self.cameras[index].best.offer(Candidate {
            captured_at: obs.captured_at,
            frame: obs.frame,
            quality: obs.verdict.metrics,
            detections,
            score,
        });
        None
    }

    fn complete(&mut self, reason: CompletionReason, now: DateTime<Utc>) -> Vec<SessionOutput<T>> {
        let Some(active) = self.active.take() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for camera in &mut self.cameras {
            camera.window.clear();
            for (rank, c) in (1..).zip(camera.best.drain()) {
                out.push(SessionOutput::FrameSelected {
                    inspection_id: active.id,
                    camera: camera.info.clone(),
                    frame: c.frame,
                    captured_at: c.captured_at,
                    quality: c.quality,
                    detections: c.detections,
                    score: c.score,
                    rank,
                });
            }
        }
        // At most 32 cameras x 20 frames, plus the frames captured on
        // command (shipped already): fits.
        let captured: u32 = active.captured.iter().sum();
        let frames = u32::try_from(out.len())
            .unwrap_or(u32::MAX)
            .saturating_add(captured);
        out.push(SessionOutput::Completed {
            inspection_id: active.id,
            reason,
            frames,
            started_at: active.started_at,
            completed_at: now,
        });
        let m = &self.metrics;
        m.completed
            .get_or_create(&ReasonLabels {
                reason: reason_label(reason),
            })
            .inc();
        m.frames_selected.inc_by(u64::from(frames));
        m.active.set(0);
        let seconds = now
            .signed_duration_since(active.started_at)
            .num_milliseconds() as f64
            / 1000.0;
        m.duration.observe(seconds.max(0.0));
        if frames == 0 {
            tracing::warn!(inspection_id = %active.id, reason = reason_label(reason), "inspection completed without any acceptable frame");
        } else {
            tracing::info!(inspection_id = %active.id, reason = reason_label(reason), frames, "inspection completed");
        }
        // Re-armed at once only if the vehicle is gone; otherwise after it
        // has been absent for the absence time (see `maybe_arm`).
        self.armed = false;
        self.maybe_arm(now);
        out
    }
}
