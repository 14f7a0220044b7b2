//! A real `redis-server` (Debian's, installed by `.ci/test.sh`) on a free
//! loopback port in a temp folder, for the staff API's cache tests. It can
//! be stopped and restarted on the same port with its data (`save` writes a
//! snapshot the restart loads), as an outage and a recovery look like.
//!
//! No server outlives its test process: like the PostgreSQL support, it is
//! the child of a shell watchdog that polls `/proc/<test pid>`.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::mosquitto::free_port;

const NOT_INSTALLED: &str = "redis-server is not installed: run `bash .ci/test.sh`, which installs the `redis-server` package";

/// The watchdog: runs redis-server in the foreground as its child and
/// shuts it down (without saving) once the test process is gone.
/// Arguments: port, folder, test pid.
const WATCHDOG: &str = r#"
port=$1 dir=$2 parent=$3
alive() { [ -d "/proc/$parent" ] && ! grep -qE '\) [ZX] ' "/proc/$parent/stat" 2>/dev/null; }
redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --dbfilename dump.rdb \
    --save "" --appendonly no --protected-mode no --daemonize no \
    --logfile "$dir/redis.log" &
r=$!
while alive && kill -0 "$r" 2>/dev/null; do sleep 0.1; done
kill -TERM "$r" 2>/dev/null
wait "$r"
"#;

/// A running redis-server.
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    watchdog: Option<Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        assert!(
            Command::new("redis-server")
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            "{NOT_INSTALLED}"
        );
        let dir = tempfile::Builder::new()
            .prefix("redis-test-")
            .tempdir()
            .expect("temp folder")
            .keep();
        let mut server = RedisServer {
            port: 0,
            dir,
            watchdog: None,
        };
        let mut last = String::new();
        for _ in 0..5 {
            match server.run(free_port()) {
                Ok(()) => return server,
                Err(e) => last = e,
            }
        }
        panic!("redis-server did not start: {last}");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn run(&mut self, port: u16) -> Result<(), String> {
        let mut child = Command::new("sh")
            .args(["-c", WATCHDOG, "watchdog"])
            .arg(port.to_string())
            .arg(&self.dir)
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the watchdog: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.ping(port) {
                self.port = port;
                self.watchdog = Some(child);
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("redis-server exited ({status}): {}", self.log()));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "no PONG on port {port} within 20 s: {}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ping(&self, port: u16) -> bool {
        redis::Client::open(format!("redis://127.0.0.1:{port}/0"))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    }

    /// A synchronous command, for checks.
    pub fn cmd<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        let client = redis::Client::open(self.url()).expect("client");
        let mut conn = client.get_connection().expect("connection");
        cmd.query(&mut conn).expect("redis command")
    }

    /// Writes a snapshot that the next start loads.
    pub fn save(&self) {
        let _: String = self.cmd(&redis::cmd("SAVE"));
    }

    /// Stops the server (its data is whatever `save` wrote last).
    pub fn stop(&mut self) {
        let Some(mut child) = self.watchdog.take() else {
            return;
        };
        let _ = redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
            .and_then(|mut c| redis::cmd("SHUTDOWN").arg("NOSAVE").query::<()>(&mut c));
        let _ = child.wait();
    }

    /// Starts the stopped server again on the same port.
    pub fn restart(&mut self) {
        assert!(self.watchdog.is_none(), "the server is running");
        self.run(self.port)
            .unwrap_or_else(|e| panic!("restart: {e}"));
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
