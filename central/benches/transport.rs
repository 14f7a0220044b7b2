//! Transport load benchmark: N simulated devices on loopback.
//!
//! ```text
//! cargo bench -p central --bench transport
//! TRANSPORT_DEVICES=100 TRANSPORT_EVENTS=200 cargo bench -p central --bench transport
//! ```
//!
//! Scenarios, each bounded in count (devices x messages) and in time
//! (`TRANSPORT_SECONDS` per scenario, default 60):
//!
//! 1. events through the embedded broker (rumqttd behind the TLS gateway,
//!    device client certificates) -> bridge -> SQLite store -> ack;
//! 2. the same through Debian's mosquitto (TLS, client certificates, the
//!    fleet ACL), the bridge subscribed on its plain listener;
//! 3. images through the upload role (HTTPS, client certificates) into the
//!    local object store.
//!
//! Each device keeps up to `TRANSPORT_WINDOW` events published and not yet
//! acked (like the edge uplink's `max_in_flight`); latency is measured from
//! publish to the end-to-end ack (after the store commit). At the end the
//! store is checked: every acked event is stored exactly once.

#[path = "../tests/support/mosquitto.rs"]
mod mosquitto;
#[path = "../../shared/benches/support/record.rs"]
mod record;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use central::auth::Credentials;
use central::bridge::{Bridge, BridgeConfig, BridgeMetrics};
use central::broker::{BrokerConfig, BrokerMetrics, BrokerServer};
use central::certs::{DevPki, append_service_credential, new_token};
use central::store::{SqliteStore, Store, StoreConfig};
use central::tls::{ServerTlsConfig, client_config};
use central::upload::{ObjectStoreConfig, UploadConfig, UploadMetrics, UploadServer};
use inspection_core::ids::{DeviceId, SiteId};
use inspection_core::topic::{Topic, TopicKind, TopicPrefix};
use inspection_core::wire::{self, Ack, Event};
use mosquitto::{Mosquitto, MosquittoOptions, MosquittoTls};
use rumqttc::{AsyncClient, MqttOptions, QoS, TlsConfiguration, Transport};
use tokio::sync::{Mutex, watch};
use uuid::Uuid;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Load {
    devices: usize,
    events: usize,
    window: usize,
    images: usize,
    image_kib: usize,
    seconds: u64,
}

#[derive(Debug, Default)]
struct Outcome {
    name: String,
    done: usize,
    planned: usize,
    elapsed: Duration,
    bytes: u64,
    latencies: Vec<Duration>,
    note: String,
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let mut l = self.latencies.clone();
        l.sort();
        let i = ((l.len() as f64 - 1.0) * q).round() as usize;
        l[i.min(l.len() - 1)]
    }
}

struct Fleet {
    pki: DevPki,
    devices: Vec<(SiteId, DeviceId)>,
}

fn fleet(dir: &Path, n: usize) -> Fleet {
    let pki = DevPki::new(dir.join("pki"));
    pki.ensure_ca().expect("ca");
    pki.issue_server(&["127.0.0.1".into()], 2)
        .expect("server cert");
    let site = SiteId::new("bench").expect("id");
    let devices = (0..n)
        .map(|i| {
            let device = DeviceId::new(format!("d{i:04}")).expect("id");
            pki.issue_device(&site, &device, 2).expect("device cert");
            (site.clone(), device)
        })
        .collect();
    Fleet { pki, devices }
}

fn server_tls(pki: &DevPki) -> ServerTlsConfig {
    ServerTlsConfig {
        cert: pki.server_cert(),
        key: pki.server_key(),
        client_ca: Some(pki.ca_cert()),
        client_cert_optional: false,
    }
}

/// A `frame_selected` event of about the size the edge sends.
fn event_for(site: &SiteId, device: &DeviceId, seq: u64) -> (Uuid, Vec<u8>) {
    let mut event: Event = wire::examples::inspection()
        .into_iter()
        .find(|e| matches!(e.event, wire::EventBody::FrameSelected { .. }))
        .expect("the examples have a frame_selected");
    event.msg_id = Uuid::now_v7();
    event.seq = seq;
    event.site = site.clone();
    event.device = device.clone();
    (event.msg_id, wire::encode(&event).expect("valid example"))
}

/// Runs every device's event stream against a broker at `tls_addr` and
/// waits for the acks. Returns the outcome and the acked msg_ids.
async fn stream_events(
    name: &str,
    fleet: &Fleet,
    prefix: &TopicPrefix,
    tls_addr: SocketAddr,
    load: &Load,
) -> (Outcome, Vec<Uuid>) {
    let deadline = Instant::now() + Duration::from_secs(load.seconds);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (site, device) in fleet.devices.clone() {
        let (cert, key) = fleet.pki.device_files(&site, &device);
        let tls = client_config(&fleet.pki.ca_cert(), Some((&cert, &key))).expect("client tls");
        let prefix = prefix.clone();
        let events = load.events;
        let window = load.window;
        tasks.spawn(async move {
            let mut options = MqttOptions::new(
                format!("{site}/{device}"),
                tls_addr.ip().to_string(),
                tls_addr.port(),
            );
            options.set_keep_alive(Duration::from_secs(30));
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
            let (client, mut eventloop) = AsyncClient::new(options, window * 2 + 8);
            let ack_topic =
                Topic::new(site.clone(), device.clone(), TopicKind::Ack).render(&prefix);
            let events_topic =
                Topic::new(site.clone(), device.clone(), TopicKind::Events).render(&prefix);
            let sent: Arc<Mutex<HashMap<Uuid, Instant>>> = Arc::default();
            let (acked_tx, mut acked_rx) =
                tokio::sync::mpsc::unbounded_channel::<(Uuid, Duration)>();
            let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel::<()>();
            let poll_sent = sent.clone();
            let poller = tokio::spawn(async move {
                let mut subscribed = Some(subscribed_tx);
                loop {
                    match eventloop.poll().await {
                        Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                            if let Some(tx) = subscribed.take() {
                                let _ = tx.send(());
                            }
                        }
                        Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                            if let Ok(ack) = wire::decode::<Ack>(&p.payload) {
                                let now = Instant::now();
                                let mut sent = poll_sent.lock().await;
                                for id in ack.msg_ids {
                                    if let Some(at) = sent.remove(&id) {
                                        let _ = acked_tx.send((id, now - at));
                                    }
                                }
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            eprintln!("device connection: {e}");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            });
            client
                .subscribe(ack_topic.clone(), QoS::AtLeastOnce)
                .await
                .expect("subscribe");
            let _ = tokio::time::timeout(Duration::from_secs(10), subscribed_rx).await;
            let mut acked = Vec::with_capacity(events);
            let mut latencies = Vec::with_capacity(events);
            let mut next = 0usize;
            let mut in_flight = 0usize;
            while acked.len() < events && Instant::now() < deadline {
                while in_flight < window && next < events {
                    let (id, payload) = event_for(&site, &device, next as u64 + 1);
                    sent.lock().await.insert(id, Instant::now());
                    client
                        .publish(events_topic.clone(), QoS::AtLeastOnce, false, payload)
                        .await
                        .expect("publish");
                    next += 1;
                    in_flight += 1;
                }
                match tokio::time::timeout(Duration::from_millis(500), acked_rx.recv()).await {
                    Ok(Some((id, latency))) => {
                        acked.push(id);
                        latencies.push(latency);
                        in_flight -= 1;
                    }
                    Ok(None) => break,
                    Err(_) => {}
                }
            }
            poller.abort();
            (acked, latencies)
        });
    }
    let mut outcome = Outcome {
        name: name.to_owned(),
        planned: load.devices * load.events,
        ..Outcome::default()
    };
    let mut acked_all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (acked, latencies) = done.expect("device task");
        outcome.done += acked.len();
        outcome.latencies.extend(latencies);
        acked_all.extend(acked);
    }
    outcome.elapsed = started.elapsed();
    (outcome, acked_all)
}

async fn bridge_to(
    url: String,
    username: Option<(String, std::path::PathBuf)>,
    prefix: &TopicPrefix,
    store: Arc<dyn Store>,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let config = BridgeConfig {
        url,
        username: username.as_ref().map(|u| u.0.clone()),
        password_file: username.map(|u| u.1),
        ..BridgeConfig::default()
    };
    let bridge = Bridge::new(&config, prefix.clone(), store, BridgeMetrics::default())
        .expect("bridge config");
    tokio::spawn(async move {
        if let Err(e) = bridge.run(stop).await {
            eprintln!("bridge: {e}");
        }
    })
}

async fn check_store(store: &Arc<dyn Store>, acked: &[Uuid], outcome: &mut Outcome) {
    let counts = store.counts().await.expect("counts");
    let mut missing = 0;
    for id in acked {
        if store.event(*id).await.expect("event").is_none() {
            missing += 1;
        }
    }
    outcome.note = format!(
        "store: {} events for {} acked; acked but missing: {missing}",
        counts.events,
        acked.len()
    );
    assert_eq!(missing, 0, "an acked event is not in the store");
}

async fn embedded(load: &Load, dir: &Path, fleet: &Fleet, prefix: &TopicPrefix) -> Outcome {
    let creds_path = dir.join("embedded-credentials.toml");
    let token = new_token();
    append_service_credential(&creds_path, "bridge", &token).expect("credentials");
    let config = BrokerConfig {
        internal_listen: "127.0.0.1:0".parse().expect("addr"),
        tls_listen: Some("127.0.0.1:0".parse().expect("addr")),
        tls: Some(server_tls(&fleet.pki)),
        credentials: Some(creds_path.clone()),
        ..BrokerConfig::default()
    };
    let credentials = Credentials::load(&creds_path).expect("credentials");
    let server = BrokerServer::bind(
        &config,
        prefix.clone(),
        credentials,
        BrokerMetrics::default(),
    )
    .await
    .expect("broker");
    let addrs = server.local_addr();
    let (stop_tx, stop) = watch::channel(false);
    let broker = tokio::spawn(server.run(stop.clone()));
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&StoreConfig::sqlite(&dir.join("embedded.sqlite3")))
            .await
            .expect("store"),
    );
    let bridge = bridge_to(
        format!("mqtt://{}", addrs.internal),
        None,
        prefix,
        store.clone(),
        stop.clone(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut outcome, acked) = stream_events(
        "events: embedded broker (TLS gateway + rumqttd) -> bridge -> SQLite",
        fleet,
        prefix,
        addrs.tls.expect("tls listener"),
        load,
    )
    .await;
    check_store(&store, &acked, &mut outcome).await;
    let _ = stop_tx.send(true);
    let _ = bridge.await;
    let _ = broker.await;
    outcome
}

async fn with_mosquitto(load: &Load, dir: &Path, fleet: &Fleet, prefix: &TopicPrefix) -> Outcome {
    let acl = dir.join("acl");
    std::fs::write(&acl, Mosquitto::fleet_acl(prefix.as_str())).expect("acl");
    let broker = Mosquitto::start(MosquittoOptions {
        tls: Some(MosquittoTls {
            ca: fleet.pki.ca_cert(),
            cert: fleet.pki.server_cert(),
            key: fleet.pki.server_key(),
        }),
        extra_config: vec![format!("acl_file {}", acl.display())],
    });
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&StoreConfig::sqlite(&dir.join("mosquitto.sqlite3")))
            .await
            .expect("store"),
    );
    let (stop_tx, stop) = watch::channel(false);
    let password = dir.join("bridge.password");
    std::fs::write(&password, "unused-on-the-anonymous-listener\n").expect("password");
    let bridge = bridge_to(
        format!("mqtt://{}", broker.plain),
        Some(("bridge".into(), password)),
        prefix,
        store.clone(),
        stop,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut outcome, acked) = stream_events(
        "events: mosquitto 2.0 (TLS, ACL) -> bridge -> SQLite",
        fleet,
        prefix,
        broker.tls.expect("tls listener"),
        load,
    )
    .await;
    check_store(&store, &acked, &mut outcome).await;
    let _ = stop_tx.send(true);
    let _ = bridge.await;
    outcome
}

fn jpeg(seed: u64, kib: usize) -> Vec<u8> {
    // Noise compresses badly, so a size in KiB maps to roughly side^2 * 3 / ratio.
    let side = ((kib * 1024) as f64 / 1.2).sqrt() as u32;
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let img = image::RgbImage::from_fn(side.max(16), side.max(16), |_, _| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let v = (state >> 33) as u8;
        image::Rgb([v, v.wrapping_mul(3), v.wrapping_add(91)])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
        .encode_image(&img)
        .expect("encode jpeg");
    out
}

async fn uploads(load: &Load, dir: &Path, fleet: &Fleet) -> Outcome {
    let config = UploadConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        tls: Some(server_tls(&fleet.pki)),
        object_store: ObjectStoreConfig::Local {
            path: dir.join("images"),
            fsync: true,
        },
        ..UploadConfig::default()
    };
    let server = UploadServer::bind(&config, None, UploadMetrics::default())
        .await
        .expect("upload");
    let addr = server.local_addrs().https.expect("https");
    let (stop_tx, stop) = watch::channel(false);
    let task = tokio::spawn(server.run(stop));
    // Images are made before the clock starts: encoding noise is slow.
    let all_images: Vec<Vec<Vec<u8>>> = (0..fleet.devices.len())
        .map(|i| {
            (0..load.images)
                .map(|k| jpeg((i * 1000 + k) as u64, load.image_kib))
                .collect()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(load.seconds);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for ((site, device), images) in fleet.devices.iter().zip(all_images) {
        let (cert, key) = fleet.pki.device_files(site, device);
        let mut pem = std::fs::read(&cert).expect("cert");
        pem.extend(std::fs::read(&key).expect("key"));
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(
                &std::fs::read(fleet.pki.ca_cert()).expect("ca"),
            )
            .expect("ca pem")])
            .identity(reqwest::Identity::from_pem(&pem).expect("identity"))
            .build()
            .expect("client");
        tasks.spawn(async move {
            let mut done = Vec::new();
            for body in images {
                if Instant::now() > deadline {
                    break;
                }
                let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(&body).into();
                let sha = wire::Sha256Hex::from_digest(&digest);
                let len = body.len() as u64;
                let at = Instant::now();
                let response = client
                    .put(format!("https://{addr}/v1/images/{sha}"))
                    .header("content-type", "image/jpeg")
                    .body(body)
                    .send()
                    .await
                    .expect("put");
                assert!(
                    response.status().is_success(),
                    "upload refused: {}",
                    response.status()
                );
                done.push((at.elapsed(), len));
            }
            done
        });
    }
    let mut outcome = Outcome {
        name: format!(
            "images: HTTPS PUT ({} KiB JPEG) -> upload -> local object store (fsync)",
            load.image_kib
        ),
        planned: load.devices * load.images,
        ..Outcome::default()
    };
    while let Some(done) = tasks.join_next().await {
        for (latency, bytes) in done.expect("upload task") {
            outcome.done += 1;
            outcome.bytes += bytes;
            outcome.latencies.push(latency);
        }
    }
    outcome.elapsed = started.elapsed();
    outcome.note = format!(
        "{:.1} MB/s",
        outcome.bytes as f64 / 1e6 / outcome.elapsed.as_secs_f64()
    );
    let _ = stop_tx.send(true);
    let _ = task.await;
    outcome
}

fn main() {
    // `cargo test --benches` passes `--bench`-less args; run a tiny load then.
    let quick = std::env::args().any(|a| a == "--test");
    let load = Load {
        devices: env("TRANSPORT_DEVICES", if quick { 2 } else { 50 }) as usize,
        events: env("TRANSPORT_EVENTS", if quick { 5 } else { 200 }) as usize,
        window: env("TRANSPORT_WINDOW", 16) as usize,
        images: env("TRANSPORT_IMAGES", if quick { 2 } else { 10 }) as usize,
        image_kib: env("TRANSPORT_IMAGE_KIB", 300) as usize,
        seconds: env("TRANSPORT_SECONDS", 60),
    };
    central::tls::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let fleet = fleet(dir.path(), load.devices);
    let prefix = TopicPrefix::default();
    let outcomes = runtime.block_on(async {
        vec![
            embedded(&load, dir.path(), &fleet, &prefix).await,
            with_mosquitto(&load, dir.path(), &fleet, &prefix).await,
            uploads(&load, dir.path(), &fleet).await,
        ]
    });
    println!(
        "\n{} devices, {} events each (window {}), {} images each; bound {} s per scenario\n",
        load.devices, load.events, load.window, load.images, load.seconds
    );
    println!("| scenario | done / planned | per second | p50 | p99 | notes |");
    println!("|---|---|---|---|---|---|");
    for o in &outcomes {
        println!(
            "| {} | {} / {} | {:.0} | {:.1} ms | {:.1} ms | {} |",
            o.name,
            o.done,
            o.planned,
            o.rate(),
            o.quantile(0.5).as_secs_f64() * 1000.0,
            o.quantile(0.99).as_secs_f64() * 1000.0,
            o.note
        );
    }
    if outcomes.len() >= 2 && outcomes[1].rate() > 0.0 {
        println!(
            "\nembedded / mosquitto events per second: {:.2}",
            outcomes[0].rate() / outcomes[1].rate()
        );
        if !quick {
            record::compared(
                "cargo bench --profile dev -p central --bench transport",
                &format!(
                    "events over TLS MQTT -> bridge -> SQLite -> ack, {} devices x {} events",
                    load.devices, load.events
                ),
                record::Figure::new(
                    "embedded broker (gateway + rumqttd)",
                    outcomes[0].rate(),
                    "events/s",
                ),
                record::Figure::new("mosquitto", outcomes[1].rate(), "events/s"),
            );
        }
    }
}
