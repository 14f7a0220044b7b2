//! The `broker` role: embedded rumqttd behind a TLS gateway that
//! authenticates devices and enforces per-device topic ACLs.
//!
//! DESIGN
//! - rumqttd 0.20 authenticates by user name and password at most (an
//!   external auth hook) and has no topic ACLs, no persistence and no
//!   clustering. So it listens only on a loopback port (`internal_listen`,
//!   plain, no authentication) for the in-process bridge and the gateway,
//!   and devices never reach it directly.
//! - The gateway (`gateway.rs`) terminates device connections on
//!   `tls_listen` (rustls, client certificates verified against
//!   `tls.client_ca`) and optionally `plain_listen` (user name and token
//!   only, for loopback and development), authenticates the CONNECT
//!   (certificate CN `site/device`, or user and token from the credentials
//!   file, or both, which must then agree), and checks every PUBLISH,
//!   SUBSCRIBE and last will against `acl.rs` before forwarding it.
//! - What the gateway enforces: each device publishes only under its own
//!   `{prefix}/v1/{site}/{device}/{status,events,telemetry}`, subscribes
//!   only to its own `ack` and `cmd`, and its will is its own `status`;
//!   services (the bridge) read device topics and write `ack`/`cmd`.
//!   What it cannot know: whether a payload on a device's own topic is
//!   honest about its content; the bridge checks that the payload's site and
//!   device match the topic's (and counts mismatches).
//! - Anything on the loopback host can use the internal port with every
//!   right; it must stay on loopback ([`BrokerConfig::problems`] refuses
//!   anything else). A bridge in another process or pod connects through
//!   the gateway as a service with a token.
//! - rumqttd keeps, per topic that carried traffic, an in-memory log of up
//!   to `segment_bytes` x `segment_count` bytes; memory grows with the
//!   number of active topics (5,000 devices x 4 topics x 128 KiB by default
//!   is about 2.5 GiB at worst). Nothing survives a restart: durability is
//!   the edge outbox's job, with end-to-end acks.

mod acl;
mod embedded;
mod gateway;
mod metrics;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use inspection_core::topic::TopicPrefix;
use inspection_core::wire::MAX_PAYLOAD_BYTES;
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

pub use acl::{may_publish, may_set_will, may_subscribe};
pub use metrics::BrokerMetrics;

use crate::auth::{AuthError, Credentials};
use crate::tls::{ServerTlsConfig, TlsError};
use embedded::{Embedded, EmbeddedLimits};
use gateway::{PeerCertificate, Shared};

/// `[broker]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// rumqttd's own plain listener, for the in-process bridge and the
    /// gateway. Default `127.0.0.1:1884`; must be a loopback address (it has
    /// no authentication). Port 0 picks a free port (tests).
    pub internal_listen: SocketAddr,
    /// The gateway's TLS listener for devices, e.g. `0.0.0.0:8883`. Needs
    /// `tls`. Default: none.
    pub tls_listen: Option<SocketAddr>,
    /// Server certificate, key and the CA of device certificates.
    pub tls: Option<ServerTlsConfig>,
    /// A gateway listener without TLS (user name and token only), for
    /// loopback and development. Needs `credentials`, and off loopback
    /// `plain_insecure = true`. Default: none.
    pub plain_listen: Option<SocketAddr>,
    /// Allow `plain_listen` off loopback, where tokens cross the network in
    /// clear: an explicit choice (a lab network). Default false.
    pub plain_insecure: bool,
    /// The credentials file (`crate::auth`): device and service tokens.
    /// Without it only client certificates authenticate.
    pub credentials: Option<PathBuf>,
    /// Gateway connections open at once; more are closed at accept.
    /// Default 10,000 (the fleet is 5,000 boards plus headroom for
    /// reconnect storms, where old connections linger until keep-alive).
    pub max_connections: usize,
    /// Time from TCP accept to a complete TLS handshake and CONNECT, in
    /// seconds. Default 10: a board on a slow cellular link needs a few
    /// round trips; an idle socket should not hold a slot longer.
    pub connect_timeout_s: u64,
    /// Largest MQTT packet accepted, in bytes. Default 64 KiB: payloads are
    /// capped at `inspection_core::wire::MAX_PAYLOAD_BYTES` (16 KiB), the
    /// rest is room for topics and subscription lists. Bigger packets close
    /// the connection.
    pub max_packet_bytes: usize,
    /// rumqttd: unacknowledged QoS 1/2 messages per connection. Default 100.
    pub max_inflight: usize,
    /// rumqttd: connections in its router, gateway plus internal clients.
    /// Default 10,100; must exceed `max_connections`.
    pub rumqttd_max_connections: usize,
    /// rumqttd: size of one in-memory log segment per topic. Default 32 KiB.
    pub segment_bytes: usize,
    /// rumqttd: segments kept per topic. Default 4 (128 KiB per topic).
    pub segment_count: usize,
    /// rumqttd: segment size of the fleet filters the bridge subscribes to
    /// (every device's status, events and telemetry pass through them).
    /// Default 1 MiB.
    pub fleet_segment_bytes: usize,
    /// rumqttd: segments kept per fleet filter. Default 64: 64 MiB per
    /// filter, the most the bridge may fall behind by before rumqttd drops
    /// unread messages (devices then re-publish after their ack timeout).
    pub fleet_segment_count: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            internal_listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 1884)),
            tls_listen: None,
            tls: None,
            plain_listen: None,
            plain_insecure: false,
            credentials: None,
            max_connections: 10_000,
            connect_timeout_s: 10,
            max_packet_bytes: 64 * 1024,
            max_inflight: 100,
            rumqttd_max_connections: 10_100,
            segment_bytes: 32 * 1024,
            segment_count: 4,
            fleet_segment_bytes: 1024 * 1024,
            fleet_segment_count: 64,
        }
    }
}

/// Room for the topic and headers of a PUBLISH with the largest payload.
const PACKET_OVERHEAD: usize = 1024;

fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}

impl BrokerConfig {
    /// Every problem, each prefixed by `at`.
    pub fn problems(&self, at: &str, check_files: bool) -> Vec<String> {
        let mut problems = Vec::new();
        if !is_loopback(self.internal_listen.ip()) {
            problems.push(format!(
                "{at}.internal_listen: {} is not a loopback address; rumqttd's own listener has no authentication",
                self.internal_listen
            ));
        }
        match (&self.tls_listen, &self.tls) {
            (Some(_), None) => problems.push(format!("{at}.tls_listen: needs {at}.tls")),
            (None, Some(_)) => problems.push(format!(
                "{at}.tls: set, but {at}.tls_listen is not (nothing would use it)"
            )),
            _ => {}
        }
        if let Some(tls) = &self.tls {
            problems.extend(tls.problems(&format!("{at}.tls"), check_files));
            if tls.client_ca.is_none() && self.credentials.is_none() {
                problems.push(format!(
                    "{at}.tls: without client_ca and without {at}.credentials no client could authenticate"
                ));
            }
            if tls.client_cert_optional && self.credentials.is_none() {
                problems.push(format!(
                    "{at}.tls.client_cert_optional: clients without a certificate need {at}.credentials"
                ));
            }
        }
        if let Some(plain) = &self.plain_listen
            && !is_loopback(plain.ip())
            && !self.plain_insecure
        {
            problems.push(format!(
                "{at}.plain_listen: {plain} is not a loopback address (tokens would cross the network in clear); use {at}.tls_listen, or set {at}.plain_insecure = true"
            ));
        }
        if let Some(plain) = &self.plain_listen
            && self.credentials.is_none()
        {
            let where_ = if is_loopback(plain.ip()) {
                "loopback"
            } else {
                "non-loopback"
            };
            problems.push(format!(
                "{at}.plain_listen: {plain} ({where_}) authenticates by user name and token only and needs {at}.credentials"
            ));
        }
        let addrs: Vec<(&str, SocketAddr)> = [
            ("internal_listen", Some(self.internal_listen)),
            ("tls_listen", self.tls_listen),
            ("plain_listen", self.plain_listen),
        ]
        .into_iter()
        .filter_map(|(k, a)| a.map(|a| (k, a)))
        .collect();
        for (i, (k1, a1)) in addrs.iter().enumerate() {
            for (k2, a2) in &addrs[i + 1..] {
                if a1 == a2 && a1.port() != 0 {
                    problems.push(format!("{at}.{k1} and {at}.{k2}: both are {a1}"));
                }
            }
        }
        if let Some(path) = &self.credentials
            && check_files
            && !path.is_file()
        {
            problems.push(format!(
                "{at}.credentials: {} is not a readable file",
                path.display()
            ));
        }
        if self.max_connections == 0 {
            problems.push(format!("{at}.max_connections: must be at least 1"));
        }
        if self.rumqttd_max_connections <= self.max_connections {
            problems.push(format!(
                "{at}.rumqttd_max_connections: {} must exceed max_connections ({}) to leave room for internal clients",
                self.rumqttd_max_connections, self.max_connections
            ));
        }
        if !(1..=60).contains(&self.connect_timeout_s) {
            problems.push(format!(
                "{at}.connect_timeout_s: {} is outside 1..=60",
                self.connect_timeout_s
            ));
        }
        let min_packet = MAX_PAYLOAD_BYTES + PACKET_OVERHEAD;
        if !(min_packet..=16 * 1024 * 1024).contains(&self.max_packet_bytes) {
            problems.push(format!(
                "{at}.max_packet_bytes: {} is outside {min_packet}..=16 MiB (payloads alone may be {MAX_PAYLOAD_BYTES} bytes)",
                self.max_packet_bytes
            ));
        }
        if !(1..=u16::MAX as usize).contains(&self.max_inflight) {
            problems.push(format!(
                "{at}.max_inflight: {} is outside 1..=65535",
                self.max_inflight
            ));
        }
        // rumqttd panics below 1 KiB; a segment may overflow by one packet.
        if self.segment_bytes < 1024 {
            problems.push(format!(
                "{at}.segment_bytes: {} is below rumqttd's minimum of 1024",
                self.segment_bytes
            ));
        }
        if self.segment_count == 0 {
            problems.push(format!("{at}.segment_count: must be at least 1"));
        }
        if self.fleet_segment_bytes < 1024 {
            problems.push(format!(
                "{at}.fleet_segment_bytes: {} is below rumqttd's minimum of 1024",
                self.fleet_segment_bytes
            ));
        }
        if self.fleet_segment_count == 0 {
            problems.push(format!("{at}.fleet_segment_count: must be at least 1"));
        }
        problems
    }

    /// The credentials file, or none (certificates only) when unset.
    pub fn load_credentials(&self) -> Result<Credentials, BrokerError> {
        match &self.credentials {
            Some(path) => Ok(Credentials::load(path)?),
            None => Ok(Credentials::default()),
        }
    }

    fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_s)
    }
}

/// Why the broker could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("broker configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Credentials(#[from] AuthError),
    #[error("{what}: cannot listen on {addr}: {reason}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        reason: String,
    },
    #[error("embedded broker: {0}")]
    Embedded(String),
}

impl BrokerError {
    /// A stable code for logs and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            BrokerError::Config(_) => "config",
            BrokerError::Tls(_) => "tls",
            BrokerError::Credentials(_) => "credentials",
            BrokerError::Bind { .. } => "bind",
            BrokerError::Embedded(_) => "embedded",
        }
    }
}

/// Every address the broker role listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerAddrs {
    /// rumqttd's plain loopback listener (no authentication).
    pub internal: SocketAddr,
    /// The gateway's TLS listener.
    pub tls: Option<SocketAddr>,
    /// The gateway's plain listener (user name and token).
    pub plain: Option<SocketAddr>,
}

/// The broker role, bound (rumqttd answering, gateway listeners open) but
/// not yet accepting device connections.
pub struct BrokerServer {
    addrs: BrokerAddrs,
    embedded: Embedded,
    tls: Option<(TcpListener, TlsAcceptor)>,
    plain: Option<TcpListener>,
    shared: Arc<Shared>,
    max_connections: usize,
}

async fn listen(what: &'static str, addr: SocketAddr) -> Result<TcpListener, BrokerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| BrokerError::Bind {
            what,
            addr,
            reason: e.to_string(),
        })
}

impl BrokerServer {
    /// Starts rumqttd on `internal_listen` and binds the gateway listeners.
    /// `prefix` is `Config.mqtt`'s; `credentials` from
    /// [`BrokerConfig::load_credentials`].
    pub async fn bind(
        config: &BrokerConfig,
        prefix: TopicPrefix,
        credentials: Credentials,
        metrics: BrokerMetrics,
    ) -> Result<BrokerServer, BrokerError> {
        let problems = config.problems("broker", false);
        if !problems.is_empty() {
            return Err(BrokerError::Config(problems.join("; ")));
        }
        let tls = match (&config.tls_listen, &config.tls) {
            (Some(addr), Some(tls)) => {
                let acceptor = TlsAcceptor::from(tls.server_config(&[])?);
                Some((listen("broker.tls_listen", *addr).await?, acceptor))
            }
            _ => None,
        };
        let plain = match config.plain_listen {
            Some(addr) => {
                if !is_loopback(addr.ip()) {
                    warn!(%addr, "broker.plain_listen is not on loopback: tokens cross the network in clear");
                }
                Some(listen("broker.plain_listen", addr).await?)
            }
            None => None,
        };
        let limits = EmbeddedLimits {
            max_connections: config.rumqttd_max_connections,
            max_inflight: config.max_inflight,
            max_packet_bytes: config.max_packet_bytes,
            connect_timeout: config.connect_timeout(),
            segment_bytes: config.segment_bytes,
            segment_count: config.segment_count,
            fleet_filters: ["status", "events", "telemetry"]
                .iter()
                .map(|kind| format!("{}/v1/+/+/{kind}", prefix.as_str()))
                .collect(),
            fleet_segment_bytes: config.fleet_segment_bytes,
            fleet_segment_count: config.fleet_segment_count,
        };
        let embedded = Embedded::start(config.internal_listen, &limits).await?;
        let local = |l: &TcpListener, what: &'static str, addr: SocketAddr| {
            l.local_addr().map_err(|e| BrokerError::Bind {
                what,
                addr,
                reason: e.to_string(),
            })
        };
        let addrs = BrokerAddrs {
            internal: embedded.addr,
            tls: match (&tls, config.tls_listen) {
                (Some((l, _)), Some(a)) => Some(local(l, "broker.tls_listen", a)?),
                _ => None,
            },
            plain: match (&plain, config.plain_listen) {
                (Some(l), Some(a)) => Some(local(l, "broker.plain_listen", a)?),
                _ => None,
            },
        };
        info!(internal = %addrs.internal, tls = ?addrs.tls, plain = ?addrs.plain, credentials = credentials.len(), "broker bound");
        let shared = Arc::new(Shared {
            prefix,
            credentials,
            metrics,
            internal: embedded.addr,
            connect_timeout: config.connect_timeout(),
            max_packet_bytes: config.max_packet_bytes,
        });
        Ok(BrokerServer {
            addrs,
            embedded,
            tls,
            plain,
            shared,
            max_connections: config.max_connections,
        })
    }

    /// Every bound address.
    pub fn local_addr(&self) -> BrokerAddrs {
        self.addrs
    }

    /// Accepts device connections until `shutdown` becomes true; then closes
    /// every gateway connection (their wills fire) and stops rumqttd.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), BrokerError> {
        let BrokerServer {
            addrs: _,
            mut embedded,
            tls,
            plain,
            shared,
            max_connections,
        } = self;
        let slots = Arc::new(Semaphore::new(max_connections));
        let mut connections = JoinSet::new();
        let (tls_listener, acceptor) = match tls {
            Some((l, a)) => (Some(l), Some(a)),
            None => (None, None),
        };
        let for_connections = shutdown.clone();
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = accept(tls_listener.as_ref()) => {
                    let Some((stream, peer)) = accepted else { continue };
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        shared.metrics.connection("tls", "over_limit");
                        warn!(%peer, max_connections, "connection limit reached; closed at accept");
                        continue;
                    };
                    let shared = shared.clone();
                    let acceptor = acceptor.clone().expect("a TLS listener has an acceptor");
                    let shutdown = for_connections.clone();
                    connections.spawn(async move {
                        serve_tls(shared, acceptor, stream, peer, shutdown).await;
                        drop(slot);
                    });
                }
                accepted = accept(plain.as_ref()) => {
                    let Some((stream, peer)) = accepted else { continue };
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        shared.metrics.connection("plain", "over_limit");
                        warn!(%peer, max_connections, "connection limit reached; closed at accept");
                        continue;
                    };
                    let shared = shared.clone();
                    let shutdown = for_connections.clone();
                    connections.spawn(async move {
                        let deadline = tokio::time::Instant::now() + shared.connect_timeout;
                        gateway::serve(shared, "plain", stream, PeerCertificate::None, peer, deadline, shutdown).await;
                        drop(slot);
                    });
                }
            }
        }
        info!(
            open = connections.len(),
            "broker shutting down: closing gateway connections"
        );
        drop(tls_listener);
        drop(plain);
        // Every connection watches the same shutdown signal and closes both
        // sides; give them a moment to flush, then cut what is left.
        let drained = tokio::time::timeout(Duration::from_secs(10), async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!(
                left = connections.len(),
                "gateway connections did not close within 10 s; aborted"
            );
            connections.shutdown().await;
        }
        embedded.stop();
        info!("broker stopped");
        Ok(())
    }
}

/// Accepts on `listener`, or waits forever when there is none. Accept
/// errors (out of file descriptors, aborted handshakes) are logged and
/// yield `None`.
async fn accept(listener: Option<&TcpListener>) -> Option<(TcpStream, SocketAddr)> {
    let Some(listener) = listener else {
        return std::future::pending().await;
    };
    match listener.accept().await {
        Ok((stream, peer)) => {
            let _ = stream.set_nodelay(true);
            Some((stream, peer))
        }
        Err(error) => {
            warn!(%error, "accept failed");
            // Out of descriptors: do not spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

async fn serve_tls(
    shared: Arc<Shared>,
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    let deadline = tokio::time::Instant::now() + shared.connect_timeout;
    let tls = match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            shared.metrics.tls_handshake_failures.inc();
            shared.metrics.connection("tls", "tls_failed");
            debug!(%peer, %error, "TLS handshake failed");
            return;
        }
        Err(_) => {
            shared.metrics.tls_handshake_failures.inc();
            shared.metrics.connection("tls", "timeout");
            debug!(%peer, "TLS handshake did not finish in time");
            return;
        }
    };
    let cert = PeerCertificate::from_chain(tls.get_ref().1.peer_certificates());
    if let PeerCertificate::Unusable(reason) = &cert {
        warn!(%peer, %reason, "client certificate does not name a device");
    }
    gateway::serve(shared, "tls", tls, cert, peer, deadline, shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls() -> ServerTlsConfig {
        ServerTlsConfig {
            cert: "server.pem".into(),
            key: "server.key".into(),
            client_ca: Some("ca.pem".into()),
            client_cert_optional: false,
        }
    }

    #[test]
    fn defaults_have_no_problems() {
        assert_eq!(
            BrokerConfig::default().problems("broker", false),
            Vec::<String>::new()
        );
        let with_tls = BrokerConfig {
            tls_listen: Some("0.0.0.0:8883".parse().unwrap()),
            tls: Some(tls()),
            ..BrokerConfig::default()
        };
        assert_eq!(with_tls.problems("broker", false), Vec::<String>::new());
    }

    #[test]
    fn unsafe_or_inconsistent_settings_are_refused_all_at_once() {
        let config = BrokerConfig {
            internal_listen: "0.0.0.0:1884".parse().unwrap(),
            tls_listen: Some("0.0.0.0:8883".parse().unwrap()),
            tls: Some(ServerTlsConfig {
                client_ca: None,
                ..tls()
            }),
            plain_listen: Some("0.0.0.0:1883".parse().unwrap()),
            plain_insecure: false,
            credentials: None,
            max_connections: 100,
            rumqttd_max_connections: 100,
            connect_timeout_s: 0,
            max_packet_bytes: 1000,
            max_inflight: 0,
            segment_bytes: 10,
            segment_count: 0,
            fleet_segment_bytes: 10,
            fleet_segment_count: 0,
        };
        let problems = config.problems("broker", false).join("\n");
        for needle in [
            "broker.internal_listen: 0.0.0.0:1884 is not a loopback address",
            "broker.tls: without client_ca and without broker.credentials",
            "broker.plain_listen: 0.0.0.0:1883 (non-loopback)",
            "broker.plain_listen: 0.0.0.0:1883 is not a loopback address (tokens would cross the network in clear)",
            "broker.rumqttd_max_connections",
            "broker.connect_timeout_s",
            "broker.max_packet_bytes",
            "broker.max_inflight",
            "broker.segment_bytes",
            "broker.segment_count",
            "broker.fleet_segment_bytes",
            "broker.fleet_segment_count",
        ] {
            assert!(
                problems.contains(needle),
                "{needle} missing from\n{problems}"
            );
        }
        let half_tls = BrokerConfig {
            tls_listen: Some("127.0.0.1:8883".parse().unwrap()),
            ..BrokerConfig::default()
        };
        assert!(half_tls.problems("b", false)[0].contains("b.tls_listen: needs b.tls"));
        let same_port = BrokerConfig {
            plain_listen: Some("127.0.0.1:1884".parse().unwrap()),
            credentials: Some("creds.toml".into()),
            ..BrokerConfig::default()
        };
        assert!(same_port.problems("b", false)[0].contains("both are 127.0.0.1:1884"));
        // Off loopback only as an explicit choice.
        let lab = BrokerConfig {
            plain_listen: Some("0.0.0.0:1883".parse().unwrap()),
            credentials: Some("creds.toml".into()),
            ..BrokerConfig::default()
        };
        assert!(lab.problems("b", false)[0].contains("set b.plain_insecure = true"));
        let lab = BrokerConfig {
            plain_insecure: true,
            ..lab
        };
        assert_eq!(lab.problems("b", false), Vec::<String>::new());
    }

    #[test]
    fn config_parses_from_toml() {
        let config: BrokerConfig = toml::from_str(
            "tls_listen = \"0.0.0.0:8883\"\nmax_connections = 20\n[tls]\ncert = \"a\"\nkey = \"b\"\nclient_ca = \"c\"\n",
        )
        .expect("valid");
        assert_eq!(config.max_connections, 20);
        assert_eq!(config.internal_listen.port(), 1884);
        assert!(toml::from_str::<BrokerConfig>("bogus = 1").is_err());
    }
}
