//! Operations: the local HTTP endpoint (`/metrics`, `/healthz`), logging and
//! configuration reload on SIGHUP.
//!
//! The endpoint binds to loopback by default: it is for the board's own
//! Prometheus node agent and systemd, not for the network.

mod config;
mod health;
mod http;
mod logging;
mod reload;
mod systemd;

pub use config::{LogFormat, OpsConfig};
pub use health::{Component, Health};
pub use http::{OpsState, router, serve};
pub use logging::init_logging;
pub use reload::{ReloadMetrics, ReloadOutcome, Reloader};
pub use systemd::{Heartbeat, notify_ready, notify_stopping, run_watchdog};
