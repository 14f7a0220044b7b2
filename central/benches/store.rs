//! The store on SQLite against the store on PostgreSQL, the same `Store`
//! calls in the same run, both durable: SQLite in WAL mode with
//! `synchronous = FULL` (central's setting), PostgreSQL with its defaults
//! (`fsync`, `synchronous_commit` on; a server of its own started by the
//! tests' `support::postgres`, so Debian's `postgresql` must be installed,
//! as `bash .ci/test.sh` does).
//!
//! ```text
//! cargo bench --profile dev -p central --bench store
//! STORE_INSPECTIONS=500 STORE_TASKS=16 cargo bench --profile dev -p central --bench store
//! ```
//!
//! Scenarios, each on a fresh database:
//!
//! - **bridge**: `record_events` of one whole inspection (its events in one
//!   transaction, which queues its job), one call at a time; then
//!   `STORE_TASKS` (default 8) callers at once, as several bridge replicas
//!   would: calls per second.
//! - **worker**: `claim_job` then `complete_job` for each queued job.
//! - **read**: `inspection(id)`, the staff API's and the demo's lookup.
//!
//! Prints p50/p90 per call and the SQLite / PostgreSQL ratio; with
//! `BENCH_JSON` set, one line per scenario for `scripts/benchmarks.sh`.

#[path = "../tests/support/events.rs"]
mod events;
#[path = "../tests/support/postgres.rs"]
mod postgres;
#[path = "../../shared/benches/support/record.rs"]
mod record;

use std::sync::Arc;
use std::time::{Duration, Instant};

use central::store::{Store, StoreConfig, open_store};
use chrono::Utc;
use events::inspection;
use inspection_core::wire::examples;

const COMMAND: &str = "cargo bench --profile dev -p central --bench store";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Milliseconds at quantile `q` (nearest rank).
fn quantile(times: &mut [Duration], q: f64) -> f64 {
    times.sort();
    let rank = ((q * times.len() as f64).ceil() as usize).clamp(1, times.len());
    times[rank - 1].as_secs_f64() * 1000.0
}

struct Figures {
    /// p50/p90 ms per call, one caller.
    record: (f64, f64),
    /// Calls per second with `tasks` callers.
    concurrent_per_s: f64,
    claim_complete: (f64, f64),
    read: (f64, f64),
}

async fn run(store: Arc<dyn Store>, inspections: usize, tasks: usize) -> Figures {
    let per = examples::inspection().len() as u64;
    let mut ids = Vec::with_capacity(inspections);
    let mut times = Vec::with_capacity(inspections);
    for n in 0..inspections {
        let events = inspection(1 + n as u64 * per);
        let started = Instant::now();
        store
            .record_events(&events, Utc::now())
            .await
            .expect("record_events");
        times.push(started.elapsed());
        ids.push(events[0].inspection_id.expect("an inspection id"));
    }
    let record = (quantile(&mut times, 0.5), quantile(&mut times, 0.9));

    // Several callers at once, each with its own range of seqs.
    let started = Instant::now();
    let callers: Vec<_> = (0..tasks)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0..inspections {
                    let first = 1 + ((1 + t) * inspections + n) as u64 * per;
                    store
                        .record_events(&inspection(first), Utc::now())
                        .await
                        .expect("record_events");
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.expect("a caller");
    }
    let concurrent_per_s = (tasks * inspections) as f64 / started.elapsed().as_secs_f64();

    let mut times = Vec::with_capacity(inspections);
    for _ in 0..inspections {
        let started = Instant::now();
        let job = store
            .claim_job("bench", Duration::from_secs(60), Utc::now())
            .await
            .expect("claim_job")
            .expect("a queued job");
        assert!(
            store
                .complete_job(job.id, "bench", Utc::now())
                .await
                .expect("complete_job"),
            "the job is this worker's"
        );
        times.push(started.elapsed());
    }
    let claim_complete = (quantile(&mut times, 0.5), quantile(&mut times, 0.9));

    let mut times = Vec::with_capacity(inspections);
    for id in &ids {
        let started = Instant::now();
        let found = store.inspection(*id).await.expect("inspection");
        times.push(started.elapsed());
        assert!(found.is_some(), "inspection {id} was stored");
    }
    let read = (quantile(&mut times, 0.5), quantile(&mut times, 0.9));
    Figures {
        record,
        concurrent_per_s,
        claim_complete,
        read,
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test");
    let inspections = env("STORE_INSPECTIONS", if quick { 5 } else { 200 }).max(1);
    let tasks = env("STORE_TASKS", 8).max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let dir = tempfile::tempdir().expect("a temporary folder");
    let server = postgres::PgServer::start_durable();
    let (sqlite, pg) = runtime.block_on(async {
        let sqlite = open_store(&StoreConfig::sqlite(&dir.path().join("central.sqlite3")))
            .await
            .expect("the SQLite store opens");
        let url = server.database().await;
        let pg = open_store(&StoreConfig {
            url,
            ..StoreConfig::default()
        })
        .await
        .expect("the PostgreSQL store opens");
        (
            run(sqlite, inspections, tasks).await,
            run(pg, inspections, tasks).await,
        )
    });
    drop(server);

    let events = examples::inspection().len();
    println!(
        "\nstore: {inspections} inspections of {events} events per scenario, {tasks} concurrent callers; both durable ({} cores)\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| call | SQLite p50 / p90 | PostgreSQL p50 / p90 | SQLite / PostgreSQL (p50) |");
    println!("|---|---|---|---|");
    let rows = [
        (
            format!("record_events, one inspection ({events} events, its job queued)"),
            sqlite.record,
            pg.record,
        ),
        (
            "claim_job + complete_job".to_owned(),
            sqlite.claim_complete,
            pg.claim_complete,
        ),
        ("inspection(id)".to_owned(), sqlite.read, pg.read),
    ];
    for (what, s, p) in &rows {
        println!(
            "| {what} | {:.2} / {:.2} ms | {:.2} / {:.2} ms | {:.2}x |",
            s.0,
            s.1,
            p.0,
            p.1,
            s.0 / p.0
        );
        if !quick {
            record::compared(
                COMMAND,
                &format!("store: {what}, one caller, p50"),
                record::Figure::new("SQLite (WAL, synchronous=FULL)", s.0, "ms"),
                record::Figure::new("PostgreSQL (fsync on)", p.0, "ms"),
            );
        }
    }
    println!(
        "| record_events, {tasks} callers at once | {:.0} inspections/s | {:.0} inspections/s | {:.2}x |",
        sqlite.concurrent_per_s,
        pg.concurrent_per_s,
        sqlite.concurrent_per_s / pg.concurrent_per_s
    );
    if !quick {
        record::compared(
            COMMAND,
            &format!("store: record_events, {tasks} callers at once ({events} events per call)"),
            record::Figure::new(
                "SQLite (WAL, synchronous=FULL)",
                sqlite.concurrent_per_s,
                "inspections/s",
            ),
            record::Figure::new(
                "PostgreSQL (fsync on)",
                pg.concurrent_per_s,
                "inspections/s",
            ),
        );
    }
}
