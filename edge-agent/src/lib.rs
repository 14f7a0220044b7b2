//! The edge agent that runs on each return-bay board.
//!
//! Today this crate holds the configuration and its validation; capture, the
//! quality gate pipeline, the tract pre-screen, sessions, the outbox and the
//! uplink arrive with their issues (see ARCHITECTURE.md).

pub mod config;
