//! The `edge-agent` binary as a child process, as systemd runs it: started
//! with `run --config`, its JSON log lines (stderr) collected on a channel,
//! signalled and killed. Shared by the process tests.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

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
