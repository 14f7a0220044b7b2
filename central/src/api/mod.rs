//! The `api` role: the staff REST API under `/api/v1`.
//!
//! ```text
//! DESIGN
//!
//! WHAT STAFF DO WITH IT
//!
//! Find inspections (plate, site, device, kind, status, review state, date
//! range; cursor pages), open one (frames with their quality, findings with
//! their status, plate reads, the comparison with the pickup, the report),
//! look at the pictures (a frame with its findings drawn; the pickup beside
//! the return for one finding), decide each new finding (confirm, reject,
//! annotate), mark the inspection reviewed, and approve a charge on
//! confirmed findings only (store/staff.rs has the rules; the store checks
//! them in the transaction that writes, with the audit entry). Also: a
//! vehicle's history, sites and devices with their last status and outbox
//! backlog, report exports (Markdown, HTML, PDF), the audit log.
//!
//! ONE PATH FOR EVERY REQUEST
//!
//! `guard` (a middleware on every /api/v1 route) authenticates the bearer
//! token (auth.rs: JWTs against the provider's JWKS, or hashed API tokens),
//! applies the caller's rate limit (per token or user, GCRA), and hands the
//! `Caller` to the handler, which checks the route's role and the caller's
//! site scope (an inspection of a site the caller may not see is "not
//! found", so its existence does not leak). `problems` turns every error
//! response, including axum's own (bad JSON, body too large, no route),
//! into RFC 9457 problem+json. Metrics by matched route and status.
//!
//! TRANSPORT
//!
//! HTTPS with `[api.tls]`; plain HTTP only on loopback or with an explicit
//! `plain_http = true` (k8s/: TLS ends at the ingress and a NetworkPolicy
//! admits only the ingress controller), so tokens never cross a network in
//! clear by default. Connections through `crate::https`. Request bodies are
//! limited (`body_limit_bytes`), every request has a time limit, and
//! shutdown drains requests in flight.
//! ```

mod auth;
mod cache;
mod commands;
mod dto;
mod erasure;
mod fleet;
mod inspections;
mod metrics;
mod openapi;
mod problem;
mod ui;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use inspection_core::topic::TopicPrefix;
use object_store::ObjectStore;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

pub use auth::{ApiTokens, Authenticator, Caller, Oidc, OidcConfig, Role, RoleNames, SiteScope};
pub use cache::{Cache, CacheConfig, CacheMetrics, Kind as CacheKind, Lookup, Ticket};
pub use commands::{MqttClientConfig, Publisher};
pub use metrics::ApiMetrics;
pub use openapi::openapi_json;
pub use problem::{PROBLEM_JSON, Problem};
pub use ui::{LANGUAGES, SignInConfig};

use crate::report::export::{ExportConfig, ExportOptions};
use crate::store::Store;
use crate::tls::ServerTlsConfig;

/// `[api]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Listener. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// HTTPS. Without it the listener is plain HTTP, which needs a loopback
    /// `listen` or `plain_http = true`.
    pub tls: Option<ServerTlsConfig>,
    /// Serve plain HTTP on a non-loopback address: in Kubernetes, where TLS
    /// ends at the ingress and a NetworkPolicy admits only the ingress
    /// controller. Default false: an explicit choice.
    pub plain_http: bool,
    /// The API tokens file (service accounts; hashed tokens).
    pub tokens: Option<PathBuf>,
    /// JWTs from an OpenID Connect provider.
    pub oidc: Option<OidcConfig>,
    /// Largest request body accepted.
    pub body_limit_bytes: usize,
    /// Sustained requests per minute per token or user.
    pub rate_limit_per_minute: u32,
    /// Requests a caller may make at once above the sustained rate.
    pub rate_limit_burst: u32,
    /// Longest a request may take (exports of large inspections included).
    pub request_timeout_seconds: u64,
    pub cache: CacheConfig,
    /// The broker, for device commands; without it `POST .../commands`
    /// answers 503.
    pub mqtt: Option<MqttClientConfig>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls: None,
            plain_http: false,
            tokens: None,
            oidc: None,
            body_limit_bytes: 64 * 1024,
            rate_limit_per_minute: 600,
            rate_limit_burst: 60,
            request_timeout_seconds: 60,
            cache: CacheConfig::default(),
            mqtt: None,
        }
    }
}

impl ApiConfig {
    /// Every problem of the section, each prefixed with `at`.
    pub fn problems(&self, at: &str) -> Vec<String> {
        let mut out = Vec::new();
        out.extend(crate::https::plain_listener_problem(
            at,
            self.listen,
            self.tls.is_some(),
            self.plain_http,
        ));
        if let Some(tls) = &self.tls {
            // The files are read when the role binds.
            out.extend(tls.problems(&format!("{at}.tls"), false));
            if self.plain_http {
                out.push(format!("{at}.plain_http: only meaningful without {at}.tls"));
            }
        }
        if let Some(oidc) = &self.oidc {
            out.extend(oidc.problems(&format!("{at}.oidc")));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.body_limit_bytes) {
            out.push(format!("{at}.body_limit_bytes: 1024 to 16777216"));
        }
        if self.rate_limit_per_minute == 0 || self.rate_limit_burst == 0 {
            out.push(format!(
                "{at}.rate_limit_per_minute and rate_limit_burst: at least 1"
            ));
        }
        if !(1..=600).contains(&self.request_timeout_seconds) {
            out.push(format!("{at}.request_timeout_seconds: 1 to 600"));
        }
        out.extend(self.cache.problems(&format!("{at}.cache")));
        if let Some(mqtt) = &self.mqtt {
            out.extend(mqtt.problems(&format!("{at}.mqtt")));
        }
        out
    }

    /// What the role needs to serve: some way to authenticate.
    pub fn serving_problems(&self, at: &str) -> Vec<String> {
        let mut out = self.problems(at);
        if self.tokens.is_none() && self.oidc.is_none() {
            out.push(format!(
                "{at}: set {at}.tokens (API tokens file) or {at}.oidc (JWTs): nobody could sign in"
            ));
        }
        out
    }
}

/// Why the role could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("api configuration: {}", .0.join("; "))]
    Config(Vec<String>),
    #[error("api: cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub images: Arc<dyn ObjectStore>,
    pub auth: Arc<Authenticator>,
    pub export: Arc<ExportOptions>,
    pub metrics: ApiMetrics,
    pub cache: Arc<Cache>,
    /// Device commands, when `[api.mqtt]` is set.
    pub commands: Option<Publisher>,
    limiter: Arc<DefaultKeyedRateLimiter<String>>,
    /// The web UI's provider sign-in (`[api.oidc.sign_in]`).
    sign_in: Option<SignInConfig>,
    body_limit: usize,
    timeout: Duration,
}

impl AppState {
    pub fn new(
        config: &ApiConfig,
        export: &ExportConfig,
        prefix: TopicPrefix,
        store: Arc<dyn Store>,
        images: Arc<dyn ObjectStore>,
        auth: Authenticator,
        metrics: ApiMetrics,
    ) -> Result<AppState, ApiError> {
        let problems = config.problems("api");
        if !problems.is_empty() {
            return Err(ApiError::Config(problems));
        }
        let export = ExportOptions::from_config(export)
            .map_err(|e| ApiError::Config(vec![format!("report.export: {e}")]))?;
        let cache = Cache::new(&config.cache, metrics.cache.clone())
            .map_err(|e| ApiError::Config(vec![e]))?;
        let commands = match &config.mqtt {
            Some(mqtt) => {
                Some(Publisher::start(mqtt, prefix).map_err(|e| ApiError::Config(vec![e]))?)
            }
            None => None,
        };
        let per_minute = NonZeroU32::new(config.rate_limit_per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.rate_limit_burst).unwrap_or(NonZeroU32::MIN);
        Ok(AppState {
            store,
            images,
            auth: Arc::new(auth),
            export: Arc::new(export),
            metrics,
            cache: Arc::new(cache),
            commands,
            limiter: Arc::new(RateLimiter::keyed(
                Quota::per_minute(per_minute).allow_burst(burst),
            )),
            sign_in: config.oidc.as_ref().and_then(|o| o.sign_in.clone()),
            body_limit: config.body_limit_bytes,
            timeout: Duration::from_secs(config.request_timeout_seconds),
        })
    }
}

/// The whole API: `/api/v1/...`, `/api/openapi.json`, the docs UI at
/// `/api/docs` and the staff web UI at `/ui/`.
pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .merge(inspections::routes())
        .merge(fleet::routes())
        .merge(commands::routes())
        .merge(erasure::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), guard));
    Router::new()
        .nest("/api/v1", v1)
        .merge(openapi::routes())
        .merge(ui::routes(state.sign_in.clone()))
        .fallback(|| async { Problem::not_found("no such endpoint") })
        .layer(DefaultBodyLimit::max(state.body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), problems))
        .with_state(state)
}

/// Authentication, rate limit, then the handler (with the `Caller` in the
/// request's extensions).
async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // The outer layer runs before routing: hand it the matched route.
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let mut response = authorized(state, request, next).await;
    if let Some(matched) = matched {
        response.extensions_mut().insert(matched);
    }
    response
}

async fn authorized(state: AppState, mut request: Request, next: Next) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let caller = match state.auth.authenticate(authorization).await {
        Ok(caller) => caller,
        Err(refusal) => {
            state.metrics.auth_refused(refusal.reason);
            let problem = if refusal.reason == "keys_unavailable" {
                Problem::unavailable(refusal.detail)
            } else if refusal.reason == "no_role" {
                Problem::forbidden(refusal.detail)
            } else {
                Problem::unauthorized(refusal.detail)
            };
            return problem.into_response();
        }
    };
    if let Err(not_until) = state.limiter.check_key(&caller.actor) {
        state.metrics.rate_limited();
        let wait = not_until.wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        ));
        return Problem::rate_limited(wait.as_secs_f64().ceil() as u64).into_response();
    }
    request.extensions_mut().insert(caller);
    match tokio::time::timeout(state.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "Request took too long",
            format!("no answer within {} s", state.timeout.as_secs()),
        )
        .into_response(),
    }
}

/// Counts every response, and turns error responses that are not problem
/// details yet (axum's own rejections, body limits) into problem+json.
async fn problems(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let response = next.run(request).await;
    let route = response
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = if response.status().is_client_error() || response.status().is_server_error() {
        let is_problem = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes() == PROBLEM_JSON.as_bytes());
        if is_problem {
            response
        } else {
            as_problem(response, state.body_limit).await
        }
    } else {
        response
    };
    state.metrics.observe(
        &route,
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// An axum rejection (plain text) as a problem with the same status.
async fn as_problem(response: Response, body_limit: usize) -> Response {
    let status = response.status();
    let text = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let problem = match status {
        StatusCode::PAYLOAD_TOO_LARGE => Problem::too_large(body_limit),
        StatusCode::NOT_FOUND => Problem::not_found(if text.is_empty() {
            "no such endpoint".to_owned()
        } else {
            text
        }),
        StatusCode::METHOD_NOT_ALLOWED => Problem::new(
            status,
            "method-not-allowed",
            "Method not allowed",
            "this endpoint does not take that method",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Problem::new(
            status,
            "unsupported-media-type",
            "Unsupported media type",
            if text.is_empty() {
                "send Content-Type: application/json".to_owned()
            } else {
                text
            },
        ),
        StatusCode::UNPROCESSABLE_ENTITY => {
            Problem::new(status, "invalid-body", "Invalid request body", text)
        }
        s if s.is_server_error() => Problem::new(s, "internal", "Internal error", text),
        s => Problem::new(s, "bad-request", "Bad request", text),
    };
    let mut response = problem.into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The whole API from its configuration: loads the tokens file and the
/// provider's keys (the `Oidc` handle is for refreshing them).
pub async fn app(
    config: &ApiConfig,
    export: &ExportConfig,
    prefix: TopicPrefix,
    store: Arc<dyn Store>,
    images: Arc<dyn ObjectStore>,
    metrics: ApiMetrics,
) -> Result<(Router, Option<Arc<Oidc>>), ApiError> {
    let problems = config.serving_problems("api");
    if !problems.is_empty() {
        return Err(ApiError::Config(problems));
    }
    let tokens = match &config.tokens {
        Some(path) => ApiTokens::load(path).map_err(|e| ApiError::Config(vec![e]))?,
        None => ApiTokens::default(),
    };
    let oidc = match &config.oidc {
        Some(oidc) => {
            Some(Arc::new(Oidc::new(oidc.clone()).await.map_err(|e| {
                ApiError::Config(vec![format!("api.oidc: {e}")])
            })?))
        }
        None => None,
    };
    let auth = Authenticator {
        oidc: oidc.clone(),
        tokens,
    };
    let state = AppState::new(config, export, prefix, store, images, auth, metrics)?;
    Ok((router(state), oidc))
}

/// The api role, bound but not yet serving.
pub struct ApiServer {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    oidc: Option<Arc<Oidc>>,
    metrics: ApiMetrics,
    request_timeout: Duration,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("addr", &self.local_addr())
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl ApiServer {
    /// Loads the tokens file and the provider's keys and binds the listener.
    pub async fn bind(
        config: &ApiConfig,
        export: &ExportConfig,
        prefix: TopicPrefix,
        store: Arc<dyn Store>,
        images: Arc<dyn ObjectStore>,
        metrics: ApiMetrics,
    ) -> Result<ApiServer, ApiError> {
        let tls = match &config.tls {
            Some(tls) => Some(TlsAcceptor::from(
                tls.server_config(&[b"http/1.1"])
                    .map_err(|e| ApiError::Config(vec![format!("api.tls: {e}")]))?,
            )),
            None => None,
        };
        let (router, oidc) = app(config, export, prefix, store, images, metrics.clone()).await?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| ApiError::Bind {
                addr: config.listen,
                reason: e.to_string(),
            })?;
        Ok(ApiServer {
            listener,
            tls,
            router,
            oidc,
            metrics,
            request_timeout: Duration::from_secs(config.request_timeout_seconds),
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `stop` turns true, then finishes the requests in flight.
    pub async fn run(self, stop: watch::Receiver<bool>) -> Result<(), ApiError> {
        if let Some(oidc) = self.oidc.clone() {
            let mut stop = stop.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(15)) => {}
                        _ = stop.wait_for(|s| *s) => break,
                    }
                    if oidc.refresh_due().await
                        && let Err(e) = oidc.refresh().await
                    {
                        tracing::warn!(error = %e, "JWKS refresh failed; keeping the keys we have");
                    }
                }
            });
        }
        let failed: crate::https::ConnectionFailed = {
            let metrics = self.metrics.clone();
            Arc::new(move |code| metrics.connection_failed(code))
        };
        crate::https::serve(
            "api",
            self.listener,
            self.tls,
            self.router,
            self.request_timeout,
            failed,
            stop,
        )
        .await;
        Ok(())
    }
}
