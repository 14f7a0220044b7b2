//! The agent's pipeline: capture -> quality gate -> pre-screen -> session ->
//! outbox, one tokio task per stage with bounded hand-offs between them.

mod command;
mod run;
mod slot;

pub use command::{CommandAction, DeviceCommand};
pub use run::{Camera, FrameHandle, Pipeline, PipelineError, PipelineMetrics, RunReport};
pub use slot::{Put, Slot, WhenFull};
