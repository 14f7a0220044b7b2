//! End to end with the real parts on both sides: the edge agent (synthetic
//! bay, real pre-screen model, real outbox, real uplink) -> a real broker
//! (central's embedded rumqttd behind its TLS gateway, or Debian's
//! mosquitto with the fleet ACL), both with client certificates -> central's
//! bridge -> the SQLite store; images over HTTPS into central's upload role
//! and its object store. Mid-stream the broker is stopped and started again
//! on the same ports.
//!
//! What must hold afterwards: the device's events are in the store exactly
//! once with no gap in `seq`, every completed inspection has all its frames,
//! every image a stored frame names is in the object store, and the
//! device's own telemetry (stored by the bridge) reports an empty outbox.

#[path = "../../shared/tests/common/mod.rs"]
mod common;
mod uplink_support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use central::auth::Credentials;
use central::bridge::{Bridge, BridgeConfig, BridgeMetrics};
use central::broker::{BrokerConfig, BrokerMetrics, BrokerServer};
use central::store::{SqliteStore, Store, StoreConfig};
use central::tls::ServerTlsConfig;
use central::upload::{ObjectStoreConfig, UploadConfig, UploadMetrics, UploadServer, object_key};
use edge_agent::config::{Config, FileChecks};
use inspection_core::ids::{DeviceId, SiteId};
use inspection_core::topic::TopicPrefix;
use inspection_core::wire::EventBody;
use tokio::sync::watch;
use uplink_support::mosquitto::Mosquitto;
use uplink_support::*;

fn server_tls(pki: &Pki) -> ServerTlsConfig {
    ServerTlsConfig {
        cert: pki.pki.server_cert(),
        key: pki.pki.server_key(),
        client_ca: Some(pki.pki.ca_cert()),
        client_cert_optional: false,
    }
}

/// A synthetic bay: a car in frames 1-4 of every 30, so the bay is empty
/// (and the uplink can drain) most of the time.
fn agent_config(dir: &Path, pki: &Pki, mqtt: SocketAddr, upload: SocketAddr) -> String {
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

[session]
trigger_frames = 1
trigger_window = 1
absence_seconds = 0.5
frames_per_camera = 2

[outbox]
path = "{outbox}"

[ops]
listen = "127.0.0.1:0"
log_format = "text"

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
source = {{ kind = "synthetic", width = 640, height = 480, fps = 0, frames = 30, enter_at = 1, stay = 4, loop = true }}
"#,
        model = common::fetched("platedet/platedet.onnx").display(),
        outbox = dir.join("outbox.sqlite3").display(),
        mqtt_port = mqtt.port(),
        upload_port = upload.port(),
        ca = pki.pki.ca_cert().display(),
        cert = pki.device_cert.display(),
        key = pki.device_key.display(),
    )
}

/// Central's upload role and store, plus the bridge to `bridge_url`.
struct Central {
    store: Arc<dyn Store>,
    images: std::path::PathBuf,
    upload: SocketAddr,
    stop: watch::Sender<bool>,
    bridge_metrics: BridgeMetrics,
    _dir: tempfile::TempDir,
}

impl Central {
    async fn start(pki: &Pki, bridge: BridgeConfig) -> Central {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("images");
        let (stop, stop_rx) = watch::channel(false);
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
            UploadMetrics::default(),
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
            _dir: dir,
        }
    }

    async fn diag(&self) -> String {
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

    /// Completed inspections in the store, and whether the device's latest
    /// telemetry (sent after them) reports an empty outbox.
    async fn progress(&self) -> (usize, bool) {
        let site = SiteId::new(SITE).unwrap();
        let device = DeviceId::new(DEVICE).unwrap();
        let events = self
            .store
            .device_events(&site, &device, 0, 100_000)
            .await
            .unwrap();
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

    /// The invariants of the whole path (see the module doc).
    async fn check_exactly_once(&self) -> usize {
        let site = SiteId::new(SITE).unwrap();
        let device = DeviceId::new(DEVICE).unwrap();
        let events = self
            .store
            .device_events(&site, &device, 0, 100_000)
            .await
            .unwrap();
        let seqs: Vec<u64> = events.iter().map(|e| e.event.seq).collect();
        let first = seqs[0];
        assert_eq!(
            seqs,
            (first..first + seqs.len() as u64).collect::<Vec<_>>(),
            "every event stored once, none missing"
        );
        let mut completed = 0;
        for e in &events {
            match &e.event.event {
                EventBody::FrameSelected { image, .. } => {
                    let path = self.images.join(object_key(&image.sha256).to_string());
                    let bytes = std::fs::read(&path)
                        .unwrap_or_else(|err| panic!("image {} not stored: {err}", path.display()));
                    assert_eq!(bytes.len() as u64, image.bytes);
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
        completed
    }
}

async fn wait_for_progress(central: &Central, inspections: usize) {
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

async fn start_agent(
    dir: &Path,
    pki: &Pki,
    mqtt: SocketAddr,
    upload: SocketAddr,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let path = dir.join("edge-agent.toml");
    std::fs::write(&path, agent_config(dir, pki, mqtt, upload)).unwrap();
    let (config, identity) = Config::load(&path, FileChecks::On).expect("valid agent config");
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        edge_agent::agent::run(path, config, identity, rx)
            .await
            .expect("agent runs");
    });
    (tx, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edge_to_store_through_the_embedded_broker_survives_a_broker_restart() {
    let pki = Pki::new();
    let broker_config = BrokerConfig {
        internal_listen: "127.0.0.1:0".parse().unwrap(),
        tls_listen: Some("127.0.0.1:0".parse().unwrap()),
        tls: Some(server_tls(&pki)),
        ..BrokerConfig::default()
    };
    let metrics = BrokerMetrics::default();
    let broker = BrokerServer::bind(
        &broker_config,
        TopicPrefix::default(),
        Credentials::default(),
        metrics.clone(),
    )
    .await
    .expect("broker binds");
    let addrs = broker.local_addr();
    let (broker_stop, rx) = watch::channel(false);
    let broker_task = tokio::spawn(broker.run(rx));
    let central = Central::start(
        &pki,
        BridgeConfig {
            url: format!("mqtt://{}", addrs.internal),
            ..BridgeConfig::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let tls_addr = addrs.tls.unwrap();
    let (agent_stop, agent) = start_agent(dir.path(), &pki, tls_addr, central.upload).await;

    // The first inspection arrives whole.
    wait_for_progress(&central, 1).await;

    // Outage: the broker goes away (connections closed, rumqttd stopped,
    // its in-memory state lost) and comes back on the same ports.
    let _ = broker_stop.send(true);
    broker_task.await.unwrap().expect("broker stops cleanly");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let restarted = BrokerServer::bind(
        &BrokerConfig {
            internal_listen: addrs.internal,
            tls_listen: Some(tls_addr),
            ..broker_config.clone()
        },
        TopicPrefix::default(),
        Credentials::default(),
        metrics.clone(),
    )
    .await
    .expect("broker binds again on the same ports");
    let (broker_stop, rx) = watch::channel(false);
    let broker_task = tokio::spawn(restarted.run(rx));

    wait_for_progress(&central, 3).await;
    let completed = central.check_exactly_once().await;
    assert!(completed >= 3, "{completed} inspections");
    assert_eq!(
        metrics.acl_denied("publish"),
        0,
        "the device stays in its topics"
    );
    assert!(
        central.bridge_metrics.stored_count("inserted") > 0,
        "{}",
        central.diag().await
    );

    let _ = agent_stop.send(true);
    let _ = agent.await;
    let _ = central.stop.send(true);
    let _ = broker_stop.send(true);
    let _ = broker_task.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_agent_through_mosquitto_survives_a_broker_kill() {
    let pki = Pki::new();
    let mut broker = start_broker(&pki);
    let (plain, tls) = (broker.plain, broker.tls.unwrap());
    let central = Central::start(
        &pki,
        BridgeConfig {
            url: format!("mqtt://{plain}"),
            username: Some("bridge".into()),
            ..BridgeConfig::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (agent_stop, agent) = start_agent(dir.path(), &pki, tls, central.upload).await;

    wait_for_progress(&central, 1).await;

    // kill -9 of the broker process; it comes back empty on the same ports.
    broker.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _broker = Mosquitto::start_on(pki.broker_options(), plain.port(), Some(tls.port()));

    wait_for_progress(&central, 3).await;
    let completed = central.check_exactly_once().await;
    assert!(completed >= 3, "{completed} inspections");

    let _ = agent_stop.send(true);
    let _ = agent.await;
    let _ = central.stop.send(true);
}
