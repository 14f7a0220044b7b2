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

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use inspection_core::ids::{DeviceId, SiteId};
use inspection_core::wire::{CompletionReason, Event, InspectionKind, Status, Telemetry};
use uuid::Uuid;

pub mod processing;
pub mod sqlite;

pub use processing::*;
pub use sqlite::SqliteStore;

/// `[store]`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Where the database is. `sqlite://PATH` (relative to the working
    /// directory; the file and its folder are created when absent) or
    /// `sqlite::memory:` for throwaway runs. Default
    /// `sqlite://data/central.sqlite3`: one process, no server to run.
    /// `postgres://` arrives with the Central processing issue.
    pub url: String,
    /// Connections in the pool. Default 4: SQLite has one writer at a time,
    /// more connections only help readers.
    pub max_connections: u32,
    /// How long a statement waits for a lock held by another connection or
    /// process before the store reports `unavailable`. Default 5000 ms.
    pub busy_timeout_ms: u64,
    /// Largest the database may grow, in bytes (SQLite's `max_page_count`).
    /// A full database refuses writes with `full`: the bridge then stops
    /// acking and devices keep their events, instead of the disk filling up
    /// under everything else. Default none (the disk is the limit).
    pub max_size_bytes: Option<u64>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://data/central.sqlite3".to_owned(),
            max_connections: 4,
            busy_timeout_ms: 5000,
            max_size_bytes: None,
        }
    }
}

/// The smallest `max_size_bytes` accepted: the schema alone needs a few
/// dozen pages.
pub const MIN_MAX_SIZE_BYTES: u64 = 256 * 1024;

impl StoreConfig {
    /// A config for the SQLite file at `path`, other values default.
    pub fn sqlite(path: &std::path::Path) -> Self {
        Self {
            url: format!("sqlite://{}", path.display()),
            ..Self::default()
        }
    }

    /// Every problem, each prefixed by `at`.
    pub fn problems(&self, at: &str, _check_files: bool) -> Vec<String> {
        let mut problems = Vec::new();
        match Backend::of(&self.url) {
            Ok(Backend::Sqlite) => {}
            Err(e) => problems.push(format!("{at}.url: {e}")),
        }
        if self.max_connections == 0 || self.max_connections > 64 {
            problems.push(format!(
                "{at}.max_connections: {} is not in 1..=64",
                self.max_connections
            ));
        }
        if self.busy_timeout_ms > 600_000 {
            problems.push(format!(
                "{at}.busy_timeout_ms: {} is more than 10 minutes",
                self.busy_timeout_ms
            ));
        }
        if let Some(max) = self.max_size_bytes
            && max < MIN_MAX_SIZE_BYTES
        {
            problems.push(format!(
                "{at}.max_size_bytes: {max} is below the minimum of {MIN_MAX_SIZE_BYTES}"
            ));
        }
        problems
    }
}

/// The database behind a store URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
}

impl Backend {
    /// The backend a URL names, or why none does.
    pub fn of(url: &str) -> Result<Backend, String> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Err("PostgreSQL arrives with the Central processing issue; use a sqlite:// URL".into())
        } else {
            let scheme: String = url.chars().take_while(|c| *c != ':').take(32).collect();
            Err(format!(
                "unknown database scheme {scheme:?}; expected sqlite:// (postgres:// arrives with the Central processing issue)"
            ))
        }
    }
}

/// Opens the store the URL names (creating and migrating it as needed).
pub async fn open_store(config: &StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    match Backend::of(&config.url).map_err(StoreError::Config)? {
        Backend::Sqlite => Ok(Arc::new(SqliteStore::open(config).await?)),
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
    /// The configuration names no usable database (bad URL, a path that
    /// cannot be created or opened).
    #[error("store configuration: {0}")]
    Config(String),
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
            StoreError::Config(_) => "config",
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

/// An inspection as its stored events describe it. Events may arrive in
/// any order, so every field its first event did not carry may be `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct InspectionRecord {
    pub id: Uuid,
    pub site: SiteId,
    pub device: DeviceId,
    /// From `inspection_started`.
    pub kind: Option<InspectionKind>,
    pub started_at: Option<DateTime<Utc>>,
    /// From `inspection_completed`.
    pub completed_at: Option<DateTime<Utc>>,
    pub completion_reason: Option<CompletionReason>,
    /// The `frames` count of `inspection_completed`.
    pub frames_expected: Option<u32>,
    /// `frame_selected` events stored so far.
    pub frames_received: u32,
    /// Where processing stands (`receiving` until complete).
    pub status: InspectionStatus,
    /// For people: e.g. which images are missing, or the last error.
    pub status_detail: Option<String>,
    /// The vehicle's canonical plate once processing read it.
    pub plate: Option<String>,
}

impl InspectionRecord {
    /// Started, completed and every announced frame stored.
    pub fn is_complete(&self) -> bool {
        self.started_at.is_some()
            && self.completed_at.is_some()
            && self.frames_expected == Some(self.frames_received)
    }
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

    /// One inspection.
    async fn inspection(&self, id: Uuid) -> Result<Option<InspectionRecord>, StoreError>;

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

    // --- Central processing issue -----------------------------------------
    // SCAFFOLD: the default bodies exist only so the tree builds while the
    // backends are written; every backend implements every method and the
    // defaults are removed before this lands.

    /// Every stored event of an inspection, in `seq` order.
    async fn inspection_events(&self, _id: Uuid) -> Result<Vec<StoredEvent>, StoreError> {
        Err(StoreError::Database(
            "inspection_events: not implemented".into(),
        ))
    }

    /// Sets an inspection's status (and a detail for people, e.g. which
    /// images are missing). `Ok(false)` when there is no such inspection.
    async fn set_inspection_status(
        &self,
        _id: Uuid,
        _status: InspectionStatus,
        _detail: Option<&str>,
        _at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Err(StoreError::Database(
            "set_inspection_status: not implemented".into(),
        ))
    }

    /// Stores a processing result whole, in one transaction, replacing any
    /// earlier result of the same inspection: frames, findings, plate reads,
    /// the vehicle (created or updated by its plate, and linked), the
    /// summary, status `processed`, and an audit entry by `worker:<id>`.
    async fn record_result(&self, _result: &InspectionResult) -> Result<(), StoreError> {
        Err(StoreError::Database(
            "record_result: not implemented".into(),
        ))
    }

    /// The stored result of an inspection, equal to what was recorded.
    async fn inspection_result(&self, _id: Uuid) -> Result<Option<InspectionResult>, StoreError> {
        Err(StoreError::Database(
            "inspection_result: not implemented".into(),
        ))
    }

    /// The newest processed `pickup` inspection of the vehicle with this
    /// canonical plate that started before `before`.
    async fn latest_pickup(
        &self,
        _plate: &str,
        _before: DateTime<Utc>,
    ) -> Result<Option<Uuid>, StoreError> {
        Err(StoreError::Database(
            "latest_pickup: not implemented".into(),
        ))
    }

    /// Queues a job unless one of the same kind for the same inspection is
    /// queued or running (then `Duplicate`). `record_events` calls the same
    /// code in its own transaction when an inspection becomes complete.
    async fn enqueue_job(
        &self,
        _kind: JobKind,
        _inspection_id: Uuid,
        _now: DateTime<Utc>,
    ) -> Result<Recorded, StoreError> {
        Err(StoreError::Database("enqueue_job: not implemented".into()))
    }

    /// Claims the oldest due job (queued with `run_at <= now`, or running
    /// with an expired lease) for `worker` until `now + lease`, counting an
    /// attempt. A job whose lease expired on its last attempt becomes `dead`
    /// instead. Two workers never hold the same job (`FOR UPDATE SKIP
    /// LOCKED` on PostgreSQL, a single writer on SQLite).
    async fn claim_job(
        &self,
        _worker: &str,
        _lease: std::time::Duration,
        _now: DateTime<Utc>,
    ) -> Result<Option<Job>, StoreError> {
        Err(StoreError::Database("claim_job: not implemented".into()))
    }

    /// Extends the lease; `Ok(false)` when the job is no longer this
    /// worker's (its lease ran out and another claimed it): stop working on it.
    async fn heartbeat_job(
        &self,
        _job: Uuid,
        _worker: &str,
        _lease: std::time::Duration,
        _now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Err(StoreError::Database(
            "heartbeat_job: not implemented".into(),
        ))
    }

    /// Marks the job done; `Ok(false)` when it is not this worker's.
    async fn complete_job(
        &self,
        _job: Uuid,
        _worker: &str,
        _now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Err(StoreError::Database("complete_job: not implemented".into()))
    }

    /// Records a failed attempt: back to `queued` at `retry_at`, or `dead`
    /// when the attempts are used up (the inspection's status becomes
    /// `failed`). Returns the new state; `None` when not this worker's.
    async fn fail_job(
        &self,
        _job: Uuid,
        _worker: &str,
        _error: &str,
        _retry_at: DateTime<Utc>,
        _now: DateTime<Utc>,
    ) -> Result<Option<JobState>, StoreError> {
        Err(StoreError::Database("fail_job: not implemented".into()))
    }

    /// Puts the job back until `until` without using an attempt (waiting for
    /// images); `Ok(false)` when not this worker's.
    async fn defer_job(
        &self,
        _job: Uuid,
        _worker: &str,
        _until: DateTime<Utc>,
        _reason: &str,
        _now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Err(StoreError::Database("defer_job: not implemented".into()))
    }

    /// Queue figures at `now`.
    async fn job_stats(&self, _now: DateTime<Utc>) -> Result<JobStats, StoreError> {
        Err(StoreError::Database("job_stats: not implemented".into()))
    }

    /// The jobs of an inspection, oldest first.
    async fn inspection_jobs(&self, _id: Uuid) -> Result<Vec<JobRecord>, StoreError> {
        Err(StoreError::Database(
            "inspection_jobs: not implemented".into(),
        ))
    }

    /// Appends to the audit log; returns the entry's id.
    async fn audit(&self, _entry: &AuditEntry) -> Result<i64, StoreError> {
        Err(StoreError::Database("audit: not implemented".into()))
    }

    /// Audit entries for a target (all when `None`), newest first.
    async fn audit_log(
        &self,
        _target: Option<&str>,
        _limit: u32,
    ) -> Result<Vec<StoredAudit>, StoreError> {
        Err(StoreError::Database("audit_log: not implemented".into()))
    }
}
