//! `RemoteDetector`: the `inference` role over HTTP(S), behind the same
//! [`Detector`] interface as a local model; and [`DetectionSource`], the
//! config a worker embeds to choose one or the other.
//!
//! Images travel as PNG by default (`encoding = "png"`): lossless, so the
//! role sees exactly the pixels a local detector would (same boxes, tested
//! in `tests/inference_http.rs`), and with the `image` crate's encoders it
//! is also the cheaper one for the worker: measured by
//! `benches/detection.rs` on a 1920x1080 frame, PNG was 2.0 MB in 85-177 ms
//! to encode, JPEG q95 0.5 MB in 168-366 ms (decoding: PNG 17-38 ms, JPEG
//! 7-16 ms). Four times the bytes is ~2 ms on an in-cluster link.
//! `encoding = "jpeg"` (quality 95) is for slow links: on the bus photo it
//! moved the plate box by under 0.01 px.

use crate::error_chain;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use image::{ImageFormat, RgbImage};
use inspection_core::BBox;
use inspection_core::yolo::Detection;
use serde::{Deserialize, Serialize};

use super::batching::BatchingDetector;
use super::metrics::DetectMetrics;
use super::onnx::{OnnxDetector, init_runtime};
use super::{DetectError, Detector, DetectorConfig, ModelInfo, RuntimeConfig};

/// How images are encoded for the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageEncoding {
    /// PNG: lossless, the default (see the module documentation).
    #[default]
    Png,
    /// JPEG quality 95: a quarter of PNG's bytes, for slow links.
    Jpeg,
}

/// Where a worker's detections come from: `{ kind = "local", model =
/// "damage" }` (the `[detectors.damage]` model, loaded in this process with
/// batching) or `{ kind = "remote", url = "https://inference:8444", model =
/// "damage", ca = "/etc/inspection/ca.pem" }` (the `inference` role).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum DetectionSource {
    Local {
        /// The `[detectors.NAME]` entry to load.
        model: String,
    },
    Remote {
        /// Base URL of the inference role (`https://...`, or `http://` on
        /// loopback or inside the cluster).
        url: String,
        /// The model name the role serves (`/v1/detect?model=NAME`).
        model: String,
        /// CA certificate (PEM) that signs the role's server certificate.
        /// Default: none, for `http://` URLs.
        #[serde(default)]
        ca: Option<PathBuf>,
        /// Bound on one request, in milliseconds. Default 30000: a queued
        /// CPU batch can take seconds.
        #[serde(default = "default_timeout_ms")]
        timeout_ms: u64,
        /// Further attempts after a connection error, a timeout or a 503.
        /// Default 3 (backoff 100, 200, 400 ms, with jitter).
        #[serde(default = "default_retries")]
        retries: u32,
        /// `"png"` (default, lossless) or `"jpeg"` (quality 95, for slow
        /// links).
        #[serde(default)]
        encoding: ImageEncoding,
    },
}

fn default_timeout_ms() -> u64 {
    30_000
}

fn default_retries() -> u32 {
    3
}

/// A model name: short and safe as a metric label and URL parameter.
pub fn check_model_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a model name (1-32 of a-z, 0-9, '_', '-')"
        ))
    }
}

impl DetectionSource {
    /// The model name either way.
    pub fn model(&self) -> &str {
        match self {
            DetectionSource::Local { model } | DetectionSource::Remote { model, .. } => model,
        }
    }

    /// Every problem at once, each prefixed with `at`. `local_models` are the
    /// names configured under `[detectors]`, which a local source must name.
    pub fn problems(&self, at: &str, check_files: bool, local_models: &[&str]) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = check_model_name(self.model()) {
            problems.push(format!("{at}.model: {e}"));
        }
        match self {
            DetectionSource::Local { model } => {
                if !local_models.contains(&model.as_str()) {
                    problems.push(format!(
                        "{at}.model: no [detectors.{model}] is configured (configured: {})",
                        if local_models.is_empty() {
                            "none".to_owned()
                        } else {
                            local_models.join(", ")
                        }
                    ));
                }
            }
            DetectionSource::Remote {
                url,
                ca,
                timeout_ms,
                retries,
                ..
            } => {
                match reqwest::Url::parse(url) {
                    Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {
                        if u.scheme() == "http" && ca.is_some() {
                            problems.push(format!("{at}.ca: only meaningful with an https:// url"));
                        }
                    }
                    Ok(u) => problems.push(format!(
                        "{at}.url: scheme {:?} is not http or https",
                        u.scheme()
                    )),
                    Err(e) => problems.push(format!("{at}.url: {url:?}: {e}")),
                }
                if check_files
                    && let Some(ca) = ca
                    && !ca.is_file()
                {
                    problems.push(format!("{at}.ca: {} is not a readable file", ca.display()));
                }
                if !(100..=600_000).contains(timeout_ms) {
                    problems.push(format!("{at}.timeout_ms: must be between 100 and 600000"));
                }
                if *retries > 10 {
                    problems.push(format!("{at}.retries: {retries} is more than 10"));
                }
            }
        }
        problems
    }
}

/// Opens the detector `source` names. A local one loads `local` (the
/// `[detectors.NAME]` entry) on ONNX Runtime from `runtime`, behind a
/// [`BatchingDetector`] counting into `metrics`; a remote one asks the
/// inference role for the model's [`ModelInfo`] first, so a wrong URL or
/// model name fails here, at start-up.
pub async fn open_detector(
    source: &DetectionSource,
    local: Option<&DetectorConfig>,
    runtime: &RuntimeConfig,
    metrics: &DetectMetrics,
) -> Result<Arc<dyn Detector>, DetectError> {
    match source {
        DetectionSource::Local { model } => {
            let Some(config) = local.cloned() else {
                return Err(DetectError::Unavailable {
                    model: model.clone(),
                    reason: format!("no [detectors.{model}] is configured"),
                });
            };
            let detector = load_batching(model, &config, runtime, metrics).await?;
            Ok(Arc::new(detector))
        }
        DetectionSource::Remote { .. } => Ok(Arc::new(RemoteDetector::connect(source).await?)),
    }
}

/// Loads one model (on a blocking thread: it takes seconds) and starts its
/// batching runner.
pub async fn load_batching(
    name: &str,
    config: &DetectorConfig,
    runtime: &RuntimeConfig,
    metrics: &DetectMetrics,
) -> Result<BatchingDetector, DetectError> {
    let library = runtime.library_path().ok_or_else(|| DetectError::Runtime {
        path: PathBuf::from(crate::paths::ORT_LIBRARY),
        reason: "no library configured and no cache directory (HOME is unset)".into(),
    })?;
    let (config, runtime) = (config.clone(), runtime.clone());
    let detector = tokio::task::spawn_blocking(move || {
        let env = init_runtime(&library)?;
        OnnxDetector::load_on(env, &config, &runtime).map(|d| (d, config))
    })
    .await
    .map_err(|e| DetectError::Inference(format!("model loading task: {e}")))?;
    let (detector, config) = detector?;
    BatchingDetector::new(name, detector, &config, metrics.clone())
}

/// A model as `/v1/models` and `/v1/detect` describe it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServedModel {
    #[serde(flatten)]
    pub info: ModelInfo,
    /// `cpu` or `cuda:N`.
    pub provider: String,
}

/// One detection on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireDetection {
    pub bbox: BBox,
    pub score: f32,
    pub class_id: usize,
    /// The class name (`classes[class_id]`).
    pub class: String,
}

/// The body of a `POST /v1/detect` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectResponse {
    pub model: ServedModel,
    pub detections: Vec<WireDetection>,
    /// Images in the model run this one was part of.
    pub batch_size: usize,
    /// Time of that run, in milliseconds (queueing excluded).
    pub duration_ms: f64,
}

/// One entry of `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelStatus {
    pub name: String,
    pub ready: bool,
    /// Present once loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ServedModel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch: Option<usize>,
    /// Why it is not ready (loading, or the load error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The body of `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelsResponse {
    pub models: Vec<ModelStatus>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

/// The inference role as a [`Detector`].
#[derive(Debug)]
pub struct RemoteDetector {
    client: reqwest::Client,
    base: reqwest::Url,
    model: String,
    info: ModelInfo,
    provider: String,
    retries: u32,
    encoding: ImageEncoding,
}

impl RemoteDetector {
    /// Builds the client and fetches the model's info from `/v1/models`
    /// (with the same retries as detection). `source` must be `Remote`.
    pub async fn connect(source: &DetectionSource) -> Result<Self, DetectError> {
        let DetectionSource::Remote {
            url,
            model,
            ca,
            timeout_ms,
            retries,
            encoding,
        } = source
        else {
            return Err(DetectError::Unavailable {
                model: source.model().to_owned(),
                reason: "not a remote source".into(),
            });
        };
        let remote = |reason: String| DetectError::Remote {
            url: url.clone(),
            reason,
        };
        let base = reqwest::Url::parse(url).map_err(|e| remote(e.to_string()))?;
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_millis(*timeout_ms))
            .connect_timeout(Duration::from_millis((*timeout_ms).min(10_000)));
        if let Some(ca) = ca {
            let tls = crate::tls::client_config(ca, None).map_err(|e| remote(e.to_string()))?;
            builder = builder.tls_backend_preconfigured((*tls).clone());
        }
        let client = builder.build().map_err(|e| remote(e.to_string()))?;
        let mut detector = Self {
            client,
            base,
            model: model.clone(),
            info: ModelInfo {
                id: String::new(),
                classes: Vec::new(),
                input_size: 0,
            },
            provider: String::new(),
            retries: *retries,
            encoding: *encoding,
        };
        let models: ModelsResponse = detector
            .send(|client, base| client.get(base.join("v1/models").expect("static path")))
            .await?
            .json()
            .await
            .map_err(|e| remote(format!("/v1/models: {e}")))?;
        let status = models
            .models
            .into_iter()
            .find(|m| m.name == *model)
            .ok_or_else(|| DetectError::Unavailable {
                model: model.clone(),
                reason: format!("{url} does not serve model {model:?}"),
            })?;
        let served = status.model.ok_or_else(|| DetectError::Unavailable {
            model: model.clone(),
            reason: status.error.unwrap_or_else(|| "not loaded".into()),
        })?;
        detector.info = served.info;
        detector.provider = served.provider;
        tracing::info!(url = %url, model = %model, id = %detector.info.id, provider = %detector.provider, "remote detector ready");
        Ok(detector)
    }

    /// Where the model runs, as the role reported it (`cpu`, `cuda:0`).
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// Detection with the role's answer whole (batch size, duration).
    pub async fn detect_full(&self, image: Arc<RgbImage>) -> Result<DetectResponse, DetectError> {
        let encoding = self.encoding;
        let body = tokio::task::spawn_blocking(move || encode(&image, encoding))
            .await
            .map_err(|e| DetectError::Inference(format!("encoding task: {e}")))??;
        let body = bytes::Bytes::from(body);
        let content_type = match self.encoding {
            ImageEncoding::Jpeg => "image/jpeg",
            ImageEncoding::Png => "image/png",
        };
        let model = self.model.clone();
        let response = self
            .send(|client, base| {
                let mut url = base.join("v1/detect").expect("static path");
                url.query_pairs_mut().append_pair("model", &model);
                client
                    .post(url)
                    .header(reqwest::header::CONTENT_TYPE, content_type)
                    .body(body.clone())
            })
            .await?;
        response.json().await.map_err(|e| DetectError::Remote {
            url: self.base.to_string(),
            reason: format!("bad /v1/detect answer: {e}"),
        })
    }

    /// Sends the request `make` builds, retrying connection errors,
    /// timeouts and 503s with exponential backoff and jitter. A 2xx is
    /// returned; any other status becomes the matching error.
    async fn send<F>(&self, make: F) -> Result<reqwest::Response, DetectError>
    where
        F: Fn(&reqwest::Client, &reqwest::Url) -> reqwest::RequestBuilder,
    {
        let mut attempt = 0u32;
        loop {
            // The server's Retry-After (capped at 5 s) when it sent one.
            let mut retry_hint = None;
            let outcome = make(&self.client, &self.base).send().await;
            let retry_reason = match outcome {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    let (code, message) = match response.json::<ErrorBody>().await {
                        Ok(body) => (body.error.code, body.error.message),
                        Err(_) => ("unknown".to_owned(), format!("HTTP {status}")),
                    };
                    if status != reqwest::StatusCode::SERVICE_UNAVAILABLE || attempt >= self.retries
                    {
                        return Err(match (status.as_u16(), code.as_str()) {
                            (503, "overloaded") => DetectError::Overloaded {
                                model: self.model.clone(),
                                queue: 0,
                            },
                            (503, _) => DetectError::Unavailable {
                                model: self.model.clone(),
                                reason: format!("{code}: {message}"),
                            },
                            _ => DetectError::Refused {
                                status: status.as_u16(),
                                code,
                                message,
                            },
                        });
                    }
                    retry_hint = retry_after.map(|s| Duration::from_secs(s.min(5)));
                    format!("503 {code}")
                }
                Err(error) => {
                    if attempt >= self.retries || !(error.is_connect() || error.is_timeout()) {
                        return Err(DetectError::Remote {
                            url: self.base.to_string(),
                            reason: error_chain(&error),
                        });
                    }
                    error_chain(&error)
                }
            };
            attempt += 1;
            let base = 100u64 << (attempt - 1).min(6);
            let jitter = rand::random_range(0..=base / 2);
            let delay = Duration::from_millis(base + jitter).max(retry_hint.unwrap_or_default());
            tracing::debug!(attempt, reason = %retry_reason, ?delay, "inference request retried");
            tokio::time::sleep(delay).await;
        }
    }
}

/// Encodes `image` for the wire.
pub fn encode(image: &RgbImage, encoding: ImageEncoding) -> Result<Vec<u8>, DetectError> {
    let mut out = std::io::Cursor::new(Vec::new());
    let result = match encoding {
        ImageEncoding::Jpeg => {
            let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95);
            image.write_with_encoder(encoder)
        }
        ImageEncoding::Png => image.write_to(&mut out, ImageFormat::Png),
    };
    result.map_err(|e| DetectError::Inference(format!("cannot encode the image: {e}")))?;
    Ok(out.into_inner())
}

#[async_trait]
impl Detector for RemoteDetector {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    async fn detect(&self, image: Arc<RgbImage>) -> Result<Vec<Detection>, DetectError> {
        let response = self.detect_full(image).await?;
        Ok(response
            .detections
            .into_iter()
            .map(|d| Detection {
                bbox: d.bbox,
                score: d.score,
                class_id: d.class_id,
                mask_coeffs: Vec::new(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_and_report_every_problem() {
        #[derive(Deserialize)]
        struct W {
            source: DetectionSource,
        }
        let local: W = toml::from_str("source = { kind = \"local\", model = \"damage\" }").unwrap();
        assert!(local.source.problems("s", true, &["damage"]).is_empty());
        assert_eq!(local.source.problems("s", true, &["plate"]).len(), 1);
        let remote: W = toml::from_str(
            "source = { kind = \"remote\", url = \"https://inference:8444\", model = \"damage\" }",
        )
        .unwrap();
        assert!(remote.source.problems("s", true, &[]).is_empty());
        assert!(matches!(
            remote.source,
            DetectionSource::Remote {
                encoding: ImageEncoding::Png,
                timeout_ms: 30_000,
                retries: 3,
                ..
            }
        ));
        let bad: W = toml::from_str(
            "source = { kind = \"remote\", url = \"ftp://x\", model = \"Bad Name\", ca = \"/nonexistent.pem\", timeout_ms = 1, retries = 99 }",
        )
        .unwrap();
        assert_eq!(
            bad.source.problems("s", true, &[]).len(),
            5,
            "{:?}",
            bad.source.problems("s", true, &[])
        );
        assert!(
            toml::from_str::<W>("source = { kind = \"local\", model = \"d\", url = \"x\" }")
                .is_err()
        );
    }
}
