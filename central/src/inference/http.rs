//! The HTTP surface of the inference role: routes, checks, JSON refusals.
//!
//! | status | code                     | when                                                      |
//! |--------|--------------------------|-----------------------------------------------------------|
//! | 400    | `missing_model`          | no `model` query parameter                                |
//! | 400    | `empty_body`             | the body is empty                                         |
//! | 400    | `body_read`              | the body could not be read (client aborted, bad chunking) |
//! | 400    | `not_jpeg` / `not_png`   | the body does not start like its Content-Type             |
//! | 400    | `truncated_jpeg` / `truncated_png` | no end marker: cut off in transit               |
//! | 400    | `corrupt_image`          | the decoder refuses it (or it is larger than 16384 px)    |
//! | 404    | `unknown_model`          | no such model is configured                               |
//! | 404    | `not_found`              | unknown route                                             |
//! | 405    | `method_not_allowed`     | another method on a known route                           |
//! | 408    | `timeout`                | the request took longer than `request_timeout_s`          |
//! | 413    | `too_large`              | `Content-Length` or the body passed `max_body_bytes`      |
//! | 415    | `unsupported_media_type` | Content-Type is not `image/jpeg` or `image/png`           |
//! | 500    | `inference_failed`       | ONNX Runtime or decoding failed on a valid image          |
//! | 503    | `model_loading`          | the model is still loading                                |
//! | 503    | `model_unavailable`      | the model failed to load (the message says why)           |
//! | 503    | `overloaded`             | the model's queue is full (`Retry-After: 1`)              |

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use image::ImageFormat;

use super::decode::decode_image;
use super::metrics::{InferenceMetrics, StatusLabels};
use crate::detect::{
    BatchingDetector, DetectError, DetectResponse, ModelStatus, ModelsResponse, ServedModel,
    WireDetection,
};

/// A model's state in the role.
#[derive(Debug, Clone)]
pub(crate) enum Slot {
    Loading,
    Ready(Arc<BatchingDetector>),
    Failed(String),
}

/// The models, by name; the names are fixed at bind, the states change as
/// loading proceeds.
pub(crate) type Models = Arc<BTreeMap<String, RwLock<Slot>>>;

pub(crate) fn slot(models: &Models, name: &str) -> Option<Slot> {
    models
        .get(name)
        .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).clone())
}

pub(crate) struct AppState {
    pub(crate) models: Models,
    pub(crate) metrics: InferenceMetrics,
    pub(crate) max_body_bytes: u64,
    pub(crate) request_timeout: Duration,
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let metrics = state.metrics.clone();
    Router::new()
        .route("/v1/detect", post(detect).fallback(method_not_allowed))
        .route("/v1/models", get(models).fallback(method_not_allowed))
        .fallback(not_found)
        .with_state(state)
        .layer(middleware::from_fn_with_state(metrics, observe))
}

/// A refusal: status, stable code, message.
#[derive(Debug)]
pub(crate) struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

#[derive(Debug, Clone, Copy)]
struct RefusalCode(&'static str);

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": { "code": self.code, "message": self.message }
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if self.code == "overloaded" {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(1));
        } else if self.code == "model_loading" {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(5));
        }
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            // Both routes have one method; the message names it.
            headers.insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
        }
        response.extensions_mut().insert(RefusalCode(self.code));
        response
    }
}

/// Counts every response by status (and refusals by code) and times it.
async fn observe(
    State(metrics): State<InferenceMetrics>,
    request: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let response = next.run(request).await;
    metrics
        .requests
        .get_or_create(&StatusLabels {
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
        "no such route; see POST /v1/detect?model=NAME and GET /v1/models",
    )
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> Refusal {
    let allowed = if uri.path() == "/v1/detect" {
        "POST"
    } else {
        "GET"
    };
    Refusal::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}; use {allowed}", uri.path()),
    )
}

fn served(detector: &BatchingDetector) -> ServedModel {
    use crate::detect::Detector as _;
    ServedModel {
        info: detector.info().clone(),
        provider: detector.provider().to_string(),
    }
}

async fn models(State(state): State<Arc<AppState>>) -> axum::Json<ModelsResponse> {
    let models = state
        .models
        .keys()
        .map(|name| match slot(&state.models, name) {
            Some(Slot::Ready(d)) => ModelStatus {
                name: name.clone(),
                ready: true,
                model: Some(served(&d)),
                max_batch: Some(d.max_batch()),
                error: None,
            },
            Some(Slot::Failed(error)) => ModelStatus {
                name: name.clone(),
                ready: false,
                model: None,
                max_batch: None,
                error: Some(error),
            },
            _ => ModelStatus {
                name: name.clone(),
                ready: false,
                model: None,
                max_batch: None,
                error: Some("loading".into()),
            },
        })
        .collect();
    axum::Json(ModelsResponse { models })
}

/// The `model` query parameter.
fn model_param(uri: &axum::http::Uri) -> Option<String> {
    let query = uri.query()?;
    url_params(query).find_map(|(k, v)| (k == "model").then_some(v))
}

fn url_params(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    reqwest::Url::parse(&format!("http://x/?{query}"))
        .map(|u| u.query_pairs().into_owned().collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
}

async fn detect(State(state): State<Arc<AppState>>, request: Request) -> Result<Response, Refusal> {
    let deadline = tokio::time::Instant::now() + state.request_timeout;
    let (parts, body) = request.into_parts();
    let body = body.into_data_stream();
    let checked = precheck(&state, &parts);
    let (name, detector, format) = match checked {
        Ok(ok) => ok,
        Err(refusal) => {
            // Read what the client is still sending (within limits) so it
            // gets the answer rather than a connection reset.
            drain(body, state.max_body_bytes, deadline).await;
            return Err(refusal);
        }
    };
    let work = async {
        let bytes = read_body(body, state.max_body_bytes).await?;
        if bytes.is_empty() {
            return Err(Refusal::bad(
                "empty_body",
                "the body is empty; send one image",
            ));
        }
        let image = tokio::task::spawn_blocking(move || decode_image(&bytes, format))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "image decoding task failed");
                Refusal::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error while decoding the image",
                )
            })?
            .map_err(|problem| Refusal::bad(problem.code(), problem.to_string()))?;
        let (detections, run) = detector
            .detect_timed(Arc::new(image))
            .await
            .map_err(|e| detect_refusal(&name, e))?;
        let model = served(&detector);
        let detections = detections
            .into_iter()
            .map(|d| WireDetection {
                bbox: d.bbox,
                score: d.score,
                class_id: d.class_id,
                class: model
                    .info
                    .classes
                    .get(d.class_id)
                    .cloned()
                    .unwrap_or_default(),
            })
            .collect();
        Ok(axum::Json(DetectResponse {
            model,
            detections,
            batch_size: run.batch_size,
            duration_ms: run.run.as_secs_f64() * 1000.0,
        })
        .into_response())
    };
    match tokio::time::timeout_at(deadline, work).await {
        Ok(result) => result,
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

/// Everything decidable from the head: model, content type, declared size.
fn precheck(
    state: &AppState,
    parts: &axum::http::request::Parts,
) -> Result<(String, Arc<BatchingDetector>, ImageFormat), Refusal> {
    let name = model_param(&parts.uri).ok_or_else(|| {
        Refusal::bad(
            "missing_model",
            "name the model: POST /v1/detect?model=NAME (GET /v1/models lists them)",
        )
    })?;
    let detector = match slot(&state.models, &name) {
        None => {
            return Err(Refusal::new(
                StatusCode::NOT_FOUND,
                "unknown_model",
                format!(
                    "no model {:?}; served: {}",
                    name.chars().take(64).collect::<String>(),
                    state.models.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        Some(Slot::Loading) => {
            return Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "model_loading",
                format!("model {name} is still loading; retry later"),
            ));
        }
        Some(Slot::Failed(error)) => {
            return Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "model_unavailable",
                format!("model {name} could not be loaded: {error}"),
            ));
        }
        Some(Slot::Ready(detector)) => detector,
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let format = match content_type.as_deref() {
        Some("image/jpeg") => ImageFormat::Jpeg,
        Some("image/png") => ImageFormat::Png,
        other => {
            return Err(Refusal::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "Content-Type must be image/jpeg or image/png, got {}",
                    other.unwrap_or("none")
                ),
            ));
        }
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = declared
        && length > state.max_body_bytes
    {
        return Err(too_large(state.max_body_bytes));
    }
    Ok((name, detector, format))
}

fn too_large(max: u64) -> Refusal {
    Refusal::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("the body is larger than {max} bytes"),
    )
}

fn detect_refusal(model: &str, error: DetectError) -> Refusal {
    match error {
        DetectError::Overloaded { .. } => Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            error.to_string(),
        ),
        DetectError::Unavailable { .. } => Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "model_unavailable",
            error.to_string(),
        ),
        other => {
            tracing::warn!(model, error = %other, "inference failed");
            Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "inference_failed",
                format!("inference failed on model {model}"),
            )
        }
    }
}

async fn read_body<S, E>(mut stream: S, max: u64) -> Result<Bytes, Refusal>
where
    S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut buffer = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| Refusal::bad("body_read", format!("cannot read the body: {e}")))?;
        if buffer.len() as u64 + chunk.len() as u64 > max {
            drain(
                stream,
                max,
                tokio::time::Instant::now() + Duration::from_secs(5),
            )
            .await;
            return Err(too_large(max));
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(buffer.freeze())
}

/// Reads and discards at most `cap` bytes, until `deadline`.
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
