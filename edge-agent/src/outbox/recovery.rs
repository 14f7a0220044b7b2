//! Opening a database file: telling a damaged file from a failing
//! environment, moving damaged files aside, and creating fresh ones safely.

use std::fs;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::OutboxError;
use super::config::{OutboxConfig, StartupCheck, Synchronous};
use super::schema;
use super::seq::sync_dir;

/// The files SQLite may keep beside a database, by suffix.
const COMPANIONS: [&str; 3] = ["-wal", "-shm", "-journal"];

/// What opening an existing file found.
pub(crate) enum Opened {
    /// Ours, current schema, passed the check; configured and locked.
    Healthy(Connection),
    /// To be moved aside. `salvaged_seq` is the old `last_seq` when it could
    /// still be read.
    Damaged {
        reason: &'static str,
        detail: String,
        salvaged_seq: Option<u64>,
    },
}

/// `path` with `suffix` appended to its file name.
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// A SQLite error while opening: damage (`Ok(reason)`) or an environment
/// problem to report (`Err`).
fn classify(e: rusqlite::Error, path: &Path) -> Result<(&'static str, String), OutboxError> {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => Ok(("not_a_database", e.to_string())),
        Some(ErrorCode::DatabaseCorrupt) => Ok(("corrupt", e.to_string())),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Err(OutboxError::Busy {
            path: path.to_owned(),
        }),
        _ => Err(OutboxError::from_sqlite(e)),
    }
}

/// Opens and checks the existing database at `config.path`.
pub(crate) fn open_existing(config: &OutboxConfig) -> Result<Opened, OutboxError> {
    let path = config.path.as_path();
    let len = fs::metadata(path)
        .map_err(|source| OutboxError::Io {
            what: "cannot stat",
            path: path.to_owned(),
            source,
        })?
        .len();
    if len == 0 {
        // SQLite would take a 0-byte file for a new, empty database, but we
        // never leave one behind (fresh databases are renamed into place
        // complete), so it is a truncated file.
        return Ok(Opened::Damaged {
            reason: "empty_file",
            detail: "the file is 0 bytes long".to_owned(),
            salvaged_seq: None,
        });
    }
    let mut salvaged_seq = None;
    match check(path, config, &mut salvaged_seq) {
        Ok(Ok(conn)) => Ok(Opened::Healthy(conn)),
        Ok(Err((reason, detail))) => Ok(Opened::Damaged {
            reason,
            detail,
            salvaged_seq,
        }),
        Err(e) => {
            let (reason, detail) = classify(e, path)?;
            Ok(Opened::Damaged {
                reason,
                detail,
                salvaged_seq,
            })
        }
    }
}

type CheckResult = Result<Connection, (&'static str, String)>;

fn check(
    path: &Path,
    config: &OutboxConfig,
    salvaged_seq: &mut Option<u64>,
) -> rusqlite::Result<CheckResult> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(schema::BUSY_TIMEOUT)?;
    // Identify the file before changing anything in it: switching a
    // foreign database to WAL would rewrite its header.
    let app_id: i32 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    if app_id != schema::APPLICATION_ID {
        return Ok(Err((
            "not_an_outbox",
            format!("application_id is {app_id:#x}, not the outbox's"),
        )));
    }
    schema::configure(&conn, config.synchronous)?;
    // Read before the check, so that a database failing it still lends
    // its last sequence number to the fresh one.
    *salvaged_seq = conn
        .query_row("SELECT value FROM meta WHERE key = 'last_seq'", [], |r| {
            r.get::<_, i64>(0)
        })
        .ok()
        .map(schema::from_sql_i64);
    let version: i32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version != schema::SCHEMA_VERSION {
        return Ok(Err((
            "schema_version",
            format!(
                "schema version {version}; this build reads {}",
                schema::SCHEMA_VERSION
            ),
        )));
    }
    let pragma = match config.startup_check {
        StartupCheck::Quick => "quick_check",
        StartupCheck::Full => "integrity_check",
        StartupCheck::Off => return Ok(Ok(conn)),
    };
    let problems: Vec<String> = {
        let mut stmt = conn.prepare(&format!("PRAGMA {pragma}(20)"))?;
        stmt.query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<_>>()?
    };
    if problems.len() == 1 && problems[0] == "ok" {
        Ok(Ok(conn))
    } else {
        Ok(Err(("integrity_check", problems.join("; "))))
    }
}

/// Renames the database and its companion files to
/// `<path>.corrupt-<timestamp>[-wal|-shm|-journal]`; returns the new name of
/// the database.
pub(crate) fn move_aside(path: &Path) -> Result<PathBuf, OutboxError> {
    let stamp = chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now())
        .format("%Y%m%dT%H%M%S%.3fZ")
        .to_string();
    let mut base = with_suffix(path, &format!(".corrupt-{stamp}"));
    let mut n = 1;
    while base.exists() {
        base = with_suffix(path, &format!(".corrupt-{stamp}-{n}"));
        n += 1;
    }
    for suffix in std::iter::once("").chain(COMPANIONS) {
        let from = with_suffix(path, suffix);
        if from.exists() {
            let to = with_suffix(&base, suffix);
            fs::rename(&from, &to).map_err(|source| OutboxError::Io {
                what: "cannot move aside",
                path: from.clone(),
                source,
            })?;
        }
    }
    sync_dir(path)?;
    Ok(base)
}

/// Companion files with no database beside them: left by someone deleting
/// the database by hand. SQLite would replay such a WAL into a new file, so
/// they must go before a fresh database is created.
pub(crate) fn has_orphans(path: &Path) -> bool {
    COMPANIONS.iter().any(|s| with_suffix(path, s).exists())
}

/// Removes the leftovers of a creation that was interrupted.
fn remove_new_leftovers(tmp: &Path) -> Result<(), OutboxError> {
    for suffix in std::iter::once("").chain(COMPANIONS) {
        let p = with_suffix(tmp, suffix);
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(OutboxError::Io {
                    what: "cannot remove",
                    path: p,
                    source,
                });
            }
        }
    }
    Ok(())
}

/// Creates an empty database at `path` whose sequence numbers continue
/// after `last_seq`. Built under `<path>.new` and renamed into place, so
/// the real name only ever holds a complete database.
pub(crate) fn create_fresh(path: &Path, last_seq: u64) -> Result<(), OutboxError> {
    let tmp = with_suffix(path, ".new");
    remove_new_leftovers(&tmp)?;
    let build = || -> rusqlite::Result<()> {
        let mut conn = Connection::open_with_flags(
            &tmp,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        schema::configure(&conn, Synchronous::Full)?;
        schema::create(&mut conn, last_seq)?;
        // Everything into the main file, so the rename moves it all.
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        conn.close().map_err(|(_, e)| e)
    };
    build().map_err(OutboxError::from_sqlite)?;
    // The checkpoint emptied the WAL; a zero-length one carries nothing.
    for suffix in COMPANIONS {
        let p = with_suffix(&tmp, suffix);
        if fs::metadata(&p).map(|m| m.len() > 0).unwrap_or(false) {
            return Err(OutboxError::Io {
                what: "fresh database left a non-empty companion file",
                path: p,
                source: std::io::Error::other("checkpoint did not complete"),
            });
        }
    }
    fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|source| OutboxError::Io {
            what: "cannot fsync",
            path: tmp.clone(),
            source,
        })?;
    fs::rename(&tmp, path).map_err(|source| OutboxError::Io {
        what: "cannot rename into place",
        path: path.to_owned(),
        source,
    })?;
    remove_new_leftovers(&tmp)?;
    sync_dir(path)
}
