//! The central service's TOML configuration: parsed strictly, validated whole.
//!
//! One file serves every role; a role reads the sections it needs. Parsing
//! rejects unknown keys, and validation reports every problem at once.

use std::path::{Path, PathBuf};

pub use inspection_core::config::{ConfigErrors, FileChecks, MqttSection};
use serde::Deserialize;

use crate::bridge::BridgeConfig;
use crate::broker::BrokerConfig;
use crate::detect::{DetectorConfig, RuntimeConfig};
use crate::inference::InferenceConfig;
use crate::ops::OpsConfig;
use crate::plates::PlatesConfig;
use crate::report::ReportConfig;
use crate::store::StoreConfig;
use crate::upload::UploadConfig;
use crate::worker::WorkerConfig;

/// The whole file. Its `Debug` hides the passwords of the URLs it holds
/// (`[store] url`, `[api.cache] redis_url`, a broker or JWKS URL written
/// with credentials): `user:***@host`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub mqtt: MqttSection,
    #[serde(default)]
    pub onnxruntime: RuntimeConfig,
    #[serde(default)]
    pub detectors: DetectorsSection,
    #[serde(default)]
    pub ops: OpsConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub broker: BrokerConfig,
    #[serde(default)]
    pub bridge: BridgeConfig,
    #[serde(default)]
    pub upload: UploadConfig,
    #[serde(default)]
    pub inference: InferenceConfig,
    #[serde(default)]
    pub worker: WorkerConfig,
    #[serde(default)]
    pub plates: PlatesConfig,
    #[serde(default)]
    pub report: ReportConfig,
    #[serde(default)]
    pub api: crate::api::ApiConfig,
    #[serde(default)]
    pub retention: crate::retention::RetentionConfig,
    /// Where personal data may be sent (default: the EU only).
    #[serde(default)]
    pub residency: crate::privacy::ResidencyConfig,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use inspection_core::config::RedactedDebug as R;
        // Destructured: a new section cannot be left out of the redaction.
        let Config {
            mqtt,
            onnxruntime,
            detectors,
            ops,
            store,
            broker,
            bridge,
            upload,
            inference,
            worker,
            plates,
            report,
            api,
            retention,
            residency,
        } = self;
        f.debug_struct("Config")
            .field("mqtt", &R(mqtt))
            .field("onnxruntime", &R(onnxruntime))
            .field("detectors", &R(detectors))
            .field("ops", &R(ops))
            .field("store", &R(store))
            .field("broker", &R(broker))
            .field("bridge", &R(bridge))
            .field("upload", &R(upload))
            .field("inference", &R(inference))
            .field("worker", &R(worker))
            .field("plates", &R(plates))
            .field("report", &R(report))
            .field("api", &R(api))
            .field("retention", &R(retention))
            .field("residency", residency)
            .finish()
    }
}

/// The models the service runs. Both are optional: without a damage model
/// (none ships in any registry; the weights are the operator's own) damage
/// detection is off, and without a plate model plates are not read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorsSection {
    pub plate: Option<DetectorConfig>,
    pub damage: Option<DetectorConfig>,
}

/// Whether `id` is a valid instance name (a bridge's MQTT client id, a
/// worker's lease owner): 1-64 of `A-Z a-z 0-9 - _ .`, which MQTT brokers,
/// pod names and log fields all accept.
pub fn valid_instance_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Config {
    pub fn from_toml(text: &str, files: FileChecks) -> Result<Config, ConfigErrors> {
        // TOML's message quotes the offending line, which may hold a URL
        // with its password: `ConfigErrors::new` hides it.
        let config: Config = toml::from_str(text)
            .map_err(|e| ConfigErrors::new([e.to_string().trim().to_owned()]))?;
        config.validate(files)?;
        Ok(config)
    }

    pub fn load(path: &Path, files: FileChecks) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors(vec![format!("cannot read {}: {e}", path.display())]))?;
        Self::from_toml(&text, files)
    }

    /// The ONNX Runtime library to load: the configured one, else the cache's.
    pub fn onnxruntime_library(&self) -> Option<PathBuf> {
        self.onnxruntime
            .library
            .clone()
            .or_else(|| crate::paths::fetched(crate::paths::ORT_LIBRARY))
    }

    /// The names of the configured `[detectors.*]` (what a worker's
    /// `{ kind = "local" }` detection source may name).
    pub fn local_detector_names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.detectors.plate.is_some() {
            names.push("plate");
        }
        if self.detectors.damage.is_some() {
            names.push("damage");
        }
        names
    }

    /// The `[detectors.NAME]` entry, for a local detection source.
    pub fn local_detector(&self, name: &str) -> Option<&DetectorConfig> {
        match name {
            "plate" => self.detectors.plate.as_ref(),
            "damage" => self.detectors.damage.as_ref(),
            _ => None,
        }
    }

    pub fn validate(&self, files: FileChecks) -> Result<(), ConfigErrors> {
        let mut problems = Vec::new();
        if let Err(e) = self.mqtt.prefix() {
            problems.push(format!("mqtt.topic_prefix: {e}"));
        }
        let detectors = [
            ("detectors.plate", &self.detectors.plate),
            ("detectors.damage", &self.detectors.damage),
        ];
        for (at, detector) in detectors {
            let Some(d) = detector else { continue };
            problems.extend(d.problems(at));
            if files == FileChecks::On && !d.model.is_file() {
                problems.push(format!(
                    "{at}.model: {} is not a readable file",
                    d.model.display()
                ));
            }
        }
        let check_files = files == FileChecks::On;
        problems.extend(self.ops.problems("ops", check_files));
        problems.extend(self.store.problems("store", check_files));
        problems.extend(self.broker.problems("broker", check_files));
        problems.extend(self.bridge.problems("bridge", check_files));
        problems.extend(self.upload.problems("upload", check_files));
        problems.extend(self.onnxruntime.problems("onnxruntime"));
        problems.extend(self.inference.problems("inference", check_files));
        let local_models = self.local_detector_names();
        problems.extend(self.worker.problems("worker", check_files, &local_models));
        problems.extend(self.plates.problems("plates", check_files));
        problems.extend(self.report.problems("report", check_files));
        problems.extend(self.api.problems("api"));
        problems.extend(self.retention.problems("retention"));
        problems.extend(self.residency.problems("residency"));
        if let crate::privacy::Verdict::Refused(refused) = self.residency.check(self) {
            problems.extend(refused);
        }
        let any_detector = self.detectors.plate.is_some()
            || self.detectors.damage.is_some()
            || !self.inference.models.is_empty();
        if files == FileChecks::On && any_detector {
            match self.onnxruntime_library() {
                Some(lib) if lib.is_file() => {}
                Some(lib) => problems.push(format!(
                    "onnxruntime.library: {} is not a readable file (run `bash models/fetch.sh` or set the path)",
                    lib.display()
                )),
                None => problems.push(
                    "onnxruntime.library: not set, and no cache directory (HOME is unset)".to_owned(),
                ),
            }
        }
        ConfigErrors::into_result(problems)
    }
}
