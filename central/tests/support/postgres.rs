//! A real PostgreSQL for the store tests: `initdb` into a temp folder and a
//! `postgres` on a free loopback port, one per test process
//! ([`PgServer::shared`]), a fresh database per test ([`PgServer::database`]).
//! Tests that stop the server start their own ([`PgServer::start`]).
//!
//! `.ci/test.sh` installs Debian's `postgresql`; without it the tests fail
//! with a message saying so (no silent skip). PostgreSQL refuses to run as
//! root, so as root (CI) `initdb` and `postgres` run as the `postgres`
//! system user (`runuser`), in a temp folder handed to that user.
//!
//! No server outlives its test process: `postgres` is the child of a small
//! shell watchdog that polls `/proc/<test pid>` and shuts the server down
//! (immediate shutdown, then removes the folder) once the test process is gone,
//! however it ended (a static is never dropped, and a panic or a kill -9
//! runs no destructor). An owned server is also stopped when dropped.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

/// The superuser `initdb` creates (trust authentication on loopback).
pub const USER: &str = "test";

const NOT_INSTALLED: &str = "PostgreSQL is not installed (no initdb/postgres found via `pg_config --bindir` \
     or /usr/lib/postgresql/*/bin): run `bash .ci/test.sh`, which installs the `postgresql` package";

/// Creates the cluster when absent, runs `postgres` as its child and stops
/// it when the test process is gone (a zombie counts as gone). Arguments:
/// bindir, data dir, socket dir, port, test pid, log file, the folder to
/// remove once the test process is gone, superuser, and `fast` (tests: no
/// fsync, the data is thrown away) or `durable` (PostgreSQL's defaults, as
/// in production: benchmarks).
const WATCHDOG: &str = r#"
bindir=$1 data=$2 sockets=$3 port=$4 parent=$5 log=$6 remove=$7 user=$8 mode=$9
alive() { [ -d "/proc/$parent" ] && ! grep -qE '\) [ZX] ' "/proc/$parent/stat" 2>/dev/null; }
cleanup() { if [ -n "$remove" ] && ! alive; then rm -rf "$remove"; fi; }
if [ ! -f "$data/PG_VERSION" ]; then
    "$bindir/initdb" -D "$data" -A trust -U "$user" -E UTF8 --locale=C --no-sync \
        >>"$log" 2>&1 || { echo "initdb failed" >>"$log"; cleanup; exit 1; }
fi
alive || { cleanup; exit 0; }
fast=""
if [ "$mode" = fast ]; then
    fast="-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=32MB"
fi
# $fast unquoted: several arguments, or none.
"$bindir/postgres" -D "$data" -k "$sockets" -p "$port" \
    -c listen_addresses=127.0.0.1 -c max_connections=300 $fast \
    >>"$log" 2>&1 &
pg=$!
while alive && kill -0 "$pg" 2>/dev/null; do sleep 0.1; done
# Immediate shutdown: the data is thrown away, no checkpoint to wait for.
kill -QUIT "$pg" 2>/dev/null
wait "$pg"
cleanup
"#;

/// A running PostgreSQL.
pub struct PgServer {
    pub port: u16,
    bindir: PathBuf,
    /// Owned by the server's user; holds `data/`, the socket and the log.
    root: PathBuf,
    watchdog: Option<Child>,
    /// PostgreSQL's own durability settings rather than the tests' fast ones.
    durable: bool,
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// The folder with `initdb` and `postgres`.
fn bindir() -> PathBuf {
    let has_binaries = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_binaries(&dir) {
            return dir;
        }
    }
    // Debian's pg_config may come from libpq-dev and point elsewhere: take
    // the newest installed server.
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let dir = entry.path().join("bin");
            has_binaries(&dir).then_some((version, dir))
        })
        .collect();
    candidates.sort();
    match candidates.pop() {
        Some((_, dir)) => dir,
        None => panic!("{NOT_INSTALLED}"),
    }
}

/// `program args...` as the server's user.
fn as_server_user(program: &Path) -> Command {
    if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl PgServer {
    /// The server of this test process, started on first use.
    pub fn shared() -> &'static PgServer {
        static SHARED: OnceLock<PgServer> = OnceLock::new();
        SHARED.get_or_init(PgServer::init)
    }

    /// A server of its own (to stop and restart); stopped on drop.
    pub fn start() -> PgServer {
        PgServer::init()
    }

    /// A server of its own with PostgreSQL's default durability (`fsync`,
    /// `synchronous_commit`, `full_page_writes` on), as a production server
    /// runs: for benchmarks against SQLite at `synchronous = FULL`.
    pub fn start_durable() -> PgServer {
        PgServer::init_with(true)
    }

    fn init() -> PgServer {
        PgServer::init_with(false)
    }

    fn init_with(durable: bool) -> PgServer {
        let bindir = bindir();
        // In /tmp rather than $TMPDIR: the server's user must reach the folder
        // (a TMPDIR under /root would be closed to it) and the socket path
        // must stay under the 107 bytes a Unix socket name may have.
        let base = Path::new("/tmp");
        let base = if base.is_dir() {
            base.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let root = tempfile::Builder::new()
            .prefix("pg-test-")
            .tempdir_in(base)
            .expect("temp folder")
            .keep();
        if running_as_root() {
            let user = Command::new("id")
                .args(["-u", "postgres"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_else(|| {
                    panic!("running as root, but there is no `postgres` user to run PostgreSQL as: {NOT_INSTALLED}")
                });
            let uid: u32 = user.parse().expect("numeric uid");
            std::os::unix::fs::chown(&root, Some(uid), None).expect("chown the temp folder");
        }
        let mut server = PgServer {
            port: 0,
            bindir,
            root,
            watchdog: None,
            durable,
        };
        // A port free a moment ago may be taken by the time postgres binds it.
        let mut last = String::new();
        for _ in 0..5 {
            match server.run(free_port()) {
                Ok(()) => return server,
                Err(e) => last = e,
            }
        }
        panic!("PostgreSQL did not start: {last}");
    }

    /// Starts `postgres` on `port` and waits until it accepts connections.
    fn run(&mut self, port: u16) -> Result<(), String> {
        let log = self.root.join("postgres.log");
        let mut child = as_server_user(Path::new("sh"))
            .args(["-c", WATCHDOG, "watchdog"])
            .arg(&self.bindir)
            .arg(self.root.join("data"))
            .arg(&self.root)
            .arg(port.to_string())
            .arg(std::process::id().to_string())
            .arg(&log)
            .arg(&self.root)
            .arg(USER)
            .arg(if self.durable { "durable" } else { "fast" })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the watchdog: {e}"))?;
        // initdb (first run only) and start-up.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = Command::new(self.bindir.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-U", USER, "-p"])
                .arg(port.to_string())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                self.port = port;
                self.watchdog = Some(child);
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "postgres exited ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "postgres did not accept connections on port {port} within 60 s: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The URL of `database` on this server.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{database}", self.port)
    }

    /// A new, empty database; its URL.
    pub async fn database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let name = format!("t_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let mut admin = PgConnection::connect(&self.url("postgres"))
            .await
            .unwrap_or_else(|e| panic!("connect to the test server: {e}"));
        admin
            .execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        admin.close().await.ok();
        self.url(&name)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("postgres.log")).unwrap_or_default()
    }

    /// Stops the server (fast shutdown: sessions are disconnected) and waits
    /// until it is gone; the data stays for [`PgServer::restart`].
    pub fn stop(&mut self) {
        let Some(mut child) = self.watchdog.take() else {
            return;
        };
        // The postmaster's pid is the first line of postmaster.pid; the
        // watchdog exits when it does.
        let pid = std::fs::read_to_string(self.root.join("data/postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next().map(str::to_owned));
        match pid {
            Some(pid) => {
                let _ = Command::new("kill").args(["-INT", &pid]).status();
            }
            None => {
                let _ = child.kill();
            }
        }
        let _ = child.wait();
    }

    /// Starts the stopped server again on the same port, with its data.
    pub fn restart(&mut self) {
        assert!(self.watchdog.is_none(), "the server is running");
        self.run(self.port)
            .unwrap_or_else(|e| panic!("restart: {e}"));
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
