//! Secrets never appear in what the `central` binary writes.
//!
//! The real binary runs with `RUST_LOG=debug`, in both log formats, with a
//! configuration full of known secret values: a PostgreSQL password (a
//! stand-in server that asks for it and refuses it, and a closed port),
//! a Redis password (a stand-in that answers WRONGPASS), API tokens (a
//! valid one and a wrong one), JWTs (a valid one and a forged one) in
//! `Authorization`, device tokens (MQTT CONNECT and HTTP Basic, right and
//! wrong), the bridge's and the api's MQTT passwords (refused by the
//! broker), the TLS server key and a corrupt one. Each error path is
//! driven until its log line is there; then stdout and stderr are searched
//! for every secret. `central validate` runs too, on a file whose
//! problems sit next to URLs with passwords in them, and the `Debug` of a
//! loaded `Config` is checked the same way.
//!
//! The stand-in servers record the secrets they received, so a run that
//! never handled a secret cannot pass for one that kept it quiet.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use central::certs::{
    DevPki, append_api_token, append_device_credential, append_service_credential,
};
use inspection_core::ids::{DeviceId, SiteId};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

#[path = "../../shared/tests/common/logged.rs"]
mod logged;
use logged::{Logged, assert_no_secret, combined};

// Recognisable values, each unlike anything else a log line could hold.
const PG_PASSWORD: &str = "PgPass-4f9d1c7e2b";
const REDIS_PASSWORD: &str = "RedisPass-8a3e5d0c6f";
const BRIDGE_PASSWORD: &str = "BridgePass-1b7c9e4a2d";
const API_MQTT_PASSWORD: &str = "ApiMqttPass-6d2f8a1c9e";
const URL_PASSWORD: &str = "UrlPass-3c8e1f7a5b";
const JWKS_URL_PASSWORD: &str = "JwksPass-9e4b2d6f1a";
const KEY_MARKER: &str = "central-private-key-material-7c1e9a4f";

const SITE: &str = "s1";
const DEVICE: &str = "d1";
const ISSUER: &str = "https://idp.test";
const AUDIENCE: &str = "central";

fn token(label: &str) -> String {
    // 64 hex characters, as `central certs token` makes them.
    use sha2::Digest;
    sha2::Sha256::digest(format!("secrets-in-logs {label}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn named(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

/// The base64 lines of a PEM file (the key material itself).
fn pem_body_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------
// Stand-in servers (std threads; each records the secrets it was sent).

/// A PostgreSQL server that asks for a cleartext password, records it and
/// refuses it (SQLSTATE 28P01), as a server does with a wrong password.
fn fake_postgres() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let record = record.clone();
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let read_i32 = |s: &mut TcpStream| -> Option<i32> {
                    let mut b = [0u8; 4];
                    s.read_exact(&mut b).ok()?;
                    Some(i32::from_be_bytes(b))
                };
                // StartupMessage (sslmode=disable: no SSLRequest first).
                let Some(len) = read_i32(&mut s) else { return };
                let mut rest = vec![0u8; (len as usize).saturating_sub(4)];
                if s.read_exact(&mut rest).is_err() {
                    return;
                }
                // AuthenticationCleartextPassword.
                let _ = s.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]);
                let mut tag = [0u8; 1];
                if s.read_exact(&mut tag).is_err() || tag[0] != b'p' {
                    return;
                }
                let Some(len) = read_i32(&mut s) else { return };
                let mut password = vec![0u8; (len as usize).saturating_sub(4)];
                if s.read_exact(&mut password).is_err() {
                    return;
                }
                let password = String::from_utf8_lossy(&password)
                    .trim_end_matches('\0')
                    .to_owned();
                record.lock().unwrap().push(password);
                let mut fields = Vec::new();
                for (code, text) in [
                    (b'S', "FATAL"),
                    (b'V', "FATAL"),
                    (b'C', "28P01"),
                    (b'M', "password authentication failed for user \"central\""),
                ] {
                    fields.push(code);
                    fields.extend_from_slice(text.as_bytes());
                    fields.push(0);
                }
                fields.push(0);
                let mut error = vec![b'E'];
                error.extend_from_slice(&((fields.len() + 4) as i32).to_be_bytes());
                error.extend_from_slice(&fields);
                let _ = s.write_all(&error);
            });
        }
    });
    (port, seen)
}

/// A Redis server that records what it is sent and refuses everything
/// with WRONGPASS, as Redis does with a wrong password.
fn fake_redis() -> (u16, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let record = record.clone();
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    record.lock().unwrap().extend_from_slice(&buf[..n]);
                    let reply =
                        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";
                    if s.write_all(reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, seen)
}

// ---------------------------------------------------------------------------
// The binary.

fn central() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_central"));
    c.env("RUST_LOG", "debug").env_remove("ORT_DYLIB_PATH");
    c
}

/// `central run --roles ROLES`, its output collected as it comes.
fn start(dir: &Path, config: &Path, roles: &str) -> Logged {
    let mut command = central();
    command
        .current_dir(dir)
        .args(["run", "--config"])
        .arg(config)
        .args(["--roles", roles]);
    Logged::spawn(&mut command, "central")
}

/// How long a log line may take to come.
const WAIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Clients for the error paths (plain sockets: nothing in between that could
// hide or add a header).

/// One HTTP/1.1 request; the status code.
fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> u16 {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    s.write_all(request.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut response = Vec::new();
    let _ = s.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {response:?}"))
}

/// An MQTT 3.1.1 CONNECT with a user name and password; the CONNACK's
/// return code.
fn mqtt_connect(addr: SocketAddr, user: &str, password: &str) -> u8 {
    fn put(buf: &mut Vec<u8>, s: &str) {
        buf.extend_from_slice(&(s.len() as u16).to_be_bytes());
        buf.extend_from_slice(s.as_bytes());
    }
    let mut body = Vec::new();
    put(&mut body, "MQTT");
    body.push(4);
    body.push(0x80 | 0x40 | 0x02); // user name, password, clean session
    body.extend_from_slice(&60u16.to_be_bytes());
    put(&mut body, "secrets-test");
    put(&mut body, user);
    put(&mut body, password);
    let mut packet = vec![0x10];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        packet.push(byte);
        if len == 0 {
            break;
        }
    }
    packet.extend_from_slice(&body);
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(&packet).unwrap();
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack).expect("CONNACK");
    assert_eq!(connack[0], 0x20, "not a CONNACK: {connack:?}");
    connack[3]
}

fn basic(user: &str, token: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"))
}

// ---------------------------------------------------------------------------
// JWTs.

struct Jwts {
    valid: String,
    forged: String,
    jwks: JwkSet,
}

fn jwts() -> Jwts {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let forger = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
    let forger = EncodingKey::from_ec_pem(forger.serialize_pem().as_bytes()).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some("ec-1".into());
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "alice",
        "iat": now, "nbf": now - 5, "exp": now + 3600,
        "roles": ["viewer"], "sites": ["*"],
    });
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ec-1".into());
    Jwts {
        valid: jsonwebtoken::encode(&header, &claims, &key).unwrap(),
        forged: jsonwebtoken::encode(&header, &claims, &forger).unwrap(),
        jwks: JwkSet { keys: vec![jwk] },
    }
}

// ---------------------------------------------------------------------------
// The runs.

fn log_formats() -> [&'static str; 2] {
    ["json", "text"]
}

/// A store URL whose server refuses the password, and one whose server is
/// not there: the process ends with the store's error.
#[test]
fn postgres_password_stays_out_of_store_errors() {
    let (pg_port, pg_seen) = fake_postgres();
    let closed_port = free_port();
    let secrets = named(&[("PostgreSQL password", PG_PASSWORD)]);
    for format in log_formats() {
        for (port, expect) in [
            (pg_port, "password authentication failed"),
            (closed_port, "cannot reach PostgreSQL"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let config = dir.path().join("central.toml");
            std::fs::write(
                &config,
                format!(
                    "[ops]\nlisten = \"127.0.0.1:{ops}\"\nlog_format = \"{format}\"\n\n\
                     [store]\nurl = \"postgres://central:{PG_PASSWORD}@127.0.0.1:{port}/central?sslmode=disable\"\n\
                     busy_timeout_ms = 1000\n",
                    ops = free_port(),
                ),
            )
            .unwrap();
            let validate = central()
                .args(["validate", "--config"])
                .arg(&config)
                .output()
                .unwrap();
            let text = combined(&validate);
            assert_eq!(validate.status.code(), Some(0), "{text}");
            assert_no_secret("central validate (postgres)", &text, &secrets);

            let (status, text) = start(dir.path(), &config, "bridge").wait_exit(WAIT);
            assert!(!status.success(), "{text}");
            assert!(text.contains(expect), "no {expect:?} in:\n{text}");
            assert_no_secret(
                &format!("central run ({format}, {expect})"),
                &text,
                &secrets,
            );
        }
    }
    let seen = pg_seen.lock().unwrap();
    assert!(
        !seen.is_empty() && seen.iter().all(|p| p == PG_PASSWORD),
        "the stand-in PostgreSQL was not sent the password: {seen:?}"
    );
}

/// Everything that serves: broker (TLS and plain, device tokens), bridge
/// and api MQTT clients with refused passwords, upload (Basic tokens), the
/// staff API (API tokens, JWTs, Redis with a refused password).
#[test]
fn tokens_passwords_and_keys_stay_out_of_a_serving_process() {
    let jwts = jwts();
    let device_token = token("device");
    let wrong_device_token = token("wrong device");
    let api_token = token("api");
    let wrong_api_token = token("wrong api");
    let (redis_port, redis_seen) = fake_redis();

    for format in log_formats() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let pki = DevPki::new(d.join("pki"));
        pki.ensure_ca().unwrap();
        pki.issue_server(&["127.0.0.1".to_owned()], 1).unwrap();
        let credentials = d.join("credentials.toml");
        let (site, device) = (SiteId::new(SITE).unwrap(), DeviceId::new(DEVICE).unwrap());
        append_device_credential(&credentials, &site, &device, &device_token).unwrap();
        // The services' tokens on file are not the ones they send.
        append_service_credential(&credentials, "bridge", &token("bridge on file")).unwrap();
        append_service_credential(&credentials, "api", &token("api on file")).unwrap();
        std::fs::write(d.join("bridge.password"), format!("{BRIDGE_PASSWORD}\n")).unwrap();
        std::fs::write(
            d.join("api-mqtt.password"),
            format!("{API_MQTT_PASSWORD}\n"),
        )
        .unwrap();
        let tokens = d.join("api-tokens.toml");
        append_api_token(
            &tokens,
            "dashboard",
            central::api::Role::Viewer,
            &["*".to_owned()],
            &api_token,
        )
        .unwrap();
        std::fs::write(
            d.join("jwks.json"),
            serde_json::to_string(&jwts.jwks).unwrap(),
        )
        .unwrap();

        let (gateway, tls_gateway, upload, api, ops) = (
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
        );
        let config = d.join("central.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[ops]
listen = "127.0.0.1:{ops}"
log_format = "{format}"

[store]
url = "sqlite://{db}"

[broker]
internal_listen = "127.0.0.1:{internal}"
plain_listen = "127.0.0.1:{gateway}"
tls_listen = "127.0.0.1:{tls_gateway}"
credentials = "{credentials}"
tls = {{ cert = "{cert}", key = "{key}", client_ca = "{ca}", client_cert_optional = true }}

[bridge]
url = "mqtt://127.0.0.1:{gateway}"
username = "bridge"
password_file = "{bridge_password}"

[upload]
plain_listen = "127.0.0.1:{upload}"
credentials = "{credentials}"
object_store = {{ kind = "local", path = "{images}" }}

[api]
listen = "127.0.0.1:{api}"
tokens = "{tokens}"

[api.oidc]
issuer = "{ISSUER}"
audience = ["{AUDIENCE}"]
jwks_file = "{jwks}"

[api.cache]
redis_url = "redis://:{REDIS_PASSWORD}@127.0.0.1:{redis_port}/0"

[api.mqtt]
url = "mqtt://127.0.0.1:{gateway}"
username = "api"
password_file = "{api_password}"
"#,
                db = d.join("central.sqlite3").display(),
                internal = free_port(),
                credentials = credentials.display(),
                cert = pki.server_cert().display(),
                key = pki.server_key().display(),
                ca = pki.ca_cert().display(),
                bridge_password = d.join("bridge.password").display(),
                images = d.join("images").display(),
                tokens = tokens.display(),
                jwks = d.join("jwks.json").display(),
                api_password = d.join("api-mqtt.password").display(),
            ),
        )
        .unwrap();

        let wrong_basic = basic(&format!("{SITE}/{DEVICE}"), &wrong_device_token);
        let right_basic = basic(&format!("{SITE}/{DEVICE}"), &device_token);
        let jwt_signature = |jwt: &str| jwt.rsplit('.').next().unwrap().to_owned();
        let mut secrets = named(&[
            ("Redis password", REDIS_PASSWORD),
            ("bridge MQTT password", BRIDGE_PASSWORD),
            ("api MQTT password", API_MQTT_PASSWORD),
            ("device token", &device_token),
            ("wrong device token", &wrong_device_token),
            ("API token", &api_token),
            ("wrong API token", &wrong_api_token),
            ("valid JWT", &jwts.valid),
            ("valid JWT's signature", &jwt_signature(&jwts.valid)),
            ("forged JWT", &jwts.forged),
            ("forged JWT's signature", &jwt_signature(&jwts.forged)),
            ("Basic credentials (wrong token)", &wrong_basic),
            ("Basic credentials (right token)", &right_basic),
        ]);
        for (i, line) in pem_body_lines(&pki.server_key()).into_iter().enumerate() {
            secrets.push((format!("server key line {i}"), line));
        }

        let validate = central()
            .args(["validate", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let text = combined(&validate);
        assert_eq!(validate.status.code(), Some(0), "{text}");
        assert_no_secret("central validate", &text, &secrets);

        let mut run = start(d, &config, "broker,bridge,upload,api");
        run.wait_for("central running", WAIT);
        run.wait_for("refused the bridge's credentials", WAIT);

        // MQTT: a wrong device token (refused), the right one (accepted).
        let gateway: SocketAddr = ([127, 0, 0, 1], gateway).into();
        let user = format!("{SITE}/{DEVICE}");
        assert_eq!(mqtt_connect(gateway, &user, &wrong_device_token), 4);
        run.wait_for("CONNECT refused", WAIT);
        assert_eq!(mqtt_connect(gateway, &user, &device_token), 0);

        // Upload: Basic with a wrong token, then the right one with a body
        // that is not a JPEG.
        let upload: SocketAddr = ([127, 0, 0, 1], upload).into();
        let path = format!("/v1/images/{}", token("image"));
        let status = http(
            upload,
            "PUT",
            &path,
            &[
                ("Authorization", &format!("Basic {wrong_basic}")),
                ("Content-Type", "image/jpeg"),
            ],
            b"not a jpeg",
        );
        assert!(matches!(status, 401 | 403), "wrong token: {status}");
        let status = http(
            upload,
            "PUT",
            &path,
            &[
                ("Authorization", &format!("Basic {right_basic}")),
                ("Content-Type", "image/jpeg"),
            ],
            b"not a jpeg",
        );
        assert!((400..500).contains(&status), "not a JPEG: {status}");
        run.wait_for("upload refused", WAIT);

        // The staff API: a wrong token, the right one (its read goes to
        // Redis, which refuses the password), a valid and a forged JWT.
        let api: SocketAddr = ([127, 0, 0, 1], api).into();
        let inspection = format!("/api/v1/inspections/{}", uuid::Uuid::now_v7());
        let bearer = |t: &str| format!("Bearer {t}");
        let get = |auth: &str| http(api, "GET", &inspection, &[("Authorization", auth)], b"");
        assert_eq!(get(&bearer(&wrong_api_token)), 401);
        assert_eq!(get(&bearer(&api_token)), 404);
        run.wait_for("redis unavailable", WAIT);
        assert_eq!(get(&bearer(&jwts.valid)), 404);
        assert_eq!(get(&bearer(&jwts.forged)), 401);
        assert_eq!(get(&format!("Basic {right_basic}")), 401);

        let text = run.stop();
        assert_no_secret(&format!("central run ({format})"), &text, &secrets);
    }
    let seen = String::from_utf8_lossy(&redis_seen.lock().unwrap()).into_owned();
    assert!(
        seen.contains(REDIS_PASSWORD),
        "the stand-in Redis was not sent the password: {seen:?}"
    );
}

/// A server key that is not one: the role does not start, and its error
/// does not quote the file.
#[test]
fn a_corrupt_tls_key_is_not_quoted() {
    let body = base64::engine::general_purpose::STANDARD.encode(KEY_MARKER.repeat(3));
    for format in log_formats() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let pki = DevPki::new(d.join("pki"));
        pki.ensure_ca().unwrap();
        pki.issue_server(&["127.0.0.1".to_owned()], 1).unwrap();
        let key = d.join("corrupt.key");
        std::fs::write(
            &key,
            format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n"),
        )
        .unwrap();
        let credentials = d.join("credentials.toml");
        append_device_credential(
            &credentials,
            &SiteId::new(SITE).unwrap(),
            &DeviceId::new(DEVICE).unwrap(),
            &token("device"),
        )
        .unwrap();
        let config = d.join("central.toml");
        std::fs::write(
            &config,
            format!(
                "[ops]\nlisten = \"127.0.0.1:{ops}\"\nlog_format = \"{format}\"\n\n\
                 [upload]\nlisten = \"127.0.0.1:{listen}\"\ncredentials = \"{credentials}\"\n\
                 tls = {{ cert = \"{cert}\", key = \"{key}\" }}\n\
                 object_store = {{ kind = \"local\", path = \"{images}\" }}\n",
                ops = free_port(),
                listen = free_port(),
                credentials = credentials.display(),
                cert = pki.server_cert().display(),
                key = key.display(),
                images = d.join("images").display(),
            ),
        )
        .unwrap();
        let (status, text) = start(d, &config, "upload").wait_exit(WAIT);
        assert!(!status.success(), "{text}");
        let secrets = named(&[("key file's body", &body), ("key material", KEY_MARKER)]);
        assert_no_secret(&format!("central run ({format})"), &text, &secrets);
    }
}

/// `central validate` lists every problem of a file whose URLs carry
/// passwords, and none of the passwords.
#[test]
fn validate_reports_problems_without_the_passwords_beside_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("central.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[store]
url = "postgres://central:{PG_PASSWORD}@db.example:5432/central"
max_size_bytes = 1

[bridge]
url = "mqtt://bridge:{URL_PASSWORD}@broker.example:1883"

[api.cache]
redis_url = "rediss://:{REDIS_PASSWORD}@cache.example:6380/0"

[api.oidc]
issuer = "{ISSUER}"
audience = ["{AUDIENCE}"]
jwks_url = "http://keys:{JWKS_URL_PASSWORD}@idp.example/jwks"

[api.mqtt]
url = "mqtt://api:{URL_PASSWORD}@broker.example:1883/"
"#
        ),
    )
    .unwrap();
    let out = central()
        .args(["validate", "--skip-file-checks", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = combined(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    for problem in [
        "store.max_size_bytes",
        "bridge.url",
        "api.cache.redis_url",
        "api.oidc.jwks_url",
        "api.mqtt.url",
    ] {
        assert!(text.contains(problem), "{problem} not reported:\n{text}");
    }
    let secrets = named(&[
        ("PostgreSQL password", PG_PASSWORD),
        ("Redis password", REDIS_PASSWORD),
        ("MQTT URL password", URL_PASSWORD),
        ("JWKS URL password", JWKS_URL_PASSWORD),
    ]);
    assert_no_secret("central validate", &text, &secrets);

    // A file that does not parse: TOML's message quotes the line.
    std::fs::write(
        &config,
        format!("[store]\nurl = postgres://central:{PG_PASSWORD}@db.example/central\n"),
    )
    .unwrap();
    let out = central()
        .args(["validate", "--skip-file-checks", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = combined(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("TOML parse error"), "{text}");
    assert_no_secret("central validate (unparsable)", &text, &secrets);
}

/// The `Debug` of a loaded configuration (what a `?config` log field or a
/// panic message would print) shows no password, in either form.
#[test]
fn debug_of_the_config_shows_no_password() {
    let text = format!(
        r#"
[store]
url = "postgres://central:{PG_PASSWORD}@db.example:5432/central?sslmode=require"

[bridge]
url = "mqtt://bridge:{URL_PASSWORD}@broker.example:1883"

[api.cache]
redis_url = "redis://default:{REDIS_PASSWORD}@cache.example:6379/0"

[api.oidc]
issuer = "{ISSUER}"
audience = ["{AUDIENCE}"]
jwks_url = "https://keys:{JWKS_URL_PASSWORD}@idp.example/jwks"
"#
    );
    let config: central::config::Config = toml::from_str(&text).expect("parses");
    let secrets = named(&[
        ("PostgreSQL password", PG_PASSWORD),
        ("Redis password", REDIS_PASSWORD),
        ("MQTT URL password", URL_PASSWORD),
        ("JWKS URL password", JWKS_URL_PASSWORD),
    ]);
    for shown in [format!("{config:?}"), format!("{config:#?}")] {
        assert_no_secret("Debug of Config", &shown, &secrets);
        // Still useful: the rest of each URL is there.
        assert!(
            shown.contains("postgres://central:***@db.example:5432/central?sslmode=require"),
            "{shown}"
        );
        assert!(shown.contains("cache.example:6379"), "{shown}");
    }
    let store = format!("{:?}", config.store);
    assert_no_secret("Debug of StoreConfig", &store, &secrets);
    assert!(store.contains("db.example"), "{store}");
}
