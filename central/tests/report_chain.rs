//! The writer chain built from `[report]` configuration, against real local
//! HTTP servers speaking the chat-completions protocol (one for the
//! self-hosted model, one for GPT-4o):
//!
//! - the self-hosted writer first; its accepted draft is the report and
//!   GPT-4o is never asked;
//! - a failing or rejected self-hosted draft sends an edge case to GPT-4o;
//!   a case that is no edge case goes to the template;
//! - the daily budget caps GPT-4o; a spent budget is recorded;
//! - without a self-hosted endpoint GPT-4o is asked for edge cases only;
//! - every writer failing ends in the template; the report records each
//!   attempt and the metrics count writers, attempts and rejections;
//! - a writer whose API key is missing is left out at start, not fatal.

mod support;

use central::report::config::{EndpointConfig, FallbackConfig, FallbackWhen};
use central::report::{Language, PlateFact, Report, ReportConfig, ReportInput, ReportMetrics};
use chrono::{TimeZone, Utc};
use serde_json::json;
use support::chat_server::{Reply, Server, serve};
use support::report::{draft_json, return_input};

fn endpoint(base: &str, model: &str) -> EndpointConfig {
    let mut config = EndpointConfig::new(format!("{base}/v1"));
    config.model = Some(model.into());
    config.timeout_s = 5.0;
    config.retries = 0;
    config
}

/// `[report]` with the given endpoints and the embedded model off (its own
/// tests are in report_embedded.rs).
fn config(llm: Option<&str>, fallback: Option<(&str, u32, FallbackWhen)>) -> ReportConfig {
    let mut config = ReportConfig {
        llm: llm.map(|base| endpoint(base, "llama-3.1-8b-instruct")),
        fallback: fallback.map(|(base, daily_budget, when)| FallbackConfig {
            endpoint: endpoint(base, "gpt-4o"),
            when,
            daily_budget,
        }),
        ..ReportConfig::default()
    };
    config.embedded.enabled = false;
    config
}

/// The good draft with a new crack on the roof added, which the findings
/// do not have.
fn invented_json() -> String {
    let mut draft: serde_json::Value = serde_json::from_str(&draft_json()).unwrap();
    draft["summary"]["damages"]
        .as_array_mut()
        .unwrap()
        .push(json!({"finding": "F9", "class": "crack", "position": "roof", "status": "new"}));
    draft["narrative"] = json!(
        "Return inspection of AB 12 CDE: a new dent at the front (F1), a change at the left to be checked (F2), a new crack in the roof; the scratch at the rear (F3) was there at pickup."
    );
    draft.to_string()
}

fn metrics_text(metrics: &ReportMetrics) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text
}

fn outcomes(report: &Report) -> Vec<(&str, &str, Option<&str>)> {
    report
        .attempts
        .iter()
        .map(|a| (a.writer.as_str(), a.outcome.as_str(), a.reason.as_deref()))
        .collect()
}

async fn write(config: &ReportConfig, input: &ReportInput) -> (Report, ReportMetrics) {
    let metrics = ReportMetrics::default();
    let chain = central::report::chain::build(config, metrics.clone()).await;
    let report = chain
        .write(input, Utc.with_ymd_and_hms(2026, 11, 30, 10, 0, 0).unwrap())
        .await;
    (report, metrics)
}

fn requests(server: &Server) -> usize {
    server.seen().len()
}

#[tokio::test]
async fn the_self_hosted_writer_comes_first_and_gpt4o_is_not_asked() {
    let (llm, llm_base) = serve(vec![Reply::ok(&draft_json())]).await;
    let (gpt, gpt_base) = serve(vec![Reply::ok(&draft_json())]).await;
    let config = config(
        Some(&llm_base),
        Some((&gpt_base, 10, FallbackWhen::default())),
    );
    let (report, metrics) = write(&config, &return_input(Language::En)).await;
    assert_eq!(report.writer, "llm");
    assert_eq!(report.model.as_deref(), Some("llama-3.1-8b-instruct"));
    assert_eq!(outcomes(&report), [("llm", "accepted", None)]);
    assert!(
        report
            .narrative
            .starts_with("Return inspection of AB 12 CDE")
    );
    assert_eq!((requests(&llm), requests(&gpt)), (1, 0));
    let text = metrics_text(&metrics);
    assert!(
        text.contains("central_reports_total{writer=\"llm\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_failing_self_hosted_writer_sends_the_edge_case_to_gpt4o() {
    let (llm, llm_base) = serve(vec![Reply::status(503, r#"{"error":"loading"}"#)]).await;
    let (gpt, gpt_base) = serve(vec![Reply::ok(&draft_json())]).await;
    let config = config(
        Some(&llm_base),
        Some((&gpt_base, 10, FallbackWhen::default())),
    );
    let (report, metrics) = write(&config, &return_input(Language::En)).await;
    assert_eq!(report.writer, "fallback");
    assert_eq!(report.model.as_deref(), Some("gpt-4o"));
    assert_eq!(
        outcomes(&report),
        [
            ("llm", "error", Some("http")),
            ("fallback", "accepted", None)
        ]
    );
    assert_eq!((requests(&llm), requests(&gpt)), (1, 1));
    assert_eq!(gpt.seen()[0].body["model"], "gpt-4o");
    let text = metrics_text(&metrics);
    assert!(
        text.contains("central_report_attempts_total{writer=\"llm\",outcome=\"error\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("central_reports_total{writer=\"fallback\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_rejected_self_hosted_draft_is_counted_and_gpt4o_writes_the_report() {
    let (_llm, llm_base) = serve(vec![Reply::ok(&invented_json())]).await;
    let (_gpt, gpt_base) = serve(vec![Reply::ok(&draft_json())]).await;
    let config = config(
        Some(&llm_base),
        Some((&gpt_base, 10, FallbackWhen::default())),
    );
    let (report, metrics) = write(&config, &return_input(Language::En)).await;
    assert_eq!(report.writer, "fallback");
    assert_eq!(
        outcomes(&report),
        [
            ("llm", "rejected", Some("invented_damage")),
            ("fallback", "accepted", None)
        ]
    );
    let text = metrics_text(&metrics);
    assert!(
        text.contains(
            "central_report_rejections_total{writer=\"llm\",reason=\"invented_damage\"} 1"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn what_is_no_edge_case_goes_to_the_template_not_to_gpt4o() {
    let (_llm, llm_base) = serve(vec![Reply::status(500, "{}")]).await;
    let (gpt, gpt_base) = serve(vec![Reply::ok(&draft_json())]).await;
    // Only an unreadable plate is an edge case here; the plate was read.
    let when = FallbackWhen {
        low_confidence: 0.0,
        unreadable_plate: true,
        disagreement: false,
        primary_failure: false,
    };
    let config = config(Some(&llm_base), Some((&gpt_base, 10, when.clone())));
    let (report, _) = write(&config, &return_input(Language::En)).await;
    assert_eq!(report.writer, "template");
    assert_eq!(
        outcomes(&report),
        [
            ("llm", "error", Some("http")),
            ("fallback", "skipped", Some("not_edge_case")),
            ("template", "accepted", None)
        ]
    );
    assert_eq!(requests(&gpt), 0);

    // The same routing with the plate unreadable asks GPT-4o.
    let mut input = return_input(Language::En);
    input.plate = PlateFact::Unreadable;
    let unreadable = json!({
        "summary": {
            "plate": null,
            "damages": [
                {"finding": "F1", "class": "dent", "position": "front", "status": "new"},
                {"finding": "F2", "class": "change", "position": "left", "status": "possible_new_damage"},
                {"finding": "F3", "class": "scratch", "position": "rear", "status": "pre_existing"},
            ],
        },
        "narrative": "Return inspection; the plate could not be read. A new dent at the front (F1), a change at the left to be checked (F2); the scratch at the rear (F3) was there at pickup.",
    })
    .to_string();
    let (gpt, gpt_base) = serve(vec![Reply::ok(&unreadable)]).await;
    let config = config_with_fallback(&llm_base, &gpt_base, when);
    let (report, _) = write(&config, &input).await;
    assert_eq!(report.writer, "fallback", "{:?}", report.attempts);
    assert_eq!(requests(&gpt), 1);
}

fn config_with_fallback(llm: &str, gpt: &str, when: FallbackWhen) -> ReportConfig {
    config(Some(llm), Some((gpt, 10, when)))
}

#[tokio::test]
async fn the_daily_budget_caps_gpt4o() {
    let (_llm, llm_base) = serve(vec![Reply::status(500, "{}")]).await;
    let (gpt, gpt_base) = serve(vec![Reply::ok(&draft_json())]).await;
    let config = config(
        Some(&llm_base),
        Some((&gpt_base, 2, FallbackWhen::default())),
    );
    let metrics = ReportMetrics::default();
    let chain = central::report::chain::build(&config, metrics.clone()).await;
    let input = return_input(Language::En);
    let at = |month, day, hour| Utc.with_ymd_and_hms(2026, month, day, hour, 0, 0).unwrap();
    let mut writers = Vec::new();
    // Two a day: the third and fourth on 30 November go to the template;
    // 1 December is a new day with a new budget.
    for now in [
        at(11, 30, 8),
        at(11, 30, 9),
        at(11, 30, 10),
        at(11, 30, 23),
        at(12, 1, 1),
    ] {
        writers.push(chain.write(&input, now).await);
    }
    let names: Vec<_> = writers.iter().map(|r| r.writer.as_str()).collect();
    assert_eq!(
        names,
        ["fallback", "fallback", "template", "template", "fallback"]
    );
    assert_eq!(
        outcomes(&writers[2])[1],
        ("fallback", "skipped", Some("budget_spent"))
    );
    assert!(
        writers[2].attempts[1]
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains("primary_failure")
    );
    assert_eq!(requests(&gpt), 3);
    let text = metrics_text(&metrics);
    assert!(
        text.contains("central_report_fallback_requests_total 3"),
        "{text}"
    );
}

#[tokio::test]
async fn without_a_self_hosted_endpoint_gpt4o_takes_edge_cases_only() {
    let (gpt, gpt_base) = serve(vec![Reply::ok(&draft_json())]).await;
    let config = config(None, Some((&gpt_base, 10, FallbackWhen::default())));
    // return_input is an edge case: a changed region no model finding
    // explains, while a damage model runs.
    let (report, _) = write(&config, &return_input(Language::En)).await;
    assert_eq!(report.writer, "fallback");
    assert_eq!(outcomes(&report), [("fallback", "accepted", None)]);
    // Without the damage model it is none.
    let mut input = return_input(Language::En);
    input.damage_model = None;
    let (report, _) = write(&config, &input).await;
    assert_eq!(report.writer, "template");
    assert_eq!(
        outcomes(&report)[0],
        ("fallback", "skipped", Some("not_edge_case"))
    );
    assert_eq!(requests(&gpt), 1);
}

#[tokio::test]
async fn when_every_writer_fails_the_template_writes_the_report() {
    let (_llm, llm_base) = serve(vec![Reply::ok("I cannot help with that.")]).await;
    let (_gpt, gpt_base) = serve(vec![Reply::status(
        401,
        r#"{"error":{"message":"bad key"}}"#,
    )])
    .await;
    let config = config(
        Some(&llm_base),
        Some((&gpt_base, 10, FallbackWhen::default())),
    );
    let (report, metrics) = write(&config, &return_input(Language::De)).await;
    assert_eq!(report.writer, "template");
    assert_eq!(report.model, None);
    assert_eq!(
        outcomes(&report),
        [
            ("llm", "error", Some("malformed")),
            ("fallback", "error", Some("http")),
            ("template", "accepted", None)
        ]
    );
    assert!(
        report.attempts[1]
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains("bad key")
    );
    // The template wrote German, as asked.
    assert_eq!(report.language, Language::De);
    assert!(report.narrative.contains("AB 12 CDE"));
    let text = metrics_text(&metrics);
    assert!(
        text.contains("central_reports_total{writer=\"template\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_writer_whose_key_is_missing_is_left_out_at_start() {
    let (_gpt, gpt_base) = serve(vec![Reply::ok(&draft_json())]).await;
    let mut config = config(None, Some((&gpt_base, 10, FallbackWhen::default())));
    config.fallback.as_mut().unwrap().endpoint.api_key_env =
        Some("INSPECTION_TEST_KEY_THAT_IS_NOT_SET".into());
    let chain = central::report::chain::build(&config, ReportMetrics::default()).await;
    assert_eq!(chain.describe(), ["template"]);

    let (_llm, llm_base) = serve(vec![Reply::ok(&draft_json())]).await;
    let config = config_with_fallback(&llm_base, &gpt_base, FallbackWhen::default());
    let chain = central::report::chain::build(&config, ReportMetrics::default()).await;
    assert_eq!(
        chain.describe(),
        [
            "llm (llama-3.1-8b-instruct)",
            "fallback (gpt-4o)",
            "template"
        ]
    );
    // A budget of 0 turns the fallback off.
    let mut off = config.clone();
    off.fallback.as_mut().unwrap().daily_budget = 0;
    let chain = central::report::chain::build(&off, ReportMetrics::default()).await;
    assert_eq!(
        chain.describe(),
        ["llm (llama-3.1-8b-instruct)", "template"]
    );
}
