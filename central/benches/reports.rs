//! Time to a report per writer, on the report tests' inspection (a return
//! with a new dent, a possible new damage and a pre-existing scratch).
//!
//! ```text
//! cargo bench --profile dev -p central --bench reports
//! REPORTS_BENCH_RUNS=5 cargo bench --profile dev -p central --bench reports
//! ```
//!
//! Rows:
//! - template: rendering the report in each language, and the grounding
//!   check of that draft (both run on every report);
//! - embedded (SmolLM2-135M-Instruct Q4_1 GGUF on the CPU): load time,
//!   prompt tokens/s, generated tokens/s and the whole report, with the
//!   weights dequantized to f32 (the default) against the peer in the same
//!   run, the Q4_1 weights as stored; the ratio is printed.

#[path = "../tests/support/report.rs"]
#[allow(dead_code)]
mod fixture;

use std::time::{Duration, Instant};

use central::report::config::EmbeddedConfig;
use central::report::embedded::EmbeddedModel;
use central::report::prompt::{self, PromptStyle};
use central::report::{Language, grounding, template};

fn quantiles(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.9))
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[path = "../../shared/benches/support/record.rs"]
mod record;

fn main() {
    let runs: usize = std::env::var("REPORTS_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);

    println!("template and grounding check, per report (p50 / p90 of 2000):");
    for lang in Language::ALL {
        let input = fixture::return_input(lang);
        let mut render = Vec::new();
        let mut check = Vec::new();
        for _ in 0..2000 {
            let t = Instant::now();
            let draft = template::render(&input);
            render.push(micros(t.elapsed()));
            let t = Instant::now();
            let rejections = grounding::check(&input, &draft);
            check.push(micros(t.elapsed()));
            assert!(rejections.is_empty(), "{lang}: {rejections:?}");
        }
        let (r50, r90) = quantiles(render);
        let (c50, c90) = quantiles(check);
        println!("  {lang}: template {r50:.1} / {r90:.1} us, grounding {c50:.1} / {c90:.1} us");
    }

    let input = fixture::return_input(Language::En);
    let messages = prompt::messages(&input, PromptStyle::Narrative);
    let mut per_token = Vec::new();
    for dequantize in [true, false] {
        let config = EmbeddedConfig {
            dequantize,
            ..EmbeddedConfig::default()
        };
        let path = EmbeddedModel::path(&config).expect("a cache directory");
        let t = Instant::now();
        let model = EmbeddedModel::load(&path, &config)
            .unwrap_or_else(|e| panic!("{e} (run models/fetch.sh)"));
        let load = t.elapsed().as_secs_f64();
        let label = if dequantize { "f32 (default)" } else { "Q4_1" };
        let mut prompt_rate = Vec::new();
        let mut gen_rate = Vec::new();
        let mut total = Vec::new();
        let mut last = None;
        for _ in 0..runs {
            let g = model.generate(&messages, None).expect("generation");
            prompt_rate.push(g.prompt_tokens as f64 / g.prompt_seconds);
            gen_rate.push(g.completion_tokens as f64 / g.generation_seconds);
            total.push(g.prompt_seconds + g.generation_seconds);
            last = Some(g);
        }
        let g = last.expect("at least one run");
        let (p50, _) = quantiles(prompt_rate);
        let (g50, _) = quantiles(gen_rate);
        let (t50, _) = quantiles(total);
        println!(
            "embedded {label}: load {load:.2} s; prompt {} tokens at {p50:.0} tokens/s; \
             {} tokens generated at {g50:.1} tokens/s ({}); report {t50:.2} s (p50 of {runs})",
            g.prompt_tokens, g.completion_tokens, g.finish_reason
        );
        per_token.push(t50);
        if dequantize {
            println!("  text: {}", g.text);
        }
    }
    println!(
        "embedded report time, Q4_1 / f32: {:.2}x",
        per_token[1] / per_token[0]
    );
    record::compared(
        "cargo bench --profile dev -p central --bench reports",
        &format!("embedded SmolLM2-135M report on the CPU, p50 of {runs}"),
        record::Figure::new("f32 weights (default)", per_token[0], "s"),
        record::Figure::new("Q4_1 weights as stored", per_token[1], "s"),
    );
}
