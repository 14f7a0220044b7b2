//! The worker role end to end on the embedded defaults: inspections recorded
//! in a real SQLite store (the bridge's own call), images in a local object
//! store, the real platedet model, the real PP-OCR recogniser, real change
//! detection. A pickup and a return of the same synthetic-plated vehicle
//! (the bus photo with an EU plate rendered on it), the return shifted,
//! relit and scratched; plus the bad inputs: images that never arrive, a
//! corrupt image, an object store that fails every read.

#[path = "../../shared/tests/common/mod.rs"]
mod common;
mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use central::config::{Config, FileChecks};
use central::detect::DetectMetrics;
use central::report::ReportMetrics;
use central::run::worker_components;
use central::store::{
    Comparison, DamageModel, FindingSource, FindingStatus, FrameState, InspectionResult,
    InspectionReview, InspectionStatus, JobKind, JobRecord, JobState, Recorded, SqliteStore, Store,
    StoreConfig,
};
use central::upload::object_key;
use central::worker::{Worker, WorkerMetrics};
use chrono::{DateTime, TimeZone, Utc};
use image::RgbImage;
use inspection_core::BBox;
use inspection_core::compare::synth;
use inspection_core::ids::{CameraId, DeviceId, SiteId};
use inspection_core::wire::{
    CameraImages, CameraInfo, CompletionReason, Event, EventBody, FrameQuality, ImageRef,
    InspectionKind, Sha256Hex, Trigger, V1,
};
use object_store::local::LocalFileSystem;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};
use support::plates as plates_synth;
use tokio::sync::watch;
use uuid::Uuid;

/// The scene both visits show: the bus photo at a bay camera's width with a
/// German plate rendered where a car's plate would be.
struct Scene {
    image: RgbImage,
    plate: String,
    /// Where the plate was rendered (for messages).
    plate_box: BBox,
}

fn scene() -> Scene {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut image = plates_synth::background(
        &common::fetched("photos/pexels_double_decker_bus.jpg"),
        1280,
    );
    let spec = plates_synth::random_plate(&mut rng, inspection_core::plate::Country::DE);
    let font = plates_synth::load_font(plates_synth::FONTS[0]);
    let rendered = plates_synth::render_plate(&spec, &font);
    let look = plates_synth::Look {
        width: 220,
        degrees: 0.0,
        blur: 0.0,
        glare: None,
        light: 1.0,
    };
    let plate_box = plates_synth::place(&mut image, &rendered, &look, (560, 700));
    Scene {
        image,
        plate: spec.canonical,
        plate_box,
    }
}

/// A camera's view of the scene: a window of it at `(x0, y0)`, `scale`.
fn view(scene: &Scene, x0: f32, y0: f32, scale: f32) -> RgbImage {
    let (w, h) = (scene.image.width() - 96, scene.image.height() - 72);
    synth::shift_scale(&scene.image, w, h, x0, y0, scale)
}

fn jpeg(image: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 92)
        .encode_image(image)
        .expect("JPEG encodes");
    out
}

fn sha(bytes: &[u8]) -> Sha256Hex {
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Sha256Hex::new(hex).expect("a SHA-256")
}

fn t(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 8, 0, 0).single().unwrap() + chrono::Duration::minutes(minute)
}

/// A running worker over a fresh store and object store.
struct Harness {
    _dir: tempfile::TempDir,
    config: Config,
    store: Arc<dyn Store>,
    images: Arc<dyn ObjectStore>,
    stop: watch::Sender<bool>,
    worker: tokio::task::JoinHandle<()>,
    metrics: WorkerMetrics,
    seq: std::sync::atomic::AtomicU64,
}

async fn spawn_worker(
    config: &Config,
    store: &Arc<dyn Store>,
    images: &Arc<dyn ObjectStore>,
    metrics: &WorkerMetrics,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let components = worker_components(config, &DetectMetrics::new(), &ReportMetrics::default())
        .await
        .expect("the worker's models load");
    let (stop, stop_rx) = watch::channel(false);
    let worker = Worker::new(
        config.worker.clone(),
        store.clone(),
        images.clone(),
        components,
        metrics.clone(),
    );
    (stop, tokio::spawn(worker.run(stop_rx)))
}

/// The central config the harness runs: platedet as the local plate
/// detector, no damage model (none ships), quick polling and short leases.
fn config(dir: &Path, extra: &str) -> Config {
    let text = format!(
        r#"
[detectors.plate]
model = "{plate}"

[store]
url = "sqlite://{db}"
job_max_attempts = 2

# The template writes the reports here (their wording is checked below);
# the embedded model has its own tests (report_embedded.rs).
[report.embedded]
enabled = false

[upload]
object_store = {{ kind = "local", path = "{images}" }}

[worker]
id = "worker-test"
poll_interval_ms = 50
heartbeat_s = 1
lease_s = 5
retry_base_s = 1
retry_max_s = 1
{extra}
"#,
        plate = common::fetched("platedet/platedet.onnx").display(),
        db = dir.join("central.sqlite3").display(),
        images = dir.join("images").display(),
    );
    Config::from_toml(&text, FileChecks::On).unwrap_or_else(|e| panic!("config: {e}\n{text}"))
}

impl Harness {
    /// A worker on a fresh SQLite store.
    async fn start(extra: &str) -> Harness {
        Self::start_with(extra, None).await
    }

    /// A worker on `store` (a fresh SQLite store when `None`).
    async fn start_with(extra: &str, store: Option<Arc<dyn Store>>) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("images")).unwrap();
        let config = config(dir.path(), extra);
        let store: Arc<dyn Store> = match store {
            Some(store) => store,
            None => Arc::new(
                SqliteStore::open(&StoreConfig {
                    job_max_attempts: config.store.job_max_attempts,
                    ..StoreConfig::sqlite(&dir.path().join("central.sqlite3"))
                })
                .await
                .expect("store opens"),
            ),
        };
        let images: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(dir.path().join("images")).unwrap());
        let metrics = WorkerMetrics::new();
        let (stop, worker) = spawn_worker(&config, &store, &images, &metrics).await;
        Harness {
            _dir: dir,
            config,
            store,
            images,
            stop,
            worker,
            metrics,
            seq: 1.into(),
        }
    }

    /// Another worker, named `id`, on the same store and images.
    async fn another_worker(&self, id: &str) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let mut config = self.config.clone();
        config.worker.id = Some(id.to_owned());
        spawn_worker(&config, &self.store, &self.images, &WorkerMetrics::new()).await
    }

    async fn upload(&self, bytes: &[u8]) -> Sha256Hex {
        let sha = sha(bytes);
        self.images
            .put(&object_key(&sha), PutPayload::from(bytes.to_vec()))
            .await
            .expect("object stored");
        sha
    }

    /// Records an inspection with one front-camera frame per image, as the
    /// bridge would; the store queues its job.
    async fn inspect(
        &self,
        kind: InspectionKind,
        at: DateTime<Utc>,
        frames: &[(Sha256Hex, u64)],
    ) -> Uuid {
        let events = self.inspection_events(kind, at, frames);
        self.store
            .record_events(&events, Utc::now())
            .await
            .expect("events recorded");
        events[0].inspection_id.unwrap()
    }

    /// The events of an inspection with one front-camera frame per image:
    /// started, the frames, completed.
    fn inspection_events(
        &self,
        kind: InspectionKind,
        at: DateTime<Utc>,
        frames: &[(Sha256Hex, u64)],
    ) -> Vec<Event> {
        let id = Uuid::now_v7();
        let camera = CameraInfo {
            id: CameraId::new("cam-front").unwrap(),
            position: "front".into(),
        };
        let mut bodies = vec![EventBody::InspectionStarted {
            kind,
            trigger: Trigger::Detection {
                label: "plate".into(),
                score: 0.8,
            },
            cameras: vec![camera.clone()],
            agent_version: Some("test".into()),
            models: vec![],
        }];
        for (rank, (sha, bytes)) in frames.iter().enumerate() {
            bodies.push(EventBody::FrameSelected {
                camera: camera.clone(),
                captured_at: at,
                image: ImageRef {
                    sha256: sha.clone(),
                    bytes: *bytes,
                    width: 1184,
                    height: 896,
                    content_type: "image/jpeg".into(),
                },
                quality: FrameQuality {
                    sharpness: 500.0,
                    mean_luma: 120.0,
                    dark_fraction: 0.0,
                    bright_fraction: 0.0,
                },
                detections: vec![],
                rank: rank as u32 + 1,
                anonymised: None,
            });
        }
        bodies.push(EventBody::InspectionCompleted {
            reason: CompletionReason::VehicleLeft,
            frames: frames.len() as u32,
            images: vec![CameraImages {
                camera: camera.id.clone(),
                sha256: frames.iter().map(|(s, _)| s.clone()).collect(),
            }],
        });
        bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| Event {
                v: V1,
                msg_id: Uuid::now_v7(),
                seq: self.seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
                site: SiteId::new("bay-test").unwrap(),
                device: DeviceId::new("edge-1").unwrap(),
                inspection_id: Some(id),
                at: at + chrono::Duration::seconds(i as i64),
                event: body,
            })
            .collect()
    }

    /// Waits until the inspection reaches `status` (or fails the test).
    async fn wait_for(&self, id: Uuid, status: InspectionStatus) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let record = self
                .store
                .inspection(id)
                .await
                .unwrap()
                .expect("inspection");
            if record.status == status {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "inspection {id} is {:?} ({:?}), not {status:?}; jobs: {:?}",
                record.status,
                record.status_detail,
                self.store.inspection_jobs(id).await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the inspection's job has ended: the worker marks the
    /// inspection processed, then settles its job.
    async fn wait_for_job_settled(&self, id: Uuid) -> Vec<JobRecord> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let jobs = self.store.inspection_jobs(id).await.unwrap();
            if jobs.iter().all(|j| j.state != JobState::Running) {
                return jobs;
            }
            assert!(tokio::time::Instant::now() < deadline, "{jobs:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn result(&self, id: Uuid) -> InspectionResult {
        self.store
            .inspection_result(id)
            .await
            .unwrap()
            .expect("a stored result")
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(60), self.worker)
            .await
            .expect("the worker stops on shutdown")
            .unwrap();
    }
}

fn describe(result: &InspectionResult) -> String {
    result
        .findings
        .iter()
        .map(|f| {
            format!(
                "{} {} {:.2} [{:.0},{:.0},{:.0},{:.0}]",
                f.status.as_str(),
                f.class,
                f.confidence,
                f.bbox.x1,
                f.bbox.y1,
                f.bbox.x2,
                f.bbox.y2
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pickup_then_return_reads_the_plate_and_flags_the_new_scratch() {
    let h = Harness::start("").await;
    let scene = scene();

    // Pickup: the camera's window at one place.
    let pickup_jpeg = jpeg(&view(&scene, 40.0, 30.0, 1.0));
    let pickup_sha = h.upload(&pickup_jpeg).await;
    let pickup = h
        .inspect(
            InspectionKind::Pickup,
            t(0),
            &[(pickup_sha, pickup_jpeg.len() as u64)],
        )
        .await;
    h.wait_for(pickup, InspectionStatus::Processed).await;
    let p = h.result(pickup).await;
    println!(
        "pickup: plate {:?} (rendered at {:?}); findings: {}",
        p.plate,
        scene.plate_box,
        describe(&p)
    );
    assert_eq!(p.damage_model, DamageModel::NotConfigured);
    assert_eq!(p.comparison, Comparison::NotApplicable);
    assert_eq!(p.frames.len(), 1);
    assert_eq!(p.frames[0].state, FrameState::Ok);
    println!("pickup plate reads: {:?}", p.plate_reads);
    let plate = p.plate.as_ref().expect("the pickup's plate is read");
    assert_eq!(plate.plate, scene.plate, "{plate:?}");
    assert!(p.findings.is_empty(), "no damage model, nothing to compare");
    assert_eq!(
        h.store
            .inspection(pickup)
            .await
            .unwrap()
            .unwrap()
            .plate
            .as_deref(),
        Some(scene.plate.as_str())
    );

    // Return: the car stands a little further on, the light is warmer and
    // dimmer, and a scratch was added on the bus's side.
    let mut ret = view(&scene, 58.0, 41.0, 1.02);
    ret = synth::relight(
        &ret,
        &synth::Relight {
            gain: [0.92, 0.88, 0.84],
            offset: [6.0, 4.0, 2.0],
            gamma: 1.08,
            gradient: [0.06, 0.0],
        },
    );
    let scratch = synth::Scratch::irregular((300.0, 430.0), 0.25, 140.0, 3.0, -70.0, 11);
    let scratch_box = synth::paint_scratch(&mut ret, &scratch);
    let ret_jpeg = jpeg(&ret);
    let ret_sha = h.upload(&ret_jpeg).await;
    let returned = h
        .inspect(
            InspectionKind::Return,
            t(90),
            &[(ret_sha, ret_jpeg.len() as u64)],
        )
        .await;
    h.wait_for(returned, InspectionStatus::Processed).await;
    let r = h.result(returned).await;
    println!(
        "return: plate {:?}; comparison {:?}; findings: {}; scratch at {:?}",
        r.plate,
        r.comparison,
        describe(&r),
        scratch_box
    );
    assert_eq!(
        r.plate.as_ref().map(|p| p.plate.as_str()),
        Some(scene.plate.as_str())
    );
    assert_eq!(
        r.comparison,
        Comparison::Compared {
            pickup_inspection_id: pickup,
            positions: vec!["front".into()],
        }
    );
    let changes: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.source == FindingSource::Change)
        .collect();
    assert!(
        changes
            .iter()
            .all(|f| f.status == FindingStatus::PossibleNewDamage),
        "{}",
        describe(&r)
    );
    let hit = changes
        .iter()
        .any(|f| f.bbox.intersection(&scratch_box).is_some());
    assert!(
        hit,
        "the scratch at {scratch_box:?} is flagged: {}",
        describe(&r)
    );
    // Little else: the scratch may be split in two, and nothing else changed.
    let elsewhere = changes
        .iter()
        .filter(|f| f.bbox.intersection(&scratch_box).is_none())
        .count();
    assert!(elsewhere <= 1, "false alarms: {}", describe(&r));
    assert_eq!(r.summary.possible_new_damage as usize, changes.len());
    assert!(changes.iter().all(|f| f.vehicle_bbox.is_some()));

    // A report was written and stored with the result.
    let reports = h.store.reports(returned).await.unwrap();
    assert_eq!(reports.len(), 1, "{reports:?}");
    println!("report by {}:\n{}", reports[0].writer, reports[0].narrative);
    assert!(
        reports[0]
            .narrative
            .to_lowercase()
            .contains("possible new damage"),
        "{}",
        reports[0].narrative
    );

    // The same return frame again is nothing new against the same pickup's
    // frame... and the pickup frame itself returned unchanged flags nothing.
    let same_sha = sha(&pickup_jpeg);
    let unchanged = h
        .inspect(
            InspectionKind::Return,
            t(180),
            &[(same_sha, pickup_jpeg.len() as u64)],
        )
        .await;
    h.wait_for(unchanged, InspectionStatus::Processed).await;
    let u = h.result(unchanged).await;
    println!(
        "unchanged return: {:?}; findings: {}",
        u.comparison,
        describe(&u)
    );
    assert!(matches!(u.comparison, Comparison::Compared { .. }));
    assert!(u.findings.is_empty(), "{}", describe(&u));

    let text = metrics_text(&h.metrics);
    assert!(
        text.contains("central_worker_jobs_total{result=\"processed\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("central_worker_plate_reads_total{outcome=\"read\"}"),
        "{text}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_that_never_arrive_end_in_images_missing_without_an_attempt_used() {
    let h = Harness::start("image_wait_s = 2\nimage_recheck_s = 1").await;
    let absent = sha(b"never uploaded");
    let id = h
        .inspect(InspectionKind::Return, t(0), &[(absent.clone(), 1000)])
        .await;
    h.wait_for(id, InspectionStatus::WaitingForImages).await;
    let waiting = h.store.inspection(id).await.unwrap().unwrap();
    let detail = waiting.status_detail.unwrap_or_default();
    assert!(detail.contains("1 image missing"), "{detail}");
    assert!(detail.contains(&absent.to_string()[..12]), "{detail}");
    h.wait_for(id, InspectionStatus::ImagesMissing).await;
    let jobs = h.wait_for_job_settled(id).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].state, JobState::Done);
    assert!(h.store.inspection_result(id).await.unwrap().is_none());
    let text = metrics_text(&h.metrics);
    assert!(
        text.contains("central_worker_jobs_total{result=\"deferred\"}"),
        "{text}"
    );
    assert!(
        text.contains("central_worker_jobs_total{result=\"images_missing\"} 1"),
        "{text}"
    );
    h.stop().await;
}

/// The agent was killed after the start and one frame: the inspection
/// never ends. Once the board's telemetry, taken `close_incomplete_after_s`
/// after the start, shows an empty outbox, the worker processes what
/// arrived, and the status says it is incomplete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inspection_its_killed_agent_never_ended_is_processed_with_what_arrived() {
    let h = Harness::start("close_incomplete_after_s = 2").await;
    let scene = scene();
    let front = jpeg(&view(&scene, 40.0, 30.0, 1.0));
    let sha = h.upload(&front).await;
    let events = h.inspection_events(
        InspectionKind::Pickup,
        t(0),
        &[(sha.clone(), front.len() as u64), (sha, front.len() as u64)],
    );
    let id = events[0].inspection_id.unwrap();
    // Started and the first frame; the second frame and the end were lost
    // with the agent.
    h.store
        .record_events(&events[..2], Utc::now())
        .await
        .unwrap();
    let telemetry = |at: DateTime<Utc>, entries: u64| {
        let mut telemetry = inspection_core::wire::examples::telemetry();
        telemetry.site = SiteId::new("bay-test").unwrap();
        telemetry.device = DeviceId::new("edge-1").unwrap();
        telemetry.at = at;
        telemetry.outbox.entries = entries;
        telemetry
    };
    // The restarted agent still has entries to send: the inspection waits.
    h.store
        .record_telemetry(
            &telemetry(t(0) + chrono::Duration::seconds(5), 4),
            Utc::now(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let waiting = h.store.inspection(id).await.unwrap().unwrap();
    assert_eq!(waiting.status, InspectionStatus::Receiving);
    // Its outbox is empty: nothing more is coming.
    h.store
        .record_telemetry(
            &telemetry(t(0) + chrono::Duration::seconds(6), 0),
            Utc::now(),
        )
        .await
        .unwrap();
    h.wait_for(id, InspectionStatus::Processed).await;
    let record = h.store.inspection(id).await.unwrap().unwrap();
    let detail = record.incomplete.unwrap_or_default();
    assert!(detail.contains("never ended"), "{detail}");
    assert_eq!((record.frames_received, record.frames_expected), (1, None));
    let r = h.result(id).await;
    assert_eq!(r.frames.len(), 1);
    assert_eq!(
        r.plate.as_ref().map(|p| p.plate.as_str()),
        Some(scene.plate.as_str())
    );
    let text = metrics_text(&h.metrics);
    assert!(
        text.contains("central_inspections_closed_incomplete_total 1"),
        "{text}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_image_is_marked_and_skipped() {
    let h = Harness::start("").await;
    let scene = scene();
    let good = jpeg(&view(&scene, 40.0, 30.0, 1.0));
    // Cut in half: the decoder alone would accept it with grey rows.
    let truncated = good[..good.len() / 2].to_vec();
    let good_sha = h.upload(&good).await;
    let bad_sha = h.upload(&truncated).await;
    let id = h
        .inspect(
            InspectionKind::Pickup,
            t(0),
            &[
                (bad_sha.clone(), truncated.len() as u64),
                (good_sha, good.len() as u64),
            ],
        )
        .await;
    h.wait_for(id, InspectionStatus::Processed).await;
    let r = h.result(id).await;
    let bad = r
        .frames
        .iter()
        .find(|f| f.sha256 == bad_sha.to_string())
        .expect("the corrupt frame is recorded");
    assert!(
        matches!(&bad.state, FrameState::Corrupt { reason } if !reason.is_empty()),
        "{bad:?}"
    );
    assert_eq!(r.summary.frames_ok, 1);
    assert_eq!(r.summary.frames_skipped, 1);
    assert_eq!(
        r.plate.as_ref().map(|p| p.plate.as_str()),
        Some(scene.plate.as_str())
    );
    assert!(metrics_text(&h.metrics).contains("central_worker_frames_total{state=\"corrupt\"} 1"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_store_that_fails_every_read_retries_then_dead_letters() {
    let h = Harness::start("").await;
    // A symlink loop where the image should be: every read fails with an
    // I/O error (ELOOP, not "not found"), as a broken volume would.
    let sha = sha(b"unreadable");
    let key = object_key(&sha);
    let path = h._dir.path().join("images").join(key.as_ref());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&path, &path).unwrap();
    let id = h
        .inspect(InspectionKind::Return, t(0), &[(sha, 1000)])
        .await;
    h.wait_for(id, InspectionStatus::Failed).await;
    let jobs = h.store.inspection_jobs(id).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].state, JobState::Dead);
    assert_eq!(jobs[0].attempts, 2, "{jobs:?}");
    let error = jobs[0].last_error.clone().unwrap_or_default();
    assert!(error.starts_with("object_store"), "{error}");
    let record = h.store.inspection(id).await.unwrap().unwrap();
    assert!(
        record
            .status_detail
            .unwrap_or_default()
            .contains("object_store")
    );
    let text = metrics_text(&h.metrics);
    assert!(
        text.contains("central_worker_jobs_total{result=\"retried\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("central_worker_jobs_total{result=\"dead\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("central_worker_errors_total{code=\"object_store\"} 2"),
        "{text}"
    );
    h.stop().await;
}

/// An inspection staff have begun to review (here: marked reviewed) is
/// queued again: the worker completes the job without writing anything, the
/// stored result and the review are kept, and the inspection reads as
/// processed again (not retried, not failed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reprocessing_a_reviewed_inspection_keeps_the_staff_decisions() {
    let h = Harness::start("").await;
    let scene = scene();
    let pickup_jpeg = jpeg(&view(&scene, 40.0, 30.0, 1.0));
    let pickup_sha = h.upload(&pickup_jpeg).await;
    let id = h
        .inspect(
            InspectionKind::Pickup,
            t(0),
            &[(pickup_sha, pickup_jpeg.len() as u64)],
        )
        .await;
    h.wait_for(id, InspectionStatus::Processed).await;
    h.wait_for_job_settled(id).await;
    let kept = h.result(id).await;
    let review = InspectionReview {
        actor: "user:alice".into(),
        // The store keeps microseconds.
        at: chrono::SubsecRound::trunc_subsecs(Utc::now(), 6),
        note: Some("baseline checked".into()),
    };
    h.store.mark_reviewed(id, &review).await.unwrap();
    assert_eq!(
        h.store
            .enqueue_job(JobKind::ProcessInspection, id, Utc::now())
            .await
            .unwrap(),
        Recorded::Inserted
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let jobs = loop {
        let jobs = h.store.inspection_jobs(id).await.unwrap();
        if jobs.len() == 2 && jobs.iter().all(|j| j.state == JobState::Done) {
            break jobs;
        }
        assert!(tokio::time::Instant::now() < deadline, "{jobs:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(jobs[1].attempts, 1, "{jobs:?}");
    let record = h.store.inspection(id).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.status_detail),
        (InspectionStatus::Processed, None)
    );
    assert_eq!(h.result(id).await, kept);
    assert_eq!(
        h.store.review_record(id).await.unwrap().reviewed,
        Some(review)
    );
    assert_eq!(h.store.reports(id).await.unwrap().len(), 1);
    let actions: Vec<String> = h
        .store
        .audit_log(Some(&format!("inspection:{id}")), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.entry.action)
        .collect();
    assert_eq!(actions, vec!["inspection.reviewed", "inspection.processed"]);
    let text = metrics_text(&h.metrics);
    assert!(
        text.contains("central_worker_jobs_total{result=\"review_kept\"} 1"),
        "{text}"
    );
    assert!(
        !text.contains("central_worker_jobs_total{result=\"retried\"}"),
        "{text}"
    );
    h.stop().await;
}

fn metrics_text(metrics: &WorkerMetrics) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text
}

/// PostgreSQL, two workers: a batch of inspections is shared between them,
/// each processed once; then a worker is killed while it holds a job (its
/// task aborted: no settle, no more heartbeats) and the other finishes that
/// job once the lease has run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_postgres_share_the_queue_and_finish_a_killed_workers_job() {
    let url = support::postgres::PgServer::shared().database().await;
    let store = central::store::open_store(&StoreConfig {
        url,
        job_max_attempts: 3,
        ..StoreConfig::default()
    })
    .await
    .expect("PostgreSQL store opens");
    assert_eq!(store.backend(), "postgres");
    let h = Harness::start_with("", Some(store)).await;
    let (b_stop, b) = h.another_worker("worker-b").await;
    let scene = scene();

    let mut ids = Vec::new();
    for i in 0..6 {
        let frame = jpeg(&view(&scene, 30.0 + i as f32 * 3.0, 30.0, 1.0));
        let sha = h.upload(&frame).await;
        ids.push(
            h.inspect(InspectionKind::Pickup, t(i), &[(sha, frame.len() as u64)])
                .await,
        );
    }
    let mut owners = std::collections::BTreeSet::new();
    for &id in &ids {
        h.wait_for(id, InspectionStatus::Processed).await;
        let jobs = h.wait_for_job_settled(id).await;
        assert_eq!(jobs.len(), 1, "{jobs:?}");
        assert_eq!(
            (jobs[0].state, jobs[0].attempts),
            (JobState::Done, 1),
            "{jobs:?}"
        );
        owners.insert(jobs[0].lease_owner.clone().unwrap());
        // Processed once: one result, by the job's owner.
        assert_eq!(Some(h.result(id).await.worker), jobs[0].lease_owner);
    }
    println!("jobs done by {owners:?}");
    assert_eq!(owners.len(), 2, "both workers took jobs: {owners:?}");

    // Kill worker B while it holds a job: stop A first so B takes it.
    h.stop.send(true).unwrap();
    let frame = jpeg(&view(&scene, 50.0, 36.0, 1.0));
    let sha = h.upload(&frame).await;
    let id = h
        .inspect(InspectionKind::Pickup, t(30), &[(sha, frame.len() as u64)])
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let jobs = h.store.inspection_jobs(id).await.unwrap();
        if jobs[0].state == JobState::Running {
            assert_eq!(jobs[0].lease_owner.as_deref(), Some("worker-b"));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{jobs:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    b.abort();
    assert!(b.await.unwrap_err().is_cancelled());
    drop(b_stop);
    // The job stays B's until its lease (5 s) runs out; then worker C,
    // started now, claims it as a second attempt and finishes it.
    let (_c_stop, _c) = h.another_worker("worker-c").await;
    h.wait_for(id, InspectionStatus::Processed).await;
    let jobs = h.wait_for_job_settled(id).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        (
            jobs[0].state,
            jobs[0].attempts,
            jobs[0].lease_owner.as_deref()
        ),
        (JobState::Done, 2, Some("worker-c")),
        "{jobs:?}"
    );
    assert_eq!(h.result(id).await.worker, "worker-c");
}
