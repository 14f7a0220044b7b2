//! Helpers shared by the integration tests: where the fetched models and photos live.

#![allow(dead_code)]

use std::path::PathBuf;

/// The cache that `models/fetch.sh` fills: `$INSPECTION_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/inspection-system`, else `~/.cache/inspection-system`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("INSPECTION_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("neither INSPECTION_CACHE_DIR, XDG_CACHE_HOME nor HOME is set");
    base.join("inspection-system")
}

/// A fetched file, by its path under the cache's `models/` folder. Panics with
/// the command to run when it is missing: these tests are about real data and
/// must not pass without it.
pub fn fetched(relative: &str) -> PathBuf {
    let path = cache_dir().join("models").join(relative);
    assert!(
        path.is_file(),
        "{} is missing: run `bash models/fetch.sh` first",
        path.display()
    );
    path
}
