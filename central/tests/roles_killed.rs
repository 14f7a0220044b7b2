//! Central's roles killed under load, and PostgreSQL restarted under load
//! (issue 10, RELIABILITY.md).
//!
//! The `central` binary runs as four processes, one per role (bridge,
//! upload, worker, api), on one PostgreSQL (durable settings) and one
//! mosquitto, as in the cluster. Simulated devices keep sending inspections
//! the way the edge uplink does: each image is PUT until the upload role
//! answers 200 or 201, then the inspection's events are published QoS 1 and
//! re-published until the end-to-end ack arrives. A staff client keeps
//! reading the inspection list through the api.
//!
//! While that runs, each role in turn is killed with SIGKILL and started
//! again (the worker while it holds a job), then PostgreSQL is stopped for
//! 8 s (longer than a store call waits for a connection) and started again. At the end:
//! - every event a device saw acked, and every event it published, is
//!   stored, and each exactly once (the store holds exactly as many events
//!   as were published);
//! - every image the upload role acknowledged is in the object store;
//! - every inspection is processed, and the job the killed worker held was
//!   retried by the restarted worker (attempts >= 2);
//! - devices and the staff client got through again after every kill and
//!   after the database restart (clients reconnect).
//!
//! `cargo test -p central --test roles_killed -- --nocapture` prints the
//! figures (~90 s).

#[path = "../../shared/tests/common/mod.rs"]
mod common;
mod support;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use central::store::{InspectionStatus, JobState, Store, StoreConfig, open_store};
use central::upload::object_key;
use chrono::Utc;
use image::RgbImage;
use inspection_core::ids::{CameraId, DeviceId, SiteId};
use inspection_core::topic::{Topic, TopicKind, TopicPrefix};
use inspection_core::wire::{
    self, Ack, CameraImages, CameraInfo, CompletionReason, Event, EventBody, FrameQuality,
    ImageRef, InspectionKind, Sha256Hex, Trigger, V1,
};
use object_store::ObjectStoreExt;
use rand::{Rng, SeedableRng};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use sha2::{Digest, Sha256};
use support::mosquitto::{Mosquitto, MosquittoOptions, free_port};
use support::postgres::PgServer;
use tokio::sync::Mutex;
use uuid::Uuid;

const DEVICES: usize = 4;
const FRAMES_PER_INSPECTION: usize = 2;
const REPUBLISH_AFTER: Duration = Duration::from_secs(2);
const WORKER_ID: &str = "worker-a";
const PG_DOWN: Duration = Duration::from_secs(8);

/// The four roles as the cluster runs them: a process each.
const ROLES: [&str; 4] = ["bridge", "upload", "worker", "api"];

struct Ports {
    mqtt: u16,
    upload: u16,
    api: u16,
}

/// One role's process; its output is appended to `<role>.log` across
/// restarts.
struct RoleProcess {
    role: &'static str,
    config: PathBuf,
    log: PathBuf,
    ops: u16,
    child: Option<Child>,
    starts: u32,
}

impl RoleProcess {
    fn new(dir: &Path, role: &'static str, config_text: &str) -> RoleProcess {
        let ops = free_port();
        let config = dir.join(format!("{role}.toml"));
        std::fs::write(
            &config,
            format!("[ops]\nlisten = \"127.0.0.1:{ops}\"\nlog_format = \"text\"\n\n{config_text}"),
        )
        .unwrap();
        RoleProcess {
            role,
            config,
            log: dir.join(format!("{role}.log")),
            ops,
            child: None,
            starts: 0,
        }
    }

    fn start(&mut self) {
        assert!(self.child.is_none(), "{} is running", self.role);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_central"))
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .args(["--roles", self.role])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start central --roles {}: {e}", self.role));
        self.child = Some(child);
        self.starts += 1;
    }

    /// SIGKILL: no shutdown code runs, as when a node dies or the OOM
    /// killer strikes.
    fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
    }

    /// The sum of a metric's samples on this process's `/metrics`.
    async fn metric(&self, http: &reqwest::Client, name: &str) -> f64 {
        let text = http
            .get(format!("http://127.0.0.1:{}/metrics", self.ops))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `/readyz` answers 200 (the role's dependencies are up).
    async fn wait_ready(&mut self, http: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = format!("http://127.0.0.1:{}/readyz", self.ops);
        while Instant::now() < deadline {
            if let Ok(r) = http.get(&url).send().await
                && r.status().is_success()
            {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("{} exited with {status}:\n{}", self.role, self.log_text());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{} not ready within 60 s:\n{}", self.role, self.log_text());
    }
}

impl Drop for RoleProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Everything the devices and the staff client saw, shared with the test.
#[derive(Default)]
struct Seen {
    /// Every event published (msg_id), and every one acked end to end.
    published: Mutex<HashSet<Uuid>>,
    acked: Mutex<HashSet<Uuid>>,
    /// Images the upload role answered 200 or 201 for.
    uploaded: Mutex<HashSet<String>>,
    /// Inspections whose events were published, and those all acked.
    sent: Mutex<Vec<Uuid>>,
    inspections: Mutex<Vec<Uuid>>,
    republished: AtomicU64,
    upload_retries: AtomicU64,
    api_ok: AtomicU64,
    api_failed: AtomicU64,
}

fn sha_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A 1600x1200 frame with noise: every frame has its own SHA-256, and the
/// worker spends long enough on it to be killed while it holds the job.
fn frame(rng: &mut impl Rng) -> Vec<u8> {
    let image = RgbImage::from_fn(1600, 1200, |x, y| {
        let body = (300..1300).contains(&x) && (400..900).contains(&y);
        let base: u8 = if body { 70 } else { 170 };
        let n: u8 = rng.random_range(0..40);
        image::Rgb([
            base + n,
            base + (y / 16) as u8 % 30,
            base + (x / 16) as u8 % 30,
        ])
    });
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 80)
        .encode(image.as_raw(), 1600, 1200, image::ExtendedColorType::Rgb8)
        .expect("encode jpeg");
    bytes
}

/// PUTs an image until the upload role answers 200 or 201, as the edge
/// uplink does (a connection refused or a 5xx is retried, anything else
/// fails the test).
async fn upload(
    http: &reqwest::Client,
    port: u16,
    user: &str,
    token: &str,
    bytes: &[u8],
    seen: &Seen,
) -> String {
    let sha = sha_hex(bytes);
    let url = format!("http://127.0.0.1:{port}/v1/images/{sha}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            Instant::now() < deadline,
            "image {sha} not accepted within 120 s"
        );
        match http
            .put(&url)
            .basic_auth(user, Some(token))
            .header("content-type", "image/jpeg")
            .body(bytes.to_vec())
            .send()
            .await
        {
            Ok(r) if r.status().as_u16() == 200 || r.status().as_u16() == 201 => {
                seen.uploaded.lock().await.insert(sha.clone());
                return sha;
            }
            Ok(r) if r.status().is_server_error() => {}
            Ok(r) => panic!(
                "PUT {sha}: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            ),
            Err(_) => {}
        }
        seen.upload_retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn inspection_events(
    site: &SiteId,
    device: &DeviceId,
    seq: &mut u64,
    frames: &[(String, usize)],
) -> (Uuid, Vec<Event>) {
    let id = Uuid::now_v7();
    let camera = CameraInfo {
        id: CameraId::new("cam-front").unwrap(),
        position: "front".into(),
    };
    let now = Utc::now();
    let mut bodies = vec![EventBody::InspectionStarted {
        kind: InspectionKind::Return,
        trigger: Trigger::Detection {
            label: "plate".into(),
            score: 0.8,
        },
        cameras: vec![camera.clone()],
        agent_version: Some("test".into()),
        models: vec![],
    }];
    let shas: Vec<Sha256Hex> = frames
        .iter()
        .map(|(s, _)| Sha256Hex::new(s).unwrap())
        .collect();
    for (rank, ((_, bytes), sha)) in frames.iter().zip(&shas).enumerate() {
        bodies.push(EventBody::FrameSelected {
            camera: camera.clone(),
            captured_at: now,
            image: ImageRef {
                sha256: sha.clone(),
                bytes: *bytes as u64,
                width: 1600,
                height: 1200,
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
        });
    }
    bodies.push(EventBody::InspectionCompleted {
        reason: CompletionReason::VehicleLeft,
        frames: frames.len() as u32,
        images: vec![CameraImages {
            camera: camera.id.clone(),
            sha256: shas,
        }],
    });
    let events = bodies
        .into_iter()
        .map(|body| {
            *seq += 1;
            Event {
                v: V1,
                msg_id: Uuid::now_v7(),
                seq: *seq,
                site: site.clone(),
                device: device.clone(),
                inspection_id: Some(id),
                at: now,
                event: body,
            }
        })
        .collect();
    (id, events)
}

/// One device: inspections back to back until `stop`, each finished (every
/// image accepted, every event acked) before the next starts.
async fn device(
    n: usize,
    ports: Arc<Ports>,
    token: String,
    seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
) {
    let site = SiteId::new("site-1").unwrap();
    let device = DeviceId::new(format!("bay-{n}")).unwrap();
    let prefix = TopicPrefix::new("inspect").unwrap();
    let user = format!("{site}/{device}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut options = MqttOptions::new(format!("dev-{n}"), "127.0.0.1", ports.mqtt);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    let ack_topic = Topic::new(site.clone(), device.clone(), TopicKind::Ack).render(&prefix);
    let events_topic = Topic::new(site.clone(), device.clone(), TopicKind::Events).render(&prefix);
    // Acks arrive on the event loop's task; re-subscribed on every connect.
    let acked: Arc<Mutex<HashSet<Uuid>>> = Arc::default();
    let poll_acked = acked.clone();
    let poll_client = client.clone();
    let poll_topic = ack_topic.clone();
    let poller = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                    let _ = poll_client.try_subscribe(poll_topic.clone(), QoS::AtLeastOnce);
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    if let Ok(ack) = wire::decode::<Ack>(&p.payload) {
                        poll_acked.lock().await.extend(ack.msg_ids);
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    });
    let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
    let mut seq = 0;
    while !stop.load(Ordering::Relaxed) {
        let mut frames = Vec::new();
        for _ in 0..FRAMES_PER_INSPECTION {
            let bytes = frame(&mut rng);
            let sha = upload(&http, ports.upload, &user, &token, &bytes, &seen).await;
            frames.push((sha, bytes.len()));
        }
        let (id, events) = inspection_events(&site, &device, &mut seq, &frames);
        let payloads: Vec<(Uuid, Vec<u8>)> = events
            .iter()
            .map(|e| (e.msg_id, wire::encode(e).expect("valid event")))
            .collect();
        seen.sent.lock().await.push(id);
        seen.published
            .lock()
            .await
            .extend(payloads.iter().map(|(id, _)| *id));
        let deadline = Instant::now() + Duration::from_secs(180);
        let mut first = true;
        loop {
            let pending: Vec<&(Uuid, Vec<u8>)> = {
                let acked = acked.lock().await;
                payloads
                    .iter()
                    .filter(|(id, _)| !acked.contains(id))
                    .collect()
            };
            if pending.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "bay-{n}: inspection {id} not acked within 180 s"
            );
            if !first {
                seen.republished
                    .fetch_add(pending.len() as u64, Ordering::Relaxed);
            }
            first = false;
            for (_, payload) in pending {
                // Queued in the client while disconnected; sent on reconnect.
                let _ = client
                    .publish(
                        events_topic.clone(),
                        QoS::AtLeastOnce,
                        false,
                        payload.clone(),
                    )
                    .await;
            }
            let wait_until = Instant::now() + REPUBLISH_AFTER;
            while Instant::now() < wait_until {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let acked = acked.lock().await;
                if payloads.iter().all(|(id, _)| acked.contains(id)) {
                    break;
                }
            }
        }
        seen.acked
            .lock()
            .await
            .extend(payloads.iter().map(|(id, _)| *id));
        seen.inspections.lock().await.push(id);
    }
    poller.abort();
}

/// A staff client reading the inspection list, as a review screen polls.
async fn staff_client(port: u16, token: String, seen: Arc<Seen>, stop: Arc<AtomicBool>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/api/v1/inspections?limit=5");
    while !stop.load(Ordering::Relaxed) {
        match http.get(&url).bearer_auth(&token).send().await {
            Ok(r) if r.status().is_success() => {
                seen.api_ok.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                seen.api_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `what` grows past `from` (progress after a fault).
async fn wait_progress(what: &str, from: u64, deadline_s: u64, now: impl Fn() -> u64) -> Duration {
    let started = Instant::now();
    while now() <= from {
        assert!(
            started.elapsed() < Duration::from_secs(deadline_s),
            "no {what} within {deadline_s} s after the fault"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_role_killed_and_postgres_restarted_under_load_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut pg = PgServer::start_durable();
    let db = pg.database().await;
    let mosquitto = Mosquitto::start(MosquittoOptions::default());
    let ports = Arc::new(Ports {
        mqtt: mosquitto.plain.port(),
        upload: free_port(),
        api: free_port(),
    });

    // Device tokens for the upload role, a viewer token for the api.
    let credentials = dir.path().join("credentials.toml");
    let device_token = central::certs::new_token();
    for n in 0..DEVICES {
        central::certs::append_device_credential(
            &credentials,
            &SiteId::new("site-1").unwrap(),
            &DeviceId::new(format!("bay-{n}")).unwrap(),
            &device_token,
        )
        .unwrap();
    }
    let api_tokens = dir.path().join("api-tokens.toml");
    let staff_token = central::certs::new_token();
    central::certs::append_api_token(
        &api_tokens,
        "desk",
        central::api::Role::Viewer,
        &["*".to_owned()],
        &staff_token,
    )
    .unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir_all(&images).unwrap();

    let config = format!(
        r#"[store]
url = "{db}"

[bridge]
url = "mqtt://127.0.0.1:{mqtt}"
client_id = "bridge-a"

[upload]
plain_listen = "127.0.0.1:{upload}"
credentials = "{credentials}"
object_store = {{ kind = "local", path = "{images}" }}

[worker]
id = "{WORKER_ID}"
poll_interval_ms = 50
heartbeat_s = 1
lease_s = 3
retry_base_s = 1
retry_max_s = 2
image_wait_s = 120
image_recheck_s = 1

[report.embedded]
enabled = false

[api]
listen = "127.0.0.1:{api}"
tokens = "{tokens}"
"#,
        mqtt = ports.mqtt,
        upload = ports.upload,
        credentials = credentials.display(),
        images = images.display(),
        api = ports.api,
        tokens = api_tokens.display(),
    );
    let mut roles: HashMap<&str, RoleProcess> = ROLES
        .iter()
        .map(|role| (*role, RoleProcess::new(dir.path(), role, &config)))
        .collect();
    let http = reqwest::Client::new();
    for role in ROLES {
        let p = roles.get_mut(role).unwrap();
        p.start();
        p.wait_ready(&http).await;
    }
    let store: Arc<dyn Store> = open_store(&StoreConfig {
        url: db.clone(),
        ..StoreConfig::default()
    })
    .await
    .expect("open the store");

    let seen = Arc::new(Seen::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = tokio::task::JoinSet::new();
    for n in 0..DEVICES {
        load.spawn(device(
            n,
            ports.clone(),
            device_token.clone(),
            seen.clone(),
            stop.clone(),
        ));
    }
    load.spawn(staff_client(
        ports.api,
        staff_token.clone(),
        seen.clone(),
        stop.clone(),
    ));

    let acked_count = {
        let seen = seen.clone();
        move || seen.acked.try_lock().map(|a| a.len() as u64).unwrap_or(0)
    };
    let uploaded_count = {
        let seen = seen.clone();
        move || {
            seen.uploaded
                .try_lock()
                .map(|a| a.len() as u64)
                .unwrap_or(0)
        }
    };
    let api_ok = {
        let seen = seen.clone();
        move || seen.api_ok.load(Ordering::Relaxed)
    };
    wait_progress("acked inspection", 0, 60, &acked_count).await;

    let mut figures = Vec::new();
    let mut held_job = None;
    for role in ROLES {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let p = roles.get_mut(role).unwrap();
        if role == "worker" {
            // Kill the worker while it holds a job: wait until one is
            // running under its lease, kill, and find it (the dead worker
            // can change nothing any more). Up to 10 tries, each a kill
            // under load.
            for attempt in 1..=10 {
                let started = Instant::now();
                while store
                    .job_stats(Utc::now())
                    .await
                    .map(|s| s.running == 0)
                    .unwrap_or(true)
                {
                    assert!(
                        started.elapsed() < Duration::from_secs(60),
                        "the worker never ran a job"
                    );
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                p.kill();
                // Every inspection published so far (the job's inspection
                // may not be acked to its device yet).
                let ids = seen.sent.lock().await.clone();
                let mut held = None;
                for id in &ids {
                    for job in store.inspection_jobs(*id).await.unwrap() {
                        if job.state == JobState::Running
                            && job.lease_owner.as_deref() == Some(WORKER_ID)
                        {
                            held = Some(job);
                        }
                    }
                }
                figures.push(format!(
                    "worker kill {attempt}: held job {:?}",
                    held.as_ref().map(|j| j.id)
                ));
                p.start();
                p.wait_ready(&http).await;
                if let Some(job) = held {
                    held_job = Some(job);
                    break;
                }
            }
            assert!(
                held_job.is_some(),
                "no kill in 10 caught the worker holding a job"
            );
            continue;
        }
        let (acked_before, uploaded_before, api_before) =
            (acked_count(), uploaded_count(), api_ok());
        p.kill();
        tokio::time::sleep(Duration::from_secs(2)).await;
        p.start();
        p.wait_ready(&http).await;
        // Clients got through again after the restart.
        let after = match role {
            "bridge" => wait_progress("ack", acked_count(), 60, &acked_count).await,
            "upload" => {
                wait_progress("accepted upload", uploaded_count(), 60, &uploaded_count).await
            }
            _ => wait_progress("api answer", api_ok(), 60, &api_ok).await,
        };
        figures.push(format!(
            "{role} killed (acked {acked_before}, uploads {uploaded_before}, api answers {api_before}); \
             clients through again {:.1} s after it was ready",
            after.as_secs_f64()
        ));
    }

    // PostgreSQL stopped under load for longer than a store call waits for
    // a connection (`busy_timeout_ms`, 5 s), then started again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (acked_before, api_failed_before) =
        (acked_count(), seen.api_failed.load(Ordering::Relaxed));
    pg.stop();
    tokio::time::sleep(PG_DOWN).await;
    pg.restart();
    let acked_again = wait_progress("ack", acked_count(), 90, &acked_count).await;
    let api_again = wait_progress("api answer", api_ok(), 90, &api_ok).await;
    // The outage reached the services (they did not just sit it out).
    let bridge_store_errors = roles["bridge"]
        .metric(&http, "central_bridge_store_errors_total")
        .await;
    let worker_store_errors = roles["worker"]
        .metric(&http, "central_worker_errors_total{code=\"store\"}")
        .await;
    assert!(bridge_store_errors > 0.0, "the bridge saw no store error");
    assert!(worker_store_errors > 0.0, "the worker saw no store error");
    figures.push(format!(
        "postgres down {} s (acked before {acked_before}): acks again after {:.1} s, api after {:.1} s, \
         api failures during the outage {}, store errors: bridge {bridge_store_errors}, worker {worker_store_errors}",
        PG_DOWN.as_secs(),
        acked_again.as_secs_f64(),
        api_again.as_secs_f64(),
        seen.api_failed.load(Ordering::Relaxed) - api_failed_before
    ));

    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    while let Some(done) = load.join_next().await {
        done.expect("a device or the staff client failed");
    }

    // Every inspection processed, the held job retried.
    let inspections = seen.inspections.lock().await.clone();
    let deadline = Instant::now() + Duration::from_secs(120);
    for id in &inspections {
        loop {
            let record = store
                .inspection(*id)
                .await
                .unwrap()
                .expect("inspection stored");
            if record.status == InspectionStatus::Processed {
                assert_eq!(record.frames_received as usize, FRAMES_PER_INSPECTION);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "inspection {id} is {:?} ({:?}) after 120 s\nworker log:\n{}",
                record.status,
                record.status_detail,
                roles["worker"].log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let held = held_job.unwrap();
    let jobs = store.inspection_jobs(held.inspection_id).await.unwrap();
    let retried = jobs.iter().find(|j| j.id == held.id).expect("the held job");
    assert_eq!(retried.state, JobState::Done, "{retried:?}");
    assert!(
        retried.attempts >= 2,
        "the killed worker's job ran again: {retried:?}"
    );

    // Nothing acked lost, nothing stored twice.
    let published = seen.published.lock().await.clone();
    let acked = seen.acked.lock().await.clone();
    assert_eq!(
        published, acked,
        "every published event was acked in the end"
    );
    for id in &acked {
        assert!(
            store.event(*id).await.unwrap().is_some(),
            "acked event {id} is not stored"
        );
    }
    let counts = store.counts().await.unwrap();
    assert_eq!(
        counts.events as usize,
        published.len(),
        "each event stored exactly once"
    );
    assert_eq!(counts.inspections as usize, inspections.len());
    assert_eq!(counts.dead_letters, 0, "no dead letters");

    let objects = object_store::local::LocalFileSystem::new_with_prefix(&images).unwrap();
    let uploaded = seen.uploaded.lock().await.clone();
    for sha in &uploaded {
        let key = object_key(&Sha256Hex::new(sha).unwrap());
        objects
            .head(&key)
            .await
            .unwrap_or_else(|e| panic!("image {sha} acknowledged but missing: {e}"));
    }

    figures.push(format!(
        "bridge: duplicates re-acked {}",
        roles["bridge"]
            .metric(
                &http,
                "central_bridge_events_stored_total{result=\"duplicate\"}"
            )
            .await
    ));
    for line in &figures {
        println!("{line}");
    }
    println!(
        "{} inspections, {} events ({} re-published), {} images ({} upload retries), \
         api answers {} ok / {} failed; processes started: {}",
        inspections.len(),
        published.len(),
        seen.republished.load(Ordering::Relaxed),
        uploaded.len(),
        seen.upload_retries.load(Ordering::Relaxed),
        seen.api_ok.load(Ordering::Relaxed),
        seen.api_failed.load(Ordering::Relaxed),
        ROLES
            .iter()
            .map(|r| format!("{r} {}", roles[r].starts))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "held job {} done after {} attempts",
        retried.id, retried.attempts
    );
}
