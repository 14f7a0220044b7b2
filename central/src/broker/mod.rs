//! The `broker` role: embedded rumqttd behind a TLS gateway that
//! authenticates devices and enforces per-device topic ACLs.

use serde::Deserialize;

/// `[broker]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {}

impl BrokerConfig {
    /// Every problem, each prefixed by `at`.
    pub fn problems(&self, _at: &str, _check_files: bool) -> Vec<String> {
        Vec::new()
    }
}
