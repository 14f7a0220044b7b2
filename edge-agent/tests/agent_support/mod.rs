//! The `edge-agent` binary as a child process, as systemd runs it: started
//! with `run --config`, its JSON log lines (stderr) collected on a channel,
//! signalled and killed. Shared by the process tests.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use edge_agent::outbox::{EntryKind, Outbox, OutboxConfig, OutboxMetrics};
use inspection_core::wire;

/// A running agent whose JSON log lines arrive on a channel.
pub struct Agent {
    pub child: Child,
    pub lines: mpsc::Receiver<serde_json::Value>,
    pub seen: Vec<serde_json::Value>,
}

impl Agent {
    pub fn start(config_path: &Path) -> Agent {
        Agent::start_with_env(config_path, &[])
    }

    /// Starts the binary with extra environment variables (e.g. `RUST_LOG`).
    pub fn start_with_env(config_path: &Path, env: &[(&str, &str)]) -> Agent {
        let mut child = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
            .args(["run", "--config"])
            .arg(config_path)
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        Agent {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a log line matching `pred` (deadline, not a sleep).
    pub fn wait_for(
        &mut self,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no log line for {what}; saw: {:#?}", self.seen);
    }

    /// Takes the lines logged so far, without waiting.
    pub fn poll(&mut self) {
        while let Ok(v) = self.lines.try_recv() {
            self.seen.push(v);
        }
    }

    /// Takes the remaining lines of a process that has exited (the reader
    /// thread ends at EOF, which closes the channel).
    pub fn drain(&mut self) {
        while let Ok(v) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.seen.push(v);
        }
    }

    /// The seqs the agent logged as committed.
    pub fn committed_seqs(&self) -> BTreeSet<u64> {
        self.committed().into_keys().collect()
    }

    /// seq -> msg_id of every event the agent logged as committed.
    pub fn committed(&self) -> BTreeMap<u64, String> {
        self.seen
            .iter()
            .filter(|v| v["message"] == "event committed")
            .filter_map(|v| Some((v["seq"].as_u64()?, v["msg_id"].as_str()?.to_owned())))
            .collect()
    }

    /// The log lines with this message.
    pub fn logged<'a>(&'a self, message: &'a str) -> impl Iterator<Item = &'a serde_json::Value> {
        self.seen.iter().filter(move |v| v["message"] == message)
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    /// SIGKILL, then reaps the process and takes its last lines.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.drain();
    }

    /// SIGTERM, then waits (deadline) for a successful exit.
    pub fn terminate(&mut self, timeout: Duration) {
        self.signal("-TERM");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "{status:?}");
        self.drain();
    }
}

/// A test that fails leaves no agent running behind it.
impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One HTTP/1.1 GET: the status and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    (
        status,
        response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned(),
    )
}

/// Polls `/metrics` until `line` appears.
pub fn wait_metric(addr: SocketAddr, line: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, body) = http_get(addr, "/metrics");
        if body.lines().any(|l| l == line) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "metric {line:?} never appeared:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of one series (`name{labels}`) in a `/metrics` body; 0 when
/// it is not there yet.
pub fn metric_value(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// Opens the outbox at `path` as the agent would (it must open without
/// recovery) and returns its pending events and their seqs.
pub fn open_outbox(path: &Path) -> (Vec<wire::Event>, BTreeSet<u64>) {
    let (outbox, report) = Outbox::open(
        &OutboxConfig {
            path: path.to_path_buf(),
            ..OutboxConfig::default()
        },
        OutboxMetrics::default(),
    )
    .expect("the outbox always opens");
    assert!(report.recovered.is_none(), "needed recovery: {report:?}");
    let mut events = Vec::new();
    for entry in outbox.pending(10_000).unwrap() {
        if let EntryKind::Event { payload, .. } = entry.kind {
            events.push(wire::decode::<wire::Event>(&payload).unwrap());
        }
    }
    let seqs = events.iter().map(|e| e.seq).collect();
    (events, seqs)
}
