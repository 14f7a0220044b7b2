//! Configuration of the ONNX Runtime library and of one detection model.

use std::path::PathBuf;

use inspection_core::yolo::DecodeConfig;
use serde::{Deserialize, Serialize};

/// Which ONNX Runtime execution provider sessions are created on.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionProvider {
    /// CUDA when the loaded library provides it (the `onnxruntime-gpu`
    /// build) and the GPU takes the session, else CPU. The default: one
    /// config for GPU and CPU nodes.
    #[default]
    Auto,
    /// CPU only, even on a GPU build.
    Cpu,
    /// CUDA or nothing: a model that cannot be put on the GPU fails to load
    /// (the role stays not ready), rather than silently running 10-50x
    /// slower on the CPU of a node that was sized for a GPU.
    Cuda,
}

impl ExecutionProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionProvider::Auto => "auto",
            ExecutionProvider::Cpu => "cpu",
            ExecutionProvider::Cuda => "cuda",
        }
    }
}

/// `[onnxruntime]`: where ONNX Runtime comes from and what it runs on.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Path of `libonnxruntime.so`. Default: the one `models/fetch.sh` puts in
    /// the cache (`onnxruntime/libonnxruntime.so.1.31.1`), so a laptop needs
    /// no configuration; production images set it explicitly (GPU images
    /// point it at the `onnxruntime-gpu` build).
    #[serde(default)]
    pub library: Option<PathBuf>,
    /// `"auto"` (default), `"cpu"` or `"cuda"`; see [`ExecutionProvider`].
    #[serde(default)]
    pub execution_provider: ExecutionProvider,
    /// The CUDA device ordinal sessions use. Default 0: a GPU pod is given
    /// one GPU, which it sees as device 0.
    #[serde(default)]
    pub cuda_device: i32,
}

impl RuntimeConfig {
    /// Every problem at once, each prefixed with `at`.
    pub fn problems(&self, at: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if !(0..=63).contains(&self.cuda_device) {
            problems.push(format!(
                "{at}.cuda_device: {} is not a device ordinal (0..=63)",
                self.cuda_device
            ));
        }
        problems
    }

    /// The library to load: the configured one, else the cache's.
    pub fn library_path(&self) -> Option<PathBuf> {
        self.library
            .clone()
            .or_else(|| crate::paths::fetched(crate::paths::ORT_LIBRARY))
    }
}

/// The most images one batch may hold.
pub const MAX_BATCH_LIMIT: usize = 256;

/// One YOLOv8 model (Ultralytics ONNX export, detect or seg head).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DetectorConfig {
    pub model: PathBuf,
    /// Square input size. Default: the model's `imgsz` metadata, else 640.
    #[serde(default)]
    pub input_size: Option<u32>,
    #[serde(default)]
    pub decode: DecodeConfig,
    /// Threads ONNX Runtime may use inside one operator; 0 lets it choose
    /// (one per core). Set it to the pod's CPU limit in Kubernetes, where
    /// ONNX Runtime sees the node's cores, not the container's quota.
    #[serde(default)]
    pub intra_threads: usize,
    /// Most images run together in one `session.run` (only when the model's
    /// batch dimension is dynamic; a batch-1 export runs them one by one).
    /// Default 8: on a GPU a batch of 8 costs little more than one image;
    /// 1 turns batching off.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// How long the runner waits for more images after the first of a batch,
    /// in milliseconds. Default 5: small next to a GPU run (10-30 ms) and
    /// negligible next to a CPU run (~300 ms at 640).
    #[serde(default = "default_max_wait_ms")]
    pub max_wait_ms: u64,
    /// Requests that may wait for the runner; one more is refused at once
    /// with `Overloaded` (HTTP 503 `overloaded`) instead of queueing without
    /// bound. Default 64: eight full batches.
    #[serde(default = "default_queue")]
    pub queue: usize,
}

fn default_max_batch() -> usize {
    8
}

fn default_max_wait_ms() -> u64 {
    5
}

fn default_queue() -> usize {
    64
}

impl DetectorConfig {
    /// A config for `model` with every other key at its default.
    pub fn for_model(model: impl Into<PathBuf>) -> Self {
        Self {
            model: model.into(),
            input_size: None,
            decode: DecodeConfig::default(),
            intra_threads: 0,
            max_batch: default_max_batch(),
            max_wait_ms: default_max_wait_ms(),
            queue: default_queue(),
        }
    }

    /// Every problem at once, each prefixed with `at`.
    pub fn problems(&self, at: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(errors) = self.decode.validate() {
            problems.extend(errors.into_iter().map(|e| format!("{at}.decode: {e}")));
        }
        if let Some(Err(e)) = self.input_size.map(inspection_core::yolo::check_input_size) {
            problems.push(format!("{at}.input_size: {e}"));
        }
        if self.intra_threads > 256 {
            problems.push(format!(
                "{at}.intra_threads: {} is more than 256",
                self.intra_threads
            ));
        }
        if !(1..=MAX_BATCH_LIMIT).contains(&self.max_batch) {
            problems.push(format!(
                "{at}.max_batch: {} is not between 1 and {MAX_BATCH_LIMIT}",
                self.max_batch
            ));
        }
        if self.max_wait_ms > 1000 {
            problems.push(format!(
                "{at}.max_wait_ms: {} is more than 1000 (a batch must not wait seconds)",
                self.max_wait_ms
            ));
        }
        if !(1..=100_000).contains(&self.queue) {
            problems.push(format!(
                "{at}.queue: {} is not between 1 and 100000",
                self.queue
            ));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_every_problem_at_once() {
        let config: DetectorConfig = toml::from_str("model = \"m.onnx\"\n").unwrap();
        assert_eq!(config, DetectorConfig::for_model("m.onnx"));
        assert_eq!(
            (config.max_batch, config.max_wait_ms, config.queue),
            (8, 5, 64)
        );
        assert!(config.problems("d").is_empty());
        let bad: DetectorConfig =
            toml::from_str("model = \"m\"\nmax_batch = 0\nmax_wait_ms = 5000\nqueue = 0\n")
                .unwrap();
        let problems = bad.problems("d");
        assert_eq!(problems.len(), 3, "{problems:?}");

        let runtime: RuntimeConfig = toml::from_str("").unwrap();
        assert_eq!(runtime.execution_provider, ExecutionProvider::Auto);
        assert_eq!(runtime.cuda_device, 0);
        let runtime: RuntimeConfig =
            toml::from_str("execution_provider = \"cuda\"\ncuda_device = -1\n").unwrap();
        assert_eq!(runtime.execution_provider, ExecutionProvider::Cuda);
        assert_eq!(runtime.problems("onnxruntime").len(), 1);
        assert!(toml::from_str::<RuntimeConfig>("execution_provider = \"tpu\"\n").is_err());
    }
}
