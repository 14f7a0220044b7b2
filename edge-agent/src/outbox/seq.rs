//! The sequence-number ceiling kept in `<path>.seq`, so that seqs keep
//! increasing when the database itself has to be replaced.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::OutboxError;

/// How far the ceiling is raised at a time: one small fsync per this many
/// events, and at most this large a gap in seq after a recovery.
pub(crate) const SEQ_BLOCK: u64 = 1000;

/// The durable upper bound of every seq ever handed out.
#[derive(Debug)]
pub(crate) struct SeqCeiling {
    path: PathBuf,
    ceiling: u64,
}

impl SeqCeiling {
    /// The side file of the database at `db`.
    pub(crate) fn path_for(db: &Path) -> PathBuf {
        let mut name = db.as_os_str().to_owned();
        name.push(".seq");
        PathBuf::from(name)
    }

    /// Reads the ceiling; a missing or unreadable file reads as 0 (logged
    /// when it exists but is garbage), as the database's own `last_seq`
    /// still protects the normal case.
    pub(crate) fn load(db: &Path) -> SeqCeiling {
        let path = Self::path_for(db);
        let ceiling = match fs::read_to_string(&path) {
            Ok(text) => match text.trim().parse::<u64>() {
                Ok(v) => v,
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "outbox seq ceiling file is unreadable; ignoring it");
                    0
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot read the outbox seq ceiling file; ignoring it");
                0
            }
        };
        SeqCeiling { path, ceiling }
    }

    pub(crate) fn get(&self) -> u64 {
        self.ceiling
    }

    /// Makes sure `seq` is covered, raising the ceiling durably first if not.
    pub(crate) fn cover(&mut self, seq: u64) -> Result<(), OutboxError> {
        if seq <= self.ceiling {
            return Ok(());
        }
        let ceiling = seq.saturating_add(SEQ_BLOCK - 1);
        write_durably(&self.path, format!("{ceiling}\n").as_bytes())?;
        self.ceiling = ceiling;
        Ok(())
    }
}

/// Writes `bytes` to `path` so that after a crash the file holds either the
/// old or the new content: temp file, fsync, rename, fsync the directory.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), OutboxError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let io = |what: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| OutboxError::Io { what, path, source }
    };
    let mut file = File::create(&tmp).map_err(io("cannot create", &tmp))?;
    file.write_all(bytes).map_err(io("cannot write", &tmp))?;
    file.sync_all().map_err(io("cannot fsync", &tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io("cannot rename into place", path))?;
    sync_dir(path)
}

/// fsyncs the directory holding `path`, so a rename or create in it is
/// durable.
pub(crate) fn sync_dir(path: &Path) -> Result<(), OutboxError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| OutboxError::Io {
            what: "cannot fsync directory",
            path: dir.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_is_raised_in_blocks_and_survives_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("o.sqlite3");
        let mut c = SeqCeiling::load(&db);
        assert_eq!(c.get(), 0);
        c.cover(1).unwrap();
        assert_eq!(c.get(), SEQ_BLOCK);
        c.cover(SEQ_BLOCK).unwrap();
        assert_eq!(c.get(), SEQ_BLOCK, "no write while covered");
        c.cover(SEQ_BLOCK + 1).unwrap();
        assert_eq!(c.get(), 2 * SEQ_BLOCK);
        assert_eq!(SeqCeiling::load(&db).get(), 2 * SEQ_BLOCK);
    }

    #[test]
    fn garbage_reads_as_zero() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("o.sqlite3");
        fs::write(SeqCeiling::path_for(&db), b"\xff\xfenot a number").unwrap();
        assert_eq!(SeqCeiling::load(&db).get(), 0);
    }
}
