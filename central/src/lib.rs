//! The central inspection service: one binary, several roles.
//!
//! Roles: `broker`, `bridge`, `upload` (transport), `worker` and
//! `inference` (processing), `api` (the staff REST API), each in
//! its module; `run` starts any set of them in one process. ARCHITECTURE.md
//! has the map.

pub mod api;
pub mod auth;
pub mod bridge;
pub mod broker;
pub mod certs;
pub mod config;
pub mod demo;
pub mod detect;
pub mod fleet;
pub mod https;
pub mod inference;
pub mod ops;
pub mod paths;
pub mod plates;
pub mod privacy;
pub mod report;
pub mod retention;
pub mod run;
pub mod store;
pub mod tls;
pub mod upload;
pub mod worker;

/// An error and its sources, on one line (reqwest hides the cause).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
