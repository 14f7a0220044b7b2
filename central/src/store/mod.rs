//! The central store: everything the service persists, behind one trait.
//!
//! ```text
//! DESIGN
//!
//! `Store` is the only way roles touch the database. The transport issue
//! defines it with its SQLite implementation (`sqlite.rs`, sqlx, the
//! embedded default); the Central processing issue adds PostgreSQL and the
//! job queue behind the same trait, and the conformance suite
//! (`tests/store_conformance.rs`) runs against every backend.
//!
//! IDEMPOTENCY
//!
//! Events are keyed by `msg_id`: recording one twice stores it once and says
//! `Duplicate` the second time, so the bridge can re-ack a redelivered event
//! (the first ack may have been lost) without storing it twice. Images are
//! not in the database: the object store, keyed by SHA-256, is their record
//! (the upload role needs no database connection).
//!
//! COMMIT BEFORE ACK
//!
//! An `Ok` from a `record_*` method means the rows are committed (durable);
//! only then may the bridge publish the ack that lets a device delete the
//! message from its outbox. An `Err` means nothing of that call was stored.
//!
//! DEAD LETTERS
//!
//! A payload that cannot be accepted (malformed, unknown version, claims
//! another device, unknown topic) is kept whole with its topic and reason
//! code (`WireError::code()`), never silently dropped.
//! ```

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use inspection_core::ids::{DeviceId, SiteId};
use inspection_core::wire::{Event, Status, Telemetry};
use uuid::Uuid;

pub mod sqlite;

pub use sqlite::SqliteStore;

/// `[store]`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {}

impl StoreConfig {
    /// Every problem, each prefixed by `at`.
    pub fn problems(&self, _at: &str, _check_files: bool) -> Vec<String> {
        Vec::new()
    }
}

/// Why the store failed. `Unavailable` is transient (retry later);
/// the rest are not.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is busy beyond the timeout.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The disk or the database is full.
    #[error("database full: {0}")]
    Full(String),
    /// A migration failed or the schema is not the one this build expects.
    #[error("database schema: {0}")]
    Schema(String),
    /// Anything else the database refused.
    #[error("database error: {0}")]
    Database(String),
    /// A value could not be encoded for or decoded from the database.
    #[error("store data: {0}")]
    Data(String),
}

impl StoreError {
    /// A stable code for metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Full(_) => "full",
            StoreError::Schema(_) => "schema",
            StoreError::Database(_) => "database",
            StoreError::Data(_) => "data",
        }
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Full(_))
    }
}

/// Whether a `record_*` call stored something new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Inserted,
    /// Already there (same key); nothing changed.
    Duplicate,
}

/// A payload the bridge refused, kept for operators.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The MQTT topic it arrived on (may not be a valid device topic).
    pub topic: String,
    /// The payload as received; truncated by the store to
    /// [`DEAD_LETTER_MAX_PAYLOAD`] bytes (the length is kept in `payload_len`).
    pub payload: Vec<u8>,
    /// `WireError::code()` or another stable code (`unknown_topic`, ...).
    pub reason: String,
    /// The full error message.
    pub detail: String,
    pub received_at: DateTime<Utc>,
}

/// Most payload bytes a dead letter keeps.
pub const DEAD_LETTER_MAX_PAYLOAD: usize = 64 * 1024;

/// A dead letter as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDeadLetter {
    pub id: i64,
    pub topic: String,
    pub payload: Vec<u8>,
    /// The length of the payload as received (before any truncation).
    pub payload_len: u64,
    pub reason: String,
    pub detail: String,
    pub received_at: DateTime<Utc>,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub event: Event,
    pub received_at: DateTime<Utc>,
}

/// What central knows about a device from its status and telemetry.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRecord {
    pub site: SiteId,
    pub device: DeviceId,
    /// The last status message, if any arrived.
    pub status: Option<Status>,
    pub status_received_at: Option<DateTime<Utc>>,
    /// The last telemetry message, if any arrived.
    pub telemetry: Option<Telemetry>,
    pub telemetry_received_at: Option<DateTime<Utc>>,
    /// The highest event `seq` stored for this device.
    pub last_seq: Option<u64>,
}

/// Counts for health checks, tests and the load benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreCounts {
    pub events: u64,
    pub inspections: u64,
    pub dead_letters: u64,
    pub devices: u64,
}

/// Everything the service persists. Implementations are cheap to clone
/// behind an `Arc` and safe to share between tasks.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The backend's name for logs and metrics: `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// Stores events idempotently by `msg_id`, all in one transaction, and
    /// keeps the inspection they belong to up to date (created by its first
    /// event, whichever arrives first; completed by `inspection_completed`).
    /// Returns one [`Recorded`] per event, in order. A batch may hold the
    /// same `msg_id` twice: the second is `Duplicate`.
    async fn record_events(
        &self,
        events: &[Event],
        received_at: DateTime<Utc>,
    ) -> Result<Vec<Recorded>, StoreError>;

    /// Keeps the device's latest status (a message older than the stored
    /// one by `at` is ignored, since retained and will messages can arrive
    /// late).
    async fn record_status(
        &self,
        status: &Status,
        received_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Keeps the device's latest telemetry (older by `at` is ignored).
    async fn record_telemetry(
        &self,
        telemetry: &Telemetry,
        received_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Keeps a refused payload; returns its id.
    async fn dead_letter(&self, letter: &DeadLetter) -> Result<i64, StoreError>;

    /// One stored event.
    async fn event(&self, msg_id: Uuid) -> Result<Option<StoredEvent>, StoreError>;

    /// A device's events in `seq` order, after `after_seq` (exclusive), at
    /// most `limit`.
    async fn device_events(
        &self,
        site: &SiteId,
        device: &DeviceId,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// What is known about a device.
    async fn device(
        &self,
        site: &SiteId,
        device: &DeviceId,
    ) -> Result<Option<DeviceRecord>, StoreError>;

    /// The newest dead letters first, at most `limit`.
    async fn dead_letters(&self, limit: u32) -> Result<Vec<StoredDeadLetter>, StoreError>;

    /// Row counts.
    async fn counts(&self) -> Result<StoreCounts, StoreError>;

    /// A cheap round trip for readiness probes.
    async fn ping(&self) -> Result<(), StoreError>;
}
