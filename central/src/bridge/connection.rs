//! The broker side of the bridge: polls rumqttc's event loop, subscribes on
//! every connection, reconnects with backoff, and hands incoming publishes
//! to the worker through a bounded channel (a full channel stops polling).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{
    ConnectReturnCode, Event, EventLoop, Outgoing, Packet, QoS, Request, Subscribe,
    SubscribeFilter, SubscribeReasonCode,
};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use super::{BridgeHealth, BridgeMetrics, backoff};

/// A publish as received, with the connection it arrived on.
#[derive(Debug)]
pub(super) struct Received {
    pub publish: rumqttc::Publish,
    /// Incremented at every connection: a PUBACK is only valid on the
    /// connection its publish arrived on.
    pub epoch: u64,
    pub at: Instant,
    pub received_at: chrono::DateTime<chrono::Utc>,
}

const RECONNECT_BASE: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(30);
/// How long a graceful shutdown waits for the last acks and the DISCONNECT
/// to reach the broker.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) struct Connection {
    pub eventloop: EventLoop,
    pub filters: Vec<String>,
    pub tx: mpsc::Sender<Received>,
    /// Becomes true when the worker has finished and asked to disconnect.
    pub done: watch::Receiver<bool>,
    pub epoch: Arc<AtomicU64>,
    pub metrics: BridgeMetrics,
    pub health: BridgeHealth,
}

impl Connection {
    pub async fn run(mut self) {
        let mut attempt = 0u32;
        loop {
            if *self.done.borrow() {
                break;
            }
            let event = tokio::select! {
                biased;
                _ = self.done.changed() => break,
                event = self.eventloop.poll() => event,
            };
            match event {
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let received = Received {
                        publish,
                        epoch: self.epoch.load(Ordering::SeqCst),
                        at: Instant::now(),
                        received_at: chrono::Utc::now(),
                    };
                    // Blocks while the worker cannot take more: the bounded
                    // channel is the bridge's backpressure.
                    tokio::select! {
                        biased;
                        _ = self.done.changed() => break,
                        sent = self.tx.send(received) => if sent.is_err() { break },
                    }
                }
                Ok(Event::Incoming(Packet::ConnAck(connack))) => {
                    attempt = 0;
                    let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
                    self.metrics.connections.inc();
                    self.health.set_connected(&self.metrics, true);
                    info!(
                        session_present = connack.session_present,
                        epoch, "bridge connected to the broker"
                    );
                    // Subscribing again on a resumed session is harmless, and
                    // covers a broker that lost the session. Queued ahead of
                    // anything the worker sends.
                    let filters = self
                        .filters
                        .iter()
                        .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
                    self.eventloop
                        .pending
                        .push_front(Request::Subscribe(Subscribe::new_many(filters)));
                }
                Ok(Event::Incoming(Packet::SubAck(suback))) => {
                    let refused = suback
                        .return_codes
                        .iter()
                        .filter(|c| matches!(c, SubscribeReasonCode::Failure))
                        .count();
                    if refused > 0 {
                        self.metrics.subscribe_failures.inc_by(refused as u64);
                        error!(
                            refused,
                            filters = ?self.filters,
                            "the broker refused bridge subscriptions (check its ACL for the bridge user)"
                        );
                    } else {
                        self.health.set_subscribed(&self.metrics, true);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    self.metrics.connection_errors.inc();
                    self.health.set_connected(&self.metrics, false);
                    let delay = backoff(attempt, RECONNECT_BASE, RECONNECT_MAX);
                    attempt = attempt.saturating_add(1);
                    let refused = matches!(
                        &e,
                        rumqttc::ConnectionError::ConnectionRefused(
                            ConnectReturnCode::BadUserNamePassword
                                | ConnectReturnCode::NotAuthorized
                        )
                    );
                    if refused {
                        error!(error = %e, retry_in = ?delay, "the broker refused the bridge's credentials");
                    } else {
                        warn!(error = %e, retry_in = ?delay, "bridge lost the broker connection");
                    }
                    tokio::select! {
                        biased;
                        _ = self.done.changed() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        self.drain().await;
        self.health.set_connected(&self.metrics, false);
    }

    /// Sends what the worker queued last (acks, PUBACKs, DISCONNECT) while
    /// connected, bounded in time. Publishes arriving now are not handed
    /// on: unacknowledged, the broker redelivers them.
    async fn drain(&mut self) {
        if !self.health.is_connected() {
            return;
        }
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        loop {
            let event = tokio::select! {
                event = self.eventloop.poll() => event,
                _ = tokio::time::sleep_until(deadline) => {
                    warn!("bridge shutdown: the broker did not take the last messages in time");
                    return;
                }
            };
            match event {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}
