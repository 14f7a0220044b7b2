//! Plate reading with the real models on real photos: synthetic EU plates
//! (valid strings of eleven countries, four fonts, 100-300 px wide, ±6°
//! tilt, blur, glare, shade, JPEG) placed on the fetched photos; platedet
//! finds the box (the text-detection fallback reads what it misses), both
//! PP-OCR recognisers read it, with and without the plate-alphabet mask.
//! Prints the comparison; asserts floors set below what was measured.

#[path = "../../shared/tests/common/mod.rs"]
mod common;
mod support;

use std::time::{Duration, Instant};

use central::detect::{DetectorConfig, OnnxDetector, init_runtime};
use central::plates::{Decoding, PlateObservation, PlateReader, PlatesConfig, RecModel};
use central::store::{PlateBoxSource, PlateOutcome};
use inspection_core::BBox;
use support::plates as synth;

// Three plates per country: enough to compare, within a minute of test time
// (platedet and the text detector dominate it).
const CASES: usize = 33;
const SEED: u64 = 20_261_201;

fn env() -> &'static ort::environment::Environment {
    init_runtime(&common::fetched("onnxruntime/libonnxruntime.so.1.31.1"))
        .expect("ONNX Runtime loads")
}

fn platedet() -> OnnxDetector {
    OnnxDetector::load(
        env(),
        &DetectorConfig::for_model(common::fetched("platedet/platedet.onnx")),
    )
    .expect("platedet loads")
}

fn reader(model: RecModel) -> PlateReader {
    let config = PlatesConfig {
        recognizer: model,
        rec_model: Some(common::fetched(model.cache_path())),
        text_det_model: Some(common::fetched("rapidocr-v4/ch_PP-OCRv4_det_infer.onnx")),
        ..PlatesConfig::default()
    };
    PlateReader::load(env(), &config).expect("plate reader loads")
}

fn overlapping<'a>(obs: &'a [PlateObservation], truth: &BBox) -> Option<&'a PlateObservation> {
    obs.iter()
        .filter(|o| {
            o.bbox
                .is_some_and(|b| b.iou(truth) > 0.2 || contains(truth, &b))
        })
        .max_by(|a, b| a.confidence.total_cmp(&b.confidence))
}

fn contains(outer: &BBox, inner: &BBox) -> bool {
    let (cx, cy) = inner.center();
    cx > outer.x1 && cx < outer.x2 && cy > outer.y1 && cy < outer.y2
}

#[derive(Default)]
struct Tally {
    exact: usize,
    confident_wrong: usize,
    unreadable: usize,
    missed: usize,
    latency: Duration,
    /// (confidence, candidate right) per case, whatever the outcome.
    scored: Vec<(f32, bool)>,
}

const BUCKETS: [(f32, f32); 5] = [
    (0.0, 0.5),
    (0.5, 0.8),
    (0.8, 0.9),
    (0.9, 0.97),
    (0.97, 1.01),
];

impl Tally {
    fn add(&mut self, truth: &str, obs: Option<&PlateObservation>, latency: Duration) {
        self.latency += latency;
        let Some(o) = obs else {
            self.missed += 1;
            self.scored.push((0.0, false));
            return;
        };
        let right = o.candidate.as_ref().is_some_and(|c| c.plate == truth);
        self.scored.push((o.confidence, right));
        match o.outcome {
            PlateOutcome::Read if right => self.exact += 1,
            PlateOutcome::Read => self.confident_wrong += 1,
            PlateOutcome::Unreadable => self.unreadable += 1,
            PlateOutcome::NotFound => self.missed += 1,
        }
    }

    fn buckets(&self) -> String {
        BUCKETS
            .iter()
            .map(|&(lo, hi)| {
                let inb: Vec<bool> = self
                    .scored
                    .iter()
                    .filter(|(c, _)| *c >= lo && *c < hi)
                    .map(|(_, r)| *r)
                    .collect();
                let right = inb.iter().filter(|r| **r).count();
                format!("[{lo:.2},{:.2}) {right}/{}", hi.min(1.0), inb.len())
            })
            .collect::<Vec<_>>()
            .join("  ")
    }
}

#[test]
fn synthetic_eu_plates_on_real_photos_v4_vs_v6() {
    let detector = platedet();
    let readers = [
        (RecModel::V4, reader(RecModel::V4)),
        (RecModel::V6, reader(RecModel::V6)),
    ];
    let fonts: Vec<_> = synth::FONTS.iter().map(|f| synth::load_font(f)).collect();
    // Bay cameras deliver ~1280 px wide frames; the photos are ~550 px.
    let backgrounds = [
        synth::background(
            &common::fetched("photos/pexels_double_decker_bus.jpg"),
            1280,
        ),
        synth::background(&common::fetched("photos/licenseplate_motion.jpg"), 1280),
    ];
    let cases = synth::cases(SEED, CASES, &backgrounds, &fonts);

    let configs = [
        (RecModel::V4, Decoding::Full),
        (RecModel::V4, Decoding::PlateAlphabet),
        (RecModel::V6, Decoding::Full),
        (RecModel::V6, Decoding::PlateAlphabet),
    ];
    let default = PlatesConfig::default();
    let default_reader = &readers
        .iter()
        .find(|(m, _)| *m == default.recognizer)
        .unwrap()
        .1;
    let mut tallies: Vec<Tally> = configs.iter().map(|_| Tally::default()).collect();
    let mut pipeline = Tally::default();
    let (mut platedet_found, mut fallback_found, mut fallback_cases) = (0, 0, 0);
    for (i, case) in cases.iter().enumerate() {
        let mut line = format!(
            "{i:2} {} {:<11} w{:3} {:+.1}° blur {:.2} glare {} font {}",
            case.spec.country,
            case.spec.printed,
            case.look.width,
            case.look.degrees,
            case.look.blur,
            case.look.glare.is_some() as u8,
            case.font,
        );
        // The recognisers compared on the plate's own box, so that detection
        // misses do not blur the comparison.
        for ((model, decoding), tally) in configs.iter().zip(&mut tallies) {
            let reader = &readers.iter().find(|(m, _)| m == model).unwrap().1;
            let started = Instant::now();
            let o = reader.read_box(
                &case.frame,
                &case.truth,
                1.0,
                PlateBoxSource::Detector,
                *decoding,
            );
            tally.add(&case.spec.canonical, Some(&o), started.elapsed());
            line.push_str(&format!(
                " | {}/{} {:<6} {:<12} {:.2}",
                model.as_str(),
                if *decoding == Decoding::Full {
                    "full"
                } else {
                    "mask"
                },
                mark(Some(&o), &case.spec.canonical),
                o.raw_text.clone().unwrap_or_default(),
                o.confidence
            ));
        }
        // The pipeline as the worker runs it: platedet's boxes, or, when it
        // missed this plate, the frame read as one without any box.
        let detections = detector.detect(&case.frame).expect("platedet runs");
        let hit = detections
            .iter()
            .any(|d| d.bbox.iou(&case.truth) > 0.3 || contains(&case.truth, &d.bbox));
        let boxes = if hit { detections } else { Vec::new() };
        if hit {
            platedet_found += 1;
        } else {
            fallback_cases += 1;
        }
        let started = Instant::now();
        let obs = default_reader.read(&case.frame, &boxes);
        let o = overlapping(&obs, &case.truth);
        if !hit && o.is_some_and(|o| o.box_source == Some(PlateBoxSource::TextDetection)) {
            fallback_found += 1;
        }
        pipeline.add(&case.spec.canonical, o, started.elapsed());
        line.push_str(&format!(
            " || platedet {:<5} {:<6} {} {:.2}",
            hit,
            mark(o, &case.spec.canonical),
            o.and_then(|o| o.raw_text.clone()).unwrap_or_default(),
            o.map_or(0.0, |o| o.confidence)
        ));
        eprintln!("{line}");
    }

    let n = cases.len() as f32;
    eprintln!(
        "\nplatedet found {platedet_found}/{} synthetic plates; the text-detection fallback found {fallback_found}/{fallback_cases} of the rest",
        cases.len()
    );
    eprintln!("\non the plate's own box:");
    eprintln!(
        "recogniser    decoding   exact  conf-wrong  unreadable  missed  mean read ms  accuracy by confidence (right/total)"
    );
    for ((model, decoding), t) in configs.iter().zip(&tallies) {
        eprintln!(
            "{:<13} {:<10} {:5.3}  {:10.3}  {:10.3}  {:6.3}  {:12.1}  {}",
            format!("PP-OCR{}", model.as_str()),
            format!("{decoding:?}"),
            t.exact as f32 / n,
            t.confident_wrong as f32 / n,
            t.unreadable as f32 / n,
            t.missed as f32 / n,
            t.latency.as_secs_f64() * 1000.0 / n as f64,
            t.buckets()
        );
    }

    eprintln!(
        "\npipeline (default config, platedet boxes or the text fallback): exact {:.3}  conf-wrong {:.3}  unreadable {:.3}  missed {:.3}  mean {:.1} ms per frame (OCR and text detection, not platedet)\n  accuracy by confidence: {}",
        pipeline.exact as f32 / n,
        pipeline.confident_wrong as f32 / n,
        pipeline.unreadable as f32 / n,
        pipeline.missed as f32 / n,
        pipeline.latency.as_secs_f64() * 1000.0 / n as f64,
        pipeline.buckets()
    );

    // The default configuration must hold its floors.
    let idx = configs
        .iter()
        .position(|c| *c == (default.recognizer, default.decoding))
        .unwrap();
    let t = &tallies[idx];
    let accuracy = t.exact as f32 / n;
    let confident_wrong = t.confident_wrong as f32 / n;
    assert!(accuracy >= ACCURACY_FLOOR, "accuracy {accuracy}");
    assert!(
        confident_wrong <= CONFIDENT_WRONG_CEILING,
        "confident wrong {confident_wrong}"
    );
    let accuracy = pipeline.exact as f32 / n;
    let confident_wrong = pipeline.confident_wrong as f32 / n;
    assert!(
        accuracy >= PIPELINE_ACCURACY_FLOOR,
        "pipeline accuracy {accuracy}"
    );
    assert!(
        confident_wrong <= CONFIDENT_WRONG_CEILING,
        "pipeline confident wrong {confident_wrong}"
    );
}

fn mark(o: Option<&PlateObservation>, truth: &str) -> &'static str {
    match o.map(|o| (o.outcome, o.plate() == Some(truth))) {
        Some((PlateOutcome::Read, true)) => "ok",
        Some((PlateOutcome::Read, false)) => "WRONG",
        Some((PlateOutcome::Unreadable, _)) => "unread",
        _ => "miss",
    }
}

/// Floors for the default configuration (PP-OCRv6, plate alphabet), set
/// below what was measured on this set (ONNX Runtime 1.31.1, x86, 2 cores):
/// on the plate's own box 30/33 exact, the other 3 right but under the
/// confidence floor, no confident wrong read; through platedet and the text
/// fallback 30/33 exact, no confident wrong read. The margin is for other
/// CPUs and runtime versions, whose numerics differ slightly; one confident
/// wrong read in 33 would still pass, two would not.
const ACCURACY_FLOOR: f32 = 0.8;
const CONFIDENT_WRONG_CEILING: f32 = 0.05;
const PIPELINE_ACCURACY_FLOOR: f32 = 0.75;

/// The bus's front plate ("LTZ 1298"), ~31x14 px: platedet finds it, both
/// OCR models guess at it; it must not come out as a confident read.
#[test]
fn the_bus_photos_tiny_plate_is_never_a_confident_wrong_read() {
    let detector = platedet();
    let photo = image::open(common::fetched("photos/pexels_double_decker_bus.jpg"))
        .unwrap()
        .to_rgb8();
    let front = BBox {
        x1: 416.0,
        y1: 366.0,
        x2: 443.0,
        y2: 376.0,
    };
    let detections = detector.detect(&photo).unwrap();
    assert!(
        detections.iter().any(|d| d.bbox.iou(&front) > 0.5),
        "platedet finds the bus plate: {detections:?}"
    );
    for model in [RecModel::V4, RecModel::V6] {
        let obs = reader(model).read(&photo, &detections);
        let o = overlapping(&obs, &front).expect("an observation for the bus plate");
        eprintln!(
            "{model:?}: {:?} {:?} {:.2} {:?}",
            o.outcome, o.raw_text, o.confidence, o.candidate
        );
        let right = o.plate() == Some("LTZ1298");
        assert!(
            o.outcome == PlateOutcome::Unreadable || right,
            "{model:?}: {o:?}"
        );
        // Not only the height rule: the OCR's own confidence is low too
        // (measured: v4 no valid plate, v6 a wrong one at 0.33).
        assert!(o.confidence < 0.8 || right, "{model:?}: {o:?}");
    }
}

#[test]
fn without_plate_boxes_the_text_detector_finds_a_clear_plate() {
    let fonts = [synth::load_font(synth::FONTS[0])];
    let backgrounds = [synth::background(
        &common::fetched("photos/pexels_double_decker_bus.jpg"),
        1280,
    )];
    let reader = reader(PlatesConfig::default().recognizer);
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(5);
    let spec = synth::random_plate(&mut rng, inspection_core::plate::Country::FR);
    let mut frame = backgrounds[0].clone();
    let look = synth::Look {
        width: 260,
        degrees: 2.0,
        blur: 0.3,
        glare: None,
        light: 0.9,
    };
    let truth = synth::place(
        &mut frame,
        &synth::render_plate(&spec, &fonts[0]),
        &look,
        (500, 600),
    );
    let obs = reader.read(&frame, &[]);
    let o = overlapping(&obs, &truth).unwrap_or_else(|| panic!("{obs:?}"));
    assert_eq!(o.box_source, Some(PlateBoxSource::TextDetection));
    assert_eq!(o.outcome, PlateOutcome::Read, "{o:?}");
    assert_eq!(o.plate(), Some(spec.canonical.as_str()));

    let rec = o.record("front".parse().unwrap(), "ab".repeat(32));
    assert_eq!(rec.plate.as_deref(), Some(spec.canonical.as_str()));
    assert_eq!(rec.country.as_deref(), Some("FR"));
    assert_eq!(rec.box_source, Some(PlateBoxSource::TextDetection));

    // A frame with no text at all: one NotFound.
    let none = reader.read(&synth::blank(640, 480), &[]);
    assert_eq!(none.len(), 1);
    assert_eq!(none[0].outcome, PlateOutcome::NotFound);
    assert_eq!(
        none[0]
            .record("front".parse().unwrap(), "ab".repeat(32))
            .bbox,
        None
    );
}

#[test]
fn bad_config_and_missing_models_are_clear_errors() {
    let bad = PlatesConfig {
        min_confidence: 2.0,
        ..PlatesConfig::default()
    };
    let err = PlateReader::load(env(), &bad).unwrap_err();
    assert!(err.to_string().contains("plates.min_confidence"), "{err}");

    let missing = PlatesConfig {
        rec_model: Some("/nonexistent/rec.onnx".into()),
        ..PlatesConfig::default()
    };
    let err = PlateReader::load(env(), &missing).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/rec.onnx"), "{err}");

    // A valid ONNX model that is not a PP-OCR recogniser (no dictionary).
    let platedet_as_rec = PlatesConfig {
        rec_model: Some(common::fetched("platedet/platedet.onnx")),
        text_fallback: false,
        ..PlatesConfig::default()
    };
    let err = PlateReader::load(env(), &platedet_as_rec).unwrap_err();
    assert!(err.to_string().contains("character"), "{err}");
}
