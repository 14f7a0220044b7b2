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
    /// The endpoint is plain HTTP: off loopback only with this set, an
    /// explicit choice (a site network where only the scraper can reach the
    /// board). Default false.
    pub plain_http: bool,
    /// Default `json`: the agent runs under systemd and logs go to journald
    /// and on to Loki, where JSON fields are queryable.
    pub log_format: LogFormat,
}

impl Default for OpsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            plain_http: false,
            log_format: LogFormat::Json,
        }
    }
}

impl OpsConfig {
    /// Every problem, prefixed with `at`: a plain listener off loopback
    /// needs `plain_http = true`.
    pub fn problems(&self, at: &str) -> Vec<String> {
        inspection_core::config::plain_ops_listener_problem(at, self.listen, self.plain_http)
            .into_iter()
            .collect()
    }
}
