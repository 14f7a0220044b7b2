//! The embedded rumqttd: one plain MQTT 3.1.1 listener on loopback, no
//! authentication, run on its own thread and runtime.
//!
//! DESIGN
//! - rumqttd's `Server::start` binds its listener itself and reports nothing
//!   but errors, so the address is chosen first: a std listener is bound
//!   (port 0 picks a free port), its address noted and the listener closed,
//!   then rumqttd binds that address. Another process could take the port in
//!   that instant; rumqttd's bind then fails, the failure comes back on a
//!   channel and, when the port was ours to choose, another port is tried.
//! - "Bound" means an MQTT CONNECT on the address was answered with a
//!   CONNACK, so the listener is rumqttd and not something else.
//! - Stopping drops rumqttd's runtime: the listener and every connection
//!   close. rumqttd's router thread has no stop; it stays, idle, until the
//!   process exits (one thread per start).

use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::ConnectReturnCode;
use rumqttc::mqttbytes::v4::{ConnAck, Connect, Packet};
use rumqttd::protocol::v4::V4;
use rumqttd::{ConnectionSettings, LinkType, RouterConfig, Server, ServerSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::BrokerError;

/// rumqttd's limits, from [`super::BrokerConfig`].
#[derive(Debug, Clone)]
pub(crate) struct EmbeddedLimits {
    pub(crate) max_connections: usize,
    pub(crate) max_inflight: usize,
    pub(crate) max_packet_bytes: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) segment_bytes: usize,
    pub(crate) segment_count: usize,
    /// The filters every device message goes through on its way to the
    /// bridge (`{prefix}/v1/+/+/{status,events,telemetry}`).
    pub(crate) fleet_filters: Vec<String>,
    pub(crate) fleet_segment_bytes: usize,
    pub(crate) fleet_segment_count: usize,
}

/// A running rumqttd; stopped on drop.
pub(crate) struct Embedded {
    pub(crate) addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

const ATTEMPTS: usize = 5;
const READY_WITHIN: Duration = Duration::from_secs(10);

impl Embedded {
    pub(crate) async fn start(
        listen: SocketAddr,
        limits: &EmbeddedLimits,
    ) -> Result<Embedded, BrokerError> {
        let mut last = String::new();
        let attempts = if listen.port() == 0 { ATTEMPTS } else { 1 };
        for _ in 0..attempts {
            let addr = StdListener::bind(listen)
                .and_then(|l| l.local_addr())
                .map_err(|e| BrokerError::Bind {
                    what: "broker.internal_listen",
                    addr: listen,
                    reason: e.to_string(),
                })?;
            match Self::start_on(addr, limits).await {
                Ok(embedded) => return Ok(embedded),
                Err(reason) => last = reason,
            }
        }
        Err(BrokerError::Embedded(format!(
            "rumqttd on {listen}: {last}"
        )))
    }

    async fn start_on(addr: SocketAddr, limits: &EmbeddedLimits) -> Result<Embedded, String> {
        let settings = server_settings(addr, limits);
        let router = router_config(limits);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (failed_tx, failed_rx) = mpsc::channel::<String>();
        let thread = std::thread::Builder::new()
            .name("rumqttd".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = failed_tx.send(format!("runtime: {e}"));
                        return;
                    }
                };
                let router_tx = rumqttd::Router::new(0, router).spawn();
                let mut server = Server::new(settings, router_tx, V4);
                runtime.block_on(async move {
                    tokio::select! {
                        result = server.start(LinkType::Remote) => {
                            let reason = match result {
                                Ok(()) => "listener ended".to_owned(),
                                Err(e) => e.to_string(),
                            };
                            let _ = failed_tx.send(reason);
                        }
                        _ = stop_rx => {}
                    }
                });
                // Dropping the runtime here closes the listener and every
                // rumqttd connection task.
            })
            .map_err(|e| format!("thread: {e}"))?;
        let mut embedded = Embedded {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Ok(reason) = failed_rx.try_recv() {
                embedded.stop();
                return Err(reason);
            }
            if probe(addr).await.is_ok() {
                return Ok(embedded);
            }
            if Instant::now() > deadline {
                embedded.stop();
                return Err(format!(
                    "did not answer an MQTT CONNECT within {READY_WITHIN:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops rumqttd: its listener and connections close.
    pub(crate) fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // The thread only drops a runtime after the signal: quick.
            let _ = thread.join();
        }
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.stop();
    }
}

fn server_settings(addr: SocketAddr, limits: &EmbeddedLimits) -> ServerSettings {
    ServerSettings {
        name: "internal".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 0,
        connections: ConnectionSettings {
            connection_timeout_ms: u16::try_from(limits.connect_timeout.as_millis())
                .unwrap_or(u16::MAX),
            max_payload_size: limits.max_packet_bytes,
            max_inflight_count: limits.max_inflight,
            auth: None,
            external_auth: None,
            // Publishing to a topic nobody subscribed to yet creates its
            // log instead of disconnecting the client.
            dynamic_filters: true,
        },
    }
}

fn router_config(limits: &EmbeddedLimits) -> RouterConfig {
    RouterConfig {
        max_connections: limits.max_connections,
        // rumqttd's sample value: packets per connection per scheduling round.
        max_outgoing_packet_count: 200,
        max_segment_size: limits.segment_bytes,
        max_segment_count: limits.segment_count,
        // rumqttd keeps one in-memory log per subscription filter, and drops
        // its oldest segment when the log is full, whether or not the
        // subscriber has read it. The bridge's fleet filters carry every
        // device's messages, so their log must hold the whole backlog the
        // bridge may fall behind by; with the per-device default (128 KiB)
        // 20 devices with 16 events in flight each already lost messages
        // (the transport benchmark).
        custom_segment: Some(
            limits
                .fleet_filters
                .iter()
                .map(|f| {
                    (
                        f.clone(),
                        rumqttd::SegmentConfig {
                            max_segment_size: limits.fleet_segment_bytes,
                            max_segment_count: limits.fleet_segment_count,
                        },
                    )
                })
                .collect(),
        ),
        ..RouterConfig::default()
    }
}

/// One MQTT CONNECT / CONNACK / DISCONNECT on `addr`.
pub(crate) async fn probe(addr: SocketAddr) -> Result<(), String> {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut out = BytesMut::new();
        let connect = Connect::new(format!(
            "central-broker-probe-{}",
            uuid::Uuid::new_v4().simple()
        ));
        Packet::Connect(connect)
            .write(&mut out, 1024)
            .map_err(|e| e.to_string())?;
        stream.write_all(&out).await.map_err(|e| e.to_string())?;
        let mut buf = BytesMut::with_capacity(64);
        let ack = loop {
            match Packet::read(&mut buf, 1024) {
                Ok(packet) => break packet,
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(e) => return Err(e.to_string()),
            }
            if stream.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
                return Err("closed before CONNACK".to_owned());
            }
        };
        match ack {
            Packet::ConnAck(ConnAck {
                code: ConnectReturnCode::Success,
                ..
            }) => {}
            other => return Err(format!("answered {other:?}")),
        }
        let mut out = BytesMut::new();
        Packet::Disconnect
            .write(&mut out, 16)
            .map_err(|e| e.to_string())?;
        stream.write_all(&out).await.map_err(|e| e.to_string())?;
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .map_err(|_| "no CONNACK within 2 s".to_owned())?
}
