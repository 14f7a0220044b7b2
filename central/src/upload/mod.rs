//! The `upload` role: `PUT /v1/images/{sha256}` over HTTPS into the object store.

use serde::Deserialize;

/// `[upload]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadConfig {}

impl UploadConfig {
    /// Every problem, each prefixed by `at`.
    pub fn problems(&self, _at: &str, _check_files: bool) -> Vec<String> {
        Vec::new()
    }
}
