//! The edge agent that runs on each return-bay board.
//!
//! Pipeline (one tokio task per stage, bounded channels between them):
//! [`capture`] -> quality gate -> [`prescreen`] -> [`session`] -> [`outbox`]
//! -> [`uplink`] (MQTT events, HTTPS images, acks and commands back).
//! See ARCHITECTURE.md for the invariants.

pub mod agent;
pub mod anonymise;
pub mod capture;
pub mod config;
pub mod ops;
pub mod outbox;
pub mod pipeline;
pub mod prescreen;
pub mod session;
pub mod uplink;
