//! Central as the cluster runs it, one process per role (`central run
//! --roles X`), and a fleet of simulated boards loading it the way the edge
//! uplink does: each image PUT until the upload role answers 200 or 201,
//! then the inspection's events published QoS 1 and re-published until the
//! end-to-end ack; and a staff client polling the API. Used by
//! `tests/roles_killed.rs` and `benches/capacity.rs` (included by path,
//! beside `mosquitto.rs` and `postgres.rs`).

#![allow(dead_code)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use inspection_core::ids::{CameraId, DeviceId, SiteId};
use inspection_core::topic::{Topic, TopicKind, TopicPrefix};
use inspection_core::wire::{
    self, Ack, CameraImages, CameraInfo, CompletionReason, Event, EventBody, FrameQuality,
    ImageRef, InspectionKind, Sha256Hex, Trigger, V1,
};
use rand::{Rng, SeedableRng};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use uuid::Uuid;

// Sibling modules: `support::mosquitto` and `support::postgres` in the
// tests, the bench's own (included by path) there.
use super::mosquitto::{Mosquitto, MosquittoOptions, free_port};
use super::postgres::PgServer;

/// Unacked events are published again after this.
pub const REPUBLISH_AFTER: Duration = Duration::from_secs(2);
/// Every simulated board is on this site, as `bay-<n>`.
pub const SITE: &str = "site-1";

pub struct Ports {
    pub mqtt: u16,
    pub upload: u16,
    pub api: u16,
}

/// One role's process; its output is appended to `<role>.log` across
/// restarts. Killed on drop.
pub struct RoleProcess {
    pub role: &'static str,
    config: PathBuf,
    log: PathBuf,
    ops: u16,
    child: Option<Child>,
    pub starts: u32,
}

impl RoleProcess {
    /// `config_text` is the whole configuration but `[ops]`, which gets a
    /// port of its own.
    pub fn new(dir: &Path, role: &'static str, config_text: &str) -> RoleProcess {
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

    pub fn start(&mut self) {
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
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
    }

    /// SIGSTOP: the process keeps its state and does nothing until
    /// [`RoleProcess::resume`].
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`RoleProcess::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn proc_file(&self, name: &str) -> String {
        let pid = self.child.as_ref().expect("running").id();
        std::fs::read_to_string(format!("/proc/{pid}/{name}")).unwrap_or_default()
    }

    /// User plus system CPU time the process has used, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = self.proc_file("stat");
        // Fields after the command name (which may hold spaces) in ")".
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
            .sum();
        // USER_HZ is 100 on Linux.
        ticks / 100.0
    }

    /// Resident memory, in bytes.
    pub fn rss_bytes(&self) -> u64 {
        self.proc_file("status")
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .unwrap_or(0)
    }

    /// This process's `/metrics`.
    pub async fn metrics_text(&self, http: &reqwest::Client) -> String {
        http.get(format!("http://127.0.0.1:{}/metrics", self.ops))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// The sum of a metric's samples on this process's `/metrics`.
    pub async fn metric(&self, http: &reqwest::Client, name: &str) -> f64 {
        self.metrics_text(http)
            .await
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Waits until `/readyz` answers 200 (the role's dependencies are up).
    pub async fn wait_ready(&mut self, http: &reqwest::Client) {
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

/// Everything the boards and the staff client saw.
#[derive(Default)]
pub struct Seen {
    /// Every event published (msg_id), and every one acked end to end.
    pub published: Mutex<HashSet<Uuid>>,
    pub acked: Mutex<HashSet<Uuid>>,
    /// Images the upload role answered 200 or 201 for.
    pub uploaded: Mutex<HashSet<String>>,
    /// Inspections whose events were published, and those all acked.
    pub sent: Mutex<Vec<Uuid>>,
    pub inspections: Mutex<Vec<Uuid>>,
    pub republished: AtomicU64,
    pub upload_retries: AtomicU64,
    pub api_ok: AtomicU64,
    pub api_failed: AtomicU64,
}

impl Seen {
    /// Counts that never wait for a lock (0 while it is held).
    pub fn acked_count(&self) -> u64 {
        self.acked.try_lock().map(|a| a.len() as u64).unwrap_or(0)
    }
    pub fn uploaded_count(&self) -> u64 {
        self.uploaded
            .try_lock()
            .map(|a| a.len() as u64)
            .unwrap_or(0)
    }
}

pub fn sha_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One selected frame of an inspection.
pub struct Frame {
    pub camera: String,
    pub position: String,
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// What board `device` sends as its inspection number `n`: the kind and
/// the frames.
pub type Frames = Arc<dyn Fn(usize, u64) -> (InspectionKind, Vec<Frame>) + Send + Sync>;

/// Returns of two 1600x1200 frames with noise from `cam-front`: every frame
/// has its own SHA-256, and a worker spends a while on each.
pub fn noise_frames() -> Frames {
    Arc::new(|device, n| {
        let mut rng = rand::rngs::StdRng::seed_from_u64(((device as u64) << 32) | n);
        let frames = (0..2)
            .map(|_| {
                let image = image::RgbImage::from_fn(1600, 1200, |x, y| {
                    let body = (300..1300).contains(&x) && (400..900).contains(&y);
                    let base: u8 = if body { 70 } else { 170 };
                    let noise: u8 = rng.random_range(0..40);
                    image::Rgb([
                        base + noise,
                        base + (y / 16) as u8 % 30,
                        base + (x / 16) as u8 % 30,
                    ])
                });
                let mut bytes = Vec::new();
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 80)
                    .encode(image.as_raw(), 1600, 1200, image::ExtendedColorType::Rgb8)
                    .expect("encode jpeg");
                Frame {
                    camera: "cam-front".into(),
                    position: "front".into(),
                    bytes,
                    width: 1600,
                    height: 1200,
                }
            })
            .collect();
        (InspectionKind::Return, frames)
    })
}

/// `jpeg` with a comment segment holding `tag` after its SOI marker: the
/// same picture with its own SHA-256.
pub fn tagged_jpeg(jpeg: &[u8], tag: &str) -> Vec<u8> {
    assert!(jpeg.starts_with(&[0xFF, 0xD8]), "not a JPEG");
    let len = (tag.len() + 2) as u16;
    let mut out = Vec::with_capacity(jpeg.len() + tag.len() + 4);
    out.extend_from_slice(&[0xFF, 0xD8, 0xFF, 0xFE]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(tag.as_bytes());
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// PUTs an image until the upload role answers 200 or 201, as the edge
/// uplink does (a connection refused or a 5xx is retried, anything else
/// fails). Returns its SHA-256.
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

/// The events of one inspection of `frames` (uploaded, with their SHA-256).
fn inspection_events(
    site: &SiteId,
    device: &DeviceId,
    seq: &mut u64,
    kind: InspectionKind,
    frames: &[(Sha256Hex, &Frame)],
) -> (Uuid, Vec<Event>) {
    let id = Uuid::now_v7();
    let now = Utc::now();
    let info = |f: &Frame| CameraInfo {
        id: CameraId::new(&f.camera).unwrap(),
        position: f.position.clone(),
    };
    let mut cameras: Vec<CameraInfo> = Vec::new();
    for (_, f) in frames {
        if !cameras.iter().any(|c| c.id.as_str() == f.camera) {
            cameras.push(info(f));
        }
    }
    let mut bodies = vec![EventBody::InspectionStarted {
        kind,
        trigger: Trigger::Detection {
            label: "plate".into(),
            score: 0.8,
        },
        cameras: cameras.clone(),
        agent_version: Some("fleet-load".into()),
        models: vec![],
    }];
    for (rank, (sha, f)) in frames.iter().enumerate() {
        bodies.push(EventBody::FrameSelected {
            camera: info(f),
            captured_at: now,
            image: ImageRef {
                sha256: sha.clone(),
                bytes: f.bytes.len() as u64,
                width: f.width,
                height: f.height,
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
            anonymised: Some(inspection_core::wire::Anonymised { faces: 0 }),
        });
    }
    bodies.push(EventBody::InspectionCompleted {
        reason: CompletionReason::VehicleLeft,
        frames: frames.len() as u32,
        images: cameras
            .iter()
            .map(|c| CameraImages {
                camera: c.id.clone(),
                sha256: frames
                    .iter()
                    .filter(|(_, f)| f.camera == c.id.as_str())
                    .map(|(s, _)| s.clone())
                    .collect(),
            })
            .collect(),
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

/// One board, `bay-<n>`, its upload token `token`: inspections back to
/// back until `stop`, each finished (every image accepted, every event
/// acked) before the next starts.
pub async fn device(
    n: usize,
    ports: Arc<Ports>,
    token: String,
    frames: Frames,
    seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
) {
    let site = SiteId::new(SITE).unwrap();
    let device = DeviceId::new(format!("bay-{n}")).unwrap();
    let prefix = TopicPrefix::default();
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
    let poller = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                    let _ = poll_client.try_subscribe(ack_topic.clone(), QoS::AtLeastOnce);
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
    let mut seq = 0;
    let mut number = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let (kind, pictures) = frames(n, number);
        number += 1;
        let mut uploaded = Vec::new();
        for f in &pictures {
            let sha = upload(&http, ports.upload, &user, &token, &f.bytes, &seen).await;
            uploaded.push((Sha256Hex::new(&sha).unwrap(), f));
        }
        let (id, events) = inspection_events(&site, &device, &mut seq, kind, &uploaded);
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
                tokio::time::sleep(Duration::from_millis(20)).await;
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

/// A staff client reading the inspection list every `pause`, as a review
/// screen polls.
pub async fn staff_client(
    port: u16,
    token: String,
    pause: Duration,
    seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
) {
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
        tokio::time::sleep(pause).await;
    }
}

/// What the roles run on: a durable PostgreSQL, mosquitto, upload
/// credentials for boards `bay-0..bay-{boards}` (one token) and a viewer API
/// token, and the roles' configuration. The roles are started apart
/// ([`Cluster::start_roles`]).
pub struct Cluster {
    pub pg: PgServer,
    pub db: String,
    pub mosquitto: Mosquitto,
    pub ports: Arc<Ports>,
    pub images: PathBuf,
    pub device_token: String,
    pub staff_token: String,
    /// The configuration every role reads, but `[ops]`.
    pub config: String,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    /// `worker` is the body of `[worker]`; `extra` goes at the end of the
    /// file (e.g. `[detectors.plate]`).
    pub async fn start(boards: usize, worker: &str, extra: &str) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let pg = PgServer::start_durable();
        let db = pg.database().await;
        let mosquitto = Mosquitto::start(MosquittoOptions::default());
        let ports = Arc::new(Ports {
            mqtt: mosquitto.plain.port(),
            upload: free_port(),
            api: free_port(),
        });
        let credentials = dir.path().join("credentials.toml");
        let device_token = central::certs::new_token();
        for n in 0..boards {
            central::certs::append_device_credential(
                &credentials,
                &SiteId::new(SITE).unwrap(),
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
{worker}

[report.embedded]
enabled = false

[api]
listen = "127.0.0.1:{api}"
tokens = "{tokens}"

{extra}
"#,
            mqtt = ports.mqtt,
            upload = ports.upload,
            credentials = credentials.display(),
            images = images.display(),
            api = ports.api,
            tokens = api_tokens.display(),
        );
        Cluster {
            pg,
            db,
            mosquitto,
            ports,
            images,
            device_token,
            staff_token,
            config,
            dir,
        }
    }

    /// One process per role, in order, each started and ready.
    pub async fn start_roles(
        &self,
        roles: &[&'static str],
        http: &reqwest::Client,
    ) -> Vec<RoleProcess> {
        let mut processes = Vec::new();
        for role in roles {
            let mut p = RoleProcess::new(self.dir.path(), role, &self.config);
            p.start();
            p.wait_ready(http).await;
            processes.push(p);
        }
        processes
    }
}
