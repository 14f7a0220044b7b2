//! The MQTT connection: one task polls rumqttc's event loop, reconnects
//! with backoff, and after every CONNACK subscribes to the device's `ack`
//! and `cmd` topics and publishes its retained `online` status before
//! anything else goes out.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use inspection_core::ids::{DeviceId, SiteId};
use inspection_core::topic::{Topic, TopicKind, TopicPrefix};
use inspection_core::wire::{self, DeviceState, MAX_PAYLOAD_BYTES, Status, V1};
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet,
    Publish, QoS, Request, Subscribe, SubscribeFilter, SubscribeReasonCode, TlsConfiguration,
    Transport,
};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::UplinkError;
use super::backoff::Backoff;
use super::config::UplinkConfig;
use super::metrics::UplinkMetrics;

/// What the connection task tells the uplink.
#[derive(Debug)]
pub(super) enum MqttEvent {
    /// A session is up and the subscriptions and online status are queued
    /// ahead of anything the uplink publishes next.
    Connected { session_present: bool },
    /// The session is gone; rumqttc reconnects after a backoff.
    Disconnected,
    /// A message on the device's `ack` or `cmd` topic.
    Message { kind: TopicKind, payload: Bytes },
    /// The client disconnected cleanly (after `disconnect`).
    Closed,
}

/// The device's topics as strings.
#[derive(Debug, Clone)]
pub(super) struct Topics {
    pub status: String,
    pub events: String,
    pub telemetry: String,
    pub ack: String,
    pub cmd: String,
}

impl Topics {
    pub fn new(prefix: &TopicPrefix, site: &SiteId, device: &DeviceId) -> Self {
        let t = |kind| Topic::new(site.clone(), device.clone(), kind).render(prefix);
        Self {
            status: t(TopicKind::Status),
            events: t(TopicKind::Events),
            telemetry: t(TopicKind::Telemetry),
            ack: t(TopicKind::Ack),
            cmd: t(TopicKind::Cmd),
        }
    }
}

/// Everything the connection task needs to (re)build the session.
pub(super) struct Connection {
    pub site: SiteId,
    pub device: DeviceId,
    pub boot_id: Uuid,
    pub topics: Topics,
    pub backoff: Backoff,
    pub metrics: UplinkMetrics,
    /// When the current connection attempt began: the `at` of both its
    /// last will and its `online` status. Central keeps the status with the
    /// newest `at` (equal replaces), so this connection's will replaces its
    /// `online`, while the will of a connection taken over by a newer one
    /// (older `at`) cannot mark the device offline.
    pub opened_at: DateTime<Utc>,
}

/// The encoded status message.
pub(super) fn status_payload(
    site: &SiteId,
    device: &DeviceId,
    boot_id: Uuid,
    state: DeviceState,
    at: DateTime<Utc>,
) -> Result<Vec<u8>, UplinkError> {
    wire::encode(&Status {
        v: V1,
        site: site.clone(),
        device: device.clone(),
        state,
        at,
        boot_id,
        agent_version: crate::agent::AGENT_VERSION.to_owned(),
    })
    .map_err(|e| UplinkError::Wire(e.to_string()))
}

/// The client and its event loop, configured but not connected.
pub(super) fn client(
    config: &UplinkConfig,
    conn: &Connection,
    tls: Option<rustls::ClientConfig>,
    token: Option<&str>,
) -> Result<(AsyncClient, EventLoop), UplinkError> {
    let endpoint = config.mqtt_endpoint().map_err(UplinkError::Config)?;
    let name = format!("{}/{}", conn.site, conn.device);
    let mut options = MqttOptions::new(name.clone(), endpoint.host, endpoint.port);
    // A persistent session: the broker keeps QoS 1 commands for the device
    // while it is away (as long as the broker itself keeps them).
    options.set_clean_session(false);
    options.set_keep_alive(config.keep_alive());
    // Events are at most MAX_PAYLOAD_BYTES; the topic and header come on top.
    options.set_max_packet_size(MAX_PAYLOAD_BYTES + 1024, MAX_PAYLOAD_BYTES + 1024);
    // Room for every event in flight plus telemetry and status.
    let inflight = u16::try_from(config.max_in_flight + 16).unwrap_or(u16::MAX);
    options.set_inflight(inflight);
    options.set_request_channel_capacity(config.max_in_flight * 2 + 32);
    if let Some(token) = token {
        options.set_credentials(name, token);
    }
    if endpoint.tls {
        let tls = tls.ok_or_else(|| UplinkError::Tls("mqtts:// needs a CA".into()))?;
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(tls),
        )));
    }
    options.set_last_will(will(conn, conn.opened_at)?);
    let capacity = options.request_channel_capacity();
    Ok(AsyncClient::new(options, capacity))
}

/// The last will: retained `offline`. Its `at` is when the connection was
/// opened, since the broker sends it unchanged.
fn will(conn: &Connection, at: DateTime<Utc>) -> Result<LastWill, UplinkError> {
    let payload = status_payload(
        &conn.site,
        &conn.device,
        conn.boot_id,
        DeviceState::Offline,
        at,
    )?;
    Ok(LastWill::new(
        conn.topics.status.clone(),
        payload,
        QoS::AtLeastOnce,
        true,
    ))
}

/// A stable code for a connection error (metric label).
pub(super) fn error_code(error: &ConnectionError) -> &'static str {
    match error {
        ConnectionError::MqttState(_) => "protocol",
        ConnectionError::NetworkTimeout => "connect_timeout",
        ConnectionError::FlushTimeout => "flush_timeout",
        ConnectionError::Tls(_) => "tls",
        ConnectionError::Io(_) => "io",
        ConnectionError::ConnectionRefused(_) => "refused",
        ConnectionError::NotConnAck(_) => "not_connack",
        ConnectionError::RequestsDone => "closed",
    }
}

/// Polls the event loop until the client disconnects cleanly (or the
/// uplink goes away). Never returns on a network error: it waits a backoff
/// and polls again, which reconnects.
pub(super) async fn drive(
    mut eventloop: EventLoop,
    mut conn: Connection,
    events: mpsc::UnboundedSender<MqttEvent>,
) {
    let mut connected = false;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                // rumqttc would resend what the old session left unacked;
                // the uplink re-publishes its in-flight events itself (it
                // tracks them by msg_id), so drop rumqttc's copies and put
                // the subscriptions and the online status first in line.
                eventloop.pending.clear();
                let subscribe = Subscribe::new_many([
                    SubscribeFilter::new(conn.topics.ack.clone(), QoS::AtLeastOnce),
                    SubscribeFilter::new(conn.topics.cmd.clone(), QoS::AtLeastOnce),
                ]);
                eventloop.pending.push_back(Request::Subscribe(subscribe));
                match status_payload(
                    &conn.site,
                    &conn.device,
                    conn.boot_id,
                    DeviceState::Online,
                    conn.opened_at,
                ) {
                    Ok(payload) => {
                        let mut online =
                            Publish::new(conn.topics.status.clone(), QoS::AtLeastOnce, payload);
                        online.retain = true;
                        eventloop.pending.push_back(Request::Publish(online));
                        conn.metrics.publish("status");
                    }
                    Err(error) => tracing::error!(%error, "cannot encode the online status"),
                }
                connected = true;
                conn.backoff.reset();
                conn.metrics.connects.inc();
                conn.metrics.connected.set(1);
                tracing::info!(
                    session_present = ack.session_present,
                    "connected to the MQTT broker"
                );
                if events
                    .send(MqttEvent::Connected {
                        session_present: ack.session_present,
                    })
                    .is_err()
                {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let kind = if p.topic == conn.topics.ack {
                    TopicKind::Ack
                } else if p.topic == conn.topics.cmd {
                    TopicKind::Cmd
                } else {
                    tracing::warn!(topic = %p.topic, "message on a topic not subscribed to; ignored");
                    conn.metrics.bad_message("other", "topic");
                    continue;
                };
                if events
                    .send(MqttEvent::Message {
                        kind,
                        payload: p.payload,
                    })
                    .is_err()
                {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, SubscribeReasonCode::Failure))
                {
                    // Without the ack topic nothing ever leaves the outbox:
                    // the broker's ACL does not match this device's name.
                    tracing::error!(
                        codes = ?ack.return_codes,
                        "the broker refused a subscription to the ack or cmd topic"
                    );
                    conn.metrics.disconnect("subscribe_refused");
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                conn.metrics.connected.set(0);
                let _ = events.send(MqttEvent::Closed);
                return;
            }
            Ok(_) => {}
            Err(error) => {
                let code = error_code(&error);
                conn.metrics.disconnect(code);
                conn.metrics.connected.set(0);
                if connected {
                    connected = false;
                    tracing::warn!(%error, code, "MQTT connection lost");
                    if events.send(MqttEvent::Disconnected).is_err() {
                        return;
                    }
                } else {
                    tracing::warn!(%error, code, "cannot connect to the MQTT broker");
                }
                if matches!(error, ConnectionError::RequestsDone) {
                    // Every client handle is gone: nobody can publish again.
                    let _ = events.send(MqttEvent::Closed);
                    return;
                }
                // The will's `at` says when this next connection opened.
                conn.opened_at = Utc::now();
                match will(&conn, conn.opened_at) {
                    Ok(w) => {
                        eventloop.mqtt_options.set_last_will(w);
                    }
                    Err(error) => tracing::error!(%error, "cannot encode the last will"),
                }
                let delay = conn.backoff.next_delay();
                conn.metrics.backoff("mqtt", delay);
                tokio::time::sleep(delay).await;
            }
        }
    }
}
