//! The upload role over real HTTPS (rustls, dev certificates from
//! `central::certs::DevPki`) and plain loopback HTTP, with reqwest as the
//! device's client, real JPEGs and the local object store on disk.

use std::io::Cursor;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use central::auth::Credentials;
use central::certs::{DevPki, append_device_credential, append_service_credential, new_token};
use central::upload::{
    ObjectStoreConfig, UploadConfig, UploadError, UploadMetrics, UploadServer, object_key,
};
use inspection_core::ids::{DeviceId, SiteId};
use inspection_core::wire::Sha256Hex;
use prometheus_client::registry::Registry;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(20);

/// A real JPEG, different for every `seed`.
fn jpeg(seed: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(160, 120, |x, y| {
        let v = x.wrapping_mul(31) ^ y.wrapping_mul(17) ^ seed.wrapping_mul(2654435761);
        image::Rgb([v as u8, (v >> 8) as u8, (v >> 16) as u8])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg)
        .expect("encode jpeg");
    out.into_inner()
}

fn sha(bytes: &[u8]) -> Sha256Hex {
    Sha256Hex::from_digest(&Sha256::digest(bytes).into())
}

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

struct Harness {
    _dir: tempfile::TempDir,
    pki: DevPki,
    images: PathBuf,
    site: SiteId,
    device: DeviceId,
    token: String,
    service_token: String,
    metrics: UploadMetrics,
    https: std::net::SocketAddr,
    plain: std::net::SocketAddr,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<Result<(), UploadError>>>,
}

struct Options {
    max_image_bytes: u64,
    max_concurrent_uploads: usize,
    request_timeout_s: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_image_bytes: 256 * 1024,
            max_concurrent_uploads: 64,
            request_timeout_s: 30,
        }
    }
}

impl Harness {
    async fn start(options: Options) -> Harness {
        central::tls::install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = DevPki::new(dir.path().join("pki"));
        pki.ensure_ca().expect("ca");
        pki.issue_server(&["127.0.0.1".into(), "localhost".into()], 2)
            .expect("server cert");
        let site = SiteId::new("s1").unwrap();
        let device = DeviceId::new("d1").unwrap();
        pki.issue_device(&site, &device, 2).expect("device cert");
        let credentials = dir.path().join("credentials.toml");
        let token = new_token();
        let service_token = new_token();
        append_device_credential(&credentials, &site, &device, &token).expect("credential");
        append_service_credential(&credentials, "bridge", &service_token).expect("credential");
        let images = dir.path().join("images");
        let config_text = format!(
            "listen = \"127.0.0.1:0\"\nplain_listen = \"127.0.0.1:0\"\ncredentials = \"{creds}\"\n\
             max_image_bytes = {max}\nmax_concurrent_uploads = {conc}\nrequest_timeout_s = {timeout}\n\
             [tls]\ncert = \"{cert}\"\nkey = \"{key}\"\nclient_ca = \"{ca}\"\nclient_cert_optional = true\n\
             [object_store]\nkind = \"local\"\npath = \"{images}\"\n",
            creds = credentials.display(),
            max = options.max_image_bytes,
            conc = options.max_concurrent_uploads,
            timeout = options.request_timeout_s,
            cert = pki.server_cert().display(),
            key = pki.server_key().display(),
            ca = pki.ca_cert().display(),
            images = images.display(),
        );
        let config: UploadConfig = toml::from_str(&config_text).expect("config");
        assert_eq!(config.problems("upload", true), Vec::<String>::new());
        let metrics = UploadMetrics::default();
        let server = UploadServer::bind(
            &config,
            Some(Credentials::load(&credentials).expect("credentials")),
            metrics.clone(),
        )
        .await
        .expect("bind");
        let addrs = server.local_addrs();
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(server.run(rx));
        Harness {
            _dir: dir,
            pki,
            images,
            site,
            device,
            token,
            service_token,
            metrics,
            https: addrs.https.expect("https"),
            plain: addrs.plain.expect("plain"),
            shutdown,
            task: Some(task),
        }
    }

    fn client(&self, identity: Option<(&Path, &Path)>, ca: &Path) -> reqwest::Client {
        let tls = central::tls::client_config(ca, identity).expect("client tls");
        reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .build()
            .expect("client")
    }

    /// A client presenting the device's certificate.
    fn device_client(&self) -> reqwest::Client {
        let (cert, key) = self.pki.device_files(&self.site, &self.device);
        self.client(Some((&cert, &key)), &self.pki.ca_cert())
    }

    /// A client with no certificate (token auth).
    fn anonymous_client(&self) -> reqwest::Client {
        self.client(None, &self.pki.ca_cert())
    }

    fn url(&self, sha: &str) -> String {
        format!("https://127.0.0.1:{}/v1/images/{sha}", self.https.port())
    }

    fn plain_url(&self, sha: &str) -> String {
        format!("http://127.0.0.1:{}/v1/images/{sha}", self.plain.port())
    }

    fn user(&self) -> String {
        format!("{}/{}", self.site, self.device)
    }

    fn object_path(&self, sha: &Sha256Hex) -> PathBuf {
        self.images.join(object_key(sha).as_ref())
    }

    fn metrics_text(&self) -> String {
        let mut registry = Registry::default();
        self.metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        text
    }

    /// The value of one series (`name{labels}` exactly as rendered), 0 when absent.
    fn metric(&self, series: &str) -> f64 {
        self.metrics_text()
            .lines()
            .find_map(|line| {
                line.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
                    .map(|v| v.parse::<f64>().expect("metric value"))
            })
            .unwrap_or(0.0)
    }

    async fn wait_for_metric(&self, series: &str, value: f64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.metric(series) != value {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{series} never became {value}:\n{}",
                self.metrics_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        let task = self.task.take().expect("running");
        tokio::time::timeout(WAIT, task)
            .await
            .expect("run() returns after shutdown")
            .expect("join")
            .expect("run ok");
    }
}

async fn put(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    content_type: &str,
) -> reqwest::Response {
    client
        .put(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("PUT answered")
}

/// The `error.code` of a JSON refusal, checking its shape.
async fn error_code(response: reqwest::Response) -> String {
    let status = response.status();
    let body: serde_json::Value = response.json().await.expect("JSON error body");
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        !code.is_empty()
            && body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
        "{status}: {body}"
    );
    code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_with_a_device_certificate_stores_once_and_head_tells() {
    let h = Harness::start(Options::default()).await;
    let client = h.device_client();
    let image = jpeg(1);
    let sha = sha(&image);

    let head = client.head(h.url(sha.as_str())).send().await.expect("HEAD");
    assert_eq!(head.status(), StatusCode::NOT_FOUND);

    let first = put(&client, &h.url(sha.as_str()), image.clone(), "image/jpeg").await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let body: serde_json::Value = first.json().await.expect("json");
    assert_eq!(body["created"], true);
    assert_eq!(body["bytes"], image.len());
    let path = h.object_path(&sha);
    assert_eq!(std::fs::read(&path).expect("stored object"), image);
    let before = std::fs::metadata(&path).expect("metadata");

    let again = put(&client, &h.url(sha.as_str()), image.clone(), "image/jpeg").await;
    assert_eq!(again.status(), StatusCode::OK);
    let body: serde_json::Value = again.json().await.expect("json");
    assert_eq!(body["created"], false);
    let after = std::fs::metadata(&path).expect("metadata");
    assert_eq!(
        (after.ino(), after.mtime(), after.mtime_nsec()),
        (before.ino(), before.mtime(), before.mtime_nsec()),
        "a repeated PUT must not rewrite the object"
    );
    assert_eq!(
        files_under(&h.images),
        vec![format!("images/{}/{}.jpg", &sha.as_str()[..2], sha)],
        "one object, no staging files"
    );

    let head = client.head(h.url(sha.as_str())).send().await.expect("HEAD");
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(
        head.headers()["content-length"].to_str().unwrap(),
        image.len().to_string()
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_authenticate_devices_and_everything_else_is_refused() {
    let h = Harness::start(Options::default()).await;
    let anonymous = h.anonymous_client();
    let plain = reqwest::Client::new();
    let image = jpeg(2);
    let sha = sha(&image);

    // No credentials at all: 401 with the challenge and a JSON body.
    let response = put(
        &anonymous,
        &h.url(sha.as_str()),
        image.clone(),
        "image/jpeg",
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Basic realm=\"inspection-upload\""
    );
    assert_eq!(error_code(response).await, "unauthenticated");
    let head = anonymous
        .head(h.url(sha.as_str()))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(head.status(), StatusCode::UNAUTHORIZED);

    // A wrong token, and another device's name with this token.
    for (user, token) in [
        (h.user(), "0".repeat(64)),
        ("s1/d2".to_owned(), h.token.clone()),
    ] {
        let response = anonymous
            .put(h.url(sha.as_str()))
            .basic_auth(user, Some(token))
            .header("content-type", "image/jpeg")
            .body(image.clone())
            .send()
            .await
            .expect("PUT");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(error_code(response).await, "bad_credentials");
    }

    // A service's valid token is not a device's.
    let response = anonymous
        .put(h.url(sha.as_str()))
        .basic_auth("bridge", Some(&h.service_token))
        .header("content-type", "image/jpeg")
        .body(image.clone())
        .send()
        .await
        .expect("PUT");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(response).await, "not_a_device");
    assert!(files_under(&h.images).is_empty(), "nothing stored yet");

    // The device's token, over HTTPS without a certificate...
    let response = anonymous
        .put(h.url(sha.as_str()))
        .basic_auth(h.user(), Some(&h.token))
        .header("content-type", "image/jpeg")
        .body(image.clone())
        .send()
        .await
        .expect("PUT");
    assert_eq!(response.status(), StatusCode::CREATED);

    // ...and over the plain loopback listener.
    let other = jpeg(3);
    let other_sha = self::sha(&other);
    let response = plain
        .put(h.plain_url(other_sha.as_str()))
        .basic_auth(h.user(), Some(&h.token))
        .header("content-type", "image/jpeg")
        .body(other.clone())
        .send()
        .await
        .expect("PUT");
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(std::fs::read(h.object_path(&other_sha)).unwrap(), other);
    let head = plain
        .head(h.plain_url(other_sha.as_str()))
        .basic_auth(h.user(), Some(&h.token))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(head.status(), StatusCode::OK);

    assert_eq!(
        h.metric("central_upload_refusals_total{code=\"bad_credentials\"}"),
        2.0
    );
    assert_eq!(
        h.metric("central_upload_refusals_total{code=\"unauthenticated\"}"),
        2.0
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused_in_the_handshake() {
    let h = Harness::start(Options::default()).await;
    let foreign_dir = tempfile::tempdir().expect("tempdir");
    let foreign = DevPki::new(foreign_dir.path());
    foreign.ensure_ca().expect("ca");
    // The same device name, signed by a CA the server does not trust.
    let (cert, key) = foreign
        .issue_device(&h.site, &h.device, 2)
        .expect("device cert");
    let client = h.client(Some((&cert, &key)), &h.pki.ca_cert());
    let image = jpeg(4);
    let sha = sha(&image);
    let result = client
        .put(h.url(sha.as_str()))
        .header("content-type", "image/jpeg")
        .body(image)
        .send()
        .await;
    assert!(
        result.is_err(),
        "a foreign certificate must not get an answer: {result:?}"
    );
    h.wait_for_metric(
        "central_upload_connection_failures_total{code=\"tls_handshake\"}",
        1.0,
    )
    .await;
    assert!(files_under(&h.images).is_empty());
    assert_eq!(
        h.metric("central_upload_requests_total{method=\"PUT\",status=\"201\"}"),
        0.0
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_with_their_status_and_code() {
    let h = Harness::start(Options::default()).await;
    let client = h.device_client();
    let image = jpeg(5);
    let good_sha = sha(&image);
    let half = image[..image.len() / 2].to_vec();
    let png = {
        let mut out = Cursor::new(Vec::new());
        image::RgbImage::new(8, 8)
            .write_to(&mut out, image::ImageFormat::Png)
            .unwrap();
        out.into_inner()
    };
    // Over the 256 KiB limit of this harness, with the right hash.
    let big: Vec<u8> = (0..300 * 1024u32).map(|i| (i % 251) as u8).collect();
    struct Case {
        what: &'static str,
        path_sha: String,
        body: Vec<u8>,
        content_type: &'static str,
        status: StatusCode,
        code: &'static str,
    }
    let case = |what, path_sha: String, body: &Vec<u8>, content_type, status, code| Case {
        what,
        path_sha,
        body: body.clone(),
        content_type,
        status,
        code,
    };
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    let cases = [
        case(
            "hash mismatch",
            sha(&jpeg(6)).to_string(),
            &image,
            "image/jpeg",
            unprocessable,
            "hash_mismatch",
        ),
        case(
            "half a JPEG",
            sha(&half).to_string(),
            &half,
            "image/jpeg",
            unprocessable,
            "truncated_jpeg",
        ),
        case(
            "a PNG declared as JPEG",
            sha(&png).to_string(),
            &png,
            "image/jpeg",
            unprocessable,
            "not_jpeg",
        ),
        case(
            "wrong content type",
            good_sha.to_string(),
            &image,
            "image/png",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        case(
            "over the limit",
            sha(&big).to_string(),
            &big,
            "image/jpeg",
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
        case(
            "uppercase digest",
            good_sha.as_str().to_uppercase(),
            &image,
            "image/jpeg",
            StatusCode::BAD_REQUEST,
            "bad_sha256",
        ),
        case(
            "short digest",
            "abc123".into(),
            &image,
            "image/jpeg",
            StatusCode::BAD_REQUEST,
            "bad_sha256",
        ),
    ];
    for c in cases {
        let series = format!("central_upload_refusals_total{{code=\"{}\"}}", c.code);
        let before = h.metric(&series);
        let response = put(&client, &h.url(&c.path_sha), c.body, c.content_type).await;
        assert_eq!(response.status(), c.status, "{}", c.what);
        assert_eq!(error_code(response).await, c.code, "{}", c.what);
        assert_eq!(h.metric(&series), before + 1.0, "{} is counted", c.what);
    }
    assert!(
        files_under(&h.images).is_empty(),
        "nothing refused was written: {:?}",
        files_under(&h.images)
    );

    // Unknown routes and other methods, also as JSON.
    let base = format!("https://127.0.0.1:{}", h.https.port());
    let response = client
        .get(format!("{base}/v1/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(response).await, "not_found");
    let response = client.get(h.url(good_sha.as_str())).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "PUT, HEAD");
    assert_eq!(error_code(response).await, "method_not_allowed");

    // The connection survives refusals: the good image still goes in.
    let response = put(
        &client,
        &h.url(good_sha.as_str()),
        image.clone(),
        "image/jpeg",
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    h.stop().await;
}

/// Sends a raw HTTP/1.1 request head on the plain listener.
async fn raw_request(h: &Harness, head: &str) -> TcpStream {
    let mut stream = TcpStream::connect(h.plain).await.expect("connect plain");
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream
}

fn basic_header(user: &str, token: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let raw = format!("{user}:{token}");
    let mut out = String::new();
    for chunk in raw.as_bytes().chunks(3) {
        let mut acc = 0u32;
        for (i, &b) in chunk.iter().enumerate() {
            acc |= u32::from(b) << (16 - 8 * i);
        }
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((acc >> (18 - 6 * i)) & 63) as usize] as char);
        }
        for _ in chunk.len()..3 {
            out.push('=');
        }
    }
    format!("Authorization: Basic {out}\r\n")
}

/// Reads one response: status and body (by Content-Length).
async fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            let n = stream.read(&mut chunk).await.expect("read response");
            assert!(
                n > 0,
                "connection closed before a whole response: {buffer:?}"
            );
            buffer.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buffer).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if buffer.len() >= end + 4 + length {
                    let status = text[9..12].parse().expect("status");
                    return (status, text[end + 4..end + 4 + length].to_owned());
                }
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("a response in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_is_refused_as_soon_as_it_passes_the_limit() {
    let h = Harness::start(Options::default()).await;
    let sha = sha(b"whatever");
    let mut stream = raw_request(
        &h,
        &format!(
            "PUT /v1/images/{sha} HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n{}Transfer-Encoding: chunked\r\n\r\n",
            basic_header(&h.user(), &h.token)
        ),
    )
    .await;
    // 320 KiB in 32 KiB chunks: past the 256 KiB limit but within what the
    // server drains afterwards, so the whole exchange is orderly.
    let chunk = vec![0xABu8; 32 * 1024];
    for _ in 0..10 {
        stream
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .unwrap();
        stream.write_all(&chunk).await.unwrap();
        stream.write_all(b"\r\n").await.unwrap();
    }
    stream.write_all(b"0\r\n\r\n").await.unwrap();
    let (status, body) = read_response(&mut stream).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("\"too_large\""), "{body}");
    assert!(files_under(&h.images).is_empty());
    // The rest of the body was read and discarded (not left unread), so the
    // connection is still usable.
    stream
        .write_all(
            format!(
                "HEAD /v1/images/{sha} HTTP/1.1\r\nHost: x\r\n{}\r\n",
                basic_header(&h.user(), &h.token)
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let (status, _) = read_response(&mut stream).await;
    assert_eq!(status, 404);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_beyond_the_concurrency_limit_are_told_to_retry() {
    let h = Harness::start(Options {
        max_concurrent_uploads: 1,
        ..Options::default()
    })
    .await;
    let first = jpeg(7);
    let first_sha = sha(&first);
    let half = first.len() / 2;
    let mut stream = raw_request(
        &h,
        &format!(
            "PUT /v1/images/{first_sha} HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n{}Content-Length: {}\r\n\r\n",
            basic_header(&h.user(), &h.token),
            first.len()
        ),
    )
    .await;
    stream.write_all(&first[..half]).await.unwrap();
    h.wait_for_metric("central_upload_uploads_in_progress", 1.0)
        .await;

    let second = jpeg(8);
    let response = put(
        &h.device_client(),
        &h.url(sha(&second).as_str()),
        second,
        "image/jpeg",
    )
    .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(error_code(response).await, "busy");

    stream.write_all(&first[half..]).await.unwrap();
    let (status, body) = read_response(&mut stream).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(std::fs::read(h.object_path(&first_sha)).unwrap(), first);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_past_the_request_timeout_is_refused() {
    let h = Harness::start(Options {
        request_timeout_s: 1,
        ..Options::default()
    })
    .await;
    let image = jpeg(13);
    let image_sha = sha(&image);
    let mut stream = raw_request(
        &h,
        &format!(
            "PUT /v1/images/{image_sha} HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n{}Content-Length: {}\r\n\r\n",
            basic_header(&h.user(), &h.token),
            image.len()
        ),
    )
    .await;
    stream.write_all(&image[..image.len() / 2]).await.unwrap();
    // The rest never comes.
    let (status, body) = read_response(&mut stream).await;
    assert_eq!(status, 408, "{body}");
    assert!(body.contains("\"timeout\""), "{body}");
    assert_eq!(h.metric("central_upload_uploads_in_progress"), 0.0);
    assert!(files_under(&h.images).is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_accepting_and_finishes_the_upload_in_progress() {
    let h = Harness::start(Options::default()).await;
    let image = jpeg(9);
    let image_sha = sha(&image);
    let half = image.len() / 2;
    let mut stream = raw_request(
        &h,
        &format!(
            "PUT /v1/images/{image_sha} HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n{}Content-Length: {}\r\n\r\n",
            basic_header(&h.user(), &h.token),
            image.len()
        ),
    )
    .await;
    stream.write_all(&image[..half]).await.unwrap();
    h.wait_for_metric("central_upload_uploads_in_progress", 1.0)
        .await;

    h.shutdown.send(true).expect("server listening to shutdown");
    let deadline = tokio::time::Instant::now() + WAIT;
    while TcpStream::connect(h.plain).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still accepting after shutdown"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !h.task.as_ref().unwrap().is_finished(),
        "run() must wait for the upload in progress"
    );

    stream.write_all(&image[half..]).await.unwrap();
    let (status, body) = read_response(&mut stream).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(std::fs::read(h.object_path(&image_sha)).unwrap(), image);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_failure_is_503_counted_and_recovers() {
    let h = Harness::start(Options::default()).await;
    let client = h.device_client();
    let image = jpeg(10);
    let image_sha = sha(&image);
    // The store's folder replaced by a file (root ignores permissions, so
    // a read-only folder would not fail here).
    std::fs::remove_dir_all(&h.images).expect("remove images");
    std::fs::write(&h.images, b"not a folder").expect("file in its place");

    let response = put(
        &client,
        &h.url(image_sha.as_str()),
        image.clone(),
        "image/jpeg",
    )
    .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "5");
    assert_eq!(error_code(response).await, "store_unavailable");
    let head = client.head(h.url(image_sha.as_str())).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        h.metric("central_upload_store_errors_total{op=\"put\"}"),
        1.0
    );
    assert_eq!(
        h.metric("central_upload_store_errors_total{op=\"head\"}"),
        1.0
    );
    assert_eq!(
        h.metric("central_upload_refusals_total{code=\"store_unavailable\"}"),
        2.0
    );

    // The folder back, but the image's shard blocked by a file: the write
    // fails again and leaves nothing behind (no object, no staging file).
    std::fs::remove_file(&h.images).unwrap();
    let shard = h.images.join("images").join(&image_sha.as_str()[..2]);
    std::fs::create_dir_all(shard.parent().unwrap()).unwrap();
    std::fs::write(&shard, b"blocks the shard").unwrap();
    let response = put(
        &client,
        &h.url(image_sha.as_str()),
        image.clone(),
        "image/jpeg",
    )
    .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        files_under(&h.images),
        vec![format!("images/{}", &image_sha.as_str()[..2])]
    );

    // Fixed: the device's retry succeeds.
    std::fs::remove_file(&shard).unwrap();
    let response = put(
        &client,
        &h.url(image_sha.as_str()),
        image.clone(),
        "image/jpeg",
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(std::fs::read(h.object_path(&image_sha)).unwrap(), image);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_of_one_image_store_exactly_one_object() {
    let h = Harness::start(Options::default()).await;
    let client = h.device_client();
    let image = jpeg(11);
    let image_sha = sha(&image);
    let url = h.url(image_sha.as_str());
    let puts = (0..16).map(|_| {
        let client = client.clone();
        let url = url.clone();
        let image = image.clone();
        tokio::spawn(async move { put(&client, &url, image, "image/jpeg").await.status() })
    });
    let mut statuses = Vec::new();
    for task in puts {
        statuses.push(task.await.expect("join"));
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::CREATED || *s == StatusCode::OK),
        "{statuses:?}"
    );
    assert_eq!(
        files_under(&h.images),
        vec![format!(
            "images/{}/{}.jpg",
            &image_sha.as_str()[..2],
            image_sha
        )]
    );
    assert_eq!(std::fs::read(h.object_path(&image_sha)).unwrap(), image);
    assert_eq!(
        h.metric("central_upload_images_total{outcome=\"created\"}"),
        1.0
    );
    assert_eq!(
        h.metric("central_upload_images_total{outcome=\"existing\"}"),
        15.0
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_refusals_bytes_and_durations() {
    let h = Harness::start(Options::default()).await;
    let client = h.device_client();
    let image = jpeg(12);
    let image_sha = sha(&image);
    let url = h.url(image_sha.as_str());
    assert_eq!(
        put(&client, &url, image.clone(), "image/jpeg")
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        put(&client, &url, image.clone(), "image/jpeg")
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        put(&client, &url, image.clone(), "text/plain")
            .await
            .status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    assert_eq!(
        client.head(&url).send().await.unwrap().status(),
        StatusCode::OK
    );
    let text = h.metrics_text();
    for line in [
        "central_upload_requests_total{method=\"PUT\",status=\"201\"} 1".to_owned(),
        "central_upload_requests_total{method=\"PUT\",status=\"200\"} 1".to_owned(),
        "central_upload_requests_total{method=\"PUT\",status=\"415\"} 1".to_owned(),
        "central_upload_requests_total{method=\"HEAD\",status=\"200\"} 1".to_owned(),
        "central_upload_refusals_total{code=\"unsupported_media_type\"} 1".to_owned(),
        "central_upload_images_total{outcome=\"created\"} 1".to_owned(),
        "central_upload_images_total{outcome=\"existing\"} 1".to_owned(),
        format!("central_upload_stored_bytes_total {}", image.len()),
        "central_upload_request_duration_seconds_count 4".to_owned(),
        "central_upload_in_flight_requests 0".to_owned(),
        "central_upload_uploads_in_progress 0".to_owned(),
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_refuses_a_config_with_nothing_to_serve_or_no_way_to_authenticate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ObjectStoreConfig::Local {
        path: dir.path().join("images"),
        fsync: false,
    };
    let nothing = UploadConfig {
        object_store: store.clone(),
        ..UploadConfig::default()
    };
    let err = UploadServer::bind(&nothing, None, UploadMetrics::default())
        .await
        .expect_err("no listener");
    assert_eq!(err.code(), "config");
    assert!(err.to_string().contains("upload.plain_listen"), "{err}");
    let plain_without_tokens = UploadConfig {
        plain_listen: Some("127.0.0.1:0".parse().unwrap()),
        object_store: store,
        ..UploadConfig::default()
    };
    let err = UploadServer::bind(&plain_without_tokens, None, UploadMetrics::default())
        .await
        .expect_err("no credentials");
    assert!(err.to_string().contains("credentials"), "{err}");
    let server = UploadServer::bind(
        &plain_without_tokens,
        Some(Credentials::default()),
        UploadMetrics::default(),
    )
    .await
    .expect("tokens given directly");
    assert!(server.local_addrs().plain.is_some() && server.local_addrs().https.is_none());
}

/// The status of a response whose body is not sent (a HEAD's).
async fn read_head_status(stream: &mut TcpStream) -> u16 {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 1024];
    let read = async {
        while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut chunk).await.expect("read response");
            assert!(n > 0, "connection closed before a response head");
            buffer.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&buffer[9..12])
            .parse()
            .expect("status")
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("a response in time")
}

/// The whole JSON refusal: (code, message).
async fn refusal(response: reqwest::Response) -> (String, String) {
    let body: serde_json::Value = response.json().await.expect("JSON error body");
    (
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_bodies_decompression_bombs_and_hostile_paths_store_nothing() {
    let h = Harness::start(Options::default()).await;
    let client = h.device_client();
    let before = files_under(h._dir.path());
    let refused = |code: &str| format!("central_upload_refusals_total{{code=\"{code}\"}}");

    // A zero-byte body named by its own digest: hashed fine, then not a JPEG.
    let empty_sha = sha(b"");
    let response = put(
        &client,
        &h.url(empty_sha.as_str()),
        Vec::new(),
        "image/jpeg",
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(response).await, "not_jpeg");
    assert_eq!(h.metric(&refused("not_jpeg")), 1.0);
    // Under another image's digest it is a mismatch first.
    let response = put(
        &client,
        &h.url(sha(&jpeg(20)).as_str()),
        Vec::new(),
        "image/jpeg",
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_code(response).await, "hash_mismatch");

    // A decompression bomb: a valid 160x120 JPEG whose frame header declares
    // 16384 x 16384 px (768 MiB of RGB), refused by the decoder's limits.
    let bomb = inspection_core::image_check::with_declared_size(&jpeg(21), 16_384, 16_384)
        .expect("a frame header");
    assert!(bomb.len() < 64 * 1024, "{} bytes", bomb.len());
    let bomb_sha = sha(&bomb);
    let response = put(&client, &h.url(bomb_sha.as_str()), bomb, "image/jpeg").await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let (code, message) = refusal(response).await;
    assert_eq!(code, "corrupt_jpeg", "{message}");
    assert!(message.to_lowercase().contains("limit"), "{message}");
    assert_eq!(h.metric(&refused("corrupt_jpeg")), 1.0);
    let head = client.head(h.url(bomb_sha.as_str())).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::NOT_FOUND);

    // Hostile `{sha256}` segments, sent raw (a URL library would resolve
    // `%2e%2e` and `..` before sending) with a real image as the body.
    // (Upper-case hex is in `bad_requests_are_refused_with_their_status_and_code`.)
    let image = jpeg(22);
    let image_sha = sha(&image);
    let nul_inside = format!(
        "{}%00{}",
        &image_sha.as_str()[..32],
        &image_sha.as_str()[35..]
    );
    for (path, status, code) in [
        ("..%2F..%2Fetc%2Fpasswd".to_owned(), 400, "bad_sha256"),
        ("%2e%2e".to_owned(), 400, "bad_sha256"),
        ("%2E%2E%2F%2E%2E%2Fimages".to_owned(), 400, "bad_sha256"),
        ("..".to_owned(), 400, "bad_sha256"),
        ("../../etc/passwd".to_owned(), 404, "not_found"),
        (format!("{image_sha}%00"), 400, "bad_sha256"),
        (format!("{image_sha}%00.jpg"), 400, "bad_sha256"),
        (nul_inside, 400, "bad_sha256"),
        (format!("{image_sha}%2F"), 400, "bad_sha256"),
        (
            format!("%2F{}", &image_sha.as_str()[1..]),
            400,
            "bad_sha256",
        ),
        (format!("{image_sha}/x"), 404, "not_found"),
        ("%FF%FE".to_owned(), 400, "bad_sha256"),
    ] {
        let counted = h.metric(&refused(code));
        let mut stream = raw_request(
            &h,
            &format!(
                "PUT /v1/images/{path} HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n{}Content-Length: {}\r\n\r\n",
                basic_header(&h.user(), &h.token),
                image.len()
            ),
        )
        .await;
        stream.write_all(&image).await.unwrap();
        let (got, body) = read_response(&mut stream).await;
        assert_eq!(got, status, "{path}: {body}");
        let body: serde_json::Value = serde_json::from_str(&body).expect("JSON refusal");
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
        assert_eq!(h.metric(&refused(code)), counted + 1.0, "{path} is counted");
        // HEAD is refused the same way and creates nothing either.
        let mut stream = raw_request(
            &h,
            &format!(
                "HEAD /v1/images/{path} HTTP/1.1\r\nHost: x\r\n{}\r\n",
                basic_header(&h.user(), &h.token)
            ),
        )
        .await;
        assert_eq!(read_head_status(&mut stream).await, status, "HEAD {path}");
    }
    assert!(
        files_under(&h.images).is_empty(),
        "nothing refused was written: {:?}",
        files_under(&h.images)
    );
    assert_eq!(files_under(h._dir.path()), before, "no file anywhere else");
    for escaped in ["../etc/passwd", "../../etc/passwd", "etc/passwd"] {
        assert!(!h.images.join(escaped).exists(), "{escaped}");
    }
    assert_eq!(
        h.metric("central_upload_images_total{outcome=\"created\"}"),
        0.0
    );
    // The image itself, under its proper name, still goes in.
    let response = put(&client, &h.url(image_sha.as_str()), image, "image/jpeg").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(files_under(&h.images).len(), 1);
    h.stop().await;
}
