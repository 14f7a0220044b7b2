//! Pre-screen latency per frame: platedet fp32 and int8 in tract beside the
//! same files in ONNX Runtime through central's detector (one intra-op
//! thread, as one tract run uses one core), at 640 and 320, on the bus photo. Each iteration is the whole
//! per-frame path: letterbox, model, decode + NMS (inspection-core's code on
//! both sides). Needs `bash models/fetch.sh` and `bash models/quantize.sh`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use edge_agent::prescreen::{PrescreenConfig, Prescreener};

#[path = "../tests/prescreen_support/mod.rs"]
mod support;

fn latency(c: &mut Criterion) {
    let image = support::bus();
    let decode = support::decode();
    for (size, suffix) in [(640u32, ""), (320, ".320")] {
        let mut group = c.benchmark_group(format!("prescreen_{size}"));
        // ~0.1-1 s per frame: the minimum sample count keeps the run short.
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(5));
        for precision in ["fp32", "int8"] {
            let path = support::quantized(&format!("platedet.{precision}{suffix}.onnx"));
            let tract = Prescreener::load(&PrescreenConfig {
                decode,
                ..PrescreenConfig::new(&path)
            })
            .unwrap();
            group.bench_function(format!("tract_{precision}"), |b| {
                b.iter(|| black_box(tract.detect(black_box(&image)).unwrap()))
            });
            let ort = support::ort(&path);
            group.bench_function(format!("ort_{precision}"), |b| {
                b.iter(|| black_box(ort.detect(black_box(&image)).unwrap()))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, latency);
criterion_main!(benches);
