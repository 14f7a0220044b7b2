//! One line per measured figure for `scripts/benchmarks.sh`, which gathers
//! them into the generated table of `BENCHMARKS.md`.
//!
//! A bench includes this file (`#[path = ".../shared/benches/support/record.rs"]
//! mod record;`) and calls [`compared`] for a figure measured beside its
//! peer in the same run, or [`alone`] for one without a peer. Each call
//! appends one JSON object to the file named by `BENCH_JSON`; without that
//! variable it does nothing (a bench run by hand prints its own table).

#![allow(dead_code)]

use std::io::Write as _;

/// A measured value: who was measured (e.g. `tract`), the value and its
/// unit (`ms`, `events/s`, `s`).
pub struct Figure<'a> {
    pub name: &'a str,
    pub value: f64,
    pub unit: &'a str,
}

impl<'a> Figure<'a> {
    pub fn new(name: &'a str, value: f64, unit: &'a str) -> Self {
        Figure { name, value, unit }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({ "name": self.name, "value": self.value, "unit": self.unit })
    }
}

/// `ours` beside `peer`, measured in the same run; the ratio is
/// `ours / peer` (in `ours`' unit: for a time, above 1 is slower).
pub fn compared(command: &str, what: &str, ours: Figure<'_>, peer: Figure<'_>) {
    let ratio = ours.value / peer.value;
    append(serde_json::json!({
        "command": command,
        "what": what,
        "ours": ours.json(),
        "peer": peer.json(),
        "ratio": ratio,
    }));
}

/// A figure with no peer (e.g. the end-to-end latency).
pub fn alone(command: &str, what: &str, ours: Figure<'_>) {
    append(serde_json::json!({
        "command": command,
        "what": what,
        "ours": ours.json(),
    }));
}

fn append(line: serde_json::Value) {
    let Some(path) = std::env::var_os("BENCH_JSON") else {
        return;
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("BENCH_JSON {}: {e}", std::path::Path::new(&path).display()));
    writeln!(file, "{line}").unwrap_or_else(|e| panic!("BENCH_JSON: {e}"));
}
