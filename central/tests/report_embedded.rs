//! The embedded writer with the real fetched model
//! (SmolLM2-135M-Instruct Q4_1 GGUF, `models/fetch.sh`) on the CPU:
//!
//! - the tokenizer built from the GGUF metadata: known tokens, the ChatML
//!   prompt, text in all six report languages round-trips;
//! - the model writes a report for a real inspection's facts, and the
//!   grounding check's verdict on it agrees with what the text says (every
//!   damage word in it is a finding, every new finding is in it);
//! - through the chain: the embedded draft is used or rejected and the
//!   template writes the report, each recorded;
//! - a missing or broken model file is a clear `unavailable` error.

mod support;

use std::sync::{Arc, OnceLock};

use central::report::config::EmbeddedConfig;
use central::report::embedded::{EmbeddedModel, EmbeddedWriter};
use central::report::grounding::{self, Reason};
use central::report::{
    ChatMessage, Language, ReportConfig, ReportMetrics, ReportWriter, WriteError, chain,
};
use chrono::Utc;
use support::report::return_input;

/// The model, loaded once for every test in this file.
fn model() -> Arc<EmbeddedModel> {
    static MODEL: OnceLock<Arc<EmbeddedModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let config = EmbeddedConfig::default();
            let path = EmbeddedModel::path(&config).expect("a cache directory");
            assert!(
                path.is_file(),
                "{} is missing: run `bash models/fetch.sh`",
                path.display()
            );
            Arc::new(EmbeddedModel::load(&path, &config).expect("the GGUF model loads"))
        })
        .clone()
}

#[test]
fn the_tokenizer_comes_from_the_gguf_metadata() {
    let model = model();
    let bpe = model.tokenizer();
    assert_eq!(bpe.vocab_size(), 49152);
    // Whole words are single tokens in this vocabulary.
    let hello = bpe.encode("Hello world");
    assert_eq!(hello.len(), 2, "{hello:?}");
    assert_eq!(bpe.decode(&hello), "Hello world");
    // Digits are single tokens, one each.
    assert_eq!(bpe.encode("2026").len(), 4);
    for lang in Language::ALL {
        let mut input = return_input(lang);
        input.language = lang;
        let text = central::report::template::render(&input).narrative;
        assert_eq!(bpe.decode(&bpe.encode(&text)), text, "{lang}");
    }
    // The ChatML prompt: <|im_start|>system\n...<|im_end|>\n...assistant\n
    let prompt = model.prompt_tokens(&[ChatMessage::system("S"), ChatMessage::user("U")]);
    let im_start = bpe.token_id("<|im_start|>").unwrap();
    let im_end = bpe.token_id("<|im_end|>").unwrap();
    assert_eq!(prompt[0], im_start);
    assert_eq!(prompt.iter().filter(|&&t| t == im_start).count(), 3);
    assert_eq!(prompt.iter().filter(|&&t| t == im_end).count(), 2);
    // Control tokens decode to nothing.
    assert_eq!(bpe.decode(&prompt), "system\nS\nuser\nU\nassistant\n");
}

#[test]
fn the_model_answers_a_short_question() {
    let model = model();
    let generation = model
        .generate(
            &[ChatMessage::user(
                "What is the capital of France? Answer in one word.",
            )],
            Some(48),
        )
        .expect("generation");
    println!(
        "{:?} ({} prompt, {} generated, {:.2}+{:.2} s)",
        generation.text,
        generation.prompt_tokens,
        generation.completion_tokens,
        generation.prompt_seconds,
        generation.generation_seconds
    );
    assert!(generation.text.contains("Paris"), "{}", generation.text);
}

/// The kinds of damage an English text names, by a plain word list kept
/// here, apart from the lexicon the check uses.
fn classes_named(text: &str) -> Vec<&'static str> {
    let lower = text.to_lowercase();
    [
        ("dent", &["dent"][..]),
        ("scratch", &["scratch"]),
        ("crack", &["crack"]),
        (
            "glass_shatter",
            &["shatter", "broken glass", "broken window"],
        ),
        ("lamp_broken", &["lamp", "headlight", "taillight"]),
        ("tire_flat", &["tyre", "tire", "puncture"]),
    ]
    .into_iter()
    .filter(|(_, words)| words.iter().any(|w| lower.contains(w)))
    .map(|(class, _)| class)
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_writes_a_report_and_grounding_judges_it() {
    let writer = EmbeddedWriter::new(model());
    assert_eq!(writer.name(), "embedded");
    let input = return_input(Language::En);
    let draft = writer.write(&input).await.expect("a draft");
    println!("embedded report:\n{}\n", draft.narrative);
    assert!(!draft.narrative.is_empty());
    let rejections = grounding::check(&input, &draft);
    println!("grounding: {rejections:?}");
    let reasons: Vec<Reason> = rejections.iter().map(|r| r.reason).collect();

    // What the text itself says, read independently of the check.
    let named = classes_named(&draft.narrative);
    let invented: Vec<_> = named
        .iter()
        .filter(|c| !["dent", "scratch"].contains(c))
        .collect();
    assert_eq!(
        !invented.is_empty(),
        reasons.contains(&Reason::InventedDamage),
        "named {named:?}: {rejections:?}"
    );
    if !draft.narrative.to_lowercase().contains("dent") {
        assert!(
            reasons.contains(&Reason::OmittedFinding),
            "the new dent (F1) is not in the text: {rejections:?}"
        );
    }
    if rejections.is_empty() {
        assert!(draft.narrative.to_lowercase().contains("dent"));
        assert!(invented.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_chain_the_embedded_draft_is_used_or_the_template_takes_over() {
    let metrics = ReportMetrics::default();
    let chain = chain::WriterChain::new(
        None,
        None,
        Some(Arc::new(EmbeddedWriter::new(model()))),
        metrics.clone(),
    );
    assert_eq!(
        chain.describe()[0],
        format!("embedded ({})", model().name())
    );
    let input = return_input(Language::En);
    let report = chain.write(&input, Utc::now()).await;
    let first = &report.attempts[0];
    assert_eq!(first.writer, "embedded");
    match first.outcome.as_str() {
        "accepted" => {
            assert_eq!(report.writer, "embedded");
            assert_eq!(report.model.as_deref(), Some(model().name()));
        }
        "rejected" => {
            assert_eq!(report.writer, "template");
            assert!(first.reason.is_some() && first.detail.is_some());
        }
        other => panic!("unexpected outcome {other}: {report:?}"),
    }
    println!("chain: {} via {:?}", report.writer, report.attempts);
}

#[tokio::test]
async fn a_missing_or_broken_model_file_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EmbeddedConfig {
        model: Some(dir.path().join("absent.gguf")),
        ..EmbeddedConfig::default()
    };
    let err = EmbeddedWriter::load(&config).await.unwrap_err();
    assert!(matches!(err, WriteError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("absent.gguf"), "{err}");

    let broken = dir.path().join("broken.gguf");
    std::fs::write(&broken, b"GGUF\x03\x00\x00\x00truncated").unwrap();
    config.model = Some(broken);
    let err = EmbeddedWriter::load(&config).await.unwrap_err();
    assert_eq!(err.code(), "unavailable", "{err}");

    // The chain starts without it, with the template.
    let report = ReportConfig {
        embedded: config,
        ..ReportConfig::default()
    };
    let chain = chain::build(&report, ReportMetrics::default()).await;
    assert_eq!(chain.describe(), ["template"]);
}
