//! Where exports get frames from: by SHA-256, normally the object store
//! the upload role writes.

use std::sync::Arc;

use async_trait::async_trait;
use inspection_core::wire::Sha256Hex;
use object_store::{ObjectStore, ObjectStoreExt as _};

use super::ExportError;
use crate::upload::object_key;

/// Frames by their SHA-256 (lowercase hex).
#[async_trait]
pub trait FrameSource: Send + Sync {
    /// The frame's stored bytes. `FrameNotFound` and `BadFrameId` make the
    /// export draw "image unavailable"; other errors fail it.
    async fn frame(&self, sha256: &str) -> Result<Vec<u8>, ExportError>;
}

#[async_trait]
impl FrameSource for Arc<dyn ObjectStore> {
    async fn frame(&self, sha256: &str) -> Result<Vec<u8>, ExportError> {
        let sha = Sha256Hex::new(sha256)
            .map_err(|_| ExportError::BadFrameId(sha256.chars().take(80).collect()))?;
        let got = match self.get(&object_key(&sha)).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(ExportError::FrameNotFound(sha256.to_owned()));
            }
            Err(e) => return Err(ExportError::Storage(e.to_string())),
        };
        got.bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| ExportError::Storage(e.to_string()))
    }
}
