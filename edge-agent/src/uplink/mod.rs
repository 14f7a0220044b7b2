//! The edge uplink: the outbox drained to central over MQTT (events) and
//! HTTPS (images), acks back, commands in, telemetry out.
//!
//! ```text
//! DESIGN
//!
//! Connection. rumqttc (MQTT 3.1.1) over TLS (rustls, aws-lc-rs), client id
//! `{site}/{device}`, clean_session = false, QoS 1 for everything. The
//! device authenticates with its client certificate (CN `site/device`)
//! and/or its token (user `site/device`, password = token). The last will
//! is a retained `Status{offline}` on the device's status topic; after every
//! CONNACK the connection task queues, ahead of anything else, the
//! subscription to the device's `ack` and `cmd` topics and a retained
//! `Status{online, boot_id}`. A lost connection is retried by polling the
//! event loop again after an exponential backoff with full jitter
//! (backoff_initial_ms doubling to backoff_max_s). A clean shutdown
//! publishes `offline` and sends DISCONNECT (so the broker drops the will).
//!
//! Drain. One task walks the outbox in insertion order (`pending_after`,
//! a few entries at a time) and handles the head before anything behind it:
//! - an image is PUT to `{upload_url}/v1/images/{sha256}`; 200/201 remove it
//!   (`ack_image`); a retryable failure (network, 5xx, 408, 429, and 401/403
//!   or 404, which are misconfiguration an operator fixes) waits a backoff
//!   and tries the same image again; a permanent refusal (400, 413, 415,
//!   422) removes it, logged and counted in `edge_uplink_rejected_total`,
//!   since it could otherwise never leave and would block the outbox.
//!   So an image is on central before any later event (the one that names
//!   it) is published.
//! - an event is published on the events topic as stored and kept in
//!   flight, at most max_in_flight at a time.
//! An event leaves the outbox only when central's `Ack` names its msg_id
//! (`ack_events`), never on PUBACK: the broker may keep nothing on disk.
//! In-flight events not acked within ack_timeout_s are published again,
//! and after every reconnect all in-flight events are published again, in
//! order (rumqttc's own resend queue is dropped: the uplink owns
//! retransmission). Central deduplicates by msg_id, so a re-publish is
//! harmless; re-publishes are the only source of duplicates.
//!
//! Commands. A `Command` on the cmd topic is decoded (a bad payload is
//! counted and ignored); one received after its expires_at (judged on
//! central's clock: the board's own plus the offset learned from the last
//! ack's `at`, exported as `edge_uplink_clock_offset_seconds`), or with a
//! cmd_id seen before (the last 1024, in memory), is not executed. Every
//! command, executed or not, yields a `command_result` event, appended by
//! the session task (the outbox's only writer) from a `DeviceCommand` on
//! the pipeline's command channel, and then travels like any event.
//! `reload_config` runs the SIGHUP reload here and sends its outcome.
//!
//! Telemetry. Every telemetry_interval_s while connected: outbox stats,
//! frame counters, inspections, camera states and fps, and the mean
//! pre-screen latency over the interval, from the agent's own metrics.
//!
//! The outbox is shared with the session task behind a mutex; every call
//! runs on the blocking pool and holds the lock for that call only.
//! ```

mod backoff;
mod config;
mod metrics;
mod mqtt;
mod run;
mod telemetry;
mod tls;
mod upload;

use std::sync::Arc;

pub use backoff::Backoff;
pub use config::{MAX_IN_FLIGHT, MqttEndpoint, UplinkConfig};
pub use metrics::UplinkMetrics;
pub use run::Uplink;
pub use telemetry::TelemetrySource;
pub use tls::{client_config, load_certs, load_key};
pub use upload::{UploadOutcome, Uploader};

/// A configuration reload: `Err` carries why the new file was refused (the
/// running configuration then stays).
pub type ReloadFn = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Why the uplink could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    #[error("uplink configuration: {0}")]
    Config(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("wire: {0}")]
    Wire(String),
    #[error("outbox: {0}")]
    Outbox(#[from] crate::outbox::OutboxError),
    #[error("uplink task: {0}")]
    Task(String),
}

impl UplinkError {
    /// A stable code for logs and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            UplinkError::Config(_) => "config",
            UplinkError::Tls(_) => "tls",
            UplinkError::Wire(_) => "wire",
            UplinkError::Outbox(e) => e.code(),
            UplinkError::Task(_) => "task",
        }
    }
}
