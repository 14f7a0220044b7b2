//! Detection metrics, shared by every detector of a process (local batching
//! in the worker, the `inference` role): `inference_duration_seconds`,
//! `inference_images_total`, `inference_batches_total`,
//! `inference_queue_depth`, `inference_queue_wait_seconds`.
//!
//! The `model` label is the configured model name (`plate`, `damage`), never
//! a path: names are few and stable, paths change with every deployment.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A model and the size of the batch a run had.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BatchLabels {
    pub model: String,
    pub batch_size: u32,
}

/// A model and what became of an image: `ok`, `error`, `overloaded`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub model: String,
    pub result: &'static str,
}

/// A model.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model: String,
}

fn batch_histogram() -> Histogram {
    // 5 ms .. 5.12 s: a GPU batch is 5-50 ms, a CPU image at 640 ~0.3 s, and
    // the alert fires on p95 above 0.5 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 11))
}

/// Handles to the detection metrics; clones share the same values.
#[derive(Clone, Debug)]
pub struct DetectMetrics {
    pub(crate) duration: Family<BatchLabels, Histogram, fn() -> Histogram>,
    pub(crate) images: Family<ResultLabels, Counter>,
    pub(crate) queue_depth: Family<ModelLabels, Gauge>,
    pub(crate) queue_wait: Family<ModelLabels, Histogram, fn() -> Histogram>,
    pub(crate) batches: Family<BatchLabels, Counter>,
}

impl Default for DetectMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl DetectMetrics {
    pub fn new() -> Self {
        Self {
            duration: Family::new_with_constructor(batch_histogram),
            images: Family::default(),
            queue_depth: Family::default(),
            queue_wait: Family::new_with_constructor(batch_histogram),
            batches: Family::default(),
        }
    }

    /// Registers every metric once per process (the registry gets clones of
    /// the handles; every detector shares them).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "inference_duration_seconds",
            "Time of one model run (ONNX Runtime and decoding, batched images together), by model and batch size",
            self.duration.clone(),
        );
        registry.register(
            "inference_images",
            "Images through detection, by model and result (ok, error, overloaded)",
            self.images.clone(),
        );
        registry.register(
            "inference_queue_depth",
            "Images waiting for a model's runner",
            self.queue_depth.clone(),
        );
        registry.register(
            "inference_batches",
            "Model runs, by model and batch size",
            self.batches.clone(),
        );
        registry.register(
            "inference_queue_wait_seconds",
            "Time an image waited in a model's queue before its batch ran",
            self.queue_wait.clone(),
        );
    }

    pub(crate) fn image(&self, model: &str, result: &'static str) {
        self.images
            .get_or_create(&ResultLabels {
                model: model.to_owned(),
                result,
            })
            .inc();
    }

    /// How many batches of `batch_size` ran for `model`; for tests and the
    /// benchmark.
    pub fn batches(&self, model: &str, batch_size: u32) -> u64 {
        let labels = BatchLabels {
            model: model.to_owned(),
            batch_size,
        };
        self.batches.get(&labels).map(|c| c.get()).unwrap_or(0)
    }

    /// Images `model` answered with `result` (`ok`, `error`, `overloaded`).
    pub fn images(&self, model: &str, result: &'static str) -> u64 {
        let labels = ResultLabels {
            model: model.to_owned(),
            result,
        };
        self.images.get(&labels).map(|c| c.get()).unwrap_or(0)
    }
}
