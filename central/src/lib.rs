//! The central inspection service: one binary, several roles.
//!
//! Today this crate holds the configuration and the ONNX Runtime detector;
//! the roles of `../shared/design` (broker, bridge, upload, worker, inference,
//! api) arrive with their issues.

pub mod config;
pub mod detect;
pub mod paths;
