//! Debian's `mosquitto` as a real second broker for the transport tests:
//! started on a free loopback port with a generated config, killed on drop.
//! `.ci/test.sh` installs it; a test that needs it fails loudly without it.

#![allow(dead_code)]

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// TLS for a mosquitto listener: server cert, and the CA that client
/// certificates must chain to (`require_certificate true`,
/// `use_identity_as_username true`: the certificate CN `site/device` becomes
/// the user name, which the ACL patterns use).
#[derive(Debug, Clone)]
pub struct MosquittoTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How to start one broker.
#[derive(Debug, Clone, Default)]
pub struct MosquittoOptions {
    /// A TLS listener with client certificates (besides the plain one).
    pub tls: Option<MosquittoTls>,
    /// Extra lines for mosquitto.conf (e.g. `acl_file`, `password_file`).
    pub extra_config: Vec<String>,
}

/// A running mosquitto; killed and reaped on drop.
pub struct Mosquitto {
    child: Child,
    /// The plain listener (anonymous, loopback only): for the bridge.
    pub plain: SocketAddr,
    /// The TLS listener, when asked for.
    pub tls: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn wait_for(addr: SocketAddr, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "mosquitto exited with {status}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("mosquitto did not listen on {addr} within 10 s");
}

impl Mosquitto {
    /// The ACL a production mosquitto uses for the fleet: each device may
    /// publish only under its own topics and read only its ack and cmd
    /// topics; the `bridge` user (the central bridge) reads every device
    /// topic and writes acks and commands.
    pub fn fleet_acl(prefix: &str) -> String {
        format!(
            "user bridge\n\
             topic read {prefix}/v1/+/+/status\n\
             topic read {prefix}/v1/+/+/events\n\
             topic read {prefix}/v1/+/+/telemetry\n\
             topic write {prefix}/v1/+/+/ack\n\
             topic write {prefix}/v1/+/+/cmd\n\
             \n\
             pattern write {prefix}/v1/%u/status\n\
             pattern write {prefix}/v1/%u/events\n\
             pattern write {prefix}/v1/%u/telemetry\n\
             pattern read {prefix}/v1/%u/ack\n\
             pattern read {prefix}/v1/%u/cmd\n"
        )
    }

    pub fn start(options: MosquittoOptions) -> Mosquitto {
        Self::start_on(options, free_port(), None)
    }

    /// Starts on the given ports (to restart a broker where clients expect it).
    pub fn start_on(
        options: MosquittoOptions,
        plain_port: u16,
        tls_port: Option<u16>,
    ) -> Mosquitto {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("mosquitto.log");
        let mut conf = vec![
            // Started as root, mosquitto would switch to user `mosquitto`,
            // which cannot read the test's private temp folder.
            format!(
                "user {}",
                if running_as_root() {
                    "root"
                } else {
                    "mosquitto"
                }
            ),
            "per_listener_settings false".to_owned(),
            "allow_anonymous true".to_owned(),
            "persistence false".to_owned(),
            format!("log_dest file {}", log.display()),
            "log_type error".to_owned(),
            "log_type warning".to_owned(),
            "log_type notice".to_owned(),
            "log_type debug".to_owned(),
            "max_inflight_messages 100".to_owned(),
            format!("listener {plain_port} 127.0.0.1"),
        ];
        let mut tls_addr = None;
        if let Some(tls) = &options.tls {
            let port = tls_port.unwrap_or_else(free_port);
            conf.push(format!("listener {port} 127.0.0.1"));
            conf.push(format!("cafile {}", tls.ca.display()));
            conf.push(format!("certfile {}", tls.cert.display()));
            conf.push(format!("keyfile {}", tls.key.display()));
            conf.push("require_certificate true".to_owned());
            conf.push("use_identity_as_username true".to_owned());
            tls_addr = Some(SocketAddr::from(([127, 0, 0, 1], port)));
        }
        conf.extend(options.extra_config.iter().cloned());
        let conf_path = dir.path().join("mosquitto.conf");
        let mut f = std::fs::File::create(&conf_path).expect("write mosquitto.conf");
        writeln!(f, "{}", conf.join("\n")).expect("write mosquitto.conf");
        let mut child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto is not installed: run .ci/test.sh (it installs Debian's mosquitto)");
        let plain = SocketAddr::from(([127, 0, 0, 1], plain_port));
        wait_for(plain, &mut child, &log);
        if let Some(addr) = tls_addr {
            wait_for(addr, &mut child, &log);
        }
        Mosquitto {
            child,
            plain,
            tls: tls_addr,
            dir,
        }
    }

    /// The broker's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// Kills the broker now (an outage); `start_on` the same ports brings it back.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}
