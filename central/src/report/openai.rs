//! The OpenAI-compatible chat-completions writer (self-hosted endpoint and
//! GPT-4o, Azure OpenAI included). See report/mod.rs.
//!
//! ```text
//! DESIGN
//!
//! THE REQUEST
//!
//! OpenAI-compatible servers (llama.cpp server, vLLM, Ollama, OpenAI):
//!   POST {base}/v1/chat/completions, `Authorization: Bearer KEY` when a key
//!   is configured. `base_url` may be given with or without the `/v1`: when
//!   its path ends in a `v1` segment, `/chat/completions` is appended;
//!   otherwise `/v1/chat/completions` is. A trailing `/` is ignored.
//! Azure OpenAI (`azure` set):
//!   POST {base_url}/openai/deployments/{deployment}/chat/completions
//!        ?api-version={api_version}, with an `api-key: KEY` header. The
//!   deployment decides the model, so no `model` field is sent.
//! The body: {model, messages, max_tokens, temperature,
//!   response_format: {"type": "json_object"}}.
//!
//! RETRIES
//!
//! `retries` extra attempts after a connection error, a timeout (each
//! request, body included, is limited to `timeout_s`), 429 or 5xx, with
//! exponential backoff and jitter (250 ms, 500 ms, 1 s, ... capped at 4 s).
//! A `Retry-After` of at most 30 s is waited for instead when longer; a
//! larger one gives up at once (`Unavailable`): the chain's next writer is
//! better than a report that late. Other 4xx are the caller's fault and are
//! not retried (`Http`, with the server's error message).
//!
//! SECRETS
//!
//! The key is read once, at construction, from the environment variable or
//! file the config names. It is sent in a header marked sensitive, never
//! printed by `Debug`, and removed from every error message (servers have
//! been known to echo a wrong key back in their error text).
//! ```

use crate::error_chain;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::config::EndpointConfig;
use super::prompt::{self, PromptStyle};
use super::{ChatMessage, Draft, ReportInput, ReportWriter, WriteError};

/// The longest `Retry-After` waited for; a longer one gives up at once.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// The first backoff; doubled per retry up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(4);
/// How much of a server's error text is kept in an error.
const MAX_ERROR_TEXT: usize = 500;

/// A chat completion's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// `choices[0].message.content`.
    pub text: String,
    /// `usage.prompt_tokens`, when the server reported it.
    pub prompt_tokens: Option<u64>,
    /// `usage.completion_tokens`, when the server reported it.
    pub completion_tokens: Option<u64>,
    /// HTTP requests this answer took (1 without retries).
    pub attempts: u32,
}

/// How the key is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    /// `Authorization: Bearer KEY`, `model` in the body.
    OpenAi,
    /// `api-key: KEY`, the deployment in the path.
    Azure,
}

/// An OpenAI-compatible endpoint as a [`ReportWriter`].
pub struct OpenAiWriter {
    name: &'static str,
    client: reqwest::Client,
    url: reqwest::Url,
    flavour: Flavour,
    /// Sent in the body (OpenAI flavour only).
    model: Option<String>,
    /// What `model()` reports: the model, or Azure's deployment.
    label: Option<String>,
    key: Option<String>,
    timeout: Duration,
    retries: u32,
    max_tokens: u32,
    temperature: f32,
    requests: AtomicU64,
}

impl std::fmt::Debug for OpenAiWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiWriter")
            .field("name", &self.name)
            .field("url", &self.url.as_str())
            .field("flavour", &self.flavour)
            .field("model", &self.label)
            .field("key", &self.key.as_ref().map(|_| "[redacted]"))
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("max_tokens", &self.max_tokens)
            .field("temperature", &self.temperature)
            .field("requests", &self.requests.load(Ordering::Relaxed))
            .finish()
    }
}

/// The request body.
#[derive(Serialize)]
struct ChatRequest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    messages: &'a [ChatMessage],
    max_tokens: u32,
    temperature: f32,
    response_format: ResponseFormat,
}

#[derive(Serialize)]
struct ResponseFormat {
    #[serde(rename = "type")]
    kind: &'static str,
}

/// The parts of the answer that are used.
#[derive(Deserialize)]
struct ChatResponse {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<AnswerMessage>,
}

#[derive(Deserialize)]
struct AnswerMessage {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
}

/// OpenAI's error shape: `{"error": {"message": "..."}}`.
#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: Option<String>,
}

/// One request's outcome, before the retry decision.
enum Failure {
    /// Worth another attempt (after at least `wait`, when given).
    Retry {
        error: WriteError,
        wait: Option<Duration>,
    },
    /// Final.
    Fatal(WriteError),
}

impl OpenAiWriter {
    /// A writer for `config`. `name` is `llm` or `fallback`. The API key is
    /// read here; a configured key that cannot be read is `Unavailable`.
    pub fn new(name: &'static str, config: &EndpointConfig) -> Result<OpenAiWriter, WriteError> {
        let unavailable = |reason: String| WriteError::Unavailable(format!("{name}: {reason}"));
        let mut url = reqwest::Url::parse(config.base_url.trim())
            .map_err(|e| unavailable(format!("base_url {:?}: {e}", config.base_url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(unavailable(format!(
                "base_url {:?}: scheme is not http or https",
                config.base_url
            )));
        }
        let ends_in_v1 = url
            .path_segments()
            .and_then(|mut s| s.rfind(|s| !s.is_empty()))
            .is_some_and(|last| last == "v1");
        {
            let mut segments = url.path_segments_mut().map_err(|()| {
                unavailable(format!("base_url {:?}: cannot be a base", config.base_url))
            })?;
            segments.pop_if_empty();
            match &config.azure {
                Some(azure) => {
                    segments.extend([
                        "openai",
                        "deployments",
                        azure.deployment.as_str(),
                        "chat",
                        "completions",
                    ]);
                }
                None if ends_in_v1 => {
                    segments.extend(["chat", "completions"]);
                }
                None => {
                    segments.extend(["v1", "chat", "completions"]);
                }
            }
        }
        url.set_query(None);
        url.set_fragment(None);
        if let Some(azure) = &config.azure {
            url.query_pairs_mut()
                .append_pair("api-version", &azure.api_version);
        }

        let key = read_key(config).map_err(unavailable)?;
        if let Some(key) = &key
            && reqwest::header::HeaderValue::from_str(key).is_err()
        {
            return Err(unavailable(format!(
                "the API key from {} holds characters not allowed in an HTTP header",
                key_source(config)
            )));
        }

        if !(config.timeout_s.is_finite() && config.timeout_s > 0.0) {
            return Err(unavailable(format!(
                "timeout_s {} is not positive",
                config.timeout_s
            )));
        }
        let timeout = Duration::from_secs_f64(config.timeout_s);
        crate::tls::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| WriteError::Internal(format!("{name}: HTTP client: {e}")))?;

        let (flavour, model, label) = match &config.azure {
            Some(azure) => (Flavour::Azure, None, Some(azure.deployment.clone())),
            None => (Flavour::OpenAi, config.model.clone(), config.model.clone()),
        };
        Ok(OpenAiWriter {
            name,
            client,
            url,
            flavour,
            model,
            label,
            key,
            timeout,
            retries: config.retries,
            max_tokens: config.max_tokens,
            temperature: config.temperature,
            requests: AtomicU64::new(0),
        })
    }

    /// The URL requests go to.
    pub fn url(&self) -> &reqwest::Url {
        &self.url
    }

    /// HTTP requests sent so far, retries included.
    pub fn requests_sent(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// One chat completion, with retries.
    pub async fn chat(&self, messages: &[ChatMessage]) -> Result<Completion, WriteError> {
        let body = ChatRequest {
            model: self.model.as_deref(),
            messages,
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            response_format: ResponseFormat {
                kind: "json_object",
            },
        };
        let body = serde_json::to_vec(&body)
            .map_err(|e| WriteError::Internal(format!("request body: {e}")))?;
        let body = bytes::Bytes::from(body);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let failure = match self.attempt(body.clone()).await {
                Ok(mut completion) => {
                    completion.attempts = attempt;
                    return Ok(completion);
                }
                Err(failure) => failure,
            };
            let (error, wait) = match failure {
                Failure::Fatal(error) => return Err(error),
                Failure::Retry { error, wait } => (error, wait),
            };
            if attempt > self.retries {
                return Err(error);
            }
            let backoff = FIRST_BACKOFF
                .saturating_mul(1 << (attempt - 1).min(5))
                .min(MAX_BACKOFF);
            let jitter = Duration::from_millis(rand::random_range(
                0..=u64::try_from(backoff.as_millis() / 4).unwrap_or(0),
            ));
            let delay = (backoff + jitter).max(wait.unwrap_or_default());
            tracing::debug!(
                writer = self.name,
                attempt,
                error = %error,
                ?delay,
                "chat completion retried"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One HTTP request and its answer.
    async fn attempt(&self, body: bytes::Bytes) -> Result<Completion, Failure> {
        let mut request = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(key) = &self.key {
            let (header, value) = match self.flavour {
                Flavour::OpenAi => (reqwest::header::AUTHORIZATION, format!("Bearer {key}")),
                Flavour::Azure => (
                    reqwest::header::HeaderName::from_static("api-key"),
                    key.clone(),
                ),
            };
            // Checked in `new`; the `Bearer ` prefix adds nothing invalid.
            let mut value = reqwest::header::HeaderValue::from_str(&value).map_err(|e| {
                Failure::Fatal(WriteError::Internal(format!("API key header: {e}")))
            })?;
            value.set_sensitive(true);
            request = request.header(header, value);
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        let response = request.send().await.map_err(|e| self.transport(&e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response.bytes().await.map_err(|e| self.transport(&e))?;

        if status.is_success() {
            return self.completion(&text).map_err(Failure::Fatal);
        }
        let error = WriteError::Http {
            status: status.as_u16(),
            body: self.error_text(&text),
        };
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            if let Some(wait) = retry_after
                && wait > MAX_RETRY_AFTER
            {
                return Err(Failure::Fatal(WriteError::Unavailable(format!(
                    "{}: HTTP {} with Retry-After {} s (more than {} s): {}",
                    self.name,
                    status.as_u16(),
                    wait.as_secs(),
                    MAX_RETRY_AFTER.as_secs(),
                    self.error_text(&text),
                ))));
            }
            return Err(Failure::Retry {
                error,
                wait: retry_after,
            });
        }
        Err(Failure::Fatal(error))
    }

    /// A transport error (no status): timeouts and connection errors are
    /// retried.
    fn transport(&self, error: &reqwest::Error) -> Failure {
        if error.is_timeout() {
            return Failure::Retry {
                error: WriteError::Timeout(self.timeout),
                wait: None,
            };
        }
        let error = WriteError::Connection(self.redact(&error_chain(error)));
        Failure::Retry { error, wait: None }
    }

    /// Reads a 2xx answer.
    fn completion(&self, body: &[u8]) -> Result<Completion, WriteError> {
        let response: ChatResponse = serde_json::from_slice(body).map_err(|e| {
            WriteError::Malformed(format!("{}: the answer is not chat JSON: {e}", self.name))
        })?;
        let text = response
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.message)
            .and_then(|m| m.content)
            .ok_or_else(|| {
                WriteError::Malformed(format!(
                    "{}: the answer has no choices[0].message.content",
                    self.name
                ))
            })?;
        let usage = response.usage;
        Ok(Completion {
            text,
            prompt_tokens: usage.as_ref().and_then(|u| u.prompt_tokens),
            completion_tokens: usage.as_ref().and_then(|u| u.completion_tokens),
            attempts: 1,
        })
    }

    /// The server's error message (OpenAI's shape), else the start of its
    /// body; the key removed.
    fn error_text(&self, body: &[u8]) -> String {
        let message = serde_json::from_slice::<ErrorBody>(body)
            .ok()
            .and_then(|b| b.error.message)
            .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
        let mut message = self.redact(&message);
        if let Some((cut, _)) = message.char_indices().nth(MAX_ERROR_TEXT) {
            message.truncate(cut);
            message.push('…');
        }
        message
    }

    /// `text` without the API key.
    fn redact(&self, text: &str) -> String {
        match &self.key {
            Some(key) if !key.is_empty() => text.replace(key.as_str(), "[redacted]"),
            _ => text.to_owned(),
        }
    }
}

#[async_trait]
impl ReportWriter for OpenAiWriter {
    fn name(&self) -> &'static str {
        self.name
    }

    fn model(&self) -> Option<String> {
        self.label.clone()
    }

    async fn write(&self, input: &ReportInput) -> Result<Draft, WriteError> {
        let messages = prompt::messages(input, PromptStyle::Json);
        let completion = self.chat(&messages).await?;
        tracing::debug!(
            writer = self.name,
            attempts = completion.attempts,
            prompt_tokens = completion.prompt_tokens,
            completion_tokens = completion.completion_tokens,
            "chat completion answered"
        );
        prompt::parse_json_draft(&completion.text)
    }
}

/// Where the key comes from, for messages: the variable or the file.
fn key_source(config: &EndpointConfig) -> String {
    match (&config.api_key_env, &config.api_key_file) {
        (Some(var), _) => format!("environment variable {var}"),
        (None, Some(file)) => format!("file {}", file.display()),
        (None, None) => "nowhere".to_owned(),
    }
}

/// The configured API key, trailing whitespace removed; `Ok(None)` when
/// none is configured. Errors name the variable or file, never a value.
fn read_key(config: &EndpointConfig) -> Result<Option<String>, String> {
    let key = if let Some(var) = &config.api_key_env {
        match std::env::var(var) {
            Ok(value) => value,
            Err(std::env::VarError::NotPresent) => {
                return Err(format!("API key environment variable {var} is not set"));
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(format!(
                    "API key environment variable {var} is not valid UTF-8"
                ));
            }
        }
    } else if let Some(file) = &config.api_key_file {
        std::fs::read_to_string(file).map_err(|e| {
            format!(
                "cannot read the API key file {}: {}",
                file.display(),
                e.kind()
            )
        })?
    } else {
        return Ok(None);
    };
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("the API key from {} is empty", key_source(config)));
    }
    Ok(Some(key.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url_of(base: &str) -> String {
        let mut config = EndpointConfig::new(base);
        config.model = Some("m".into());
        OpenAiWriter::new("llm", &config)
            .expect("writer")
            .url()
            .to_string()
    }

    #[test]
    fn base_url_with_or_without_v1() {
        for (base, want) in [
            ("http://h:8080", "http://h:8080/v1/chat/completions"),
            ("http://h:8080/", "http://h:8080/v1/chat/completions"),
            ("http://h:8080/v1", "http://h:8080/v1/chat/completions"),
            ("http://h:8080/v1/", "http://h:8080/v1/chat/completions"),
            ("http://h/llm", "http://h/llm/v1/chat/completions"),
            ("http://h/llm/v1", "http://h/llm/v1/chat/completions"),
        ] {
            assert_eq!(url_of(base), want, "{base}");
        }
    }

    #[test]
    fn azure_url() {
        let mut config = EndpointConfig::new("https://res.openai.azure.com/");
        config.azure = Some(super::super::config::AzureConfig {
            deployment: "gpt-4o".into(),
            api_version: "2024-10-21".into(),
        });
        let writer = OpenAiWriter::new("fallback", &config).expect("writer");
        assert_eq!(
            writer.url().as_str(),
            "https://res.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(writer.model().as_deref(), Some("gpt-4o"));
    }
}
