//! The central store: everything the service persists, behind one trait.
//!
//! ```text
//! DESIGN
//!
//! `Store` is the only way roles touch the database. Two backends implement
//! it: SQLite (`sqlite.rs`, the embedded default: one process, no server)
//! and PostgreSQL (`postgres.rs`, production: several replicas of every
//! role share it). Each has its own migrations (`central/migrations/sqlite/`,
//! `central/migrations/postgres/`, the same tables in each database's
//! native types), applied when the store opens. The conformance suite
//! (`tests/store_conformance.rs`) runs every check against both.
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
//!
//! INSPECTION STATUS
//!
//! `receiving` until started, completed and every announced frame is
//! stored; the `record_events` transaction that stores the last of them
//! sets it `queued` and enqueues its `process_inspection` job (so a
//! committed, acked event can never leave a complete inspection without a
//! job). Then `processing` (claimed), `waiting_for_images` (deferred),
//! `processed` (`record_result`), `images_missing` (set by the worker) or
//! `failed` (the job is dead).
//!
//! An inspection whose device can no longer complete it (the agent was
//! killed before its `inspection_completed`, or frames were dropped on the
//! board) would stay `receiving` for ever. `close_incomplete` queues it
//! with what arrived once the device's own telemetry proves nothing more is
//! coming: taken `grace` after the inspection started on the board's clock
//! and received `grace` after central first saw it on central's (so
//! neither a skewed clock nor one that jumped can make it early; `grace`
//! exceeds the boards' longest inspection), it reports an empty outbox,
//! and entries leave the outbox only once central has committed them. Its `incomplete` column
//! says what was missing, for as long as the inspection is kept.
//!
//! CLOCKS
//!
//! Event times are the board's. A board whose clock is off (broken NTP)
//! would date its inspections wrongly against another board's, and a return
//! compared with "the latest pickup started before it" could get the wrong
//! one. So each inspection also keeps `started_at_central`: its start plus
//! the board's offset (central minus board, `central_clock_offset_ms`) from
//! the board's telemetry stored when the start arrived; the board measures
//! it from central's acks. Without one (an older agent, or no ack yet) it is
//! the board's time, as for a row a not yet upgraded replica wrote.
//! `latest_pickup` orders by it. A board whose clock was just stepped back
//! (NTP came back) keeps its older, later-dated telemetry for as long as
//! the step, and the offset with it: inspections started in that window
//! are dated by the old offset.
//!
//! JOB QUEUE
//!
//! Jobs live in the database, in the same transactions as the data they
//! concern. States: `queued` (due at `run_at`), `running` (leased to one
//! worker until `lease_until`), `done`, `dead`. At most one queued or
//! running job per (kind, inspection) (a partial unique index; enqueueing
//! again is `Duplicate`). `claim_job` takes the oldest due job: queued and
//! due, or running with an expired lease (its worker died or hung); each
//! claim counts an attempt, and a lease that expires on the last attempt
//! makes the job dead instead of claimable. PostgreSQL claims with
//! `SELECT ... FOR UPDATE SKIP LOCKED` (workers never wait on each other);
//! SQLite has one writer at a time (`BEGIN IMMEDIATE`). Heartbeat, complete,
//! fail and defer act only while the job is still `running` under the
//! caller's name: a worker whose lease ran out and was re-claimed learns it
//! from an `Ok(false)` and must drop its work. `fail_job` re-queues at the
//! caller's `retry_at` (the worker computes the backoff) or dead-letters
//! when the attempts are used up; `defer_job` gives the attempt back.
//! Every method takes `now` from its caller, so tests drive time without
//! sleeping.
//!
//! RESULTS AND AUDIT
//!
//! `record_result` replaces an inspection's frames, findings and plate reads
//! whole, upserts the vehicle by its canonical plate, and appends an audit
//! entry, in one transaction. Findings, frames, plate reads, jobs and audit
//! entries are tables (queried by status, plate, site, date); the smaller
//! parts (damage model, comparison, summary, voted plate) are JSON columns.
//! Times are kept to the microsecond: callers pass microsecond times to get
//! equal values back.
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use inspection_core::ids::{DeviceId, SiteId};
use inspection_core::wire::{CompletionReason, Event, InspectionKind, Status, Telemetry};
use uuid::Uuid;

mod common;
pub mod postgres;
pub mod processing;
pub mod sqlite;
pub mod staff;

pub use postgres::PgStore;
pub use processing::*;
pub use sqlite::SqliteStore;
pub use staff::*;

/// `[store]`. Its `Debug` shows the URL without its password.
#[derive(Clone, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Where the database is. `sqlite://PATH` (relative to the working
    /// directory; the file and its folder are created when absent) or
    /// `sqlite::memory:` for throwaway runs, or
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE?sslmode=...` (also
    /// `postgresql://`; the database must exist, the schema is migrated at
    /// open). Default `sqlite://data/central.sqlite3`: one process, no
    /// server to run.
    pub url: String,
    /// Connections in the pool (per process). Default 4: SQLite has one
    /// writer at a time, more connections only help readers; on PostgreSQL
    /// every replica of every role has its own pool, so the server's
    /// `max_connections` must cover the sum.
    pub max_connections: u32,
    /// How long a statement waits for a lock held by another connection or
    /// process (SQLite's busy timeout, PostgreSQL's `lock_timeout`), and
    /// how long a call waits for a pooled connection, before the store
    /// reports `unavailable`. Default 5000 ms.
    pub busy_timeout_ms: u64,
    /// SQLite only: largest the database may grow, in bytes (SQLite's
    /// `max_page_count`). A full database refuses writes with `full`: the
    /// bridge then stops acking and devices keep their events, instead of
    /// the disk filling up under everything else. Default none (the disk is
    /// the limit). Refused with PostgreSQL, whose size is the server's
    /// business (a full disk there is reported as `full` too).
    pub max_size_bytes: Option<u64>,
    /// How many times a job is claimed before it is dead-lettered (a claim
    /// whose lease runs out counts). Default 5: enough to ride out a worker
    /// restart or a flaky dependency, few enough that a poisonous
    /// inspection stops being retried within minutes. 1..=100.
    pub job_max_attempts: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://data/central.sqlite3".to_owned(),
            max_connections: 4,
            busy_timeout_ms: 5000,
            max_size_bytes: None,
            job_max_attempts: 5,
        }
    }
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            url,
            max_connections,
            busy_timeout_ms,
            max_size_bytes,
            job_max_attempts,
        } = self;
        f.debug_struct("StoreConfig")
            .field("url", &inspection_core::config::redact_url(url))
            .field("max_connections", max_connections)
            .field("busy_timeout_ms", busy_timeout_ms)
            .field("max_size_bytes", max_size_bytes)
            .field("job_max_attempts", job_max_attempts)
            .finish()
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
            Ok(Backend::Postgres) => {
                if self.max_size_bytes.is_some() {
                    problems.push(format!(
                        "{at}.max_size_bytes: SQLite only; a PostgreSQL server's size is its own business (remove it)"
                    ));
                }
            }
            Err(e) => problems.push(format!("{at}.url: {e}")),
        }
        if !(1..=100).contains(&self.job_max_attempts) {
            problems.push(format!(
                "{at}.job_max_attempts: {} is not in 1..=100",
                self.job_max_attempts
            ));
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
    Postgres,
}

impl Backend {
    /// The backend a URL names, or why none does.
    pub fn of(url: &str) -> Result<Backend, String> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            let scheme: String = url.chars().take_while(|c| *c != ':').take(32).collect();
            Err(format!(
                "unknown database scheme {scheme:?}; expected sqlite:// or postgres://"
            ))
        }
    }
}

/// Opens the store the URL names (creating and migrating it as needed).
pub async fn open_store(config: &StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    match Backend::of(&config.url).map_err(StoreError::Config)? {
        Backend::Sqlite => Ok(Arc::new(SqliteStore::open(config).await?)),
        Backend::Postgres => Ok(Arc::new(PgStore::open(config).await?)),
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
    /// The row a write names does not exist (e.g. a finding of another
    /// inspection).
    #[error("not found: {0}")]
    NotFound(String),
    /// The write is refused in the row's present state (e.g. a charge on a
    /// finding that is not confirmed); the message says why, for people.
    #[error("conflict: {0}")]
    Conflict(String),
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
            StoreError::NotFound(_) => "not_found",
            StoreError::Conflict(_) => "conflict",
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
    /// On the board's clock.
    pub started_at: Option<DateTime<Utc>>,
    /// The same moment on central's clock (the module doc's CLOCKS).
    pub started_at_central: Option<DateTime<Utc>>,
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
    /// Set when `close_incomplete` queued it without all its events: what
    /// was missing, for people (kept through processing, unlike
    /// `status_detail`).
    pub incomplete: Option<String>,
}

/// `at` (a board's time) on central's clock, given the board's reported
/// offset in milliseconds (central minus board); `at` itself without one,
/// or with one no clock could be off by.
pub(crate) fn central_time(at: DateTime<Utc>, offset_ms: Option<i64>) -> DateTime<Utc> {
    offset_ms
        .and_then(inspection_core::wire::clock_offset_from_ms)
        .and_then(|offset| at.checked_add_signed(offset))
        .unwrap_or(at)
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

    /// Devices in (site, device) order after `after` (exclusive), at most
    /// `limit`: the fleet view (metrics, the staff API's device list).
    async fn devices(
        &self,
        after: Option<(&SiteId, &DeviceId)>,
        limit: u32,
    ) -> Result<Vec<DeviceRecord>, StoreError>;

    /// The newest dead letters first, at most `limit`.
    async fn dead_letters(&self, limit: u32) -> Result<Vec<StoredDeadLetter>, StoreError>;

    /// Row counts.
    async fn counts(&self) -> Result<StoreCounts, StoreError>;

    /// A cheap round trip for readiness probes.
    async fn ping(&self) -> Result<(), StoreError>;

    // --- Central processing issue -----------------------------------------

    /// Every stored event of an inspection, in `seq` order.
    async fn inspection_events(&self, id: Uuid) -> Result<Vec<StoredEvent>, StoreError>;

    /// Sets an inspection's status (and a detail for people, e.g. which
    /// images are missing). `Ok(false)` when there is no such inspection.
    async fn set_inspection_status(
        &self,
        id: Uuid,
        status: InspectionStatus,
        detail: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Stores a processing result whole, in one transaction, replacing any
    /// earlier result of the same inspection: frames, findings, plate reads,
    /// the vehicle (created or updated by its plate, and linked), the
    /// summary, status `processed`, and an audit entry by `worker:<id>`.
    /// An inspection the store does not know is refused (`Data`), whole.
    /// One that staff have begun to review (any finding decision, the
    /// review mark or a charge) is refused with `Conflict`: reprocessing
    /// must never wipe a person's decisions.
    async fn record_result(&self, result: &InspectionResult) -> Result<(), StoreError>;

    /// The stored result of an inspection, equal to what was recorded.
    async fn inspection_result(&self, id: Uuid) -> Result<Option<InspectionResult>, StoreError>;

    /// The newest processed `pickup` inspection of the vehicle with this
    /// canonical plate that started before `before`, both on central's
    /// clock (`started_at_central`).
    async fn latest_pickup(
        &self,
        plate: &str,
        before: DateTime<Utc>,
    ) -> Result<Option<Uuid>, StoreError>;

    /// Queues a job unless one of the same kind for the same inspection is
    /// queued or running (then `Duplicate`). `record_events` calls the same
    /// code in its own transaction when an inspection becomes complete.
    /// A queued job sets the inspection's status to `queued`. The
    /// inspection must exist (`Database` otherwise).
    async fn enqueue_job(
        &self,
        kind: JobKind,
        inspection_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Recorded, StoreError>;

    /// Claims the oldest due job (queued with `run_at <= now`, or running
    /// with an expired lease) for `worker` until `now + lease`, counting an
    /// attempt. A job whose lease expired on its last attempt becomes `dead`
    /// instead. Two workers never hold the same job (`FOR UPDATE SKIP
    /// LOCKED` on PostgreSQL, a single writer on SQLite).
    async fn claim_job(
        &self,
        worker: &str,
        lease: std::time::Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<Job>, StoreError>;

    /// Extends the lease; `Ok(false)` when the job is no longer this
    /// worker's (its lease ran out and another claimed it): stop working on it.
    /// A lease that ran out but was not claimed by another is still the
    /// worker's (it is extended; complete, fail and defer are accepted too).
    async fn heartbeat_job(
        &self,
        job: Uuid,
        worker: &str,
        lease: std::time::Duration,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Marks the job done; `Ok(false)` when it is not this worker's.
    async fn complete_job(
        &self,
        job: Uuid,
        worker: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Records a failed attempt: back to `queued` at `retry_at`, or `dead`
    /// when the attempts are used up (the inspection's status becomes
    /// `failed`). Returns the new state; `None` when not this worker's. A
    /// retry puts the inspection back to `queued` with the error as detail.
    async fn fail_job(
        &self,
        job: Uuid,
        worker: &str,
        error: &str,
        retry_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<JobState>, StoreError>;

    /// Puts the job back until `until` without using an attempt (waiting for
    /// images); `Ok(false)` when not this worker's.
    async fn defer_job(
        &self,
        job: Uuid,
        worker: &str,
        until: DateTime<Utc>,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Queue figures at `now`.
    async fn job_stats(&self, now: DateTime<Utc>) -> Result<JobStats, StoreError>;

    /// Queues, with a processing job, every `receiving` inspection (started,
    /// its kind known, first seen before `now - grace`) that its device can
    /// no longer complete: the device's last telemetry was taken at least
    /// `grace` after the inspection started (board clock), received at
    /// least `grace` after it was first seen (central's clock), and reports
    /// an empty outbox (the module doc's INSPECTION STATUS). At most `limit`
    /// per call, oldest first; the ones closed, each with its detail.
    async fn close_incomplete(
        &self,
        grace: std::time::Duration,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ClosedIncomplete>, StoreError>;

    /// The jobs of an inspection, oldest first.
    async fn inspection_jobs(&self, id: Uuid) -> Result<Vec<JobRecord>, StoreError>;

    /// Stores a report (an inspection may have several: each rewrite after a
    /// review adds one). The inspection must exist (`Database` otherwise).
    async fn record_report(&self, report: &crate::report::Report) -> Result<(), StoreError>;

    /// The reports of an inspection, newest first.
    async fn reports(&self, inspection_id: Uuid) -> Result<Vec<crate::report::Report>, StoreError>;

    /// Appends to the audit log; returns the entry's id.
    async fn audit(&self, entry: &AuditEntry) -> Result<i64, StoreError>;

    /// Audit entries for a target (all when `None`), newest first.
    async fn audit_log(
        &self,
        target: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredAudit>, StoreError>;

    // ---- The staff API (staff.rs has the rules) ----

    /// Inspections matching `query`, in its order, at most `query.limit`.
    async fn search_inspections(
        &self,
        query: &InspectionQuery,
    ) -> Result<Vec<InspectionListItem>, StoreError>;

    /// Review actions, review mark and charge of an inspection (empty when
    /// there are none or the inspection does not exist).
    async fn review_record(&self, inspection_id: Uuid) -> Result<ReviewRecord, StoreError>;

    /// Applies one staff decision to a finding, records it in the finding's
    /// history and the audit log (one transaction) and returns it.
    /// `NotFound`: no such inspection, or the finding is not one of its
    /// findings. `Conflict`: the inspection is not processed; the finding is
    /// a pickup's `baseline`; confirm/reject after a charge was approved.
    async fn review_finding(
        &self,
        review: &FindingReview,
    ) -> Result<FindingReviewRecord, StoreError>;

    /// Marks an inspection reviewed (again: replaces who and when), with its
    /// audit entry. `NotFound`: no such inspection. `Conflict`: not
    /// processed, or findings still `new` / `possible_new_damage` (named in
    /// the message).
    async fn mark_reviewed(
        &self,
        inspection_id: Uuid,
        review: &InspectionReview,
    ) -> Result<(), StoreError>;

    /// Approves a charge, with its audit entry. `NotFound`: no such
    /// inspection or a listed finding is not one of its findings.
    /// `Conflict`: not a return, not marked reviewed, no findings listed, a
    /// listed finding not `confirmed`, or a charge already approved.
    async fn approve_charge(&self, charge: &Charge) -> Result<(), StoreError>;

    /// A vehicle by canonical plate.
    async fn vehicle(&self, plate: &str) -> Result<Option<VehicleRecord>, StoreError>;

    /// Every site, in name order, with its device count.
    async fn sites(&self) -> Result<Vec<SiteRecord>, StoreError>;

    // ---- Retention and erasure (staff.rs) ----

    /// Images of inspections whose `at` is before `before` that are not
    /// marked purged yet, at most `limit`, leaving out images any inspection
    /// at or after `before` still refers to and, unless `include_charged`,
    /// images of inspections with an approved charge and of the pickups
    /// those were compared with (the charge's evidence: they follow the
    /// `Findings` rule, whose purge first deletes them with
    /// `include_charged`).
    async fn expired_images(
        &self,
        before: DateTime<Utc>,
        limit: u32,
        include_charged: bool,
    ) -> Result<Vec<ImageRef>, StoreError>;

    /// Records that these images were deleted from the object store (their
    /// frames stay, marked purged at `at`), with one audit entry
    /// (`retention.purge`, target `retention:images`).
    async fn mark_images_purged(
        &self,
        images: &[ImageRef],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Deletes at most `limit` of the oldest rows of `class` (not `Images`)
    /// older than `before` (inspections and reports by the inspection's
    /// `at`, audit entries by their own time), vehicles left without any
    /// inspection, and appends one audit entry (`retention.purge`, target
    /// `retention:<class>`, after: the count and `before`) in the same
    /// transaction; the number of inspections, reports or audit entries
    /// deleted.
    async fn purge(
        &self,
        class: DataClass,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError>;

    /// What an erasure covers (`NotFound` when nothing matches).
    async fn erasure_plan(&self, selector: &ErasureSelector) -> Result<ErasurePlan, StoreError>;

    /// Erases the personal data of the plan's inspections in one
    /// transaction: plates (inspection, voted plate, plate reads' text,
    /// plate and country, the vehicle), the reports (their text names the
    /// plate), the plate wherever it appears in these inspections' audit
    /// entries (replaced by `[erased]`); marks the inspections erased and
    /// their frames' images purged; appends the erasure's audit entry
    /// (`gdpr.erasure`, target `erasure:<id>`, after: selector kind,
    /// inspections, images deleted, reason — never the plate).
    async fn erase(&self, plan: &ErasurePlan, erasure: &Erasure) -> Result<(), StoreError>;

    // ---- Device commands (staff.rs) ----

    /// Stores a command before it is published, with its audit entry
    /// (`device.command`, target `device:<site>/<device>`).
    async fn record_command(&self, command: &CommandRecord) -> Result<(), StoreError>;

    /// The broker accepted the command.
    async fn mark_command_published(
        &self,
        cmd_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    async fn command(&self, cmd_id: Uuid) -> Result<Option<CommandRecord>, StoreError>;

    /// A device's commands, newest first.
    async fn device_commands(
        &self,
        site: &SiteId,
        device: &DeviceId,
        limit: u32,
    ) -> Result<Vec<CommandRecord>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_url_password() {
        let config = StoreConfig {
            url: "postgres://central:s3cret@db:5432/central".into(),
            ..StoreConfig::default()
        };
        for shown in [format!("{config:?}"), format!("{config:#?}")] {
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(
                shown.contains("postgres://central:***@db:5432/central"),
                "{shown}"
            );
            assert!(shown.contains("job_max_attempts"), "{shown}");
        }
    }
}
