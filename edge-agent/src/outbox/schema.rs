//! The on-disk schema (documented in the module's design block) and the
//! connection settings every open applies.

use std::time::Duration;

use rusqlite::Connection;

use super::config::Synchronous;

/// `PRAGMA application_id`: "EDOB" (edge outbox), so a database that is not
/// ours is recognised as such instead of being written into.
pub(crate) const APPLICATION_ID: i32 = 0x4544_4f42;

/// `PRAGMA user_version` of the schema below.
pub(crate) const SCHEMA_VERSION: i32 = 1;

/// How long to wait for a lock held by someone else. Short: with
/// `locking_mode=EXCLUSIVE` a holder keeps the lock for its whole life, and
/// systemd only starts one agent, so a holder is a second, misconfigured one
/// to report rather than wait for.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(1);

/// Entry kinds as stored.
pub(crate) const KIND_EVENT: i64 = 0;
pub(crate) const KIND_IMAGE: i64 = 1;

const CREATE: &str = "
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE entries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          INTEGER NOT NULL CHECK (kind IN (0, 1)),
    key           TEXT NOT NULL,
    seq           INTEGER,
    priority      INTEGER NOT NULL CHECK (priority BETWEEN 0 AND 255),
    inspection_id TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    size          INTEGER NOT NULL,
    payload       BLOB NOT NULL,
    UNIQUE (kind, key)
);
CREATE INDEX entries_by_priority ON entries (priority, id);
";

/// Creates the schema in an empty database, starting sequence numbers after
/// `last_seq`.
pub(crate) fn create(conn: &mut Connection, last_seq: u64) -> rusqlite::Result<()> {
    conn.pragma_update(None, "application_id", APPLICATION_ID)?;
    let tx = conn.transaction()?;
    tx.execute_batch(CREATE)?;
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('last_seq', ?1)",
        [to_sql_u64(last_seq)],
    )?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()
}

/// Settings applied on every open. WAL is persistent in the file; the rest
/// is per connection.
pub(crate) fn configure(conn: &Connection, synchronous: Synchronous) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // One owner: the lock is taken at the first read and held until close,
    // which also means no -shm file and no shared-memory locking per commit.
    let _: String =
        conn.pragma_update_and_check(None, "locking_mode", "EXCLUSIVE", |r| r.get(0))?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "journal_mode is {mode}, not wal"
        )));
    }
    conn.pragma_update(None, "synchronous", synchronous.pragma())?;
    // Keep the WAL from holding on to the size of its largest burst.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    conn.pragma_update(None, "foreign_keys", false)?;
    Ok(())
}

/// `u64` as SQLite's signed integer; values above `i64::MAX` (not reachable
/// for sizes and sequence numbers) saturate rather than wrap.
pub(crate) fn to_sql_u64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// SQLite's integer back as `u64`; a negative value (only in a damaged row)
/// reads as 0.
pub(crate) fn from_sql_i64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
