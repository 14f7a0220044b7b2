//! The OpenAI-compatible writer against a real local HTTP server (axum on
//! port 0) that speaks the chat-completions protocol, answers from a script
//! and records every request.
//!
//! - The happy path: the draft is parsed; the server sees the model,
//!   `max_tokens`, `temperature`, `response_format` and the bearer key; the
//!   tokens are counted.
//! - Azure OpenAI: the deployment path, `api-version` and `api-key` header.
//! - `base_url` with and without `/v1`.
//! - Retries: 500 then 200; 429 with `Retry-After: 1`; `Retry-After: 120`
//!   gives up at once; a 400 is not retried and carries the server's
//!   message; always 500 makes `retries + 1` requests; a slow server times
//!   out; a dead port is a connection error.
//! - Malformed answers, a missing key, and the key never printed.

mod support;

use std::time::{Duration, Instant};

use central::report::config::{AzureConfig, EndpointConfig};
use central::report::openai::OpenAiWriter;
use central::report::{ChatMessage, Language, ReportWriter, WriteError};
use serde_json::json;
use support::chat_server::{MODEL, Reply, Seen, serve};
use support::report::{draft_json, return_input};

const KEY: &str = "sk-test-0123456789abcdefSECRET";

// ---------------------------------------------------------------- inputs

/// A file holding `KEY` and a trailing newline, as a mounted Secret does.
fn key_file() -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), format!("{KEY}\n")).unwrap();
    file
}

fn config(base_url: &str, key: &tempfile::NamedTempFile) -> EndpointConfig {
    let mut config = EndpointConfig::new(base_url);
    config.model = Some(MODEL.into());
    config.api_key_file = Some(key.path().to_owned());
    config.timeout_s = 5.0;
    config.retries = 2;
    config.max_tokens = 700;
    config.temperature = 0.2;
    config
}

fn messages() -> Vec<ChatMessage> {
    vec![
        ChatMessage::system("Answer with a JSON object."),
        ChatMessage::user("Write the report."),
    ]
}

fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.headers.get(name).map(|v| v.to_str().unwrap())
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn writes_a_draft_and_sends_the_configured_request() {
    let (server, base) = serve(vec![Reply::ok(&draft_json())]).await;
    let key = key_file();
    let writer = OpenAiWriter::new("llm", &config(&format!("{base}/v1"), &key)).unwrap();
    assert_eq!(writer.name(), "llm");
    assert_eq!(writer.model().as_deref(), Some(MODEL));

    let input = return_input(Language::En);
    let draft = writer.write(&input).await.expect("a draft");
    assert_eq!(draft.summary.plate.as_deref(), Some("AB 12 CDE"));
    let refs: Vec<_> = draft
        .summary
        .damages
        .iter()
        .map(|d| (d.finding.as_str(), d.class.as_str(), d.status.as_str()))
        .collect();
    assert_eq!(
        refs,
        [
            ("F1", "dent", "new"),
            ("F2", "change", "possible_new_damage"),
            ("F3", "scratch", "pre_existing"),
        ]
    );
    assert!(
        draft
            .narrative
            .starts_with("Return inspection of AB 12 CDE")
    );
    assert_eq!(writer.requests_sent(), 1);

    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.path, "/v1/chat/completions");
    assert_eq!(request.query, None);
    assert_eq!(
        header(request, "authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(header(request, "api-key"), None);
    assert_eq!(header(request, "content-type"), Some("application/json"));
    let body = &request.body;
    assert_eq!(body["model"], MODEL);
    assert_eq!(body["max_tokens"], 700);
    assert!((body["temperature"].as_f64().unwrap() - 0.2).abs() < 1e-6);
    assert_eq!(body["response_format"], json!({"type": "json_object"}));
    let sent = body["messages"].as_array().unwrap();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0]["role"], "system");
    assert_eq!(sent[1]["role"], "user");
    assert!(sent[1]["content"].as_str().unwrap().contains("AB 12 CDE"));

    // The tokens, through `chat`.
    let completion = writer.chat(&messages()).await.unwrap();
    assert_eq!(completion.text, draft_json());
    assert_eq!(completion.prompt_tokens, Some(321));
    assert_eq!(completion.completion_tokens, Some(87));
    assert_eq!(completion.attempts, 1);
    assert_eq!(writer.requests_sent(), 2);
}

#[tokio::test]
async fn azure_uses_the_deployment_path_and_the_api_key_header() {
    let (server, base) = serve(vec![Reply::ok(&draft_json())]).await;
    let key = key_file();
    let mut config = config(&format!("{base}/"), &key);
    config.model = None;
    config.azure = Some(AzureConfig {
        deployment: "gpt-4o".into(),
        api_version: "2024-10-21".into(),
    });
    let writer = OpenAiWriter::new("fallback", &config).unwrap();
    assert_eq!(writer.name(), "fallback");
    assert_eq!(writer.model().as_deref(), Some("gpt-4o"));

    writer
        .write(&return_input(Language::De))
        .await
        .expect("a draft");
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.path, "/openai/deployments/gpt-4o/chat/completions");
    assert_eq!(request.query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(header(request, "api-key"), Some(KEY));
    assert_eq!(header(request, "authorization"), None);
    assert!(request.body.get("model").is_none(), "{}", request.body);
    assert_eq!(request.body["response_format"]["type"], "json_object");
}

#[tokio::test]
async fn base_url_with_or_without_v1_reaches_the_same_path() {
    let (server, base) = serve(vec![Reply::ok("{}")]).await;
    for base_url in [
        base.clone(),
        format!("{base}/"),
        format!("{base}/v1"),
        format!("{base}/v1/"),
    ] {
        // No key configured: no Authorization header.
        let mut config = EndpointConfig::new(&base_url);
        config.model = Some(MODEL.into());
        let writer = OpenAiWriter::new("llm", &config).unwrap();
        writer.chat(&messages()).await.unwrap();
    }
    let seen = server.seen();
    assert_eq!(seen.len(), 4);
    for request in &seen {
        assert_eq!(request.path, "/v1/chat/completions");
        assert_eq!(header(request, "authorization"), None);
    }
}

#[tokio::test]
async fn a_500_is_retried() {
    let (server, base) = serve(vec![
        Reply::status(500, r#"{"error":{"message":"the model crashed"}}"#),
        Reply::ok("{\"a\": 1}"),
    ])
    .await;
    let key = key_file();
    let writer = OpenAiWriter::new("llm", &config(&base, &key)).unwrap();
    let completion = writer.chat(&messages()).await.unwrap();
    assert_eq!(completion.attempts, 2);
    assert_eq!(completion.text, "{\"a\": 1}");
    assert_eq!(writer.requests_sent(), 2);
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn a_429_waits_for_retry_after() {
    let (server, base) = serve(vec![
        Reply::status(429, r#"{"error":{"message":"rate limited"}}"#).header("retry-after", "1"),
        Reply::ok("{}"),
    ])
    .await;
    let key = key_file();
    let writer = OpenAiWriter::new("llm", &config(&base, &key)).unwrap();
    let started = Instant::now();
    let completion = writer.chat(&messages()).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(completion.attempts, 2);
    assert_eq!(server.seen().len(), 2);
    assert!(elapsed >= Duration::from_millis(950), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
}

#[tokio::test]
async fn a_long_retry_after_gives_up_at_once() {
    let (server, base) = serve(vec![
        Reply::status(429, r#"{"error":{"message":"quota exceeded"}}"#)
            .header("retry-after", "120"),
    ])
    .await;
    let key = key_file();
    let writer = OpenAiWriter::new("fallback", &config(&base, &key)).unwrap();
    let started = Instant::now();
    let error = writer.chat(&messages()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(matches!(error, WriteError::Unavailable(_)), "{error:?}");
    assert_eq!(error.code(), "unavailable");
    let text = error.to_string();
    assert!(text.contains("120"), "{text}");
    assert_eq!(writer.requests_sent(), 1);
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn a_400_carries_the_servers_message_and_is_not_retried() {
    // Servers echo a wrong key back; the error must not carry it.
    let body = json!({"error": {
        "message": format!("Incorrect API key provided: {KEY}. You can find your API key at ..."),
        "type": "invalid_request_error",
        "code": "invalid_api_key",
    }});
    let (server, base) = serve(vec![Reply::status(400, body.to_string())]).await;
    let key = key_file();
    let writer = OpenAiWriter::new("llm", &config(&base, &key)).unwrap();
    let error = writer.chat(&messages()).await.unwrap_err();
    match &error {
        WriteError::Http { status, body } => {
            assert_eq!(*status, 400);
            assert!(body.contains("Incorrect API key provided"), "{body}");
        }
        other => panic!("not Http: {other:?}"),
    }
    assert!(!error.to_string().contains(KEY), "{error}");
    assert!(!format!("{error:?}").contains(KEY), "{error:?}");
    assert_eq!(writer.requests_sent(), 1);
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn always_500_makes_retries_plus_one_requests() {
    let (server, base) = serve(vec![Reply::status(
        503,
        r#"{"error":{"message":"loading model"}}"#,
    )])
    .await;
    let key = key_file();
    let writer = OpenAiWriter::new("llm", &config(&base, &key)).unwrap();
    let error = writer.chat(&messages()).await.unwrap_err();
    match &error {
        WriteError::Http { status, body } => {
            assert_eq!(*status, 503);
            assert_eq!(body, "loading model");
        }
        other => panic!("not Http: {other:?}"),
    }
    assert_eq!(writer.requests_sent(), 3);
    assert_eq!(server.seen().len(), 3);
}

#[tokio::test]
async fn a_slow_server_times_out() {
    let (server, base) = serve(vec![Reply::ok("{}").after(Duration::from_secs(5))]).await;
    let key = key_file();
    let mut config = config(&base, &key);
    config.timeout_s = 0.3;
    config.retries = 1;
    let writer = OpenAiWriter::new("llm", &config).unwrap();
    let started = Instant::now();
    let error = writer.chat(&messages()).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(error, WriteError::Timeout(_)), "{error:?}");
    assert_eq!(error.code(), "timeout");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(writer.requests_sent(), 2);
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn answers_that_are_not_the_protocol_or_the_prompt_are_malformed() {
    // Content that is not the requested JSON: `chat` succeeds, `write` not.
    let (server, base) = serve(vec![Reply::ok("Sorry, I cannot write JSON today.")]).await;
    let key = key_file();
    let writer = OpenAiWriter::new("llm", &config(&base, &key)).unwrap();
    let error = writer.write(&return_input(Language::En)).await.unwrap_err();
    assert!(matches!(error, WriteError::Malformed(_)), "{error:?}");
    assert_eq!(server.seen().len(), 1, "malformed answers are not retried");

    // A body that is not JSON, and one without content.
    for body in [
        "<html>bad gateway</html>".to_owned(),
        json!({"choices": []}).to_string(),
        json!({"choices": [{"message": {"role": "assistant", "content": null}}]}).to_string(),
    ] {
        let (server, base) = serve(vec![Reply::status(200, body.clone())]).await;
        let writer = OpenAiWriter::new("llm", &config(&base, &key)).unwrap();
        let error = writer.chat(&messages()).await.unwrap_err();
        assert!(
            matches!(error, WriteError::Malformed(_)),
            "{body}: {error:?}"
        );
        assert_eq!(server.seen().len(), 1);
    }
}

#[tokio::test]
async fn a_dead_port_is_a_connection_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let key = key_file();
    let mut config = config(&format!("http://{addr}/v1"), &key);
    config.retries = 1;
    let writer = OpenAiWriter::new("llm", &config).unwrap();
    let error = writer.chat(&messages()).await.unwrap_err();
    assert!(matches!(error, WriteError::Connection(_)), "{error:?}");
    assert_eq!(error.code(), "connection");
    assert!(!error.to_string().contains(KEY));
    assert_eq!(writer.requests_sent(), 2);
}

#[tokio::test]
async fn the_key_comes_from_the_environment_or_a_file() {
    // A variable that is not set: Unavailable, naming it.
    let unset = "CENTRAL_TEST_OPENAI_KEY_THAT_IS_NOT_SET";
    assert!(std::env::var_os(unset).is_none());
    let mut config = EndpointConfig::new("http://127.0.0.1:9/v1");
    config.model = Some(MODEL.into());
    config.api_key_env = Some(unset.into());
    let error = OpenAiWriter::new("fallback", &config).unwrap_err();
    assert!(matches!(error, WriteError::Unavailable(_)), "{error:?}");
    assert!(error.to_string().contains(unset), "{error}");

    // A file that is not there: Unavailable, naming it.
    let mut config = EndpointConfig::new("http://127.0.0.1:9/v1");
    config.model = Some(MODEL.into());
    config.api_key_file = Some("/nonexistent/gpt4o/api-key".into());
    let error = OpenAiWriter::new("fallback", &config).unwrap_err();
    assert!(matches!(error, WriteError::Unavailable(_)), "{error:?}");
    assert!(
        error.to_string().contains("/nonexistent/gpt4o/api-key"),
        "{error}"
    );

    // A variable that is set (cargo sets CARGO_PKG_NAME for tests; PATH
    // otherwise): its value is the bearer token.
    let var = ["CARGO_PKG_NAME", "PATH"]
        .into_iter()
        .find(|v| std::env::var(v).is_ok_and(|v| !v.trim().is_empty()))
        .expect("a set variable");
    let value = std::env::var(var).unwrap();
    let (server, base) = serve(vec![Reply::ok("{}")]).await;
    let mut config = EndpointConfig::new(base);
    config.model = Some(MODEL.into());
    config.api_key_env = Some(var.into());
    let writer = OpenAiWriter::new("llm", &config).unwrap();
    writer.chat(&messages()).await.unwrap();
    let expected = format!("Bearer {}", value.trim());
    assert_eq!(
        header(&server.seen()[0], "authorization"),
        Some(expected.as_str())
    );
}

#[test]
fn debug_does_not_print_the_key() {
    let key = key_file();
    let writer = OpenAiWriter::new("llm", &config("http://127.0.0.1:9/v1", &key)).unwrap();
    let debug = format!("{writer:?}");
    assert!(!debug.contains(KEY), "{debug}");
    assert!(!debug.contains("SECRET"), "{debug}");
    assert!(debug.contains("redacted"), "{debug}");
    assert!(debug.contains(MODEL), "{debug}");
}
