//! What the binaries' configuration validators have in common: a report of
//! every problem in a file, and whether referenced files are checked.

use std::fmt;

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
