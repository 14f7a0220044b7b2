//! The embedded writer: a small instruction model (GGUF, SmolLM2-135M-Instruct
//! by default) run on the CPU with `candle`, for deployments without a
//! language-model endpoint and as the last model before the template.
//!
//! The tokenizer is built from the GGUF metadata (`bpe.rs`); the prompt is
//! the model's ChatML template (`<|im_start|>role\n...<|im_end|>\n`), checked
//! against the template the file declares. Decoding is greedy by default
//! (deterministic), with a mild repetition penalty, and stops at
//! `<|im_end|>`, the end-of-text token or `max_tokens`. A model this small
//! cannot be trusted with JSON: it writes the narrative, and the summary is
//! what that narrative states, read back with the lexicon
//! (`grounding::extract_summary`), so the grounding check judges the text
//! staff will read.
//!
//! The model keeps a key-value cache, so one generation runs at a time (a
//! mutex); it runs on a blocking thread, never on the async workers.

pub mod bpe;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::quantized_llama::ModelWeights;

use super::config::EmbeddedConfig;
use super::prompt::{self, PromptStyle};
use super::{ChatMessage, Draft, ReportInput, ReportWriter, WriteError, grounding};
use bpe::Bpe;

/// Where `models/fetch.sh` puts the default model, under the cache.
pub const DEFAULT_MODEL: &str = "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

/// Tokens of context the repetition penalty looks back over.
const REPEAT_LAST_N: usize = 64;
const REPEAT_PENALTY: f32 = 1.15;

/// One generation's text and counts.
#[derive(Debug, Clone)]
pub struct Generation {
    pub text: String,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Why it ended: `stop` (end token) or `length` (`max_tokens`).
    pub finish_reason: &'static str,
    /// Prompt processing, then token generation.
    pub prompt_seconds: f64,
    pub generation_seconds: f64,
}

/// The model, its tokenizer and the decoding settings.
pub struct EmbeddedModel {
    name: String,
    weights: Mutex<ModelWeights>,
    bpe: Bpe,
    im_start: u32,
    im_end: u32,
    eos: Option<u32>,
    context: usize,
    max_tokens: u32,
    temperature: f32,
    seed: u64,
}

impl std::fmt::Debug for EmbeddedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedModel")
            .field("name", &self.name)
            .field("vocab", &self.bpe.vocab_size())
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

impl EmbeddedModel {
    /// The model file `config` names, or the fetched default.
    pub fn path(config: &EmbeddedConfig) -> Option<PathBuf> {
        config
            .model
            .clone()
            .or_else(|| crate::paths::fetched(DEFAULT_MODEL))
    }

    /// Loads a GGUF file (blocking: reads ~100 MB).
    pub fn load(path: &Path, config: &EmbeddedConfig) -> Result<EmbeddedModel, WriteError> {
        let unavailable =
            |what: String| WriteError::Unavailable(format!("{}: {what}", path.display()));
        let mut file = File::open(path).map_err(|e| unavailable(format!("cannot open: {e}")))?;
        let content = gguf_file::Content::read(&mut file)
            .map_err(|e| unavailable(format!("not a GGUF file: {e}")))?;
        let meta = |key: &str| content.metadata.get(key);
        let string = |key: &str| meta(key).and_then(|v| v.to_string().ok()).cloned();
        let u32_of = |key: &str| meta(key).and_then(|v| v.to_u32().ok());
        match string("tokenizer.ggml.model").as_deref() {
            Some("gpt2") => {}
            other => {
                return Err(unavailable(format!(
                    "tokenizer {other:?} is not supported (byte-level BPE, \"gpt2\", is)"
                )));
            }
        }
        let strings = |key: &str| -> Result<Vec<String>, WriteError> {
            let values = meta(key)
                .and_then(|v| v.to_vec().ok())
                .ok_or_else(|| unavailable(format!("{key} missing")))?;
            values
                .iter()
                .map(|v| v.to_string().cloned())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| unavailable(format!("{key}: {e}")))
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?;
        // Token types: 1 normal, 3 control (llama.cpp's enum).
        let special: Vec<bool> = meta("tokenizer.ggml.token_type")
            .and_then(|v| v.to_vec().ok())
            .map(|types| {
                types
                    .iter()
                    .map(|t| t.to_i32().map(|t| t == 3).unwrap_or(false))
                    .collect()
            })
            .unwrap_or_default();
        let bpe = Bpe::new(tokens, &merges, special).map_err(unavailable)?;
        let template = string("tokenizer.chat_template").unwrap_or_default();
        if !template.contains("<|im_start|>") {
            return Err(unavailable(
                "its chat template is not ChatML (<|im_start|>role ... <|im_end|>)".into(),
            ));
        }
        let im_start = bpe
            .token_id("<|im_start|>")
            .ok_or_else(|| unavailable("no <|im_start|> token".into()))?;
        let im_end = bpe
            .token_id("<|im_end|>")
            .ok_or_else(|| unavailable("no <|im_end|> token".into()))?;
        let eos = u32_of("tokenizer.ggml.eos_token_id");
        let context = u32_of("llama.context_length").unwrap_or(2048) as usize;
        let name = string("general.name").unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        let weights = if config.dequantize {
            let (content, mut f32_file) = to_f32(&content, &mut file)
                .map_err(|e| unavailable(format!("cannot dequantize the weights: {e}")))?;
            ModelWeights::from_gguf(content, &mut f32_file, &Device::Cpu)
        } else {
            ModelWeights::from_gguf(content, &mut file, &Device::Cpu)
        }
        .map_err(|e| unavailable(format!("cannot load the weights: {e}")))?;
        Ok(EmbeddedModel {
            name,
            weights: Mutex::new(weights),
            bpe,
            im_start,
            im_end,
            eos,
            context,
            max_tokens: config.max_tokens,
            temperature: config.temperature,
            seed: config.seed,
        })
    }

    /// The model's name (GGUF `general.name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn tokenizer(&self) -> &Bpe {
        &self.bpe
    }

    /// The ChatML prompt of `messages`, ending with the assistant's turn.
    pub fn prompt_tokens(&self, messages: &[ChatMessage]) -> Vec<u32> {
        let newline = self.bpe.encode("\n");
        let mut ids = Vec::new();
        for message in messages {
            ids.push(self.im_start);
            ids.extend(self.bpe.encode(&message.role));
            ids.extend(&newline);
            ids.extend(self.bpe.encode(&message.content));
            ids.push(self.im_end);
            ids.extend(&newline);
        }
        ids.push(self.im_start);
        ids.extend(self.bpe.encode("assistant"));
        ids.extend(&newline);
        ids
    }

    /// Generates the assistant's answer to `messages` (blocking), at most
    /// `max_tokens` tokens (`None`: the configured limit).
    pub fn generate(
        &self,
        messages: &[ChatMessage],
        max_tokens: Option<u32>,
    ) -> Result<Generation, WriteError> {
        let prompt = self.prompt_tokens(messages);
        let max_tokens = max_tokens.unwrap_or(self.max_tokens) as usize;
        if prompt.len() + max_tokens > self.context {
            return Err(WriteError::Internal(format!(
                "the prompt ({} tokens) and {max_tokens} new tokens exceed the model's context of {}",
                prompt.len(),
                self.context
            )));
        }
        let internal = |e: candle_core::Error| WriteError::Internal(format!("inference: {e}"));
        let sampling = if self.temperature <= 0.0 {
            Sampling::ArgMax
        } else {
            Sampling::All {
                temperature: f64::from(self.temperature),
            }
        };
        let mut sampler = LogitsProcessor::from_sampling(self.seed, sampling);
        let mut weights = self.weights.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let input = Tensor::new(prompt.as_slice(), &Device::Cpu)
            .and_then(|t| t.unsqueeze(0))
            .map_err(internal)?;
        let mut logits = weights.forward(&input, 0).map_err(internal)?;
        let prompt_seconds = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let prompt_tokens = prompt.len();
        let mut context = prompt;
        let mut out = Vec::new();
        let mut finish_reason = "length";
        while out.len() < max_tokens {
            let logits_1d = logits.squeeze(0).map_err(internal)?;
            let start = context.len().saturating_sub(REPEAT_LAST_N);
            let penalised = candle_transformers::utils::apply_repeat_penalty(
                &logits_1d,
                REPEAT_PENALTY,
                &context[start..],
            )
            .map_err(internal)?;
            let next = sampler.sample(&penalised).map_err(internal)?;
            if next == self.im_end || Some(next) == self.eos {
                finish_reason = "stop";
                break;
            }
            out.push(next);
            context.push(next);
            let input = Tensor::new(&[next], &Device::Cpu)
                .and_then(|t| t.unsqueeze(0))
                .map_err(internal)?;
            logits = weights
                .forward(&input, context.len() - 1)
                .map_err(internal)?;
        }
        Ok(Generation {
            text: self.bpe.decode(&out).trim().to_owned(),
            prompt_tokens,
            completion_tokens: out.len(),
            finish_reason,
            prompt_seconds,
            generation_seconds: started.elapsed().as_secs_f64(),
        })
    }
}

/// `content` with every tensor dequantized to f32, as an in-memory GGUF:
/// candle multiplies f32 weights with its SIMD matrix kernels (chosen at
/// run time), while its Q4_1 kernel has no SIMD. Costs four times the
/// weights' memory and a few seconds at load (BENCHMARKS.md, Reports).
fn to_f32(
    content: &gguf_file::Content,
    file: &mut File,
) -> candle_core::Result<(gguf_file::Content, std::io::Cursor<Vec<u8>>)> {
    let mut tensors = Vec::with_capacity(content.tensor_infos.len());
    for name in content.tensor_infos.keys() {
        let tensor = content
            .tensor(file, name, &Device::Cpu)?
            .dequantize(&Device::Cpu)?;
        tensors.push((name.as_str(), QTensor::quantize(&tensor, GgmlDType::F32)?));
    }
    let metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let mut out = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut out, &metadata, &refs)?;
    drop(tensors);
    out.set_position(0);
    let converted = gguf_file::Content::read(&mut out)?;
    Ok((converted, out))
}

/// The report writer over an [`EmbeddedModel`].
#[derive(Debug, Clone)]
pub struct EmbeddedWriter {
    model: Arc<EmbeddedModel>,
}

impl EmbeddedWriter {
    pub fn new(model: Arc<EmbeddedModel>) -> EmbeddedWriter {
        EmbeddedWriter { model }
    }

    /// Loads the configured (or fetched) model on a blocking thread.
    pub async fn load(config: &EmbeddedConfig) -> Result<EmbeddedWriter, WriteError> {
        let path = EmbeddedModel::path(config).ok_or_else(|| {
            WriteError::Unavailable("no model configured and no cache directory".into())
        })?;
        let config = config.clone();
        let started = Instant::now();
        let model = tokio::task::spawn_blocking(move || EmbeddedModel::load(&path, &config))
            .await
            .map_err(|e| WriteError::Internal(format!("model loading task: {e}")))??;
        tracing::info!(
            model = model.name(),
            seconds = started.elapsed().as_secs_f64(),
            "embedded report model loaded"
        );
        Ok(EmbeddedWriter::new(Arc::new(model)))
    }
}

#[async_trait]
impl ReportWriter for EmbeddedWriter {
    fn name(&self) -> &'static str {
        "embedded"
    }

    fn model(&self) -> Option<String> {
        Some(self.model.name().to_owned())
    }

    async fn write(&self, input: &ReportInput) -> Result<Draft, WriteError> {
        let messages = prompt::messages(input, PromptStyle::Narrative);
        let model = self.model.clone();
        let generation = tokio::task::spawn_blocking(move || model.generate(&messages, None))
            .await
            .map_err(|e| WriteError::Internal(format!("generation task: {e}")))??;
        tracing::debug!(
            prompt_tokens = generation.prompt_tokens,
            completion_tokens = generation.completion_tokens,
            finish_reason = generation.finish_reason,
            seconds = generation.prompt_seconds + generation.generation_seconds,
            "embedded model answered"
        );
        if generation.text.is_empty() {
            return Err(WriteError::Malformed("the model wrote nothing".into()));
        }
        Ok(Draft {
            summary: grounding::extract_summary(&generation.text, input),
            narrative: generation.text,
        })
    }
}
