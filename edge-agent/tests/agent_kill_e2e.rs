//! SIGKILL of the real `edge-agent` binary, 100 times, while it uploads
//! images and publishes events to central; after each kill it is started
//! again on the same outbox, as systemd would. Central runs in this process
//! with its real roles (`central_support`: the embedded broker behind its
//! TLS gateway, the bridge, the HTTPS upload role and its object store, the
//! SQLite store), loopback only. The bay is busy (a car every 6 frames at
//! 5 fps, an inspection every ~2 s on two shared cores), so inspections are
//! produced, uploaded and published through every life.
//!
//! Kill points come from a seeded RNG (the seed is printed; `KILL_SEED=n`
//! replays the schedule, not the timing). Each kind below gets an equal
//! share of the kills, in a shuffled order; all but `start` wait for the
//! n-th occurrence in the life (n drawn, up to the number given), so kills
//! fall early and late in a life, then add a random delay:
//!
//! - `start`: 0-2 s after the process started (outbox open, model load,
//!   TLS connect, the first drain of what the last life left);
//! - `commit` (n <= 5): 0-400 ms after the agent logged an event committed;
//! - `put` (n <= 2): while central's upload role holds a PUT (read, hash,
//!   JPEG check, write); `put(answered)` when it finished unseen;
//! - `put_answered` (n <= 2): 0-30 ms after central answered a PUT (the
//!   agent has its 201; its outbox may still hold the image);
//! - `publish` (n <= 5): 0-10 ms after the bridge received an event (before
//!   or while it commits);
//! - `stored` (n <= 5): 0-3 ms after the bridge stored an event (the ack is
//!   on its way; the agent has not deleted the event yet);
//! - `acked` (n <= 4): 0-30 ms after the agent logged that it applied an
//!   ack.
//!
//! After the 100th kill the agent starts once more with the bay empty (no
//! new inspection), drains its outbox and is stopped with SIGTERM. Then:
//!
//! - the store holds seq 1..=N exactly once (no gap, no `msg_id` twice), N
//!   being the outbox's last seq; every event any life logged as committed
//!   is there with its `msg_id`; the bridge inserted exactly N events;
//! - every inspection started is stored once. It is completed once, with
//!   all its frames and every image, or it was CUT by a kill: frames are
//!   kept in memory until the car leaves and then persisted rank 1, 2, ...
//!   and `inspection_completed` last, so a kill can leave an inspection as
//!   `inspection_started` plus its first j frames (j may be 0) and nothing
//!   after them. Such an inspection is the last thing its life committed,
//!   that life ended by a kill, the store keeps it uncompleted, and no
//!   later event belongs to it (a new life starts new inspections). At
//!   most one per kill;
//! - every selected frame's image is in the object store with its SHA-256
//!   and size (an image whose event was cut by a kill may be there too,
//!   named by nothing: counted as unnamed);
//! - the outbox is empty and opens without recovery.
//!
//! The figures (kills per point, events, inspections, re-publishes and the
//! duplicates the bridge saw) are printed at the end.

mod agent_support;
mod central_support;
#[path = "../../shared/tests/common/mod.rs"]
mod common;
mod uplink_support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use agent_support::Agent;
use central::bridge::BridgeConfig;
use central::broker::BrokerMetrics;
use central::store::StoredEvent;
use central_support::{
    Central, Prescreen, agent_config, embedded_broker_config, run_embedded_broker,
};
use edge_agent::outbox::{Outbox, OutboxConfig, OutboxMetrics};
use inspection_core::ids::{DeviceId, SiteId};
use inspection_core::wire::{CompletionReason, EventBody};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use uplink_support::{DEVICE, Pki, SITE};
use uuid::Uuid;

const KILLS: usize = 100;

/// The agent's log filter: the uplink's debug lines say when an ack was
/// applied (a kill point).
const RUST_LOG: &str = "info,edge_agent::uplink=debug";

/// How long one kill point may take to come: each life sees a car within
/// a few seconds, so this is only reached when the agent makes no progress.
const TRIGGER_TIMEOUT: Duration = Duration::from_secs(30);

/// The camera: 5 frames a second, a car in frames 1-2 of every 6 (none
/// when `cars` is false). The synthetic camera is a pure function of its
/// settings, so its floor `seed` is set per life: each life's images are
/// its own, not the same bytes again.
fn bay(cars: bool, seed: usize) -> String {
    format!(
        "{{ kind = \"synthetic\", width = 640, height = 480, fps = 5, frames = 6, enter_at = 1, stay = {}, loop = true, seed = {seed} }}",
        if cars { 2 } else { 0 }
    )
}

fn write_config(dir: &Path, pki: &Pki, central: &Central, mqtt: std::net::SocketAddr, bay: &str) {
    let text = agent_config(
        dir,
        pki,
        mqtt,
        central.upload,
        // The 320-input model: a quarter of the 640 one's inference, so
        // the bay keeps up on two shared cores; it scores the synthetic
        // plate lower, hence the trigger score.
        &Prescreen {
            model: &common::fetched("platedet/platedet.fp32.320.onnx"),
            min_trigger_score: 0.25,
        },
        bay,
    );
    std::fs::write(dir.join("edge-agent.toml"), text).unwrap();
}

/// Where a kill lands (see the module doc).
#[derive(Debug, Clone, Copy)]
enum KillPoint {
    Start,
    Commit,
    Put,
    PutAnswered,
    Publish,
    Stored,
    Acked,
}

const KILL_POINTS: [KillPoint; 7] = [
    KillPoint::Start,
    KillPoint::Commit,
    KillPoint::Put,
    KillPoint::PutAnswered,
    KillPoint::Publish,
    KillPoint::Stored,
    KillPoint::Acked,
];

/// `KILLS` points, every kind the same number of times (the remainder
/// drawn), shuffled.
fn schedule(rng: &mut impl Rng) -> Vec<KillPoint> {
    let even = KILLS - KILLS % KILL_POINTS.len();
    let mut points: Vec<KillPoint> = (0..KILLS)
        .map(|i| {
            if i < even {
                KILL_POINTS[i % KILL_POINTS.len()]
            } else {
                KILL_POINTS[rng.random_range(0..KILL_POINTS.len())]
            }
        })
        .collect();
    points.shuffle(rng);
    points
}

/// Central's counters a kill point watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Watched {
    puts_answered: u64,
    puts_in_progress: u64,
    received: u64,
    stored: u64,
}

fn watched(central: &Central) -> Watched {
    let upload = central.upload_figures();
    let bridge = &central.bridge_metrics;
    Watched {
        puts_answered: upload.created + upload.existing,
        puts_in_progress: upload.in_progress,
        received: bridge.received_count("events"),
        stored: bridge.stored_count("inserted") + bridge.stored_count("duplicate"),
    }
}

/// Polls (1 ms) the agent's log and central's counters until `hit` says
/// the kill point has come; returns its label. Panics when the agent exits
/// on its own or nothing comes in time.
fn wait_for_point(
    agent: &mut Agent,
    central: &Central,
    what: &str,
    hit: impl Fn(&Agent, Watched) -> Option<&'static str>,
) -> &'static str {
    let deadline = Instant::now() + TRIGGER_TIMEOUT;
    loop {
        agent.poll();
        if let Some(label) = hit(agent, watched(central)) {
            return label;
        }
        if let Some(status) = agent.child.try_wait().unwrap() {
            agent.drain();
            panic!(
                "the agent exited ({status:?}) while waiting for {what}; last lines: {:#?}",
                last_lines(agent)
            );
        }
        assert!(
            Instant::now() < deadline,
            "no {what} within {TRIGGER_TIMEOUT:?}; last lines: {:#?}",
            last_lines(agent)
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn last_lines(agent: &Agent) -> &[serde_json::Value] {
    &agent.seen[agent.seen.len().saturating_sub(20)..]
}

/// Waits for the kill point (the `n`-th occurrence of its kind in this
/// life, `n` drawn), then for its random delay (the delay is the point, not
/// a synchronisation). Returns the label of what was hit.
fn reach(
    point: KillPoint,
    agent: &mut Agent,
    central: &Central,
    rng: &mut impl Rng,
) -> &'static str {
    let (max_n, max_delay_ms) = match point {
        KillPoint::Start => (1, 2000),
        KillPoint::Commit => (5, 400),
        KillPoint::Put => (2, 0),
        KillPoint::PutAnswered => (2, 30),
        KillPoint::Publish => (5, 10),
        KillPoint::Stored => (5, 3),
        KillPoint::Acked => (4, 30),
    };
    let n: u64 = rng.random_range(1..=max_n);
    let delay = Duration::from_millis(rng.random_range(0..=max_delay_ms));
    let base = watched(central);
    let logged = |a: &Agent, message: &str| a.logged(message).count() as u64;
    let label = match point {
        KillPoint::Start => "start",
        KillPoint::Commit => wait_for_point(agent, central, "a commit", |a, _| {
            (logged(a, "event committed") >= n).then_some("commit")
        }),
        KillPoint::Put => wait_for_point(agent, central, "a PUT", |_, now| {
            let answered = now.puts_answered - base.puts_answered;
            if answered + 1 >= n && now.puts_in_progress > 0 {
                Some("put")
            } else if answered >= n {
                Some("put(answered)")
            } else {
                None
            }
        }),
        KillPoint::PutAnswered => wait_for_point(agent, central, "an answered PUT", |_, now| {
            (now.puts_answered >= base.puts_answered + n).then_some("put_answered")
        }),
        KillPoint::Publish => wait_for_point(agent, central, "a publish", |_, now| {
            (now.received >= base.received + n).then_some("publish")
        }),
        KillPoint::Stored => wait_for_point(agent, central, "an event stored", |_, now| {
            (now.stored >= base.stored + n).then_some("stored")
        }),
        KillPoint::Acked => wait_for_point(agent, central, "an ack applied", |a, _| {
            (logged(a, "ack applied") >= n).then_some("acked")
        }),
    };
    std::thread::sleep(delay);
    label
}

/// What one process of the agent did, from its log.
#[derive(Debug)]
struct Life {
    /// The outbox's last seq when this life opened it (`None`: killed
    /// before it did, so it committed nothing).
    opened_at_seq: Option<u64>,
    /// seq -> msg_id of the events it logged as committed.
    committed: BTreeMap<u64, String>,
    /// Events published again after a connect, and after an ack timeout.
    republished_reconnect: u64,
    republished_timeout: u64,
    /// The kill point that ended it; `None` for the SIGTERM at the end.
    killed: Option<&'static str>,
}

impl Life {
    fn of(agent: &Agent, killed: Option<&'static str>) -> Life {
        Life {
            opened_at_seq: agent
                .logged("outbox open")
                .find_map(|v| v["last_seq"].as_u64()),
            committed: agent.committed(),
            republished_reconnect: agent
                .logged("uplink connected")
                .filter_map(|v| v["republished"].as_u64())
                .sum(),
            republished_timeout: agent
                .logged("no ack within the timeout; event published again")
                .count() as u64,
            killed,
        }
    }
}

/// Whether the device's latest stored telemetry was taken after `since`
/// (by a process started after it, not a late message of a killed one)
/// and reports an empty outbox.
async fn drained_since(central: &Central, since: chrono::DateTime<chrono::Utc>) -> bool {
    let site = SiteId::new(SITE).unwrap();
    let device = DeviceId::new(DEVICE).unwrap();
    let device = central.store.device(&site, &device).await.unwrap();
    device
        .and_then(|d| d.telemetry)
        .is_some_and(|t| t.at > since && t.outbox.entries == 0)
}

fn seed() -> u64 {
    match std::env::var("KILL_SEED") {
        Ok(s) => s.parse().expect("KILL_SEED is a u64"),
        Err(_) => rand::rng().random(),
    }
}

#[test]
fn sigkill_during_upload_and_publish_loses_and_duplicates_nothing() {
    let began = Instant::now();
    let seed = seed();
    println!("kill schedule seed {seed} (replay with KILL_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let points = schedule(&mut rng);

    // Central on its own runtime; this thread drives the agent processes.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pki = Pki::new();
    let broker = rt.block_on(run_embedded_broker(
        &embedded_broker_config(&pki),
        BrokerMetrics::default(),
    ));
    let mqtt = broker.addrs.tls.expect("TLS listener");
    let central = rt.block_on(Central::start(
        &pki,
        BridgeConfig {
            url: format!("mqtt://{}", broker.addrs.internal),
            ..BridgeConfig::default()
        },
    ));
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("edge-agent.toml");
    let mut lives = Vec::new();
    for (round, point) in points.iter().enumerate() {
        write_config(dir.path(), &pki, &central, mqtt, &bay(true, round));
        let mut agent = Agent::start_with_env(&config_path, &[("RUST_LOG", RUST_LOG)]);
        let label = reach(*point, &mut agent, &central, &mut rng);
        agent.kill();
        lives.push(Life::of(&agent, Some(label)));
        if (round + 1) % 10 == 0 {
            println!(
                "{} kills in {:.0?}, last seq committed {:?}",
                round + 1,
                began.elapsed(),
                lives.iter().filter_map(|l| l.committed.keys().last()).max()
            );
        }
    }
    let killing = began.elapsed();

    // The last start: the bay is empty, the outbox drains (the device's
    // telemetry, sent by this life, says so), SIGTERM.
    write_config(dir.path(), &pki, &central, mqtt, &bay(false, KILLS));
    let restarted = chrono::Utc::now();
    let mut agent = Agent::start_with_env(&config_path, &[("RUST_LOG", RUST_LOG)]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !rt.block_on(drained_since(&central, restarted)) {
        agent.poll();
        assert!(
            Instant::now() < deadline,
            "the outbox did not drain: {}; last lines: {:#?}",
            rt.block_on(central.diag()),
            last_lines(&agent)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    agent.terminate(Duration::from_secs(30));
    lives.push(Life::of(&agent, None));
    let last = lives.last().unwrap();
    assert!(last.committed.is_empty(), "the empty bay committed events");

    // The outbox: empty, no recovery, its last seq is the last one handed out.
    let (outbox, report) = Outbox::open(
        &OutboxConfig {
            path: dir.path().join("outbox.sqlite3"),
            ..OutboxConfig::default()
        },
        OutboxMetrics::default(),
    )
    .expect("the outbox opens");
    assert!(report.recovered.is_none(), "needed recovery: {report:?}");
    let left = outbox.pending(10_000).unwrap();
    assert!(left.is_empty(), "{} entries left in the outbox", left.len());
    let last_seq = report.last_seq;
    drop(outbox);

    // Events: 1..=last_seq, each once, images with their hash and size.
    let delivered = rt.block_on(central.check_exactly_once());
    let events = &delivered.events;
    assert_eq!(events[0].event.seq, 1, "the first event is missing");
    assert_eq!(
        events.last().unwrap().event.seq,
        last_seq,
        "events committed to the outbox never reached the store"
    );
    let by_seq: HashMap<u64, &StoredEvent> = events.iter().map(|e| (e.event.seq, e)).collect();
    for (n, life) in lives.iter().enumerate() {
        for (seq, msg_id) in &life.committed {
            let stored = by_seq
                .get(seq)
                .unwrap_or_else(|| panic!("life {n}: seq {seq} committed, not stored"));
            assert_eq!(
                &stored.event.msg_id.to_string(),
                msg_id,
                "life {n}: seq {seq} stored with another msg_id"
            );
        }
    }
    let inserted = central.bridge_metrics.stored_count("inserted");
    assert_eq!(inserted, last_seq, "the bridge inserted each event once");

    // Lives: each one's events follow the outbox's last seq at its open.
    let bounds: Vec<(usize, u64, u64)> = {
        let opened: Vec<(usize, u64)> = lives
            .iter()
            .enumerate()
            .filter_map(|(n, l)| Some((n, l.opened_at_seq?)))
            .collect();
        opened
            .iter()
            .enumerate()
            .map(|(i, &(n, from))| {
                let to = opened.get(i + 1).map_or(last_seq, |&(_, next)| next);
                assert!(from <= to, "the outbox's seq went back at life {n}");
                (n, from, to)
            })
            .collect()
    };
    for &(n, from, to) in &bounds {
        if let Some((first, _)) = lives[n].committed.first_key_value() {
            let (last, _) = lives[n].committed.last_key_value().unwrap();
            assert!(
                *first > from && *last <= to,
                "life {n} committed {first}..={last} outside ({from}, {to}]"
            );
        }
    }
    let life_of = |seq: u64| {
        bounds
            .iter()
            .find(|&&(_, from, to)| seq > from && seq <= to)
            .map(|&(n, _, to)| (n, to))
            .unwrap_or_else(|| panic!("seq {seq} belongs to no life"))
    };

    // Inspections: completed once with all frames, or cut by a kill.
    let mut inspections: Vec<(Uuid, Vec<&StoredEvent>)> = Vec::new();
    for e in events {
        let id = e
            .event
            .inspection_id
            .expect("every event here has an inspection");
        match inspections.last_mut() {
            Some((last, group)) if *last == id => group.push(e),
            _ => {
                assert!(
                    inspections.iter().all(|(other, _)| *other != id),
                    "inspection {id}: its events are not consecutive"
                );
                inspections.push((id, vec![e]));
            }
        }
    }
    let (mut completed, mut cut, mut cut_frames) = (0, 0, 0);
    let mut cut_lives = Vec::new();
    for (id, group) in &inspections {
        assert!(
            matches!(group[0].event.event, EventBody::InspectionStarted { .. }),
            "inspection {id} does not begin with inspection_started: {group:#?}"
        );
        let (first_life, _) = life_of(group[0].event.seq);
        let (last_life, life_end) = life_of(group.last().unwrap().event.seq);
        assert_eq!(first_life, last_life, "inspection {id} spans two lives");
        let mut frames = Vec::new();
        let mut end = None;
        for e in &group[1..] {
            assert!(
                end.is_none(),
                "inspection {id}: an event after its completion"
            );
            match &e.event.event {
                EventBody::FrameSelected { image, rank, .. } => {
                    frames.push((*rank, image.sha256.clone()));
                }
                EventBody::InspectionCompleted {
                    reason,
                    frames: count,
                    images,
                } => end = Some((*reason, *count, images.clone())),
                other => panic!("inspection {id}: unexpected {}", other.name()),
            }
        }
        let ranks: Vec<u32> = frames.iter().map(|(r, _)| *r).collect();
        assert_eq!(
            ranks,
            (1..=frames.len() as u32).collect::<Vec<_>>(),
            "inspection {id}: frames best first"
        );
        let record = rt
            .block_on(central.store.inspection(*id))
            .unwrap()
            .expect("stored inspection");
        assert_eq!(record.frames_received as usize, frames.len(), "{record:?}");
        match end {
            Some((reason, count, images)) => {
                assert_eq!(reason, CompletionReason::VehicleLeft, "inspection {id}");
                assert_eq!(count as usize, frames.len(), "inspection {id}");
                let named: Vec<_> = images.iter().flat_map(|c| c.sha256.clone()).collect();
                let framed: Vec<_> = frames.iter().map(|(_, s)| s.clone()).collect();
                assert_eq!(named, framed, "inspection {id}: images of its completion");
                assert!(record.is_complete(), "{record:?}");
                completed += 1;
            }
            None => {
                // Cut by a kill: the last thing its life committed, and that
                // life was killed.
                let last_seq_of_it = group.last().unwrap().event.seq;
                assert_eq!(
                    last_seq_of_it, life_end,
                    "inspection {id} is unfinished but its life went on"
                );
                assert!(
                    lives[first_life].killed.is_some(),
                    "inspection {id} is unfinished in a life that was not killed"
                );
                assert!(record.completed_at.is_none(), "{record:?}");
                cut += 1;
                cut_frames += frames.len();
                cut_lives.push(first_life);
            }
        }
    }
    cut_lives.dedup();
    assert_eq!(
        cut_lives.len(),
        cut,
        "two unfinished inspections in one life"
    );
    assert_eq!(completed, delivered.completed);
    assert!(cut <= KILLS);

    // Figures.
    let mut per_point: BTreeMap<&str, usize> = BTreeMap::new();
    for l in &lives {
        if let Some(p) = l.killed {
            *per_point.entry(p).or_default() += 1;
        }
    }
    let logged: usize = lives.iter().map(|l| l.committed.len()).sum();
    let republished_reconnect: u64 = lives.iter().map(|l| l.republished_reconnect).sum();
    let republished_timeout: u64 = lives.iter().map(|l| l.republished_timeout).sum();
    let duplicates = central.bridge_metrics.stored_count("duplicate");
    let upload = central.upload_figures();
    let objects = central.stored_objects();
    let named: HashSet<_> = events
        .iter()
        .filter_map(|e| match &e.event.event {
            EventBody::FrameSelected { image, .. } => Some(image.sha256.clone()),
            _ => None,
        })
        .collect();
    println!("kills: {} {per_point:?}", lives.len() - 1);
    println!(
        "events committed: {last_seq} (logged as committed: {logged}), stored: {}, bridge inserted {inserted}, duplicates seen {duplicates}",
        events.len()
    );
    println!(
        "inspections: {} started, {completed} completed, {cut} cut by a kill ({cut_frames} frames of them stored)",
        inspections.len()
    );
    println!(
        "agent re-publishes: {republished_reconnect} after a connect, {republished_timeout} after an ack timeout (in the lines logged before each kill)"
    );
    println!(
        "images: {} frames selected, {} distinct images, {objects} in the object store ({} named by nothing), PUTs answered {} created / {} existing",
        delivered.images,
        named.len(),
        objects.saturating_sub(named.len()),
        upload.created,
        upload.existing
    );
    println!(
        "time: {killing:.0?} for the kills, {:.0?} in all",
        began.elapsed()
    );
    assert_eq!(lives.len() - 1, KILLS);
    assert!(
        completed >= KILLS / 4,
        "too few inspections completed: the kills came before the cars left"
    );
    assert!(
        duplicates > 0,
        "no kill fell between central's commit and the agent's delete"
    );

    let _ = central.stop.send(true);
    let _ = broker.stop.send(true);
    let _ = rt.block_on(broker.task);
}
