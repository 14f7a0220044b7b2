//! A broker down for minutes, and a flapping link, while the board keeps
//! producing (issue 10, RELIABILITY.md). Central is the STAND-IN of
//! `uplink_support` (the bridge's and upload role's contracts); the broker
//! is Debian's mosquitto with TLS and the fleet ACL.
//!
//! - `a_broker_down_for_minutes_loses_nothing`: mosquitto killed for
//!   `OUTAGE_S` seconds (default 120) while an event is appended every
//!   200 ms and an image with its frame event every 2 s. The uplink backs
//!   off (it does not spin: the time it spent waiting covers most of the
//!   outage), keeps at most `max_in_flight` events in memory, reconnects
//!   within its largest backoff once the broker is back, and drains the
//!   outbox: every event arrives, duplicates only from re-publishes, no
//!   event before its image.
//! - `a_flapping_link_loses_nothing`: the uplink reaches the broker and the
//!   upload role through a TCP proxy that cuts every connection at random
//!   every 0.5-3 s and refuses new ones for up to 1 s, for 40 s while the
//!   stream runs; then the link is steady and the outbox drains, with the
//!   same checks.

mod uplink_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use edge_agent::outbox::Outbox;
use rand::{Rng, SeedableRng};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use uplink_support::mosquitto::Mosquitto;
use uplink_support::*;
use uuid::Uuid;

/// What the board produced, in order.
#[derive(Default)]
struct Produced {
    events: Vec<Uuid>,
    images: usize,
}

/// Appends an event every 200 ms and an image with its frame event every
/// 2 s until `stop`; images are `jpeg(first_image..)`.
fn produce(
    outbox: Arc<std::sync::Mutex<Outbox>>,
    first_image: u8,
    stop: Arc<AtomicBool>,
) -> JoinHandle<Produced> {
    tokio::spawn(async move {
        let mut produced = Produced::default();
        let mut tick = 0u64;
        while !stop.load(Ordering::SeqCst) {
            if tick.is_multiple_of(10) {
                let n = first_image.wrapping_add(produced.images as u8);
                let sha = append_image(&outbox, &jpeg(n));
                produced.events.push(append_frame(&outbox, &sha));
                produced.images += 1;
            } else {
                produced.events.push(append_small(&outbox));
            }
            tick += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        produced
    })
}

/// The sum of a metric family's samples (all labels).
fn metric_sum(metrics: &edge_agent::uplink::UplinkMetrics, name: &str) -> f64 {
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Every produced event and image arrived once at least, duplicates only
/// from re-publishes, no frame event before its image.
fn check_produced(
    central: &StandIn,
    uplink: &RunningUplink,
    produced: &Produced,
) -> (usize, usize, u64) {
    let figures = check_delivery(central, uplink, &produced.events);
    let images = central.seen.lock().unwrap().images.len();
    assert_eq!(images, produced.images, "every image stored");
    figures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_down_for_minutes_loses_nothing() {
    let outage = Duration::from_secs(
        std::env::var("OUTAGE_S")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(120),
    );
    let pki = Pki::new();
    let mut broker = start_broker(&pki);
    let (plain, tls) = (broker.plain.port(), broker.tls.unwrap().port());
    let central = StandIn::start(&broker, &pki).await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = open_outbox(dir.path());
    // Production backoff from 500 ms, capped at 15 s (60 s in production:
    // the cap bounds how long after the broker's return the test waits).
    let backoff_max = Duration::from_secs(15);
    let config = edge_agent::uplink::UplinkConfig {
        backoff_initial_ms: 500,
        backoff_max_s: backoff_max.as_secs(),
        ..pki.uplink(&broker, central.upload)
    };
    let max_in_flight = config.max_in_flight as i64;
    let uplink = RunningUplink::start(config, outbox.clone());
    let diag = || central.diag();
    let stop = Arc::new(AtomicBool::new(false));
    let producer = produce(outbox.clone(), 0, stop.clone());
    wait_until(
        "the first events through",
        Duration::from_secs(30),
        || !central.seen.lock().unwrap().events.is_empty(),
        diag,
    )
    .await;

    broker.kill();
    let down_at = Instant::now();
    let failed_before = metric_sum(&uplink.metrics, "edge_uplink_disconnects_total");
    let waited_before = metric_sum(&uplink.metrics, "edge_uplink_backoff_seconds_total");
    let mut most_in_flight = 0;
    let mut most_backlog = 0;
    while down_at.elapsed() < outage {
        most_in_flight = most_in_flight.max(uplink.metrics.in_flight.get());
        most_backlog = most_backlog.max(outbox_len(&outbox));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let attempts = metric_sum(&uplink.metrics, "edge_uplink_disconnects_total") - failed_before;
    let waited = metric_sum(&uplink.metrics, "edge_uplink_backoff_seconds_total") - waited_before;
    assert!(
        most_in_flight <= max_in_flight,
        "{most_in_flight} events in memory, max_in_flight {max_in_flight}"
    );
    // Backing off, not spinning: the waits cover most of the outage and
    // the attempts stay few (a spin would make thousands).
    assert!(
        waited >= outage.as_secs_f64() * 0.6,
        "waited {waited:.1} s in backoff during a {} s outage",
        outage.as_secs()
    );
    assert!(
        attempts <= outage.as_secs_f64(),
        "{attempts} connection attempts in {} s",
        outage.as_secs()
    );

    let broker = Mosquitto::start_on(pki.broker_options(), plain, Some(tls));
    let back_at = Instant::now();
    let connects = uplink.metrics.connects.get();
    wait_until(
        "the uplink to reconnect within its largest backoff",
        backoff_max + Duration::from_secs(10),
        || uplink.metrics.connects.get() > connects,
        || format!("{}\nbroker log:\n{}", diag(), broker.log()),
    )
    .await;
    let reconnected = back_at.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let produced = producer.await.unwrap();
    wait_until(
        "the outbox to drain",
        Duration::from_secs(120),
        || outbox_len(&outbox) == 0,
        || format!("{}\nbroker log:\n{}", diag(), broker.log()),
    )
    .await;
    let drained = back_at.elapsed();
    let (events, duplicates, republished) = check_produced(&central, &uplink, &produced);
    println!(
        "broker down {} s: {attempts} connection attempts, {waited:.1} s in backoff, \
         at most {most_in_flight} events in memory and {most_backlog} outbox entries; \
         reconnected {:.1} s after the broker was back, drained after {:.1} s; \
         {events} events and {} images delivered, {duplicates} duplicates, {republished} re-publishes",
        outage.as_secs(),
        reconnected.as_secs_f64(),
        drained.as_secs_f64(),
        produced.images,
    );
    uplink.stop();
}

/// A TCP proxy to `upstream` whose link can be cut (every connection
/// dropped) and held down (new connections refused).
struct FlakyLink {
    addr: SocketAddr,
    down: Arc<AtomicBool>,
    connections: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl FlakyLink {
    async fn start(upstream: SocketAddr) -> FlakyLink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let connections: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let down = down.clone();
            let connections = connections.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        continue;
                    };
                    if down.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let task = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    connections.lock().unwrap().push(task);
                }
            })
        };
        FlakyLink {
            addr,
            down,
            connections,
            accept,
        }
    }

    /// Drops every open connection (both ends see it close mid-stream).
    fn cut(&self) -> usize {
        let tasks: Vec<_> = self.connections.lock().unwrap().drain(..).collect();
        let n = tasks.iter().filter(|t| !t.is_finished()).count();
        for t in tasks {
            t.abort();
        }
        n
    }
}

impl Drop for FlakyLink {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_link_loses_nothing() {
    let pki = Pki::new();
    let broker = start_broker(&pki);
    let central = StandIn::start(&broker, &pki).await;
    let mqtt_link = FlakyLink::start(broker.tls.unwrap()).await;
    let upload_link = FlakyLink::start(central.upload).await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = open_outbox(dir.path());
    let mut config = pki.uplink(&broker, central.upload);
    config.mqtt_url = format!("mqtts://127.0.0.1:{}", mqtt_link.addr.port());
    config.upload_url = format!("https://127.0.0.1:{}", upload_link.addr.port());
    let uplink = RunningUplink::start(config, outbox.clone());
    let diag = || central.diag();
    let stop = Arc::new(AtomicBool::new(false));
    // Images 100.. so they differ from the other test's (one process).
    let producer = produce(outbox.clone(), 100, stop.clone());
    wait_until(
        "the first events through",
        Duration::from_secs(30),
        || !central.seen.lock().unwrap().events.is_empty(),
        diag,
    )
    .await;

    let mut rng = rand::rngs::StdRng::seed_from_u64(20261205);
    let flapping = Instant::now();
    let (mut cuts, mut cut_connections) = (0, 0);
    while flapping.elapsed() < Duration::from_secs(40) {
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..3000))).await;
        for link in [&mqtt_link, &upload_link] {
            link.down.store(true, Ordering::SeqCst);
            cut_connections += link.cut();
        }
        cuts += 1;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..1000))).await;
        for link in [&mqtt_link, &upload_link] {
            link.down.store(false, Ordering::SeqCst);
        }
    }
    stop.store(true, Ordering::SeqCst);
    let produced = producer.await.unwrap();
    let steady = Instant::now();
    wait_until(
        "the outbox to drain once the link is steady",
        Duration::from_secs(120),
        || outbox_len(&outbox) == 0,
        || format!("{}\nbroker log:\n{}", diag(), broker.log()),
    )
    .await;
    let (events, duplicates, republished) = check_produced(&central, &uplink, &produced);
    let connects = uplink.metrics.connects.get();
    assert!(
        connects >= 5,
        "the link flapped but the uplink connected {connects} times"
    );
    println!(
        "link cut {cuts} times in 40 s ({cut_connections} open connections dropped): \
         {connects} MQTT sessions, {} uploads retried; drained {:.1} s after the link was steady; \
         {events} events and {} images delivered, {duplicates} duplicates, {republished} re-publishes",
        uplink.metrics.uploads_of("retry"),
        steady.elapsed().as_secs_f64(),
        produced.images,
    );
    uplink.stop();
}
