//! ONNX Runtime (load-dynamic, the fetched 1.31.1 library) runs the real
//! platedet model (YOLOv8s-seg, fp16) on a real photo, through the same
//! pre/post-processing as the edge, and finds the bus's front plate.

// One helper for every crate's tests: where `models/fetch.sh` put the files.
#[path = "../../shared/tests/common/mod.rs"]
mod common;

use central::detect::{DetectError, DetectorConfig, InputPrecision, OnnxDetector, init_runtime};
use inspection_core::BBox;

/// The bus's front plate ("LTZ 1298") in `pexels_double_decker_bus.jpg`
/// (546x413), measured by hand on zoomed crops of the photo.
const BUS_FRONT_PLATE: BBox = BBox {
    x1: 416.0,
    y1: 366.0,
    x2: 443.0,
    y2: 376.0,
};

fn detector() -> OnnxDetector {
    let env = init_runtime(&common::fetched("onnxruntime/libonnxruntime.so.1.31.1"))
        .expect("ONNX Runtime loads");
    let config = DetectorConfig::for_model(common::fetched("platedet/platedet.onnx"));
    OnnxDetector::load(env, &config).expect("platedet loads")
}

#[test]
fn platedet_finds_the_bus_front_plate_in_original_image_coordinates() {
    let detector = detector();
    assert_eq!(detector.class_names().as_slice(), ["plate"]);
    assert_eq!(detector.precision(), InputPrecision::F16);
    assert_eq!(
        detector.input_size(),
        640,
        "from the model's imgsz metadata"
    );

    let photo = image::open(common::fetched("photos/pexels_double_decker_bus.jpg"))
        .unwrap()
        .to_rgb8();
    let (detections, masks) = detector.detect_with_masks(&photo, true).unwrap();
    for d in &detections {
        eprintln!("plate {:.3} {:?}", d.score, d.bbox);
    }
    let best = detections
        .iter()
        .max_by(|a, b| {
            a.bbox
                .iou(&BUS_FRONT_PLATE)
                .total_cmp(&b.bbox.iou(&BUS_FRONT_PLATE))
        })
        .expect("at least one detection");
    let iou = best.bbox.iou(&BUS_FRONT_PLATE);
    eprintln!(
        "best match: score {:.3}, IoU {iou:.3} with the hand-measured box",
        best.score
    );
    assert!(
        iou >= 0.6,
        "IoU {iou} with {BUS_FRONT_PLATE:?}, got {:?}",
        best.bbox
    );
    assert!(best.score >= 0.25, "score {}", best.score);

    // The seg head's mask for that plate lies on the plate.
    let i = detections
        .iter()
        .position(|d| std::ptr::eq(d, best))
        .unwrap();
    let mask = &masks[i];
    let inside = mask
        .bbox()
        .intersection(&BUS_FRONT_PLATE)
        .map_or(0.0, |b| b.area());
    assert!(mask.area() > 50, "mask has {} pixels", mask.area());
    assert!(
        inside / mask.bbox().area() > 0.6,
        "mask box {:?}",
        mask.bbox()
    );
}

#[test]
fn the_motion_blurred_sedan_gives_no_confident_plate() {
    // The plate is smeared across ~130x70 px; a confident read would be wrong.
    let detector = detector();
    let photo = image::open(common::fetched("photos/licenseplate_motion.jpg"))
        .unwrap()
        .to_rgb8();
    let detections = detector.detect(&photo).unwrap();
    assert!(detections.iter().all(|d| d.score < 0.5), "{detections:?}");
}

#[test]
fn bad_models_and_libraries_give_clear_errors() {
    let env = init_runtime(&common::fetched("onnxruntime/libonnxruntime.so.1.31.1")).unwrap();

    let missing = OnnxDetector::load(env, &DetectorConfig::for_model("/nonexistent/model.onnx"));
    assert!(
        matches!(missing, Err(DetectError::Model { .. })),
        "{missing:?}"
    );

    let dir = std::env::temp_dir().join(format!("ort-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("truncated.onnx");
    let model = std::fs::read(common::fetched("platedet/platedet.onnx")).unwrap();
    std::fs::write(&garbage, &model[..model.len() / 3]).unwrap();
    let err = OnnxDetector::load(env, &DetectorConfig::for_model(&garbage)).unwrap_err();
    assert!(matches!(err, DetectError::Model { .. }), "{err}");

    // A valid ONNX model that is not an Ultralytics export (no `names`).
    let ocr = common::fetched("rapidocr-v4/ch_PP-OCRv4_rec_infer.onnx");
    let err = OnnxDetector::load(env, &DetectorConfig::for_model(ocr)).unwrap_err();
    assert!(matches!(err, DetectError::UnsupportedModel { .. }), "{err}");
    assert!(err.to_string().contains("names"), "{err}");

    // platedet's input is fixed at 640: another configured size is refused
    // at load, not at every inference.
    let mut config = DetectorConfig::for_model(common::fetched("platedet/platedet.onnx"));
    config.input_size = Some(320);
    let err = OnnxDetector::load(env, &config).unwrap_err();
    assert!(err.to_string().contains("fixed at 640"), "{err}");

    let other_lib = init_runtime(std::path::Path::new("/nonexistent/libonnxruntime.so"));
    assert!(matches!(other_lib, Err(DetectError::Runtime { .. })));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn concurrent_first_loads_share_one_runtime() {
    let lib = common::fetched("onnxruntime/libonnxruntime.so.1.31.1");
    let envs: Vec<usize> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| init_runtime(&lib).map(|e| e as *const _ as usize)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect()
    });
    assert!(
        envs.windows(2).all(|w| w[0] == w[1]),
        "one environment per process"
    );
}

#[test]
fn a_batch_gives_each_image_its_own_detections() {
    let env = init_runtime(&common::fetched("onnxruntime/libonnxruntime.so.1.31.1")).unwrap();
    let bus = image::open(common::fetched("photos/pexels_double_decker_bus.jpg"))
        .unwrap()
        .to_rgb8();
    let sedan = image::open(common::fetched("photos/licenseplate_motion.jpg"))
        .unwrap()
        .to_rgb8();
    let images = [&bus, &sedan, &bus];
    // The batch-1 export loops; the dynamic-batch one runs all three in one
    // session.run. Both must give what each image gives alone.
    for (model, dynamic) in [
        ("platedet/platedet.fp32.onnx", false),
        ("platedet/platedet.fp32.batch.onnx", true),
    ] {
        let detector =
            OnnxDetector::load(env, &DetectorConfig::for_model(common::fetched(model))).unwrap();
        assert_eq!(detector.dynamic_batch(), dynamic, "{model}");
        assert_eq!(detector.provider(), central::detect::Provider::Cpu);
        let batch = detector.detect_batch(&images).unwrap();
        assert_eq!(batch.len(), 3);
        for (image, got) in images.iter().zip(&batch) {
            let alone = detector.detect(image).unwrap();
            assert_eq!(got.len(), alone.len(), "{model}");
            for (a, b) in got.iter().zip(&alone) {
                assert!(a.bbox.iou(&b.bbox) > 0.99, "{model}: {a:?} vs {b:?}");
                assert!((a.score - b.score).abs() < 1e-3, "{model}");
            }
        }
        assert!(detector.detect_batch(&[]).unwrap().is_empty());
        assert!(
            detector
                .info()
                .id
                .starts_with(&format!("{}@", model.rsplit('/').next().unwrap()))
        );
    }
}
