//! A vehicle in log lines: a keyed hash of its plate, never the plate.
//!
//! `v-` and the first 12 hex digits of HMAC-SHA256(key, canonical plate).
//! The same vehicle gets the same tag in every role and replica that shares
//! the key (`[ops] log_key_file`), so an operator can follow one car
//! through the logs; without the key the tag cannot be turned back into a
//! plate by trying all plates. Without a key file each process draws a
//! random key at start: tags then differ between processes and restarts.

use std::path::Path;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

static KEY: OnceLock<[u8; 32]> = OnceLock::new();

/// Why the log key could not be set.
#[derive(Debug, thiserror::Error)]
pub enum LogKeyError {
    #[error("ops.log_key_file: cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("ops.log_key_file: {path} holds {len} bytes; at least 16 are needed")]
    Short { path: String, len: usize },
}

/// Sets the process's key from a file (its bytes, trailing whitespace
/// removed), or a random one when `path` is `None`. The first call wins;
/// later calls (tests, a second role in the same process) change nothing.
pub fn init_log_key(path: Option<&Path>) -> Result<(), LogKeyError> {
    let key = match path {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| LogKeyError::Read {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            let trimmed = bytes.trim_ascii_end();
            if trimmed.len() < 16 {
                return Err(LogKeyError::Short {
                    path: path.display().to_string(),
                    len: trimmed.len(),
                });
            }
            Sha256::digest(trimmed).into()
        }
        None => rand::random::<[u8; 32]>(),
    };
    let _ = KEY.set(key);
    Ok(())
}

/// The log tag of a plate (any spelling: it is canonicalised first).
pub fn vehicle_tag(plate: &str) -> String {
    let key = KEY.get_or_init(rand::random::<[u8; 32]>);
    let canonical: String = plate
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let mac = hmac_sha256(key, canonical.as_bytes());
    let hex: String = mac[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("v-{hex}")
}

/// HMAC-SHA256 (RFC 2104) on the workspace's sha2.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2.
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block is hashed first.
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn a_tag_hides_the_plate_and_is_stable_per_key() {
        let a = vehicle_tag("M-AB 1234");
        assert_eq!(a, vehicle_tag("mab1234"), "spelling does not matter");
        assert_ne!(a, vehicle_tag("MAB1235"));
        assert!(a.starts_with("v-") && a.len() == 14, "{a}");
        assert!(!a.to_ascii_uppercase().contains("MAB1234"));
    }
}
