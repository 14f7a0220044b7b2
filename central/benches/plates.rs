//! Plate reading latency with the real models on synthetic plates placed on
//! the fetched photos (the set of `tests/plates_synthetic.rs`).
//!
//! ```text
//! cargo bench --profile dev -p central --bench plates
//! PLATES_BENCH_CASES=60 cargo bench -p central --bench plates
//! ```
//!
//! Rows: one plate read from its box (crop with margin, tilt estimate, the
//! level and straightened crops in one recognition batch, normalisation and
//! validation) for PP-OCRv4 and PP-OCRv6 with each decoding; the text
//! detector alone on a full 1280x960 frame; and the whole fallback (text
//! detection plus reading the plate-shaped text boxes). ONNX Runtime picks
//! its own thread count (all cores), as in a default deployment.

#[path = "../../shared/tests/common/mod.rs"]
mod common;
#[path = "../tests/support/plates.rs"]
mod synth;

use std::time::{Duration, Instant};

use central::detect::init_runtime;
use central::plates::{Decoding, PlateReader, PlatesConfig, RecModel, TextDetector};
use central::store::PlateBoxSource;

fn quantiles(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| ms(v[((v.len() - 1) as f64 * q).round() as usize]);
    let mean = v.iter().map(|d| ms(*d)).sum::<f64>() / v.len() as f64;
    (at(0.5), at(0.9), mean)
}

#[path = "../../shared/benches/support/record.rs"]
mod record;

const COMMAND: &str = "cargo bench --profile dev -p central --bench plates";

fn main() {
    let n: usize = std::env::var("PLATES_BENCH_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let env = init_runtime(&common::fetched("onnxruntime/libonnxruntime.so.1.31.1"))
        .expect("ONNX Runtime loads");
    let fonts: Vec<_> = synth::FONTS.iter().map(|f| synth::load_font(f)).collect();
    let backgrounds = [
        synth::background(
            &common::fetched("photos/pexels_double_decker_bus.jpg"),
            1280,
        ),
        synth::background(&common::fetched("photos/licenseplate_motion.jpg"), 1280),
    ];
    let cases = synth::cases(7, n, &backgrounds, &fonts);
    let mut rows = Vec::new();
    let mut readers = Vec::new();
    for model in [RecModel::V4, RecModel::V6] {
        let config = PlatesConfig {
            recognizer: model,
            ..PlatesConfig::default()
        };
        let reader = PlateReader::load(env, &config).expect("plate reader loads");
        for decoding in [Decoding::Full, Decoding::PlateAlphabet] {
            // One warm-up read: ONNX Runtime allocates on the first run.
            let _ = reader.read_box(
                &cases[0].frame,
                &cases[0].truth,
                1.0,
                PlateBoxSource::Detector,
                decoding,
            );
            let mut times = Vec::new();
            let mut exact = 0;
            for case in &cases {
                let started = Instant::now();
                let o = reader.read_box(
                    &case.frame,
                    &case.truth,
                    1.0,
                    PlateBoxSource::Detector,
                    decoding,
                );
                times.push(started.elapsed());
                exact += usize::from(o.plate() == Some(case.spec.canonical.as_str()));
            }
            rows.push((
                format!("read one plate, PP-OCR{} {decoding:?}", model.as_str()),
                quantiles(times),
                format!("{exact}/{n} exact"),
            ));
        }
        readers.push((model, reader));
    }

    let det = TextDetector::load(
        env,
        &PlatesConfig::default().text_det_model_path().unwrap(),
        960,
        0,
    )
    .expect("text detector loads");
    let _ = det.detect(&cases[0].frame);
    let frames = n.min(10);
    let mut times = Vec::new();
    for case in &cases[..frames] {
        let started = Instant::now();
        let boxes = det.detect(&case.frame).expect("text detection runs");
        times.push(started.elapsed());
        std::hint::black_box(boxes);
    }
    rows.push((
        "text detection, 1280x960 frame (960x736 input)".into(),
        quantiles(times),
        String::new(),
    ));
    for (model, reader) in &readers {
        let mut times = Vec::new();
        let mut found = 0;
        for case in &cases[..frames] {
            let started = Instant::now();
            let obs = reader.read(&case.frame, &[]);
            times.push(started.elapsed());
            found += usize::from(
                obs.iter()
                    .any(|o| o.plate() == Some(case.spec.canonical.as_str())),
            );
        }
        rows.push((
            format!("text fallback (detect + read), PP-OCR{}", model.as_str()),
            quantiles(times),
            format!("{found}/{frames} exact"),
        ));
    }

    println!(
        "\nplate reading, {n} synthetic plates 100-300 px wide ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<52} {:>8} {:>8} {:>8}  note",
        "what", "p50 ms", "p90 ms", "mean ms"
    );
    let p50 = |what: &str| {
        rows.iter()
            .find(|(w, _, _)| w == what)
            .map_or(f64::NAN, |(_, (p50, _, _), _)| *p50)
    };
    let note = |what: &str| {
        rows.iter()
            .find(|(w, _, _)| w == what)
            .map_or(String::new(), |(_, _, note)| note.clone())
    };
    let (v6, v4) = (
        "read one plate, PP-OCRv6 PlateAlphabet",
        "read one plate, PP-OCRv4 PlateAlphabet",
    );
    record::compared(
        COMMAND,
        &format!(
            "read one plate from its box, p50 ({} vs {})",
            note(v6),
            note(v4)
        ),
        record::Figure::new("PP-OCRv6 (default)", p50(v6), "ms"),
        record::Figure::new("PP-OCRv4", p50(v4), "ms"),
    );
    for (what, (p50, p90, mean), note) in rows {
        println!("{what:<52} {p50:>8.1} {p90:>8.1} {mean:>8.1}  {note}");
    }
}
