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
use inspection_core::ids::{DeviceId, SiteId};
use inspection_core::wire::{Event, EventBody, Status, Telemetry};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use uuid::Uuid;

use super::{
    DEAD_LETTER_MAX_PAYLOAD, DeadLetter, DeviceRecord, InspectionRecord, Recorded, Store,
    StoreConfig, StoreCounts, StoreError, StoredDeadLetter, StoredEvent,
};

/// SQLite's page size, as set at open (also the default).
const PAGE_SIZE: u64 = 4096;

/// The SQLite implementation of [`super::Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The database file (`None` in memory), for messages.
    path: Option<PathBuf>,
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

/// A unit enum's wire spelling (`"return"` -> `return`).
fn enum_text<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        Ok(other) => Err(StoreError::Data(format!("{other} is not a unit variant"))),
        Err(e) => Err(StoreError::Data(e.to_string())),
    }
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
        Ok(SqliteStore { pool, path })
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
            sqlx::query(
                "INSERT INTO inspections (id, site, device, kind, started_at, first_seen_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
                 ON CONFLICT (id) DO UPDATE SET
                    kind = excluded.kind, started_at = excluded.started_at,
                    updated_at = excluded.updated_at",
            )
            .bind(inspection_id)
            .bind(site)
            .bind(device)
            .bind(kind)
            .bind(time(&event.at))
            .bind(now)
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
            if let Some(id) = &inspection_id {
                update_inspection(&mut tx, event, id, &now).await?;
            }
            recorded.push(Recorded::Inserted);
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
                    frames_expected, frames_received
             FROM inspections WHERE id = ?1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(map_error)?;
        let Some(row) = row else { return Ok(None) };
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
        Ok(Some(InspectionRecord {
            id,
            site: SiteId::new(site).map_err(|e| data(e.to_string()))?,
            device: DeviceId::new(device).map_err(|e| data(e.to_string()))?,
            kind: unit("kind")?
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| data(e.to_string()))?,
            started_at: text("started_at")?.map(|s| parse_time(&s)).transpose()?,
            completed_at: text("completed_at")?.map(|s| parse_time(&s)).transpose()?,
            completion_reason: unit("completion_reason")?
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| data(e.to_string()))?,
            frames_expected: frames_expected.map(|n| n.clamp(0, i64::from(u32::MAX)) as u32),
            frames_received: frames_received.clamp(0, i64::from(u32::MAX)) as u32,
            // SCAFFOLD until the status column exists (Central processing).
            status: super::InspectionStatus::Receiving,
            status_detail: None,
            plate: None,
        }))
    }

    async fn device(
        &self,
        site: &SiteId,
        device: &DeviceId,
    ) -> Result<Option<DeviceRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT status, status_received_at, telemetry, telemetry_received_at, last_seq
             FROM devices WHERE site = ?1 AND device = ?2",
        )
        .bind(site.as_str())
        .bind(device.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(map_error)?;
        let Some(row) = row else { return Ok(None) };
        let text = |name: &str| -> Result<Option<String>, StoreError> {
            row.try_get::<Option<String>, _>(name).map_err(map_error)
        };
        let last_seq: Option<i64> = row.try_get("last_seq").map_err(map_error)?;
        Ok(Some(DeviceRecord {
            site: site.clone(),
            device: device.clone(),
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
        }))
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
