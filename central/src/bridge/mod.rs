//! The `bridge` role: device topics -> validation -> store -> ack.
//!
//! ```text
//! DESIGN
//!
//! The bridge is an MQTT client of any broker (the embedded one, mosquitto,
//! EMQX). It subscribes with QoS 1 to the shared filters
//! `$share/{group}-{kind}/{prefix}/v1/+/+/{kind}` for kind = status, events
//! and telemetry (a group per kind: see `Bridge::filters`), so replicas in
//! one group split the fleet's messages between them.
//!
//! COMMIT, THEN ACK, THEN PUBACK
//!
//! Incoming publishes are acknowledged manually. For each batch (up to
//! `batch_max` messages or `batch_max_delay_ms` after the first):
//!   1. decode; a payload that is refused (bad topic, malformed, unknown
//!      version, claims another device) becomes a dead letter;
//!   2. store: the batch's events in one `record_events` transaction,
//!      status/telemetry (newest wins), dead letters;
//!   3. only after every store call returned Ok: publish one `Ack` per
//!      device (QoS 1, at most MAX_ACK_IDS ids each) naming every event of
//!      the batch, inserted or duplicate (a lost ack must be repeatable);
//!   4. PUBACK the batch's publishes, in the order they arrived.
//! So a device never sees an ack for an event that is not committed, and
//! the broker keeps (and redelivers) whatever the bridge had not finished.
//!
//! FAILURES
//!
//! A transient store error (unavailable, full) keeps the batch and retries
//! it with exponential backoff and jitter; nothing is acked meanwhile and
//! the bridge reports not ready. While a batch waits, no new message is
//! read: the channel from the connection to the batcher holds at most
//! `batch_max` messages, then the connection stops polling the broker
//! (memory stays bounded; the broker's in-flight window and queue, and the
//! devices' outboxes, hold the rest). A permanent store error on one
//! message dead-letters it (`store_rejected`) without an ack.
//!
//! A lost broker connection is re-established with backoff and jitter. The
//! session is persistent (`clean_session = false`) so QoS 1 messages queued
//! during a reconnect or a restart with the same `client_id` are delivered;
//! PUBACKs are sent only on the connection the publish arrived on (a
//! redelivery after a reconnect is stored as a duplicate and acked again).
//!
//! Status and telemetry carry no `msg_id` and are never acked to devices.
//! ```
//!
//! Role interface: [`Bridge::new`] builds everything that can fail from
//! the configuration (TLS files, password file) without connecting (the
//! bridge listens on nothing, so there is no `bind`/`local_addr`);
//! [`Bridge::run`] connects, serves until `shutdown` becomes true, then
//! finishes the batch in hand and disconnects.

mod connection;
pub mod metrics;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use inspection_core::topic::{TopicKind, TopicPrefix};
use inspection_core::wire::{MAX_ACK_IDS, MAX_PAYLOAD_BYTES};
use rand::Rng;
use rumqttc::{AsyncClient, MqttOptions, Transport};
use serde::Deserialize;
use tokio::sync::watch;

pub use metrics::BridgeMetrics;

use crate::store::Store;

/// The default share group of bridge replicas.
pub const DEFAULT_SHARE_GROUP: &str = "central-bridge";

/// `[bridge]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BridgeConfig {
    /// The broker: `mqtt://host:port` (plain, loopback and development) or
    /// `mqtts://host:port` (TLS; needs `ca`). Default
    /// `mqtt://127.0.0.1:1884`, the embedded broker's internal listener
    /// (`broker.internal_listen`), for all roles in one process.
    pub url: String,
    /// CA certificate (PEM) the broker's certificate must chain to.
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for brokers that require one; with `key`.
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub key: Option<PathBuf>,
    /// User name, e.g. `bridge` (the service credential of `central certs
    /// token`). Default none (anonymous, or the certificate's identity).
    pub username: Option<String>,
    /// A file holding the password or token (first line; trailing
    /// whitespace trimmed), so the secret is not in the config file.
    pub password_file: Option<PathBuf>,
    /// The shared-subscription group; replicas in one group split the load
    /// (each kind in its own group, `{share_group}-{kind}`). Default
    /// `central-bridge`.
    pub share_group: String,
    /// The MQTT client id. Default `bridge-<random>`. The session is
    /// persistent, so a stable id per replica (a StatefulSet pod name) lets a
    /// restarted replica receive what was queued for it; with a random id
    /// the broker keeps the old session until it expires, and the devices
    /// republish what was not acked.
    pub client_id: Option<String>,
    /// Most messages per store transaction. Default 64: large enough to
    /// amortise the fsync of a commit, small enough to ack promptly.
    pub batch_max: usize,
    /// Longest a message waits for its batch to fill, in ms. Default 20.
    pub batch_max_delay_ms: u64,
    /// MQTT keep-alive in seconds. Default 30.
    pub keep_alive_s: u64,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        Self {
            url: "mqtt://127.0.0.1:1884".to_owned(),
            ca: None,
            cert: None,
            key: None,
            username: None,
            password_file: None,
            share_group: DEFAULT_SHARE_GROUP.to_owned(),
            client_id: None,
            batch_max: 64,
            batch_max_delay_ms: 20,
            keep_alive_s: 30,
        }
    }
}

/// Most messages per batch accepted in the configuration.
pub const MAX_BATCH: usize = 1000;

/// A broker address from the `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl BrokerUrl {
    /// Parses `mqtt://host[:port]` or `mqtts://host[:port]` (IPv6 hosts in
    /// brackets); the default ports are 1883 and 8883.
    /// A message never repeats a password written into the URL.
    pub fn parse(url: &str) -> Result<BrokerUrl, String> {
        let shown = inspection_core::config::redact_url(url);
        let (tls, rest) = if let Some(rest) = url.strip_prefix("mqtts://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("mqtt://") {
            (false, rest)
        } else {
            return Err(format!("{shown:?} must start with mqtt:// or mqtts://"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "{shown:?} must be only scheme://host[:port] (credentials go in username/password_file)"
            ));
        }
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{shown:?}: unclosed '[' in the host"))?;
            match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if after.is_empty() => (host, None),
                None => return Err(format!("{shown:?}: unexpected {after:?} after the host")),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(format!("{shown:?} names no host"));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{shown:?}: {p:?} is not a port"))?,
            None => default_port,
        };
        Ok(BrokerUrl {
            tls,
            host: host.to_owned(),
            port,
        })
    }

    /// The problem with plain `mqtt://` to this broker, if any: it carries
    /// the client's password and every message in clear, so only a broker
    /// on this machine may be reached without TLS (the boards' uplink has
    /// the same rule).
    pub fn plain_problem(&self) -> Option<String> {
        let loopback = inspection_core::config::is_loopback_host(&self.host);
        (!self.tls && !loopback).then(|| {
            format!(
                "plain mqtt:// is only for a broker on loopback, not {}: use mqtts:// (with ca)",
                self.host
            )
        })
    }
}

impl BridgeConfig {
    /// Every problem, each prefixed by `at`.
    pub fn problems(&self, at: &str, check_files: bool) -> Vec<String> {
        let mut problems = Vec::new();
        match BrokerUrl::parse(&self.url) {
            Ok(url) if url.tls && self.ca.is_none() => problems.push(format!(
                "{at}.ca: required for an mqtts:// url (the CA the broker's certificate chains to)"
            )),
            Ok(url) if !url.tls && (self.ca.is_some() || self.cert.is_some()) => {
                problems.push(format!(
                    "{at}.url: ca/cert are set but {:?} is plain mqtt://; use mqtts://",
                    self.url
                ))
            }
            Ok(url) => problems.extend(url.plain_problem().map(|p| format!("{at}.url: {p}"))),
            Err(e) => problems.push(format!("{at}.url: {e}")),
        }
        if self.cert.is_some() != self.key.is_some() {
            problems.push(format!("{at}.cert, {at}.key: give both or neither"));
        }
        if self.password_file.is_some() && self.username.is_none() {
            problems.push(format!(
                "{at}.password_file: needs {at}.username (the name the token belongs to)"
            ));
        }
        if let Some(user) = &self.username
            && (user.is_empty() || user.len() > 128 || user.chars().any(char::is_control))
        {
            problems.push(format!(
                "{at}.username: must be 1-128 bytes without control characters"
            ));
        }
        if let Err(e) =
            // The longest of the per-kind groups (see `Bridge::filters`).
            TopicPrefix::default().shared_fleet_filter(
                &format!("{}-telemetry", self.share_group),
                TopicKind::Telemetry,
            )
        {
            problems.push(format!("{at}.share_group: {e}"));
        }
        if let Some(id) = &self.client_id
            && !crate::config::valid_instance_id(id)
        {
            problems.push(format!(
                "{at}.client_id: {id:?} must be 1-64 of A-Z a-z 0-9 - _ ."
            ));
        }
        if self.batch_max == 0 || self.batch_max > MAX_BATCH {
            problems.push(format!(
                "{at}.batch_max: {} is not in 1..={MAX_BATCH}",
                self.batch_max
            ));
        }
        if self.batch_max_delay_ms > 10_000 {
            problems.push(format!(
                "{at}.batch_max_delay_ms: {} is more than 10 s",
                self.batch_max_delay_ms
            ));
        }
        if !(5..=3600).contains(&self.keep_alive_s) {
            problems.push(format!(
                "{at}.keep_alive_s: {} is not in 5..=3600",
                self.keep_alive_s
            ));
        }
        if check_files {
            let files = [
                ("ca", &self.ca),
                ("cert", &self.cert),
                ("key", &self.key),
                ("password_file", &self.password_file),
            ];
            for (key, path) in files {
                if let Some(path) = path
                    && !path.is_file()
                {
                    problems.push(format!(
                        "{at}.{key}: {} is not a readable file",
                        path.display()
                    ));
                }
            }
        }
        problems
    }
}

/// Why the bridge could not start.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("bridge configuration: {}", .0.join("; "))]
    Config(Vec<String>),
    #[error("bridge TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot read the bridge password file {path}: {reason}")]
    PasswordFile { path: PathBuf, reason: String },
}

impl BridgeError {
    /// A stable code for metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            BridgeError::Config(_) => "config",
            BridgeError::Tls(e) => e.code(),
            BridgeError::PasswordFile { .. } => "password_file",
        }
    }
}

/// Whether the bridge can do its job now: connected to the broker and the
/// store accepting writes. Cheap to clone; for readiness probes.
#[derive(Debug, Clone, Default)]
pub struct BridgeHealth {
    inner: Arc<HealthInner>,
}

#[derive(Debug, Default)]
struct HealthInner {
    connected: AtomicBool,
    subscribed: AtomicBool,
    store_failing: AtomicBool,
}

impl BridgeHealth {
    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::Relaxed)
    }

    /// The broker confirmed the subscriptions on the current connection.
    pub fn is_subscribed(&self) -> bool {
        self.inner.subscribed.load(Ordering::Relaxed)
    }

    /// The last store call failed (and is being retried).
    pub fn is_store_failing(&self) -> bool {
        self.inner.store_failing.load(Ordering::Relaxed)
    }

    /// Connected, subscribed, and the store accepts writes.
    pub fn is_ready(&self) -> bool {
        self.is_connected() && self.is_subscribed() && !self.is_store_failing()
    }

    fn set_subscribed(&self, metrics: &BridgeMetrics, on: bool) {
        self.inner.subscribed.store(on, Ordering::Relaxed);
        metrics.ready.set(i64::from(self.is_ready()));
    }

    fn set_connected(&self, metrics: &BridgeMetrics, on: bool) {
        self.inner.connected.store(on, Ordering::Relaxed);
        if !on {
            self.inner.subscribed.store(false, Ordering::Relaxed);
        }
        metrics.connected.set(i64::from(on));
        metrics.ready.set(i64::from(self.is_ready()));
    }

    fn set_store_failing(&self, metrics: &BridgeMetrics, failing: bool) {
        self.inner.store_failing.store(failing, Ordering::Relaxed);
        metrics.ready.set(i64::from(self.is_ready()));
    }
}

/// The bridge role, configured but not yet connected.
pub struct Bridge {
    options: MqttOptions,
    prefix: TopicPrefix,
    share_group: String,
    batch_max: usize,
    batch_max_delay: Duration,
    store: Arc<dyn Store>,
    metrics: BridgeMetrics,
    health: BridgeHealth,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("client_id", &self.options.client_id())
            .field("broker", &self.options.broker_address())
            .field("prefix", &self.prefix)
            .field("share_group", &self.share_group)
            .finish_non_exhaustive()
    }
}

/// Largest MQTT packet the bridge accepts: a payload over the wire limit is
/// dead-lettered as `too_large`, but one over this limit would make the
/// client drop the connection and the broker redeliver it forever, so
/// brokers should cap packets below it (mosquitto `max_packet_size`).
pub const MAX_INCOMING_PACKET: usize = 1024 * 1024;

impl Bridge {
    /// Validates the configuration and loads the TLS and password files;
    /// connects to nothing yet.
    pub fn new(
        config: &BridgeConfig,
        prefix: TopicPrefix,
        store: Arc<dyn Store>,
        metrics: BridgeMetrics,
    ) -> Result<Bridge, BridgeError> {
        let problems = config.problems("bridge", false);
        if !problems.is_empty() {
            return Err(BridgeError::Config(problems));
        }
        let url = BrokerUrl::parse(&config.url).map_err(|e| BridgeError::Config(vec![e]))?;
        let client_id = config.client_id.clone().unwrap_or_else(|| {
            let n: u32 = rand::rng().random();
            format!("bridge-{n:08x}")
        });
        let mut options = MqttOptions::new(client_id, url.host.clone(), url.port);
        options
            .set_keep_alive(Duration::from_secs(config.keep_alive_s))
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_max_packet_size(MAX_INCOMING_PACKET, MAX_PAYLOAD_BYTES + 1024)
            // Never full in practice (see worker.rs); a full channel only
            // delays an ack, it never blocks the batcher.
            .set_request_channel_capacity(4 * config.batch_max + 2 * MAX_ACK_IDS);
        if url.tls {
            let ca = config.ca.as_deref().ok_or_else(|| {
                BridgeError::Config(vec!["bridge.ca: required for mqtts://".into()])
            })?;
            let identity = config.cert.as_deref().zip(config.key.as_deref());
            let tls = crate::tls::client_config(ca, identity)?;
            options.set_transport(Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls),
            ));
        }
        if let Some(user) = &config.username {
            let password = match &config.password_file {
                Some(path) => std::fs::read_to_string(path)
                    .map_err(|e| BridgeError::PasswordFile {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim_end()
                    .to_owned(),
                None => String::new(),
            };
            options.set_credentials(user.clone(), password);
        }
        Ok(Bridge {
            options,
            prefix,
            share_group: config.share_group.clone(),
            batch_max: config.batch_max,
            batch_max_delay: Duration::from_millis(config.batch_max_delay_ms),
            store,
            metrics,
            health: BridgeHealth::default(),
        })
    }

    /// The MQTT client id this bridge connects with.
    pub fn client_id(&self) -> String {
        self.options.client_id()
    }

    /// A handle on the bridge's health (connected, store writable).
    pub fn health(&self) -> BridgeHealth {
        self.health.clone()
    }

    /// The subscription filters (shared, one per device-to-central kind),
    /// each in its own share group, `{share_group}-{kind}`.
    ///
    /// One group per filter, not one for all three: rumqttd 0.20 keys
    /// shared groups by name alone and keeps one read cursor per group, so
    /// three filters in one group read each other's positions in their
    /// logs, and a filter whose log is behind the cursor the others moved
    /// is never forwarded (the demo saw status and telemetry delivered and
    /// every event left unread). Replicas still split each kind between
    /// them; mosquitto and other brokers treat the names alike.
    pub fn filters(&self) -> Vec<String> {
        [TopicKind::Status, TopicKind::Events, TopicKind::Telemetry]
            .into_iter()
            .filter_map(|kind| {
                let group = format!("{}-{}", self.share_group, kind.as_str());
                self.prefix.shared_fleet_filter(&group, kind).ok()
            })
            .collect()
    }

    /// Connects and bridges until `shutdown` becomes true, then finishes
    /// the batch in hand (if the store takes it) and disconnects. Broker and
    /// store failures are retried, never fatal. Everything runs inside this
    /// future: dropping or aborting it stops the bridge at once (what was
    /// not acked is redelivered by the broker or republished by devices).
    pub async fn run(self, shutdown: watch::Receiver<bool>) -> Result<(), BridgeError> {
        let filters = self.filters();
        let (client, eventloop) = AsyncClient::new(
            self.options.clone(),
            self.options.request_channel_capacity(),
        );
        let (tx, rx) = tokio::sync::mpsc::channel(self.batch_max);
        let (done_tx, done_rx) = watch::channel(false);
        let epoch = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let connection = connection::Connection {
            eventloop,
            filters,
            tx,
            done: done_rx,
            epoch: epoch.clone(),
            metrics: self.metrics.clone(),
            health: self.health.clone(),
        };
        let worker = worker::Worker {
            client,
            rx,
            prefix: self.prefix,
            store: self.store,
            batch_max: self.batch_max,
            batch_max_delay: self.batch_max_delay,
            epoch,
            metrics: self.metrics,
            health: self.health,
            unsent: Default::default(),
        };
        tokio::join!(connection.run(), worker.run(shutdown, done_tx));
        Ok(())
    }
}

/// Exponential backoff with jitter: `base * 2^attempt`, capped, times a
/// random factor in [0.5, 1.5) so replicas and devices do not retry in step.
pub(crate) fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(16)).min(max);
    exp.mul_f64(rand::rng().random_range(0.5..1.5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        let ok = [
            ("mqtt://127.0.0.1:1883", false, "127.0.0.1", 1883),
            ("mqtts://broker.example:8884", true, "broker.example", 8884),
            ("mqtts://broker", true, "broker", 8883),
            ("mqtt://broker/", false, "broker", 1883),
            ("mqtt://[::1]:1884", false, "::1", 1884),
            ("mqtts://[::1]", true, "::1", 8883),
        ];
        for (url, tls, host, port) in ok {
            assert_eq!(
                BrokerUrl::parse(url).unwrap(),
                BrokerUrl {
                    tls,
                    host: host.into(),
                    port
                },
                "{url}"
            );
        }
        for bad in [
            "tcp://x:1",
            "mqtt://",
            "mqtt://x:0",
            "mqtt://x:99999",
            "mqtt://u:p@x:1",
            "mqtt://x:1/path",
            "mqtt://[::1",
            "x:1883",
        ] {
            assert!(BrokerUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_problems_are_reported_whole() {
        assert!(BridgeConfig::default().problems("bridge", true).is_empty());
        let bad = BridgeConfig {
            url: "mqtts://broker".into(),
            cert: Some("c.pem".into()),
            password_file: Some("/nonexistent/token".into()),
            share_group: "a/b".into(),
            client_id: Some("has space".into()),
            batch_max: 0,
            batch_max_delay_ms: 60_000,
            keep_alive_s: 1,
            ..BridgeConfig::default()
        };
        let problems = bad.problems("bridge", true);
        for needle in [
            "bridge.ca",
            "bridge.cert, bridge.key",
            "bridge.password_file: needs",
            "bridge.share_group",
            "bridge.client_id",
            "bridge.batch_max:",
            "bridge.batch_max_delay_ms",
            "bridge.keep_alive_s",
            "bridge.cert: c.pem is not a readable file",
            "bridge.password_file: /nonexistent/token is not a readable file",
        ] {
            assert!(
                problems.iter().any(|p| p.contains(needle)),
                "{needle} missing from {problems:#?}"
            );
        }
        let plain_with_tls = BridgeConfig {
            ca: Some("ca.pem".into()),
            ..BridgeConfig::default()
        };
        assert_eq!(plain_with_tls.problems("bridge", false).len(), 1);
    }

    #[test]
    fn plain_mqtt_reaches_only_a_broker_on_loopback() {
        for local in [
            "mqtt://127.0.0.1:1883",
            "mqtt://localhost",
            "mqtt://[::1]:1884",
        ] {
            let url = BrokerUrl::parse(local).unwrap();
            assert_eq!(url.plain_problem(), None, "{local}");
        }
        for remote in ["mqtt://broker.example:1883", "mqtt://10.0.0.7"] {
            let config = BridgeConfig {
                url: remote.into(),
                ..BridgeConfig::default()
            };
            let problems = config.problems("bridge", false);
            assert!(
                problems.len() == 1 && problems[0].starts_with("bridge.url: plain mqtt://"),
                "{remote}: {problems:?}"
            );
        }
        let tls = BrokerUrl::parse("mqtts://broker.example").unwrap();
        assert_eq!(tls.plain_problem(), None);
    }

    #[test]
    fn a_refused_broker_url_is_quoted_without_its_password() {
        for bad in [
            "mqtt://bridge:hunter2@broker:1883",
            "tcp://bridge:hunter2@broker:1883",
            "mqtts://bridge:hunter2@broker:99999",
        ] {
            let e = BrokerUrl::parse(bad).unwrap_err();
            assert!(!e.contains("hunter2") && e.contains("***"), "{bad}: {e}");
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(10);
        for attempt in 0..40 {
            let d = backoff(attempt, base, max);
            assert!(d <= max.mul_f64(1.5), "{attempt}: {d:?}");
            assert!(d >= base.mul_f64(0.5), "{attempt}: {d:?}");
        }
        assert!(backoff(30, base, max) >= max.mul_f64(0.5));
    }
}
