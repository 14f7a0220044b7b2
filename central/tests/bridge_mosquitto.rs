//! The bridge against a real broker (Debian's mosquitto, plain listener;
//! one test on central's embedded rumqttd) and a real SQLite store in a
//! temp folder; devices are rumqttc clients that
//! publish events and collect the acks the bridge sends back.
//!
//! Waits are bounded and panic with what was awaited; nothing is timed.

mod support;

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use central::bridge::{Bridge, BridgeConfig, BridgeError, BridgeHealth, BridgeMetrics};
use central::store::{Store, StoreConfig, open_store};
use chrono::Utc;
use inspection_core::ids::{DeviceId, SiteId};
use inspection_core::topic::{Topic, TopicKind, TopicPrefix};
use inspection_core::wire::{Ack, CommandOutcome, Event, EventBody, V1, decode, encode, examples};
use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Packet, QoS};
use support::mosquitto::{Mosquitto, MosquittoOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

/// Polls `check` until it holds, panicking with `what` after `WAIT`.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn prefix() -> TopicPrefix {
    TopicPrefix::default()
}

/// A device: publishes on its topics, collects the acks sent to it.
struct Device {
    client: AsyncClient,
    site: SiteId,
    device: DeviceId,
    acks: Arc<Mutex<Vec<Ack>>>,
    task: JoinHandle<()>,
}

impl Device {
    async fn connect(broker: &Mosquitto, site: &str, device: &str) -> Device {
        Device::connect_to(broker.plain.port(), site, device).await
    }

    /// On any broker's plain listener at `port` on loopback.
    async fn connect_to(port: u16, site: &str, device: &str) -> Device {
        let site = SiteId::new(site).unwrap();
        let device = DeviceId::new(device).unwrap();
        let mut options = MqttOptions::new(
            format!("dev-{site}-{device}-{}", Uuid::now_v7().simple()),
            "127.0.0.1",
            port,
        );
        options.set_keep_alive(Duration::from_secs(5));
        let (client, mut eventloop) = AsyncClient::new(options, 1000);
        let acks = Arc::new(Mutex::new(Vec::new()));
        let (subscribed_tx, mut subscribed_rx) = watch::channel(false);
        let task = {
            let acks = acks.clone();
            tokio::spawn(async move {
                loop {
                    match eventloop.poll().await {
                        Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                            let ack: Ack = decode(&p.payload).expect("a valid ack payload");
                            acks.lock().unwrap().push(ack);
                        }
                        Ok(MqttEvent::Incoming(Packet::SubAck(_))) => {
                            let _ = subscribed_tx.send(true);
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            })
        };
        let topic = Topic::new(site.clone(), device.clone(), TopicKind::Ack).render(&prefix());
        client.subscribe(topic, QoS::AtLeastOnce).await.unwrap();
        tokio::time::timeout(WAIT, subscribed_rx.wait_for(|s| *s))
            .await
            .expect("the device's ack subscription was confirmed")
            .unwrap();
        Device {
            client,
            site,
            device,
            acks,
            task,
        }
    }

    fn topic(&self, kind: TopicKind) -> String {
        Topic::new(self.site.clone(), self.device.clone(), kind).render(&prefix())
    }

    async fn publish(&self, event: &Event) {
        let payload = encode(event).unwrap();
        self.publish_raw(&self.topic(TopicKind::Events), payload)
            .await;
    }

    async fn publish_raw(&self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }

    fn acked(&self) -> HashSet<Uuid> {
        self.acks
            .lock()
            .unwrap()
            .iter()
            .flat_map(|a| a.msg_ids.iter().copied())
            .collect()
    }

    /// How many times `id` was acked.
    fn ack_count(&self, id: Uuid) -> usize {
        self.acks
            .lock()
            .unwrap()
            .iter()
            .flat_map(|a| a.msg_ids.iter())
            .filter(|m| **m == id)
            .count()
    }

    async fn wait_acked(&self, ids: &[Uuid]) {
        eventually(
            &format!("{} acks for {}", ids.len(), self.device),
            || async {
                let acked = self.acked();
                ids.iter().all(|id| acked.contains(id))
            },
        )
        .await;
    }

    /// A command result event (no inspection needed), unique per call.
    fn event(&self, seq: u64) -> Event {
        Event {
            v: V1,
            msg_id: Uuid::now_v7(),
            seq,
            site: self.site.clone(),
            device: self.device.clone(),
            inspection_id: None,
            at: Utc::now(),
            event: EventBody::CommandResult {
                cmd_id: Uuid::now_v7(),
                command: "capture_now".into(),
                outcome: CommandOutcome::Executed,
                detail: None,
            },
        }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A bridge running in its own task.
struct Running {
    handle: JoinHandle<Result<(), BridgeError>>,
    stop: watch::Sender<bool>,
    health: BridgeHealth,
    metrics: BridgeMetrics,
}

async fn start_bridge(broker: &Mosquitto, store: Arc<dyn Store>, client_id: &str) -> Running {
    let config = BridgeConfig {
        url: format!("mqtt://127.0.0.1:{}", broker.plain.port()),
        client_id: Some(client_id.to_owned()),
        ..BridgeConfig::default()
    };
    start_bridge_with(&config, store).await
}

async fn start_bridge_with(config: &BridgeConfig, store: Arc<dyn Store>) -> Running {
    let client_id = config.client_id.clone().unwrap_or_default();
    let metrics = BridgeMetrics::default();
    let bridge = Bridge::new(config, prefix(), store, metrics.clone()).expect("bridge config");
    let health = bridge.health();
    let (stop, shutdown) = watch::channel(false);
    let handle = tokio::spawn(bridge.run(shutdown));
    eventually(
        &format!("bridge {client_id} connected and subscribed"),
        || async { health.is_ready() },
    )
    .await;
    Running {
        handle,
        stop,
        health,
        metrics,
    }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(WAIT, self.handle)
            .await
            .expect("the bridge stopped after shutdown")
            .expect("the bridge task did not panic")
            .expect("the bridge ended without error");
    }
}

async fn sqlite_store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    open_store(&StoreConfig::sqlite(&dir.path().join("central.sqlite3")))
        .await
        .expect("open the store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_stored_then_acked_and_a_duplicate_is_acked_again() {
    let broker = Mosquitto::start(MosquittoOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    let bridge = start_bridge(&broker, store.clone(), "bridge-a").await;
    let device = Device::connect(&broker, "de-muc-airport", "bay-03").await;

    let inspection: Vec<Event> = examples::inspection();
    for event in &inspection {
        device.publish(event).await;
    }
    let ids: Vec<Uuid> = inspection.iter().map(|e| e.msg_id).collect();
    device.wait_acked(&ids).await;
    for event in &inspection {
        let stored = store.event(event.msg_id).await.unwrap();
        assert_eq!(stored.map(|s| s.event).as_ref(), Some(event));
    }
    let record = store
        .inspection(examples::INSPECTION_ID)
        .await
        .unwrap()
        .expect("the inspection row");
    assert!(record.is_complete(), "{record:?}");

    // The device did not see the ack (say) and sends the first event again.
    device.publish(&inspection[0]).await;
    eventually("a second ack of the redelivered event", || async {
        device.ack_count(inspection[0].msg_id) >= 2
    })
    .await;
    assert_eq!(store.counts().await.unwrap().events, 3);
    assert_eq!(bridge.metrics.stored_count("inserted"), 3);
    assert_eq!(bridge.metrics.stored_count("duplicate"), 1);
    assert_eq!(bridge.metrics.received_count("events"), 4);

    // Status and telemetry are stored, never acked.
    let acks_before = device.acks.lock().unwrap().len();
    device
        .publish_raw(
            &device.topic(TopicKind::Status),
            encode(&examples::status()).unwrap(),
        )
        .await;
    device
        .publish_raw(
            &device.topic(TopicKind::Telemetry),
            encode(&examples::telemetry()).unwrap(),
        )
        .await;
    eventually("status and telemetry stored", || async {
        let record = store.device(&device.site, &device.device).await.unwrap();
        record.is_some_and(|r| r.status.is_some() && r.telemetry.is_some())
    })
    .await;
    assert_eq!(device.acks.lock().unwrap().len(), acks_before);
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_payloads_are_dead_lettered_counted_and_never_acked() {
    let broker = Mosquitto::start(MosquittoOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    let bridge = start_bridge(&broker, store.clone(), "bridge-dl").await;
    let device = Device::connect(&broker, "s1", "d1").await;
    let events_topic = device.topic(TopicKind::Events);

    device
        .publish_raw(&events_topic, b"{\"v\":1, not json".to_vec())
        .await;
    let mut v2 = serde_json::to_value(device.event(1)).unwrap();
    v2["v"] = 2.into();
    device
        .publish_raw(&events_topic, serde_json::to_vec(&v2).unwrap())
        .await;
    let mut forged = device.event(2);
    forged.device = DeviceId::new("d2").unwrap();
    device.publish(&forged).await;
    // `+` matches it, but `bad!id` is no device id.
    device
        .publish_raw(
            "inspect/v1/s1/bad!id/events",
            encode(&device.event(3)).unwrap(),
        )
        .await;
    // The bridge keeps working after all that.
    let good = device.event(4);
    device.publish(&good).await;
    device.wait_acked(&[good.msg_id]).await;

    eventually("four dead letters", || async {
        store.counts().await.unwrap().dead_letters == 4
    })
    .await;
    let letters = store.dead_letters(10).await.unwrap();
    let mut reasons: Vec<&str> = letters.iter().map(|l| l.reason.as_str()).collect();
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            "malformed",
            "source_mismatch",
            "unknown_topic",
            "unsupported_version"
        ]
    );
    let malformed = letters.iter().find(|l| l.reason == "malformed").unwrap();
    assert_eq!(malformed.payload, b"{\"v\":1, not json");
    assert_eq!(malformed.topic, events_topic);
    for reason in [
        "malformed",
        "source_mismatch",
        "unknown_topic",
        "unsupported_version",
    ] {
        assert_eq!(bridge.metrics.rejected_count(reason), 1, "{reason}");
    }
    assert_eq!(
        device.acked(),
        HashSet::from([good.msg_id]),
        "only the valid event is acked"
    );
    assert_eq!(store.counts().await.unwrap().events, 1);
    assert_eq!(bridge.metrics.received_count("unknown"), 1);
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_in_one_share_group_store_each_event_once() {
    let broker = Mosquitto::start(MosquittoOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    let a = start_bridge(&broker, store.clone(), "bridge-r1").await;
    let b = start_bridge(&broker, store.clone(), "bridge-r2").await;
    let device = Device::connect(&broker, "s1", "d1").await;
    let events: Vec<Event> = (1..=200).map(|seq| device.event(seq)).collect();
    for event in &events {
        device.publish(event).await;
    }
    let ids: Vec<Uuid> = events.iter().map(|e| e.msg_id).collect();
    device.wait_acked(&ids).await;
    assert_eq!(store.counts().await.unwrap().events, 200);
    let (ra, rb) = (
        a.metrics.received_count("events"),
        b.metrics.received_count("events"),
    );
    assert!(
        ra > 0 && rb > 0,
        "both replicas must get a share: {ra} and {rb}"
    );
    assert_eq!(
        a.metrics.stored_count("inserted") + b.metrics.stored_count("inserted"),
        200,
        "each event inserted once across the replicas"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_bridge_mid_stream_acks_nothing_uncommitted_and_loses_nothing() {
    let broker = Mosquitto::start(MosquittoOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    let bridge = start_bridge(&broker, store.clone(), "bridge-k").await;
    let device = Arc::new(Device::connect(&broker, "s1", "d1").await);
    const N: u64 = 2000;
    let events: Arc<Vec<Event>> = Arc::new((1..=N).map(|seq| device.event(seq)).collect());
    let streaming = {
        let (device, events) = (device.clone(), events.clone());
        tokio::spawn(async move {
            for event in events.iter() {
                device.publish(event).await;
            }
        })
    };
    // Kill as soon as acks flow: the bridge is fast, so look often.
    let deadline = tokio::time::Instant::now() + WAIT;
    while device.acked().len() < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no acks within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Kill: the whole bridge (connection and batcher) is one future.
    bridge.handle.abort();
    let _ = bridge.handle.await;
    streaming.await.unwrap();

    // Every ack the device got names a committed event.
    let acked = device.acked();
    assert!(
        !acked.is_empty() && acked.len() < N as usize,
        "the kill must land mid-stream: {} of {N} acked",
        acked.len()
    );
    for id in &acked {
        assert!(
            store.event(*id).await.unwrap().is_some(),
            "{id} was acked but is not in the store"
        );
    }

    // A bridge comes back under the same client id (its session holds what
    // was queued meanwhile); the device republishes what is not acked, as
    // its outbox does, until everything is.
    let bridge = start_bridge(&broker, store.clone(), "bridge-k").await;
    let all: Vec<Uuid> = events.iter().map(|e| e.msg_id).collect();
    let mut rounds = 0;
    eventually("every event acked after the restart", || {
        let (device, events) = (device.clone(), events.clone());
        rounds += 1;
        let republish = rounds % 100 == 1;
        async move {
            let acked = device.acked();
            if republish {
                for event in events.iter().filter(|e| !acked.contains(&e.msg_id)) {
                    device.publish(event).await;
                }
            }
            acked.len() == events.len()
        }
    })
    .await;
    let counts = store.counts().await.unwrap();
    assert_eq!(counts.events, N, "every event stored exactly once");
    for id in &all {
        assert!(store.event(*id).await.unwrap().is_some(), "{id} missing");
    }
    let stored = store
        .device_events(&device.site, &device.device, 0, N as u32 + 10)
        .await
        .unwrap();
    let seqs: Vec<u64> = stored.iter().map(|s| s.event.seq).collect();
    assert_eq!(seqs, (1..=N).collect::<Vec<_>>());
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_store_holds_back_acks_until_it_recovers() {
    let broker = Mosquitto::start(MosquittoOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("central.sqlite3");
    let store = open_store(&StoreConfig {
        busy_timeout_ms: 50,
        ..StoreConfig::sqlite(&path)
    })
    .await
    .unwrap();
    let bridge = start_bridge(&broker, store.clone(), "bridge-lock").await;
    let device = Device::connect(&broker, "s1", "d1").await;

    // Another process (here: another connection) holds the write lock.
    use sqlx::Connection;
    let mut locker = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut locker)
        .await
        .unwrap();

    let events: Vec<Event> = (1..=5).map(|seq| device.event(seq)).collect();
    for event in &events {
        device.publish(event).await;
    }
    eventually("store errors counted and the bridge not ready", || async {
        bridge.metrics.store_error_count("unavailable") >= 2 && !bridge.health.is_ready()
    })
    .await;
    assert!(
        device.acked().is_empty(),
        "acked while the store was locked"
    );
    assert!(bridge.health.is_connected());
    assert!(bridge.health.is_store_failing());

    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    let ids: Vec<Uuid> = events.iter().map(|e| e.msg_id).collect();
    device.wait_acked(&ids).await;
    assert_eq!(store.counts().await.unwrap().events, 5);
    eventually("ready again", || async { bridge.health.is_ready() }).await;
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_holds_back_acks_and_counts_it() {
    let broker = Mosquitto::start(MosquittoOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&StoreConfig {
        max_size_bytes: Some(central::store::MIN_MAX_SIZE_BYTES),
        ..StoreConfig::sqlite(&dir.path().join("central.sqlite3"))
    })
    .await
    .unwrap();
    let bridge = start_bridge(&broker, store.clone(), "bridge-full").await;
    let device = Device::connect(&broker, "s1", "d1").await;
    // Publish until the store is full, then a little more.
    let mut seq = 0;
    let mut sent = Vec::new();
    while bridge.metrics.store_error_count("full") == 0 {
        for _ in 0..50 {
            seq += 1;
            let event = device.event(seq);
            device.publish(&event).await;
            sent.push(event.msg_id);
        }
        assert!(seq < 20_000, "a 256 KiB store never filled up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eventually("the bridge reports the store failing", || async {
        !bridge.health.is_ready()
    })
    .await;
    let acked = device.acked();
    let stored = store.counts().await.unwrap().events;
    assert!(
        (acked.len() as u64) <= stored && acked.len() < sent.len(),
        "{} acked, {stored} stored, {} sent",
        acked.len(),
        sent.len()
    );
    for id in &acked {
        assert!(
            store.event(*id).await.unwrap().is_some(),
            "{id} acked, not stored"
        );
    }
    // Stopping while full acks nothing more and does not hang.
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_reconnects_after_a_broker_outage() {
    let mut broker = Mosquitto::start(MosquittoOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    let bridge = start_bridge(&broker, store.clone(), "bridge-outage").await;
    let device = Device::connect(&broker, "s1", "d1").await;
    let before = device.event(1);
    device.publish(&before).await;
    device.wait_acked(&[before.msg_id]).await;
    drop(device);

    broker.kill();
    eventually("the bridge notices the outage", || async {
        !bridge.health.is_connected() && bridge.metrics.connection_errors.get() >= 1
    })
    .await;
    // The broker comes back empty (no persistence): the bridge must
    // reconnect and subscribe again by itself.
    let broker = Mosquitto::start_on(MosquittoOptions::default(), broker.plain.port(), None);
    eventually("the bridge reconnected and subscribed", || async {
        bridge.health.is_ready()
    })
    .await;
    assert!(bridge.metrics.connections.get() >= 2);
    let device = Device::connect(&broker, "s1", "d1").await;
    let after = device.event(2);
    device.publish(&after).await;
    device.wait_acked(&[after.msg_id]).await;
    assert_eq!(store.counts().await.unwrap().events, 2);
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_connects_over_tls_with_a_client_certificate_under_the_fleet_acl() {
    use central::certs::DevPki;
    use support::mosquitto::MosquittoTls;
    central::tls::install_crypto_provider();
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = DevPki::new(pki_dir.path());
    pki.ensure_ca().unwrap();
    pki.issue_server(&["127.0.0.1".into()], 2).unwrap();
    // The bridge's certificate names it `svc/bridge`, its user name under
    // `use_identity_as_username`.
    let (cert, key) = pki
        .issue_device(
            &SiteId::new("svc").unwrap(),
            &DeviceId::new("bridge").unwrap(),
            2,
        )
        .unwrap();
    // Anonymous (plain-listener) clients may publish device topics here so
    // the test devices need no certificates; the bridge gets the fleet
    // ACL's bridge rights under its certificate name.
    let acl = pki_dir.path().join("acl");
    std::fs::write(
        &acl,
        format!(
            "topic readwrite inspect/v1/#\n\n{}",
            Mosquitto::fleet_acl("inspect").replace("user bridge", "user svc/bridge")
        ),
    )
    .unwrap();
    let broker = Mosquitto::start(MosquittoOptions {
        tls: Some(MosquittoTls {
            ca: pki.ca_cert(),
            cert: pki.server_cert(),
            key: pki.server_key(),
        }),
        extra_config: vec![format!("acl_file {}", acl.display())],
    });
    let tls = broker.tls.expect("a TLS listener");
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    let config = BridgeConfig {
        url: format!("mqtts://127.0.0.1:{}", tls.port()),
        ca: Some(pki.ca_cert()),
        cert: Some(cert),
        key: Some(key),
        client_id: Some("bridge-tls".into()),
        ..BridgeConfig::default()
    };
    assert!(config.problems("bridge", true).is_empty());
    let bridge = start_bridge_with(&config, store.clone()).await;
    assert_eq!(bridge.metrics.subscribe_failures.get(), 0);
    let device = Device::connect(&broker, "s1", "d1").await;
    let event = device.event(1);
    device.publish(&event).await;
    device.wait_acked(&[event.msg_id]).await;
    assert!(store.event(event.msg_id).await.unwrap().is_some());
    bridge.stop().await;

    // Without a client certificate the broker refuses the connection, and
    // the bridge says so in its metrics instead of failing.
    let anonymous = BridgeConfig {
        cert: None,
        key: None,
        client_id: Some("bridge-nocert".into()),
        ..config
    };
    let metrics = BridgeMetrics::default();
    let refused = Bridge::new(&anonymous, prefix(), store, metrics.clone()).unwrap();
    let health = refused.health();
    let (stop, shutdown) = watch::channel(false);
    let handle = tokio::spawn(refused.run(shutdown));
    eventually("connection errors counted", || async {
        metrics.connection_errors.get() >= 2
    })
    .await;
    assert!(!health.is_connected());
    let _ = stop.send(true);
    tokio::time::timeout(WAIT, handle)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// The embedded broker (rumqttd) keeps one read cursor per share group: with
/// status, events and telemetry in one group, telemetry moving the cursor
/// ahead left every later event unread (found by the demo). Each kind has
/// its own group now; statuses and telemetry first, then an inspection's
/// events, all stored and acked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_embedded_broker_events_flow_after_status_and_telemetry() {
    use central::broker::{BrokerConfig, BrokerMetrics, BrokerServer};
    let config = BrokerConfig {
        internal_listen: "127.0.0.1:0".parse().unwrap(),
        ..BrokerConfig::default()
    };
    let server = BrokerServer::bind(
        &config,
        prefix(),
        Default::default(),
        BrokerMetrics::default(),
    )
    .await
    .expect("the embedded broker binds");
    let port = server.local_addr().internal.port();
    let (broker_stop, broker_rx) = watch::channel(false);
    let broker = tokio::spawn(async move { server.run(broker_rx).await });

    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    let bridge = start_bridge_with(
        &BridgeConfig {
            url: format!("mqtt://127.0.0.1:{port}"),
            client_id: Some("bridge-embedded".into()),
            ..BridgeConfig::default()
        },
        store.clone(),
    )
    .await;
    let example = examples::status();
    let device = Device::connect_to(port, example.site.as_str(), example.device.as_str()).await;
    device
        .publish_raw(&device.topic(TopicKind::Status), encode(&example).unwrap())
        .await;
    for _ in 0..5 {
        device
            .publish_raw(
                &device.topic(TopicKind::Telemetry),
                encode(&examples::telemetry()).unwrap(),
            )
            .await;
    }
    eventually("five telemetry messages received", || async {
        bridge.metrics.received_count("telemetry") == 5
    })
    .await;

    let inspection: Vec<Event> = examples::inspection();
    for event in &inspection {
        device.publish(event).await;
    }
    let ids: Vec<Uuid> = inspection.iter().map(|e| e.msg_id).collect();
    device.wait_acked(&ids).await;
    assert_eq!(
        store.counts().await.unwrap().events,
        inspection.len() as u64
    );
    bridge.stop().await;
    let _ = broker_stop.send(true);
    broker.await.unwrap().expect("the broker stops cleanly");
}
