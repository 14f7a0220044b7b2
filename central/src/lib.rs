//! The central inspection service: one binary, several roles.
//!
//! Built so far: the configuration, the ONNX Runtime detector, and the
//! transport roles (`broker`, `bridge`, `upload`) with the store they write
//! to. The worker, inference and api roles of `../shared/design` arrive with
//! their issues.

pub mod auth;
pub mod bridge;
pub mod broker;
pub mod certs;
pub mod config;
pub mod detect;
pub mod fleet;
pub mod inference;
pub mod llm;
pub mod ops;
pub mod paths;
pub mod plates;
pub mod report;
pub mod run;
pub mod store;
pub mod tls;
pub mod upload;
pub mod worker;
