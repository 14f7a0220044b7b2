//! Outbox commits per second, `synchronous = full` beside `normal` in the
//! same run (the ratio is the price of power-loss durability):
//!
//! - `append_event`: one ~600-byte event per transaction;
//! - `append_image_500k`: one 500 KiB JPEG-sized blob per transaction, with
//!   a 32 MiB budget so that after the first ~60 images every append also
//!   evicts the oldest (the steady state of a full outbox, the worst case);
//! - `open_64mib`: start-up on a 64 MiB database with `startup_check` =
//!   quick / full / off (the cost of the integrity check).
//!
//! The databases live under Cargo's target tmp dir, on the same disk as the
//! build, never on a tmpfs where fsync is free and the comparison void.
//!
//! Run: `cargo bench -p edge-agent --bench outbox`.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use edge_agent::outbox::{
    Outbox, OutboxConfig, OutboxMetrics, Priority, StartupCheck, Synchronous,
};
use inspection_core::wire::{Event, Sha256Hex, examples};
use sha2::{Digest, Sha256};
use uuid::Uuid;

fn bench_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a temp dir under target/")
}

fn event(seq: u64, msg_id: Uuid) -> Event {
    let mut e = examples::inspection()
        .pop()
        .expect("the example inspection has events");
    e.seq = seq;
    e.msg_id = msg_id;
    e
}

/// `len` pseudo-random bytes (incompressible, like a JPEG), unique per `n`.
fn blob(n: u64, len: usize) -> (Sha256Hex, Vec<u8>) {
    let mut bytes = Vec::with_capacity(len + 32);
    let mut block: [u8; 32] = Sha256::digest(n.to_le_bytes()).into();
    while bytes.len() < len {
        bytes.extend_from_slice(&block);
        block = Sha256::digest(block).into();
    }
    bytes.truncate(len);
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    (Sha256Hex::from_digest(&digest), bytes)
}

fn config(dir: &Path, synchronous: Synchronous, max_bytes: u64) -> OutboxConfig {
    OutboxConfig {
        path: dir.join("outbox.sqlite3"),
        max_bytes,
        synchronous,
        ..OutboxConfig::default()
    }
}

const MODES: [(&str, Synchronous); 2] =
    [("full", Synchronous::Full), ("normal", Synchronous::Normal)];

fn append_event(c: &mut Criterion) {
    let mut g = c.benchmark_group("append_event");
    g.throughput(Throughput::Elements(1));
    for (name, mode) in MODES {
        let dir = bench_dir();
        let (mut o, _) =
            Outbox::open(&config(dir.path(), mode, 1 << 30), OutboxMetrics::new()).expect("open");
        g.bench_function(name, |b| {
            b.iter(|| black_box(o.append_event(event).expect("append")))
        });
    }
    g.finish();
}

fn append_image(c: &mut Criterion) {
    let mut g = c.benchmark_group("append_image_500k");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(10));
    let inspection = Uuid::now_v7();
    for (name, mode) in MODES {
        let dir = bench_dir();
        let (mut o, _) =
            Outbox::open(&config(dir.path(), mode, 32 << 20), OutboxMetrics::new()).expect("open");
        let mut n = 0u64;
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    n += 1;
                    blob(n, 500 * 1024)
                },
                |(sha, jpeg)| {
                    black_box(
                        o.append_image(&sha, &jpeg, Priority::frame(1), inspection)
                            .expect("append"),
                    )
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

fn open_with_check(c: &mut Criterion) {
    let mut g = c.benchmark_group("open_64mib");
    g.sample_size(10);
    let dir = bench_dir();
    let base = config(dir.path(), Synchronous::Normal, 1 << 30);
    {
        let (mut o, _) = Outbox::open(&base, OutboxMetrics::new()).expect("open");
        for n in 0..128 {
            let (sha, jpeg) = blob(n, 512 * 1024);
            o.append_image(&sha, &jpeg, Priority::frame(1), Uuid::now_v7())
                .expect("append");
            o.append_event(event).expect("append");
        }
    }
    for (name, check) in [
        ("quick_check", StartupCheck::Quick),
        ("integrity_check", StartupCheck::Full),
        ("no_check", StartupCheck::Off),
    ] {
        let cfg = OutboxConfig {
            startup_check: check,
            ..base.clone()
        };
        g.bench_function(name, |b| {
            b.iter(|| black_box(Outbox::open(&cfg, OutboxMetrics::new()).expect("open")))
        });
    }
    g.finish();
}

criterion_group!(benches, append_event, append_image, open_with_check);
criterion_main!(benches);
