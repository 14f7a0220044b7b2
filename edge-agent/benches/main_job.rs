//! The main job end to end, measured: the time from a vehicle's last frame
//! on the board to its report stored in central, over many inspections,
//! split into the board ending the inspection (the absence time after the
//! last frame), the transport (to central having every frame and queuing
//! the job) and the worker (job queued to report and result stored). The
//! times are read back from the demo's store afterwards: the inspection's
//! `completed_at` (the board's clock, the same machine) and its job's
//! `enqueued_at` and `finished_at`.
//!
//! The demo's flow (`central::demo::run`: central's roles in this process,
//! the `edge-agent` binary as a child process, TLS MQTT and HTTPS on
//! loopback), with a bay of `MAIN_JOB_VEHICLES` vehicles per pass (default
//! 10: 10 pickups, then 10 returns compared with them) on one camera. The
//! worker writes reports with the template unless `MAIN_JOB_EMBEDDED=1`
//! (the embedded model drafts on the same two cores the pre-screen uses; in
//! the cluster the report model is a service of its own).
//!
//! `cargo bench --profile dev -p edge-agent --bench main_job`
//!
//! Prints p50/p90/max per kind and overall, and, with `BENCH_JSON=FILE`,
//! appends the overall p50 and p90 for `scripts/benchmarks.sh`. Not a timed test: nothing here asserts
//! a duration.

#[path = "../../shared/tests/common/mod.rs"]
mod common;
#[path = "../../shared/benches/support/record.rs"]
mod record;

use std::path::PathBuf;
use std::time::Duration;

use central::demo::{BayShape, DemoSettings, Pace};
use central::store::{StoreConfig, open_store};
use inspection_core::wire::InspectionKind;
use tokio::sync::watch;

const COMMAND: &str = "cargo bench --profile dev -p edge-agent --bench main_job";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects nothing here.
    let vehicles = env_usize("MAIN_JOB_VEHICLES", 10).max(1);
    let embedded = std::env::var("MAIN_JOB_EMBEDDED").is_ok_and(|v| v == "1");
    central::tls::install_crypto_provider();

    let models = common::fetched("photos/pexels_double_decker_bus.jpg")
        .parent()
        .and_then(|p| p.parent())
        .expect("the model cache")
        .to_path_buf();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let mut settings = DemoSettings::new(
        dir.path().join("main-job"),
        PathBuf::from(env!("CARGO_BIN_EXE_edge-agent")),
        models,
    );
    // One camera, a short stay per vehicle, and an absence time the empty
    // frames after each vehicle outlast (the replay runs at most at
    // `fps`, slower when the pre-screen is slower).
    settings.shape = BayShape {
        cameras: 1,
        vehicles,
        empty_before: 1,
        vehicle_frames: 4,
        empty_after: 8,
    };
    settings.pace = Pace {
        fps: 2.0,
        absence_seconds: 2.5,
    };
    settings.embedded_writer = embedded;
    settings.pass_timeout = Duration::from_secs(60 + 60 * vehicles as u64);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a runtime");
    let (_stop, stop_rx) = watch::channel(false);
    let outcome = runtime
        .block_on(central::demo::run(
            &settings,
            &|line: &str| eprintln!("main_job: {line}"),
            stop_rx,
        ))
        .unwrap_or_else(|e| panic!("the run failed: {e}"));

    let writer = if embedded {
        "embedded model, template fallback"
    } else {
        "template"
    };
    let absence = f64::from(settings.pace.absence_seconds);
    let steps = runtime.block_on(steps(&outcome));
    println!(
        "\nmain job, {} inspections ({vehicles} pickups, {vehicles} returns), 1 camera, reports: {writer}",
        outcome.inspections.len()
    );
    println!(
        "complete: the board ends the inspection ({absence} s after the vehicle's last frame); \
         queued: central has every announced frame and queues its job; done: the worker stored report and result"
    );
    println!(
        "| inspections | n | complete -> queued, p50 | queued -> done, p50 | complete -> done, p50 / p90 / max | last frame -> done, p50 / p90 |"
    );
    println!("|---|---|---|---|---|---|");
    for (label, kind) in [
        ("pickups", Some(InspectionKind::Pickup)),
        ("returns", Some(InspectionKind::Return)),
        ("all", None),
    ] {
        let chosen: Vec<&Steps> = steps
            .iter()
            .filter(|s| kind.is_none_or(|k| s.kind == k))
            .collect();
        let sorted = |f: fn(&Steps) -> f64| {
            let mut v: Vec<f64> = chosen.iter().map(|s| f(s)).collect();
            v.sort_by(f64::total_cmp);
            v
        };
        let to_queue = sorted(|s| s.to_queued);
        let worker = sorted(|s| s.queued_to_done);
        let total = sorted(|s| s.to_queued + s.queued_to_done);
        let (p50, p90) = (percentile(&total, 50.0), percentile(&total, 90.0));
        let max = total.last().copied().unwrap_or(f64::NAN);
        println!(
            "| {label} | {} | {:.2} s | {:.2} s | {p50:.2} / {p90:.2} / {max:.2} s | {:.2} / {:.2} s |",
            total.len(),
            percentile(&to_queue, 50.0),
            percentile(&worker, 50.0),
            p50 + absence,
            p90 + absence,
        );
        if kind.is_none() {
            let n = total.len();
            for (q, complete) in [("p50", p50), ("p90", p90)] {
                record::alone(
                    COMMAND,
                    &format!(
                        "end to end: a vehicle's last frame on the board -> its report stored in central, {q} of {n} inspections ({vehicles} pickups, {vehicles} returns; includes the {absence} s absence that ends an inspection; reports: {writer})"
                    ),
                    record::Figure::new("edge agent + central", complete + absence, "s"),
                );
            }
        }
    }
}

/// One inspection's way through the system, in seconds.
struct Steps {
    kind: InspectionKind,
    /// Completed on the board (its `inspection_completed` time) to its job
    /// queued in central (every announced frame stored).
    to_queued: f64,
    /// Job queued to job done (report and result stored).
    queued_to_done: f64,
}

/// Reads the times back from the demo's store: the board's completion time
/// and the processing job's queue and finish times.
async fn steps(outcome: &central::demo::DemoOutcome) -> Vec<Steps> {
    let store = open_store(&StoreConfig::sqlite(&outcome.database))
        .await
        .expect("the demo's store opens");
    let mut steps = Vec::new();
    for pass in &outcome.inspections {
        let id = pass.inspection;
        let record = store
            .inspection(id)
            .await
            .expect("the store answers")
            .expect("the inspection is stored");
        let completed = record.completed_at.expect("the inspection completed");
        let jobs = store.inspection_jobs(id).await.expect("the store answers");
        let job = jobs.first().expect("a processing job");
        let finished = job.finished_at.expect("the job finished");
        let secs = |d: chrono::TimeDelta| d.num_microseconds().unwrap_or(0) as f64 / 1e6;
        steps.push(Steps {
            kind: pass.kind,
            to_queued: secs(job.enqueued_at - completed),
            queued_to_done: secs(finished - job.enqueued_at),
        });
    }
    steps
}
