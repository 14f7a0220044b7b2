//! The broker role with real clients: rumqttc devices over TLS with client
//! certificates from `central certs`, services with tokens, raw TCP for
//! protocol abuse, and Debian's `mosquitto_pub`/`mosquitto_sub` as foreign
//! clients. Every denial is checked on the wire and in the metrics.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcp};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use central::broker::{BrokerAddrs, BrokerConfig, BrokerMetrics, BrokerServer};
use central::certs::{DevPki, append_device_credential, append_service_credential, new_token};
use central::tls::{ServerTlsConfig, client_config};
use inspection_core::ids::{DeviceId, SiteId};
use inspection_core::topic::TopicPrefix;
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, LastWill, MqttOptions, Packet, QoS,
    SubscribeReasonCode, TlsConfiguration, Transport,
};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(15);

/// A broker with TLS (client certificates required), a plain listener, a
/// credentials file with the `bridge` service and device `s1/d3`, and
/// certificates for devices `s1/d1` and `s1/d2`.
struct Fixture {
    dir: tempfile::TempDir,
    pki: DevPki,
    bridge_token: String,
    d3_token: String,
    addrs: BrokerAddrs,
    metrics: BrokerMetrics,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn ids(site: &str, device: &str) -> (SiteId, DeviceId) {
    (SiteId::new(site).unwrap(), DeviceId::new(device).unwrap())
}

impl Fixture {
    async fn start() -> Fixture {
        Self::start_with(|_| {}).await
    }

    async fn start_with(tune: impl FnOnce(&mut BrokerConfig)) -> Fixture {
        // Shown only for a failing test.
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info,central=debug")
            .with_test_writer()
            .try_init();
        central::tls::install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = DevPki::new(dir.path().join("pki"));
        pki.ensure_ca().expect("ca");
        pki.issue_server(&["127.0.0.1".into(), "localhost".into()], 2)
            .expect("server certificate");
        for device in ["d1", "d2"] {
            let (site, device) = ids("s1", device);
            pki.issue_device(&site, &device, 2)
                .expect("device certificate");
        }
        let creds = dir.path().join("credentials.toml");
        let bridge_token = new_token();
        append_service_credential(&creds, "bridge", &bridge_token).expect("bridge token");
        let d3_token = new_token();
        let (site, device) = ids("s1", "d3");
        append_device_credential(&creds, &site, &device, &d3_token).expect("device token");

        let mut config = BrokerConfig {
            internal_listen: "127.0.0.1:0".parse().unwrap(),
            tls_listen: Some("127.0.0.1:0".parse().unwrap()),
            tls: Some(ServerTlsConfig {
                cert: pki.server_cert(),
                key: pki.server_key(),
                client_ca: Some(pki.ca_cert()),
                client_cert_optional: false,
            }),
            plain_listen: Some("127.0.0.1:0".parse().unwrap()),
            credentials: Some(creds),
            ..BrokerConfig::default()
        };
        tune(&mut config);
        let credentials = config.load_credentials().expect("credentials");
        assert_eq!(credentials.len(), 2);
        let metrics = BrokerMetrics::default();
        let server = BrokerServer::bind(
            &config,
            TopicPrefix::default(),
            credentials,
            metrics.clone(),
        )
        .await
        .expect("broker binds");
        let addrs = server.local_addr();
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            server.run(rx).await.expect("broker runs");
        });
        Fixture {
            dir,
            pki,
            bridge_token,
            d3_token,
            addrs,
            metrics,
            shutdown,
            task,
        }
    }

    fn device_files(&self, device: &str) -> (PathBuf, PathBuf) {
        let (site, device) = ids("s1", device);
        self.pki.device_files(&site, &device)
    }

    /// rumqttc options for a device over TLS with its certificate.
    fn device_options(&self, device: &str) -> MqttOptions {
        let (cert, key) = self.device_files(device);
        let tls = client_config(&self.pki.ca_cert(), Some((&cert, &key))).expect("client TLS");
        let addr = self.addrs.tls.expect("tls listener");
        let mut options = MqttOptions::new(format!("dev-{device}"), "127.0.0.1", addr.port());
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
        options.set_keep_alive(Duration::from_secs(30));
        options
    }

    /// rumqttc options for the bridge service on the plain listener.
    fn bridge_options(&self, id: &str) -> MqttOptions {
        let addr = self.addrs.plain.expect("plain listener");
        let mut options = MqttOptions::new(id, "127.0.0.1", addr.port());
        options.set_credentials("bridge", self.bridge_token.clone());
        options.set_keep_alive(Duration::from_secs(30));
        options
    }

    async fn stop(self) {
        self.shutdown.send(true).expect("broker still running");
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("broker stops within the wait")
            .expect("broker task");
        drop(self.dir);
    }
}

/// A rumqttc client whose event loop runs in a task, its events on a channel.
struct Client {
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<Result<Event, String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Client {
    fn start(options: MqttOptions) -> Client {
        let (client, mut eventloop): (AsyncClient, EventLoop) = AsyncClient::new(options, 64);
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(event) => {
                        if tx.send(Ok(event)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        // Stop rather than reconnect in a loop: the tests
                        // look at the first failure.
                        let _ = tx.send(Err(format!("{e:?}")));
                        return;
                    }
                }
            }
        });
        Client {
            client,
            events,
            task,
        }
    }

    /// The next incoming packet that `pick` accepts; panics on a connection
    /// error or after `WAIT`.
    async fn expect<T>(&mut self, what: &str, mut pick: impl FnMut(&Packet) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
                .unwrap_or_else(|| panic!("event loop ended before {what}"));
            match event {
                Ok(Event::Incoming(packet)) => {
                    if let Some(found) = pick(&packet) {
                        return found;
                    }
                }
                Ok(Event::Outgoing(_)) => {}
                Err(e) => panic!("connection failed while waiting for {what}: {e}"),
            }
        }
    }

    async fn connected(&mut self) {
        self.expect("CONNACK", |p| match p {
            Packet::ConnAck(ack) => {
                assert_eq!(ack.code, ConnectReturnCode::Success);
                Some(())
            }
            _ => None,
        })
        .await
    }

    /// The first connection error (e.g. a refused CONNACK).
    async fn failure(&mut self) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .expect("no connection error within the wait")
                .expect("event loop ended without an error");
            if let Err(e) = event {
                return e;
            }
        }
    }

    async fn subscribe(&mut self, filter: &str) -> SubscribeReasonCode {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("queue SUBSCRIBE");
        self.expect("SUBACK", |p| match p {
            Packet::SubAck(ack) => Some(ack.return_codes[0]),
            _ => None,
        })
        .await
    }

    /// Publishes at QoS 1 and waits for the PUBACK (from rumqttd or, for a
    /// denied publish, from the gateway).
    async fn publish_acked(&mut self, topic: &str, payload: &str) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .await
            .expect("queue PUBLISH");
        self.expect("PUBACK", |p| matches!(p, Packet::PubAck(_)).then_some(()))
            .await
    }

    /// The next message received: (topic, payload).
    async fn message(&mut self) -> (String, String) {
        self.expect("PUBLISH", |p| match p {
            Packet::Publish(publish) => Some((
                publish.topic.clone(),
                String::from_utf8_lossy(&publish.payload).into_owned(),
            )),
            _ => None,
        })
        .await
    }

    /// Ends the connection the hard way: the socket closes without DISCONNECT.
    fn kill(self) {
        self.task.abort();
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_publishes_its_own_events_and_the_bridge_receives_them() {
    let f = Fixture::start().await;
    let mut bridge = Client::start(f.bridge_options("bridge-1"));
    bridge.connected().await;
    assert_eq!(
        bridge
            .subscribe("$share/bridge/inspect/v1/+/+/events")
            .await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );
    let mut device = Client::start(f.device_options("d1"));
    device.connected().await;
    device
        .publish_acked("inspect/v1/s1/d1/events", "hello")
        .await;
    assert_eq!(
        bridge.message().await,
        ("inspect/v1/s1/d1/events".into(), "hello".into())
    );
    assert_eq!(f.metrics.connections("tls", "authenticated"), 1);
    assert_eq!(f.metrics.connections("plain", "authenticated"), 1);
    assert_eq!(f.metrics.acl_denied("publish"), 0);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_on_the_internal_port_needs_no_gateway() {
    let f = Fixture::start().await;
    let mut options = MqttOptions::new("in-process-bridge", "127.0.0.1", f.addrs.internal.port());
    options.set_keep_alive(Duration::from_secs(30));
    let mut bridge = Client::start(options);
    bridge.connected().await;
    bridge.subscribe("inspect/v1/+/+/telemetry").await;
    let mut device = Client::start(f.device_options("d1"));
    device.connected().await;
    device
        .publish_acked("inspect/v1/s1/d1/telemetry", "t1")
        .await;
    assert_eq!(bridge.message().await.1, "t1");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_to_another_devices_topic_is_dropped_counted_and_the_connection_stays_usable() {
    let f = Fixture::start().await;
    let mut bridge = Client::start(f.bridge_options("bridge-1"));
    bridge.connected().await;
    bridge.subscribe("inspect/v1/+/+/events").await;
    let mut d1 = Client::start(f.device_options("d1"));
    d1.connected().await;
    // The gateway answers the PUBACK itself, after counting the denial.
    d1.publish_acked("inspect/v1/s1/d2/events", "forged").await;
    assert_eq!(f.metrics.acl_denied("publish"), 1);
    // d2's own message on that topic lands in the same topic log after
    // anything rumqttd had appended for d1's attempt, so it arriving first
    // shows the forged one never got there.
    let mut d2 = Client::start(f.device_options("d2"));
    d2.connected().await;
    d2.publish_acked("inspect/v1/s1/d2/events", "marker").await;
    assert_eq!(
        bridge.message().await,
        ("inspect/v1/s1/d2/events".into(), "marker".into())
    );
    // d1 is still connected and may use its own topics.
    d1.publish_acked("inspect/v1/s1/d1/events", "own").await;
    assert_eq!(
        bridge.message().await,
        ("inspect/v1/s1/d1/events".into(), "own".into())
    );
    // Devices never publish on ack/cmd, even their own; services never on
    // device topics.
    d1.publish_acked("inspect/v1/s1/d1/cmd", "self-command")
        .await;
    bridge
        .publish_acked("inspect/v1/s1/d1/events", "spoofed")
        .await;
    assert_eq!(f.metrics.acl_denied("publish"), 3);
    // At QoS 2 the gateway completes the PUBREC / PUBREL / PUBCOMP exchange.
    d1.client
        .publish(
            "inspect/v1/s1/d2/events",
            QoS::ExactlyOnce,
            false,
            b"forged2".to_vec(),
        )
        .await
        .expect("queue PUBLISH");
    d1.expect("PUBCOMP", |p| matches!(p, Packet::PubComp(_)).then_some(()))
        .await;
    assert_eq!(f.metrics.acl_denied("publish"), 4);
    d1.publish_acked("inspect/v1/s1/d1/events", "still-here")
        .await;
    assert_eq!(bridge.message().await.1, "still-here");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_over_the_wire_limit_is_counted_never_forwarded_and_closes_the_connection() {
    use inspection_core::wire::MAX_PAYLOAD_BYTES;
    let f = Fixture::start().await;
    let mut bridge_options = f.bridge_options("bridge-big");
    bridge_options.set_max_packet_size(64 * 1024, 64 * 1024);
    let mut bridge = Client::start(bridge_options);
    bridge.connected().await;
    bridge.subscribe("inspect/v1/+/+/events").await;
    bridge.subscribe("inspect/v1/+/+/status").await;
    // The device's client would refuse to send it at rumqttc's 10 KiB default.
    let mut options = f.device_options("d1");
    options.set_max_packet_size(64 * 1024, 64 * 1024);
    options.set_last_will(LastWill::new(
        "inspect/v1/s1/d1/status",
        "offline",
        QoS::AtLeastOnce,
        false,
    ));
    let mut d1 = Client::start(options.clone());
    d1.connected().await;
    d1.publish_acked("inspect/v1/s1/d1/events", "before").await;
    assert_eq!(bridge.message().await.1, "before");

    // Over the 16 KiB wire limit, well under the gateway's 64 KiB packets:
    // a whole, well-formed PUBLISH on the device's own topic.
    let big = vec![b'x'; MAX_PAYLOAD_BYTES + 4 * 1024];
    assert!(big.len() + 64 < BrokerConfig::default().max_packet_bytes);
    d1.client
        .publish("inspect/v1/s1/d1/events", QoS::AtLeastOnce, false, big)
        .await
        .expect("queue PUBLISH");
    // The gateway does not drop it and carry on: it closes the connection
    // (no PUBACK), as for any packet over its limits.
    let error = d1.failure().await;
    // EOF (`ConnectionAborted`), or a reset should the close race the read.
    assert!(
        error.contains("ConnectionAborted") || error.contains("Io("),
        "{error}"
    );
    wait_until("the payload is counted", || {
        f.metrics.oversize_packets() == 1
    })
    .await;
    wait_until("the connection is gone", || {
        f.metrics.active_connections() == 1
    })
    .await;
    assert_eq!(f.metrics.acl_denied("publish"), 0);
    // rumqttd saw the connection end without DISCONNECT: the will, and
    // nothing of the big payload, reaches the subscriber.
    assert_eq!(
        bridge.message().await,
        ("inspect/v1/s1/d1/status".into(), "offline".into())
    );

    // The device reconnects; its next message is the next the bridge gets
    // on that topic, so the big one never got into rumqttd's log.
    let mut again = Client::start(options);
    again.connected().await;
    again
        .publish_acked("inspect/v1/s1/d1/events", "after")
        .await;
    assert_eq!(
        bridge.message().await,
        ("inspect/v1/s1/d1/events".into(), "after".into())
    );
    // Exactly the wire limit still goes through.
    let payload = "y".repeat(MAX_PAYLOAD_BYTES);
    again
        .publish_acked("inspect/v1/s1/d1/events", &payload)
        .await;
    assert_eq!(bridge.message().await.1.len(), MAX_PAYLOAD_BYTES);
    assert_eq!(f.metrics.oversize_packets(), 1);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_may_subscribe_to_its_own_cmd_only_and_receives_commands() {
    let f = Fixture::start().await;
    let mut d1 = Client::start(f.device_options("d1"));
    d1.connected().await;
    assert_eq!(
        d1.subscribe("inspect/v1/s1/d2/cmd").await,
        SubscribeReasonCode::Failure
    );
    assert_eq!(
        d1.subscribe("inspect/v1/+/+/events").await,
        SubscribeReasonCode::Failure
    );
    assert_eq!(f.metrics.acl_denied("subscribe"), 2);
    assert_eq!(
        d1.subscribe("inspect/v1/s1/d1/cmd").await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );
    assert_eq!(
        d1.subscribe("inspect/v1/s1/d1/ack").await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );
    let mut bridge = Client::start(f.bridge_options("bridge-cmd"));
    bridge.connected().await;
    bridge
        .publish_acked("inspect/v1/s1/d1/cmd", "{\"capture_now\":{}}")
        .await;
    assert_eq!(
        d1.message().await,
        ("inspect/v1/s1/d1/cmd".into(), "{\"capture_now\":{}}".into())
    );
    assert_eq!(f.metrics.acl_denied("subscribe"), 2);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_device_connection_delivers_its_offline_will_on_its_status_topic() {
    let f = Fixture::start().await;
    let mut bridge = Client::start(f.bridge_options("bridge-status"));
    bridge.connected().await;
    bridge.subscribe("inspect/v1/+/+/status").await;
    let mut options = f.device_options("d1");
    options.set_last_will(LastWill::new(
        "inspect/v1/s1/d1/status",
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    let mut d1 = Client::start(options);
    d1.connected().await;
    d1.publish_acked("inspect/v1/s1/d1/status", "online").await;
    assert_eq!(bridge.message().await.1, "online");
    // The TCP connection dies without DISCONNECT.
    d1.kill();
    assert_eq!(
        bridge.message().await,
        ("inspect/v1/s1/d1/status".into(), "offline".into())
    );
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_whose_will_names_another_devices_topic_is_refused() {
    let f = Fixture::start().await;
    let mut options = f.device_options("d1");
    options.set_last_will(LastWill::new(
        "inspect/v1/s1/d2/status",
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    let mut d1 = Client::start(options);
    let error = d1.failure().await;
    assert!(error.contains("NotAuthorized"), "{error}");
    assert_eq!(f.metrics.acl_denied("will"), 1);
    assert_eq!(f.metrics.connections("tls", "refused_acl"), 1);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_and_user_name_must_agree_and_tokens_must_match() {
    let f = Fixture::start().await;
    // d1's certificate, d3's user name and token.
    let mut options = f.device_options("d1");
    options.set_credentials("s1/d3", f.d3_token.clone());
    let error = Client::start(options).failure().await;
    assert!(error.contains("NotAuthorized"), "{error}");
    assert_eq!(f.metrics.auth_failures("identity_mismatch"), 1);
    // Matching user name, wrong token.
    let mut options = f.device_options("d1");
    options.set_credentials("s1/d1", "not-the-token");
    let error = Client::start(options).failure().await;
    assert!(error.contains("BadUserNamePassword"), "{error}");
    assert_eq!(f.metrics.auth_failures("bad_token"), 1);
    // A device with a token only, on the plain listener, is held to its own
    // topics like a certificate holder.
    let plain = f.addrs.plain.unwrap();
    let mut options = MqttOptions::new("d3", "127.0.0.1", plain.port());
    options.set_credentials("s1/d3", f.d3_token.clone());
    let mut d3 = Client::start(options);
    d3.connected().await;
    assert_eq!(
        d3.subscribe("inspect/v1/s1/d1/cmd").await,
        SubscribeReasonCode::Failure
    );
    // No credentials at all.
    let options = MqttOptions::new("anon", "127.0.0.1", plain.port());
    let error = Client::start(options).failure().await;
    assert!(error.contains("NotAuthorized"), "{error}");
    assert_eq!(f.metrics.auth_failures("no_credentials"), 1);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_max_connections_are_closed_at_accept() {
    let f = Fixture::start_with(|c| c.max_connections = 1).await;
    let mut d1 = Client::start(f.device_options("d1"));
    d1.connected().await;
    let plain = f.addrs.plain.unwrap();
    tokio::task::spawn_blocking(move || {
        let mut s = raw(plain);
        assert!(read_to_close(&mut s).is_empty());
    })
    .await
    .expect("raw client");
    assert_eq!(f.metrics.connections("plain", "over_limit"), 1);
    // The slot comes back when d1 leaves.
    d1.client.disconnect().await.expect("queue DISCONNECT");
    wait_until("d1's slot is released", || {
        f.metrics.active_connections() == 0
    })
    .await;
    let mut d2 = Client::start(f.device_options("d2"));
    d2.connected().await;
    f.stop().await;
}

/// A raw TCP client for protocol abuse.
fn raw(addr: SocketAddr) -> StdTcp {
    let stream = StdTcp::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    stream
}

/// Reads until the peer closes; panics if it does not within `WAIT`.
fn read_to_close(stream: &mut StdTcp) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("the gateway did not close the connection: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_silence_and_oversize_packets_are_closed_and_counted() {
    let f = Fixture::start_with(|c| c.connect_timeout_s = 1).await;
    let plain = f.addrs.plain.unwrap();
    let tls = f.addrs.tls.unwrap();
    let bridge_token = f.bridge_token.clone();
    tokio::task::spawn_blocking(move || {
        // Not MQTT at all: "GE" reads as a packet header announcing 69
        // bytes that never come, so it ends at the connect timeout.
        let mut s = raw(plain);
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert!(read_to_close(&mut s).is_empty());
        // A remaining length longer than MQTT's four bytes: malformed at once.
        let mut s = raw(plain);
        s.write_all(&[0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]).unwrap();
        assert!(read_to_close(&mut s).is_empty());
        // A valid packet that is not CONNECT (PINGREQ).
        let mut s = raw(plain);
        s.write_all(&[0xC0, 0x00]).unwrap();
        assert!(read_to_close(&mut s).is_empty());
        // Keep-alive 0, which rumqttd does not support: a CONNACK refusal.
        let mut s = raw(plain);
        let mut bytes = bytes::BytesMut::new();
        let mut packet = rumqttc::Connect::new("no-keepalive");
        packet.keep_alive = 0;
        Packet::Connect(packet).write(&mut bytes, 1024).unwrap();
        s.write_all(&bytes).unwrap();
        assert_eq!(read_to_close(&mut s), [0x20, 0x02, 0x00, 0x03]);
        // Nothing at all: closed after connect_timeout_s.
        let mut s = raw(plain);
        assert!(read_to_close(&mut s).is_empty());
        // Plain bytes on the TLS port.
        let mut s = raw(tls);
        s.write_all(&[0x10, 0x00]).unwrap();
        let _ = read_to_close(&mut s);
        // An authenticated client announcing a 1 MiB PUBLISH.
        let mut s = raw(plain);
        let mut connect = bytes::BytesMut::new();
        let mut packet = rumqttc::Connect::new("big");
        packet.set_login("bridge", bridge_token);
        Packet::Connect(packet).write(&mut connect, 1024).unwrap();
        s.write_all(&connect).unwrap();
        let mut connack = [0u8; 4];
        s.read_exact(&mut connack).unwrap();
        assert_eq!(connack, [0x20, 0x02, 0x00, 0x00], "CONNACK accepted");
        // Fixed header of a PUBLISH with remaining length 1 MiB.
        s.write_all(&[0x30, 0x80, 0x80, 0x40]).unwrap();
        let _ = read_to_close(&mut s);
    })
    .await
    .expect("raw clients");
    assert_eq!(f.metrics.connections("plain", "bad_connect"), 3);
    assert_eq!(f.metrics.connections("plain", "timeout"), 2);
    assert_eq!(f.metrics.tls_handshake_failures(), 1);
    assert_eq!(f.metrics.oversize_packets(), 1);
    f.stop().await;
}

/// mosquitto_sub as the bridge on the plain listener, subscribed before it
/// returns; the rest of its output comes from `finish`.
struct Sub {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Sub {
    fn start(f: &Fixture, filter: &str, count: usize) -> Sub {
        let plain = f.addrs.plain.unwrap();
        // Line-buffered, so the SUBACK line arrives while it runs.
        let mut child = Command::new("stdbuf")
            .args([
                "-oL",
                "mosquitto_sub",
                "-h",
                "127.0.0.1",
                "-p",
                &plain.port().to_string(),
            ])
            .args(["-u", "bridge", "-P", &f.bridge_token])
            .args(["-t", filter, "-q", "1", "-v", "-d"])
            .args(["-C", &count.to_string(), "-W", "20"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub (Debian mosquitto-clients; .ci/test.sh installs it)");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let Ok(line) = lines.recv_timeout(left) else {
                let _ = child.kill();
                let _ = child.wait();
                panic!("mosquitto_sub did not report its SUBACK within {WAIT:?}");
            };
            if line.contains("received SUBACK") {
                return Sub { child, lines };
            }
        }
    }

    /// The `topic payload` lines it printed, after it exits.
    fn finish(mut self) -> Vec<String> {
        let status = self.child.wait().expect("mosquitto_sub exits");
        let lines: Vec<String> = self.lines.iter().collect();
        assert!(status.success(), "mosquitto_sub: {status}\n{lines:#?}");
        lines
            .into_iter()
            .filter(|l| l.starts_with("inspect/"))
            .collect()
    }
}

fn mosquitto_pub(f: &Fixture, tls_device: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut command = Command::new("mosquitto_pub");
    command.args(["-h", "127.0.0.1"]);
    match tls_device {
        Some(device) => {
            command.args(["-p", &f.addrs.tls.unwrap().port().to_string()]);
            command.arg("--cafile").arg(f.pki.ca_cert());
            if !device.is_empty() {
                let (cert, key) = f.device_files(device);
                command.arg("--cert").arg(cert).arg("--key").arg(key);
            }
        }
        None => {
            command.args(["-p", &f.addrs.plain.unwrap().port().to_string()]);
        }
    }
    command
        .args(args)
        .output()
        .expect("mosquitto_pub (Debian mosquitto-clients)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_clients_with_device_certificates_publish_their_own_topics_only() {
    let f = Fixture::start().await;
    let f = std::sync::Arc::new(f);
    let g = f.clone();
    tokio::task::spawn_blocking(move || {
        let f = g;
        let sub = Sub::start(&f, "inspect/v1/+/+/events", 2);
        for (device, topic, message) in [
            ("d1", "inspect/v1/s1/d1/events", "own"),
            ("d1", "inspect/v1/s1/d2/events", "forged"),
            ("d2", "inspect/v1/s1/d2/events", "marker"),
        ] {
            let out = mosquitto_pub(&f, Some(device), &["-q", "1", "-t", topic, "-m", message]);
            assert!(
                out.status.success(),
                "{device} {topic}: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // Two messages end the subscriber: had the forged one gone through,
        // it would be among them and the marker missing.
        let got = sub.finish();
        assert_eq!(
            got,
            vec![
                "inspect/v1/s1/d1/events own".to_owned(),
                "inspect/v1/s1/d2/events marker".to_owned()
            ]
        );
    })
    .await
    .expect("mosquitto clients");
    assert_eq!(f.metrics.acl_denied("publish"), 1);
    std::sync::Arc::into_inner(f)
        .expect("one owner")
        .stop()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_clients_without_certificate_or_with_a_wrong_token_are_refused() {
    let f = std::sync::Arc::new(Fixture::start().await);
    let g = f.clone();
    tokio::task::spawn_blocking(move || {
        let f = g;
        // TLS without a client certificate: the handshake fails.
        let out = mosquitto_pub(
            &f,
            Some(""),
            &["-q", "1", "-t", "inspect/v1/s1/d1/events", "-m", "x"],
        );
        assert!(
            !out.status.success(),
            "published without a client certificate"
        );
        // A wrong token on the plain listener: CONNACK refused.
        let out = mosquitto_pub(
            &f,
            None,
            &[
                "-u",
                "bridge",
                "-P",
                "wrong",
                "-q",
                "1",
                "-t",
                "inspect/v1/s1/d1/cmd",
                "-m",
                "x",
            ],
        );
        assert!(!out.status.success(), "published with a wrong token");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("bad user name or password"), "{stderr}");
        // The right token works.
        let out = mosquitto_pub(
            &f,
            None,
            &[
                "-u",
                "s1/d3",
                "-P",
                &f.d3_token,
                "-q",
                "1",
                "-t",
                "inspect/v1/s1/d3/events",
                "-m",
                "x",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    })
    .await
    .expect("mosquitto clients");
    wait_until("the TLS failure is counted", || {
        f.metrics.tls_handshake_failures() == 1
    })
    .await;
    assert_eq!(f.metrics.auth_failures("bad_token"), 1);
    assert_eq!(f.metrics.connections("plain", "refused_auth"), 1);
    std::sync::Arc::into_inner(f)
        .expect("one owner")
        .stop()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_device_connections_and_frees_the_ports() {
    let f = Fixture::start().await;
    let mut d1 = Client::start(f.device_options("d1"));
    d1.connected().await;
    let addrs = f.addrs;
    f.stop().await;
    let error = d1.failure().await;
    assert!(!error.is_empty());
    // Nothing listens any more: a new broker could bind the same ports.
    for addr in [addrs.internal, addrs.tls.unwrap(), addrs.plain.unwrap()] {
        assert!(StdTcp::connect(addr).is_err(), "{addr} still accepts");
    }
}
