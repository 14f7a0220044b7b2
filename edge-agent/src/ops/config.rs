//! The `[ops]` section: where the local endpoint listens and how logs look.

use std::net::SocketAddr;

use serde::Deserialize;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One JSON object per line, for journald and Loki.
    Json,
    /// Human-readable lines, for a terminal.
    Text,
}

/// `[ops]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpsConfig {
    /// Address of `/metrics` and `/healthz`. Default `127.0.0.1:9464`:
    /// loopback, because the board's metrics are scraped by a local agent,
    /// and 9464 is outside the ranges other exporters commonly take. Port 0
    /// picks a free port (for tests); the bound address is logged.
    pub listen: SocketAddr,
    /// Default `json`: the agent runs under systemd and logs go to journald
    /// and on to Loki, where JSON fields are queryable.
    pub log_format: LogFormat,
}

impl Default for OpsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            log_format: LogFormat::Json,
        }
    }
}

impl OpsConfig {
    /// Every problem, prefixed with `at`. (Nothing to check today: the
    /// address parses or the file does not load.)
    pub fn problems(&self, _at: &str) -> Vec<String> {
        Vec::new()
    }
}
