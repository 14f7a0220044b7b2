//! The HTTP surface of the upload role: routes, authentication, checks,
//! and the JSON refusals.
//!
//! | status | code                     | when                                                        |
//! |--------|--------------------------|-------------------------------------------------------------|
//! | 400    | `bad_sha256`             | the path's digest is not 64 lowercase hex characters        |
//! | 400    | `body_read`              | the body could not be read (client aborted, bad chunking)   |
//! | 401    | `unauthenticated`        | no client certificate and no `Authorization` header         |
//! | 401    | `bad_credentials`        | malformed `Authorization`, unknown user or wrong token      |
//! | 403    | `not_a_device`           | a service token, or a certificate whose CN is not a device  |
//! | 404    | `not_found`              | unknown route (a HEAD of an absent image is a bare 404)     |
//! | 405    | `method_not_allowed`     | another method on `/v1/images/{sha256}` (`Allow: PUT, HEAD`) |
//! | 408    | `timeout`                | the request took longer than `request_timeout_s`            |
//! | 413    | `too_large`              | `Content-Length` or the body passed `max_image_bytes`       |
//! | 415    | `unsupported_media_type` | `Content-Type` is not `image/jpeg`                          |
//! | 422    | `hash_mismatch`          | the body's SHA-256 is not the path's                        |
//! | 422    | `not_jpeg`               | the body does not start with a JPEG start-of-image marker   |
//! | 422    | `truncated_jpeg`         | no end-of-image marker at the end                           |
//! | 422    | `corrupt_jpeg`           | the decoder refuses it (or it exceeds the decoder's limits) |
//! | 500    | `internal`               | a bug (a check thread panicked)                             |
//! | 503    | `busy`                   | `max_concurrent_uploads` PUTs already in progress           |
//! | 503    | `store_unavailable`      | the object store failed; nothing was stored                 |
//!
//! 401s carry `WWW-Authenticate: Basic realm="inspection-upload"`, 503s
//! `Retry-After` (seconds). Success: PUT 201 (created) or 200 (already
//! stored) with `{"sha256", "bytes", "created"}`; HEAD 200 with the
//! object's `Content-Length`, or 404.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Extension, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use inspection_core::wire::Sha256Hex;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::jpeg::check_jpeg;
use super::metrics::{OutcomeLabels, RequestLabels, UploadMetrics};
use super::object_key;
use crate::auth::{Credentials, Principal};

/// The challenge of a 401.
const CHALLENGE: &str = "Basic realm=\"inspection-upload\"";
/// `Retry-After` of a 503 `store_unavailable`, in seconds.
const RETRY_STORE_S: u32 = 5;
/// `Retry-After` of a 503 `busy`, in seconds.
const RETRY_BUSY_S: u32 = 1;

/// Who is at the other end of a connection, as its TLS handshake said.
#[derive(Debug, Clone)]
pub(crate) enum PeerIdentity {
    /// No verified certificate (plain listener, or TLS without one).
    Anonymous,
    /// A verified certificate naming a device.
    Device(Principal),
    /// A verified certificate whose CN is not `site/device`.
    NotADevice(String),
}

/// What the handlers share.
pub(crate) struct AppState {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) credentials: Option<Credentials>,
    pub(crate) metrics: UploadMetrics,
    pub(crate) max_image_bytes: u64,
    pub(crate) request_timeout: Duration,
    pub(crate) permits: Arc<Semaphore>,
}

/// The router; every connection adds its [`PeerIdentity`] as an extension.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    let metrics = state.metrics.clone();
    Router::new()
        .route(
            "/v1/images/{sha256}",
            put(put_image).head(head_image).fallback(method_not_allowed),
        )
        .fallback(not_found)
        .with_state(state)
        .layer(middleware::from_fn_with_state(metrics, observe))
}

/// A refusal: status, stable code, message, and the headers some need.
#[derive(Debug)]
pub(crate) struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u32>,
}

/// Marks a response as a refusal, for the metrics middleware.
#[derive(Debug, Clone, Copy)]
struct RefusalCode(&'static str);

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    fn store_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the image store is unavailable; nothing was stored, retry later",
        )
        .retry_after(RETRY_STORE_S)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": { "code": self.code, "message": self.message }
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(CHALLENGE),
            );
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            headers.insert(header::ALLOW, HeaderValue::from_static("PUT, HEAD"));
        }
        response.extensions_mut().insert(RefusalCode(self.code));
        response
    }
}

/// Counts every response by method and status (and refusals by code),
/// times it, and tracks requests in flight.
async fn observe(State(metrics): State<UploadMetrics>, request: Request, next: Next) -> Response {
    let method = match *request.method() {
        Method::PUT => "PUT",
        Method::HEAD => "HEAD",
        _ => "other",
    };
    let start = Instant::now();
    metrics.in_flight.inc();
    // Decrements even when the connection drops mid-request and this
    // future is cancelled.
    struct InFlight(UploadMetrics);
    impl Drop for InFlight {
        fn drop(&mut self) {
            self.0.in_flight.dec();
        }
    }
    let _guard = InFlight(metrics.clone());
    let response = next.run(request).await;
    metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            status: response.status().as_u16(),
        })
        .inc();
    if let Some(RefusalCode(code)) = response.extensions().get::<RefusalCode>() {
        metrics.refused(code);
    }
    metrics
        .request_seconds
        .observe(start.elapsed().as_secs_f64());
    response
}

async fn not_found() -> Refusal {
    Refusal::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route; images are at /v1/images/{sha256}",
    )
}

async fn method_not_allowed() -> Refusal {
    Refusal::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "only PUT and HEAD are allowed on /v1/images/{sha256}",
    )
}

/// The device this request comes from, or why it cannot upload.
fn authenticate(
    peer: &PeerIdentity,
    headers: &HeaderMap,
    credentials: Option<&Credentials>,
) -> Result<Principal, Refusal> {
    match peer {
        PeerIdentity::Device(principal) => return Ok(principal.clone()),
        PeerIdentity::NotADevice(reason) => {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "not_a_device",
                format!("the client certificate does not name a device: {reason}"),
            ));
        }
        PeerIdentity::Anonymous => {}
    }
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "present a device client certificate or Basic credentials `site/device:token`",
        ));
    };
    let bad = |why: &str| {
        Refusal::new(
            StatusCode::UNAUTHORIZED,
            "bad_credentials",
            format!("credentials refused: {why}"),
        )
    };
    let value = value
        .to_str()
        .map_err(|_| bad("the Authorization header is not ASCII"))?;
    let (scheme, encoded) = value
        .split_once(' ')
        .ok_or_else(|| bad("expected `Basic <base64>`"))?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad("only the Basic scheme is supported"));
    }
    let decoded = base64_decode(encoded.trim()).ok_or_else(|| bad("invalid base64"))?;
    let colon = decoded
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| bad("expected `site/device:token`"))?;
    let user = std::str::from_utf8(&decoded[..colon]).map_err(|_| bad("user is not UTF-8"))?;
    let token = &decoded[colon + 1..];
    let principal = credentials
        .and_then(|c| c.authenticate(user, token))
        .ok_or_else(|| bad("unknown user or wrong token"))?;
    match principal {
        Principal::Device { .. } => Ok(principal),
        Principal::Service { .. } => Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "not_a_device",
            "only devices upload images",
        )),
    }
}

/// Standard base64 (with or without padding); `None` when invalid.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let text = text.trim_end_matches('=');
    if text.len() % 4 == 1 || text.len() > 4096 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.as_bytes().chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

fn parse_sha(path: Result<Path<String>, PathRejection>) -> Result<Sha256Hex, Refusal> {
    let bad = |shown: &str| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "bad_sha256",
            format!(
                "the path must name the image's SHA-256 as 64 lowercase hex characters, got {:?}",
                shown.chars().take(80).collect::<String>()
            ),
        )
    };
    let Path(raw) = path.map_err(|_| bad("(undecodable)"))?;
    Sha256Hex::new(raw.as_str()).map_err(|_| bad(&raw))
}

async fn head_image(
    State(state): State<Arc<AppState>>,
    Extension(peer): Extension<PeerIdentity>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    authenticate(&peer, &headers, state.credentials.as_ref())?;
    let sha = parse_sha(path)?;
    match state.store.head(&object_key(&sha)).await {
        Ok(meta) => Ok((
            StatusCode::OK,
            [
                (header::CONTENT_LENGTH, HeaderValue::from(meta.size)),
                (header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg")),
            ],
        )
            .into_response()),
        Err(object_store::Error::NotFound { .. }) => Ok(StatusCode::NOT_FOUND.into_response()),
        Err(error) => {
            state.metrics.store_error("head");
            tracing::warn!(%error, sha256 = %sha, "object store head failed");
            Err(Refusal::store_unavailable())
        }
    }
}

async fn put_image(
    State(state): State<Arc<AppState>>,
    Extension(peer): Extension<PeerIdentity>,
    path: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<Response, Refusal> {
    let deadline = tokio::time::Instant::now() + state.request_timeout;
    let (parts, body) = request.into_parts();
    // The client may be waiting for `100 Continue` before sending the body;
    // then there is nothing to discard.
    let expects_continue = parts
        .headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let checked = precheck(&state, &peer, path, &parts.headers);
    let (sha, principal) = match checked {
        Ok(ok) => ok,
        Err(refusal) => {
            if !expects_continue {
                drain(body.into_data_stream(), state.max_image_bytes, deadline).await;
            }
            return Err(refusal);
        }
    };
    let Ok(permit) = state.permits.clone().try_acquire_owned() else {
        if !expects_continue {
            drain(body.into_data_stream(), state.max_image_bytes, deadline).await;
        }
        return Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "too many uploads in progress; retry later",
        )
        .retry_after(RETRY_BUSY_S));
    };
    let _slot = Slot::take(permit, &state.metrics);
    match tokio::time::timeout_at(deadline, receive_and_store(&state, &sha, body, deadline)).await {
        Ok(Ok((status, bytes))) => {
            tracing::debug!(device = %principal.label(), sha256 = %sha, bytes, status = status.as_u16(), "image stored");
            let body = serde_json::json!({
                "sha256": sha.as_str(),
                "bytes": bytes,
                "created": status == StatusCode::CREATED,
            });
            Ok((status, axum::Json(body)).into_response())
        }
        Ok(Err(refusal)) => {
            tracing::info!(device = %principal.label(), sha256 = %sha, code = refusal.code, "upload refused");
            Err(refusal)
        }
        Err(_) => Err(Refusal::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!(
                "the request took longer than {} s",
                state.request_timeout.as_secs()
            ),
        )),
    }
}

/// One of the `max_concurrent_uploads` slots, shown in
/// `central_upload_uploads_in_progress` while held.
struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    metrics: UploadMetrics,
}

impl Slot {
    fn take(permit: tokio::sync::OwnedSemaphorePermit, metrics: &UploadMetrics) -> Self {
        metrics.uploads_in_progress.inc();
        Self {
            _permit: permit,
            metrics: metrics.clone(),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.metrics.uploads_in_progress.dec();
    }
}

/// Everything that can be refused from the request head alone.
fn precheck(
    state: &AppState,
    peer: &PeerIdentity,
    path: Result<Path<String>, PathRejection>,
    headers: &HeaderMap,
) -> Result<(Sha256Hex, Principal), Refusal> {
    let principal = authenticate(peer, headers, state.credentials.as_ref())?;
    let sha = parse_sha(path)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if content_type.as_deref() != Some("image/jpeg") {
        return Err(Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "Content-Type must be image/jpeg, got {:?}",
                content_type.unwrap_or_default()
            ),
        ));
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = declared
        && length > state.max_image_bytes
    {
        return Err(too_large(state.max_image_bytes));
    }
    Ok((sha, principal))
}

fn too_large(max: u64) -> Refusal {
    Refusal::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("images may be at most {max} bytes"),
    )
}

/// Reads the body (hashing as it goes, refusing past the limit), checks it,
/// and writes it. Returns 201 or 200 and the size.
async fn receive_and_store(
    state: &AppState,
    sha: &Sha256Hex,
    body: Body,
    deadline: tokio::time::Instant,
) -> Result<(StatusCode, usize), Refusal> {
    let max = state.max_image_bytes;
    let mut stream = body.into_data_stream();
    let mut buffer = BytesMut::new();
    let mut hasher = Sha256::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "body_read",
                format!("the body could not be read: {e}"),
            )
        })?;
        if (buffer.len() + chunk.len()) as u64 > max {
            // Nothing more is kept; the rest is discarded (bounded) so the
            // client sees the 413 rather than a reset.
            drop(buffer);
            drain(stream, max, deadline).await;
            return Err(too_large(max));
        }
        hasher.update(&chunk);
        buffer.extend_from_slice(&chunk);
    }
    let digest: [u8; 32] = hasher.finalize().into();
    let actual = Sha256Hex::from_digest(&digest);
    if &actual != sha {
        return Err(Refusal::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "hash_mismatch",
            format!("the body's SHA-256 is {actual}, not the path's"),
        ));
    }
    let bytes: Bytes = buffer.freeze();
    let size = bytes.len();
    let checked = bytes.clone();
    match tokio::task::spawn_blocking(move || check_jpeg(&checked)).await {
        Ok(Ok(_dimensions)) => {}
        Ok(Err(problem)) => {
            return Err(Refusal::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                problem.code(),
                problem.to_string(),
            ));
        }
        Err(join) => {
            tracing::error!(error = %join, "JPEG check thread failed");
            return Err(Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error while checking the image",
            ));
        }
    }
    let options = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    match state
        .store
        .put_opts(&object_key(sha), PutPayload::from(bytes), options)
        .await
    {
        Ok(_) => {
            state
                .metrics
                .images
                .get_or_create(&OutcomeLabels { outcome: "created" })
                .inc();
            state.metrics.stored_bytes.inc_by(size as u64);
            Ok((StatusCode::CREATED, size))
        }
        Err(object_store::Error::AlreadyExists { .. }) => {
            state
                .metrics
                .images
                .get_or_create(&OutcomeLabels {
                    outcome: "existing",
                })
                .inc();
            Ok((StatusCode::OK, size))
        }
        Err(error) => {
            state.metrics.store_error("put");
            tracing::warn!(%error, sha256 = %sha, "object store put failed");
            Err(Refusal::store_unavailable())
        }
    }
}

/// Reads and discards at most `cap` bytes of what the client is still
/// sending, until `deadline`.
async fn drain<S, E>(mut stream: S, cap: u64, deadline: tokio::time::Instant)
where
    S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
{
    let discard = async {
        let mut seen = 0u64;
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len() as u64;
            if seen > cap {
                break;
            }
        }
    };
    let _ = tokio::time::timeout_at(deadline, discard).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_standard_text_and_refuses_the_rest() {
        assert_eq!(base64_decode("").as_deref(), Some(&b""[..]));
        assert_eq!(base64_decode("Zg==").as_deref(), Some(&b"f"[..]));
        assert_eq!(base64_decode("Zm8").as_deref(), Some(&b"fo"[..]));
        assert_eq!(base64_decode("Zm9v").as_deref(), Some(&b"foo"[..]));
        assert_eq!(
            base64_decode("czEvZDE6c2VjcmV0").as_deref(),
            Some(&b"s1/d1:secret"[..])
        );
        assert_eq!(base64_decode("Zm9v!"), None);
        assert_eq!(base64_decode("Z"), None);
    }

    fn basic(user_token: &str) -> HeaderMap {
        let mut encoded = String::new();
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        for chunk in user_token.as_bytes().chunks(3) {
            let mut acc = 0u32;
            for (i, &b) in chunk.iter().enumerate() {
                acc |= u32::from(b) << (16 - 8 * i);
            }
            for i in 0..=chunk.len() {
                encoded.push(ALPHABET[((acc >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {encoded}")).unwrap(),
        );
        headers
    }

    #[test]
    fn authentication_by_token_refuses_services_and_wrong_tokens() {
        let text = format!(
            "[[device]]\nsite = \"s1\"\ndevice = \"d1\"\ntoken_sha256 = \"{}\"\n\
             [[service]]\nname = \"bridge\"\ntoken_sha256 = \"{}\"\n",
            crate::auth::hash_token("dev-token"),
            crate::auth::hash_token("svc-token")
        );
        let creds = Credentials::from_toml(&text, "t").unwrap();
        let anon = PeerIdentity::Anonymous;
        let code = |r: Result<Principal, Refusal>| r.map_err(|e| e.code);
        assert!(authenticate(&anon, &basic("s1/d1:dev-token"), Some(&creds)).is_ok());
        assert_eq!(
            code(authenticate(&anon, &basic("s1/d1:wrong"), Some(&creds))),
            Err("bad_credentials")
        );
        assert_eq!(
            code(authenticate(&anon, &basic("s1/d1:dev-token"), None)),
            Err("bad_credentials")
        );
        assert_eq!(
            code(authenticate(
                &anon,
                &basic("bridge:svc-token"),
                Some(&creds)
            )),
            Err("not_a_device")
        );
        assert_eq!(
            code(authenticate(&anon, &HeaderMap::new(), Some(&creds))),
            Err("unauthenticated")
        );
        let cert = PeerIdentity::NotADevice("cn".into());
        assert_eq!(
            code(authenticate(&cert, &basic("s1/d1:dev-token"), Some(&creds))),
            Err("not_a_device")
        );
    }
}
