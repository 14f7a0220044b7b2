//! The tract pre-screen on the real plate detector and the real bus photo:
//! fp16 translated at load, the int8 QDQ model from `models/quantize.sh`, the
//! 320 variant, agreement with ONNX Runtime, the pool, and bad models.

mod prescreen_support;

use std::sync::Arc;

use edge_agent::prescreen::{
    Precision, PrescreenConfig, PrescreenError, PrescreenPool, Prescreener,
};
use inspection_core::BBox;
use inspection_core::yolo::Detection;
use prescreen_support::{BUS_PLATE, bus, decode, fetched, ort, quantized};

fn load(path: std::path::PathBuf) -> Prescreener {
    Prescreener::load(&PrescreenConfig {
        decode: decode(),
        ..PrescreenConfig::new(path)
    })
    .unwrap()
}

/// The detection that overlaps `target` most, with its IoU.
fn best_match(detections: &[Detection], target: BBox) -> (Detection, f32) {
    detections
        .iter()
        .map(|d| (d.clone(), d.bbox.iou(&target)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or_else(|| panic!("no detections at all"))
}

fn bus_plate() -> BBox {
    BBox::new(BUS_PLATE[0], BUS_PLATE[1], BUS_PLATE[2], BUS_PLATE[3])
}

#[test]
fn fp16_platedet_is_translated_to_fp32_and_finds_the_bus_plate() {
    let p = load(fetched("platedet/platedet.onnx"));
    assert_eq!(p.precision(), Precision::F16);
    assert_eq!(p.input_size(), 640);
    assert_eq!(p.class_names().as_slice(), ["plate"]);
    assert!(
        p.model_id().starts_with("platedet.onnx@"),
        "{}",
        p.model_id()
    );
    assert_eq!(p.model_id().len(), "platedet.onnx@".len() + 12);

    let detections = p.detect(&bus()).unwrap();
    let (plate, iou) = best_match(&detections, bus_plate());
    println!(
        "tract fp32 (from fp16): {:?} {:.3} IoU {iou:.3}",
        plate.bbox, plate.score
    );
    assert!(iou >= 0.6, "IoU {iou} with the bus plate: {detections:?}");
    assert_eq!(plate.class_id, 0);
    assert_eq!(p.metrics().frames.get(), 1);
}

#[test]
fn int8_model_finds_the_same_plate_as_fp32() {
    let int8_path = quantized("platedet.int8.onnx");
    let fp32 = load(quantized("platedet.fp32.onnx"));
    assert_eq!(fp32.precision(), Precision::F32);
    let int8 = load(int8_path);
    assert_eq!(int8.precision(), Precision::Int8Qdq);
    assert_eq!(int8.class_names(), fp32.class_names());

    let image = bus();
    let (a, iou_a) = best_match(&fp32.detect(&image).unwrap(), bus_plate());
    let (b, iou_b) = best_match(&int8.detect(&image).unwrap(), bus_plate());
    println!(
        "tract fp32: {:?} {:.3} IoU {iou_a:.3}; tract int8: {:?} {:.3} IoU {iou_b:.3}",
        a.bbox, a.score, b.bbox, b.score
    );
    assert!(iou_a >= 0.6, "fp32 misses the plate: {a:?}");
    let between = a.bbox.iou(&b.bbox);
    assert!(
        between >= 0.7,
        "int8 box {:?} vs fp32 box {:?}: IoU {between}",
        b.bbox,
        a.bbox
    );
}

#[test]
fn tract_and_onnx_runtime_agree_on_the_bus_photo() {
    let path = fetched("platedet/platedet.onnx");
    let tract = load(path.clone());
    let ort = ort(&path);
    let image = bus();
    let (t, _) = best_match(&tract.detect(&image).unwrap(), bus_plate());
    let (o, _) = best_match(&ort.detect(&image).unwrap(), bus_plate());
    println!(
        "tract: {:?} {:.4}\nort:   {:?} {:.4}",
        t.bbox, t.score, o.bbox, o.score
    );
    let iou = t.bbox.iou(&o.bbox);
    assert!(iou >= 0.9, "boxes {:?} vs {:?}: IoU {iou}", t.bbox, o.bbox);
    assert!(
        (t.score - o.score).abs() <= 0.05,
        "scores {} vs {}",
        t.score,
        o.score
    );
}

#[test]
fn the_320_variant_finds_the_plate_on_a_crop_and_a_fixed_640_model_refuses_320() {
    let p = load(quantized("platedet.fp32.320.onnx"));
    assert_eq!(p.input_size(), 320);
    // At 320 the whole photo leaves the plate ~16x5 px; the README's crop
    // keeps it large enough.
    let crop = image::imageops::crop_imm(&bus(), 273, 206, 273, 207).to_image();
    let target = BBox::new(
        BUS_PLATE[0] - 273.0,
        BUS_PLATE[1] - 206.0,
        BUS_PLATE[2] - 273.0,
        BUS_PLATE[3] - 206.0,
    );
    let (plate, iou) = best_match(&p.detect(&crop).unwrap(), target);
    println!(
        "tract fp32 320 on the crop: {:?} {:.3} IoU {iou:.3}",
        plate.bbox, plate.score
    );
    assert!(iou >= 0.6, "{plate:?}");

    let err = Prescreener::load(&PrescreenConfig {
        input_size: Some(320),
        ..PrescreenConfig::new(fetched("platedet/platedet.onnx"))
    })
    .unwrap_err();
    assert!(
        matches!(&err, PrescreenError::UnsupportedModel { reason, .. } if reason.contains("fixed at 640")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_runs_frames_concurrently_and_gives_the_same_answers() {
    let p = Arc::new(load(quantized("platedet.fp32.onnx")));
    let pool = PrescreenPool::new(Arc::clone(&p), 2);
    assert_eq!((pool.threads(), pool.idle_slots()), (2, 2));
    let image = Arc::new(bus());
    let expected = p.detect(&image).unwrap();
    let runs = (0..3).map(|_| {
        let pool = pool.clone();
        let image = Arc::clone(&image);
        tokio::spawn(async move { pool.detect(image).await })
    });
    for run in runs.collect::<Vec<_>>() {
        assert_eq!(run.await.unwrap().unwrap(), expected);
    }
    let m = p.metrics();
    assert_eq!(m.frames.get(), 4);
    assert_eq!((m.in_flight.get(), m.waiting.get()), (0, 0));
    assert_eq!(pool.idle_slots(), 2);
}

#[test]
fn bad_models_give_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let load = |path: std::path::PathBuf| Prescreener::load(&PrescreenConfig::new(path));

    let missing = load(dir.path().join("nope.onnx")).unwrap_err();
    assert!(
        matches!(missing, PrescreenError::MissingModel { .. }),
        "{missing}"
    );
    assert_eq!(missing.code(), "missing_model");

    let bytes = std::fs::read(fetched("platedet/platedet.onnx")).unwrap();
    let truncated = dir.path().join("truncated.onnx");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = load(truncated).unwrap_err();
    assert!(matches!(err, PrescreenError::NotOnnx { .. }), "{err}");

    for (name, content) in [("empty.onnx", &b""[..]), ("text.onnx", b"not a model\n")] {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let err = load(path).unwrap_err();
        assert!(
            matches!(err, PrescreenError::NotOnnx { .. }),
            "{name}: {err}"
        );
    }

    // A real ONNX model, but an OCR recogniser: no `names` metadata.
    let err = load(fetched("rapidocr-v4/ch_PP-OCRv4_rec_infer.onnx")).unwrap_err();
    assert!(
        matches!(&err, PrescreenError::UnsupportedModel { reason, .. } if reason.contains("names")),
        "{err}"
    );

    let err = Prescreener::load(&PrescreenConfig {
        threads: 0,
        ..PrescreenConfig::new(fetched("platedet/platedet.onnx"))
    })
    .unwrap_err();
    assert!(matches!(err, PrescreenError::Config(_)), "{err}");
}

#[test]
fn a_broken_primary_model_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.onnx");
    std::fs::write(&broken, b"garbage").unwrap();
    let p = Prescreener::load(&PrescreenConfig {
        fallback_model: Some(fetched("platedet/platedet.onnx")),
        ..PrescreenConfig::new(broken)
    })
    .unwrap();
    assert!(p.path().ends_with("platedet/platedet.onnx"));
}
