//! Detection benchmark: the worker's path against bare ONNX Runtime, on the
//! same model in the same run.
//!
//! ```text
//! cargo bench --profile dev -p central --bench detection
//! DETECTION_ITERATIONS=20 DETECTION_SECONDS=120 cargo bench --profile dev -p central --bench detection
//! DETECTION_MODEL=/path/to/model.onnx DETECTION_PROVIDER=cuda cargo bench ...
//! ```
//!
//! For each batch size N (1, 4, 8), on the dynamic-batch fp32 platedet
//! (`models/quantize.sh` builds it):
//!
//! - **bare**: one `session.run` on a prepared `[N, 3, 640, 640]` tensor;
//!   each image's latency is the run's time;
//! - **worker path**: N concurrent requests, each decoding the bus photo's
//!   JPEG, letterboxing, queueing into a `BatchingDetector` (`max_batch` N),
//!   running and decoding + NMS; each image's latency is its request's time.
//!
//! Bare runs and worker rounds alternate, `DETECTION_ITERATIONS` times each
//! (default 6), bounded by `DETECTION_SECONDS` per batch size (default 60). The overhead ratio is the
//! worker's p50 over bare's p50.
//!
//! The runner waits up to `DETECTION_MAX_WAIT_MS` (default 250) for a batch
//! to fill: the N requests decode their JPEGs in parallel and arrive tens of
//! milliseconds apart on a small machine, and with the production 5 ms the
//! runner would start smaller batches, which is not the comparison wanted
//! here (a full batch of N against a bare run of N). The batch fills as soon
//! as the N-th request arrives, so the wait costs nothing once they are in.

#[path = "../../shared/benches/support/record.rs"]
mod record;

#[path = "../../shared/tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use central::detect::{
    BatchingDetector, DetectMetrics, Detector, DetectorConfig, ExecutionProvider, ImageEncoding,
    OnnxDetector, RuntimeConfig, encode, init_runtime,
};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i]
}

const COMMAND: &str = "cargo bench --profile dev -p central --bench detection";

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let iterations = env_u64("DETECTION_ITERATIONS", 6).max(1) as usize;
    let max_wait_ms = env_u64("DETECTION_MAX_WAIT_MS", 250);
    let budget = Duration::from_secs(env_u64("DETECTION_SECONDS", 60));
    let model = std::env::var_os("DETECTION_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::fetched("platedet/platedet.fp32.batch.onnx"));
    let provider = match std::env::var("DETECTION_PROVIDER").as_deref() {
        Ok("cuda") => ExecutionProvider::Cuda,
        Ok("auto") => ExecutionProvider::Auto,
        _ => ExecutionProvider::Cpu,
    };
    let library = std::env::var_os("DETECTION_ORT_LIBRARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::fetched("onnxruntime/libonnxruntime.so.1.31.1"));
    let runtime_config = RuntimeConfig {
        library: Some(library.clone()),
        execution_provider: provider,
        cuda_device: 0,
    };
    let env = init_runtime(&library).expect("ONNX Runtime loads");
    let jpeg = std::fs::read(common::fetched("photos/pexels_double_decker_bus.jpg")).unwrap();
    let photo = image::load_from_memory(&jpeg).unwrap().to_rgb8();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();

    println!(
        "detection benchmark: {} ({}), {iterations} iterations per row, {} s budget per scenario, max_wait_ms {max_wait_ms}",
        model.display(),
        provider.as_str(),
        budget.as_secs()
    );
    println!();
    println!(
        "| batch | bare p50 | bare p90 | worker p50 | worker p90 | overhead (p50) | bare per image | worker per image | batches formed |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for batch in [1usize, 4, 8] {
        let config = DetectorConfig {
            max_batch: batch,
            max_wait_ms,
            ..DetectorConfig::for_model(&model)
        };
        let onnx = OnnxDetector::load_on(env, &config, &runtime_config).expect("model loads");
        if batch > 1 && !onnx.dynamic_batch() {
            println!("| {batch} | (the model has a fixed batch of 1) |");
            continue;
        }
        let metrics = DetectMetrics::new();
        let detector = Arc::new(
            BatchingDetector::new("bench", onnx, &config, metrics.clone()).expect("runner"),
        );
        let onnx = detector.onnx().clone();

        // Bare: the same session, a prepared tensor, session.run alone.
        let single: Vec<f32> = {
            let (_, t) = inspection_core::yolo::preprocess(&photo, onnx.input_size()).unwrap();
            t
        };
        let mut tensor = Vec::with_capacity(single.len() * batch);
        for _ in 0..batch {
            tensor.extend_from_slice(&single);
        }
        // Worker path: N concurrent requests from JPEG bytes.
        let jpeg = Arc::new(jpeg.clone());
        let one = |detector: Arc<BatchingDetector>, jpeg: Arc<Vec<u8>>| async move {
            let t = Instant::now();
            let image = tokio::task::spawn_blocking(move || {
                image::load_from_memory(&jpeg).unwrap().to_rgb8()
            })
            .await
            .unwrap();
            detector.detect(Arc::new(image)).await.unwrap();
            t.elapsed().as_secs_f64() * 1000.0
        };
        // Warm-ups, then bare and worker rounds alternate so that both see
        // the same load on a shared machine.
        onnx.run_tensor(batch, tensor.clone()).unwrap();
        runtime.block_on(one(detector.clone(), jpeg.clone()));
        let (mut bare, mut worker) = (Vec::new(), Vec::new());
        let start = Instant::now();
        for _ in 0..iterations {
            let input = tensor.clone();
            let t = Instant::now();
            onnx.run_tensor(batch, input).unwrap();
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            bare.extend(std::iter::repeat_n(ms, batch));

            runtime.block_on(async {
                let tasks: Vec<_> = (0..batch)
                    .map(|_| tokio::spawn(one(detector.clone(), jpeg.clone())))
                    .collect();
                for t in tasks {
                    worker.push(t.await.unwrap());
                }
            });
            if start.elapsed() > budget {
                break;
            }
        }
        let formed: Vec<String> = (1..=batch as u32)
            .filter_map(|n| {
                let count = metrics.batches("bench", n);
                (count > 0).then(|| format!("{n}x{count}"))
            })
            .collect();
        let (b50, b90) = (percentile(&mut bare, 0.5), percentile(&mut bare, 0.9));
        let (w50, w90) = (percentile(&mut worker, 0.5), percentile(&mut worker, 0.9));
        println!(
            "| {batch} | {b50:.1} ms | {b90:.1} ms | {w50:.1} ms | {w90:.1} ms | {:.2}x | {:.1} ms | {:.1} ms | {} |",
            w50 / b50,
            b50 / batch as f64,
            w50 / batch as f64,
            formed.join(" ")
        );
        record::compared(
            COMMAND,
            &format!(
                "worker detection path vs bare ONNX Runtime, platedet fp32, batch {batch}, p50 per batch"
            ),
            record::Figure::new("worker path", w50, "ms"),
            record::Figure::new("bare session.run", b50, "ms"),
        );
    }
    println!();
    println!(
        "batches formed: size x count, warm-ups included. Per image: p50 latency / batch size (throughput view)."
    );

    // What RemoteDetector sends: the photo scaled to a 1920x1080 frame,
    // encoded as JPEG q95 and as PNG.
    let frame = image::imageops::resize(&photo, 1920, 1080, image::imageops::FilterType::Triangle);
    println!();
    println!("| encoding (1920x1080) | bytes | encode p50 | decode p50 |");
    println!("|---|---|---|---|");
    for (name, encoding, format) in [
        ("JPEG q95", ImageEncoding::Jpeg, image::ImageFormat::Jpeg),
        ("PNG", ImageEncoding::Png, image::ImageFormat::Png),
    ] {
        let mut enc = Vec::new();
        let mut dec = Vec::new();
        let mut size = 0;
        for _ in 0..iterations {
            let t = Instant::now();
            let bytes = encode(&frame, encoding).unwrap();
            enc.push(t.elapsed().as_secs_f64() * 1000.0);
            size = bytes.len();
            let t = Instant::now();
            central::inference::decode_image(&bytes, format).unwrap();
            dec.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        println!(
            "| {name} | {size} | {:.1} ms | {:.1} ms |",
            percentile(&mut enc, 0.5),
            percentile(&mut dec, 0.5)
        );
    }
}
