//! The device-facing MQTT gateway: one task per connection that
//! authenticates the client, inspects every packet it sends against the ACL
//! and forwards what is allowed to the embedded rumqttd.
//!
//! DESIGN
//! - Client to broker: every packet is parsed (MQTT 3.1.1, rumqttc's
//!   codec) and re-encoded; nothing unparsed reaches rumqttd. Broker to
//!   client: frames are cut at packet boundaries and copied as they are.
//! - One writer task per connection owns the client's write half and is fed
//!   whole frames through a channel, from rumqttd's side and from the
//!   gateway itself (the PUBACK, PUBREC, PUBCOMP and SUBACK it answers for
//!   denied packets), so injected packets never split a forwarded one.
//! - A denied PUBLISH is dropped and, at QoS 1, acknowledged by the gateway
//!   (at QoS 2 it answers PUBREC, then PUBCOMP for the PUBREL), as
//!   mosquitto does, so a well-behaved client does not resend it forever.
//! - A SUBSCRIBE with any denied filter is not forwarded at all: the gateway
//!   answers a SUBACK with 0x80 (failure) for every filter of it. Splitting
//!   the packet would mean rewriting rumqttd's SUBACK; refusing it whole is
//!   simpler and a client asking for a foreign topic is misconfigured anyway.
//! - Client ids are namespaced by principal before rumqttd sees them
//!   (`d:{site}:{device}:{id}`, `s:{service}:{id}`), so no client can take
//!   over another device's session; user name and password are stripped.
//!   rumqttd refuses `+`, `$`, `#` and `/` in client ids; the gateway
//!   answers such a CONNECT with "identifier rejected" itself.
//! - Either side closing closes both. The client's DISCONNECT is forwarded
//!   (rumqttd then discards the last will); any other end of the client
//!   connection closes rumqttd's side without one, and the will fires.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use inspection_core::topic::TopicPrefix;
use inspection_core::wire::MAX_PAYLOAD_BYTES;
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, Packet, PubAck, PubComp, PubRec, SubAck,
    SubscribeReasonCode,
};
use rumqttc::mqttbytes::{Error as CodecError, Protocol, QoS};
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::BrokerMetrics;
use super::acl;
use crate::auth::{Credentials, Principal};

/// What every connection task shares.
pub(crate) struct Shared {
    pub(crate) prefix: TopicPrefix,
    pub(crate) credentials: Credentials,
    pub(crate) metrics: BrokerMetrics,
    pub(crate) internal: SocketAddr,
    pub(crate) connect_timeout: Duration,
    pub(crate) max_packet_bytes: usize,
}

/// What the TLS layer says about the client.
pub(crate) enum PeerCertificate {
    /// Plain listener, or TLS without a client certificate.
    None,
    /// A verified certificate naming this device.
    Device(Principal),
    /// A verified certificate whose subject is not `site/device`.
    Unusable(String),
}

impl PeerCertificate {
    pub(crate) fn from_chain(chain: Option<&[CertificateDer<'static>]>) -> Self {
        match chain.and_then(|c| c.first()) {
            None => PeerCertificate::None,
            Some(cert) => match crate::tls::certificate_device(cert) {
                Ok((site, device)) => PeerCertificate::Device(Principal::Device { site, device }),
                Err(e) => PeerCertificate::Unusable(e.to_string()),
            },
        }
    }
}

/// Why reading a packet stopped.
enum ReadError {
    Closed,
    Io(std::io::Error),
    Oversize(usize),
    Malformed(CodecError),
}

/// Reads one whole packet from `reader`, buffering in `buf`.
async fn read_packet<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Packet, ReadError> {
    loop {
        match Packet::read(buf, max) {
            Ok(packet) => return Ok(packet),
            Err(CodecError::InsufficientBytes(_)) => {}
            Err(CodecError::PayloadSizeLimitExceeded(n)) => return Err(ReadError::Oversize(n)),
            Err(e) => return Err(ReadError::Malformed(e)),
        }
        match reader.read_buf(buf).await {
            Ok(0) => return Err(ReadError::Closed),
            Ok(_) => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
}

/// Reads one whole frame without decoding it (broker to client).
async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> Result<(u8, Bytes), ReadError> {
    loop {
        match rumqttc::mqttbytes::check(buf.iter(), max) {
            Ok(header) => {
                let byte1 = buf[0];
                return Ok((byte1, buf.split_to(header.frame_length()).freeze()));
            }
            Err(CodecError::InsufficientBytes(_)) => {}
            Err(CodecError::PayloadSizeLimitExceeded(n)) => return Err(ReadError::Oversize(n)),
            Err(e) => return Err(ReadError::Malformed(e)),
        }
        match reader.read_buf(buf).await {
            Ok(0) => return Err(ReadError::Closed),
            Ok(_) => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
}

fn encode(packet: &Packet, max: usize) -> Option<Bytes> {
    let mut out = BytesMut::with_capacity(packet.size());
    packet.write(&mut out, max).ok()?;
    Some(out.freeze())
}

fn packet_name(packet: &Packet) -> &'static str {
    match packet {
        Packet::Connect(_) => "connect",
        Packet::ConnAck(_) => "connack",
        Packet::Publish(_) => "publish",
        Packet::PubAck(_) => "puback",
        Packet::PubRec(_) => "pubrec",
        Packet::PubRel(_) => "pubrel",
        Packet::PubComp(_) => "pubcomp",
        Packet::Subscribe(_) => "subscribe",
        Packet::SubAck(_) => "suback",
        Packet::Unsubscribe(_) => "unsubscribe",
        Packet::UnsubAck(_) => "unsuback",
        Packet::PingReq => "pingreq",
        Packet::PingResp => "pingresp",
        Packet::Disconnect => "disconnect",
    }
}

fn type_name(byte1: u8) -> &'static str {
    match byte1 >> 4 {
        1 => "connect",
        2 => "connack",
        3 => "publish",
        4 => "puback",
        5 => "pubrec",
        6 => "pubrel",
        7 => "pubcomp",
        8 => "subscribe",
        9 => "suback",
        10 => "unsubscribe",
        11 => "unsuback",
        12 => "pingreq",
        13 => "pingresp",
        14 => "disconnect",
        _ => "invalid",
    }
}

/// Writes a CONNACK refusing the connection, best effort.
async fn refuse<W: AsyncWrite + Unpin>(writer: &mut W, code: ConnectReturnCode) {
    if let Some(bytes) = encode(&Packet::ConnAck(ConnAck::new(code, false)), 16) {
        let _ = writer.write_all(&bytes).await;
        let _ = writer.shutdown().await;
    }
}

/// Who the client is: from its certificate, its user name and token, or both
/// (then they must agree). Err carries the CONNACK code and metric reason.
fn authenticate(
    shared: &Shared,
    cert: &PeerCertificate,
    connect: &Connect,
) -> Result<Principal, (ConnectReturnCode, &'static str)> {
    let login = connect
        .login
        .as_ref()
        .filter(|l| !l.username.is_empty() || !l.password.is_empty());
    match (cert, login) {
        (PeerCertificate::Unusable(_), _) => {
            Err((ConnectReturnCode::NotAuthorized, "bad_certificate"))
        }
        (PeerCertificate::Device(principal), None) => Ok(principal.clone()),
        (PeerCertificate::Device(principal), Some(login)) => {
            if login.username != principal.label() {
                return Err((ConnectReturnCode::NotAuthorized, "identity_mismatch"));
            }
            if login.password.is_empty() {
                return Ok(principal.clone());
            }
            match shared
                .credentials
                .authenticate(&login.username, login.password.as_bytes())
            {
                Some(p) if p == *principal => Ok(p),
                _ => Err((ConnectReturnCode::BadUserNamePassword, "bad_token")),
            }
        }
        (PeerCertificate::None, None) => Err((ConnectReturnCode::NotAuthorized, "no_credentials")),
        (PeerCertificate::None, Some(login)) => shared
            .credentials
            .authenticate(&login.username, login.password.as_bytes())
            .ok_or((ConnectReturnCode::BadUserNamePassword, "bad_token")),
    }
}

/// Characters rumqttd refuses in a client id.
const RUMQTTD_CLIENT_ID_FORBIDDEN: [char; 4] = ['+', '$', '#', '/'];

fn namespaced_client_id(principal: &Principal, client_id: &str) -> String {
    let id = if client_id.is_empty() {
        // MQTT lets the server assign one; it must be unique per connection.
        format!("auto-{}", uuid::Uuid::new_v4().simple())
    } else {
        // rumqttd refuses these characters; the id only has to be unique
        // within its principal's namespace, so a replacement is enough
        // (boards use `site/device`, as mosquitto expects).
        client_id.replace(RUMQTTD_CLIENT_ID_FORBIDDEN, "_")
    };
    // `:` is outside the id alphabet, so `d:{site}:{device}:` is unambiguous.
    match principal {
        Principal::Device { site, device } => format!("d:{site}:{device}:{id}"),
        Principal::Service { name } => {
            let name = name.replace(RUMQTTD_CLIENT_ID_FORBIDDEN, "_");
            format!("s:{name}:{id}")
        }
    }
}

/// Handles one client connection from the first byte after the TLS
/// handshake (or TCP accept) to its close. `deadline` bounds the wait for
/// CONNECT.
pub(crate) async fn serve<S>(
    shared: Arc<Shared>,
    listener: &'static str,
    stream: S,
    cert: PeerCertificate,
    peer: SocketAddr,
    deadline: Instant,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let metrics = &shared.metrics;
    let max = shared.max_packet_bytes;
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut buf = BytesMut::with_capacity(4096);

    // 1. The first packet must be an MQTT 3.1.1 CONNECT, within the deadline.
    let first =
        match tokio::time::timeout_at(deadline, read_packet(&mut reader, &mut buf, max)).await {
            Err(_) => {
                metrics.connection(listener, "timeout");
                debug!(%peer, listener, "no CONNECT in time; closed");
                return;
            }
            Ok(Err(e)) => {
                if let ReadError::Oversize(_) = e {
                    metrics.oversize_packets.inc();
                }
                metrics.connection(listener, "bad_connect");
                debug!(%peer, listener, "unreadable first packet; closed");
                return;
            }
            Ok(Ok(packet)) => packet,
        };
    metrics.packet("in", packet_name(&first));
    let Packet::Connect(mut connect) = first else {
        metrics.connection(listener, "bad_connect");
        debug!(%peer, listener, "first packet is not CONNECT; closed");
        return;
    };
    if connect.protocol != Protocol::V4 {
        metrics.connection(listener, "bad_connect");
        refuse(&mut writer, ConnectReturnCode::RefusedProtocolVersion).await;
        return;
    }
    if connect.keep_alive == 0 {
        // rumqttd drops such clients without a CONNACK (it wants every
        // connection to prove it is alive); say so here instead.
        metrics.connection(listener, "bad_connect");
        warn!(%peer, listener, "CONNECT with keep-alive 0 refused (not supported by the embedded broker)");
        refuse(&mut writer, ConnectReturnCode::ServiceUnavailable).await;
        return;
    }
    if connect.client_id.is_empty() && !connect.clean_session {
        metrics.connection(listener, "bad_connect");
        refuse(&mut writer, ConnectReturnCode::BadClientId).await;
        return;
    }

    // 2. Authenticate and check the last will.
    let principal = match authenticate(&shared, &cert, &connect) {
        Ok(p) => p,
        Err((code, reason)) => {
            metrics.auth_failure(reason);
            metrics.connection(listener, "refused_auth");
            // The user name only when it has the shape of a device or
            // service name: a client that put its password or token in
            // that field must not have it written to the log.
            let user = connect
                .login
                .as_ref()
                .map(|l| l.username.as_str())
                .filter(|u| looks_like_a_name(u));
            warn!(%peer, listener, reason, user, "CONNECT refused: not authenticated");
            refuse(&mut writer, code).await;
            return;
        }
    };
    if let Some(will) = &connect.last_will
        && !acl::may_set_will(&shared.prefix, &principal, &will.topic)
    {
        metrics.denied("will", 1);
        metrics.connection(listener, "refused_acl");
        warn!(%peer, principal = %principal.label(), topic = %will.topic, "CONNECT refused: last will on a topic the client may not use");
        refuse(&mut writer, ConnectReturnCode::NotAuthorized).await;
        return;
    }

    // 3. Open the connection to rumqttd and hand it the rewritten CONNECT.
    let upstream = match TcpStream::connect(shared.internal).await {
        Ok(s) => s,
        Err(error) => {
            metrics.connection(listener, "upstream_unavailable");
            warn!(%peer, %error, internal = %shared.internal, "embedded broker unreachable");
            refuse(&mut writer, ConnectReturnCode::ServiceUnavailable).await;
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    let (mut up_reader, mut up_writer) = upstream.into_split();
    connect.client_id = namespaced_client_id(&principal, &connect.client_id);
    connect.login = None;
    let Some(bytes) = encode(&Packet::Connect(connect), max) else {
        metrics.connection(listener, "bad_connect");
        return;
    };
    if up_writer.write_all(&bytes).await.is_err() {
        metrics.connection(listener, "upstream_unavailable");
        refuse(&mut writer, ConnectReturnCode::ServiceUnavailable).await;
        return;
    }
    metrics.connection(listener, "authenticated");
    metrics.active.inc();
    info!(%peer, listener, principal = %principal.label(), "client connected");

    // 4. The writer task and the broker-to-client pump.
    let (tx, mut rx) = mpsc::channel::<Bytes>(64);
    let writer_task = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if writer.write_all(&frame).await.is_err() {
                return;
            }
        }
        let _ = writer.shutdown().await;
    });
    let up_tx = tx.clone();
    let up_metrics = metrics.clone();
    let mut upstream_task = tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(4096);
        // rumqttd caps what it forwards at the same packet size.
        while let Ok((byte1, frame)) = read_frame(&mut up_reader, &mut buf, max).await {
            up_metrics.packet("out", type_name(byte1));
            if up_tx.send(frame).await.is_err() {
                break;
            }
        }
    });

    // 5. Client to broker: inspect, forward or answer.
    let end = {
        let client = ClientPump {
            shared: &shared,
            principal: &principal,
            tx: &tx,
            denied_qos2: HashSet::new(),
        };
        let pump = client.run(&mut reader, &mut buf, &mut up_writer);
        tokio::select! {
            end = pump => end,
            _ = &mut upstream_task => "broker_closed",
            _ = shutdown.wait_for(|stop| *stop) => "shutdown",
        }
    };
    // Closing rumqttd's side without DISCONNECT fires the will, as a
    // dropped device connection should.
    let _ = up_writer.shutdown().await;
    drop(up_writer);
    upstream_task.abort();
    drop(tx);
    if tokio::time::timeout(Duration::from_secs(5), writer_task)
        .await
        .is_err()
    {
        debug!(%peer, "client write side did not drain within 5 s");
    }
    metrics.active.dec();
    info!(%peer, listener, principal = %principal.label(), end, "client disconnected");
}

struct ClientPump<'a> {
    shared: &'a Shared,
    principal: &'a Principal,
    tx: &'a mpsc::Sender<Bytes>,
    /// QoS 2 packet ids the gateway answered PUBREC for (denied publishes):
    /// their PUBREL is answered here too, never forwarded.
    denied_qos2: HashSet<u16>,
}

impl ClientPump<'_> {
    async fn reply(&self, packet: Packet) -> Result<(), &'static str> {
        let bytes = encode(&packet, 1024).ok_or("encode")?;
        self.shared.metrics.packet("out", packet_name(&packet));
        self.tx.send(bytes).await.map_err(|_| "client_closed")
    }

    /// Runs until the client disconnects or breaks a rule; returns why.
    async fn run<R, W>(
        mut self,
        reader: &mut R,
        buf: &mut BytesMut,
        upstream: &mut W,
    ) -> &'static str
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let metrics = &self.shared.metrics;
        let prefix = &self.shared.prefix;
        let label = self.principal.label();
        let max = self.shared.max_packet_bytes;
        loop {
            let packet = match read_packet(reader, buf, max).await {
                Ok(p) => p,
                Err(ReadError::Closed) => return "client_closed",
                Err(ReadError::Io(error)) => {
                    debug!(principal = %label, %error, "client read failed");
                    return "client_error";
                }
                Err(ReadError::Oversize(size)) => {
                    metrics.oversize_packets.inc();
                    warn!(principal = %label, size, max, "packet over max_packet_bytes; closing");
                    return "oversize";
                }
                Err(ReadError::Malformed(error)) => {
                    metrics.protocol_error("malformed");
                    warn!(principal = %label, %error, "malformed packet; closing");
                    return "malformed";
                }
            };
            metrics.packet("in", packet_name(&packet));
            let forward = match &packet {
                Packet::Publish(publish) => {
                    if publish.payload.len() > MAX_PAYLOAD_BYTES {
                        metrics.oversize_packets.inc();
                        warn!(principal = %label, size = publish.payload.len(), max = MAX_PAYLOAD_BYTES, "payload over the wire limit; closing");
                        return "oversize";
                    }
                    if acl::may_publish(prefix, self.principal, &publish.topic) {
                        true
                    } else {
                        metrics.denied("publish", 1);
                        warn!(principal = %label, topic = %publish.topic, "PUBLISH denied by the ACL; dropped");
                        let answer = match publish.qos {
                            QoS::AtMostOnce => None,
                            QoS::AtLeastOnce => Some(Packet::PubAck(PubAck::new(publish.pkid))),
                            QoS::ExactlyOnce => {
                                self.denied_qos2.insert(publish.pkid);
                                Some(Packet::PubRec(PubRec::new(publish.pkid)))
                            }
                        };
                        if let Some(answer) = answer
                            && let Err(end) = self.reply(answer).await
                        {
                            return end;
                        }
                        false
                    }
                }
                Packet::PubRel(rel) if self.denied_qos2.remove(&rel.pkid) => {
                    if let Err(end) = self.reply(Packet::PubComp(PubComp::new(rel.pkid))).await {
                        return end;
                    }
                    false
                }
                Packet::Subscribe(subscribe) => {
                    let denied = subscribe
                        .filters
                        .iter()
                        .filter(|f| !acl::may_subscribe(prefix, self.principal, &f.path))
                        .count();
                    if denied == 0 {
                        true
                    } else {
                        metrics.denied("subscribe", denied as u64);
                        let filters: Vec<&str> =
                            subscribe.filters.iter().map(|f| f.path.as_str()).collect();
                        warn!(principal = %label, ?filters, denied, "SUBSCRIBE denied by the ACL; refused whole");
                        let codes = vec![SubscribeReasonCode::Failure; subscribe.filters.len()];
                        if let Err(end) = self
                            .reply(Packet::SubAck(SubAck::new(subscribe.pkid, codes)))
                            .await
                        {
                            return end;
                        }
                        false
                    }
                }
                Packet::Connect(_) => {
                    metrics.protocol_error("second_connect");
                    warn!(principal = %label, "second CONNECT; closing");
                    return "second_connect";
                }
                Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                    metrics.protocol_error("server_packet");
                    warn!(principal = %label, packet = packet_name(&packet), "client sent a server-only packet; closing");
                    return "server_packet";
                }
                Packet::PubAck(_)
                | Packet::PubRec(_)
                | Packet::PubRel(_)
                | Packet::PubComp(_)
                | Packet::Unsubscribe(_)
                | Packet::PingReq
                | Packet::Disconnect => true,
            };
            if forward {
                let Some(bytes) = encode(&packet, max) else {
                    metrics.protocol_error("encode");
                    return "encode";
                };
                if upstream.write_all(&bytes).await.is_err() {
                    return "broker_closed";
                }
            }
            if matches!(packet, Packet::Disconnect) {
                return "disconnect";
            }
        }
    }
}

/// `site/device` or a service name: at most 129 characters of the id
/// alphabet with at most one `/`, no part of 32 or more hex digits (a
/// token).
fn looks_like_a_name(user: &str) -> bool {
    let ids = user.split('/').collect::<Vec<_>>();
    ids.len() <= 2
        && user.len() <= 129
        && ids.iter().all(|id| {
            !id.is_empty()
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                && !(id.len() >= 32 && id.chars().all(|c| c.is_ascii_hexdigit()))
        })
}

#[cfg(test)]
mod tests {
    use super::looks_like_a_name;

    #[test]
    fn only_names_are_logged_as_user_names() {
        assert!(looks_like_a_name("de-muc/bay-03"));
        assert!(looks_like_a_name("bridge"));
        assert!(!looks_like_a_name("PgPass-4f9d1c7e2b with spaces"));
        assert!(!looks_like_a_name(&"ab12".repeat(16)), "a 64-hex token");
        assert!(
            !looks_like_a_name(&format!("site/{}", "ab12".repeat(16))),
            "a token after the site"
        );
        assert!(!looks_like_a_name("a/b/c"));
        assert!(!looks_like_a_name("secret=1"));
        assert!(!looks_like_a_name(""));
    }
}
