//! What the binaries' configuration validators have in common: a report of
//! every problem in a file, and whether referenced files are checked.

use std::fmt;

use serde::Deserialize;

use crate::topic::{DEFAULT_PREFIX, TopicError, TopicPrefix};

/// Every problem found in a configuration, in file order. Validators collect
/// all of them so an operator fixes a file in one pass, not one per deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} problem(s) in the configuration:", self.0.len())?;
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    /// `Ok(())` when nothing was found.
    pub fn into_result(problems: Vec<String>) -> Result<(), ConfigErrors> {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(problems))
        }
    }
}

/// Whether validation looks at the files a config names. Off when checking a
/// config away from the machine it is for (a board's file in CI, a
/// Kubernetes ConfigMap before it is applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileChecks {
    On,
    Off,
}

/// `[mqtt]` as both binaries read it: the topic prefix they must share.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttSection {
    /// Topic prefix; default `inspect`. Edge agents and the central service
    /// must agree on it; several environments can share a broker with
    /// different prefixes.
    pub topic_prefix: String,
}

impl Default for MqttSection {
    fn default() -> Self {
        Self {
            topic_prefix: DEFAULT_PREFIX.to_owned(),
        }
    }
}

impl MqttSection {
    /// The validated prefix.
    pub fn prefix(&self) -> Result<TopicPrefix, TopicError> {
        TopicPrefix::new(self.topic_prefix.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_every_problem() {
        let e = ConfigErrors(vec!["a: bad".into(), "b: worse".into()]);
        assert_eq!(
            e.to_string(),
            "2 problem(s) in the configuration:\n  - a: bad\n  - b: worse\n"
        );
        assert!(ConfigErrors::into_result(vec![]).is_ok());
    }
}
