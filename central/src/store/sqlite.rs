//! The SQLite store (sqlx): the embedded default.
//!
//! ```text
//! DESIGN
//!
//! One database file in WAL mode with `synchronous = FULL`: an `Ok` from a
//! `record_*` call gates the ack that lets a device delete its copy, so the
//! commit must survive a power cut, not only a crash of this process.
//! Every write transaction starts with `BEGIN IMMEDIATE`, taking the write
//! lock up front: a deferred transaction that later upgrades can fail with
//! SQLITE_BUSY at once, whatever the busy timeout.
//!
//! The schema is in `central/migrations/sqlite/` (documented there), applied
//! by sqlx's migrator when the store opens. Times are RFC 3339 text with
//! microseconds and `Z`, so they compare as text; the event, status and
//! telemetry JSON is kept as received (validated) and is what the typed
//! values are read back from.
//!
//! The job queue needs no row locks here: `BEGIN IMMEDIATE` makes every
//! claim, heartbeat and completion a single writer, so two workers (in one
//! process or several on the same file) can never take the same job.
//! Results and vehicles are written as in `postgres.rs`, floats as REAL
//! (an f32 reads back bit for bit). The staff writes check their rules on
//! what they read inside their own `BEGIN IMMEDIATE` transaction, so the
//! rules still hold at the commit.
//!
//! Lists of ids (a purge's batch, an erasure's inspections) are bound as
//! one JSON array and read with `json_each`, as search does. The retention
//! purge and the erasure run in one `BEGIN IMMEDIATE` transaction each; an
//! erasure redacts the plate in audit JSON in Rust, inside it.
//!
//! ERRORS
//!
//! SQLITE_FULL (the disk, or `max_size_bytes`) -> `Full`; SQLITE_BUSY,
//! SQLITE_LOCKED, SQLITE_READONLY, SQLITE_IOERR, SQLITE_CANTOPEN, a pool
//! timeout or a closed pool -> `Unavailable` (both transient: retry later);
//! anything else -> `Database`. A failed transaction is rolled back whole.
//! ```

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use inspection_core::geometry::BBox;
use inspection_core::ids::{CameraId, DeviceId, SiteId};
use inspection_core::wire::{Event, EventBody, Status, Telemetry};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, QueryBuilder, Row, Sqlite, Transaction};
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

/// SQLite's page size, as set at open (also the default).
const PAGE_SIZE: u64 = 4096;

/// The SQLite implementation of [`super::Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The database file (`None` in memory), for messages.
    path: Option<PathBuf>,
    /// `max_attempts` of new jobs.
    job_max_attempts: u32,
}

/// Maps a sqlx error to the store's error taxonomy (see the module doc).
pub(crate) fn map_error(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) => {
            let code: i64 = db.code().and_then(|c| c.parse().ok()).unwrap_or(0);
            // Extended result codes carry the primary code in the low byte.
            match code & 0xff {
                // SQLITE_FULL
                13 => StoreError::Full(db.message().to_owned()),
                // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_READONLY, SQLITE_IOERR,
                // SQLITE_CANTOPEN
                5 | 6 | 8 | 10 | 14 => StoreError::Unavailable(db.message().to_owned()),
                _ => StoreError::Database(e.to_string()),
            }
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Io(_) => StoreError::Unavailable(e.to_string()),
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::Encode(_)
        | sqlx::Error::ColumnNotFound(_) => StoreError::Data(e.to_string()),
        sqlx::Error::Migrate(m) => StoreError::Schema(m.to_string()),
        _ => StoreError::Database(e.to_string()),
    }
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Data(format!("stored time {s:?}: {e}")))
}

fn seq_to_db(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq).map_err(|_| StoreError::Data(format!("seq {seq} does not fit in 63 bits")))
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Data(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Data(format!("stored {what}: {e}")))
}

/// The file a `sqlite:` URL names, `None` for an in-memory database.
fn sqlite_path(url: &str) -> Result<Option<PathBuf>, StoreError> {
    let rest = url
        .strip_prefix("sqlite:")
        .ok_or_else(|| StoreError::Config(format!("{url:?} is not a sqlite: URL")))?;
    if rest == ":memory:" || rest.starts_with(":memory:?") {
        return Ok(None);
    }
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() {
        return Err(StoreError::Config(format!(
            "{url:?} names no database file"
        )));
    }
    Ok(Some(PathBuf::from(path)))
}

impl SqliteStore {
    /// Opens (creating when absent) and migrates the database.
    pub async fn open(config: &StoreConfig) -> Result<SqliteStore, StoreError> {
        let path = sqlite_path(&config.url)?;
        let mut options = match &path {
            Some(path) => {
                if let Some(parent) = path.parent()
                    && !parent.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        StoreError::Config(format!(
                            "cannot create the database folder {}: {e}",
                            parent.display()
                        ))
                    })?;
                }
                SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
            }
            None => SqliteConnectOptions::from_str("sqlite::memory:").map_err(map_error)?,
        };
        options = options
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_millis(config.busy_timeout_ms));
        if let Some(max) = config.max_size_bytes {
            options = options.pragma("max_page_count", (max / PAGE_SIZE).max(1).to_string());
        }
        // An in-memory database exists once per connection: keep one.
        let max_connections = if path.is_none() {
            1
        } else {
            config.max_connections.max(1)
        };
        let opening = |e: StoreError| match &path {
            Some(p) => relabel(e, &format!("cannot open {}", p.display())),
            None => e,
        };
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_millis(config.busy_timeout_ms.max(1000)))
            .connect_with(options)
            .await
            .map_err(|e| opening(map_error(e)))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Schema(e.to_string()))?;
        Ok(SqliteStore {
            pool,
            path,
            job_max_attempts: config.job_max_attempts.max(1),
        })
    }

    /// The database file, `None` in memory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Closes the pool (waits for connections in use to come back).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn write_tx(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(map_error)
    }

    fn event_row(row: &SqliteRow) -> Result<StoredEvent, StoreError> {
        let payload: String = row.try_get("payload").map_err(map_error)?;
        let received_at: String = row.try_get("received_at").map_err(map_error)?;
        Ok(StoredEvent {
            event: from_json("event", &payload)?,
            received_at: parse_time(&received_at)?,
        })
    }
}

/// The same error kind with `context` in front of its message.
fn relabel(e: StoreError, context: &str) -> StoreError {
    match e {
        StoreError::Unavailable(m) => StoreError::Unavailable(format!("{context}: {m}")),
        StoreError::Full(m) => StoreError::Full(format!("{context}: {m}")),
        StoreError::Schema(m) => StoreError::Schema(format!("{context}: {m}")),
        StoreError::Database(m) => StoreError::Database(format!("{context}: {m}")),
        StoreError::Data(m) => StoreError::Data(format!("{context}: {m}")),
        StoreError::Config(m) => StoreError::Config(format!("{context}: {m}")),
        StoreError::NotFound(m) => StoreError::NotFound(format!("{context}: {m}")),
        StoreError::Conflict(m) => StoreError::Conflict(format!("{context}: {m}")),
    }
}

/// Brings the inspection an (inserted) event belongs to up to date.
async fn update_inspection(
    tx: &mut Transaction<'static, Sqlite>,
    event: &Event,
    inspection_id: &str,
    now: &str,
) -> Result<(), StoreError> {
    let (site, device) = (event.site.as_str(), event.device.as_str());
    match &event.event {
        EventBody::InspectionStarted { kind, .. } => {
            let kind = enum_text(kind)?;
            // The start on central's clock: the board's offset as it last
            // reported it (the module doc's CLOCKS).
            let offset: Option<i64> = sqlx::query_scalar(
                "SELECT json_extract(telemetry, '$.central_clock_offset_ms')
                 FROM devices WHERE site = ?1 AND device = ?2",
            )
            .bind(site)
            .bind(device)
            .fetch_optional(&mut **tx)
            .await
            .map_err(map_error)?
            .flatten();
            let on_central = central_time(event.at, offset);
            sqlx::query(
                "INSERT INTO inspections (id, site, device, kind, started_at, started_at_central,
                                          first_seen_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?7, ?6, ?6)
                 ON CONFLICT (id) DO UPDATE SET
                    kind = excluded.kind, started_at = excluded.started_at,
                    started_at_central = excluded.started_at_central,
                    updated_at = excluded.updated_at",
            )
            .bind(inspection_id)
            .bind(site)
            .bind(device)
            .bind(kind)
            .bind(time(&event.at))
            .bind(now)
            .bind(time(&on_central))
            .execute(&mut **tx)
            .await
            .map_err(map_error)?;
        }
        EventBody::FrameSelected { .. } => {
            sqlx::query(
                "INSERT INTO inspections (id, site, device, frames_received, first_seen_at, updated_at)
                 VALUES (?1, ?2, ?3, 1, ?4, ?4)
                 ON CONFLICT (id) DO UPDATE SET
                    frames_received = frames_received + 1, updated_at = excluded.updated_at",
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
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
                 ON CONFLICT (id) DO UPDATE SET
                    completed_at = excluded.completed_at,
                    completion_reason = excluded.completion_reason,
                    frames_expected = excluded.frames_expected,
                    updated_at = excluded.updated_at",
            )
            .bind(inspection_id)
            .bind(site)
            .bind(device)
            .bind(time(&event.at))
            .bind(enum_text(reason)?)
            .bind(i64::from(*frames))
            .bind(now)
            .execute(&mut **tx)
            .await
            .map_err(map_error)?;
        }
        // A command result names the inspection it acted on but is no step
        // of it.
        EventBody::CommandResult { .. } => {}
    }
    Ok(())
}

/// Keeps the site's first and last time seen.
async fn upsert_site(
    tx: &mut Transaction<'static, Sqlite>,
    site: &str,
    now: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO sites (site, first_seen_at, last_seen_at) VALUES (?1, ?2, ?2)
         ON CONFLICT (site) DO UPDATE SET
            last_seen_at = max(sites.last_seen_at, excluded.last_seen_at)",
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
async fn record_command_result(
    tx: &mut Transaction<'static, Sqlite>,
    event: &Event,
) -> Result<(), StoreError> {
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
        "UPDATE commands SET outcome = ?2, detail = ?3, result_at = ?4
         WHERE cmd_id = ?1 AND site = ?5 AND device = ?6 AND outcome IS NULL",
    )
    .bind(cmd_id.to_string())
    .bind(enum_text(outcome)?)
    .bind(detail.as_deref())
    .bind(time(&event.at))
    .bind(event.site.as_str())
    .bind(event.device.as_str())
    .execute(&mut **tx)
    .await
    .map_err(map_error)?;
    Ok(())
}

/// Moves a `receiving` inspection that is now complete to `queued` and
/// enqueues its processing job (the module doc's INSPECTION STATUS).
async fn queue_if_complete(
    tx: &mut Transaction<'static, Sqlite>,
    id: &str,
    now: &str,
    max_attempts: u32,
) -> Result<(), StoreError> {
    let became_complete = sqlx::query(
        "UPDATE inspections SET status = 'queued', status_detail = NULL, updated_at = ?2
         WHERE id = ?1 AND status = 'receiving'
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

/// Inserts a queued job unless one of the kind is queued or running for
/// the inspection (`jobs_one_active`).
async fn insert_job(
    tx: &mut Transaction<'static, Sqlite>,
    kind: JobKind,
    inspection_id: &str,
    now: &str,
    max_attempts: u32,
) -> Result<Recorded, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO jobs (id, kind, inspection_id, state, attempts, max_attempts, run_at, enqueued_at)
         VALUES (?1, ?2, ?3, 'queued', 0, ?4, ?5, ?5)
         ON CONFLICT DO NOTHING",
    )
    .bind(Uuid::now_v7().to_string())
    .bind(kind.as_str())
    .bind(inspection_id)
    .bind(i64::from(max_attempts))
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
    tx: &mut Transaction<'static, Sqlite>,
    id: &str,
    status: InspectionStatus,
    detail: Option<&str>,
    now: &str,
) -> Result<bool, StoreError> {
    Ok(sqlx::query(
        "UPDATE inspections SET status = ?2, status_detail = ?3, updated_at = ?4 WHERE id = ?1",
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

async fn audit_in(
    tx: &mut Transaction<'static, Sqlite>,
    entry: &AuditEntry,
) -> Result<i64, StoreError> {
    Ok(sqlx::query(
        "INSERT INTO audit_log (at, actor, action, target, before, after)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .bind(time(&entry.at))
    .bind(&entry.actor)
    .bind(&entry.action)
    .bind(&entry.target)
    .bind(entry.before.as_ref().map(json).transpose()?)
    .bind(entry.after.as_ref().map(json).transpose()?)
    .execute(&mut **tx)
    .await
    .map_err(map_error)?
    .last_insert_rowid())
}

/// The running job `job` if `worker` holds it: (inspection id, attempts,
/// max_attempts).
async fn held_job(
    tx: &mut Transaction<'static, Sqlite>,
    job: Uuid,
    worker: &str,
) -> Result<Option<(String, i64, i64)>, StoreError> {
    let row = sqlx::query(
        "SELECT inspection_id, attempts, max_attempts FROM jobs
         WHERE id = ?1 AND state = 'running' AND lease_owner = ?2",
    )
    .bind(job.to_string())
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

fn uuid_col(row: &SqliteRow, name: &str) -> Result<Uuid, StoreError> {
    let s: String = row.try_get(name).map_err(map_error)?;
    Uuid::parse_str(&s).map_err(|e| StoreError::Data(format!("stored {name} {s:?}: {e}")))
}

fn opt_time(row: &SqliteRow, name: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    row.try_get::<Option<String>, _>(name)
        .map_err(map_error)?
        .map(|s| parse_time(&s))
        .transpose()
}

fn req_time(row: &SqliteRow, name: &str) -> Result<DateTime<Utc>, StoreError> {
    let s: String = row.try_get(name).map_err(map_error)?;
    parse_time(&s)
}

fn u32_col(row: &SqliteRow, name: &str) -> Result<u32, StoreError> {
    let n: i64 = row.try_get(name).map_err(map_error)?;
    u32::try_from(n).map_err(|_| StoreError::Data(format!("stored {name} {n} is not a u32")))
}

fn opt_u32_col(row: &SqliteRow, name: &str) -> Result<Option<u32>, StoreError> {
    let n: Option<i64> = row.try_get(name).map_err(map_error)?;
    n.map(|n| {
        u32::try_from(n).map_err(|_| StoreError::Data(format!("stored {name} {n} is not a u32")))
    })
    .transpose()
}

fn f32_col(row: &SqliteRow, name: &str) -> Result<f32, StoreError> {
    let v: f64 = row.try_get(name).map_err(map_error)?;
    Ok(v as f32)
}

fn opt_f32_col(row: &SqliteRow, name: &str) -> Result<Option<f32>, StoreError> {
    let v: Option<f64> = row.try_get(name).map_err(map_error)?;
    Ok(v.map(|v| v as f32))
}

/// A box from four nullable columns: all present or `None`.
fn opt_bbox(row: &SqliteRow, cols: [&str; 4]) -> Result<Option<BBox>, StoreError> {
    let [x1, y1, x2, y2] = [
        opt_f32_col(row, cols[0])?,
        opt_f32_col(row, cols[1])?,
        opt_f32_col(row, cols[2])?,
        opt_f32_col(row, cols[3])?,
    ];
    Ok(match (x1, y1, x2, y2) {
        (Some(x1), Some(y1), Some(x2), Some(y2)) => Some(BBox { x1, y1, x2, y2 }),
        _ => None,
    })
}

fn camera_col(row: &SqliteRow) -> Result<CameraId, StoreError> {
    let s: String = row.try_get("camera").map_err(map_error)?;
    CameraId::new(s).map_err(|e| StoreError::Data(format!("stored camera: {e}")))
}

/// An inspection from a row with the columns `inspection()` selects.
fn inspection_record(id: Uuid, row: &SqliteRow) -> Result<InspectionRecord, StoreError> {
    let text = |name: &str| -> Result<Option<String>, StoreError> {
        row.try_get::<Option<String>, _>(name).map_err(map_error)
    };
    let unit = |name: &str| -> Result<Option<serde_json::Value>, StoreError> {
        Ok(text(name)?.map(serde_json::Value::String))
    };
    let site: String = row.try_get("site").map_err(map_error)?;
    let device: String = row.try_get("device").map_err(map_error)?;
    let frames_expected: Option<i64> = row.try_get("frames_expected").map_err(map_error)?;
    let frames_received: i64 = row.try_get("frames_received").map_err(map_error)?;
    let data = |e: String| StoreError::Data(format!("inspection {id}: {e}"));
    Ok(InspectionRecord {
        id,
        site: SiteId::new(site).map_err(|e| data(e.to_string()))?,
        device: DeviceId::new(device).map_err(|e| data(e.to_string()))?,
        kind: unit("kind")?
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| data(e.to_string()))?,
        started_at: text("started_at")?.map(|s| parse_time(&s)).transpose()?,
        started_at_central: text("started_at_central")?
            .map(|s| parse_time(&s))
            .transpose()?,
        completed_at: text("completed_at")?.map(|s| parse_time(&s)).transpose()?,
        completion_reason: unit("completion_reason")?
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| data(e.to_string()))?,
        frames_expected: frames_expected.map(|n| n.clamp(0, i64::from(u32::MAX)) as u32),
        frames_received: frames_received.clamp(0, i64::from(u32::MAX)) as u32,
        status: {
            let status: String = row.try_get("status").map_err(map_error)?;
            InspectionStatus::parse(&status)
                .ok_or_else(|| data(format!("unknown status {status:?}")))?
        },
        status_detail: text("status_detail")?,
        plate: text("plate")?,
        incomplete: text("incomplete")?,
    })
}

fn finding_status(text: &str) -> Result<FindingStatus, StoreError> {
    FindingStatus::parse(text)
        .ok_or_else(|| StoreError::Data(format!("unknown finding status {text:?}")))
}

/// The review mark from `reviewed_at`, `reviewed_by` and `review_note`.
fn review_mark(row: &SqliteRow) -> Result<Option<InspectionReview>, StoreError> {
    let actor: Option<String> = row.try_get("reviewed_by").map_err(map_error)?;
    let at = opt_time(row, "reviewed_at")?;
    Ok(match (actor, at) {
        (Some(actor), Some(at)) => Some(InspectionReview {
            actor,
            at,
            note: row.try_get("review_note").map_err(map_error)?,
        }),
        _ => None,
    })
}

/// What a staff write needs to know about the inspection; `NotFound` when
/// there is none. The caller's `BEGIN IMMEDIATE` makes it current until
/// the commit.
async fn standing(tx: &mut Transaction<'static, Sqlite>, id: Uuid) -> Result<Standing, StoreError> {
    let row = sqlx::query(
        "SELECT status, kind, reviewed_at, reviewed_by, review_note,
                EXISTS (SELECT 1 FROM charges WHERE inspection_id = ?1) AS charged
         FROM inspections WHERE id = ?1",
    )
    .bind(id.to_string())
    .fetch_optional(&mut **tx)
    .await
    .map_err(map_error)?
    .ok_or_else(|| no_inspection(id))?;
    Ok(Standing {
        status: row.try_get("status").map_err(map_error)?,
        kind: row.try_get("kind").map_err(map_error)?,
        reviewed: review_mark(&row)?,
        charged: row.try_get("charged").map_err(map_error)?,
    })
}

/// The inspection's findings with their current status, in result order.
async fn finding_statuses(
    tx: &mut Transaction<'static, Sqlite>,
    id: Uuid,
) -> Result<Vec<(Uuid, FindingStatus)>, StoreError> {
    let rows = sqlx::query("SELECT id, status FROM findings WHERE inspection_id = ?1 ORDER BY idx")
        .bind(id.to_string())
        .fetch_all(&mut **tx)
        .await
        .map_err(map_error)?;
    rows.iter()
        .map(|row| {
            let status: String = row.try_get("status").map_err(map_error)?;
            Ok((uuid_col(row, "id")?, finding_status(&status)?))
        })
        .collect()
}

/// A review action from a `finding_reviews` row.
fn finding_review_record(row: &SqliteRow) -> Result<FindingReviewRecord, StoreError> {
    let decision: String = row.try_get("decision").map_err(map_error)?;
    let before: String = row.try_get("status_before").map_err(map_error)?;
    let after: String = row.try_get("status_after").map_err(map_error)?;
    Ok(FindingReviewRecord {
        id: row.try_get("id").map_err(map_error)?,
        inspection_id: uuid_col(row, "inspection_id")?,
        finding_id: uuid_col(row, "finding_id")?,
        decision: FindingDecision::parse(&decision)
            .ok_or_else(|| StoreError::Data(format!("unknown review decision {decision:?}")))?,
        note: row.try_get("note").map_err(map_error)?,
        actor: row.try_get("actor").map_err(map_error)?,
        at: req_time(row, "at")?,
        status_before: finding_status(&before)?,
        status_after: finding_status(&after)?,
    })
}

/// `coalesce(started_at, first_seen_at)`: search's sort key, spelled as the
/// `inspections_*_at` indexes spell it.
const AT: &str = "coalesce(started_at, first_seen_at)";

fn job_record(row: &SqliteRow) -> Result<JobRecord, StoreError> {
    let kind: String = row.try_get("kind").map_err(map_error)?;
    let state: String = row.try_get("state").map_err(map_error)?;
    Ok(JobRecord {
        id: uuid_col(row, "id")?,
        kind: JobKind::parse(&kind)
            .ok_or_else(|| StoreError::Data(format!("unknown job kind {kind:?}")))?,
        inspection_id: uuid_col(row, "inspection_id")?,
        state: JobState::parse(&state)
            .ok_or_else(|| StoreError::Data(format!("unknown job state {state:?}")))?,
        attempts: u32_col(row, "attempts")?,
        max_attempts: u32_col(row, "max_attempts")?,
        run_at: req_time(row, "run_at")?,
        lease_owner: row.try_get("lease_owner").map_err(map_error)?,
        lease_until: opt_time(row, "lease_until")?,
        last_error: row.try_get("last_error").map_err(map_error)?,
        enqueued_at: req_time(row, "enqueued_at")?,
        finished_at: opt_time(row, "finished_at")?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn record_events(
        &self,
        events: &[Event],
        received_at: DateTime<Utc>,
    ) -> Result<Vec<Recorded>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let now = time(&received_at);
        let mut tx = self.write_tx().await?;
        let mut recorded = Vec::with_capacity(events.len());
        let mut touched: Vec<String> = Vec::new();
        let mut sites: Vec<&str> = Vec::new();
        for event in events {
            let seq = seq_to_db(event.seq)?;
            let inspection_id = event.inspection_id.map(|id| id.to_string());
            let inserted = sqlx::query(
                "INSERT INTO events (msg_id, site, device, seq, inspection_id, type, at, received_at, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (msg_id) DO NOTHING",
            )
            .bind(event.msg_id.to_string())
            .bind(event.site.as_str())
            .bind(event.device.as_str())
            .bind(seq)
            .bind(inspection_id.as_deref())
            .bind(event.event.name())
            .bind(time(&event.at))
            .bind(&now)
            .bind(json(event)?)
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
                "INSERT INTO devices (site, device, last_seq, first_seen_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (site, device) DO UPDATE SET
                    last_seq = max(coalesce(last_seq, excluded.last_seq), excluded.last_seq)",
            )
            .bind(event.site.as_str())
            .bind(event.device.as_str())
            .bind(seq)
            .bind(&now)
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
            if !sites.contains(&event.site.as_str()) {
                sites.push(event.site.as_str());
            }
            if let Some(id) = &inspection_id {
                update_inspection(&mut tx, event, id, &now).await?;
                if !touched.contains(id) {
                    touched.push(id.clone());
                }
            }
            record_command_result(&mut tx, event).await?;
            recorded.push(Recorded::Inserted);
        }
        for id in &touched {
            queue_if_complete(&mut tx, id, &now, self.job_max_attempts).await?;
        }
        sites.sort_unstable();
        for site in sites {
            upsert_site(&mut tx, site, &now).await?;
        }
        tx.commit().await.map_err(map_error)?;
        Ok(recorded)
    }

    async fn record_status(
        &self,
        status: &Status,
        received_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let now = time(&received_at);
        let mut tx = self.write_tx().await?;
        // `>=`: a last will carries the time its connection opened, which can
        // equal the `at` of the `online` status it replaces.
        sqlx::query(
            "INSERT INTO devices (site, device, status, status_at, status_received_at, first_seen_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT (site, device) DO UPDATE SET
                status = excluded.status, status_at = excluded.status_at,
                status_received_at = excluded.status_received_at
             WHERE devices.status_at IS NULL OR excluded.status_at >= devices.status_at",
        )
        .bind(status.site.as_str())
        .bind(status.device.as_str())
        .bind(json(status)?)
        .bind(time(&status.at))
        .bind(&now)
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        upsert_site(&mut tx, status.site.as_str(), &now).await?;
        tx.commit().await.map_err(map_error)
    }

    async fn record_telemetry(
        &self,
        telemetry: &Telemetry,
        received_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let now = time(&received_at);
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO devices (site, device, telemetry, telemetry_at, telemetry_received_at, first_seen_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT (site, device) DO UPDATE SET
                telemetry = excluded.telemetry, telemetry_at = excluded.telemetry_at,
                telemetry_received_at = excluded.telemetry_received_at
             WHERE devices.telemetry_at IS NULL OR excluded.telemetry_at >= devices.telemetry_at",
        )
        .bind(telemetry.site.as_str())
        .bind(telemetry.device.as_str())
        .bind(json(telemetry)?)
        .bind(time(&telemetry.at))
        .bind(&now)
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        upsert_site(&mut tx, telemetry.site.as_str(), &now).await?;
        tx.commit().await.map_err(map_error)
    }

    async fn dead_letter(&self, letter: &DeadLetter) -> Result<i64, StoreError> {
        let kept = &letter.payload[..letter.payload.len().min(DEAD_LETTER_MAX_PAYLOAD)];
        let len = i64::try_from(letter.payload.len()).unwrap_or(i64::MAX);
        let mut tx = self.write_tx().await?;
        let id = sqlx::query(
            "INSERT INTO dead_letters (topic, payload, payload_len, reason, detail, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(&letter.topic)
        .bind(kept)
        .bind(len)
        .bind(&letter.reason)
        .bind(&letter.detail)
        .bind(time(&letter.received_at))
        .execute(&mut *tx)
        .await
        .map_err(map_error)?
        .last_insert_rowid();
        tx.commit().await.map_err(map_error)?;
        Ok(id)
    }

    async fn event(&self, msg_id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        let row = sqlx::query("SELECT payload, received_at FROM events WHERE msg_id = ?1")
            .bind(msg_id.to_string())
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
        // Past i64::MAX nothing can follow: clamp instead of failing.
        let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
        let rows = sqlx::query(
            "SELECT payload, received_at FROM events
             WHERE site = ?1 AND device = ?2 AND seq > ?3
             ORDER BY seq, msg_id LIMIT ?4",
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
             FROM inspections WHERE id = ?1",
        )
        .bind(id.to_string())
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
             FROM devices WHERE site = ?1 AND device = ?2",
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
             FROM devices WHERE (site, device) > (?1, ?2)
             ORDER BY site, device LIMIT ?3",
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
             FROM dead_letters ORDER BY id DESC LIMIT ?1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map_error)?;
        rows.iter()
            .map(|row| {
                let received_at: String = row.try_get("received_at").map_err(map_error)?;
                let payload_len: i64 = row.try_get("payload_len").map_err(map_error)?;
                Ok(StoredDeadLetter {
                    id: row.try_get("id").map_err(map_error)?,
                    topic: row.try_get("topic").map_err(map_error)?,
                    payload: row.try_get("payload").map_err(map_error)?,
                    payload_len: payload_len.max(0) as u64,
                    reason: row.try_get("reason").map_err(map_error)?,
                    detail: row.try_get("detail").map_err(map_error)?,
                    received_at: parse_time(&received_at)?,
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
            let n: i64 = row.try_get(name).map_err(map_error)?;
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
            "SELECT payload, received_at FROM events WHERE inspection_id = ?1 ORDER BY seq, msg_id",
        )
        .bind(id.to_string())
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
        let mut tx = self.write_tx().await?;
        let changed = set_status_in(&mut tx, &id.to_string(), status, detail, &time(&at)).await?;
        tx.commit().await.map_err(map_error)?;
        Ok(changed)
    }

    async fn record_result(&self, result: &InspectionResult) -> Result<(), StoreError> {
        let id = result.inspection_id.to_string();
        let now = time(&result.processed_at);
        let mut tx = self.write_tx().await?;
        let before = sqlx::query(
            "SELECT status, plate, erased_at IS NOT NULL AS erased,
                    reviewed_at IS NOT NULL
                    OR EXISTS (SELECT 1 FROM finding_reviews WHERE inspection_id = ?1)
                    OR EXISTS (SELECT 1 FROM charges WHERE inspection_id = ?1) AS review_begun
             FROM inspections WHERE id = ?1",
        )
        .bind(&id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_error)?
        .ok_or_else(|| {
            StoreError::Data(format!(
                "no inspection {id} to record a result for (its events come first)"
            ))
        })?;
        // An erased inspection's plate is never written back.
        if before.try_get::<bool, _>("erased").map_err(map_error)? {
            return Err(erased_inspection(result.inspection_id));
        }
        // Staff decisions are never replaced (refused before any change).
        if before
            .try_get::<bool, _>("review_begun")
            .map_err(map_error)?
        {
            return Err(review_begun(result.inspection_id));
        }
        let before_status: String = before.try_get("status").map_err(map_error)?;
        let before_plate: Option<String> = before.try_get("plate").map_err(map_error)?;
        for table in [
            "DELETE FROM frames WHERE inspection_id = ?1",
            "DELETE FROM findings WHERE inspection_id = ?1",
            "DELETE FROM plate_reads WHERE inspection_id = ?1",
        ] {
            sqlx::query(table)
                .bind(&id)
                .execute(&mut *tx)
                .await
                .map_err(map_error)?;
        }
        let vehicle_id: Option<String> = match &result.plate {
            Some(plate) => Some(
                sqlx::query(
                    "INSERT INTO vehicles (id, plate, country, display, first_seen_at, last_seen_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5)
                     ON CONFLICT (plate) DO UPDATE SET
                        country = excluded.country, display = excluded.display,
                        last_seen_at = max(vehicles.last_seen_at, excluded.last_seen_at)
                     RETURNING id",
                )
                .bind(Uuid::now_v7().to_string())
                .bind(&plate.plate)
                .bind(&plate.country)
                .bind(&plate.display)
                .bind(&now)
                .fetch_one(&mut *tx)
                .await
                .map_err(map_error)?
                .try_get("id")
                .map_err(map_error)?,
            ),
            None => None,
        };
        sqlx::query(
            "UPDATE inspections SET
                status = 'processed', status_detail = NULL, vehicle_id = ?2, plate = ?3,
                processed_at = ?4, worker = ?5, damage_model = ?6, plate_models = ?7,
                comparison = ?8, summary = ?9, plate_json = ?10, updated_at = ?4
             WHERE id = ?1",
        )
        .bind(&id)
        .bind(vehicle_id.as_deref())
        .bind(result.plate.as_ref().map(|p| p.plate.as_str()))
        .bind(&now)
        .bind(&result.worker)
        .bind(json(&result.damage_model)?)
        .bind(json(&result.plate_models)?)
        .bind(json(&result.comparison)?)
        .bind(json(&result.summary)?)
        .bind(result.plate.as_ref().map(json).transpose()?)
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        for (idx, frame) in result.frames.iter().enumerate() {
            let vb = frame.vehicle_box;
            sqlx::query(
                "INSERT INTO frames (inspection_id, idx, camera, position, sha256, rank, state,
                    state_json, width, height, sharpness, brightness,
                    vehicle_x1, vehicle_y1, vehicle_x2, vehicle_y2)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            )
            .bind(&id)
            .bind(idx as i64)
            .bind(frame.camera.as_str())
            .bind(&frame.position)
            .bind(&frame.sha256)
            .bind(i64::from(frame.rank))
            .bind(frame.state.name())
            .bind(json(&frame.state)?)
            .bind(frame.width.map(i64::from))
            .bind(frame.height.map(i64::from))
            .bind(frame.sharpness.map(f64::from))
            .bind(frame.brightness.map(f64::from))
            .bind(vb.map(|b| f64::from(b.x1)))
            .bind(vb.map(|b| f64::from(b.y1)))
            .bind(vb.map(|b| f64::from(b.x2)))
            .bind(vb.map(|b| f64::from(b.y2)))
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
        }
        for (idx, finding) in result.findings.iter().enumerate() {
            let vb = finding.vehicle_bbox;
            sqlx::query(
                "INSERT INTO findings (id, inspection_id, idx, camera, position, sha256, class,
                    confidence, source, status, x1, y1, x2, y2, vx1, vy1, vx2, vy2,
                    matched_finding)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                    ?16, ?17, ?18, ?19)",
            )
            .bind(finding.id.to_string())
            .bind(&id)
            .bind(idx as i64)
            .bind(finding.camera.as_str())
            .bind(&finding.position)
            .bind(&finding.sha256)
            .bind(&finding.class)
            .bind(f64::from(finding.confidence))
            .bind(finding.source.as_str())
            .bind(finding.status.as_str())
            .bind(f64::from(finding.bbox.x1))
            .bind(f64::from(finding.bbox.y1))
            .bind(f64::from(finding.bbox.x2))
            .bind(f64::from(finding.bbox.y2))
            .bind(vb.map(|b| f64::from(b.x1)))
            .bind(vb.map(|b| f64::from(b.y1)))
            .bind(vb.map(|b| f64::from(b.x2)))
            .bind(vb.map(|b| f64::from(b.y2)))
            .bind(finding.matched_finding.map(|m| m.to_string()))
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
        }
        for (idx, read) in result.plate_reads.iter().enumerate() {
            let b = read.bbox;
            sqlx::query(
                "INSERT INTO plate_reads (inspection_id, idx, camera, sha256, outcome,
                    x1, y1, x2, y2, box_source, raw_text, plate, country, confidence)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )
            .bind(&id)
            .bind(idx as i64)
            .bind(read.camera.as_str())
            .bind(&read.sha256)
            .bind(enum_text(&read.outcome)?)
            .bind(b.map(|b| f64::from(b.x1)))
            .bind(b.map(|b| f64::from(b.y1)))
            .bind(b.map(|b| f64::from(b.x2)))
            .bind(b.map(|b| f64::from(b.y2)))
            .bind(read.box_source.as_ref().map(enum_text).transpose()?)
            .bind(read.raw_text.as_deref())
            .bind(read.plate.as_deref())
            .bind(read.country.as_deref())
            .bind(f64::from(read.confidence))
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
        let key = id.to_string();
        // One read transaction: a concurrent `record_result` cannot mix two
        // results.
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let row = sqlx::query(
            "SELECT processed_at, worker, damage_model, plate_models, comparison, summary,
                    plate_json
             FROM inspections WHERE id = ?1 AND processed_at IS NOT NULL",
        )
        .bind(&key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_error)?;
        let Some(row) = row else { return Ok(None) };
        let text = |name: &str| -> Result<String, StoreError> {
            row.try_get::<Option<String>, _>(name)
                .map_err(map_error)?
                .ok_or_else(|| StoreError::Data(format!("inspection {id}: no {name}")))
        };
        let plate_json: Option<String> = row.try_get("plate_json").map_err(map_error)?;
        let mut result = InspectionResult {
            inspection_id: id,
            processed_at: req_time(&row, "processed_at")?,
            worker: text("worker")?,
            damage_model: from_json("damage_model", &text("damage_model")?)?,
            plate_models: from_json("plate_models", &text("plate_models")?)?,
            frames: Vec::new(),
            findings: Vec::new(),
            plate_reads: Vec::new(),
            plate: plate_json.map(|s| from_json("plate", &s)).transpose()?,
            comparison: from_json("comparison", &text("comparison")?)?,
            summary: from_json("summary", &text("summary")?)?,
        };
        let rows = sqlx::query("SELECT * FROM frames WHERE inspection_id = ?1 ORDER BY idx")
            .bind(&key)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_error)?;
        for row in &rows {
            let state: String = row.try_get("state_json").map_err(map_error)?;
            result.frames.push(FrameRecord {
                camera: camera_col(row)?,
                position: row.try_get("position").map_err(map_error)?,
                sha256: row.try_get("sha256").map_err(map_error)?,
                rank: u32_col(row, "rank")?,
                state: from_json("frame state", &state)?,
                width: opt_u32_col(row, "width")?,
                height: opt_u32_col(row, "height")?,
                sharpness: opt_f32_col(row, "sharpness")?,
                brightness: opt_f32_col(row, "brightness")?,
                vehicle_box: opt_bbox(
                    row,
                    ["vehicle_x1", "vehicle_y1", "vehicle_x2", "vehicle_y2"],
                )?,
            });
        }
        let rows = sqlx::query("SELECT * FROM findings WHERE inspection_id = ?1 ORDER BY idx")
            .bind(&key)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_error)?;
        for row in &rows {
            let source: String = row.try_get("source").map_err(map_error)?;
            let status: String = row.try_get("status").map_err(map_error)?;
            let matched: Option<String> = row.try_get("matched_finding").map_err(map_error)?;
            result.findings.push(Finding {
                id: uuid_col(row, "id")?,
                camera: camera_col(row)?,
                position: row.try_get("position").map_err(map_error)?,
                sha256: row.try_get("sha256").map_err(map_error)?,
                class: row.try_get("class").map_err(map_error)?,
                confidence: f32_col(row, "confidence")?,
                source: parse_enum::<FindingSource>("finding source", &source)?,
                status: FindingStatus::parse(&status).ok_or_else(|| {
                    StoreError::Data(format!("unknown finding status {status:?}"))
                })?,
                bbox: BBox {
                    x1: f32_col(row, "x1")?,
                    y1: f32_col(row, "y1")?,
                    x2: f32_col(row, "x2")?,
                    y2: f32_col(row, "y2")?,
                },
                vehicle_bbox: opt_bbox(row, ["vx1", "vy1", "vx2", "vy2"])?,
                matched_finding: matched
                    .map(|m| {
                        Uuid::parse_str(&m)
                            .map_err(|e| StoreError::Data(format!("matched_finding: {e}")))
                    })
                    .transpose()?,
            });
        }
        let rows = sqlx::query("SELECT * FROM plate_reads WHERE inspection_id = ?1 ORDER BY idx")
            .bind(&key)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_error)?;
        for row in &rows {
            let outcome: String = row.try_get("outcome").map_err(map_error)?;
            let box_source: Option<String> = row.try_get("box_source").map_err(map_error)?;
            result.plate_reads.push(PlateReadRecord {
                camera: camera_col(row)?,
                sha256: row.try_get("sha256").map_err(map_error)?,
                outcome: parse_enum("plate outcome", &outcome)?,
                bbox: opt_bbox(row, ["x1", "y1", "x2", "y2"])?,
                box_source: box_source
                    .map(|s| parse_enum("plate box source", &s))
                    .transpose()?,
                raw_text: row.try_get("raw_text").map_err(map_error)?,
                plate: row.try_get("plate").map_err(map_error)?,
                country: row.try_get("country").map_err(map_error)?,
                confidence: f32_col(row, "confidence")?,
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
             WHERE plate = ?1 AND kind = 'pickup' AND status = 'processed'
               AND COALESCE(started_at_central, started_at) < ?2
             ORDER BY COALESCE(started_at_central, started_at) DESC, id DESC LIMIT 1",
        )
        .bind(plate)
        .bind(time(&before))
        .fetch_optional(&self.pool)
        .await
        .map_err(map_error)?;
        row.map(|row| uuid_col(&row, "id")).transpose()
    }

    async fn enqueue_job(
        &self,
        kind: JobKind,
        inspection_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Recorded, StoreError> {
        let id = inspection_id.to_string();
        let now = time(&now);
        let mut tx = self.write_tx().await?;
        let recorded = insert_job(&mut tx, kind, &id, &now, self.job_max_attempts).await?;
        if recorded == Recorded::Inserted {
            set_status_in(&mut tx, &id, InspectionStatus::Queued, None, &now).await?;
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
        let now = time(&now);
        let mut tx = self.write_tx().await?;
        let job = loop {
            let row = sqlx::query(
                "SELECT id, kind, inspection_id, state, attempts, max_attempts, run_at,
                        lease_owner, lease_until, last_error, enqueued_at, finished_at
                 FROM jobs
                 WHERE (state = 'queued' AND run_at <= ?1)
                    OR (state = 'running' AND lease_until < ?1)
                 ORDER BY enqueued_at, id LIMIT 1",
            )
            .bind(&now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_error)?;
            let Some(row) = row else { break None };
            let record = job_record(&row)?;
            let (id, inspection) = (record.id.to_string(), record.inspection_id.to_string());
            if record.state == JobState::Running && record.attempts >= record.max_attempts {
                let error =
                    lease_expired_error(record.lease_owner.as_deref(), record.attempts.into());
                sqlx::query(
                    "UPDATE jobs SET state = 'dead', finished_at = ?2, lease_until = NULL,
                        last_error = ?3
                     WHERE id = ?1",
                )
                .bind(&id)
                .bind(&now)
                .bind(&error)
                .execute(&mut *tx)
                .await
                .map_err(map_error)?;
                set_status_in(
                    &mut tx,
                    &inspection,
                    InspectionStatus::Failed,
                    Some(&error),
                    &now,
                )
                .await?;
                continue;
            }
            sqlx::query(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = ?2,
                    lease_until = ?3
                 WHERE id = ?1",
            )
            .bind(&id)
            .bind(worker)
            .bind(time(&until))
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
            set_status_in(
                &mut tx,
                &inspection,
                InspectionStatus::Processing,
                None,
                &now,
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
        let mut tx = self.write_tx().await?;
        let held = sqlx::query(
            "UPDATE jobs SET lease_until = ?3
             WHERE id = ?1 AND state = 'running' AND lease_owner = ?2",
        )
        .bind(job.to_string())
        .bind(worker)
        .bind(time(&until))
        .execute(&mut *tx)
        .await
        .map_err(map_error)?
        .rows_affected()
            == 1;
        tx.commit().await.map_err(map_error)?;
        Ok(held)
    }

    async fn complete_job(
        &self,
        job: Uuid,
        worker: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        let held = sqlx::query(
            "UPDATE jobs SET state = 'done', finished_at = ?3, lease_until = NULL
             WHERE id = ?1 AND state = 'running' AND lease_owner = ?2",
        )
        .bind(job.to_string())
        .bind(worker)
        .bind(time(&now))
        .execute(&mut *tx)
        .await
        .map_err(map_error)?
        .rows_affected()
            == 1;
        tx.commit().await.map_err(map_error)?;
        Ok(held)
    }

    async fn fail_job(
        &self,
        job: Uuid,
        worker: &str,
        error: &str,
        retry_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<JobState>, StoreError> {
        let now = time(&now);
        let mut tx = self.write_tx().await?;
        let Some((inspection, attempts, max_attempts)) = held_job(&mut tx, job, worker).await?
        else {
            return Ok(None);
        };
        let state = if attempts >= max_attempts {
            sqlx::query(
                "UPDATE jobs SET state = 'dead', finished_at = ?2, lease_until = NULL,
                    last_error = ?3
                 WHERE id = ?1",
            )
            .bind(job.to_string())
            .bind(&now)
            .bind(error)
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
            set_status_in(
                &mut tx,
                &inspection,
                InspectionStatus::Failed,
                Some(error),
                &now,
            )
            .await?;
            JobState::Dead
        } else {
            sqlx::query(
                "UPDATE jobs SET state = 'queued', run_at = ?2, lease_owner = NULL,
                    lease_until = NULL, last_error = ?3
                 WHERE id = ?1",
            )
            .bind(job.to_string())
            .bind(time(&retry_at))
            .bind(error)
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
            set_status_in(
                &mut tx,
                &inspection,
                InspectionStatus::Queued,
                Some(error),
                &now,
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
        let now = time(&now);
        let mut tx = self.write_tx().await?;
        let Some((inspection, _, _)) = held_job(&mut tx, job, worker).await? else {
            return Ok(false);
        };
        sqlx::query(
            "UPDATE jobs SET state = 'queued', run_at = ?2, attempts = max(attempts - 1, 0),
                lease_owner = NULL, lease_until = NULL
             WHERE id = ?1",
        )
        .bind(job.to_string())
        .bind(time(&until))
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        set_status_in(
            &mut tx,
            &inspection,
            InspectionStatus::WaitingForImages,
            Some(reason),
            &now,
        )
        .await?;
        tx.commit().await.map_err(map_error)?;
        Ok(true)
    }

    async fn job_stats(&self, now: DateTime<Utc>) -> Result<JobStats, StoreError> {
        let row = sqlx::query(
            "SELECT
                (SELECT count(*) FROM jobs WHERE state = 'queued' AND run_at <= ?1)
                  + (SELECT count(*) FROM jobs WHERE state = 'running' AND lease_until < ?1)
                  AS ready,
                (SELECT count(*) FROM jobs WHERE state = 'queued' AND run_at > ?1) AS scheduled,
                (SELECT count(*) FROM jobs WHERE state = 'running' AND lease_until >= ?1)
                  AS running,
                (SELECT count(*) FROM jobs WHERE state = 'dead') AS dead,
                (SELECT min(enqueued_at) FROM jobs
                  WHERE (state = 'queued' AND run_at <= ?1)
                     OR (state = 'running' AND lease_until < ?1)) AS oldest",
        )
        .bind(time(&now))
        .fetch_one(&self.pool)
        .await
        .map_err(map_error)?;
        let count = |name: &str| -> Result<u64, StoreError> {
            let n: i64 = row.try_get(name).map_err(map_error)?;
            Ok(n.max(0) as u64)
        };
        let oldest = opt_time(&row, "oldest")?;
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
               AND i.first_seen_at <= ?1
               AND julianday(d.telemetry_at) >= julianday(i.started_at) + ?3 / 86400.0
               AND julianday(d.telemetry_received_at) >= julianday(i.first_seen_at) + ?3 / 86400.0
               AND json_extract(d.telemetry, '$.outbox.entries') = 0
             ORDER BY i.first_seen_at, i.id LIMIT ?2",
        )
        .bind(time(&seen_before))
        .bind(i64::from(limit))
        .bind(grace.as_secs_f64())
        .fetch_all(&self.pool)
        .await
        .map_err(map_error)?;
        let mut closed = Vec::new();
        for row in &rows {
            let id = uuid_col(row, "id")?;
            let text =
                |name: &str| -> Result<String, StoreError> { row.try_get(name).map_err(map_error) };
            let close = ClosedIncomplete::new(
                id,
                SiteId::new(text("site")?).map_err(|e| StoreError::Data(e.to_string()))?,
                DeviceId::new(text("device")?).map_err(|e| StoreError::Data(e.to_string()))?,
                u32_col(row, "frames_received")?,
                opt_u32_col(row, "frames_expected")?,
                req_time(row, "telemetry_at")?,
            );
            let mut tx = self.write_tx().await?;
            let now_text = time(&now);
            let moved = sqlx::query(
                "UPDATE inspections SET status = 'queued', status_detail = ?2, incomplete = ?2,
                        updated_at = ?3
                 WHERE id = ?1 AND status = 'receiving'",
            )
            .bind(id.to_string())
            .bind(&close.detail)
            .bind(&now_text)
            .execute(&mut *tx)
            .await
            .map_err(map_error)?
            .rows_affected()
                == 1;
            if moved {
                insert_job(
                    &mut tx,
                    JobKind::ProcessInspection,
                    &id.to_string(),
                    &now_text,
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
             FROM jobs WHERE inspection_id = ?1 ORDER BY enqueued_at, id",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(map_error)?;
        rows.iter().map(job_record).collect()
    }

    async fn record_report(&self, report: &crate::report::Report) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO reports (id, inspection_id, writer, language, summary, narrative,
                                  created_at, model, attempts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .bind(report.id.to_string())
        .bind(report.inspection_id.to_string())
        .bind(&report.writer)
        .bind(report.language.code())
        .bind(json(&report.summary)?)
        .bind(&report.narrative)
        .bind(time(&report.created_at))
        .bind(report.model.as_deref())
        .bind(json(&report.attempts)?)
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        tx.commit().await.map_err(map_error)?;
        Ok(())
    }

    async fn reports(&self, inspection_id: Uuid) -> Result<Vec<crate::report::Report>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, writer, language, summary, narrative, created_at, model, attempts
             FROM reports WHERE inspection_id = ?1 ORDER BY created_at DESC, id DESC",
        )
        .bind(inspection_id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(map_error)?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("id").map_err(map_error)?;
                let language: String = row.try_get("language").map_err(map_error)?;
                let summary: String = row.try_get("summary").map_err(map_error)?;
                let attempts: String = row.try_get("attempts").map_err(map_error)?;
                Ok(crate::report::Report {
                    id: Uuid::parse_str(&id)
                        .map_err(|e| StoreError::Data(format!("report id {id:?}: {e}")))?,
                    inspection_id,
                    writer: row.try_get("writer").map_err(map_error)?,
                    model: row.try_get("model").map_err(map_error)?,
                    language: crate::report::Language::parse(&language).ok_or_else(|| {
                        StoreError::Data(format!("report {id}: language {language:?}"))
                    })?,
                    summary: from_json("report summary", &summary)?,
                    narrative: row.try_get("narrative").map_err(map_error)?,
                    attempts: from_json("report attempts", &attempts)?,
                    created_at: req_time(row, "created_at")?,
                })
            })
            .collect()
    }

    async fn audit(&self, entry: &AuditEntry) -> Result<i64, StoreError> {
        let mut tx = self.write_tx().await?;
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
             WHERE ?1 IS NULL OR target = ?1 ORDER BY id DESC LIMIT ?2",
        )
        .bind(target)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map_error)?;
        rows.iter()
            .map(|row| {
                let before: Option<String> = row.try_get("before").map_err(map_error)?;
                let after: Option<String> = row.try_get("after").map_err(map_error)?;
                Ok(StoredAudit {
                    id: row.try_get("id").map_err(map_error)?,
                    entry: AuditEntry {
                        at: req_time(row, "at")?,
                        actor: row.try_get("actor").map_err(map_error)?,
                        action: row.try_get("action").map_err(map_error)?,
                        target: row.try_get("target").map_err(map_error)?,
                        before: before.map(|s| from_json("audit before", &s)).transpose()?,
                        after: after.map(|s| from_json("audit after", &s)).transpose()?,
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
        let mut sql = QueryBuilder::<Sqlite>::new(format!(
            "SELECT id, site, device, kind, started_at, completed_at, completion_reason,
                    frames_expected, frames_received, status, status_detail, plate, incomplete,
                    started_at_central,
                    {AT} AS at, reviewed_at, reviewed_by, review_note, erased_at,
                    EXISTS (SELECT 1 FROM charges WHERE charges.inspection_id = inspections.id)
                      AS charged,
                    (SELECT count(*) FROM frames WHERE frames.inspection_id = inspections.id
                       AND frames.image_purged_at IS NOT NULL) AS images_purged
             FROM inspections WHERE 1 = 1"
        ));
        if let Some(id) = &query.id {
            sql.push(" AND id = ").push_bind(id.to_string());
        }
        if let Some(plate) = &query.plate {
            sql.push(" AND plate = ").push_bind(plate.clone());
        }
        if let Some(sites) = &query.sites {
            sql.push(" AND site IN (");
            let mut list = sql.separated(", ");
            for site in sites {
                list.push_bind(site.as_str().to_owned());
            }
            sql.push(")");
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
        if let Some(from) = &query.from {
            sql.push(format!(" AND {AT} >= ")).push_bind(time(from));
        }
        if let Some(to) = &query.to {
            sql.push(format!(" AND {AT} < ")).push_bind(time(to));
        }
        let (after, order) = match query.order {
            SortOrder::NewestFirst => ("<", "DESC"),
            SortOrder::OldestFirst => (">", "ASC"),
        };
        if let Some(cursor) = &query.after {
            // `(at, id) > (?, ?)` spelled out: SQLite seeks an expression
            // index on the first comparison, not on a row value.
            let at = time(&cursor.at);
            sql.push(format!(" AND {AT} {after}= "))
                .push_bind(at.clone())
                .push(format!(" AND ({AT} {after} "))
                .push_bind(at)
                .push(format!(" OR id {after} "))
                .push_bind(cursor.id.to_string())
                .push(")");
        }
        sql.push(format!(" ORDER BY {AT} {order}, id {order} LIMIT "))
            .push_bind(i64::from(query.limit));
        // One read transaction: the counts are those of the listed rows.
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let rows = sql.build().fetch_all(&mut *tx).await.map_err(map_error)?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            let id = uuid_col(row, "id")?;
            items.push(InspectionListItem {
                record: inspection_record(id, row)?,
                at: req_time(row, "at")?,
                findings: Vec::new(),
                reviewed: review_mark(row)?,
                charged: row.try_get("charged").map_err(map_error)?,
                erased_at: opt_time(row, "erased_at")?,
                images_purged: u32_col(row, "images_purged")?,
            });
        }
        if !items.is_empty() {
            let ids: Vec<String> = items.iter().map(|i| i.record.id.to_string()).collect();
            let counts = sqlx::query(
                "SELECT inspection_id, status, count(*) AS n FROM findings
                 WHERE inspection_id IN (SELECT value FROM json_each(?1))
                 GROUP BY inspection_id, status",
            )
            .bind(json(&ids)?)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_error)?;
            let mut by_inspection: std::collections::HashMap<Uuid, Vec<(FindingStatus, u32)>> =
                std::collections::HashMap::new();
            for row in &counts {
                let status: String = row.try_get("status").map_err(map_error)?;
                by_inspection
                    .entry(uuid_col(row, "inspection_id")?)
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
        let key = inspection_id.to_string();
        // One read transaction: a concurrent review cannot be half seen.
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let rows = sqlx::query(
            "SELECT id, worker_status FROM findings
             WHERE inspection_id = ?1 AND worker_status IS NOT NULL ORDER BY idx",
        )
        .bind(&key)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_error)?;
        let worker_status = rows
            .iter()
            .map(|row| {
                let status: String = row.try_get("worker_status").map_err(map_error)?;
                Ok((uuid_col(row, "id")?, finding_status(&status)?))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let rows = sqlx::query(
            "SELECT id, inspection_id, finding_id, decision, note, actor, at, status_before,
                    status_after
             FROM finding_reviews WHERE inspection_id = ?1 ORDER BY id",
        )
        .bind(&key)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_error)?;
        let actions = rows
            .iter()
            .map(finding_review_record)
            .collect::<Result<Vec<_>, StoreError>>()?;
        let reviewed = sqlx::query(
            "SELECT reviewed_at, reviewed_by, review_note FROM inspections WHERE id = ?1",
        )
        .bind(&key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_error)?
        .map(|row| review_mark(&row))
        .transpose()?
        .flatten();
        let charge = sqlx::query(
            "SELECT id, findings, note, actor, at FROM charges WHERE inspection_id = ?1",
        )
        .bind(&key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_error)?
        .map(|row| -> Result<Charge, StoreError> {
            let findings: String = row.try_get("findings").map_err(map_error)?;
            Ok(Charge {
                id: uuid_col(&row, "id")?,
                inspection_id,
                findings: from_json("charge findings", &findings)?,
                note: row.try_get("note").map_err(map_error)?,
                actor: row.try_get("actor").map_err(map_error)?,
                at: req_time(&row, "at")?,
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
        let mut tx = self.write_tx().await?;
        let standing = standing(&mut tx, review.inspection_id).await?;
        let finding = sqlx::query(
            "SELECT status, review_note FROM findings WHERE id = ?1 AND inspection_id = ?2",
        )
        .bind(review.finding_id.to_string())
        .bind(review.inspection_id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_error)?;
        let (current, note_before) = match &finding {
            Some(row) => {
                let status: String = row.try_get("status").map_err(map_error)?;
                let note: Option<String> = row.try_get("review_note").map_err(map_error)?;
                (Some(finding_status(&status)?), note)
            }
            None => (None, None),
        };
        let (before, after) = check_finding_review(review, &standing, current)?;
        let note = note_after(review, note_before.as_deref());
        // The worker's status is kept from the first confirm or reject on.
        sqlx::query(
            "UPDATE findings SET status = ?2, review_note = ?3,
                worker_status = CASE WHEN ?4 THEN coalesce(worker_status, status)
                                     ELSE worker_status END
             WHERE id = ?1",
        )
        .bind(review.finding_id.to_string())
        .bind(after.as_str())
        .bind(note)
        .bind(review.decision != FindingDecision::Annotate)
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        let id = sqlx::query(
            "INSERT INTO finding_reviews (inspection_id, finding_id, decision, note, actor, at,
                                          status_before, status_after)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .bind(review.inspection_id.to_string())
        .bind(review.finding_id.to_string())
        .bind(review.decision.as_str())
        .bind(review.note.as_deref())
        .bind(&review.actor)
        .bind(time(&review.at))
        .bind(before.as_str())
        .bind(after.as_str())
        .execute(&mut *tx)
        .await
        .map_err(map_error)?
        .last_insert_rowid();
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
        let mut tx = self.write_tx().await?;
        let standing = standing(&mut tx, inspection_id).await?;
        let findings = finding_statuses(&mut tx, inspection_id).await?;
        check_mark_reviewed(inspection_id, &standing, &findings)?;
        sqlx::query(
            "UPDATE inspections SET reviewed_at = ?2, reviewed_by = ?3, review_note = ?4
             WHERE id = ?1",
        )
        .bind(inspection_id.to_string())
        .bind(time(&review.at))
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
        let mut tx = self.write_tx().await?;
        let standing = standing(&mut tx, charge.inspection_id).await?;
        let findings = finding_statuses(&mut tx, charge.inspection_id).await?;
        check_charge(charge, &standing, &findings)?;
        sqlx::query(
            "INSERT INTO charges (id, inspection_id, findings, note, actor, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(charge.id.to_string())
        .bind(charge.inspection_id.to_string())
        .bind(json(&charge.findings)?)
        .bind(charge.note.as_deref())
        .bind(&charge.actor)
        .bind(time(&charge.at))
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        audit_in(&mut tx, &charge_audit(charge)).await?;
        tx.commit().await.map_err(map_error)
    }

    async fn vehicle(&self, plate: &str) -> Result<Option<VehicleRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT plate, display, country, first_seen_at, last_seen_at
             FROM vehicles WHERE plate = ?1",
        )
        .bind(plate)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_error)?;
        row.map(|row| {
            Ok(VehicleRecord {
                plate: row.try_get("plate").map_err(map_error)?,
                display: row.try_get("display").map_err(map_error)?,
                country: row.try_get("country").map_err(map_error)?,
                first_seen_at: req_time(&row, "first_seen_at")?,
                last_seen_at: req_time(&row, "last_seen_at")?,
            })
        })
        .transpose()
    }

    async fn sites(&self) -> Result<Vec<SiteRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT site, first_seen_at, last_seen_at,
                    (SELECT count(*) FROM devices WHERE devices.site = sites.site) AS devices
             FROM sites ORDER BY site",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(map_error)?;
        rows.iter()
            .map(|row| {
                let site: String = row.try_get("site").map_err(map_error)?;
                Ok(SiteRecord {
                    site: SiteId::new(site).map_err(|e| StoreError::Data(e.to_string()))?,
                    first_seen_at: req_time(row, "first_seen_at")?,
                    last_seen_at: req_time(row, "last_seen_at")?,
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
             WHERE coalesce(i.started_at, i.first_seen_at) < ?1
               AND f.image_purged_at IS NULL
               AND (?3 OR NOT (EXISTS (SELECT 1 FROM charges c WHERE c.inspection_id = i.id)
                            OR EXISTS (SELECT 1 FROM charges c JOIN inspections r ON r.id = c.inspection_id
                                       WHERE json_extract(r.comparison, '$.pickup_inspection_id') = i.id)))
               AND NOT EXISTS (
                   SELECT 1 FROM frames g JOIN inspections j ON j.id = g.inspection_id
                   WHERE g.sha256 = f.sha256
                     AND (coalesce(j.started_at, j.first_seen_at) >= ?1
                          OR (NOT ?3 AND (EXISTS (SELECT 1 FROM charges d WHERE d.inspection_id = j.id)
                                             OR EXISTS (SELECT 1 FROM charges d JOIN inspections r ON r.id = d.inspection_id
                                                        WHERE json_extract(r.comparison, '$.pickup_inspection_id') = j.id)))))
             ORDER BY inspection_at, inspection_id, sha256 LIMIT ?2",
        )
        .bind(time(&before))
        .bind(i64::from(limit))
        .bind(include_charged)
        .fetch_all(&self.pool)
        .await
        .map_err(map_error)?;
        rows.iter()
            .map(|row| {
                Ok(ImageRef {
                    inspection_id: uuid_col(row, "inspection_id")?,
                    sha256: row.try_get("sha256").map_err(map_error)?,
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
        let when = time(&at);
        let mut tx = self.write_tx().await?;
        let mut frames = 0;
        for image in images {
            frames += sqlx::query(
                "UPDATE frames SET image_purged_at = ?3
                 WHERE inspection_id = ?1 AND sha256 = ?2 AND image_purged_at IS NULL",
            )
            .bind(image.inspection_id.to_string())
            .bind(&image.sha256)
            .bind(&when)
            .execute(&mut *tx)
            .await
            .map_err(map_error)?
            .rows_affected();
        }
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
        let (cutoff, limit_db) = (time(&before), i64::from(limit));
        let mut tx = self.write_tx().await?;
        let deleted = match class {
            // Refused above; spelled out for the match.
            DataClass::Images => return Err(images_are_not_purged_here()),
            DataClass::Findings => {
                let rows = sqlx::query(
                    "SELECT id, vehicle_id FROM inspections
                     WHERE coalesce(started_at, first_seen_at) < ?1
                     ORDER BY coalesce(started_at, first_seen_at), id LIMIT ?2",
                )
                .bind(&cutoff)
                .bind(limit_db)
                .fetch_all(&mut *tx)
                .await
                .map_err(map_error)?;
                let mut ids: Vec<String> = Vec::with_capacity(rows.len());
                let mut vehicles: Vec<String> = Vec::new();
                for row in &rows {
                    ids.push(row.try_get("id").map_err(map_error)?);
                    if let Some(v) = row
                        .try_get::<Option<String>, _>("vehicle_id")
                        .map_err(map_error)?
                        && !vehicles.contains(&v)
                    {
                        vehicles.push(v);
                    }
                }
                if ids.is_empty() {
                    0
                } else {
                    let ids = json(&ids)?;
                    // Events have no foreign key; the rest cascades.
                    sqlx::query(
                        "DELETE FROM events WHERE inspection_id IS NOT NULL
                           AND inspection_id IN (SELECT value FROM json_each(?1))",
                    )
                    .bind(&ids)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_error)?;
                    let n = sqlx::query(
                        "DELETE FROM inspections WHERE id IN (SELECT value FROM json_each(?1))",
                    )
                    .bind(&ids)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_error)?
                    .rows_affected();
                    sqlx::query(
                        "DELETE FROM vehicles WHERE id IN (SELECT value FROM json_each(?1))
                           AND NOT EXISTS (SELECT 1 FROM inspections
                                           WHERE inspections.vehicle_id = vehicles.id)",
                    )
                    .bind(json(&vehicles)?)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_error)?;
                    n
                }
            }
            DataClass::Reports => sqlx::query(
                "DELETE FROM reports WHERE id IN (
                    SELECT r.id FROM reports r JOIN inspections i ON i.id = r.inspection_id
                    WHERE coalesce(i.started_at, i.first_seen_at) < ?1
                    ORDER BY coalesce(i.started_at, i.first_seen_at), r.created_at, r.id
                    LIMIT ?2)",
            )
            .bind(&cutoff)
            .bind(limit_db)
            .execute(&mut *tx)
            .await
            .map_err(map_error)?
            .rows_affected(),
            DataClass::Audit => sqlx::query(
                "DELETE FROM audit_log WHERE id IN (
                    SELECT id FROM audit_log WHERE at < ?1 ORDER BY at, id LIMIT ?2)",
            )
            .bind(&cutoff)
            .bind(limit_db)
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
        // One read transaction: the three lists agree.
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let rows = match selector {
            ErasureSelector::Plate(plate) => sqlx::query(
                "SELECT id FROM inspections
                 WHERE id IN (SELECT id FROM inspections WHERE plate = ?1
                              UNION SELECT inspection_id FROM plate_reads WHERE plate = ?1)
                 ORDER BY coalesce(started_at, first_seen_at), id",
            )
            .bind(plate)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_error)?,
            ErasureSelector::Inspection(id) => {
                sqlx::query("SELECT id FROM inspections WHERE id = ?1")
                    .bind(id.to_string())
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
            .map(|row| uuid_col(row, "id"))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let ids = json(&inspections)?;
        let rows = sqlx::query(
            "SELECT plate FROM inspections
             WHERE id IN (SELECT value FROM json_each(?1)) AND plate IS NOT NULL
             UNION
             SELECT plate FROM plate_reads
             WHERE inspection_id IN (SELECT value FROM json_each(?1)) AND plate IS NOT NULL",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_error)?;
        let mut plates = rows
            .iter()
            .map(|row| row.try_get::<String, _>("plate").map_err(map_error))
            .collect::<Result<Vec<_>, StoreError>>()?;
        if let ErasureSelector::Plate(plate) = selector {
            plates.push(plate.clone());
        }
        plates.sort_unstable();
        plates.dedup();
        let rows = sqlx::query(
            "SELECT DISTINCT f.sha256 AS sha256 FROM frames f
             WHERE f.inspection_id IN (SELECT value FROM json_each(?1))
               AND f.image_purged_at IS NULL
               AND NOT EXISTS (
                   SELECT 1 FROM frames g WHERE g.sha256 = f.sha256
                     AND g.inspection_id NOT IN (SELECT value FROM json_each(?1)))
             ORDER BY sha256",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_error)?;
        let images = rows
            .iter()
            .map(|row| row.try_get::<String, _>("sha256").map_err(map_error))
            .collect::<Result<Vec<_>, StoreError>>()?;
        tx.commit().await.map_err(map_error)?;
        Ok(ErasurePlan {
            inspections,
            plates,
            images,
        })
    }

    async fn erase(&self, plan: &ErasurePlan, erasure: &Erasure) -> Result<(), StoreError> {
        let ids = json(&plan.inspections)?;
        let at = time(&erasure.at);
        let mut tx = self.write_tx().await?;
        // The reports name the plate: they go whole.
        sqlx::query("DELETE FROM reports WHERE inspection_id IN (SELECT value FROM json_each(?1))")
            .bind(&ids)
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
        sqlx::query(
            "UPDATE plate_reads SET raw_text = NULL, plate = NULL, country = NULL,
                x1 = NULL, y1 = NULL, x2 = NULL, y2 = NULL
             WHERE inspection_id IN (SELECT value FROM json_each(?1))",
        )
        .bind(&ids)
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        let rows = sqlx::query(
            "SELECT DISTINCT vehicle_id FROM inspections
             WHERE id IN (SELECT value FROM json_each(?1)) AND vehicle_id IS NOT NULL",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_error)?;
        let vehicles = rows
            .iter()
            .map(|row| row.try_get::<String, _>("vehicle_id").map_err(map_error))
            .collect::<Result<Vec<_>, StoreError>>()?;
        sqlx::query(
            "UPDATE inspections SET plate = NULL, plate_json = NULL, vehicle_id = NULL,
                erased_at = coalesce(erased_at, ?2), updated_at = ?2
             WHERE id IN (SELECT value FROM json_each(?1))",
        )
        .bind(&ids)
        .bind(&at)
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        // The vehicle goes once no inspection refers to it (an erasure of one
        // inspection keeps the vehicle of its other inspections).
        sqlx::query(
            "DELETE FROM vehicles
             WHERE (id IN (SELECT value FROM json_each(?1))
                    OR plate IN (SELECT value FROM json_each(?2)))
               AND NOT EXISTS (SELECT 1 FROM inspections
                               WHERE inspections.vehicle_id = vehicles.id)",
        )
        .bind(json(&vehicles)?)
        .bind(json(&plan.plates)?)
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        sqlx::query(
            "UPDATE frames SET image_purged_at = ?3
             WHERE inspection_id IN (SELECT value FROM json_each(?1))
               AND sha256 IN (SELECT value FROM json_each(?2)) AND image_purged_at IS NULL",
        )
        .bind(&ids)
        .bind(json(&plan.images)?)
        .bind(&at)
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
                "SELECT CAST(id AS TEXT) AS k, {column} AS note FROM {table}
                 WHERE {filter} IN (SELECT value FROM json_each(?1)) AND {column} IS NOT NULL"
            )))
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await
            .map_err(map_error)?;
            for row in &rows {
                let key: String = row.try_get("k").map_err(map_error)?;
                let note: String = row.try_get("note").map_err(map_error)?;
                let mut redacted = note.clone();
                for plate in &plan.plates {
                    if let Some(r) = redact_plate(&redacted, plate) {
                        redacted = r;
                    }
                }
                if redacted != note {
                    sqlx::query(AssertSqlSafe(format!(
                        "UPDATE {table} SET {column} = ?1 WHERE CAST(id AS TEXT) = ?2"
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
        let targets: Vec<String> = plan
            .inspections
            .iter()
            .map(|id| format!("inspection:{id}"))
            .collect();
        let rows = sqlx::query(
            "SELECT id, before, after FROM audit_log
             WHERE target IN (SELECT value FROM json_each(?1))",
        )
        .bind(json(&targets)?)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_error)?;
        for row in &rows {
            let id: i64 = row.try_get("id").map_err(map_error)?;
            let mut changed = false;
            let mut redacted = |name: &str| -> Result<Option<String>, StoreError> {
                let text: Option<String> = row.try_get(name).map_err(map_error)?;
                let Some(text) = text else { return Ok(None) };
                let mut value: serde_json::Value = from_json("audit entry", &text)?;
                if redact(&mut value, &plan.plates) {
                    changed = true;
                    Ok(Some(json(&value)?))
                } else {
                    Ok(Some(text))
                }
            };
            let (before, after) = (redacted("before")?, redacted("after")?);
            if changed {
                sqlx::query("UPDATE audit_log SET before = ?2, after = ?3 WHERE id = ?1")
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
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO commands (cmd_id, site, device, kind, command, requested_by,
                requested_at, expires_at, published_at, outcome, detail, result_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )
        .bind(command.cmd_id.to_string())
        .bind(command.site.as_str())
        .bind(command.device.as_str())
        .bind(&command.kind)
        .bind(json(&command.command)?)
        .bind(&command.requested_by)
        .bind(time(&command.requested_at))
        .bind(command.expires_at.as_ref().map(time))
        .bind(command.published_at.as_ref().map(time))
        .bind(command.outcome.as_deref())
        .bind(command.detail.as_deref())
        .bind(command.result_at.as_ref().map(time))
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
        let mut tx = self.write_tx().await?;
        let found = sqlx::query("UPDATE commands SET published_at = ?2 WHERE cmd_id = ?1")
            .bind(cmd_id.to_string())
            .bind(time(&at))
            .execute(&mut *tx)
            .await
            .map_err(map_error)?
            .rows_affected()
            == 1;
        if !found {
            return Err(no_command(cmd_id));
        }
        tx.commit().await.map_err(map_error)
    }

    async fn command(&self, cmd_id: Uuid) -> Result<Option<CommandRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT cmd_id, site, device, kind, command, requested_by, requested_at, expires_at,
                    published_at, outcome, detail, result_at
             FROM commands WHERE cmd_id = ?1",
        )
        .bind(cmd_id.to_string())
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
             FROM commands WHERE site = ?1 AND device = ?2
             ORDER BY requested_at DESC, cmd_id DESC LIMIT ?3",
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
fn command_record(row: &SqliteRow) -> Result<CommandRecord, StoreError> {
    let site: String = row.try_get("site").map_err(map_error)?;
    let device: String = row.try_get("device").map_err(map_error)?;
    let command: String = row.try_get("command").map_err(map_error)?;
    Ok(CommandRecord {
        cmd_id: uuid_col(row, "cmd_id")?,
        site: SiteId::new(site).map_err(|e| StoreError::Data(e.to_string()))?,
        device: DeviceId::new(device).map_err(|e| StoreError::Data(e.to_string()))?,
        command: from_json("command", &command)?,
        kind: row.try_get("kind").map_err(map_error)?,
        requested_by: row.try_get("requested_by").map_err(map_error)?,
        requested_at: req_time(row, "requested_at")?,
        expires_at: opt_time(row, "expires_at")?,
        published_at: opt_time(row, "published_at")?,
        outcome: row.try_get("outcome").map_err(map_error)?,
        detail: row.try_get("detail").map_err(map_error)?,
        result_at: opt_time(row, "result_at")?,
    })
}

fn device_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<DeviceRecord, StoreError> {
    let text = |name: &str| -> Result<Option<String>, StoreError> {
        row.try_get::<Option<String>, _>(name).map_err(map_error)
    };
    let id = |name: &str| -> Result<String, StoreError> {
        row.try_get::<String, _>(name).map_err(map_error)
    };
    let last_seq: Option<i64> = row.try_get("last_seq").map_err(map_error)?;
    Ok(DeviceRecord {
        site: SiteId::new(id("site")?).map_err(|e| StoreError::Data(e.to_string()))?,
        device: DeviceId::new(id("device")?).map_err(|e| StoreError::Data(e.to_string()))?,
        status: text("status")?
            .map(|s| from_json("status", &s))
            .transpose()?,
        status_received_at: text("status_received_at")?
            .map(|s| parse_time(&s))
            .transpose()?,
        telemetry: text("telemetry")?
            .map(|s| from_json("telemetry", &s))
            .transpose()?,
        telemetry_received_at: text("telemetry_received_at")?
            .map(|s| parse_time(&s))
            .transpose()?,
        last_seq: last_seq.map(|s| s.max(0) as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_path("sqlite://data/c.sqlite3").unwrap(),
            Some(PathBuf::from("data/c.sqlite3"))
        );
        assert_eq!(
            sqlite_path("sqlite:///var/lib/c.db?mode=rwc").unwrap(),
            Some(PathBuf::from("/var/lib/c.db"))
        );
        assert_eq!(sqlite_path("sqlite::memory:").unwrap(), None);
        assert!(sqlite_path("sqlite://").is_err());
        assert!(sqlite_path("postgres://x").is_err());
    }

    #[test]
    fn times_sort_as_text() {
        let a = DateTime::parse_from_rfc3339("2026-01-01T00:00:00.5Z")
            .unwrap()
            .with_timezone(&Utc);
        let b = DateTime::parse_from_rfc3339("2026-01-01T00:00:01Z")
            .unwrap()
            .with_timezone(&Utc);
        assert!(time(&a) < time(&b), "{} {}", time(&a), time(&b));
        assert_eq!(parse_time(&time(&a)).unwrap(), a);
    }
}
