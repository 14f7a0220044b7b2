//! The `bridge` role: device topics -> validation -> store -> ack.

use serde::Deserialize;

/// `[bridge]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BridgeConfig {}

impl BridgeConfig {
    /// Every problem, each prefixed by `at`.
    pub fn problems(&self, _at: &str, _check_files: bool) -> Vec<String> {
        Vec::new()
    }
}
