//! Commands from central on their way to the session task, which applies
//! them and appends their `command_result` event: the session task stays
//! the outbox's only writer.

use inspection_core::wire::CommandOutcome;
use uuid::Uuid;

use crate::session::SessionCommand;

/// One command from central, as the uplink hands it to the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceCommand {
    /// The command's id, reported back in its `command_result`.
    pub cmd_id: Uuid,
    /// The command's wire `type` (`CommandBody::name`).
    pub command: &'static str,
    pub action: CommandAction,
}

/// What the session task does with it.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandAction {
    /// Apply it to the session tracker: `executed` when it applied,
    /// `refused` (with the reason) when it could not.
    Session(SessionCommand),
    /// The outcome was decided before the session task (expired, duplicate,
    /// a configuration reload): only report it.
    Report {
        outcome: CommandOutcome,
        detail: Option<String>,
    },
}
