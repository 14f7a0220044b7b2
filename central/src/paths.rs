//! Where fetched models live by default: the cache `models/fetch.sh` fills.

use std::path::PathBuf;

/// `$INSPECTION_CACHE_DIR`, else `$XDG_CACHE_HOME/inspection-system`, else
/// `~/.cache/inspection-system`; `None` when none of them is set.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("INSPECTION_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|base| base.join("inspection-system"))
}

/// A file under the cache's `models/` folder (it may not exist).
pub fn fetched(relative: &str) -> Option<PathBuf> {
    cache_dir().map(|c| c.join("models").join(relative))
}

/// The ONNX Runtime library that `models/fetch.sh` fetches.
pub const ORT_LIBRARY: &str = "onnxruntime/libonnxruntime.so.1.31.1";
