//! Helpers shared by the outbox integration tests: configs on a temp dir,
//! events and images to append, and metric values read from the text
//! exposition (so the tests also pin the metric names).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use edge_agent::outbox::{Outbox, OutboxConfig, OutboxMetrics};
use inspection_core::wire::{Event, Sha256Hex, examples};
use prometheus_client::registry::Registry;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A config for a database in `dir`, with a generous budget.
pub fn config(dir: &Path) -> OutboxConfig {
    OutboxConfig {
        path: dir.join("outbox.sqlite3"),
        max_bytes: 64 * 1024 * 1024,
        ..OutboxConfig::default()
    }
}

/// An outbox, its metrics and a registry holding them.
pub struct Opened {
    pub outbox: Outbox,
    pub report: edge_agent::outbox::OpenReport,
    pub registry: Registry,
}

pub fn open(config: &OutboxConfig) -> Opened {
    let metrics = OutboxMetrics::new();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let (outbox, report) = Outbox::open(config, metrics).unwrap();
    Opened {
        outbox,
        report,
        registry,
    }
}

/// A valid `frame_selected`-free event (the example `inspection_completed`)
/// carrying the seq and msg_id the outbox hands out.
pub fn event(seq: u64, msg_id: Uuid) -> Event {
    let mut e = examples::inspection()
        .pop()
        .expect("the example inspection has events");
    e.seq = seq;
    e.msg_id = msg_id;
    e
}

/// Pseudo-random bytes standing in for a JPEG of `len` bytes; `n` makes
/// them unique. The outbox never decodes images, only stores and hashes them.
pub fn image(n: u64, len: usize) -> (Sha256Hex, Vec<u8>) {
    let mut bytes = Vec::with_capacity(len + 32);
    let mut block: [u8; 32] = Sha256::digest(n.to_le_bytes()).into();
    while bytes.len() < len {
        bytes.extend_from_slice(&block);
        block = Sha256::digest(block).into();
    }
    bytes.truncate(len);
    (sha(&bytes), bytes)
}

pub fn sha(bytes: &[u8]) -> Sha256Hex {
    let digest: [u8; 32] = Sha256::digest(bytes).into();
    Sha256Hex::from_digest(&digest)
}

/// The value of one sample, e.g. `edge_outbox_dropped_total{kind="image",reason="refused_full"}`;
/// 0 when the series does not exist yet.
pub fn metric(registry: &Registry, series: &str) -> f64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().unwrap())
}

/// The files in `dir` whose names start with `prefix`, sorted.
pub fn files_starting(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    v.sort();
    v
}

/// `path` with `suffix` appended to its file name (`-wal`, `.seq`, ...).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
