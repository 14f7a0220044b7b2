//! The agent's pipeline: capture -> quality gate -> pre-screen -> session ->
//! outbox, one tokio task per stage with bounded hand-offs between them.

mod slot;

pub use slot::{Put, Slot, WhenFull};
