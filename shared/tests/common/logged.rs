//! A binary under test run as a process, its stdout and stderr collected
//! line by line as they come, and the checks the secrets-in-logs tests make
//! on that output. Included by path, like `mod.rs`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running process and everything it has written so far.
pub struct Logged {
    child: Child,
    output: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    /// Says which process a failure is about ("central", "the agent").
    what: String,
}

impl Logged {
    /// Spawns `command` with both pipes captured.
    pub fn spawn(command: &mut Command, what: &str) -> Logged {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {what}: {e}"));
        let output = Arc::new(Mutex::new(String::new()));
        let stdout: Box<dyn Read + Send> = Box::new(child.stdout.take().unwrap());
        let stderr: Box<dyn Read + Send> = Box::new(child.stderr.take().unwrap());
        let readers = [stdout, stderr]
            .into_iter()
            .map(|pipe| {
                let output = output.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                        let mut o = output.lock().unwrap();
                        o.push_str(&line);
                        o.push('\n');
                    }
                })
            })
            .collect();
        Logged {
            child,
            output,
            readers,
            what: what.to_owned(),
        }
    }

    /// The output so far.
    pub fn text(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits for `needle` in the output (a deadline, not a sleep); fails
    /// with the output when the process exits without writing it.
    pub fn wait_for(&mut self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.text().contains(needle) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let text = self.finish();
                assert!(
                    text.contains(needle),
                    "{} exited ({status}) before logging {needle:?}:\n{text}",
                    self.what
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "no {needle:?} in the output of {}:\n{}",
            self.what,
            self.text()
        );
    }

    /// SIGTERM (SIGKILL after 30 s), then the whole output once the
    /// process is gone.
    pub fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && self.child.try_wait().ok().flatten().is_none() {
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.finish()
    }

    /// The exit status and the whole output of a process that ends on its
    /// own within `within`.
    pub fn wait_exit(mut self, within: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return (status, self.finish());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("{} did not exit:\n{}", self.what, self.text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The whole output, once the pipes are closed.
    fn finish(&mut self) -> String {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        self.text()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Fails naming the secret and the line it is on. `secrets` are (name,
/// value) pairs.
pub fn assert_no_secret<N: AsRef<str>, V: AsRef<str>>(
    what: &str,
    output: &str,
    secrets: &[(N, V)],
) {
    for (name, value) in secrets {
        let (name, value) = (name.as_ref(), value.as_ref());
        assert!(!value.is_empty(), "{name} is empty");
        if let Some(at) = output.find(value) {
            let start = output[..at].rfind('\n').map_or(0, |i| i + 1);
            let end = output[at..].find('\n').map_or(output.len(), |i| at + i);
            panic!(
                "{what}: the {name} is in the output, on this line:\n{}",
                &output[start..end]
            );
        }
    }
}

/// stdout then stderr of a finished command, as text.
pub fn combined(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
