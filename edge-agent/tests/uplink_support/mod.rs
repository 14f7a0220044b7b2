//! Shared by the uplink tests: a real mosquitto with TLS, client
//! certificates and the fleet ACL; a device PKI from `central certs`; and a
//! STAND-IN FOR CENTRAL (labelled as such everywhere): a rumqttc client on
//! the broker's plain listener that records what devices publish and acks
//! events, and an HTTPS server implementing only the upload contract
//! (`PUT /v1/images/{sha256}`: 201 new, 200 present, 422 when the hash or
//! JPEG is wrong, 503 while told to fail). The central bridge and upload
//! roles replace these in the end-to-end tests.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::put;
use bytes::Bytes;
use central::certs::DevPki;
use central::tls::ServerTlsConfig;
use edge_agent::config::Identity;
use edge_agent::outbox::{Outbox, OutboxConfig, OutboxMetrics, Priority};
use edge_agent::uplink::UplinkConfig;
use inspection_core::ids::{DeviceId, SiteId};
use inspection_core::topic::{Topic, TopicKind, TopicPrefix};
use inspection_core::wire::{
    self, Ack, Command, DeviceMessage, Event, EventBody, Sha256Hex, Status, Telemetry, V1,
};
use rumqttc::{AsyncClient, MqttOptions, Packet, QoS};
use sha2::{Digest, Sha256};
use uuid::Uuid;

#[path = "../../../central/tests/support/mosquitto.rs"]
pub mod mosquitto;

use mosquitto::{Mosquitto, MosquittoOptions, MosquittoTls};

pub const SITE: &str = "s1";
pub const DEVICE: &str = "d1";

/// Waits for `cond` with a deadline (never a bare sleep), panicking with
/// `what` and `diag()` when it does not hold in time.
pub async fn wait_until(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
    diag: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            diag()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn identity() -> Identity {
    Identity {
        site: SiteId::new(SITE).unwrap(),
        device: DeviceId::new(DEVICE).unwrap(),
        prefix: TopicPrefix::default(),
    }
}

/// A development PKI: CA, server certificate for 127.0.0.1, and the
/// device's certificate (CN `s1/d1`).
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub pki: DevPki,
    pub device_cert: PathBuf,
    pub device_key: PathBuf,
}

impl Pki {
    pub fn new() -> Pki {
        edge_agent_crypto();
        let dir = tempfile::tempdir().unwrap();
        let pki = DevPki::new(dir.path());
        pki.ensure_ca().unwrap();
        pki.issue_server(&["127.0.0.1".into()], 2).unwrap();
        let (device_cert, device_key) = pki
            .issue_device(
                &SiteId::new(SITE).unwrap(),
                &DeviceId::new(DEVICE).unwrap(),
                2,
            )
            .unwrap();
        Pki {
            dir,
            pki,
            device_cert,
            device_key,
        }
    }

    /// mosquitto with TLS (client certificates required) and the fleet ACL.
    pub fn broker_options(&self) -> MosquittoOptions {
        let acl = self.dir.path().join("acl");
        std::fs::write(&acl, Mosquitto::fleet_acl("inspect")).unwrap();
        MosquittoOptions {
            tls: Some(MosquittoTls {
                ca: self.pki.ca_cert(),
                cert: self.pki.server_cert(),
                key: self.pki.server_key(),
            }),
            extra_config: vec![format!("acl_file {}", acl.display())],
        }
    }

    /// The device's uplink section against `broker` and `upload`, with
    /// short timers for tests.
    pub fn uplink(&self, broker: &Mosquitto, upload: SocketAddr) -> UplinkConfig {
        let tls = broker.tls.expect("TLS listener");
        UplinkConfig {
            ca: Some(self.pki.ca_cert()),
            cert: Some(self.device_cert.clone()),
            key: Some(self.device_key.clone()),
            telemetry_interval_s: 1,
            keep_alive_s: 5,
            ack_timeout_s: 2,
            backoff_initial_ms: 50,
            backoff_max_s: 1,
            upload_timeout_s: 10,
            ..UplinkConfig::new(
                format!("mqtts://127.0.0.1:{}", tls.port()),
                format!("https://127.0.0.1:{}", upload.port()),
            )
        }
    }
}

/// The process-wide rustls provider for the stand-in's own TLS (the agent
/// names its provider explicitly).
fn edge_agent_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

pub fn start_broker(pki: &Pki) -> Mosquitto {
    Mosquitto::start(pki.broker_options())
}

/// A small valid JPEG, different for each `n`.
pub fn jpeg(n: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(16, 16, |x, y| {
        image::Rgb([n, (x * 16) as u8, (y * 16) as u8])
    });
    let mut bytes = Vec::new();
    img.write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(
        std::io::Cursor::new(&mut bytes),
        80,
    ))
    .unwrap();
    bytes
}

pub fn sha(bytes: &[u8]) -> Sha256Hex {
    let digest: [u8; 32] = Sha256::digest(bytes).into();
    Sha256Hex::from_digest(&digest)
}

pub fn open_outbox(dir: &std::path::Path) -> Arc<Mutex<Outbox>> {
    let (outbox, _) = Outbox::open(
        &OutboxConfig {
            path: dir.join("outbox.sqlite3"),
            ..OutboxConfig::default()
        },
        OutboxMetrics::default(),
    )
    .unwrap();
    Arc::new(Mutex::new(outbox))
}

/// Appends an image (any bytes: the outbox checks only the hash).
pub fn append_image(outbox: &Arc<Mutex<Outbox>>, bytes: &[u8]) -> Sha256Hex {
    let sha = sha(bytes);
    outbox
        .lock()
        .unwrap()
        .append_image(&sha, bytes, Priority::frame(1), Uuid::from_u128(1))
        .unwrap();
    sha
}

/// Appends a `frame_selected` event naming `image`; returns its msg_id.
pub fn append_frame(outbox: &Arc<Mutex<Outbox>>, image: &Sha256Hex) -> Uuid {
    let template = wire::examples::inspection()[1].clone();
    let mut body = template.event;
    if let EventBody::FrameSelected { image: r, .. } = &mut body {
        r.sha256 = image.clone();
    }
    append_event(outbox, body)
}

/// Appends a `command_result` event (the smallest event); returns its msg_id.
pub fn append_small(outbox: &Arc<Mutex<Outbox>>) -> Uuid {
    append_event(
        outbox,
        EventBody::CommandResult {
            cmd_id: Uuid::now_v7(),
            command: "stop_inspection".into(),
            outcome: wire::CommandOutcome::Refused,
            detail: Some("test".into()),
        },
    )
}

fn append_event(outbox: &Arc<Mutex<Outbox>>, body: EventBody) -> Uuid {
    let id = identity();
    outbox
        .lock()
        .unwrap()
        .append_event(|seq, msg_id| Event {
            v: V1,
            msg_id,
            seq,
            site: id.site,
            device: id.device,
            inspection_id: Some(Uuid::from_u128(1)),
            at: chrono::Utc::now(),
            event: body,
        })
        .unwrap()
        .msg_id
}

pub fn outbox_len(outbox: &Arc<Mutex<Outbox>>) -> usize {
    outbox.lock().unwrap().pending(100_000).unwrap().len()
}

/// What the stand-in for central saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Events in arrival order (re-publishes included).
    pub events: Vec<Event>,
    /// Status messages with their retain flag, in arrival order.
    pub statuses: Vec<(Status, bool)>,
    pub telemetry: Vec<Telemetry>,
    /// Images stored by the upload stand-in, with the bytes.
    pub images: HashMap<Sha256Hex, Vec<u8>>,
    /// `frame_selected` events that arrived before their image was stored.
    pub order_violations: Vec<String>,
    /// Payloads on device topics that did not decode.
    pub bad: Vec<String>,
    /// PUTs answered, by status.
    pub puts: Vec<u16>,
}

impl Seen {
    pub fn distinct_events(&self) -> HashSet<Uuid> {
        self.events.iter().map(|e| e.msg_id).collect()
    }
}

/// Every event in `sent` arrived and nothing else did, duplicates come only
/// from re-publishes, and no frame event arrived before its image. Returns
/// (distinct events, duplicates, re-publishes).
pub fn check_delivery(
    central: &StandIn,
    uplink: &RunningUplink,
    sent: &[Uuid],
) -> (usize, usize, u64) {
    let seen = central.seen.lock().unwrap();
    let distinct = seen.distinct_events();
    for msg_id in sent {
        assert!(distinct.contains(msg_id), "{msg_id} never arrived");
    }
    assert_eq!(distinct.len(), sent.len(), "no event from nowhere");
    let duplicates = seen.events.len() - distinct.len();
    let republished =
        uplink.metrics.republishes_of("ack_timeout") + uplink.metrics.republishes_of("reconnect");
    assert!(
        duplicates as u64 <= republished,
        "{duplicates} duplicates but only {republished} re-publishes"
    );
    assert!(
        seen.order_violations.is_empty(),
        "{:?}",
        seen.order_violations
    );
    (distinct.len(), duplicates, republished)
}

/// STAND-IN FOR CENTRAL: the bridge's and upload role's contracts only.
#[derive(Clone)]
pub struct StandIn {
    pub seen: Arc<Mutex<Seen>>,
    /// Whether events are acked (the bridge acks after its commit).
    pub acking: Arc<AtomicBool>,
    /// The next N PUTs answer 503.
    pub fail_puts: Arc<AtomicU32>,
    /// Added to the time on every ack: central's clock differs from the
    /// board's by this much (milliseconds).
    pub clock_skew_ms: Arc<AtomicI64>,
    pub mqtt: AsyncClient,
    pub upload: SocketAddr,
}

impl StandIn {
    /// Connects the MQTT side to `broker`'s plain listener as user `bridge`
    /// and starts the HTTPS side on a free port.
    pub async fn start(broker: &Mosquitto, pki: &Pki) -> StandIn {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let acking = Arc::new(AtomicBool::new(true));
        let fail_puts = Arc::new(AtomicU32::new(0));
        let clock_skew_ms = Arc::new(AtomicI64::new(0));
        let upload = serve_uploads(pki, seen.clone(), fail_puts.clone()).await;
        let mut options = MqttOptions::new("stand-in-bridge", "127.0.0.1", broker.plain.port());
        options.set_credentials("bridge", "");
        options.set_keep_alive(Duration::from_secs(5));
        options.set_max_packet_size(64 * 1024, 64 * 1024);
        let (client, mut eventloop) = AsyncClient::new(options, 256);
        let prefix = TopicPrefix::default();
        {
            let client = client.clone();
            let seen = seen.clone();
            let acking = acking.clone();
            let clock_skew_ms = clock_skew_ms.clone();
            tokio::spawn(async move {
                loop {
                    match eventloop.poll().await {
                        Ok(rumqttc::Event::Incoming(Packet::ConnAck(_))) => {
                            for kind in [TopicKind::Events, TopicKind::Status, TopicKind::Telemetry]
                            {
                                let _ = client
                                    .try_subscribe(prefix.fleet_filter(kind), QoS::AtLeastOnce);
                            }
                        }
                        Ok(rumqttc::Event::Incoming(Packet::Publish(p))) => {
                            let Ok(topic) = Topic::parse(&prefix, &p.topic) else {
                                continue;
                            };
                            match wire::decode_device_message(&topic, &p.payload) {
                                Ok(DeviceMessage::Event(e)) => {
                                    let ack = {
                                        let mut seen = seen.lock().unwrap();
                                        if let EventBody::FrameSelected { image, .. } = &e.event
                                            && !seen.images.contains_key(&image.sha256)
                                        {
                                            let v = format!(
                                                "event seq {} names image {} not uploaded yet",
                                                e.seq, image.sha256
                                            );
                                            seen.order_violations.push(v);
                                        }
                                        seen.events.push(e.clone());
                                        acking.load(Ordering::SeqCst)
                                    };
                                    if ack {
                                        let ack = Ack {
                                            v: V1,
                                            msg_ids: vec![e.msg_id],
                                            at: chrono::Utc::now()
                                                + chrono::TimeDelta::milliseconds(
                                                    clock_skew_ms.load(Ordering::SeqCst),
                                                ),
                                        };
                                        let t =
                                            Topic::new(topic.site, topic.device, TopicKind::Ack);
                                        let _ = client.try_publish(
                                            t.render(&prefix),
                                            QoS::AtLeastOnce,
                                            false,
                                            wire::encode(&ack).unwrap(),
                                        );
                                    }
                                }
                                Ok(DeviceMessage::Status(s)) => {
                                    seen.lock().unwrap().statuses.push((s, p.retain));
                                }
                                Ok(DeviceMessage::Telemetry(t)) => {
                                    seen.lock().unwrap().telemetry.push(t);
                                }
                                Err(e) => seen.lock().unwrap().bad.push(e.to_string()),
                            }
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            });
        }
        StandIn {
            seen,
            acking,
            fail_puts,
            clock_skew_ms,
            mqtt: client,
            upload,
        }
    }

    /// Publishes a command to the device, as the API role would.
    pub async fn command(&self, command: &Command) {
        let t = Topic::new(
            SiteId::new(SITE).unwrap(),
            DeviceId::new(DEVICE).unwrap(),
            TopicKind::Cmd,
        );
        self.mqtt
            .publish(
                t.render(&TopicPrefix::default()),
                QoS::AtLeastOnce,
                false,
                wire::encode(command).unwrap(),
            )
            .await
            .unwrap();
    }

    /// Publishes raw bytes on the device's cmd or ack topic.
    pub async fn raw(&self, kind: TopicKind, payload: &[u8]) {
        let t = Topic::new(
            SiteId::new(SITE).unwrap(),
            DeviceId::new(DEVICE).unwrap(),
            kind,
        );
        self.mqtt
            .publish(
                t.render(&TopicPrefix::default()),
                QoS::AtLeastOnce,
                false,
                payload.to_vec(),
            )
            .await
            .unwrap();
    }

    pub fn diag(&self) -> String {
        let seen = self.seen.lock().unwrap();
        format!(
            "stand-in saw {} events ({} distinct), {} statuses, {} telemetry, {} images, puts {:?}, bad {:?}",
            seen.events.len(),
            seen.distinct_events().len(),
            seen.statuses.len(),
            seen.telemetry.len(),
            seen.images.len(),
            seen.puts,
            seen.bad
        )
    }
}

#[derive(Clone)]
struct UploadState {
    seen: Arc<Mutex<Seen>>,
    fail_puts: Arc<AtomicU32>,
    client_cert: bool,
}

/// STAND-IN for the upload role: HTTPS with client certificates optional
/// (a token in `Authorization` is the other way in).
async fn serve_uploads(pki: &Pki, seen: Arc<Mutex<Seen>>, fail_puts: Arc<AtomicU32>) -> SocketAddr {
    let tls = ServerTlsConfig {
        cert: pki.pki.server_cert(),
        key: pki.pki.server_key(),
        client_ca: Some(pki.pki.ca_cert()),
        client_cert_optional: true,
    }
    .server_config(&[b"http/1.1"])
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let state = UploadState {
                seen: seen.clone(),
                fail_puts: fail_puts.clone(),
                client_cert: false,
            };
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let client_cert = stream.get_ref().1.peer_certificates().is_some();
                let router = Router::new()
                    .route("/v1/images/{sha256}", put(put_image))
                    .with_state(UploadState {
                        client_cert,
                        ..state
                    });
                let service = hyper_util::service::TowerToHyperService::new(router);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn put_image(
    State(state): State<UploadState>,
    Path(sha256): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let status = decide(&state, &sha256, &headers, &body);
    state.seen.lock().unwrap().puts.push(status.as_u16());
    (status, format!("{{\"status\":{}}}", status.as_u16()))
}

fn decide(state: &UploadState, sha256: &str, headers: &HeaderMap, body: &[u8]) -> StatusCode {
    if !state.client_cert && !headers.contains_key("authorization") {
        return StatusCode::UNAUTHORIZED;
    }
    if state
        .fail_puts
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("image/jpeg") {
        return StatusCode::UNSUPPORTED_MEDIA_TYPE;
    }
    let Ok(expected) = Sha256Hex::new(sha256) else {
        return StatusCode::BAD_REQUEST;
    };
    if sha(body) != expected || image::load_from_memory(body).is_err() {
        return StatusCode::UNPROCESSABLE_ENTITY;
    }
    let mut seen = state.seen.lock().unwrap();
    if seen.images.insert(expected, body.to_vec()).is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    }
}

/// An uplink running on its own runtime and thread, so a test can stop it
/// cleanly or kill it like a crashed process (its sockets close without
/// an MQTT DISCONNECT).
pub struct RunningUplink {
    pub metrics: edge_agent::uplink::UplinkMetrics,
    pub boot_id: Uuid,
    pub commands: tokio::sync::mpsc::Receiver<edge_agent::pipeline::DeviceCommand>,
    stop: tokio::sync::watch::Sender<bool>,
    kill: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningUplink {
    pub fn start(config: UplinkConfig, outbox: Arc<Mutex<Outbox>>) -> RunningUplink {
        use edge_agent::uplink::{TelemetrySource, Uplink, UplinkMetrics};
        let metrics = UplinkMetrics::default();
        let (commands_tx, commands) = tokio::sync::mpsc::channel(16);
        let uplink = Uplink::new(
            config,
            &identity(),
            outbox,
            commands_tx,
            TelemetrySource {
                cameras: vec![inspection_core::ids::CameraId::new("cam-1").unwrap()],
                capture: Default::default(),
                pipeline: Default::default(),
                prescreen: Default::default(),
                session: Default::default(),
            },
            metrics.clone(),
            edge_agent::ops::Health::new(),
        )
        .unwrap();
        let boot_id = uplink.boot_id();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let (kill, killed) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                tokio::select! {
                    result = uplink.run(stopped) => result.unwrap(),
                    _ = killed => {}
                }
            });
            // Dropping the runtime drops every task: the connection dies
            // as with a crashed process.
            drop(rt);
        });
        RunningUplink {
            metrics,
            boot_id,
            commands,
            stop,
            kill: Some(kill),
            thread: Some(thread),
        }
    }

    /// A clean stop: offline status, DISCONNECT.
    pub fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }

    /// A crash: no goodbye.
    pub fn kill(mut self) {
        if let Some(k) = self.kill.take() {
            let _ = k.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for RunningUplink {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(k) = self.kill.take() {
            let _ = k.send(());
        }
    }
}

/// The retained status on the device's status topic, as a client that
/// subscribes now gets it (`None` when nothing is retained).
pub async fn retained_status(broker: &Mosquitto) -> Option<Status> {
    let mut options = MqttOptions::new(
        format!("probe-{}", Uuid::now_v7()),
        "127.0.0.1",
        broker.plain.port(),
    );
    options.set_credentials("bridge", "");
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    let topic = Topic::new(
        SiteId::new(SITE).unwrap(),
        DeviceId::new(DEVICE).unwrap(),
        TopicKind::Status,
    )
    .render(&TopicPrefix::default());
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), eventloop.poll()).await {
            Ok(Ok(rumqttc::Event::Incoming(Packet::ConnAck(_)))) => {
                client.subscribe(&topic, QoS::AtLeastOnce).await.unwrap();
            }
            Ok(Ok(rumqttc::Event::Incoming(Packet::Publish(p)))) if p.retain => {
                return Some(wire::decode(&p.payload).unwrap());
            }
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            _ => {}
        }
    }
    None
}
