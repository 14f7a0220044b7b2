//! The `inference` role end to end: real ONNX Runtime (the fetched 1.31.1
//! library), the real platedet model and the real bus photo, over real
//! HTTP(S) on port 0, with the ops endpoint (`/metrics`, `/readyz`,
//! `/healthz`) served beside it as `central run` does.

#[path = "../../shared/tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use central::certs::DevPki;
use central::detect::{
    DetectError, DetectMetrics, DetectResponse, DetectionSource, Detector, DetectorConfig,
    ExecutionProvider, ImageEncoding, ModelsResponse, OnnxDetector, Provider, RemoteDetector,
    RuntimeConfig, init_runtime, load_batching,
};
use central::inference::{InferenceConfig, InferenceMetrics, InferenceServer};
use central::ops::{self, Readiness};
use central::tls::ServerTlsConfig;
use inspection_core::BBox;
use inspection_core::yolo::Detection;
use prometheus_client::registry::Registry;
use reqwest::StatusCode;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Bound on every wait: model loading and CPU inference on a busy 2-core
/// build machine take seconds.
const WAIT: Duration = Duration::from_secs(180);

/// The bus's front plate in `pexels_double_decker_bus.jpg` (546x413),
/// measured by hand (as in `ort_platedet.rs`).
const BUS_FRONT_PLATE: BBox = BBox {
    x1: 416.0,
    y1: 366.0,
    x2: 443.0,
    y2: 376.0,
};

const LIBRARY: &str = "onnxruntime/libonnxruntime.so.1.31.1";

fn runtime() -> RuntimeConfig {
    RuntimeConfig {
        library: Some(common::fetched(LIBRARY)),
        execution_provider: ExecutionProvider::Auto,
        cuda_device: 0,
    }
}

fn bus_jpeg() -> Vec<u8> {
    std::fs::read(common::fetched("photos/pexels_double_decker_bus.jpg")).unwrap()
}

fn bus_image() -> Arc<image::RgbImage> {
    Arc::new(image::load_from_memory(&bus_jpeg()).unwrap().to_rgb8())
}

fn best_plate(detections: &[BBox]) -> (BBox, f32) {
    detections
        .iter()
        .map(|b| (*b, b.iou(&BUS_FRONT_PLATE)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .expect("at least one detection")
}

struct Role {
    _dir: tempfile::TempDir,
    addr: SocketAddr,
    ops: SocketAddr,
    https: bool,
    ca: Option<PathBuf>,
    client: reqwest::Client,
    detect_metrics: DetectMetrics,
    metrics: InferenceMetrics,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

struct Options {
    models: Vec<(&'static str, DetectorConfig)>,
    tls: bool,
    max_body_bytes: u64,
    runtime: RuntimeConfig,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            models: vec![(
                "plate",
                DetectorConfig::for_model(common::fetched("platedet/platedet.onnx")),
            )],
            tls: false,
            max_body_bytes: 16 * 1024 * 1024,
            runtime: runtime(),
        }
    }
}

impl Role {
    async fn start(options: Options) -> Role {
        let dir = tempfile::tempdir().unwrap();
        let mut config = InferenceConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            max_body_bytes: options.max_body_bytes,
            ..InferenceConfig::default()
        };
        for (name, model) in options.models {
            config.models.insert(name.to_owned(), model);
        }
        let mut ca = None;
        if options.tls {
            let pki = DevPki::new(dir.path().join("pki"));
            pki.ensure_ca().unwrap();
            pki.issue_server(&["127.0.0.1".into(), "localhost".into()], 2)
                .unwrap();
            config.tls = Some(ServerTlsConfig {
                cert: pki.server_cert(),
                key: pki.server_key(),
                client_ca: None,
                client_cert_optional: false,
            });
            ca = Some(pki.ca_cert());
        }
        assert_eq!(config.problems("inference", true), Vec::<String>::new());

        let detect_metrics = DetectMetrics::new();
        let metrics = InferenceMetrics::new();
        let mut registry = Registry::default();
        detect_metrics.register(&mut registry);
        metrics.register(&mut registry);
        let readiness = Readiness::default();
        let server = InferenceServer::bind(
            &config,
            &options.runtime,
            detect_metrics.clone(),
            metrics.clone(),
            readiness.clone(),
        )
        .await
        .expect("bind");
        let addr = server.local_addr().unwrap();
        let (shutdown, rx) = watch::channel(false);
        let ops_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ops = ops_listener.local_addr().unwrap();
        let ops_rx = rx.clone();
        let task = tokio::spawn(async move {
            let ops_task = tokio::spawn(ops::serve(
                ops_listener,
                Arc::new(registry),
                readiness,
                ops_rx,
            ));
            server.run(rx).await.expect("run");
            ops_task.await.unwrap().unwrap();
        });
        let mut builder = reqwest::Client::builder();
        if let Some(ca) = &ca {
            let tls = central::tls::client_config(ca, None).unwrap();
            builder = builder.tls_backend_preconfigured((*tls).clone());
        }
        Role {
            _dir: dir,
            addr,
            ops,
            https: options.tls,
            ca,
            client: builder.build().unwrap(),
            detect_metrics,
            metrics,
            shutdown,
            task: Some(task),
        }
    }

    fn base(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.addr.port())
    }

    fn ops_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.ops)
    }

    async fn readyz(&self) -> (StatusCode, serde_json::Value) {
        let response = self
            .client
            .get(self.ops_url("/readyz"))
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    /// Waits until `/readyz` satisfies `condition`, or fails with its body.
    async fn wait_readyz(
        &self,
        what: &str,
        condition: impl Fn(StatusCode, &serde_json::Value) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (status, body) = self.readyz().await;
            if condition(status, &body) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never {what}: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_ready(&self) {
        self.wait_readyz("ready", |status, _| status == StatusCode::OK)
            .await;
    }

    async fn post(&self, model: &str, body: Vec<u8>, content_type: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/v1/detect?model={model}", self.base()))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request")
    }

    async fn metrics_text(&self) -> String {
        self.client
            .get(self.ops_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    fn remote_source(&self, model: &str, encoding: ImageEncoding) -> DetectionSource {
        DetectionSource::Remote {
            url: self.base(),
            model: model.to_owned(),
            ca: self.ca.clone(),
            timeout_ms: 120_000,
            retries: 3,
            encoding,
        }
    }

    async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        let task = self.task.take().unwrap();
        tokio::time::timeout(WAIT, task)
            .await
            .expect("run() returns after shutdown")
            .expect("join");
    }
}

/// The refusal code of an error response.
async fn error_code(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: serde_json::Value = response.json().await.expect("JSON error body");
    let code = body["error"]["code"]
        .as_str()
        .expect("error.code")
        .to_owned();
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    (status, code)
}

fn boxes(detections: &[Detection]) -> Vec<BBox> {
    detections.iter().map(|d| d.bbox).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serves_platedet_over_https_and_remote_matches_local() {
    let role = Role::start(Options {
        tls: true,
        ..Options::default()
    })
    .await;
    role.wait_ready().await;
    let (_, ready) = role.readyz().await;
    let detail = ready["parts"]["inference"]["detail"].as_str().unwrap();
    assert!(detail.contains("plate on cpu"), "{detail}");

    // The photo as posted: the plate box as the local detector finds it.
    let response = role.post("plate", bus_jpeg(), "image/jpeg").await;
    assert_eq!(response.status(), StatusCode::OK);
    let served: DetectResponse = response.json().await.unwrap();
    assert_eq!(served.model.info.classes, ["plate"]);
    assert_eq!(served.model.info.input_size, 640);
    assert!(
        served.model.info.id.starts_with("platedet.onnx@"),
        "{}",
        served.model.info.id
    );
    assert_eq!(served.model.provider, "cpu");
    assert_eq!(served.batch_size, 1);
    assert!(served.duration_ms > 0.0);
    let served_boxes: Vec<BBox> = served.detections.iter().map(|d| d.bbox).collect();
    let (best, iou) = best_plate(&served_boxes);
    assert!(iou >= 0.6, "IoU {iou} of {best:?}");
    assert!(
        served
            .detections
            .iter()
            .all(|d| d.class == "plate" && d.class_id == 0)
    );

    let metrics = DetectMetrics::new();
    let config = DetectorConfig::for_model(common::fetched("platedet/platedet.onnx"));
    let local = load_batching("plate-local", &config, &runtime(), &metrics)
        .await
        .unwrap();
    let local_detections = local.detect(bus_image()).await.unwrap();
    assert_eq!(
        boxes(&local_detections),
        served_boxes,
        "same pixels, same boxes"
    );

    // The remote detector over HTTPS with the CA: PNG is lossless, so the
    // boxes are the local ones exactly; JPEG q95 moves them slightly.
    let png = RemoteDetector::connect(&role.remote_source("plate", ImageEncoding::Png))
        .await
        .unwrap();
    assert_eq!(png.info(), local.info());
    assert_eq!(png.provider(), "cpu");
    let remote_png = png.detect(bus_image()).await.unwrap();
    assert_eq!(boxes(&remote_png), boxes(&local_detections));

    let jpeg = central::detect::open_detector(
        &role.remote_source("plate", ImageEncoding::Jpeg),
        None,
        &runtime(),
        &metrics,
    )
    .await
    .unwrap();
    let remote_jpeg = jpeg.detect(bus_image()).await.unwrap();
    let (remote_best, remote_iou) = best_plate(&boxes(&remote_jpeg));
    let (local_best, _) = best_plate(&boxes(&local_detections));
    let shift = [
        remote_best.x1 - local_best.x1,
        remote_best.y1 - local_best.y1,
        remote_best.x2 - local_best.x2,
        remote_best.y2 - local_best.y2,
    ]
    .iter()
    .fold(0f32, |m, d| m.max(d.abs()));
    eprintln!(
        "JPEG q95 round trip: plate box moved by at most {shift:.3} px; IoU with the hand box {remote_iou:.3}"
    );
    assert!(shift < 1.5, "{remote_best:?} vs {local_best:?}");
    assert!(remote_best.iou(&local_best) > 0.9);

    // /v1/models lists the model with its provider.
    let models: ModelsResponse = role
        .client
        .get(format!("{}/v1/models", role.base()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models.models.len(), 1);
    assert!(models.models[0].ready);
    assert_eq!(models.models[0].model.as_ref().unwrap().provider, "cpu");

    // A remote source naming a model the role does not serve fails at
    // construction, not at the first image.
    let err = RemoteDetector::connect(&role.remote_source("damage", ImageEncoding::Jpeg))
        .await
        .unwrap_err();
    assert!(matches!(err, DetectError::Unavailable { .. }), "{err}");
    role.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_run_in_batches_with_the_dynamic_batch_model() {
    let model = common::fetched("platedet/platedet.fp32.batch.onnx");
    let config = DetectorConfig {
        max_batch: 8,
        max_wait_ms: 20,
        ..DetectorConfig::for_model(&model)
    };
    let role = Role::start(Options {
        models: vec![("plate", config.clone())],
        ..Options::default()
    })
    .await;
    role.wait_ready().await;
    let models: ModelsResponse = role
        .client
        .get(format!("{}/v1/models", role.base()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        models.models[0].max_batch,
        Some(8),
        "dynamic batch detected"
    );

    // The reference: one image alone on the batch-1 fp32 export.
    let env = init_runtime(&common::fetched(LIBRARY)).unwrap();
    let single = OnnxDetector::load(
        env,
        &DetectorConfig::for_model(common::fetched("platedet/platedet.fp32.onnx")),
    )
    .unwrap();
    assert!(!single.dynamic_batch());
    let reference = single.detect(&bus_image()).unwrap();

    let requests = (0..8).map(|_| {
        let client = role.client.clone();
        let url = format!("{}/v1/detect?model=plate", role.base());
        tokio::spawn(async move {
            let response = client
                .post(url)
                .header("content-type", "image/jpeg")
                .body(bus_jpeg())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response.json::<DetectResponse>().await.unwrap()
        })
    });
    let answers: Vec<DetectResponse> = futures_util::future::join_all(requests)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    for answer in &answers {
        let got: Vec<BBox> = answer.detections.iter().map(|d| d.bbox).collect();
        assert_eq!(got.len(), reference.len());
        for (a, b) in got.iter().zip(boxes(&reference)) {
            assert!(
                a.iou(&b) > 0.99,
                "{a:?} vs {b:?}: batched differs from alone"
            );
        }
    }
    let sizes: Vec<usize> = answers.iter().map(|a| a.batch_size).collect();
    eprintln!("batch sizes seen by the 8 requests: {sizes:?}");
    assert!(sizes.iter().any(|&n| n > 1), "no batching: {sizes:?}");

    // The same from /metrics: batches by size add up to the 8 images.
    let text = role.metrics_text().await;
    let mut images = 0;
    let mut larger = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("inference_batches_total{") {
            let (labels, count) = rest.split_once("} ").unwrap();
            assert!(labels.contains("model=\"plate\""), "{line}");
            let size: u64 = labels
                .split("batch_size=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .and_then(|s| s.parse().ok())
                .unwrap();
            let count: u64 = count.trim().parse().unwrap();
            images += size * count;
            larger |= size > 1 && count > 0;
        }
    }
    assert_eq!(images, 8, "{text}");
    assert!(larger, "{text}");
    assert!(
        text.contains("inference_duration_seconds_bucket{"),
        "{text}"
    );
    assert!(
        text.contains("inference_images_total{model=\"plate\",result=\"ok\"} 8"),
        "{text}"
    );
    assert!(
        text.contains("inference_queue_depth{model=\"plate\"} 0"),
        "{text}"
    );
    assert_eq!(role.detect_metrics.images("plate", "ok"), 8);
    role.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_get_their_status_and_code_and_are_counted() {
    let role = Role::start(Options {
        max_body_bytes: 100_000,
        ..Options::default()
    })
    .await;
    role.wait_ready().await;
    let bus = bus_jpeg();
    assert!(bus.len() < 100_000);
    let png = {
        let mut out = std::io::Cursor::new(Vec::new());
        image::RgbImage::new(8, 8)
            .write_to(&mut out, image::ImageFormat::Png)
            .unwrap();
        out.into_inner()
    };
    // (what, model, body, content type, status, code)
    type Case = (
        &'static str,
        &'static str,
        Vec<u8>,
        &'static str,
        StatusCode,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "empty body",
            "plate",
            Vec::new(),
            "image/jpeg",
            StatusCode::BAD_REQUEST,
            "empty_body",
        ),
        (
            "truncated JPEG",
            "plate",
            bus[..bus.len() / 2].to_vec(),
            "image/jpeg",
            StatusCode::BAD_REQUEST,
            "truncated_jpeg",
        ),
        (
            "text sent as a JPEG",
            "plate",
            b"not an image".to_vec(),
            "image/jpeg",
            StatusCode::BAD_REQUEST,
            "not_jpeg",
        ),
        (
            "PNG sent as a JPEG",
            "plate",
            png.clone(),
            "image/jpeg",
            StatusCode::BAD_REQUEST,
            "not_jpeg",
        ),
        (
            "truncated PNG",
            "plate",
            png[..png.len() - 6].to_vec(),
            "image/png",
            StatusCode::BAD_REQUEST,
            "truncated_png",
        ),
        (
            "non-image type",
            "plate",
            b"hello".to_vec(),
            "text/plain",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "oversized",
            "plate",
            vec![0xFF; 150_000],
            "image/jpeg",
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
        (
            "unknown model",
            "damage",
            bus.clone(),
            "image/jpeg",
            StatusCode::NOT_FOUND,
            "unknown_model",
        ),
    ];
    for (what, model, body, content_type, status, code) in cases {
        let response = role.post(model, body, content_type).await;
        assert_eq!(
            error_code(response).await,
            (status, code.to_owned()),
            "{what}"
        );
    }
    let no_model = role
        .client
        .post(format!("{}/v1/detect", role.base()))
        .header("content-type", "image/jpeg")
        .body(bus.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(no_model).await,
        (StatusCode::BAD_REQUEST, "missing_model".into())
    );
    let wrong_method = role
        .client
        .get(format!("{}/v1/detect?model=plate", role.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(wrong_method).await,
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed".into())
    );
    let unknown_route = role
        .client
        .get(format!("{}/v2/x", role.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(unknown_route).await,
        (StatusCode::NOT_FOUND, "not_found".into())
    );
    // A chunked body (no Content-Length) over the limit is cut off while
    // reading.
    let chunked = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(role.addr).await.unwrap();
        tcp.write_all(
            b"POST /v1/detect?model=plate HTTP/1.1\r\nHost: localhost\r\n\
              Content-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let chunk = vec![0u8; 20_000];
        for _ in 0..10 {
            let head = format!("{:x}\r\n", chunk.len());
            // The server may answer and close before the last chunk.
            if tcp.write_all(head.as_bytes()).await.is_err()
                || tcp.write_all(&chunk).await.is_err()
                || tcp.write_all(b"\r\n").await.is_err()
            {
                break;
            }
        }
        let _ = tcp.write_all(b"0\r\n\r\n").await;
        let mut answer = Vec::new();
        let _ = tcp.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    };
    assert!(chunked.starts_with("HTTP/1.1 413"), "{chunked}");
    assert!(chunked.contains("\"code\":\"too_large\""), "{chunked}");

    // The good request still works after all that.
    let ok = role.post("plate", bus, "image/jpeg").await;
    assert_eq!(ok.status(), StatusCode::OK);

    let text = role.metrics_text().await;
    for (code, n) in [
        ("empty_body", 1),
        ("truncated_jpeg", 1),
        ("not_jpeg", 2),
        ("truncated_png", 1),
        ("unsupported_media_type", 1),
        ("too_large", 2),
        ("unknown_model", 1),
        ("missing_model", 1),
        ("method_not_allowed", 1),
        ("not_found", 1),
    ] {
        let line = format!("inference_http_refusals_total{{code=\"{code}\"}} {n}");
        assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
    }
    assert_eq!(role.metrics.refusals("not_jpeg"), 2);
    assert!(
        text.lines()
            .any(|l| l == "inference_http_requests_total{status=\"200\"} 1"),
        "{text}"
    );
    role.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_model_that_cannot_load_leaves_the_role_not_ready_and_serving_health() {
    let role = Role::start(Options {
        models: vec![
            (
                "plate",
                DetectorConfig::for_model("/nonexistent/platedet.onnx"),
            ),
            (
                "spare",
                DetectorConfig::for_model(common::fetched("platedet/platedet.onnx")),
            ),
        ],
        ..Options::default()
    })
    .await;
    // The loadable model loads; the role stays not ready, naming the other.
    role.wait_readyz("reporting the missing model", |status, body| {
        status == StatusCode::SERVICE_UNAVAILABLE
            && body["parts"]["inference"]["detail"]
                .as_str()
                .is_some_and(|d| d.contains("model plate") && d.contains("no such file"))
    })
    .await;
    let (_, body) = role.readyz().await;
    eprintln!("readyz: {body}");
    let health = role
        .client
        .get(role.ops_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let (status, code) = error_code(role.post("plate", bus_jpeg(), "image/jpeg").await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "model_unavailable")
    );
    let ok = role.post("spare", bus_jpeg(), "image/jpeg").await;
    assert_eq!(ok.status(), StatusCode::OK, "the loadable model serves");
    let models: ModelsResponse = role
        .client
        .get(format!("{}/v1/models", role.base()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let plate = models.models.iter().find(|m| m.name == "plate").unwrap();
    assert!(!plate.ready);
    assert!(
        plate
            .error
            .as_deref()
            .unwrap()
            .contains("/nonexistent/platedet.onnx")
    );
    role.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuda_on_a_cpu_only_library_is_a_load_error_and_auto_falls_back() {
    let env = init_runtime(&common::fetched(LIBRARY)).unwrap();
    if central::detect::cuda_available() {
        eprintln!("skipped: this ONNX Runtime library has the CUDA provider");
        return;
    }
    let config = DetectorConfig::for_model(common::fetched("platedet/platedet.onnx"));
    let cuda = RuntimeConfig {
        execution_provider: ExecutionProvider::Cuda,
        ..runtime()
    };
    let err = OnnxDetector::load_on(env, &config, &cuda).unwrap_err();
    assert!(matches!(err, DetectError::Provider { .. }), "{err}");
    assert!(
        err.to_string().contains("no CUDA execution provider"),
        "{err}"
    );
    let auto = OnnxDetector::load_on(env, &config, &runtime()).unwrap();
    assert_eq!(auto.provider(), Provider::Cpu);

    // Through the role: not ready, with the reason.
    let role = Role::start(Options {
        runtime: cuda,
        ..Options::default()
    })
    .await;
    role.wait_readyz("reporting the CUDA error", |status, body| {
        status == StatusCode::SERVICE_UNAVAILABLE
            && body["parts"]["inference"]["detail"]
                .as_str()
                .is_some_and(|d| d.contains("cuda"))
    })
    .await;
    role.stop().await;
}

/// Where a GPU build of ONNX Runtime would be: the cache's
/// `onnxruntime-gpu/` (from the `onnxruntime-gpu` wheel).
fn gpu_library() -> PathBuf {
    common::cache_dir()
        .join("models")
        .join("onnxruntime-gpu")
        .join("libonnxruntime.so.1.31.1")
}

/// One process holds one ONNX Runtime library, and the other tests load the
/// CPU one: the GPU check runs this binary again with only `gpu_inner`.
#[test]
fn gpu_runs_platedet_on_cuda_when_present() {
    let library = gpu_library();
    if !library.is_file() || !Path::new("/dev/nvidia0").exists() {
        eprintln!(
            "skipped: needs {} (the onnxruntime-gpu wheel's library) and /dev/nvidia0",
            library.display()
        );
        return;
    }
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "gpu_inner", "--ignored", "--nocapture"])
        .env("INFERENCE_GPU_LIBRARY", &library)
        .status()
        .unwrap();
    assert!(status.success(), "gpu_inner failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "run by gpu_runs_platedet_on_cuda_when_present in its own process"]
async fn gpu_inner() {
    let library = PathBuf::from(std::env::var_os("INFERENCE_GPU_LIBRARY").expect("library"));
    let cuda = RuntimeConfig {
        library: Some(library),
        execution_provider: ExecutionProvider::Cuda,
        cuda_device: 0,
    };
    let config = DetectorConfig {
        max_batch: 8,
        ..DetectorConfig::for_model(common::fetched("platedet/platedet.fp32.batch.onnx"))
    };
    let role = Role::start(Options {
        models: vec![("plate", config)],
        runtime: cuda,
        ..Options::default()
    })
    .await;
    role.wait_ready().await;
    let (_, body) = role.readyz().await;
    eprintln!("readyz: {body}");
    let requests = (0..8).map(|_| role.post("plate", bus_jpeg(), "image/jpeg"));
    for response in futures_util::future::join_all(requests).await {
        assert_eq!(response.status(), StatusCode::OK);
        let answer: DetectResponse = response.json().await.unwrap();
        assert_eq!(answer.model.provider, "cuda:0");
        let (best, iou) = best_plate(&answer.detections.iter().map(|d| d.bbox).collect::<Vec<_>>());
        assert!(iou >= 0.6, "{best:?}");
        eprintln!(
            "cuda: batch {} in {:.1} ms",
            answer.batch_size, answer.duration_ms
        );
    }
    role.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_answers_overloaded_at_once() {
    // One image runs at a time and one may wait: of 8 requests sent
    // together, the ones that find the queue full are refused, not queued.
    let config = DetectorConfig {
        max_batch: 1,
        queue: 1,
        ..DetectorConfig::for_model(common::fetched("platedet/platedet.onnx"))
    };
    let role = Role::start(Options {
        models: vec![("plate", config)],
        ..Options::default()
    })
    .await;
    role.wait_ready().await;
    let requests = (0..8).map(|_| role.post("plate", bus_jpeg(), "image/jpeg"));
    let mut ok = 0;
    let mut overloaded = 0;
    for response in futures_util::future::join_all(requests).await {
        match response.status() {
            StatusCode::OK => ok += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(
                    response.headers().get("retry-after").map(|v| v.as_bytes()),
                    Some(&b"1"[..])
                );
                let (_, code) = error_code(response).await;
                assert_eq!(code, "overloaded");
                overloaded += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    eprintln!("{ok} answered, {overloaded} refused as overloaded");
    assert!(
        ok >= 1 && overloaded >= 1,
        "{ok} ok, {overloaded} overloaded"
    );
    assert_eq!(ok + overloaded, 8);
    assert_eq!(
        role.detect_metrics.images("plate", "overloaded"),
        overloaded
    );
    assert_eq!(role.metrics.refusals("overloaded"), overloaded);
    let text = role.metrics_text().await;
    assert!(
        text.contains("inference_queue_depth{model=\"plate\"} 0"),
        "{text}"
    );
    role.stop().await;
}
