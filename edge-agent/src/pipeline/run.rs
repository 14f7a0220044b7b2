//! The running pipeline: capture -> quality gate -> pre-screen -> session ->
//! outbox.
//!
//! Stages and hand-offs:
//! - one OS thread per camera runs its (blocking) `FrameSource` and puts
//!   frames into that camera's [`Slot`]: newest wins for live cameras, so a
//!   camera is never more than one frame ahead and drops are counted there;
//! - one task per camera takes frames from its slot and runs the quality
//!   gate on the blocking pool; rejected frames are counted by reason and go
//!   no further;
//! - one pre-screen task runs inference on at most `threads` frames at once
//!   (bounded channel in, bounded channel out);
//! - one session task owns the [`SessionTracker`], the only writer of the
//!   outbox: every output is committed (image first, then its event) before
//!   the next observation is looked at. A selected frame is searched for
//!   faces and redacted there, on the blocking pool, before its image is
//!   stored (see [`crate::anonymise`]): only selected frames pay for it.
//!
//! Memory is bounded by: one frame per camera slot, one per camera in the
//! pre-screen queue, `threads` in inference, a few in the session queue, and
//! K selected candidates per camera in the tracker.

use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use image::{GrayImage, RgbImage};
use inspection_core::ids::{CameraId, DeviceId, SiteId};
use inspection_core::quality::{AnalysisFrame, QualityThresholds, Verdict};
use inspection_core::wire::{
    Anonymised, CameraImages, CameraInfo, CommandOutcome, Event, EventBody, Sha256Hex, V1,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::{Semaphore, mpsc, watch};

use super::command::{CommandAction, DeviceCommand};
use super::slot::{Put, Slot, WhenFull};
use crate::anonymise::{Anonymiser, plate_boxes};
use crate::capture::{CaptureError, Frame, FrameSource, Stop};
use crate::ops::{Health, Heartbeat};
use crate::outbox::{Outbox, Priority};
use crate::prescreen::PrescreenPool;
use crate::session::{Observation, SessionCommand, SessionOutput, SessionTracker, jpeg_image_ref};
use uuid::Uuid;

/// What the tracker carries for a frame until it is selected or dropped.
#[derive(Clone)]
pub struct FrameHandle {
    pub image: Arc<RgbImage>,
    pub jpeg: Option<Arc<[u8]>>,
}

/// One camera as the pipeline runs it.
pub struct Camera {
    pub info: CameraInfo,
    pub source: Box<dyn FrameSource>,
    pub when_full: WhenFull,
    /// Search this camera's selected frames for faces (when the pipeline
    /// has an anonymiser).
    pub anonymise_faces: bool,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CameraLabel {
    camera: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectLabels {
    camera: String,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PersistLabels {
    kind: &'static str,
}

/// The pipeline's own counters (each stage module has its own as well).
#[derive(Debug, Clone, Default)]
pub struct PipelineMetrics {
    dropped: Family<CameraLabel, Counter>,
    accepted: Family<CameraLabel, Counter>,
    rejected: Family<RejectLabels, Counter>,
    rejected_frames: Family<CameraLabel, Counter>,
    persist_errors: Family<PersistLabels, Counter>,
}

impl PipelineMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "edge_pipeline_frames_dropped",
            "Frames replaced at capture because the pipeline was busy (newest wins)",
            self.dropped.clone(),
        );
        registry.register(
            "edge_quality_accepted",
            "Frames that passed the quality gate",
            self.accepted.clone(),
        );
        registry.register(
            "edge_quality_rejected",
            "Frames rejected by the quality gate, by reason (a frame may have several)",
            self.rejected.clone(),
        );
        registry.register(
            "edge_quality_rejected_frames",
            "Frames rejected by the quality gate (each frame once, whatever its reasons)",
            self.rejected_frames.clone(),
        );
        registry.register(
            "edge_pipeline_persist_errors",
            "Session outputs the outbox refused, by kind",
            self.persist_errors.clone(),
        );
    }

    pub fn dropped(&self, camera: &str) -> u64 {
        self.dropped
            .get_or_create(&CameraLabel {
                camera: camera.to_owned(),
            })
            .get()
    }

    pub fn accepted(&self, camera: &str) -> u64 {
        self.accepted
            .get_or_create(&CameraLabel {
                camera: camera.to_owned(),
            })
            .get()
    }

    pub fn rejected(&self, camera: &str, reason: &'static str) -> u64 {
        self.rejected
            .get_or_create(&RejectLabels {
                camera: camera.to_owned(),
                reason,
            })
            .get()
    }

    /// Frames of `camera` the quality gate rejected (each once).
    pub fn rejected_frames(&self, camera: &str) -> u64 {
        self.rejected_frames
            .get_or_create(&CameraLabel {
                camera: camera.to_owned(),
            })
            .get()
    }

    pub fn persist_errors(&self, kind: &'static str) -> u64 {
        self.persist_errors
            .get_or_create(&PersistLabels { kind })
            .get()
    }
}

/// Everything the pipeline runs with.
pub struct Pipeline {
    pub site: SiteId,
    pub device: DeviceId,
    pub agent_version: String,
    pub model_ids: Vec<String>,
    pub cameras: Vec<Camera>,
    /// Reloadable: the gate reads the current thresholds for every frame.
    pub quality: watch::Receiver<Arc<QualityThresholds>>,
    pub prescreen: PrescreenPool,
    /// Redacts faces in selected frames before they are stored; `None`:
    /// `[anonymise] enabled = false`.
    pub anonymiser: Option<Arc<Anonymiser>>,
    pub tracker: SessionTracker<FrameHandle>,
    pub outbox: Arc<Mutex<Outbox>>,
    /// Commands from central (the uplink); each yields a `command_result`.
    pub commands: mpsc::Receiver<DeviceCommand>,
    pub metrics: PipelineMetrics,
    pub health: Health,
    pub heartbeat: Heartbeat,
    /// Wakes sleeping sources at shutdown.
    pub stop: Stop,
}

/// What a finished run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    pub inspections_completed: u64,
    pub events_written: u64,
    pub images_written: u64,
}

/// Why the pipeline stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("a pipeline task failed: {0}")]
    Task(String),
}

struct Accepted {
    frame: Frame,
    verdict: Verdict,
}

impl Pipeline {
    /// Runs until every source has ended and the last inspection completed,
    /// or until `shutdown` becomes true (the running inspection is then
    /// completed with reason `shutdown` and persisted before returning).
    pub async fn run(
        self,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<RunReport, PipelineError> {
        let Pipeline {
            site,
            device,
            agent_version,
            model_ids,
            cameras,
            quality,
            prescreen,
            anonymiser,
            mut tracker,
            outbox,
            mut commands,
            metrics,
            health,
            heartbeat,
            stop,
        } = self;
        let camera_count = cameras.len().max(1);
        let anonymised_cameras: Vec<CameraId> = cameras
            .iter()
            .filter(|c| c.anonymise_faces && anonymiser.is_some())
            .map(|c| c.info.id.clone())
            .collect();
        let (gate_tx, mut gate_rx) = mpsc::channel::<Accepted>(camera_count);
        let (obs_tx, mut obs_rx) = mpsc::channel::<Observation<FrameHandle>>(camera_count * 2);

        // Capture threads and gate tasks.
        let mut slots = Vec::new();
        let mut capture_threads = Vec::new();
        let mut gates = tokio::task::JoinSet::new();
        for camera in cameras {
            let slot = Arc::new(Slot::<Frame>::new(camera.when_full));
            slots.push(slot.clone());
            let name = camera.info.id.to_string();
            let thread_slot = slot.clone();
            let thread_metrics = metrics.clone();
            let thread_health = health.clone();
            let mut source = camera.source;
            let spawned = std::thread::Builder::new()
                .name(format!("capture-{name}"))
                .spawn(move || {
                    capture_loop(
                        &name,
                        source.as_mut(),
                        &thread_slot,
                        &thread_metrics,
                        &thread_health,
                    )
                });
            match spawned {
                Ok(handle) => capture_threads.push(handle),
                Err(error) => {
                    slot.close();
                    return Err(PipelineError::Task(format!(
                        "cannot start a capture thread: {error}"
                    )));
                }
            }
            gates.spawn(gate_loop(
                camera.info,
                slot,
                quality.clone(),
                gate_tx.clone(),
                metrics.clone(),
            ));
        }
        drop(gate_tx);

        // Pre-screen: at most `threads` frames in inference at once.
        let prescreen_task = {
            let obs_tx = obs_tx.clone();
            tokio::spawn(async move {
                let permits = Arc::new(Semaphore::new(prescreen.threads().max(1)));
                // Shared, not copied per frame.
                let names = Arc::new(prescreen.prescreener().class_names().clone());
                let mut running = tokio::task::JoinSet::new();
                loop {
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        break;
                    };
                    let Some(Accepted { frame, verdict }) = gate_rx.recv().await else {
                        break;
                    };
                    let pool = prescreen.clone();
                    let names = names.clone();
                    let obs_tx = obs_tx.clone();
                    running.spawn(async move {
                        let _permit = permit;
                        let detections = match pool.detect(frame.image.clone()).await {
                            Ok(d) => d,
                            Err(error) => {
                                tracing::warn!(%error, camera = %frame.camera, "pre-screen failed; frame skipped");
                                return;
                            }
                        };
                        let detections = detections
                            .into_iter()
                            .map(|d| (names.get(d.class_id).unwrap_or("unknown").to_owned(), d))
                            .collect();
                        let _ = obs_tx
                            .send(Observation {
                                camera: frame.camera.clone(),
                                captured_at: frame.captured_at,
                                verdict,
                                detections,
                                frame: FrameHandle {
                                    image: frame.image,
                                    jpeg: frame.jpeg,
                                },
                            })
                            .await;
                    });
                    // Reap finished inferences so the set does not grow.
                    while running.try_join_next().is_some() {}
                }
                while running.join_next().await.is_some() {}
            })
        };
        drop(obs_tx);

        // Session + outbox, on this task.
        let mut writer = Writer {
            site,
            device,
            agent_version,
            model_ids,
            outbox,
            metrics: metrics.clone(),
            health: health.clone(),
            anonymiser,
            anonymised_cameras,
            withheld: 0,
            heartbeat: heartbeat.clone(),
            images: Vec::new(),
            report: RunReport::default(),
        };
        let mut inputs_open = true;
        let mut commands_open = true;
        let mut clock = SessionClock::default();
        loop {
            heartbeat.beat();
            let now = clock.now(Utc::now());
            let wait = tracker
                .next_deadline()
                .map(|d| (d - now).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(Duration::from_millis(500))
                .min(Duration::from_millis(500));
            if !inputs_open {
                // Every source has ended, so no frame can arrive: what the
                // deadlines would decide is already certain. Jump to them
                // instead of waiting (a replay ends as soon as it is read).
                // Bounded: each deadline completes or disarms something.
                for _ in 0..16 {
                    let Some(deadline) = tracker.next_deadline() else {
                        break;
                    };
                    let outputs = tracker.tick(deadline);
                    writer.persist(outputs).await;
                }
                break;
            }
            let outputs = tokio::select! {
                obs = obs_rx.recv(), if inputs_open => match obs {
                    Some(obs) => {
                        clock.observed(obs.captured_at, Utc::now());
                        tracker.observe(obs)
                    }
                    None => { inputs_open = false; Vec::new() }
                },
                cmd = commands.recv(), if commands_open => match cmd {
                    Some(cmd) => {
                        writer.command(&mut tracker, cmd).await;
                        Vec::new()
                    }
                    None => { commands_open = false; Vec::new() }
                },
                _ = shutdown.changed() => {
                    stop.stop();
                    for slot in &slots { slot.close(); }
                    let outputs = tracker.command(SessionCommand::Shutdown, Utc::now());
                    writer.persist(outputs).await;
                    break;
                }
                _ = tokio::time::sleep(wait) => tracker.tick(clock.now(Utc::now())),
            };
            writer.persist(outputs).await;
        }

        // Let everything upstream finish.
        stop.stop();
        for slot in &slots {
            slot.close();
        }
        drop(obs_rx);
        while let Some(joined) = gates.join_next().await {
            if let Err(error) = joined {
                tracing::error!(%error, "a quality-gate task failed");
            }
        }
        let _ = prescreen_task.await;
        for handle in capture_threads {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
        Ok(writer.report)
    }
}

/// The session's time between frames: the wall clock, less how far the
/// pipeline runs behind its cameras.
///
/// The tracker's deadlines are in capture time (a car has left when no
/// frame captured `absence_seconds` after its last sighting shows it).
/// When the quality gate and the pre-screen lag capture by more than that
/// (a slow board, a replayed directory that waits for the pre-screen), a
/// deadline taken on the wall clock would end the inspection while frames
/// that still show the car are in the queue, and the car's next frame would
/// start a second inspection. So a tick is at the capture time the pipeline
/// has reached: now minus the lag of the latest frame. With no lag this is
/// the wall clock; a camera that stops sending leaves the last lag in place,
/// so its deadline comes that much later but still comes.
#[derive(Debug, Default, Clone, Copy)]
struct SessionClock {
    lag: chrono::TimeDelta,
}

impl SessionClock {
    /// A frame captured at `captured_at` reached the session at `now`.
    fn observed(&mut self, captured_at: DateTime<Utc>, now: DateTime<Utc>) {
        self.lag = (now - captured_at).max(chrono::TimeDelta::zero());
    }

    /// The capture time the pipeline has reached at wall-clock `now`.
    fn now(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now.checked_sub_signed(self.lag).unwrap_or(now)
    }
}

fn capture_loop(
    camera: &str,
    source: &mut dyn FrameSource,
    slot: &Slot<Frame>,
    metrics: &PipelineMetrics,
    health: &Health,
) {
    let part = format!("camera:{camera}");
    loop {
        match source.next_frame() {
            Ok(Some(frame)) => {
                health.set(&part, true, "streaming");
                match slot.put(frame) {
                    Put::Stored => {}
                    Put::Replaced => {
                        metrics
                            .dropped
                            .get_or_create(&CameraLabel {
                                camera: camera.to_owned(),
                            })
                            .inc();
                    }
                    Put::Closed => break,
                }
            }
            Ok(None) => {
                health.set(&part, true, "source ended");
                break;
            }
            Err(CaptureError::Stopped) => break,
            Err(error) => {
                tracing::error!(%error, camera, "camera stopped");
                health.set(&part, false, error.to_string());
                break;
            }
        }
    }
    slot.close();
}

async fn gate_loop(
    info: CameraInfo,
    slot: Arc<Slot<Frame>>,
    quality: watch::Receiver<Arc<QualityThresholds>>,
    out: mpsc::Sender<Accepted>,
    metrics: PipelineMetrics,
) {
    let camera = info.id.to_string();
    let mut previous: Option<AnalysisFrame> = None;
    while let Some(frame) = slot.take().await {
        let thresholds = quality.borrow().clone();
        let image = frame.image.clone();
        let prev = previous.take();
        let judged = tokio::task::spawn_blocking(move || {
            let luma: GrayImage = image::imageops::grayscale(&*image);
            let analysed = AnalysisFrame::from_luma(&luma, thresholds.analysis_max_side);
            let verdict = analysed.assess(prev.as_ref(), &thresholds);
            (analysed, verdict)
        })
        .await;
        let Ok((analysed, verdict)) = judged else {
            tracing::error!(camera, "quality gate task panicked; frame skipped");
            continue;
        };
        previous = Some(analysed);
        if verdict.accepted() {
            metrics
                .accepted
                .get_or_create(&CameraLabel {
                    camera: camera.clone(),
                })
                .inc();
            if out.send(Accepted { frame, verdict }).await.is_err() {
                break;
            }
        } else {
            metrics
                .rejected_frames
                .get_or_create(&CameraLabel {
                    camera: camera.clone(),
                })
                .inc();
            for reason in &verdict.reasons {
                metrics
                    .rejected
                    .get_or_create(&RejectLabels {
                        camera: camera.clone(),
                        reason: reason.code(),
                    })
                    .inc();
            }
        }
    }
}

/// The session task's side of the outbox.
struct Writer {
    site: SiteId,
    device: DeviceId,
    agent_version: String,
    model_ids: Vec<String>,
    outbox: Arc<Mutex<Outbox>>,
    metrics: PipelineMetrics,
    health: Health,
    anonymiser: Option<Arc<Anonymiser>>,
    /// The cameras whose frames go through the anonymiser.
    anonymised_cameras: Vec<CameraId>,
    /// Selected frames of the running inspection that are not in the
    /// outbox (the face search failed, or the outbox refused them): the
    /// completion counts only the frames stored.
    withheld: u32,
    /// Beaten per output: a completion's frames are searched for faces one
    /// after the other (seconds each on a board), and the watchdog must
    /// see that as progress.
    heartbeat: Heartbeat,
    /// Selected images of the running inspection, per camera in order,
    /// with their ranks (frames captured on command ship before the best).
    images: Vec<(CameraInfo, Vec<(u32, Sha256Hex)>)>,
    report: RunReport,
}

impl Writer {
    async fn persist(&mut self, outputs: Vec<SessionOutput<FrameHandle>>) {
        for output in outputs {
            self.heartbeat.beat();
            let frame = matches!(output, SessionOutput::FrameSelected { .. });
            if let Err(error) = self.persist_one(output).await {
                tracing::error!(%error, "cannot persist a session output");
                self.health.set("outbox", false, error.clone());
                if frame {
                    // Its event is not in the outbox: the completion does
                    // not count it, so central does not wait for it.
                    self.withheld += 1;
                }
            }
        }
    }

    /// Searches a selected frame for faces when its camera asks for it,
    /// on the blocking pool (the re-encode of a redacted frame too). A
    /// failed search is counted, logged and put in the health here.
    async fn anonymise(
        &mut self,
        camera: &CameraInfo,
        frame: &FrameHandle,
        detections: &[(String, inspection_core::yolo::Detection)],
    ) -> Search {
        let Some(anonymiser) = self.anonymiser.clone() else {
            return Search::NotAsked;
        };
        if !self.anonymised_cameras.contains(&camera.id) {
            return Search::NotAsked;
        }
        let keep = plate_boxes(detections.iter().map(|(l, d)| (l.as_str(), d.bbox)));
        let name = camera.id.to_string();
        let image = frame.image.clone();
        let searched = {
            let anonymiser = anonymiser.clone();
            tokio::task::spawn_blocking(move || {
                let outcome = anonymiser
                    .anonymise(&name, &image, &keep)
                    .map_err(|e| (e.code(), e.to_string()))?;
                let jpeg = match &outcome.redacted {
                    Some(redacted) => Some(encode_jpeg(redacted).map_err(|e| ("encode", e))?),
                    None => None,
                };
                Ok::<_, (&'static str, String)>((jpeg, outcome.faces))
            })
            .await
        };
        let (code, error) = match searched {
            Ok(Ok((jpeg, faces))) => {
                self.health
                    .set("anonymise", true, "searching selected frames");
                return Search::Done { jpeg, faces };
            }
            Ok(Err(failed)) => failed,
            Err(join) => ("panic", format!("the face search failed: {join}")),
        };
        anonymiser.metrics().count_withheld(code);
        self.withheld += 1;
        tracing::error!(
            %error,
            camera = %camera.id,
            "face search failed; the frame is kept off the outbox (never stored unanonymised)"
        );
        self.health.set("anonymise", false, error);
        Search::Failed
    }

    async fn persist_one(&mut self, output: SessionOutput<FrameHandle>) -> Result<(), String> {
        let inspection_id = output.inspection_id();
        let mut anonymised = None;
        // The image goes in first: an event never refers to an image the
        // outbox does not have.
        let image = match &output {
            SessionOutput::FrameSelected {
                frame,
                camera,
                rank,
                detections,
                ..
            } => {
                let redacted = match self.anonymise(camera, frame, detections).await {
                    Search::NotAsked => None,
                    // Never stored unanonymised: the frame is left out.
                    Search::Failed => return Ok(()),
                    Search::Done { jpeg, faces } => {
                        // The wire's bound; more faces than that in one
                        // frame are all redacted all the same.
                        anonymised = Some(Anonymised {
                            faces: faces.min(1000),
                        });
                        jpeg
                    }
                };
                let jpeg = match (redacted, &frame.jpeg) {
                    (Some(redacted), _) => redacted,
                    (None, Some(j)) => j.clone(),
                    (None, None) => encode_jpeg(&frame.image)?,
                };
                let image_ref = jpeg_image_ref(&jpeg, frame.image.width(), frame.image.height())
                    .map_err(|e| e.to_string())?;
                let outbox = self.outbox.clone();
                let sha = image_ref.sha256.clone();
                let priority = Priority::frame(*rank);
                let stored = tokio::task::spawn_blocking(move || {
                    let mut outbox = outbox.lock().unwrap_or_else(|e| e.into_inner());
                    outbox.append_image(&sha, &jpeg, priority, inspection_id)
                })
                .await
                .map_err(|e| e.to_string())?;
                if let Err(error) = stored {
                    self.metrics
                        .persist_errors
                        .get_or_create(&PersistLabels { kind: "image" })
                        .inc();
                    return Err(error.to_string());
                }
                self.report.images_written += 1;
                let entry = (*rank, image_ref.sha256.clone());
                match self.images.iter_mut().find(|(c, _)| c.id == camera.id) {
                    Some((_, shas)) => shas.push(entry),
                    None => self.images.push((camera.clone(), vec![entry])),
                }
                Some(image_ref)
            }
            _ => None,
        };
        let mut body = output
            .to_event_body(image.as_ref())
            .map_err(|e| e.to_string())?;
        match &mut body {
            EventBody::InspectionStarted {
                agent_version,
                models,
                ..
            } => {
                self.images.clear();
                self.withheld = 0;
                *agent_version = Some(self.agent_version.clone());
                models.clone_from(&self.model_ids);
            }
            EventBody::InspectionCompleted { images, frames, .. } => {
                *frames = frames.saturating_sub(std::mem::take(&mut self.withheld));
                // Best first, per camera: by rank.
                *images = std::mem::take(&mut self.images)
                    .into_iter()
                    .map(|(camera, mut shas)| {
                        shas.sort_by_key(|(rank, _)| *rank);
                        CameraImages {
                            camera: camera.id,
                            sha256: shas.into_iter().map(|(_, sha)| sha).collect(),
                        }
                    })
                    .collect();
                self.report.inspections_completed += 1;
            }
            EventBody::FrameSelected { anonymised: a, .. } => *a = anonymised,
            EventBody::CommandResult { .. } => {}
        }
        self.append(Some(inspection_id), body).await
    }

    /// Applies a command from central and appends its `command_result`
    /// (after the outputs it caused, e.g. the inspection it started).
    async fn command(&mut self, tracker: &mut SessionTracker<FrameHandle>, cmd: DeviceCommand) {
        let (outcome, detail, inspection_id) = match cmd.action {
            CommandAction::Session(action) => {
                let applied = tracker.apply(action, Utc::now());
                self.persist(applied.outputs).await;
                match applied.refused {
                    None => (CommandOutcome::Executed, None, applied.inspection_id),
                    Some(reason) => (CommandOutcome::Refused, Some(reason), applied.inspection_id),
                }
            }
            CommandAction::Report { outcome, detail } => (outcome, detail, tracker.active()),
        };
        tracing::info!(cmd_id = %cmd.cmd_id, command = cmd.command, ?outcome, detail = detail.as_deref(), "command handled");
        let body = EventBody::CommandResult {
            cmd_id: cmd.cmd_id,
            command: cmd.command.to_owned(),
            outcome,
            detail: detail.map(|d| d.chars().take(256).collect()),
        };
        if let Err(error) = self.append(inspection_id, body).await {
            tracing::error!(%error, cmd_id = %cmd.cmd_id, "cannot persist a command result");
            self.health.set("outbox", false, error);
        }
    }

    /// Appends one event; the outbox gives it its seq and msg_id.
    async fn append(&mut self, inspection_id: Option<Uuid>, body: EventBody) -> Result<(), String> {
        let kind = body.name();
        let (site, device) = (self.site.clone(), self.device.clone());
        let outbox = self.outbox.clone();
        let appended = tokio::task::spawn_blocking(move || {
            let mut outbox = outbox.lock().unwrap_or_else(|e| e.into_inner());
            outbox.append_event(|seq, msg_id| Event {
                v: V1,
                msg_id,
                seq,
                site,
                device,
                inspection_id,
                at: Utc::now(),
                event: body,
            })
        })
        .await
        .map_err(|e| e.to_string())?;
        match appended {
            Ok(appended) => {
                // Logged after the commit returned: what this line reports
                // survives a crash (the kill test relies on it).
                tracing::info!(
                    seq = appended.seq,
                    msg_id = %appended.msg_id,
                    inspection_id = inspection_id.map(tracing::field::display),
                    kind,
                    "event committed"
                );
                self.report.events_written += 1;
                self.health.set("outbox", true, "writing");
                Ok(())
            }
            Err(error) => {
                self.metrics
                    .persist_errors
                    .get_or_create(&PersistLabels { kind: "event" })
                    .inc();
                Err(error.to_string())
            }
        }
    }
}

/// What the face search did to a selected frame.
enum Search {
    /// The camera (or the board) has anonymisation off.
    NotAsked,
    /// Searched: the redacted frame's JPEG when faces were found, else the
    /// camera's bytes are kept.
    Done { jpeg: Option<Arc<[u8]>>, faces: u32 },
    /// The search failed: the frame must not be stored.
    Failed,
}

fn encode_jpeg(image: &RgbImage) -> Result<Arc<[u8]>, String> {
    let mut bytes = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(Cursor::new(&mut bytes), 90);
    image
        .write_with_encoder(encoder)
        .map_err(|e| format!("cannot encode a frame as JPEG: {e}"))?;
    Ok(bytes.into())
}

#[cfg(test)]
mod tests {
    use super::SessionClock;
    use chrono::{TimeDelta, TimeZone, Utc};

    #[test]
    fn the_session_clock_runs_as_far_behind_as_the_latest_frame() {
        let t0 = Utc.with_ymd_and_hms(2026, 12, 4, 12, 0, 0).unwrap();
        let mut clock = SessionClock::default();
        assert_eq!(clock.now(t0), t0, "no frame yet: the wall clock");

        // A frame captured at t0 reaches the session 12 s later: a deadline
        // at t0 + 8 s has not passed yet at t0 + 12 s.
        clock.observed(t0, t0 + TimeDelta::seconds(12));
        assert_eq!(clock.now(t0 + TimeDelta::seconds(12)), t0);
        assert_eq!(
            clock.now(t0 + TimeDelta::seconds(20)),
            t0 + TimeDelta::seconds(8)
        );

        // The pipeline catches up: the lag shrinks with it.
        clock.observed(t0 + TimeDelta::seconds(19), t0 + TimeDelta::seconds(20));
        assert_eq!(
            clock.now(t0 + TimeDelta::seconds(21)),
            t0 + TimeDelta::seconds(20)
        );

        // A frame stamped in the future (a clock step) is no negative lag.
        clock.observed(t0 + TimeDelta::seconds(40), t0 + TimeDelta::seconds(30));
        assert_eq!(
            clock.now(t0 + TimeDelta::seconds(31)),
            t0 + TimeDelta::seconds(31)
        );
    }
}
