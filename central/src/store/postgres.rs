//! The PostgreSQL store (sqlx): production, shared by every replica.
//!
//! ```text
//! DESIGN
//!
//! A pool per process (`max_connections`), `lock_timeout` = the config's
//! `busy_timeout_ms`, default READ COMMITTED transactions. The schema is in
//! `central/migrations/postgres/` (the same tables as SQLite's in native
//! types: uuid, timestamptz, jsonb, bytea, bigint), applied at open by
//! sqlx's migrator, which holds an advisory lock: replicas starting
//! together migrate once. The database itself must exist.
//!
//! Concurrency: rows that several writers touch are updated with
//! `INSERT ... ON CONFLICT` or `UPDATE ... WHERE` on their current state,
//! which PostgreSQL re-checks after waiting for a concurrent writer's row
//! lock, so the last of two bridges storing an inspection's events sees
//! the other's frames and enqueues the job exactly once. Workers claim with
//! `SELECT ... FOR UPDATE SKIP LOCKED` (none waits for another's claim);
//! `record_result` locks the inspection row first, and so do the staff
//! writes (`review_finding`, `mark_reviewed`, `approve_charge`): a review
//! and a result of one inspection never interleave, and a rule checked on
//! what a staff write read (e.g. "no charge yet") still holds at its commit.
//! An erasure locks its inspections' rows too. The retention purge takes
//! its batch `FOR UPDATE SKIP LOCKED`: replicas purging at once delete
//! different rows and never wait on each other.
//!
//! ERRORS
//!
//! SQLSTATE 53100 (disk full) -> `Full`; class 08 (connection), 53000,
//! 53200, 53300, 53400 (resources), 57P01..57P03 (shutdown, starting up),
//! 57014 (cancelled), 40001, 40P01 (serialization, deadlock), 55P03 (lock
//! timeout), 25006 (read-only: a standby after failover), I/O errors, pool
//! timeouts and a closed pool -> `Unavailable` (both transient: retry
//! later; the pool opens new connections when the server is back); class
//! 22 and decode errors -> `Data`; 42P01/42703 (a table or column missing:
//! a schema older than this build) -> `Schema`; anything else -> `Database`.
//! A failed transaction is rolled back whole.
//! ```

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use inspection_core::geometry::BBox;
use inspection_core::ids::{CameraId, DeviceId, SiteId};
use inspection_core::wire::{Event, EventBody, Status, Telemetry};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Postgres, QueryBuilder, Row, Transaction};
use uuid::Uuid;

use super::common::{
    Standing, charge_audit, check_charge, check_finding_review, check_mark_reviewed, command_audit,
    enum_text, erased_inspection, erasure_audit, finding_audit, finding_counts,
    images_are_not_purged_here, images_purged_audit, lease_end, lease_expired_error, no_command,
    no_inspection, note_after, nothing_to_erase_by_plate, parse_enum, processed_audit, purge_audit,
    redact, redact_plate, review_begun, reviewed_audit,
};
use super::{
    AuditEntry, Charge, ClosedIncomplete, CommandRecord, DEAD_LETTER_MAX_PAYLOAD, DataClass,
    DeadLetter, DeviceRecord, Erasure, ErasurePlan, ErasureSelector, Finding, FindingDecision,
    FindingReview, FindingReviewRecord, FindingSource, FindingStatus, FrameRecord, ImageRef,
    InspectionListItem, InspectionQuery, InspectionRecord, InspectionResult, InspectionReview,
    InspectionStatus, Job, JobKind, JobRecord, JobState, JobStats, PlateReadRecord, Recorded,
    ReviewRecord, ReviewState, SiteRecord, SortOrder, Store, StoreConfig, StoreCounts, StoreError,
    StoredAudit, StoredDeadLetter, StoredEvent, VehicleRecord, central_time,
};

/// The PostgreSQL implementation of [`super::Store`].
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// `max_attempts` of new jobs.
    job_max_attempts: u32,
}

/// Maps a sqlx error to the store's error taxonomy (see the module doc).
pub(crate) fn map_error(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let message = format!("{} (SQLSTATE {code})", db.message());
            match code.as_str() {
                "53100" => StoreError::Full(message),
                "53000" | "53200" | "53300" | "53400" | "57P01" | "57P02" | "57P03" | "57014"
                | "40001" | "40P01" | "55P03" | "25006" => StoreError::Unavailable(message),
                c if c.starts_with("08") => StoreError::Unavailable(message),
                c if c.starts_with("22") => StoreError::Data(message),
                "42P01" | "42703" => StoreError::Schema(message),
                _ => StoreError::Database(message),
            }
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Io(_) => StoreError::Unavailable(e.to_string()),
        sqlx::Error::Tls(_) | sqlx::Error::Configuration(_) => StoreError::Config(e.to_string()),
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::Encode(_)
        | sqlx::Error::ColumnNotFound(_) => StoreError::Data(e.to_string()),
        sqlx::Error::Migrate(m) => StoreError::Schema(m.to_string()),
        _ => StoreError::Database(e.to_string()),
    }
}

fn seq_to_db(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq).map_err(|_| StoreError::Data(format!("seq {seq} does not fit in 63 bits")))
}

fn to_value<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(value).map_err(|e| StoreError::Data(e.to_string()))
}

fn from_value<T: serde::de::DeserializeOwned>(
    what: &str,
    value: serde_json::Value,
) -> Result<T, StoreError> {
    serde_json::from_value(value).map_err(|e| StoreError::Data(format!("stored {what}: {e}")))
}

impl PgStore {
    /// Connects and migrates. The database must exist; a server that cannot
    /// be reached is `Unavailable`.
    pub async fn open(config: &StoreConfig) -> Result<PgStore, StoreError> {
        if config.max_size_bytes.is_some() {
            return Err(StoreError::Config(
                "max_size_bytes is SQLite only; remove it for PostgreSQL".into(),
            ));
        }
        let options = PgConnectOptions::from_str(&config.url)
            .map_err(|e| StoreError::Config(format!("bad PostgreSQL URL: {e}")))?
            .application_name("central")
            // 0 would mean "no timeout" to PostgreSQL, "do not wait" to SQLite.
            .options([(
                "lock_timeout",
                format!("{}ms", config.busy_timeout_ms.max(1)),
            )]);
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(Duration::from_millis(config.busy_timeout_ms.max(1000)))
            .connect_with(options)
            .await
            .map_err(|e| match map_error(e) {
                StoreError::Unavailable(m) => {
                    StoreError::Unavailable(format!("cannot reach PostgreSQL: {m}"))
                }
                other => other,
            })?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| match e {
                sqlx::migrate::MigrateError::Execute(inner) => match map_error(inner) {
                    StoreError::Unavailable(m) => StoreError::Unavailable(m),
                    other => StoreError::Schema(other.to_string()),
                },
                other => StoreError::Schema(other.to_string()),
            })?;
        Ok(PgStore {
            pool,
            job_max_attempts: config.job_max_attempts.max(1),
        })
    }

    /// Closes the pool (waits for connections in use to come back).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn tx(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.pool.begin().await.map_err(map_error)
    }

    fn event_row(row: &PgRow) -> Result<StoredEvent, StoreError> {
        let payload: Json<Event> = row.try_get("payload").map_err(map_error)?;
        Ok(StoredEvent {
            event: payload.0,
            received_at: row.try_get("received_at").map_err(map_error)?,
        })
    }
}

type Tx = Transaction<'static, Postgres>;

/// Brings the inspection an (inserted) event belongs to up to date.
async fn update_inspection(
    tx: &mut Tx,
    event: &Event,
    inspection_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let (site, device) = (event.site.as_str(), event.device.as_str());
    match &event.event {
        EventBody::InspectionStarted { kind, .. } => {
            // The start on central's clock: the board's offset as it last
            // reported it (the module doc's CLOCKS).
            let offset: Option<i64> = sqlx::query_scalar(
                "SELECT (telemetry ->> 'central_clock_offset_ms')::bigint
                 FROM devices WHERE site = $1 AND device = $2",
            )
            .bind(site)
            .bind(device)
            .fetch_optional(&mut **tx)
            .await
            .map_err(map_error)?
            .flatten();
            sqlx::query(
                "INSERT INTO inspections (id, site, device, kind, started_at, started_at_central,
                                          first_seen_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $7, $6, $6)
                 ON CONFLICT (id) DO UPDATE SET
                    kind = excluded.kind, started_at = excluded.started_at,
                    started_at_central = excluded.started_at_central,
                    updated_at = excluded.updated_at",
            )
            .bind(inspection_id)
            .bind(site)
            .bind(device)
            .bind(enum_text(kind)?)
            .bind(event.at)
            .bind(now)
            .bind(central_time(event.at, offset))
            .execute(&mut **tx)
            .await
            .map_err(map_error)?;
        }
        EventBody::FrameSelected { .. } => {
            sqlx::query(
                "INSERT INTO inspections (id, site, device, frames_received, first_seen_at, updated_at)
                 VALUES ($1, $2, $3, 1, $4, $4)
                 ON CONFLICT (id) DO UPDATE SET
                    frames_received = inspections.frames_received + 1,
                    updated_at = excluded.updated_at",
            )
            .bind(inspection_id)
            .bind(site)
            .bind(device)
            .bind(now)
            .execute(&mut **tx)
            .await
            .map_err(map_error)?;
        }
        EventBody::InspectionCompleted { reason, frames, .. } => {
            sqlx::query(
                "INSERT INTO inspections (id, site, device, completed_at, completion_reason,
                                          frames_expected, first_seen_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
                 ON CONFLICT (id) DO UPDATE SET
                    completed_at = excluded.completed_at,
                    completion_reason = excluded.completion_reason,
                    frames_expected = excluded.frames_expected,
                    updated_at = excluded.updated_at",
            )
            .bind(inspection_id)
            .bind(site)
            .bind(device)
            .bind(event.at)
            .bind(enum_text(reason)?)
            .bind(i64::from(*frames))
            .bind(now)
            .execute(&mut **tx)
            .await
            .map_err(map_error)?;
        }
        EventBody::CommandResult { .. } => {}
    }
    Ok(())
}

async fn upsert_site(tx: &mut Tx, site: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO sites (site, first_seen_at, last_seen_at) VALUES ($1, $2, $2)
         ON CONFLICT (site) DO UPDATE SET
            last_seen_at = GREATEST(sites.last_seen_at, excluded.last_seen_at)",
    )
    .bind(site)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(map_error)?;
    Ok(())
}

/// Keeps a device's first answer to a command on the command's row: only
/// while it has none (a later `duplicate` never overwrites an `executed`),
/// and only from the device the command was sent to. No row (a command sent
/// from elsewhere, or purged) is no error: the event is stored all the same.
async fn record_command_result(tx: &mut Tx, event: &Event) -> Result<(), StoreError> {
    let EventBody::CommandResult {
        cmd_id,
        outcome,
        detail,
        ..
    } = &event.event
    else {
        return Ok(());
    };
    sqlx::query(
        "UPDATE commands SET outcome = $2, detail = $3, result_at = $4
         WHERE cmd_id = $1 AND site = $5 AND device = $6 AND outcome IS NULL",
    )
    .bind(cmd_id)
    .bind(enum_text(outcome)?)
    .bind(detail.as_deref())
    .bind(event.at)
    .bind(event.site.as_str())
    .bind(event.device.as_str())
    .execute(&mut **tx)
    .await
    .map_err(map_error)?;
    Ok(())
}

async fn queue_if_complete(
    tx: &mut Tx,
    id: Uuid,
    now: DateTime<Utc>,
    max_attempts: u32,
) -> Result<(), StoreError> {
    let became_complete = sqlx::query(
        "UPDATE inspections SET status = 'queued', status_detail = NULL, updated_at = $2
         WHERE id = $1 AND status = 'receiving'
           AND started_at IS NOT NULL AND completed_at IS NOT NULL
           AND frames_expected IS NOT NULL AND frames_received >= frames_expected",
    )
    .bind(id)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(map_error)?
    .rows_affected()
        == 1;
    if became_complete {
        insert_job(tx, JobKind::ProcessInspection, id, now, max_attempts).await?;
    }
    Ok(())
}

async fn insert_job(
    tx: &mut Tx,
    kind: JobKind,
    inspection_id: Uuid,
    now: DateTime<Utc>,
    max_attempts: u32,
) -> Result<Recorded, StoreError> {
    let max_attempts = i32::try_from(max_attempts).unwrap_or(i32::MAX);
    let inserted = sqlx::query(
        "INSERT INTO jobs (id, kind, inspection_id, state, attempts, max_attempts, run_at, enqueued_at)
         VALUES ($1, $2, $3, 'queued', 0, $4, $5, $5)
         ON CONFLICT DO NOTHING",
    )
    .bind(Uuid::now_v7())
    .bind(kind.as_str())
    .bind(inspection_id)
    .bind(max_attempts)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(map_error)?
    .rows_affected()
        == 1;
    Ok(if inserted {
        Recorded::Inserted
    } else {
        Recorded::Duplicate
    })
}

async fn set_status_in(
    tx: &mut Tx,
    id: Uuid,
    status: InspectionStatus,
    detail: Option<&str>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    Ok(sqlx::query(
        "UPDATE inspections SET status = $2, status_detail = $3, updated_at = $4 WHERE id = $1",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(detail)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(map_error)?
    .rows_affected()
        == 1)
}

async fn audit_in(tx: &mut Tx, entry: &AuditEntry) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "INSERT INTO audit_log (at, actor, action, target, before, after)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(entry.at)
    .bind(&entry.actor)
    .bind(&entry.action)
    .bind(&entry.target)
    .bind(entry.before.as_ref().map(Json))
    .bind(entry.after.as_ref().map(Json))
    .fetch_one(&mut **tx)
    .await
    .map_err(map_error)?;
    row.try_get("id").map_err(map_error)
}

/// The running job `job` if `worker` holds it, locked: (inspection id,
/// attempts, max_attempts).
async fn held_job(
    tx: &mut Tx,
    job: Uuid,
    worker: &str,
) -> Result<Option<(Uuid, i32, i32)>, StoreError> {
    let row = sqlx::query(
        "SELECT inspection_id, attempts, max_attempts FROM jobs
         WHERE id = $1 AND state = 'running' AND lease_owner = $2
         FOR UPDATE",
    )
    .bind(job)
    .bind(worker)
    .fetch_optional(&mut **tx)
    .await
    .map_err(map_error)?;
    row.map(|row| {
        Ok((
            row.try_get("inspection_id").map_err(map_error)?,
            row.try_get("attempts").map_err(map_error)?,
            row.try_get("max_attempts").map_err(map_error)?,
        ))
    })
    .transpose()
}

fn get<'r, T>(row: &'r PgRow, name: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(name).map_err(map_error)
}

fn u32_of(name: &str, n: i64) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(|_| StoreError::Data(format!("stored {name} {n} is not a u32")))
}

fn u32_col(row: &PgRow, name: &str) -> Result<u32, StoreError> {
    u32_of(name, get::<i64>(row, name)?)
}

fn opt_u32_col(row: &PgRow, name: &str) -> Result<Option<u32>, StoreError> {
    get::<Option<i64>>(row, name)?
        .map(|n| u32_of(name, n))
        .transpose()
}

fn int_col(row: &PgRow, name: &str) -> Result<u32, StoreError> {
    u32_of(name, i64::from(get::<i32>(row, name)?))
}

fn opt_bbox(row: &PgRow, cols: [&str; 4]) -> Result<Option<BBox>, StoreError> {
    let [x1, y1, x2, y2] = [
        get::<Option<f32>>(row, cols[0])?,
        get::<Option<f32>>(row, cols[1])?,
        get::<Option<f32>>(row, cols[2])?,
        get::<Option<f32>>(row, cols[3])?,
    ];
    Ok(match (x1, y1, x2, y2) {
        (Some(x1), Some(y1), Some(x2), Some(y2)) => Some(BBox { x1, y1, x2, y2 }),
        _ => None,
    })
}

fn camera_col(row: &PgRow) -> Result<CameraId, StoreError> {
    CameraId::new(get::<String>(row, "camera")?)
        .map_err(|e| StoreError::Data(format!("stored camera: {e}")))
}

/// An inspection from a row with the columns `inspection()` selects.
fn inspection_record(id: Uuid, row: &PgRow) -> Result<InspectionRecord, StoreError> {
    let data = |e: String| StoreError::Data(format!("inspection {id}: {e}"));
    let kind: Option<String> = get(row, "kind")?;
    let reason: Option<String> = get(row, "completion_reason")?;
    let frames_expected: Option<i64> = get(row, "frames_expected")?;
    let frames_received: i64 = get(row, "frames_received")?;
    let status: String = get(row, "status")?;
    Ok(InspectionRecord {
        id,
        site: SiteId::new(get::<String>(row, "site")?).map_err(|e| data(e.to_string()))?,
        device: DeviceId::new(get::<String>(row, "device")?).map_err(|e| data(e.to_string()))?,
        kind: kind.map(|k| parse_enum("kind", &k)).transpose()?,
        started_at: get(row, "started_at")?,
        started_at_central: get(row, "started_at_central")?,
        completed_at: get(row, "completed_at")?,
        completion_reason: reason
            .map(|r| parse_enum("completion_reason", &r))
            .transpose()?,
        frames_expected: frames_expected.map(|n| n.clamp(0, i64::from(u32::MAX)) as u32),
        frames_received: frames_received.clamp(0, i64::from(u32::MAX)) as u32,
        status: InspectionStatus::parse(&status)
            .ok_or_else(|| data(format!("unknown status {status:?}")))?,
        status_detail: get(row, "status_detail")?,
        plate: get(row, "plate")?,
        incomplete: get(row, "incomplete")?,
    })
}

fn finding_status(text: &str) -> Result<FindingStatus, StoreError> {
    FindingStatus::parse(text)
        .ok_or_else(|| StoreError::Data(format!("unknown finding status {text:?}")))
}

/// The review mark from `reviewed_at`, `reviewed_by` and `review_note`.
fn review_mark(row: &PgRow) -> Result<Option<InspectionReview>, StoreError> {
    let actor: Option<String> = get(row, "reviewed_by")?;
    let at: Option<DateTime<Utc>> = get(row, "reviewed_at")?;
    Ok(match (actor, at) {
        (Some(actor), Some(at)) => Some(InspectionReview {
            actor,
            at,
            note: get(row, "review_note")?,
        }),
        _ => None,
    })
}

/// What a staff write needs to know about the inspection, its row locked
/// until the commit (as `record_result` locks it); `NotFound` when there is
/// none.
async fn standing(tx: &mut Tx, id: Uuid) -> Result<Standing, StoreError> {
    let row = sqlx::query(
        "SELECT status, kind, reviewed_at, reviewed_by, review_note
         FROM inspections WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(map_error)?
    .ok_or_else(|| no_inspection(id))?;
    // A statement of its own, after the lock: under READ COMMITTED a
    // subquery of the locking statement would see the snapshot taken before
    // the lock wait, and miss a charge committed by the transaction that
    // held the lock (a decision could then change under an approved charge).
    let charged: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM charges WHERE inspection_id = $1)")
            .bind(id)
            .fetch_one(&mut **tx)
            .await
            .map_err(map_error)?;
    Ok(Standing {
        status: get(&row, "status")?,
        kind: get(&row, "kind")?,
        reviewed: review_mark(&row)?,
        charged,
    })
}

/// The inspection's findings with their current status, in result order.
async fn finding_statuses(tx: &mut Tx, id: Uuid) -> Result<Vec<(Uuid, FindingStatus)>, StoreError> {
    let rows = sqlx::query("SELECT id, status FROM findings WHERE inspection_id = $1 ORDER BY idx")
        .bind(id)
        .fetch_all(&mut **tx)
        .await
        .map_err(map_error)?;
    rows.iter()
        .map(|row| {
            let status: String = get(row, "status")?;
            Ok((get(row, "id")?, finding_status(&status)?))
        })
        .collect()
}

/// A review action from a `finding_reviews` row.
fn finding_review_record(row: &PgRow) -> Result<FindingReviewRecord, StoreError> {
    let decision: String = get(row, "decision")?;
    let before: String = get(row, "status_before")?;
    let after: String = get(row, "status_after")?;
    Ok(FindingReviewRecord {
        id: get(row, "id")?,
        inspection_id: get(row, "inspection_id")?,
        finding_id: get(row, "finding_id")?,
        decision: FindingDecision::parse(&decision)
            .ok_or_else(|| StoreError::Data(format!("unknown review decision {decision:?}")))?,
        note: get(row, "note")?,
        actor: get(row, "actor")?,
        at: get(row, "at")?,
        status_before: finding_status(&before)?,
        status_after: finding_status(&after)?,
    })
}

/// `coalesce(started_at, first_seen_at)`: search's sort key, spelled as the
/// `inspections_*_at` indexes spell it.
const AT: &str = "coalesce(started_at, first_seen_at)";

fn job_record(row: &PgRow) -> Result<JobRecord, StoreError> {
    let kind: String = get(row, "kind")?;
    let state: String = get(row, "state")?;
    Ok(JobRecord {
        id: get(row, "id")?,
        kind: JobKind::parse(&kind)
            .ok_or_else(|| StoreError::Data(format!("unknown job kind {kind:?}")))?,
        inspection_id: get(row, "inspection_id")?,
        state: JobState::parse(&state)
            .ok_or_else(|| StoreError::Data(format!("unknown job state {state:?}")))?,
        attempts: int_col(row, "attempts")?,
        max_attempts: int_col(row, "max_attempts")?,
        run_at: get(row, "run_at")?,
        lease_owner: get(row, "lease_owner")?,
        lease_until: get(row, "lease_until")?,
        last_error: get(row, "last_error")?,
        enqueued_at: get(row, "enqueued_at")?,
        finished_at: get(row, "finished_at")?,
    })
}

fn idx(i: usize) -> i32 {
    i32::try_from(i).unwrap_or(i32::MAX)
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn record_events(
        &self,
        events: &[Event],
        received_at: DateTime<Utc>,
    ) -> Result<Vec<Recorded>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let now = received_at;
        let mut tx = self.tx().await?;
        let mut recorded = Vec::with_capacity(events.len());
        let mut touched: Vec<Uuid> = Vec::new();
        let mut sites: Vec<&str> = Vec::new();
        for event in events {
            let seq = seq_to_db(event.seq)?;
            let inserted = sqlx::query(
                "INSERT INTO events (msg_id, site, device, seq, inspection_id, type, at, received_at, payload)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (msg_id) DO NOTHING",
            )
            .bind(event.msg_id)
            .bind(event.site.as_str())
            .bind(event.device.as_str())
            .bind(seq)
            .bind(event.inspection_id)
            .bind(event.event.name())
            .bind(event.at)
            .bind(now)
            .bind(Json(event))
            .execute(&mut *tx)
            .await
            .map_err(map_error)?
            .rows_affected()
                == 1;
            if !inserted {
                recorded.push(Recorded::Duplicate);
                continue;
            }
            sqlx::query(
                "INSERT INTO devices (site, device, last_seq, first_seen_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (site, device) DO UPDATE SET
                    last_seq = GREATEST(coalesce(devices.last_seq, excluded.last_seq), excluded.last_seq)",
            )
            .bind(event.site.as_str())
            .bind(event.device.as_str())
            .bind(seq)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
            if !sites.contains(&event.site.as_str()) {
                sites.push(event.site.as_str());
            }
            if let Some(id) = event.inspection_id {
                update_inspection(&mut tx, event, id, now).await?;
                if !touched.contains(&id) {
                    touched.push(id);
                }
            }
            record_command_result(&mut tx, event).await?;
            recorded.push(Recorded::Inserted);
        }
        for id in touched {
            queue_if_complete(&mut tx, id, now, self.job_max_attempts).await?;
        }
        // At the end and in order: a site's row is locked from here to the
        // commit only, and two batches lock their sites in the same order.
        sites.sort_unstable();
        for site in sites {
            upsert_site(&mut tx, site, now).await?;
        }
        tx.commit().await.map_err(map_error)?;
        Ok(recorded)
    }

    async fn record_status(
        &self,
        status: &Status,
        received_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.tx().await?;
        // `>=`: a last will carries the time its connection opened, which can
        // equal the `at` of the `online` status it replaces.
        sqlx::query(
            "INSERT INTO devices (site, device, status, status_at, status_received_at, first_seen_at)
             VALUES ($1, $2, $3, $4, $5, $5)
             ON CONFLICT (site, device) DO UPDATE SET
                status = excluded.status, status_at = excluded.status_at,
                status_received_at = excluded.status_received_at
             WHERE devices.status_at IS NULL OR excluded.status_at >= devices.status_at",
        )
        .bind(status.site.as_str())
        .bind(status.device.as_str())
        .bind(Json(status))
        .bind(status.at)
        .bind(received_at)
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        upsert_site(&mut tx, status.site.as_str(), received_at).await?;
        tx.commit().await.map_err(map_error)
    }

    async fn record_telemetry(
        &self,
        telemetry: &Telemetry,
        received_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.tx().await?;
        sqlx::query(
            "INSERT INTO devices (site, device, telemetry, telemetry_at, telemetry_received_at, first_seen_at)
             VALUES ($1, $2, $3, $4, $5, $5)
             ON CONFLICT (site, device) DO UPDATE SET
                telemetry = excluded.telemetry, telemetry_at = excluded.telemetry_at,
                telemetry_received_at = excluded.telemetry_received_at
             WHERE devices.telemetry_at IS NULL OR excluded.telemetry_at >= devices.telemetry_at",
        )
        .bind(telemetry.site.as_str())
        .bind(telemetry.device.as_str())
        .bind(Json(telemetry))
        .bind(telemetry.at)
        .bind(received_at)
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        upsert_site(&mut tx, telemetry.site.as_str(), received_at).await?;
        tx.commit().await.map_err(map_error)
    }

    async fn dead_letter(&self, letter: &DeadLetter) -> Result<i64, StoreError> {
        let kept = &letter.payload[..letter.payload.len().min(DEAD_LETTER_MAX_PAYLOAD)];
        let len = i64::try_from(letter.payload.len()).unwrap_or(i64::MAX);
        let row = sqlx::query(
            "INSERT INTO dead_letters (topic, payload, payload_len, reason, detail, received_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&letter.topic)
        .bind(kept)
        .bind(len)
        .bind(&letter.reason)
        .bind(&letter.detail)
        .bind(letter.received_at)
        .fetch_one(&self.pool)
        .await
        .map_err(map_error)?;
        get(&row, "id")
    }

    async fn event(&self, msg_id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        let row = sqlx::query("SELECT payload, received_at FROM events WHERE msg_id = $1")
            .bind(msg_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_error)?;
        row.as_ref().map(Self::event_row).transpose()
    }

    async fn device_events(
        &self,
        site: &SiteId,
        device: &DeviceId,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
        let rows = sqlx::query(
            "SELECT payload, received_at FROM events
             WHERE site = $1 AND device = $2 AND seq > $3
             ORDER BY seq, msg_id LIMIT $4",
        )
        .bind(site.as_str())
        .bind(device.as_str())
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map_error)?;
        rows.iter().map(Self::event_row).collect()
    }

    async fn inspection(&self, id: Uuid) -> Result<Option<InspectionRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT site, device, kind, started_at, completed_at, completion_reason,
                    frames_expected, frames_received, status, status_detail, plate, incomplete,
                    started_at_central
             FROM inspections WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_error)?;
        row.map(|row| inspection_record(id, &row)).transpose()
    }

    async fn device(
        &self,
        site: &SiteId,
        device: &DeviceId,
    ) -> Result<Option<DeviceRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT site, device, status, status_received_at, telemetry, telemetry_received_at,
                    last_seq
             FROM devices WHERE site = $1 AND device = $2",
        )
        .bind(site.as_str())
        .bind(device.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(map_error)?;
        row.as_ref().map(device_from_row).transpose()
    }

    async fn devices(
        &self,
        after: Option<(&SiteId, &DeviceId)>,
        limit: u32,
    ) -> Result<Vec<DeviceRecord>, StoreError> {
        let (site, device) = after.map_or(("", ""), |(s, d)| (s.as_str(), d.as_str()));
        let rows = sqlx::query(
            "SELECT site, device, status, status_received_at, telemetry, telemetry_received_at,
                    last_seq
             FROM devices WHERE (site, device) > ($1, $2)
             ORDER BY site, device LIMIT $3",
        )
        .bind(site)
        .bind(device)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map_error)?;
        rows.iter().map(device_from_row).collect()
    }

    async fn dead_letters(&self, limit: u32) -> Result<Vec<StoredDeadLetter>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, topic, payload, payload_len, reason, detail, received_at
             FROM dead_letters ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map_error)?;
        rows.iter()
            .map(|row| {
                let payload_len: i64 = get(row, "payload_len")?;
                Ok(StoredDeadLetter {
                    id: get(row, "id")?,
                    topic: get(row, "topic")?,
                    payload: get(row, "payload")?,
                    payload_len: payload_len.max(0) as u64,
                    reason: get(row, "reason")?,
                    detail: get(row, "detail")?,
                    received_at: get(row, "received_at")?,
                })
            })
            .collect()
    }

    async fn counts(&self) -> Result<StoreCounts, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT count(*) FROM events) AS events,
                    (SELECT count(*) FROM inspections) AS inspections,
                    (SELECT count(*) FROM dead_letters) AS dead_letters,
                    (SELECT count(*) FROM devices) AS devices",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(map_error)?;
        let count = |name: &str| -> Result<u64, StoreError> {
            let n: i64 = get(&row, name)?;
            Ok(n.max(0) as u64)
        };
        Ok(StoreCounts {
            events: count("events")?,
            inspections: count("inspections")?,
            dead_letters: count("dead_letters")?,
            devices: count("devices")?,
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn inspection_events(&self, id: Uuid) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT payload, received_at FROM events WHERE inspection_id = $1 ORDER BY seq, msg_id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(map_error)?;
        rows.iter().map(Self::event_row).collect()
    }

    async fn set_inspection_status(
        &self,
        id: Uuid,
        status: InspectionStatus,
        detail: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.tx().await?;
        let changed = set_status_in(&mut tx, id, status, detail, at).await?;
        tx.commit().await.map_err(map_error)?;
        Ok(changed)
    }

    async fn record_result(&self, result: &InspectionResult) -> Result<(), StoreError> {
        let id = result.inspection_id;
        let now = result.processed_at;
        let mut tx = self.tx().await?;
        // Locks the inspection: two results of one inspection are stored one
        // after the other, never interleaved.
        let before = sqlx::query(
            "SELECT status, plate, erased_at IS NOT NULL AS erased,
                    reviewed_at IS NOT NULL
                    OR EXISTS (SELECT 1 FROM finding_reviews WHERE inspection_id = $1)
                    OR EXISTS (SELECT 1 FROM charges WHERE inspection_id = $1) AS review_begun
             FROM inspections WHERE id = $1 FOR UPDATE",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_error)?
        .ok_or_else(|| {
            StoreError::Data(format!(
                "no inspection {id} to record a result for (its events come first)"
            ))
        })?;
        // An erased inspection's plate is never written back (the erasure
        // locks the same row).
        if get::<bool>(&before, "erased")? {
            return Err(erased_inspection(id));
        }
        // Staff decisions are never replaced (refused before any change;
        // staff writes lock the same row).
        if get::<bool>(&before, "review_begun")? {
            return Err(review_begun(id));
        }
        let before_status: String = get(&before, "status")?;
        let before_plate: Option<String> = get(&before, "plate")?;
        for table in [
            "DELETE FROM frames WHERE inspection_id = $1",
            "DELETE FROM findings WHERE inspection_id = $1",
            "DELETE FROM plate_reads WHERE inspection_id = $1",
        ] {
            sqlx::query(table)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(map_error)?;
        }
        let vehicle_id: Option<Uuid> = match &result.plate {
            Some(plate) => {
                let row = sqlx::query(
                    "INSERT INTO vehicles (id, plate, country, display, first_seen_at, last_seen_at)
                     VALUES ($1, $2, $3, $4, $5, $5)
                     ON CONFLICT (plate) DO UPDATE SET
                        country = excluded.country, display = excluded.display,
                        last_seen_at = GREATEST(vehicles.last_seen_at, excluded.last_seen_at)
                     RETURNING id",
                )
                .bind(Uuid::now_v7())
                .bind(&plate.plate)
                .bind(&plate.country)
                .bind(&plate.display)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(map_error)?;
                Some(get(&row, "id")?)
            }
            None => None,
        };
        sqlx::query(
            "UPDATE inspections SET
                status = 'processed', status_detail = NULL, vehicle_id = $2, plate = $3,
                processed_at = $4, worker = $5, damage_model = $6, plate_models = $7,
                comparison = $8, summary = $9, plate_json = $10, updated_at = $4
             WHERE id = $1",
        )
        .bind(id)
        .bind(vehicle_id)
        .bind(result.plate.as_ref().map(|p| p.plate.as_str()))
        .bind(now)
        .bind(&result.worker)
        .bind(Json(to_value(&result.damage_model)?))
        .bind(Json(to_value(&result.plate_models)?))
        .bind(Json(to_value(&result.comparison)?))
        .bind(Json(to_value(&result.summary)?))
        .bind(result.plate.as_ref().map(to_value).transpose()?.map(Json))
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        for (i, frame) in result.frames.iter().enumerate() {
            let vb = frame.vehicle_box;
            sqlx::query(
                "INSERT INTO frames (inspection_id, idx, camera, position, sha256, rank, state,
                    state_json, width, height, sharpness, brightness,
                    vehicle_x1, vehicle_y1, vehicle_x2, vehicle_y2)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
            )
            .bind(id)
            .bind(idx(i))
            .bind(frame.camera.as_str())
            .bind(&frame.position)
            .bind(&frame.sha256)
            .bind(i64::from(frame.rank))
            .bind(frame.state.name())
            .bind(Json(to_value(&frame.state)?))
            .bind(frame.width.map(i64::from))
            .bind(frame.height.map(i64::from))
            .bind(frame.sharpness)
            .bind(frame.brightness)
            .bind(vb.map(|b| b.x1))
            .bind(vb.map(|b| b.y1))
            .bind(vb.map(|b| b.x2))
            .bind(vb.map(|b| b.y2))
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
        }
        for (i, finding) in result.findings.iter().enumerate() {
            let vb = finding.vehicle_bbox;
            sqlx::query(
                "INSERT INTO findings (id, inspection_id, idx, camera, position, sha256, class,
                    confidence, source, status, x1, y1, x2, y2, vx1, vy1, vx2, vy2,
                    matched_finding)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                    $16, $17, $18, $19)",
            )
            .bind(finding.id)
            .bind(id)
            .bind(idx(i))
            .bind(finding.camera.as_str())
            .bind(&finding.position)
            .bind(&finding.sha256)
            .bind(&finding.class)
            .bind(finding.confidence)
            .bind(finding.source.as_str())
            .bind(finding.status.as_str())
            .bind(finding.bbox.x1)
            .bind(finding.bbox.y1)
            .bind(finding.bbox.x2)
            .bind(finding.bbox.y2)
            .bind(vb.map(|b| b.x1))
            .bind(vb.map(|b| b.y1))
            .bind(vb.map(|b| b.x2))
            .bind(vb.map(|b| b.y2))
            .bind(finding.matched_finding)
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
        }
        for (i, read) in result.plate_reads.iter().enumerate() {
            let b = read.bbox;
            sqlx::query(
                "INSERT INTO plate_reads (inspection_id, idx, camera, sha256, outcome,
                    x1, y1, x2, y2, box_source, raw_text, plate, country, confidence)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            )
            .bind(id)
            .bind(idx(i))
            .bind(read.camera.as_str())
            .bind(&read.sha256)
            .bind(enum_text(&read.outcome)?)
            .bind(b.map(|b| b.x1))
            .bind(b.map(|b| b.y1))
            .bind(b.map(|b| b.x2))
            .bind(b.map(|b| b.y2))
            .bind(read.box_source.as_ref().map(enum_text).transpose()?)
            .bind(read.raw_text.as_deref())
            .bind(read.plate.as_deref())
            .bind(read.country.as_deref())
            .bind(read.confidence)
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
        }
        audit_in(
            &mut tx,
            &processed_audit(result, &before_status, before_plate.as_deref()),
        )
        .await?;
        tx.commit().await.map_err(map_error)
    }

    async fn inspection_result(&self, id: Uuid) -> Result<Option<InspectionResult>, StoreError> {
        // One snapshot: a concurrent `record_result` cannot mix two results.
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(map_error)?;
        let row = sqlx::query(
            "SELECT processed_at, worker, damage_model, plate_models, comparison, summary,
                    plate_json
             FROM inspections WHERE id = $1 AND processed_at IS NOT NULL",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_error)?;
        let Some(row) = row else { return Ok(None) };
        let json = |name: &str| -> Result<serde_json::Value, StoreError> {
            get::<Option<Json<serde_json::Value>>>(&row, name)?
                .map(|j| j.0)
                .ok_or_else(|| StoreError::Data(format!("inspection {id}: no {name}")))
        };
        let worker: Option<String> = get(&row, "worker")?;
        let plate: Option<Json<serde_json::Value>> = get(&row, "plate_json")?;
        let mut result = InspectionResult {
            inspection_id: id,
            processed_at: get(&row, "processed_at")?,
            worker: worker.unwrap_or_default(),
            damage_model: from_value("damage_model", json("damage_model")?)?,
            plate_models: from_value("plate_models", json("plate_models")?)?,
            frames: Vec::new(),
            findings: Vec::new(),
            plate_reads: Vec::new(),
            plate: plate.map(|p| from_value("plate", p.0)).transpose()?,
            comparison: from_value("comparison", json("comparison")?)?,
            summary: from_value("summary", json("summary")?)?,
        };
        let rows = sqlx::query("SELECT * FROM frames WHERE inspection_id = $1 ORDER BY idx")
            .bind(id)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_error)?;
        for row in &rows {
            let state: Json<serde_json::Value> = get(row, "state_json")?;
            result.frames.push(FrameRecord {
                camera: camera_col(row)?,
                position: get(row, "position")?,
                sha256: get(row, "sha256")?,
                rank: u32_col(row, "rank")?,
                state: from_value("frame state", state.0)?,
                width: opt_u32_col(row, "width")?,
                height: opt_u32_col(row, "height")?,
                sharpness: get(row, "sharpness")?,
                brightness: get(row, "brightness")?,
                vehicle_box: opt_bbox(
                    row,
                    ["vehicle_x1", "vehicle_y1", "vehicle_x2", "vehicle_y2"],
                )?,
            });
        }
        let rows = sqlx::query("SELECT * FROM findings WHERE inspection_id = $1 ORDER BY idx")
            .bind(id)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_error)?;
        for row in &rows {
            let source: String = get(row, "source")?;
            let status: String = get(row, "status")?;
            result.findings.push(Finding {
                id: get(row, "id")?,
                camera: camera_col(row)?,
                position: get(row, "position")?,
                sha256: get(row, "sha256")?,
                class: get(row, "class")?,
                confidence: get(row, "confidence")?,
                source: parse_enum::<FindingSource>("finding source", &source)?,
                status: FindingStatus::parse(&status).ok_or_else(|| {
                    StoreError::Data(format!("unknown finding status {status:?}"))
                })?,
                bbox: BBox {
                    x1: get(row, "x1")?,
                    y1: get(row, "y1")?,
                    x2: get(row, "x2")?,
                    y2: get(row, "y2")?,
                },
                vehicle_bbox: opt_bbox(row, ["vx1", "vy1", "vx2", "vy2"])?,
                matched_finding: get(row, "matched_finding")?,
            });
        }
        let rows = sqlx::query("SELECT * FROM plate_reads WHERE inspection_id = $1 ORDER BY idx")
            .bind(id)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_error)?;
        for row in &rows {
            let outcome: String = get(row, "outcome")?;
            let box_source: Option<String> = get(row, "box_source")?;
            result.plate_reads.push(PlateReadRecord {
                camera: camera_col(row)?,
                sha256: get(row, "sha256")?,
                outcome: parse_enum("plate outcome", &outcome)?,
                bbox: opt_bbox(row, ["x1", "y1", "x2", "y2"])?,
                box_source: box_source
                    .map(|s| parse_enum("plate box source", &s))
                    .transpose()?,
                raw_text: get(row, "raw_text")?,
                plate: get(row, "plate")?,
                country: get(row, "country")?,
                confidence: get(row, "confidence")?,
            });
        }
        tx.commit().await.map_err(map_error)?;
        Ok(Some(result))
    }

    async fn latest_pickup(
        &self,
        plate: &str,
        before: DateTime<Utc>,
    ) -> Result<Option<Uuid>, StoreError> {
        let row = sqlx::query(
            "SELECT id FROM inspections
             WHERE plate = $1 AND kind = 'pickup' AND status = 'processed'
               AND COALESCE(started_at_central, started_at) < $2
             ORDER BY COALESCE(started_at_central, started_at) DESC, id DESC LIMIT 1",
        )
        .bind(plate)
        .bind(before)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_error)?;
        row.map(|row| get(&row, "id")).transpose()
    }

    async fn enqueue_job(
        &self,
        kind: JobKind,
        inspection_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Recorded, StoreError> {
        let mut tx = self.tx().await?;
        let recorded = insert_job(&mut tx, kind, inspection_id, now, self.job_max_attempts).await?;
        if recorded == Recorded::Inserted {
            set_status_in(&mut tx, inspection_id, InspectionStatus::Queued, None, now).await?;
        }
        tx.commit().await.map_err(map_error)?;
        Ok(recorded)
    }

    async fn claim_job(
        &self,
        worker: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<Job>, StoreError> {
        let until = lease_end(now, lease)?;
        let mut tx = self.tx().await?;
        let job = loop {
            let row = sqlx::query(
                "SELECT id, kind, inspection_id, state, attempts, max_attempts, run_at,
                        lease_owner, lease_until, last_error, enqueued_at, finished_at
                 FROM jobs
                 WHERE (state = 'queued' AND run_at <= $1)
                    OR (state = 'running' AND lease_until < $1)
                 ORDER BY enqueued_at, id LIMIT 1
                 FOR UPDATE SKIP LOCKED",
            )
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_error)?;
            let Some(row) = row else { break None };
            let record = job_record(&row)?;
            if record.state == JobState::Running && record.attempts >= record.max_attempts {
                let error =
                    lease_expired_error(record.lease_owner.as_deref(), record.attempts.into());
                sqlx::query(
                    "UPDATE jobs SET state = 'dead', finished_at = $2, lease_until = NULL,
                        last_error = $3
                     WHERE id = $1",
                )
                .bind(record.id)
                .bind(now)
                .bind(&error)
                .execute(&mut *tx)
                .await
                .map_err(map_error)?;
                set_status_in(
                    &mut tx,
                    record.inspection_id,
                    InspectionStatus::Failed,
                    Some(&error),
                    now,
                )
                .await?;
                continue;
            }
            sqlx::query(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = $2,
                    lease_until = $3
                 WHERE id = $1",
            )
            .bind(record.id)
            .bind(worker)
            .bind(until)
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
            set_status_in(
                &mut tx,
                record.inspection_id,
                InspectionStatus::Processing,
                None,
                now,
            )
            .await?;
            break Some(Job {
                id: record.id,
                kind: record.kind,
                inspection_id: record.inspection_id,
                attempt: record.attempts + 1,
                max_attempts: record.max_attempts,
                enqueued_at: record.enqueued_at,
                lease_until: until,
            });
        };
        tx.commit().await.map_err(map_error)?;
        Ok(job)
    }

    async fn heartbeat_job(
        &self,
        job: Uuid,
        worker: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let until = lease_end(now, lease)?;
        Ok(sqlx::query(
            "UPDATE jobs SET lease_until = $3
             WHERE id = $1 AND state = 'running' AND lease_owner = $2",
        )
        .bind(job)
        .bind(worker)
        .bind(until)
        .execute(&self.pool)
        .await
        .map_err(map_error)?
        .rows_affected()
            == 1)
    }

    async fn complete_job(
        &self,
        job: Uuid,
        worker: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "UPDATE jobs SET state = 'done', finished_at = $3, lease_until = NULL
             WHERE id = $1 AND state = 'running' AND lease_owner = $2",
        )
        .bind(job)
        .bind(worker)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(map_error)?
        .rows_affected()
            == 1)
    }

    async fn fail_job(
        &self,
        job: Uuid,
        worker: &str,
        error: &str,
        retry_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<JobState>, StoreError> {
        let mut tx = self.tx().await?;
        let Some((inspection, attempts, max_attempts)) = held_job(&mut tx, job, worker).await?
        else {
            return Ok(None);
        };
        let state = if attempts >= max_attempts {
            sqlx::query(
                "UPDATE jobs SET state = 'dead', finished_at = $2, lease_until = NULL,
                    last_error = $3
                 WHERE id = $1",
            )
            .bind(job)
            .bind(now)
            .bind(error)
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
            set_status_in(
                &mut tx,
                inspection,
                InspectionStatus::Failed,
                Some(error),
                now,
            )
            .await?;
            JobState::Dead
        } else {
            sqlx::query(
                "UPDATE jobs SET state = 'queued', run_at = $2, lease_owner = NULL,
                    lease_until = NULL, last_error = $3
                 WHERE id = $1",
            )
            .bind(job)
            .bind(retry_at)
            .bind(error)
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
            set_status_in(
                &mut tx,
                inspection,
                InspectionStatus::Queued,
                Some(error),
                now,
            )
            .await?;
            JobState::Queued
        };
        tx.commit().await.map_err(map_error)?;
        Ok(Some(state))
    }

    async fn defer_job(
        &self,
        job: Uuid,
        worker: &str,
        until: DateTime<Utc>,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.tx().await?;
        let Some((inspection, _, _)) = held_job(&mut tx, job, worker).await? else {
            return Ok(false);
        };
        sqlx::query(
            "UPDATE jobs SET state = 'queued', run_at = $2, attempts = GREATEST(attempts - 1, 0),
                lease_owner = NULL, lease_until = NULL
             WHERE id = $1",
        )
        .bind(job)
        .bind(until)
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        set_status_in(
            &mut tx,
            inspection,
            InspectionStatus::WaitingForImages,
            Some(reason),
            now,
        )
        .await?;
        tx.commit().await.map_err(map_error)?;
        Ok(true)
    }

    async fn job_stats(&self, now: DateTime<Utc>) -> Result<JobStats, StoreError> {
        let row = sqlx::query(
            "SELECT
                count(*) FILTER (WHERE (state = 'queued' AND run_at <= $1)
                                    OR (state = 'running' AND lease_until < $1)) AS ready,
                count(*) FILTER (WHERE state = 'queued' AND run_at > $1) AS scheduled,
                count(*) FILTER (WHERE state = 'running' AND lease_until >= $1) AS running,
                count(*) FILTER (WHERE state = 'dead') AS dead,
                min(enqueued_at) FILTER (WHERE (state = 'queued' AND run_at <= $1)
                                            OR (state = 'running' AND lease_until < $1)) AS oldest
             FROM jobs WHERE state <> 'done'",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(map_error)?;
        let count = |name: &str| -> Result<u64, StoreError> {
            let n: i64 = get(&row, name)?;
            Ok(n.max(0) as u64)
        };
        let oldest: Option<DateTime<Utc>> = get(&row, "oldest")?;
        Ok(JobStats {
            ready: count("ready")?,
            scheduled: count("scheduled")?,
            running: count("running")?,
            dead: count("dead")?,
            oldest_ready_age: oldest.map(|t| (now - t).to_std().unwrap_or_default()),
        })
    }

    async fn close_incomplete(
        &self,
        grace: std::time::Duration,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ClosedIncomplete>, StoreError> {
        let seen_before = now - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        let rows = sqlx::query(
            "SELECT i.id, i.site, i.device, i.frames_expected, i.frames_received, d.telemetry_at
             FROM inspections i
             JOIN devices d ON d.site = i.site AND d.device = i.device
             WHERE i.status = 'receiving' AND i.started_at IS NOT NULL AND i.kind IS NOT NULL
               AND i.first_seen_at <= $1
               AND d.telemetry_at >= i.started_at + make_interval(secs => $3)
               AND d.telemetry_received_at >= i.first_seen_at + make_interval(secs => $3)
               AND (d.telemetry -> 'outbox' ->> 'entries')::bigint = 0
             ORDER BY i.first_seen_at, i.id LIMIT $2",
        )
        .bind(seen_before)
        .bind(i64::from(limit))
        .bind(grace.as_secs_f64())
        .fetch_all(&self.pool)
        .await
        .map_err(map_error)?;
        let mut closed = Vec::new();
        for row in &rows {
            let id: Uuid = get(row, "id")?;
            let data = |e: String| StoreError::Data(format!("inspection {id}: {e}"));
            let close = ClosedIncomplete::new(
                id,
                SiteId::new(get::<String>(row, "site")?).map_err(|e| data(e.to_string()))?,
                DeviceId::new(get::<String>(row, "device")?).map_err(|e| data(e.to_string()))?,
                u32_col(row, "frames_received")?,
                opt_u32_col(row, "frames_expected")?,
                get(row, "telemetry_at")?,
            );
            let mut tx = self.tx().await?;
            let moved = sqlx::query(
                "UPDATE inspections SET status = 'queued', status_detail = $2, incomplete = $2,
                        updated_at = $3
                 WHERE id = $1 AND status = 'receiving'",
            )
            .bind(id)
            .bind(&close.detail)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(map_error)?
            .rows_affected()
                == 1;
            if moved {
                insert_job(
                    &mut tx,
                    JobKind::ProcessInspection,
                    id,
                    now,
                    self.job_max_attempts,
                )
                .await?;
            }
            tx.commit().await.map_err(map_error)?;
            if moved {
                closed.push(close);
            }
        }
        Ok(closed)
    }

    async fn inspection_jobs(&self, id: Uuid) -> Result<Vec<JobRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, kind, inspection_id, state, attempts, max_attempts, run_at,
                    lease_owner, lease_until, last_error, enqueued_at, finished_at
             FROM jobs WHERE inspection_id = $1 ORDER BY enqueued_at, id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(map_error)?;
        rows.iter().map(job_record).collect()
    }

    async fn record_report(&self, report: &crate::report::Report) -> Result<(), StoreError> {
        let mut tx = self.tx().await?;
        sqlx::query(
            "INSERT INTO reports (id, inspection_id, writer, language, summary, narrative,
                                  created_at, model, attempts)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(report.id)
        .bind(report.inspection_id)
        .bind(&report.writer)
        .bind(report.language.code())
        .bind(Json(&report.summary))
        .bind(&report.narrative)
        .bind(report.created_at)
        .bind(report.model.as_deref())
        .bind(Json(&report.attempts))
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        tx.commit().await.map_err(map_error)?;
        Ok(())
    }

    async fn reports(&self, inspection_id: Uuid) -> Result<Vec<crate::report::Report>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, writer, language, summary, narrative, created_at, model, attempts
             FROM reports WHERE inspection_id = $1 ORDER BY created_at DESC, id DESC",
        )
        .bind(inspection_id)
        .fetch_all(&self.pool)
        .await
        .map_err(map_error)?;
        rows.iter()
            .map(|row| {
                let id: Uuid = get(row, "id")?;
                let language: String = get(row, "language")?;
                let summary: Json<crate::report::ReportSummary> = get(row, "summary")?;
                let attempts: Json<Vec<crate::report::Attempt>> = get(row, "attempts")?;
                Ok(crate::report::Report {
                    id,
                    inspection_id,
                    writer: get(row, "writer")?,
                    model: get(row, "model")?,
                    language: crate::report::Language::parse(&language).ok_or_else(|| {
                        StoreError::Data(format!("report {id}: language {language:?}"))
                    })?,
                    summary: summary.0,
                    narrative: get(row, "narrative")?,
                    attempts: attempts.0,
                    created_at: get(row, "created_at")?,
                })
            })
            .collect()
    }

    async fn audit(&self, entry: &AuditEntry) -> Result<i64, StoreError> {
        let mut tx = self.tx().await?;
        let id = audit_in(&mut tx, entry).await?;
        tx.commit().await.map_err(map_error)?;
        Ok(id)
    }

    async fn audit_log(
        &self,
        target: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredAudit>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, target, before, after FROM audit_log
             WHERE $1::text IS NULL OR target = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(target)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map_error)?;
        rows.iter()
            .map(|row| {
                let before: Option<Json<serde_json::Value>> = get(row, "before")?;
                let after: Option<Json<serde_json::Value>> = get(row, "after")?;
                Ok(StoredAudit {
                    id: get(row, "id")?,
                    entry: AuditEntry {
                        at: get(row, "at")?,
                        actor: get(row, "actor")?,
                        action: get(row, "action")?,
                        target: get(row, "target")?,
                        before: before.map(|j| j.0),
                        after: after.map(|j| j.0),
                    },
                })
            })
            .collect()
    }

    async fn search_inspections(
        &self,
        query: &InspectionQuery,
    ) -> Result<Vec<InspectionListItem>, StoreError> {
        if query.limit == 0 || query.sites.as_ref().is_some_and(Vec::is_empty) {
            return Ok(Vec::new());
        }
        let mut sql = QueryBuilder::<Postgres>::new(format!(
            "SELECT id, site, device, kind, started_at, completed_at, completion_reason,
                    frames_expected, frames_received, status, status_detail, plate, incomplete,
                    started_at_central,
                    {AT} AS at, reviewed_at, reviewed_by, review_note, erased_at,
                    EXISTS (SELECT 1 FROM charges WHERE charges.inspection_id = inspections.id)
                      AS charged,
                    (SELECT count(*) FROM frames WHERE frames.inspection_id = inspections.id
                       AND frames.image_purged_at IS NOT NULL) AS images_purged
             FROM inspections WHERE true"
        ));
        if let Some(id) = &query.id {
            sql.push(" AND id = ").push_bind(*id);
        }
        if let Some(plate) = &query.plate {
            sql.push(" AND plate = ").push_bind(plate.clone());
        }
        if let Some(sites) = &query.sites {
            let sites: Vec<String> = sites.iter().map(|s| s.as_str().to_owned()).collect();
            sql.push(" AND site = ANY(").push_bind(sites).push(")");
        }
        if let Some(device) = &query.device {
            sql.push(" AND device = ")
                .push_bind(device.as_str().to_owned());
        }
        if let Some(kind) = &query.kind {
            sql.push(" AND kind = ").push_bind(enum_text(kind)?);
        }
        if let Some(status) = query.status {
            sql.push(" AND status = ").push_bind(status.as_str());
        }
        match query.review {
            Some(ReviewState::Pending) => {
                sql.push(" AND status = 'processed' AND reviewed_at IS NULL");
            }
            Some(ReviewState::Reviewed) => {
                sql.push(" AND reviewed_at IS NOT NULL");
            }
            None => {}
        }
        if let Some(from) = query.from {
            sql.push(format!(" AND {AT} >= ")).push_bind(from);
        }
        if let Some(to) = query.to {
            sql.push(format!(" AND {AT} < ")).push_bind(to);
        }
        let (after, order) = match query.order {
            SortOrder::NewestFirst => ("<", "DESC"),
            SortOrder::OldestFirst => (">", "ASC"),
        };
        if let Some(cursor) = &query.after {
            sql.push(format!(" AND ({AT}, id) {after} ("))
                .push_bind(cursor.at)
                .push(", ")
                .push_bind(cursor.id)
                .push(")");
        }
        sql.push(format!(" ORDER BY {AT} {order}, id {order} LIMIT "))
            .push_bind(i64::from(query.limit));
        // One snapshot: the counts are those of the listed rows.
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(map_error)?;
        let rows = sql.build().fetch_all(&mut *tx).await.map_err(map_error)?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: Uuid = get(row, "id")?;
            items.push(InspectionListItem {
                record: inspection_record(id, row)?,
                at: get(row, "at")?,
                findings: Vec::new(),
                reviewed: review_mark(row)?,
                charged: get(row, "charged")?,
                erased_at: get(row, "erased_at")?,
                images_purged: u32_col(row, "images_purged")?,
            });
        }
        if !items.is_empty() {
            let ids: Vec<Uuid> = items.iter().map(|i| i.record.id).collect();
            let counts = sqlx::query(
                "SELECT inspection_id, status, count(*) AS n FROM findings
                 WHERE inspection_id = ANY($1)
                 GROUP BY inspection_id, status",
            )
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_error)?;
            let mut by_inspection: std::collections::HashMap<Uuid, Vec<(FindingStatus, u32)>> =
                std::collections::HashMap::new();
            for row in &counts {
                let status: String = get(row, "status")?;
                by_inspection
                    .entry(get(row, "inspection_id")?)
                    .or_default()
                    .push((finding_status(&status)?, u32_col(row, "n")?));
            }
            for item in &mut items {
                if let Some(counts) = by_inspection.remove(&item.record.id) {
                    item.findings = finding_counts(counts);
                }
            }
        }
        tx.commit().await.map_err(map_error)?;
        Ok(items)
    }

    async fn review_record(&self, inspection_id: Uuid) -> Result<ReviewRecord, StoreError> {
        // One snapshot: a concurrent review cannot be half seen.
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(map_error)?;
        let rows = sqlx::query(
            "SELECT id, worker_status FROM findings
             WHERE inspection_id = $1 AND worker_status IS NOT NULL ORDER BY idx",
        )
        .bind(inspection_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_error)?;
        let worker_status = rows
            .iter()
            .map(|row| {
                let status: String = get(row, "worker_status")?;
                Ok((get(row, "id")?, finding_status(&status)?))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let rows = sqlx::query(
            "SELECT id, inspection_id, finding_id, decision, note, actor, at, status_before,
                    status_after
             FROM finding_reviews WHERE inspection_id = $1 ORDER BY id",
        )
        .bind(inspection_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_error)?;
        let actions = rows
            .iter()
            .map(finding_review_record)
            .collect::<Result<Vec<_>, StoreError>>()?;
        let reviewed = sqlx::query(
            "SELECT reviewed_at, reviewed_by, review_note FROM inspections WHERE id = $1",
        )
        .bind(inspection_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_error)?
        .map(|row| review_mark(&row))
        .transpose()?
        .flatten();
        let charge = sqlx::query(
            "SELECT id, findings, note, actor, at FROM charges WHERE inspection_id = $1",
        )
        .bind(inspection_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_error)?
        .map(|row| -> Result<Charge, StoreError> {
            let findings: Json<Vec<Uuid>> = get(&row, "findings")?;
            Ok(Charge {
                id: get(&row, "id")?,
                inspection_id,
                findings: findings.0,
                note: get(&row, "note")?,
                actor: get(&row, "actor")?,
                at: get(&row, "at")?,
            })
        })
        .transpose()?;
        tx.commit().await.map_err(map_error)?;
        Ok(ReviewRecord {
            worker_status,
            actions,
            reviewed,
            charge,
        })
    }

    async fn review_finding(
        &self,
        review: &FindingReview,
    ) -> Result<FindingReviewRecord, StoreError> {
        let mut tx = self.tx().await?;
        let standing = standing(&mut tx, review.inspection_id).await?;
        let finding = sqlx::query(
            "SELECT status, review_note FROM findings WHERE id = $1 AND inspection_id = $2",
        )
        .bind(review.finding_id)
        .bind(review.inspection_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_error)?;
        let (current, note_before) = match &finding {
            Some(row) => {
                let status: String = get(row, "status")?;
                let note: Option<String> = get(row, "review_note")?;
                (Some(finding_status(&status)?), note)
            }
            None => (None, None),
        };
        let (before, after) = check_finding_review(review, &standing, current)?;
        let note = note_after(review, note_before.as_deref());
        // The worker's status is kept from the first confirm or reject on.
        sqlx::query(
            "UPDATE findings SET status = $2, review_note = $3,
                worker_status = CASE WHEN $4 THEN coalesce(worker_status, status)
                                     ELSE worker_status END
             WHERE id = $1",
        )
        .bind(review.finding_id)
        .bind(after.as_str())
        .bind(note)
        .bind(review.decision != FindingDecision::Annotate)
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        let row = sqlx::query(
            "INSERT INTO finding_reviews (inspection_id, finding_id, decision, note, actor, at,
                                          status_before, status_after)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(review.inspection_id)
        .bind(review.finding_id)
        .bind(review.decision.as_str())
        .bind(review.note.as_deref())
        .bind(&review.actor)
        .bind(review.at)
        .bind(before.as_str())
        .bind(after.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(map_error)?;
        let id: i64 = get(&row, "id")?;
        audit_in(
            &mut tx,
            &finding_audit(review, (before, note_before.as_deref()), (after, note)),
        )
        .await?;
        tx.commit().await.map_err(map_error)?;
        Ok(FindingReviewRecord {
            id,
            inspection_id: review.inspection_id,
            finding_id: review.finding_id,
            decision: review.decision,
            note: review.note.clone(),
            actor: review.actor.clone(),
            at: review.at,
            status_before: before,
            status_after: after,
        })
    }

    async fn mark_reviewed(
        &self,
        inspection_id: Uuid,
        review: &InspectionReview,
    ) -> Result<(), StoreError> {
        let mut tx = self.tx().await?;
        let standing = standing(&mut tx, inspection_id).await?;
        let findings = finding_statuses(&mut tx, inspection_id).await?;
        check_mark_reviewed(inspection_id, &standing, &findings)?;
        sqlx::query(
            "UPDATE inspections SET reviewed_at = $2, reviewed_by = $3, review_note = $4
             WHERE id = $1",
        )
        .bind(inspection_id)
        .bind(review.at)
        .bind(&review.actor)
        .bind(review.note.as_deref())
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        audit_in(
            &mut tx,
            &reviewed_audit(inspection_id, standing.reviewed.as_ref(), review),
        )
        .await?;
        tx.commit().await.map_err(map_error)
    }

    async fn approve_charge(&self, charge: &Charge) -> Result<(), StoreError> {
        let mut tx = self.tx().await?;
        let standing = standing(&mut tx, charge.inspection_id).await?;
        let findings = finding_statuses(&mut tx, charge.inspection_id).await?;
        check_charge(charge, &standing, &findings)?;
        sqlx::query(
            "INSERT INTO charges (id, inspection_id, findings, note, actor, at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(charge.id)
        .bind(charge.inspection_id)
        .bind(Json(&charge.findings))
        .bind(charge.note.as_deref())
        .bind(&charge.actor)
        .bind(charge.at)
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        audit_in(&mut tx, &charge_audit(charge)).await?;
        tx.commit().await.map_err(map_error)
    }

    async fn vehicle(&self, plate: &str) -> Result<Option<VehicleRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT plate, display, country, first_seen_at, last_seen_at
             FROM vehicles WHERE plate = $1",
        )
        .bind(plate)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_error)?;
        row.map(|row| {
            Ok(VehicleRecord {
                plate: get(&row, "plate")?,
                display: get(&row, "display")?,
                country: get(&row, "country")?,
                first_seen_at: get(&row, "first_seen_at")?,
                last_seen_at: get(&row, "last_seen_at")?,
            })
        })
        .transpose()
    }

    async fn sites(&self) -> Result<Vec<SiteRecord>, StoreError> {
        // Byte order, as SQLite sorts, whatever the database's collation.
        let rows = sqlx::query(
            "SELECT site, first_seen_at, last_seen_at,
                    (SELECT count(*) FROM devices WHERE devices.site = sites.site) AS devices
             FROM sites ORDER BY site COLLATE \"C\"",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(map_error)?;
        rows.iter()
            .map(|row| {
                let site: String = get(row, "site")?;
                Ok(SiteRecord {
                    site: SiteId::new(site).map_err(|e| StoreError::Data(e.to_string()))?,
                    first_seen_at: get(row, "first_seen_at")?,
                    last_seen_at: get(row, "last_seen_at")?,
                    devices: u32_col(row, "devices")?,
                })
            })
            .collect()
    }

    async fn expired_images(
        &self,
        before: DateTime<Utc>,
        limit: u32,
        include_charged: bool,
    ) -> Result<Vec<ImageRef>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Oldest inspections first; an image stays while any inspection at or
        // after `before`, or (unless `include_charged`) any charged return or
        // the pickup a charged return was compared with, refers to it: the
        // charge's evidence is both sides.
        let rows = sqlx::query(
            "SELECT DISTINCT i.id AS inspection_id, f.sha256 AS sha256,
                    coalesce(i.started_at, i.first_seen_at) AS inspection_at
             FROM inspections i JOIN frames f ON f.inspection_id = i.id
             WHERE coalesce(i.started_at, i.first_seen_at) < $1
               AND f.image_purged_at IS NULL
               AND ($3 OR NOT (EXISTS (SELECT 1 FROM charges c WHERE c.inspection_id = i.id)
                            OR EXISTS (SELECT 1 FROM charges c JOIN inspections r ON r.id = c.inspection_id
                                       WHERE r.comparison->>'pickup_inspection_id' = i.id::text)))
               AND NOT EXISTS (
                   SELECT 1 FROM frames g JOIN inspections j ON j.id = g.inspection_id
                   WHERE g.sha256 = f.sha256
                     AND (coalesce(j.started_at, j.first_seen_at) >= $1
                          OR (NOT $3 AND (EXISTS (SELECT 1 FROM charges d WHERE d.inspection_id = j.id)
                                             OR EXISTS (SELECT 1 FROM charges d JOIN inspections r ON r.id = d.inspection_id
                                                        WHERE r.comparison->>'pickup_inspection_id' = j.id::text)))))
             ORDER BY inspection_at, inspection_id, sha256 LIMIT $2",
        )
        .bind(before)
        .bind(i64::from(limit))
        .bind(include_charged)
        .fetch_all(&self.pool)
        .await
        .map_err(map_error)?;
        rows.iter()
            .map(|row| {
                Ok(ImageRef {
                    inspection_id: get(row, "inspection_id")?,
                    sha256: get(row, "sha256")?,
                })
            })
            .collect()
    }

    async fn mark_images_purged(
        &self,
        images: &[ImageRef],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if images.is_empty() {
            return Ok(());
        }
        let (ids, shas): (Vec<Uuid>, Vec<String>) = images
            .iter()
            .map(|i| (i.inspection_id, i.sha256.clone()))
            .unzip();
        let mut tx = self.tx().await?;
        let frames = sqlx::query(
            "UPDATE frames SET image_purged_at = $3
             FROM unnest($1::uuid[], $2::text[]) AS purged (inspection_id, sha256)
             WHERE frames.inspection_id = purged.inspection_id
               AND frames.sha256 = purged.sha256 AND frames.image_purged_at IS NULL",
        )
        .bind(&ids)
        .bind(&shas)
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(map_error)?
        .rows_affected();
        // Already marked (another replica's purge): nothing to record.
        if frames > 0 {
            audit_in(&mut tx, &images_purged_audit(images, frames, at)).await?;
        }
        tx.commit().await.map_err(map_error)
    }

    async fn purge(
        &self,
        class: DataClass,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError> {
        if class == DataClass::Images {
            return Err(images_are_not_purged_here());
        }
        if limit == 0 {
            return Ok(0);
        }
        let limit = i64::from(limit);
        let mut tx = self.tx().await?;
        let deleted = match class {
            // Refused above; spelled out for the match.
            DataClass::Images => return Err(images_are_not_purged_here()),
            DataClass::Findings => {
                let rows = sqlx::query(
                    "SELECT id, vehicle_id FROM inspections
                     WHERE coalesce(started_at, first_seen_at) < $1
                     ORDER BY coalesce(started_at, first_seen_at), id LIMIT $2
                     FOR UPDATE SKIP LOCKED",
                )
                .bind(before)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await
                .map_err(map_error)?;
                let mut ids: Vec<Uuid> = Vec::with_capacity(rows.len());
                let mut vehicles: Vec<Uuid> = Vec::new();
                for row in &rows {
                    ids.push(get(row, "id")?);
                    if let Some(v) = get::<Option<Uuid>>(row, "vehicle_id")?
                        && !vehicles.contains(&v)
                    {
                        vehicles.push(v);
                    }
                }
                if ids.is_empty() {
                    0
                } else {
                    // Events have no foreign key; the rest cascades.
                    sqlx::query("DELETE FROM events WHERE inspection_id = ANY($1)")
                        .bind(&ids)
                        .execute(&mut *tx)
                        .await
                        .map_err(map_error)?;
                    let n = sqlx::query("DELETE FROM inspections WHERE id = ANY($1)")
                        .bind(&ids)
                        .execute(&mut *tx)
                        .await
                        .map_err(map_error)?
                        .rows_affected();
                    sqlx::query(
                        "DELETE FROM vehicles WHERE id = ANY($1)
                           AND NOT EXISTS (SELECT 1 FROM inspections
                                           WHERE inspections.vehicle_id = vehicles.id)",
                    )
                    .bind(&vehicles)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_error)?;
                    n
                }
            }
            DataClass::Reports => sqlx::query(
                "DELETE FROM reports WHERE id IN (
                    SELECT r.id FROM reports r JOIN inspections i ON i.id = r.inspection_id
                    WHERE coalesce(i.started_at, i.first_seen_at) < $1
                    ORDER BY coalesce(i.started_at, i.first_seen_at), r.created_at, r.id
                    LIMIT $2 FOR UPDATE OF r SKIP LOCKED)",
            )
            .bind(before)
            .bind(limit)
            .execute(&mut *tx)
            .await
            .map_err(map_error)?
            .rows_affected(),
            DataClass::Audit => sqlx::query(
                "DELETE FROM audit_log WHERE id IN (
                    SELECT id FROM audit_log WHERE at < $1 ORDER BY at, id LIMIT $2
                    FOR UPDATE SKIP LOCKED)",
            )
            .bind(before)
            .bind(limit)
            .execute(&mut *tx)
            .await
            .map_err(map_error)?
            .rows_affected(),
        };
        if deleted > 0 {
            audit_in(&mut tx, &purge_audit(class, deleted, &before)).await?;
        }
        tx.commit().await.map_err(map_error)?;
        Ok(deleted)
    }

    async fn erasure_plan(&self, selector: &ErasureSelector) -> Result<ErasurePlan, StoreError> {
        // One snapshot: the three lists agree.
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(map_error)?;
        let rows = match selector {
            ErasureSelector::Plate(plate) => sqlx::query(
                "SELECT id FROM inspections
                 WHERE id IN (SELECT id FROM inspections WHERE plate = $1
                              UNION SELECT inspection_id FROM plate_reads WHERE plate = $1)
                 ORDER BY coalesce(started_at, first_seen_at), id",
            )
            .bind(plate)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_error)?,
            ErasureSelector::Inspection(id) => {
                sqlx::query("SELECT id FROM inspections WHERE id = $1")
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(map_error)?
            }
        };
        if rows.is_empty() {
            return Err(match selector {
                ErasureSelector::Plate(plate) => nothing_to_erase_by_plate(plate),
                ErasureSelector::Inspection(id) => no_inspection(*id),
            });
        }
        let inspections = rows
            .iter()
            .map(|row| get::<Uuid>(row, "id"))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let rows = sqlx::query(
            "SELECT plate FROM inspections WHERE id = ANY($1) AND plate IS NOT NULL
             UNION
             SELECT plate FROM plate_reads WHERE inspection_id = ANY($1) AND plate IS NOT NULL",
        )
        .bind(&inspections)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_error)?;
        let mut plates = rows
            .iter()
            .map(|row| get::<String>(row, "plate"))
            .collect::<Result<Vec<_>, StoreError>>()?;
        if let ErasureSelector::Plate(plate) = selector {
            plates.push(plate.clone());
        }
        plates.sort_unstable();
        plates.dedup();
        // Byte order, as SQLite sorts, whatever the database's collation.
        let rows = sqlx::query(
            "SELECT DISTINCT f.sha256 COLLATE \"C\" AS sha256 FROM frames f
             WHERE f.inspection_id = ANY($1) AND f.image_purged_at IS NULL
               AND NOT EXISTS (
                   SELECT 1 FROM frames g
                   WHERE g.sha256 = f.sha256 AND g.inspection_id <> ALL($1))
             ORDER BY sha256",
        )
        .bind(&inspections)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_error)?;
        let images = rows
            .iter()
            .map(|row| get::<String>(row, "sha256"))
            .collect::<Result<Vec<_>, StoreError>>()?;
        tx.commit().await.map_err(map_error)?;
        Ok(ErasurePlan {
            inspections,
            plates,
            images,
        })
    }

    async fn erase(&self, plan: &ErasurePlan, erasure: &Erasure) -> Result<(), StoreError> {
        let ids = &plan.inspections;
        let at = erasure.at;
        let mut tx = self.tx().await?;
        // Locks the inspections (in id order), as `record_result` and the
        // staff writes lock them: none interleaves with the erasure.
        let rows = sqlx::query(
            "SELECT vehicle_id FROM inspections WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        )
        .bind(ids)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_error)?;
        let mut vehicles: Vec<Uuid> = Vec::new();
        for row in &rows {
            if let Some(v) = get::<Option<Uuid>>(row, "vehicle_id")?
                && !vehicles.contains(&v)
            {
                vehicles.push(v);
            }
        }
        // The reports name the plate: they go whole.
        sqlx::query("DELETE FROM reports WHERE inspection_id = ANY($1)")
            .bind(ids)
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
        sqlx::query(
            "UPDATE plate_reads SET raw_text = NULL, plate = NULL, country = NULL,
                x1 = NULL, y1 = NULL, x2 = NULL, y2 = NULL
             WHERE inspection_id = ANY($1)",
        )
        .bind(ids)
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        sqlx::query(
            "UPDATE inspections SET plate = NULL, plate_json = NULL, vehicle_id = NULL,
                erased_at = coalesce(erased_at, $2), updated_at = $2
             WHERE id = ANY($1)",
        )
        .bind(ids)
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        // The vehicle goes once no inspection refers to it (an erasure of one
        // inspection keeps the vehicle of its other inspections).
        sqlx::query(
            "DELETE FROM vehicles
             WHERE (id = ANY($1) OR plate = ANY($2))
               AND NOT EXISTS (SELECT 1 FROM inspections
                               WHERE inspections.vehicle_id = vehicles.id)",
        )
        .bind(&vehicles)
        .bind(&plan.plates)
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        sqlx::query(
            "UPDATE frames SET image_purged_at = $3
             WHERE inspection_id = ANY($1) AND sha256 = ANY($2) AND image_purged_at IS NULL",
        )
        .bind(ids)
        .bind(&plan.images)
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        // Staff notes may name the plate too, in any spelling.
        for (table, column, filter) in [
            ("findings", "review_note", "inspection_id"),
            ("finding_reviews", "note", "inspection_id"),
            ("inspections", "review_note", "id"),
            ("charges", "note", "inspection_id"),
        ] {
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT id::text AS k, {column} AS note FROM {table}
                 WHERE {filter} = ANY($1) AND {column} IS NOT NULL"
            )))
            .bind(ids)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_error)?;
            for row in &rows {
                let key: String = get(row, "k")?;
                let note: String = get(row, "note")?;
                let mut redacted = note.clone();
                for plate in &plan.plates {
                    if let Some(r) = redact_plate(&redacted, plate) {
                        redacted = r;
                    }
                }
                if redacted != note {
                    sqlx::query(AssertSqlSafe(format!(
                        "UPDATE {table} SET {column} = $1 WHERE id::text = $2"
                    )))
                    .bind(&redacted)
                    .bind(&key)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_error)?;
                }
            }
        }
        // The plate in these inspections' audit entries, redacted in place.
        let targets: Vec<String> = ids.iter().map(|id| format!("inspection:{id}")).collect();
        let rows = sqlx::query(
            "SELECT id, before, after FROM audit_log WHERE target = ANY($1) FOR UPDATE",
        )
        .bind(&targets)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_error)?;
        for row in &rows {
            let id: i64 = get(row, "id")?;
            let mut before: Option<Json<serde_json::Value>> = get(row, "before")?;
            let mut after: Option<Json<serde_json::Value>> = get(row, "after")?;
            let mut changed = false;
            for value in [&mut before, &mut after].into_iter().flatten() {
                changed |= redact(&mut value.0, &plan.plates);
            }
            if changed {
                sqlx::query("UPDATE audit_log SET before = $2, after = $3 WHERE id = $1")
                    .bind(id)
                    .bind(before)
                    .bind(after)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_error)?;
            }
        }
        audit_in(&mut tx, &erasure_audit(erasure, &plan.plates)).await?;
        tx.commit().await.map_err(map_error)
    }

    async fn record_command(&self, command: &CommandRecord) -> Result<(), StoreError> {
        let mut tx = self.tx().await?;
        sqlx::query(
            "INSERT INTO commands (cmd_id, site, device, kind, command, requested_by,
                requested_at, expires_at, published_at, outcome, detail, result_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(command.cmd_id)
        .bind(command.site.as_str())
        .bind(command.device.as_str())
        .bind(&command.kind)
        .bind(Json(&command.command))
        .bind(&command.requested_by)
        .bind(command.requested_at)
        .bind(command.expires_at)
        .bind(command.published_at)
        .bind(command.outcome.as_deref())
        .bind(command.detail.as_deref())
        .bind(command.result_at)
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        audit_in(&mut tx, &command_audit(command)).await?;
        tx.commit().await.map_err(map_error)
    }

    async fn mark_command_published(
        &self,
        cmd_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let found = sqlx::query("UPDATE commands SET published_at = $2 WHERE cmd_id = $1")
            .bind(cmd_id)
            .bind(at)
            .execute(&self.pool)
            .await
            .map_err(map_error)?
            .rows_affected()
            == 1;
        if found {
            Ok(())
        } else {
            Err(no_command(cmd_id))
        }
    }

    async fn command(&self, cmd_id: Uuid) -> Result<Option<CommandRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT cmd_id, site, device, kind, command, requested_by, requested_at, expires_at,
                    published_at, outcome, detail, result_at
             FROM commands WHERE cmd_id = $1",
        )
        .bind(cmd_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_error)?;
        row.as_ref().map(command_record).transpose()
    }

    async fn device_commands(
        &self,
        site: &SiteId,
        device: &DeviceId,
        limit: u32,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT cmd_id, site, device, kind, command, requested_by, requested_at, expires_at,
                    published_at, outcome, detail, result_at
             FROM commands WHERE site = $1 AND device = $2
             ORDER BY requested_at DESC, cmd_id DESC LIMIT $3",
        )
        .bind(site.as_str())
        .bind(device.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map_error)?;
        rows.iter().map(command_record).collect()
    }
}

/// A command from a `commands` row.
fn command_record(row: &PgRow) -> Result<CommandRecord, StoreError> {
    let site: String = get(row, "site")?;
    let device: String = get(row, "device")?;
    let command: Json<serde_json::Value> = get(row, "command")?;
    Ok(CommandRecord {
        cmd_id: get(row, "cmd_id")?,
        site: SiteId::new(site).map_err(|e| StoreError::Data(e.to_string()))?,
        device: DeviceId::new(device).map_err(|e| StoreError::Data(e.to_string()))?,
        command: command.0,
        kind: get(row, "kind")?,
        requested_by: get(row, "requested_by")?,
        requested_at: get(row, "requested_at")?,
        expires_at: get(row, "expires_at")?,
        published_at: get(row, "published_at")?,
        outcome: get(row, "outcome")?,
        detail: get(row, "detail")?,
        result_at: get(row, "result_at")?,
    })
}

fn device_from_row(row: &sqlx::postgres::PgRow) -> Result<DeviceRecord, StoreError> {
    let status: Option<Json<Status>> = get(row, "status")?;
    let telemetry: Option<Json<Telemetry>> = get(row, "telemetry")?;
    let last_seq: Option<i64> = get(row, "last_seq")?;
    let site: String = get(row, "site")?;
    let device: String = get(row, "device")?;
    Ok(DeviceRecord {
        site: SiteId::new(site).map_err(|e| StoreError::Data(e.to_string()))?,
        device: DeviceId::new(device).map_err(|e| StoreError::Data(e.to_string()))?,
        status: status.map(|s| s.0),
        status_received_at: get(row, "status_received_at")?,
        telemetry: telemetry.map(|t| t.0),
        telemetry_received_at: get(row, "telemetry_received_at")?,
        last_seq: last_seq.map(|s| s.max(0) as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_urls_parse() {
        let options = PgConnectOptions::from_str("postgres://central:pw@db:5433/central").unwrap();
        assert_eq!(options.get_port(), 5433);
        assert_eq!(options.get_host(), "db");
        assert_eq!(options.get_database(), Some("central"));
    }
}
