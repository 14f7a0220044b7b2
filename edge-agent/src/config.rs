//! The agent's TOML configuration: parsed strictly, then validated as a whole.
//!
//! Parsing rejects unknown keys (a typo must not silently fall back to a
//! default on 5,000 boards). Validation then reports every problem at once,
//! so an operator fixes a file in one pass rather than one error per deploy.

use std::path::Path;

pub use inspection_core::config::{ConfigErrors, FileChecks, MqttSection};
use inspection_core::ids::{DeviceId, SiteId};
use inspection_core::quality::QualityThresholds;
use inspection_core::topic::TopicPrefix;
use serde::Deserialize;

use crate::anonymise::AnonymiseConfig;
use crate::capture::CameraConfig;
use crate::ops::OpsConfig;
use crate::outbox::OutboxConfig;
use crate::prescreen::PrescreenConfig;
use crate::session::SessionConfig;
use crate::uplink::UplinkConfig;

/// The whole configuration file. Every section but `[device]`,
/// `[prescreen]` and `[[cameras]]` may be left out; each key's default and
/// its reason are documented on the section's type.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub device: DeviceSection,
    #[serde(default)]
    pub mqtt: MqttSection,
    /// Frame quality gate; every key defaults (see `QualityThresholds`).
    #[serde(default)]
    pub quality: QualityThresholds,
    pub prescreen: PrescreenConfig,
    /// Faces found in selected frames and redacted before they are stored
    /// (on by default; see `AnonymiseConfig`).
    #[serde(default)]
    pub anonymise: AnonymiseConfig,
    /// When a vehicle starts and ends an inspection; which frames ship.
    #[serde(default)]
    pub session: SessionConfig,
    /// The durable queue of events and images waiting for central's ack.
    #[serde(default)]
    pub outbox: OutboxConfig,
    /// The local `/metrics` and `/healthz` endpoint and the log format.
    #[serde(default)]
    pub ops: OpsConfig,
    /// The connection to central. Optional: without it the agent runs
    /// offline and only fills its outbox (a bay that must keep working
    /// before its network is there).
    #[serde(default)]
    pub uplink: Option<UplinkConfig>,
    pub cameras: Vec<CameraConfig>,
}

/// Who this board is. Both ids appear in every topic and payload.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSection {
    pub site: String,
    pub device: String,
}

/// The ids of a validated configuration, typed.
#[derive(Debug, Clone)]
pub struct Identity {
    pub site: SiteId,
    pub device: DeviceId,
    pub prefix: TopicPrefix,
}

impl Config {
    /// Parses and validates a TOML document.
    pub fn from_toml(text: &str, files: FileChecks) -> Result<(Config, Identity), ConfigErrors> {
        // TOML's message quotes the offending line, which may hold a URL
        // with its password: `ConfigErrors::new` hides it.
        let config: Config = toml::from_str(text)
            .map_err(|e| ConfigErrors::new([e.to_string().trim().to_owned()]))?;
        let identity = config.validate(files)?;
        Ok((config, identity))
    }

    /// Reads, parses and validates a file.
    pub fn load(path: &Path, files: FileChecks) -> Result<(Config, Identity), ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors(vec![format!("cannot read {}: {e}", path.display())]))?;
        Self::from_toml(&text, files)
    }

    /// Checks everything serde cannot, reporting all problems at once.
    pub fn validate(&self, files: FileChecks) -> Result<Identity, ConfigErrors> {
        let mut problems = Vec::new();
        let site = SiteId::new(self.device.site.as_str())
            .map_err(|e| problems.push(format!("device.site: {e}")))
            .ok();
        let device = DeviceId::new(self.device.device.as_str())
            .map_err(|e| problems.push(format!("device.device: {e}")))
            .ok();
        let prefix = self
            .mqtt
            .prefix()
            .map_err(|e| problems.push(format!("mqtt.topic_prefix: {e}")))
            .ok();
        if let Err(errors) = self.quality.validate() {
            problems.extend(errors.into_iter().map(|e| format!("quality: {e}")));
        }
        problems.extend(self.prescreen.problems("prescreen"));
        if files == FileChecks::On && !self.prescreen.model.is_file() {
            problems.push(format!(
                "prescreen.model: {} is not a readable file",
                self.prescreen.model.display()
            ));
        }
        problems.extend(self.anonymise.problems("anonymise", files));
        problems.extend(self.session.problems("session"));
        problems.extend(self.outbox.problems("outbox"));
        problems.extend(self.ops.problems("ops"));
        if let Some(uplink) = &self.uplink {
            problems.extend(uplink.problems("uplink", files));
        }
        problems.extend(crate::capture::cameras_problems(&self.cameras, files));
        match (site, device, prefix) {
            (Some(site), Some(device), Some(prefix)) if problems.is_empty() => Ok(Identity {
                site,
                device,
                prefix,
            }),
            _ => Err(ConfigErrors::new(problems)),
        }
    }
}
