//! The `[outbox]` configuration section: where the database lives, its byte
//! budget, and how hard each commit is pushed to disk.

use std::path::PathBuf;

use serde::Deserialize;

/// Smallest budget `problems` accepts: below it a handful of ~0.5 MB frames
/// would not fit and the outbox would refuse most of an inspection.
pub const MIN_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// `[outbox]`. Every key has a default, so the section may be left out.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxConfig {
    /// The database file. Default `/var/lib/edge-agent/outbox.sqlite3`: the
    /// systemd unit's `StateDirectory=edge-agent`, persistent and private to
    /// the agent. Side files (`-wal`, `.seq`, `.corrupt-*`) go beside it.
    pub path: PathBuf,
    /// Byte budget for payloads (event JSON + JPEGs). Default 2 GiB: about
    /// 4,000 frames of ~0.5 MB, i.e. a few hundred inspections, so a bay
    /// keeps working through a day's network outage, while leaving most of a
    /// 16-32 GB eMMC to the OS and logs. The file is a few % larger (pages),
    /// plus the WAL.
    pub max_bytes: u64,
    /// Whether events may be evicted (after every frame) when full. Default
    /// false: events are small and are the inspection's record; losing a
    /// frame degrades a report, losing `inspection_completed` loses it.
    pub evict_events: bool,
    /// Per-commit durability. Default `full`: an append that returned `Ok`
    /// survives power loss, which is the promise the pipeline relies on.
    pub synchronous: Synchronous,
    /// Check run on the database at start-up. Default `quick`: catches
    /// damaged pages in time linear in the file size, without the index
    /// cross-check of `full` (see the module documentation).
    pub startup_check: StartupCheck,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("/var/lib/edge-agent/outbox.sqlite3"),
            max_bytes: 2 * 1024 * 1024 * 1024,
            evict_events: false,
            synchronous: Synchronous::Full,
            startup_check: StartupCheck::Quick,
        }
    }
}

/// SQLite's `synchronous` setting for the WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Synchronous {
    /// fsync the WAL at every commit: durable against power loss.
    Full,
    /// fsync only at checkpoints: durable against a process crash, not
    /// against power loss (the last commits may roll back; never corrupt).
    Normal,
}

impl Synchronous {
    pub(crate) fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// Integrity check at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartupCheck {
    /// `PRAGMA quick_check`.
    Quick,
    /// `PRAGMA integrity_check`: also checks index contents; slower.
    Full,
    /// None: for boards where start-up time matters more (not advised).
    Off,
}

impl OutboxConfig {
    /// Every bad value, each prefixed by `at` (e.g. `outbox`).
    pub fn problems(&self, at: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if self.path.as_os_str().is_empty() {
            problems.push(format!("{at}.path: must not be empty"));
        } else if !self.path.is_absolute() {
            problems.push(format!(
                "{at}.path: {} must be absolute (the working directory of a service is not a place for data)",
                self.path.display()
            ));
        } else if self.path.file_name().is_none() {
            problems.push(format!(
                "{at}.path: {} must name a file",
                self.path.display()
            ));
        }
        if self.max_bytes < MIN_MAX_BYTES {
            problems.push(format!(
                "{at}.max_bytes: {} is below the minimum of {MIN_MAX_BYTES} (16 MiB)",
                self.max_bytes
            ));
        }
        if self.max_bytes > i64::MAX as u64 {
            problems.push(format!(
                "{at}.max_bytes: {} is larger than SQLite can count",
                self.max_bytes
            ));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_an_empty_section_parses_to_them() {
        let parsed: OutboxConfig = toml::from_str("").unwrap();
        assert_eq!(parsed, OutboxConfig::default());
        assert!(parsed.problems("outbox").is_empty());
    }

    #[test]
    fn keys_parse_and_unknown_keys_are_refused() {
        let parsed: OutboxConfig = toml::from_str(
            r#"
            path = "/data/o.sqlite3"
            max_bytes = 104857600
            evict_events = true
            synchronous = "normal"
            startup_check = "full"
            "#,
        )
        .unwrap();
        assert_eq!(parsed.path, PathBuf::from("/data/o.sqlite3"));
        assert_eq!(parsed.max_bytes, 100 * 1024 * 1024);
        assert!(parsed.evict_events);
        assert_eq!(parsed.synchronous, Synchronous::Normal);
        assert_eq!(parsed.startup_check, StartupCheck::Full);
        assert!(toml::from_str::<OutboxConfig>("max_byte = 1").is_err());
        assert!(toml::from_str::<OutboxConfig>("synchronous = \"off\"").is_err());
    }

    #[test]
    fn every_problem_is_reported() {
        let config = OutboxConfig {
            path: PathBuf::from("relative/outbox.sqlite3"),
            max_bytes: 1000,
            ..OutboxConfig::default()
        };
        let problems = config.problems("outbox");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("outbox.path: "), "{problems:?}");
        assert!(
            problems[1].starts_with("outbox.max_bytes: "),
            "{problems:?}"
        );
        let empty = OutboxConfig {
            path: PathBuf::new(),
            max_bytes: u64::MAX,
            ..OutboxConfig::default()
        };
        let problems = empty.problems("x");
        assert_eq!(
            problems,
            vec![
                "x.path: must not be empty".to_owned(),
                format!("x.max_bytes: {} is larger than SQLite can count", u64::MAX)
            ]
        );
    }
}
