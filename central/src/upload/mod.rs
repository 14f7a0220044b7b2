//! The `upload` role: `PUT /v1/images/{sha256}` and `HEAD /v1/images/{sha256}`
//! over HTTPS into the object store, which is the system of record for
//! images (this role needs no database and scales on its own).
//!
//! ```text
//! DESIGN
//!
//! AUTHENTICATION
//!
//! A device proves who it is with a client certificate verified against
//! `tls.client_ca` (subject CN `{site}/{device}`, `crate::tls`), or with
//! `Authorization: Basic base64("{site}/{device}:{token}")` checked against
//! the credentials file (`crate::auth`). The certificate is read once per
//! connection, after the handshake, and travels with every request of that
//! connection; it wins over a header. Only devices may upload: a service
//! token is refused (403 `not_a_device`). The plain listener (loopback,
//! development) has no certificates, only tokens.
//!
//! CONTENT ADDRESSING AND IDEMPOTENCY
//!
//! An image's key is `images/{first two hex}/{sha256}.jpg`
//! ([`object_key`]). A PUT is checked completely before anything is
//! written: the SHA-256 of the body (computed while reading) must equal the
//! path's, and the body must be a complete JPEG (SOI at the start, EOI at the
//! end, decodable by `image`; the EOI check is explicit because the decoder
//! accepts a JPEG cut in half). It is then written with `PutMode::Create`:
//! 201 when this request created the object, 200 when it was already there
//! (the stored bytes are never rewritten; a concurrent duplicate that loses
//! the race also gets 200). Equal keys mean equal bytes, so 200 is the truth
//! for the device: its image is stored.
//!
//! NO PARTIAL OBJECTS
//!
//! The local store writes a staging file next to the target
//! (`{key}#{n}`) and publishes it with a hard link, which fails when the
//! target exists; with `fsync` (the default) the file and its folder are
//! synced before the 201, because the device deletes the image from its
//! outbox on that answer. A failed or interrupted write leaves at most a
//! staging file, never an object under the key. S3 and Azure Blob Storage
//! put whole objects atomically (and support create-if-absent).
//!
//! LIMITS
//!
//! `max_image_bytes` is enforced while reading (a larger `Content-Length`
//! is refused before reading; a chunked body as soon as it passes the
//! limit); no length is required (no 411). After a refusal the server reads
//! and discards at most another `max_image_bytes` (within the request
//! timeout, and not when the client sent `Expect: 100-continue`) so that a
//! client still sending gets the answer rather than a connection reset.
//! `request_timeout_s` bounds the TLS handshake, the request head and the
//! whole request; `max_concurrent_uploads` bounds PUTs in progress (503
//! `busy` beyond it, with `Retry-After`).
//!
//! FAILURES
//!
//! Every refusal has a status code and a JSON body
//! `{"error": {"code": "<stable_code>", "message": "<words>"}}` (codes in
//! `http.rs`, counted in `central_upload_refusals_total{code}`). An object
//! store failure is 503 `store_unavailable` with `Retry-After`; the device
//! keeps the image and retries.
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use inspection_core::wire::Sha256Hex;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use serde::Deserialize;

use crate::tls::{ServerTlsConfig, TlsError};

mod http;
mod jpeg;
mod metrics;
mod server;

pub use jpeg::{JpegProblem, check_jpeg};
pub use metrics::UploadMetrics;
pub use server::{UploadAddrs, UploadServer};

/// The most `max_image_bytes` may be: images are buffered whole in memory
/// while they are checked.
pub const MAX_IMAGE_BYTES_LIMIT: u64 = 256 * 1024 * 1024;

/// `[upload]`. Every key has a default, so an absent section is valid; what
/// the role needs to serve at all is checked by [`UploadConfig::serving_problems`].
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadConfig {
    /// HTTPS listener, served when `tls` is set. Default `0.0.0.0:8443`.
    pub listen: SocketAddr,
    /// Server certificate and, with `client_ca`, device client certificates.
    pub tls: Option<ServerTlsConfig>,
    /// Plain HTTP listener for loopback and development (token auth only;
    /// a loopback address is required because tokens travel in clear).
    pub plain_listen: Option<SocketAddr>,
    /// The credentials file (`crate::auth`) for token authentication.
    pub credentials: Option<PathBuf>,
    /// Largest image accepted, in bytes. Default 16 MiB: a 12 MP JPEG at
    /// high quality is 4-8 MB.
    pub max_image_bytes: u64,
    /// Bound on a TLS handshake, a request head and a whole request, in
    /// seconds. Default 60: 16 MiB at 4 Mbit/s takes ~34 s.
    pub request_timeout_s: u64,
    /// PUTs in progress at once (each buffers up to `max_image_bytes`).
    /// Default 64 (at most 1 GiB of buffers with the default limit).
    pub max_concurrent_uploads: usize,
    /// Where images go: `[upload.object_store]`.
    pub object_store: ObjectStoreConfig,
}

impl Default for UploadConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
            tls: None,
            plain_listen: None,
            credentials: None,
            max_image_bytes: 16 * 1024 * 1024,
            request_timeout_s: 60,
            max_concurrent_uploads: 64,
            object_store: ObjectStoreConfig::default(),
        }
    }
}

impl UploadConfig {
    /// Every problem with the values as written, each prefixed by `at`.
    pub fn problems(&self, at: &str, check_files: bool) -> Vec<String> {
        let mut problems = Vec::new();
        if !(1..=MAX_IMAGE_BYTES_LIMIT).contains(&self.max_image_bytes) {
            problems.push(format!(
                "{at}.max_image_bytes: must be between 1 and {MAX_IMAGE_BYTES_LIMIT}"
            ));
        }
        if !(1..=3600).contains(&self.request_timeout_s) {
            problems.push(format!(
                "{at}.request_timeout_s: must be between 1 and 3600"
            ));
        }
        if !(1..=100_000).contains(&self.max_concurrent_uploads) {
            problems.push(format!(
                "{at}.max_concurrent_uploads: must be between 1 and 100000"
            ));
        }
        if let Some(tls) = &self.tls {
            problems.extend(tls.problems(&format!("{at}.tls"), check_files));
        }
        if let Some(plain) = self.plain_listen {
            if !plain.ip().is_loopback() {
                problems.push(format!(
                    "{at}.plain_listen: {plain} is not a loopback address (tokens would travel in clear; use {at}.tls)"
                ));
            }
            if self.tls.is_some() && plain == self.listen && plain.port() != 0 {
                problems.push(format!("{at}.plain_listen: same address as {at}.listen"));
            }
        }
        if check_files
            && let Some(path) = &self.credentials
            && !path.is_file()
        {
            problems.push(format!(
                "{at}.credentials: {} is not a readable file",
                path.display()
            ));
        }
        problems.extend(
            self.object_store
                .problems(&format!("{at}.object_store"), check_files),
        );
        problems
    }

    /// What the role additionally needs to serve at all: a listener, and a
    /// way for devices to authenticate on it. For `central run --roles
    /// upload`; [`UploadServer::bind`] refuses the same.
    pub fn serving_problems(&self, at: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if self.tls.is_none() && self.plain_listen.is_none() {
            problems.push(format!(
                "{at}: set {at}.tls (HTTPS on {at}.listen) or {at}.plain_listen (loopback)"
            ));
        }
        let tokens = self.credentials.is_some();
        if self.plain_listen.is_some() && !tokens {
            problems.push(format!(
                "{at}.plain_listen: needs {at}.credentials (tokens are the only way to authenticate there)"
            ));
        }
        if let Some(tls) = &self.tls
            && tls.client_ca.is_none()
            && !tokens
        {
            problems.push(format!(
                "{at}.tls: set {at}.tls.client_ca (device certificates) or {at}.credentials (tokens)"
            ));
        }
        problems
    }
}

/// `[upload.object_store]`: where images are stored.
///
/// `kind = "local"` (a folder) or `kind = "s3"` (a bucket on AWS or an
/// S3-compatible store); both support the create-if-absent put this role
/// relies on (S3: `If-None-Match: *`). `[residency]` checks an S3
/// bucket's region and endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ObjectStoreConfig {
    /// A folder on the local filesystem (or a mounted volume).
    Local {
        /// The folder, created if absent. Default `data/images` (relative to
        /// the working directory).
        #[serde(default = "default_local_path")]
        path: PathBuf,
        /// Sync each image and its folder to disk before answering 201.
        /// Default true: the device deletes its copy on that answer.
        #[serde(default = "default_true")]
        fsync: bool,
    },
    /// An S3 bucket.
    S3 {
        bucket: String,
        /// The bucket's region, e.g. `eu-central-1`.
        region: String,
        /// An S3-compatible endpoint (`https://s3.example.eu`); default
        /// AWS's for the region. `http://` only on loopback (tests).
        #[serde(default)]
        endpoint: Option<String>,
        /// With `secret_access_key_file`: static credentials. Without
        /// both: the environment's (`AWS_ACCESS_KEY_ID`/`..._SECRET_...`,
        /// EKS web identity, an instance profile).
        #[serde(default)]
        access_key_id: Option<String>,
        /// The secret key's file (trailing whitespace removed).
        #[serde(default)]
        secret_access_key_file: Option<PathBuf>,
    },
}

fn default_local_path() -> PathBuf {
    PathBuf::from("data/images")
}

fn default_true() -> bool {
    true
}

impl Default for ObjectStoreConfig {
    fn default() -> Self {
        ObjectStoreConfig::Local {
            path: default_local_path(),
            fsync: true,
        }
    }
}

impl ObjectStoreConfig {
    /// Every problem, each prefixed by `at`.
    pub fn problems(&self, at: &str, check_files: bool) -> Vec<String> {
        let mut problems = Vec::new();
        match self {
            ObjectStoreConfig::Local { path, .. } => {
                if path.as_os_str().is_empty() {
                    problems.push(format!("{at}.path: must not be empty"));
                } else if check_files && path.exists() && !path.is_dir() {
                    problems.push(format!("{at}.path: {} is not a folder", path.display()));
                }
            }
            ObjectStoreConfig::S3 {
                bucket,
                region,
                endpoint,
                access_key_id,
                secret_access_key_file,
            } => {
                if bucket.is_empty() || bucket.contains('/') {
                    problems.push(format!("{at}.bucket: a bucket name, without /"));
                }
                if region.is_empty() {
                    problems.push(format!("{at}.region: required (e.g. eu-central-1)"));
                }
                if let Some(endpoint) = endpoint {
                    match reqwest::Url::parse(endpoint) {
                        Ok(url) if url.scheme() == "https" => {}
                        Ok(url)
                            if url.scheme() == "http"
                                && url
                                    .host_str()
                                    .is_some_and(inspection_core::config::is_loopback_host) => {}
                        _ => problems.push(format!(
                            "{at}.endpoint: an https:// URL (http:// only on loopback)"
                        )),
                    }
                }
                match (access_key_id, secret_access_key_file) {
                    (Some(_), Some(file)) => {
                        if check_files && !file.is_file() {
                            problems.push(format!(
                                "{at}.secret_access_key_file: {} is not a readable file",
                                file.display()
                            ));
                        }
                    }
                    (None, None) => {}
                    _ => problems.push(format!(
                        "{at}: set both access_key_id and secret_access_key_file, or neither (the environment's credentials)"
                    )),
                }
            }
        }
        problems
    }
}

/// Why the upload role could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("upload configuration: {}", .0.join("; "))]
    Config(Vec<String>),
    #[error("upload TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error("object store: {0}")]
    ObjectStore(String),
}

impl UploadError {
    /// A stable code for metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            UploadError::Config(_) => "config",
            UploadError::Tls(_) => "tls",
            UploadError::Bind { .. } => "bind",
            UploadError::ObjectStore(_) => "object_store",
        }
    }
}

/// The object key of an image: `images/{first two hex}/{sha256}.jpg` (the
/// two-character level keeps local folders small and spreads S3 prefixes).
pub fn object_key(sha: &Sha256Hex) -> object_store::path::Path {
    let hex = sha.as_str();
    object_store::path::Path::from_iter(["images", &hex[..2], &format!("{hex}.jpg")])
}

/// Opens the configured object store (the worker reads images from the same
/// one). A local folder is created if absent.
pub fn open_object_store(config: &ObjectStoreConfig) -> Result<Arc<dyn ObjectStore>, UploadError> {
    match config {
        ObjectStoreConfig::Local { path, fsync } => {
            std::fs::create_dir_all(path).map_err(|e| {
                UploadError::ObjectStore(format!("cannot create {}: {e}", path.display()))
            })?;
            let store = LocalFileSystem::new_with_prefix(path)
                .map_err(|e| UploadError::ObjectStore(format!("{}: {e}", path.display())))?
                .with_fsync(*fsync);
            Ok(Arc::new(store))
        }
        ObjectStoreConfig::S3 {
            bucket,
            region,
            endpoint,
            access_key_id,
            secret_access_key_file,
        } => {
            use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
            // Credentials from the environment (keys, EKS web identity, an
            // instance profile), but never where the images go: an
            // endpoint from AWS_ENDPOINT* would bypass the residency
            // guard, which checks only this file.
            let env = AmazonS3Builder::from_env();
            for key in [AmazonS3ConfigKey::Endpoint, AmazonS3ConfigKey::S3Endpoint] {
                if let Some(from_env) = env.get_config_value(&key)
                    && endpoint.as_deref() != Some(from_env.as_str())
                {
                    return Err(UploadError::ObjectStore(format!(
                        "the environment sets an S3 endpoint ({from_env}, {}): set upload.object_store.endpoint instead, where [residency] checks it",
                        key.as_ref()
                    )));
                }
            }
            let mut builder = env.with_bucket_name(bucket).with_region(region);
            if let Some(endpoint) = endpoint {
                builder = builder
                    .with_endpoint(endpoint)
                    .with_allow_http(endpoint.starts_with("http://"));
            }
            if let (Some(id), Some(file)) = (access_key_id, secret_access_key_file) {
                let secret = std::fs::read_to_string(file).map_err(|e| {
                    UploadError::ObjectStore(format!(
                        "upload.object_store.secret_access_key_file: cannot read {}: {e}",
                        file.display()
                    ))
                })?;
                builder = builder
                    .with_access_key_id(id)
                    .with_secret_access_key(secret.trim_end());
            }
            let store = builder
                .build()
                .map_err(|e| UploadError::ObjectStore(format!("S3 bucket {bucket}: {e}")))?;
            Ok(Arc::new(store))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<UploadConfig, String> {
        #[derive(Deserialize)]
        struct Wrapper {
            upload: UploadConfig,
        }
        toml::from_str::<Wrapper>(text)
            .map(|w| w.upload)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn an_absent_or_empty_section_is_valid_with_documented_defaults() {
        let config = parse("[upload]\n").expect("empty section");
        assert!(config.problems("upload", true).is_empty());
        assert_eq!(config.listen, "0.0.0.0:8443".parse().unwrap());
        assert_eq!(config.max_image_bytes, 16 * 1024 * 1024);
        assert_eq!(
            config.object_store,
            ObjectStoreConfig::Local {
                path: "data/images".into(),
                fsync: true
            }
        );
        // Valid as written, but nothing to serve with.
        assert_eq!(config.serving_problems("upload").len(), 1);
    }

    #[test]
    fn a_full_section_parses() {
        let config = parse(
            "[upload]\nlisten = \"0.0.0.0:9443\"\nplain_listen = \"127.0.0.1:8080\"\n\
             credentials = \"creds.toml\"\nmax_image_bytes = 1000\nrequest_timeout_s = 5\n\
             max_concurrent_uploads = 2\n\
             [upload.tls]\ncert = \"s.pem\"\nkey = \"s.key\"\nclient_ca = \"ca.pem\"\n\
             [upload.object_store]\nkind = \"local\"\npath = \"/srv/images\"\nfsync = false\n",
        )
        .expect("valid");
        assert!(config.problems("upload", false).is_empty());
        assert!(config.serving_problems("upload").is_empty());
        assert_eq!(
            config.object_store,
            ObjectStoreConfig::Local {
                path: "/srv/images".into(),
                fsync: false
            }
        );
    }

    #[test]
    fn unknown_keys_and_kinds_are_refused() {
        for (text, needle) in [
            ("[upload]\nlisten_port = 1\n", "unknown field"),
            (
                "[upload.object_store]\nkind = \"local\"\nbucket = \"x\"\n",
                "unknown field",
            ),
            ("[upload.object_store]\nkind = \"gcs\"\n", "unknown variant"),
            ("[upload.object_store]\nkind = \"s3\"\n", "missing field"),
        ] {
            let err = parse(text).expect_err(text);
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let config = parse(
            "[upload]\nplain_listen = \"0.0.0.0:8080\"\nmax_image_bytes = 0\n\
             request_timeout_s = 0\nmax_concurrent_uploads = 0\ncredentials = \"/nonexistent/c.toml\"\n\
             [upload.object_store]\nkind = \"local\"\npath = \"\"\n",
        )
        .expect("parses");
        let problems = config.problems("upload", true);
        for needle in [
            "upload.max_image_bytes",
            "upload.request_timeout_s",
            "upload.max_concurrent_uploads",
            "upload.plain_listen: 0.0.0.0:8080 is not a loopback",
            "upload.credentials: /nonexistent/c.toml",
            "upload.object_store.path: must not be empty",
        ] {
            assert!(
                problems.iter().any(|p| p.contains(needle)),
                "{needle} missing in {problems:#?}"
            );
        }
        assert_eq!(problems.len(), 6, "{problems:#?}");
        let serving = config.serving_problems("upload");
        assert!(serving.is_empty(), "{serving:#?}");
        let no_tokens = UploadConfig {
            credentials: None,
            ..config
        };
        assert!(
            no_tokens.serving_problems("upload")[0].contains("needs upload.credentials"),
            "{:?}",
            no_tokens.serving_problems("upload")
        );
    }

    #[test]
    fn object_keys_are_two_level_and_content_addressed() {
        let sha = Sha256Hex::from_digest(&[0xab; 32]);
        assert_eq!(
            object_key(&sha).as_ref(),
            format!("images/ab/{}.jpg", sha.as_str())
        );
    }
}
