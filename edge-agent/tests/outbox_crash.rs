//! Crash safety: a child process appends (and acks) as fast as it can and is
//! killed with SIGKILL at random points, many times. After every kill the
//! database opens without recovery, holds every entry the child reported as
//! committed, and sequence numbers keep increasing.
//!
//! The child is this test binary itself, re-executed with `OUTBOX_CHILD`
//! set (the "self-exec" pattern), so no extra binary is needed.

#[path = "outbox_support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use edge_agent::outbox::{EntryKind, Outbox, OutboxConfig, OutboxMetrics, Priority};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::{event, image};
use uuid::Uuid;

const CHILD_ENV: &str = "OUTBOX_CHILD";
const TEST_NAME: &str = "committed_entries_survive_sigkill_at_random_points";

fn child_config(dir: &Path) -> OutboxConfig {
    OutboxConfig {
        path: dir.join("outbox.sqlite3"),
        max_bytes: 1 << 30,
        ..OutboxConfig::default()
    }
}

/// The child: append forever, reporting each commit after it returned.
fn child(dir: PathBuf) -> ! {
    let (mut o, report) = Outbox::open(&child_config(&dir), OutboxMetrics::new()).unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(out, "opened {}", report.recovered.is_some()).unwrap();
    out.flush().unwrap();
    let mut rng = StdRng::from_os_rng();
    let inspection = Uuid::now_v7();
    let mut recent: Vec<Uuid> = Vec::new();
    loop {
        match rng.random_range(0..10) {
            0..=5 => {
                let a = o.append_event(event).unwrap();
                recent.push(a.msg_id);
                writeln!(out, "event {} {}", a.seq, a.msg_id).unwrap();
            }
            6..=8 => {
                let (sha, jpeg) = image(rng.random(), rng.random_range(10_000..150_000));
                o.append_image(&sha, &jpeg, Priority::frame(1), inspection)
                    .unwrap();
                writeln!(out, "image {sha}").unwrap();
            }
            _ => {
                // Announce before, confirm after: a kill in between leaves
                // the ack's outcome open, and the parent allows for both.
                if let Some(id) = recent.pop() {
                    writeln!(out, "acking {id}").unwrap();
                    out.flush().unwrap();
                    o.ack_events(&[id]).unwrap();
                    writeln!(out, "acked {id}").unwrap();
                }
            }
        }
        out.flush().unwrap();
    }
}

#[derive(Default)]
struct Reported {
    events: BTreeMap<Uuid, u64>,
    images: BTreeSet<String>,
    acking: BTreeSet<Uuid>,
    acked: BTreeSet<Uuid>,
}

#[test]
fn committed_entries_survive_sigkill_at_random_points() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(PathBuf::from(dir));
    }
    let dir = tempfile::tempdir().unwrap();
    let seed: u64 = rand::random();
    eprintln!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let exe = std::env::current_exe().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut reported = Reported::default();
    let mut max_seq_seen = 0u64;
    let mut iterations = 0;
    let mut runs_with_commits = 0;
    while iterations < 30 && Instant::now() < deadline {
        iterations += 1;
        let mut proc = Command::new(&exe)
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = proc.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        // Kill after a random number of reported commits (0: during start-up).
        let wait_for = rng.random_range(0..120);
        let mut seen = 0;
        let mut collected = Vec::new();
        while seen < wait_for {
            match lines.next() {
                Some(Ok(line)) => {
                    if line.starts_with("event ") || line.starts_with("image ") {
                        seen += 1;
                    }
                    collected.push(line);
                }
                _ => break,
            }
        }
        proc.kill().unwrap(); // SIGKILL on Unix
        let status = proc.wait().unwrap();
        assert!(!status.success(), "the child must die by the signal");
        // What the child wrote before it died is still in the pipe.
        collected.extend(lines.map_while(Result::ok));
        let mut new_seqs = Vec::new();
        for line in &collected {
            let mut parts = line.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some("event"), Some(seq), Some(id)) => {
                    let seq: u64 = seq.parse().unwrap();
                    new_seqs.push(seq);
                    reported.events.insert(id.parse().unwrap(), seq);
                }
                (Some("image"), Some(sha), None) => {
                    reported.images.insert(sha.to_owned());
                }
                (Some("acking"), Some(id), None) => {
                    reported.acking.insert(id.parse().unwrap());
                }
                (Some("acked"), Some(id), None) => {
                    reported.acked.insert(id.parse().unwrap());
                }
                (Some("opened"), Some(recovered), None) => {
                    assert_eq!(recovered, "false", "the child had to recover");
                }
                _ => {} // the test harness's own lines
            }
        }
        if new_seqs.len() > 1 {
            runs_with_commits += 1;
        }
        // Sequence numbers only go up, across kills too.
        assert!(
            new_seqs.windows(2).all(|w| w[0] < w[1]),
            "seqs within a run must increase: {new_seqs:?}"
        );
        if let Some(first) = new_seqs.first() {
            assert!(
                *first > max_seq_seen,
                "iteration {iterations}: seq {first} repeats one already used ({max_seq_seen})"
            );
        }

        // The database opens cleanly and holds every reported commit.
        let (o, report) = Outbox::open(&child_config(dir.path()), OutboxMetrics::new())
            .unwrap_or_else(|e| panic!("iteration {iterations}: open failed: {e}"));
        assert!(
            report.recovered.is_none(),
            "iteration {iterations}: the database needed recovery: {:?}",
            report.recovered
        );
        let pending = o.pending(usize::MAX).unwrap();
        let mut events = BTreeMap::new();
        let mut images = BTreeSet::new();
        let mut last = 0;
        for e in &pending {
            match &e.kind {
                EntryKind::Event { msg_id, seq, .. } => {
                    assert!(*seq > last, "seq order follows insertion order");
                    last = *seq;
                    events.insert(*msg_id, *seq);
                }
                EntryKind::Image { sha256, jpeg } => {
                    assert_eq!(&support::sha(jpeg), sha256, "image bytes intact");
                    images.insert(sha256.to_string());
                }
            }
        }
        for (id, seq) in &reported.events {
            if reported.acked.contains(id) {
                assert!(!events.contains_key(id), "acked event {seq} is back");
            } else if !reported.acking.contains(id) {
                assert_eq!(
                    events.get(id),
                    Some(seq),
                    "iteration {iterations}: committed event {seq} is lost"
                );
            }
        }
        for sha in &reported.images {
            assert!(
                images.contains(sha),
                "iteration {iterations}: committed image {sha} is lost"
            );
        }
        max_seq_seen = max_seq_seen.max(o.last_seq());
        max_seq_seen = max_seq_seen.max(events.values().copied().max().unwrap_or(0));
        drop(o);
    }
    eprintln!(
        "{iterations} kills, {runs_with_commits} after commits; {} events and {} images reported",
        reported.events.len(),
        reported.images.len()
    );
    assert!(
        iterations >= 10,
        "only {iterations} iterations in the time allowed"
    );
    assert!(
        reported.events.len() > 100,
        "too few commits to mean anything"
    );
}
