//! The SQLite store (sqlx): the embedded default.
//! (Being written in the transport issue: see `mod.rs` for the contract.)

/// The SQLite implementation of [`super::Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {}
