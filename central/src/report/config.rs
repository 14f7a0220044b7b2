//! `[report]`: which writers the chain has and when the fallback is used.
//!
//! ```toml
//! [report]
//! language = "de"                # en, de, fr, it, es, nl
//!
//! [report.llm]                   # self-hosted, OpenAI-compatible
//! base_url = "http://llm.inspection-system.svc:8080/v1"
//! model = "llama-3.1-8b-instruct"
//!
//! [report.fallback]              # GPT-4o, here Azure OpenAI in an EU region
//! base_url = "https://my-resource.openai.azure.com"
//! azure = { deployment = "gpt-4o", api_version = "2024-10-21" }
//! api_key_file = "/var/run/secrets/gpt4o/api-key"
//! daily_budget = 500
//! when = { low_confidence = 0.5, unreadable_plate = true, disagreement = true, primary_failure = true }
//!
//! [report.embedded]              # SmolLM2 GGUF on the CPU; on by default
//! enabled = true
//!
//! [report.export]                # Markdown, HTML and PDF
//! font = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
//! ```

use std::path::PathBuf;

use serde::Deserialize;

use super::Language;
use super::export::ExportConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    /// The language reports are written in.
    #[serde(default = "default_language")]
    pub language: String,
    /// The self-hosted endpoint (llama.cpp server, vLLM, Ollama).
    #[serde(default)]
    pub llm: Option<EndpointConfig>,
    /// GPT-4o, for edge cases only.
    #[serde(default)]
    pub fallback: Option<FallbackConfig>,
    #[serde(default)]
    pub embedded: EmbeddedConfig,
    /// Markdown, HTML and PDF exports.
    #[serde(default)]
    pub export: ExportConfig,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            language: default_language(),
            llm: None,
            fallback: None,
            embedded: EmbeddedConfig::default(),
            export: ExportConfig::default(),
        }
    }
}

fn default_language() -> String {
    "en".to_owned()
}

impl ReportConfig {
    /// The configured language (validated by `problems`).
    pub fn language(&self) -> Language {
        Language::parse(&self.language).unwrap_or(Language::En)
    }

    pub fn problems(&self, at: &str, check_files: bool) -> Vec<String> {
        let mut problems = Vec::new();
        if Language::parse(&self.language).is_none() {
            problems.push(format!(
                "{at}.language: {:?} is not one of {}",
                self.language,
                Language::ALL.map(Language::code).join(", ")
            ));
        }
        if let Some(llm) = &self.llm {
            problems.extend(llm.problems(&format!("{at}.llm"), check_files));
        }
        if let Some(fallback) = &self.fallback {
            problems.extend(
                fallback
                    .endpoint
                    .problems(&format!("{at}.fallback"), check_files),
            );
            let when = &fallback.when;
            if !(0.0..=1.0).contains(&when.low_confidence) {
                problems.push(format!(
                    "{at}.fallback.when.low_confidence: {} is not within 0..1",
                    when.low_confidence
                ));
            }
        }
        problems.extend(
            self.embedded
                .problems(&format!("{at}.embedded"), check_files),
        );
        problems.extend(self.export.problems(&format!("{at}.export"), check_files));
        problems
    }
}

/// An OpenAI-compatible chat-completions endpoint, or Azure OpenAI.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// `http(s)://host[:port]/v1` for OpenAI-compatible servers (the client
    /// appends `/chat/completions`); for Azure OpenAI the resource endpoint
    /// `https://NAME.openai.azure.com`.
    pub base_url: String,
    /// The model name sent with each request; Azure ignores it (the
    /// deployment decides).
    #[serde(default)]
    pub model: Option<String>,
    /// Azure OpenAI: the request goes to
    /// `{base_url}/openai/deployments/{deployment}/chat/completions?api-version=...`
    /// with an `api-key` header instead of a bearer token.
    #[serde(default)]
    pub azure: Option<AzureConfig>,
    /// An environment variable that holds the API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// A file that holds the API key (a mounted Secret); read at each
    /// start, trailing whitespace removed.
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// Per request, including reading the whole answer.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: f64,
    /// Retries after a connection error, a timeout, 429 or 5xx, with
    /// exponential backoff and jitter (honouring `Retry-After`).
    #[serde(default = "default_retries")]
    pub retries: u32,
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    #[serde(default = "default_temperature")]
    pub temperature: f32,
}

fn default_timeout_s() -> f64 {
    30.0
}
fn default_retries() -> u32 {
    2
}
fn default_max_tokens() -> u32 {
    900
}
fn default_temperature() -> f32 {
    0.1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureConfig {
    pub deployment: String,
    pub api_version: String,
}

impl EndpointConfig {
    /// An endpoint at `base_url` with every default.
    pub fn new(base_url: impl Into<String>) -> EndpointConfig {
        EndpointConfig {
            base_url: base_url.into(),
            model: None,
            azure: None,
            api_key_env: None,
            api_key_file: None,
            timeout_s: default_timeout_s(),
            retries: default_retries(),
            max_tokens: default_max_tokens(),
            temperature: default_temperature(),
        }
    }

    pub fn problems(&self, at: &str, check_files: bool) -> Vec<String> {
        let mut problems = Vec::new();
        match reqwest::Url::parse(&self.base_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            Ok(url) => problems.push(format!(
                "{at}.base_url: scheme {:?} is not http or https",
                url.scheme()
            )),
            Err(e) => problems.push(format!("{at}.base_url: {e}")),
        }
        if self.azure.is_none() && self.model.is_none() {
            problems.push(format!(
                "{at}.model: required (the model name the server serves), unless azure is set"
            ));
        }
        if let Some(azure) = &self.azure {
            if azure.deployment.trim().is_empty() {
                problems.push(format!("{at}.azure.deployment: empty"));
            }
            if azure.api_version.trim().is_empty() {
                problems.push(format!("{at}.azure.api_version: empty"));
            }
        }
        if self.api_key_env.is_some() && self.api_key_file.is_some() {
            problems.push(format!(
                "{at}: api_key_env and api_key_file are both set; choose one"
            ));
        }
        if check_files
            && let Some(file) = &self.api_key_file
            && !file.is_file()
        {
            problems.push(format!(
                "{at}.api_key_file: {} is not a readable file",
                file.display()
            ));
        }
        if !(self.timeout_s > 0.0 && self.timeout_s <= 600.0) {
            problems.push(format!(
                "{at}.timeout_s: {} is not within (0, 600]",
                self.timeout_s
            ));
        }
        if self.retries > 10 {
            problems.push(format!("{at}.retries: {} is more than 10", self.retries));
        }
        if !(64..=8192).contains(&self.max_tokens) {
            problems.push(format!(
                "{at}.max_tokens: {} is not within 64..8192",
                self.max_tokens
            ));
        }
        if !(0.0..=2.0).contains(&self.temperature) {
            problems.push(format!(
                "{at}.temperature: {} is not within 0..2",
                self.temperature
            ));
        }
        problems
    }
}

/// GPT-4o: an endpoint, the edge cases it is used for, and a budget.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackConfig {
    #[serde(flatten)]
    pub endpoint: EndpointConfig,
    #[serde(default)]
    pub when: FallbackWhen,
    /// Most reports per UTC day the fallback is asked to write (one
    /// request and its retries count once); 0 disables the fallback.
    /// Counted per worker process: the cluster's cap is this times the
    /// worker replicas.
    #[serde(default = "default_daily_budget")]
    pub daily_budget: u32,
}

fn default_daily_budget() -> u32 {
    500
}

/// The edge cases that send an inspection to the fallback writer. Any one
/// that holds is enough.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackWhen {
    /// A reportable finding below this confidence (0 turns the case off).
    #[serde(default = "default_low_confidence")]
    pub low_confidence: f32,
    /// The plate was seen but not read.
    #[serde(default = "yes")]
    pub unreadable_plate: bool,
    /// The damage model and change detection disagree: a changed region no
    /// model finding explains, while a damage model is configured.
    #[serde(default = "yes")]
    pub disagreement: bool,
    /// The self-hosted writer timed out, failed, or its draft was rejected.
    /// Without a self-hosted writer this case never holds: the fallback is
    /// then asked for the other edge cases only.
    #[serde(default = "yes")]
    pub primary_failure: bool,
}

fn default_low_confidence() -> f32 {
    0.5
}
fn yes() -> bool {
    true
}

impl Default for FallbackWhen {
    fn default() -> Self {
        FallbackWhen {
            low_confidence: default_low_confidence(),
            unreadable_plate: true,
            disagreement: true,
            primary_failure: true,
        }
    }
}

/// The embedded GGUF model (SmolLM2-135M-Instruct by default).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedConfig {
    /// Used when no endpoint is configured or every endpoint failed.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The GGUF file; default: the one `models/fetch.sh` caches.
    #[serde(default)]
    pub model: Option<PathBuf>,
    #[serde(default = "default_embedded_max_tokens")]
    pub max_tokens: u32,
    /// 0 is greedy decoding (deterministic).
    #[serde(default)]
    pub temperature: f32,
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Dequantize the weights to f32 at load: reports about twice as fast
    /// (candle's Q4_1 kernel has no SIMD; its f32 kernels do), four times
    /// the weights' memory (SmolLM2-135M: 98 MB as stored).
    #[serde(default = "yes")]
    pub dequantize: bool,
}

fn default_embedded_max_tokens() -> u32 {
    320
}
fn default_seed() -> u64 {
    299_792_458
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            enabled: true,
            model: None,
            max_tokens: default_embedded_max_tokens(),
            temperature: 0.0,
            seed: default_seed(),
            dequantize: true,
        }
    }
}

impl EmbeddedConfig {
    pub fn problems(&self, at: &str, check_files: bool) -> Vec<String> {
        let mut problems = Vec::new();
        if !(16..=4096).contains(&self.max_tokens) {
            problems.push(format!(
                "{at}.max_tokens: {} is not within 16..4096",
                self.max_tokens
            ));
        }
        if !(0.0..=2.0).contains(&self.temperature) {
            problems.push(format!(
                "{at}.temperature: {} is not within 0..2",
                self.temperature
            ));
        }
        if check_files
            && self.enabled
            && let Some(model) = &self.model
            && !model.is_file()
        {
            problems.push(format!(
                "{at}.model: {} is not a readable file",
                model.display()
            ));
        }
        problems
    }
}
