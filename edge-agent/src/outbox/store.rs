//! The outbox itself: append, list, ack, evict, and the open sequence that
//! recovers a damaged file.

use std::path::PathBuf;
use std::time::Instant;

use chrono::{DateTime, Utc};
use inspection_core::wire::{Event, Sha256Hex};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::OutboxError;
use super::config::OutboxConfig;
use super::metrics::{KindLabels, OutboxMetrics, RecoveryLabels};
use super::recovery::{self, Opened};
use super::schema::{KIND_EVENT, KIND_IMAGE, from_sql_i64, to_sql_u64};
use super::seq::SeqCeiling;

/// How an entry ranks when space runs out: higher survives longer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority(pub u8);

impl Priority {
    /// Events: above every frame.
    pub const EVENT: Priority = Priority(255);
    /// Below every ranked frame.
    pub const LOWEST: Priority = Priority(0);

    /// A selected frame by its rank within its camera (1 = best): rank 1 is
    /// 254, rank 2 is 253, ..., ranks from 254 on are 1.
    pub fn frame(rank: u32) -> Priority {
        let rank = rank.clamp(1, 254);
        // In 1..=254 after the clamp, so the difference fits a u8.
        Priority(u8::try_from(255 - rank).unwrap_or(1))
    }
}

/// The row id of an entry; increases with insertion order, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId(pub i64);

/// One entry waiting for its ack.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: EntryId,
    pub kind: EntryKind,
    pub priority: Priority,
    /// The inspection it belongs to; `None` for a command result that acted
    /// on no inspection.
    pub inspection_id: Option<Uuid>,
    /// When it was appended (the agent's clock).
    pub created_at: DateTime<Utc>,
    /// How often the transport reported trying to send it.
    pub attempts: u32,
}

/// What an entry carries.
#[derive(Debug, Clone, PartialEq)]
pub enum EntryKind {
    /// An encoded [`Event`], ready to publish as is.
    Event {
        msg_id: Uuid,
        seq: u64,
        payload: Vec<u8>,
    },
    /// A JPEG, addressed by its SHA-256.
    Image { sha256: Sha256Hex, jpeg: Vec<u8> },
}

/// The result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub id: EntryId,
    /// Entries evicted to make room for this one.
    pub evicted: u64,
    /// The entry was there already (same image); nothing was written.
    pub duplicate: bool,
}

/// The result of [`Outbox::append_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendedEvent {
    pub entry: Appended,
    pub seq: u64,
    pub msg_id: Uuid,
}

/// What is waiting, for telemetry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxStats {
    pub entries: u64,
    pub bytes: u64,
    /// Age of the oldest entry, 0 when empty.
    pub oldest_age_seconds: u64,
    /// Entries dropped (any reason) since this `Outbox` was opened.
    pub dropped_total: u64,
}

impl From<OutboxStats> for inspection_core::wire::OutboxStats {
    fn from(s: OutboxStats) -> Self {
        Self {
            entries: s.entries,
            bytes: s.bytes,
            oldest_age_seconds: s.oldest_age_seconds,
            dropped_total: s.dropped_total,
        }
    }
}

/// A database that was moved aside at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Metric label: empty_file, not_a_database, not_an_outbox,
    /// schema_version, corrupt, integrity_check, orphan_files.
    pub reason: &'static str,
    /// Where the old file now is.
    pub moved_to: PathBuf,
    /// What SQLite or the check said.
    pub detail: String,
}

/// What [`Outbox::open`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    pub recovered: Option<Recovered>,
    pub entries: u64,
    pub bytes: u64,
    /// The last sequence number handed out; the next event gets one more.
    pub last_seq: u64,
}

/// The durable outbox. Not `Sync`: share it behind a `Mutex` and call it
/// from a blocking thread, as every call may wait for an fsync.
#[derive(Debug)]
pub struct Outbox {
    conn: Connection,
    max_bytes: u64,
    evict_events: bool,
    metrics: OutboxMetrics,
    ceiling: SeqCeiling,
    last_seq: u64,
    entries: u64,
    bytes: u64,
    dropped: u64,
}

fn kind_label(kind: i64) -> &'static str {
    if kind == KIND_EVENT { "event" } else { "image" }
}

impl Outbox {
    /// Opens (creating, or recovering, as needed) the outbox at
    /// `config.path`. A damaged file is moved aside, never a reason to fail;
    /// errors are left for what no new file can fix (permissions, a full
    /// disk, another process holding the database).
    pub fn open(
        config: &OutboxConfig,
        metrics: OutboxMetrics,
    ) -> Result<(Outbox, OpenReport), OutboxError> {
        let path = config.path.as_path();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| OutboxError::Io {
                what: "cannot create directory",
                path: dir.to_owned(),
                source,
            })?;
        }
        let ceiling = SeqCeiling::load(path);
        let mut recovered = None;
        let mut move_aside = |reason: &'static str, detail: String| {
            let moved_to = recovery::move_aside(path)?;
            metrics
                .recovered
                .get_or_create(&RecoveryLabels { reason })
                .inc();
            tracing::error!(
                path = %path.display(),
                moved_to = %moved_to.display(),
                reason,
                detail = %detail,
                "outbox database moved aside; starting a fresh one (entries in the old file are not sent)"
            );
            recovered = Some(Recovered {
                reason,
                moved_to,
                detail,
            });
            Ok::<(), OutboxError>(())
        };
        let conn = if path.exists() {
            match recovery::open_existing(config)? {
                Opened::Healthy(conn) => Some(conn),
                Opened::Damaged {
                    reason,
                    detail,
                    salvaged_seq,
                } => {
                    move_aside(reason, detail)?;
                    let start = salvaged_seq.unwrap_or(0).max(ceiling.get());
                    if start == 0 {
                        tracing::warn!(path = %path.display(), "no sequence number could be recovered; seq restarts at 1");
                    }
                    recovery::create_fresh(path, start)?;
                    None
                }
            }
        } else {
            if recovery::has_orphans(path) {
                move_aside(
                    "orphan_files",
                    "-wal/-shm/-journal without their database".to_owned(),
                )?;
            }
            if ceiling.get() > 0 {
                tracing::warn!(path = %path.display(), ceiling = ceiling.get(), "outbox database missing; seq continues above the ceiling");
            }
            recovery::create_fresh(path, ceiling.get())?;
            None
        };
        let conn = match conn {
            Some(conn) => conn,
            None => match recovery::open_existing(config)? {
                Opened::Healthy(conn) => conn,
                Opened::Damaged { reason, detail, .. } => {
                    // A file we just built fails its check: the storage is
                    // broken, and looping would not help.
                    return Err(OutboxError::Io {
                        what: "freshly created database is unusable",
                        path: path.to_owned(),
                        source: std::io::Error::other(format!("{reason}: {detail}")),
                    });
                }
            },
        };
        let (last_seq, entries, bytes) =
            Self::read_counts(&conn).map_err(OutboxError::from_sqlite)?;
        let outbox = Outbox {
            conn,
            max_bytes: config.max_bytes,
            evict_events: config.evict_events,
            metrics,
            ceiling,
            last_seq,
            entries,
            bytes,
            dropped: 0,
        };
        outbox.publish_gauges();
        let report = OpenReport {
            recovered,
            entries,
            bytes,
            last_seq,
        };
        tracing::info!(
            path = %path.display(),
            entries,
            bytes,
            last_seq,
            "outbox open"
        );
        Ok((outbox, report))
    }

    fn read_counts(conn: &Connection) -> rusqlite::Result<(u64, u64, u64)> {
        let last_seq: i64 =
            conn.query_row("SELECT value FROM meta WHERE key = 'last_seq'", [], |r| {
                r.get(0)
            })?;
        let (entries, bytes): (i64, i64) = conn.query_row(
            "SELECT count(*), coalesce(sum(size), 0) FROM entries",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((
            from_sql_i64(last_seq),
            from_sql_i64(entries),
            from_sql_i64(bytes),
        ))
    }

    fn publish_gauges(&self) {
        self.metrics.entries.set(to_sql_u64(self.entries));
        self.metrics.bytes.set(to_sql_u64(self.bytes));
    }

    /// Appends the event built by `make(seq, msg_id)`, in one transaction
    /// with the update of the persisted sequence number. The event must carry
    /// exactly that `seq` and `msg_id`. On any error no seq is consumed.
    pub fn append_event(
        &mut self,
        make: impl FnOnce(u64, Uuid) -> Event,
    ) -> Result<AppendedEvent, OutboxError> {
        let seq = self.last_seq + 1;
        let msg_id = Uuid::now_v7();
        let event = make(seq, msg_id);
        if event.seq != seq || event.msg_id != msg_id {
            return Err(OutboxError::EventMismatch { seq, msg_id });
        }
        let payload = inspection_core::wire::encode(&event)?;
        self.ceiling.cover(seq)?;
        let entry = self.insert(NewEntry {
            kind: KIND_EVENT,
            key: msg_id.to_string(),
            seq: Some(seq),
            priority: Priority::EVENT,
            inspection_id: event.inspection_id,
            payload: &payload,
        })?;
        self.last_seq = seq;
        Ok(AppendedEvent { entry, seq, msg_id })
    }

    /// Appends a JPEG under its SHA-256 (checked against the bytes). The
    /// same image twice is one entry: the second append writes nothing but
    /// raises the entry's priority if it ranks higher now.
    pub fn append_image(
        &mut self,
        sha256: &Sha256Hex,
        jpeg: &[u8],
        priority: Priority,
        inspection_id: Uuid,
    ) -> Result<Appended, OutboxError> {
        let digest: [u8; 32] = Sha256::digest(jpeg).into();
        let actual = Sha256Hex::from_digest(&digest);
        if &actual != sha256 {
            return Err(OutboxError::HashMismatch {
                expected: sha256.to_string(),
                actual: actual.to_string(),
            });
        }
        let existing: Option<(i64, i64)> = self
            .conn
            .query_row(
                "SELECT id, priority FROM entries WHERE kind = ?1 AND key = ?2",
                params![KIND_IMAGE, sha256.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(OutboxError::from_sqlite)?;
        if let Some((id, old)) = existing {
            if i64::from(priority.0) > old {
                self.conn
                    .execute(
                        "UPDATE entries SET priority = ?1 WHERE id = ?2",
                        params![priority.0, id],
                    )
                    .map_err(OutboxError::from_sqlite)?;
            }
            return Ok(Appended {
                id: EntryId(id),
                evicted: 0,
                duplicate: true,
            });
        }
        self.insert(NewEntry {
            kind: KIND_IMAGE,
            key: sha256.to_string(),
            seq: None,
            priority,
            inspection_id: Some(inspection_id),
            payload: jpeg,
        })
    }

    /// Evicts what the policy allows to make room, inserts, commits; on any
    /// error nothing has changed.
    fn insert(&mut self, new: NewEntry<'_>) -> Result<Appended, OutboxError> {
        let label = kind_label(new.kind);
        let size = new.payload.len() as u64;
        if size > self.max_bytes {
            self.count_drop(label, "too_large", 1);
            return Err(OutboxError::TooLarge {
                size,
                max_bytes: self.max_bytes,
            });
        }
        let started = Instant::now();
        let result = self.insert_tx(&new, size);
        match result {
            Ok(Inserted::Done { id, victims }) => {
                self.metrics
                    .commit_seconds
                    .observe(started.elapsed().as_secs_f64());
                let mut freed = 0;
                for v in &victims {
                    freed += v.size;
                    self.count_drop(kind_label(v.kind), "evicted_for_space", 1);
                }
                self.entries = self.entries + 1 - victims.len() as u64;
                self.bytes = self.bytes + size - freed;
                self.metrics
                    .appended
                    .get_or_create(&KindLabels { kind: label })
                    .inc();
                self.publish_gauges();
                if !victims.is_empty() {
                    tracing::warn!(
                        evicted = victims.len(),
                        freed_bytes = freed,
                        kind = label,
                        "outbox full: evicted lower-priority entries"
                    );
                }
                Ok(Appended {
                    id: EntryId(id),
                    evicted: victims.len() as u64,
                    duplicate: false,
                })
            }
            Ok(Inserted::Refused { needed, evictable }) => {
                self.count_drop(label, "refused_full", 1);
                tracing::warn!(
                    kind = label,
                    size,
                    needed,
                    evictable,
                    "outbox full: entry refused"
                );
                Err(OutboxError::Full { needed, evictable })
            }
            Err(e) => {
                let e = OutboxError::from_sqlite(e);
                if matches!(e, OutboxError::DiskFull(_)) {
                    self.count_drop(label, "disk_full", 1);
                    tracing::error!(kind = label, size, error = %e, "disk full: entry not stored");
                }
                Err(e)
            }
        }
    }

    fn insert_tx(&mut self, new: &NewEntry<'_>, size: u64) -> rusqlite::Result<Inserted> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let needed = (self.bytes + size).saturating_sub(self.max_bytes);
        let mut victims = Vec::new();
        if needed > 0 {
            let mut freed = 0;
            let mut stmt = tx.prepare_cached(
                "SELECT id, kind, size FROM entries WHERE priority <= ?1 \
                 AND (kind = ?2 OR ?3) ORDER BY priority, id",
            )?;
            let mut rows = stmt.query(params![new.priority.0, KIND_IMAGE, self.evict_events])?;
            while freed < needed {
                let Some(row) = rows.next()? else { break };
                let victim = Victim {
                    id: row.get(0)?,
                    kind: row.get(1)?,
                    size: from_sql_i64(row.get(2)?),
                };
                freed += victim.size;
                victims.push(victim);
            }
            if freed < needed {
                // Nothing deleted yet; dropping the transaction rolls back.
                return Ok(Inserted::Refused {
                    needed,
                    evictable: freed,
                });
            }
            drop(rows);
            let mut delete = tx.prepare_cached("DELETE FROM entries WHERE id = ?1")?;
            for v in &victims {
                delete.execute([v.id])?;
            }
        }
        tx.prepare_cached(
            "INSERT INTO entries (kind, key, seq, priority, inspection_id, created_at_ms, \
             attempts, size, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?8)",
        )?
        .execute(params![
            new.kind,
            new.key,
            new.seq.map(to_sql_u64),
            new.priority.0,
            // '' for none: the column is NOT NULL in schema version 1.
            new.inspection_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
            now().timestamp_millis(),
            to_sql_u64(size),
            new.payload,
        ])?;
        let id = tx.last_insert_rowid();
        if let Some(seq) = new.seq {
            tx.prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'last_seq'")?
                .execute([to_sql_u64(seq)])?;
        }
        tx.commit()?;
        Ok(Inserted::Done { id, victims })
    }

    fn count_drop(&mut self, kind: &'static str, reason: &'static str, n: u64) {
        self.dropped += n;
        self.metrics.dropped(kind, reason, n);
    }

    /// Up to `limit` entries in insertion order.
    pub fn pending(&self, limit: usize) -> Result<Vec<Entry>, OutboxError> {
        self.pending_after(None, limit)
    }

    /// Up to `limit` entries inserted after `after`, in insertion order: for
    /// paging past entries already in flight.
    pub fn pending_after(
        &self,
        after: Option<EntryId>,
        limit: usize,
    ) -> Result<Vec<Entry>, OutboxError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, kind, key, seq, priority, inspection_id, created_at_ms, attempts, \
                 payload FROM entries WHERE id > ?1 ORDER BY id LIMIT ?2",
            )
            .map_err(OutboxError::from_sqlite)?;
        let after = after.map_or(0, |a| a.0);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![after, limit], row_to_entry)
            .map_err(OutboxError::from_sqlite)?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(OutboxError::from_sqlite)
    }

    /// Counts a send attempt on each entry (advisory, for back-off and
    /// diagnosis); unknown ids are ignored.
    pub fn record_attempts(&mut self, ids: &[EntryId]) -> Result<(), OutboxError> {
        let tx = self.conn.transaction().map_err(OutboxError::from_sqlite)?;
        {
            let mut stmt = tx
                .prepare_cached("UPDATE entries SET attempts = attempts + 1 WHERE id = ?1")
                .map_err(OutboxError::from_sqlite)?;
            for id in ids {
                stmt.execute([id.0]).map_err(OutboxError::from_sqlite)?;
            }
        }
        tx.commit().map_err(OutboxError::from_sqlite)
    }

    /// Removes the events central acknowledged; returns how many were here
    /// (an ack for an unknown or already-acked id is not an error).
    pub fn ack_events(&mut self, msg_ids: &[Uuid]) -> Result<usize, OutboxError> {
        let keys: Vec<String> = msg_ids.iter().map(Uuid::to_string).collect();
        let (n, freed) = self.delete_keys(KIND_EVENT, &keys)?;
        self.after_ack("event", n, freed);
        Ok(n)
    }

    /// Removes an uploaded image; false when it was not here.
    pub fn ack_image(&mut self, sha256: &Sha256Hex) -> Result<bool, OutboxError> {
        let (n, freed) = self.delete_keys(KIND_IMAGE, &[sha256.to_string()])?;
        self.after_ack("image", n, freed);
        Ok(n > 0)
    }

    fn delete_keys(&mut self, kind: i64, keys: &[String]) -> Result<(usize, u64), OutboxError> {
        let run = |conn: &mut Connection| -> rusqlite::Result<(usize, u64)> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut n = 0;
            let mut freed = 0;
            {
                let mut stmt = tx.prepare_cached(
                    "DELETE FROM entries WHERE kind = ?1 AND key = ?2 RETURNING size",
                )?;
                for key in keys {
                    let size: Option<i64> = stmt
                        .query_row(params![kind, key], |r| r.get(0))
                        .optional()?;
                    if let Some(size) = size {
                        n += 1;
                        freed += from_sql_i64(size);
                    }
                }
            }
            tx.commit()?;
            Ok((n, freed))
        };
        run(&mut self.conn).map_err(OutboxError::from_sqlite)
    }

    fn after_ack(&mut self, kind: &'static str, n: usize, freed: u64) {
        self.entries = self.entries.saturating_sub(n as u64);
        self.bytes = self.bytes.saturating_sub(freed);
        self.metrics
            .acked
            .get_or_create(&KindLabels { kind })
            .inc_by(n as u64);
        self.publish_gauges();
    }

    /// Entries, bytes, oldest age and drops since open.
    pub fn stats(&self) -> Result<OutboxStats, OutboxError> {
        let oldest: Option<i64> = self
            .conn
            .query_row(
                "SELECT created_at_ms FROM entries ORDER BY id LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(OutboxError::from_sqlite)?;
        let oldest_age_seconds = oldest.map_or(0, |ms| {
            from_sql_i64(now().timestamp_millis().saturating_sub(ms) / 1000)
        });
        Ok(OutboxStats {
            entries: self.entries,
            bytes: self.bytes,
            oldest_age_seconds,
            dropped_total: self.dropped,
        })
    }

    /// The last sequence number handed out.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Caps the database at `pages` pages (`PRAGMA max_page_count`), so tests
    /// can provoke SQLITE_FULL without filling a real disk. Returns the cap
    /// SQLite applied (never below the current size).
    #[doc(hidden)]
    pub fn limit_pages_for_tests(&self, pages: u64) -> Result<u64, OutboxError> {
        self.conn
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                r.get::<_, i64>(0)
            })
            .map(from_sql_i64)
            .map_err(OutboxError::from_sqlite)
    }
}

/// The wall clock (chrono is built without its `clock` feature).
fn now() -> DateTime<Utc> {
    DateTime::<Utc>::from(std::time::SystemTime::now())
}

struct NewEntry<'a> {
    kind: i64,
    key: String,
    seq: Option<u64>,
    priority: Priority,
    inspection_id: Option<Uuid>,
    payload: &'a [u8],
}

struct Victim {
    id: i64,
    kind: i64,
    size: u64,
}

enum Inserted {
    Done { id: i64, victims: Vec<Victim> },
    Refused { needed: u64, evictable: u64 },
}

fn conversion(column: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e))
}

fn row_to_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    let id: i64 = r.get(0)?;
    let kind: i64 = r.get(1)?;
    let key: String = r.get(2)?;
    let seq: Option<i64> = r.get(3)?;
    let priority: i64 = r.get(4)?;
    let inspection_id: String = r.get(5)?;
    let created_at_ms: i64 = r.get(6)?;
    let attempts: i64 = r.get(7)?;
    let payload: Vec<u8> = r.get(8)?;
    let kind = if kind == KIND_EVENT {
        EntryKind::Event {
            msg_id: Uuid::parse_str(&key).map_err(|e| conversion(2, e))?,
            seq: seq.map_or(0, from_sql_i64),
            payload,
        }
    } else {
        EntryKind::Image {
            sha256: Sha256Hex::new(key).map_err(|e| conversion(2, e))?,
            jpeg: payload,
        }
    };
    Ok(Entry {
        id: EntryId(id),
        kind,
        priority: Priority(u8::try_from(priority).unwrap_or(0)),
        inspection_id: if inspection_id.is_empty() {
            None
        } else {
            Some(Uuid::parse_str(&inspection_id).map_err(|e| conversion(5, e))?)
        },
        created_at: DateTime::from_timestamp_millis(created_at_ms).unwrap_or_default(),
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_rank_events_over_frames_and_better_frames_over_worse() {
        assert_eq!(Priority::frame(1), Priority(254));
        assert_eq!(Priority::frame(2), Priority(253));
        assert_eq!(Priority::frame(0), Priority::frame(1), "rank 0 reads as 1");
        assert_eq!(Priority::frame(254), Priority(1));
        assert_eq!(Priority::frame(u32::MAX), Priority(1));
        assert!(Priority::EVENT > Priority::frame(1));
        assert!(Priority::frame(1) > Priority::frame(3));
        assert!(Priority::frame(u32::MAX) > Priority::LOWEST);
    }

    #[test]
    fn sqlite_errors_are_classified() {
        let err = |code| rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
        assert_eq!(
            OutboxError::from_sqlite(err(rusqlite::ffi::SQLITE_FULL)).code(),
            "disk_full"
        );
        assert_eq!(
            OutboxError::from_sqlite(err(rusqlite::ffi::SQLITE_CORRUPT)).code(),
            "corrupt"
        );
        assert_eq!(
            OutboxError::from_sqlite(err(rusqlite::ffi::SQLITE_NOTADB)).code(),
            "corrupt"
        );
        assert_eq!(
            OutboxError::from_sqlite(err(rusqlite::ffi::SQLITE_IOERR)).code(),
            "sqlite"
        );
    }
}
