//! Who is connecting: devices and internal services, authenticated by a
//! client certificate ([`crate::tls::certificate_device`]) or by a user name
//! and token checked against the credentials file.
//!
//! The credentials file (TOML) holds the SHA-256 of each token, never the
//! token itself; tokens are 32 random bytes (64 hex characters) made by
//! `central certs token`, so a plain hash is as strong as a slow one and
//! costs microseconds per connection:
//!
//! ```toml
//! [[device]]
//! site = "de-muc-airport"
//! device = "bay-03"
//! token_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//!
//! [[service]]
//! name = "bridge"   # MQTT user name of an internal service
//! token_sha256 = "..."
//! ```
//!
//! A device authenticates as user `{site}/{device}`; a service as its name
//! (which has no `/`, so the two never collide).

use std::collections::HashMap;
use std::path::Path;

use inspection_core::ids::{DeviceId, SiteId};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::tls::parse_device_name;

/// An authenticated party.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// A board: may publish under and subscribe to its own topics only.
    Device { site: SiteId, device: DeviceId },
    /// An internal service (the bridge): device topics of every device.
    Service { name: String },
}

impl Principal {
    /// For logs: `site/device` or `service:name`.
    pub fn label(&self) -> String {
        match self {
            Principal::Device { site, device } => format!("{site}/{device}"),
            Principal::Service { name } => format!("service:{name}"),
        }
    }
}

/// Why the credentials file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    device: Vec<DeviceEntry>,
    #[serde(default)]
    service: Vec<ServiceEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceEntry {
    site: SiteId,
    device: DeviceId,
    token_sha256: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceEntry {
    name: String,
    token_sha256: String,
}

/// The token hashes of every device and service, by user name. Its
/// `Debug` lists the user names only: what is logged of a credential is
/// who it is for, never the token or its hash.
#[derive(Clone, Default)]
pub struct Credentials {
    by_user: HashMap<String, ([u8; 32], Principal)>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut users: Vec<&str> = self.by_user.keys().map(String::as_str).collect();
        users.sort_unstable();
        f.debug_struct("Credentials")
            .field("users", &users)
            .finish_non_exhaustive()
    }
}

/// SHA-256 of a token, as stored in the credentials file (lowercase hex).
pub fn hash_token(token: &str) -> String {
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    inspection_core::wire::Sha256Hex::from_digest(&digest).to_string()
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Credentials {
    /// Parses the credentials file; every entry is checked, duplicates refused.
    pub fn from_toml(text: &str, path: &str) -> Result<Credentials, AuthError> {
        let invalid = |reason: String| AuthError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let file: File = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mut creds = Credentials::default();
        let entries = file
            .device
            .into_iter()
            .map(|d| {
                let user = format!("{}/{}", d.site, d.device);
                let principal = Principal::Device {
                    site: d.site,
                    device: d.device,
                };
                (user, d.token_sha256, principal)
            })
            .chain(file.service.into_iter().map(|s| {
                let principal = Principal::Service {
                    name: s.name.clone(),
                };
                (s.name, s.token_sha256, principal)
            }));
        for (user, hash, principal) in entries {
            if let Principal::Service { name } = &principal
                && (name.is_empty() || name.contains('/') || name.len() > 64)
            {
                return Err(invalid(format!(
                    "service name {name:?} must be 1-64 characters without '/'"
                )));
            }
            let digest = parse_hex32(&hash)
                .ok_or_else(|| invalid(format!("{user}: token_sha256 is not 64 hex characters")))?;
            if creds
                .by_user
                .insert(user.clone(), (digest, principal))
                .is_some()
            {
                return Err(invalid(format!("{user} appears twice")));
            }
        }
        Ok(creds)
    }

    pub fn load(path: &Path) -> Result<Credentials, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|e| AuthError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// The principal whose user name and token these are, if any.
    pub fn authenticate(&self, user: &str, token: &[u8]) -> Option<Principal> {
        let (expected, principal) = self.by_user.get(user)?;
        let actual: [u8; 32] = Sha256::digest(token).into();
        // Constant time in the digest, so response time says nothing about
        // how much of it matched.
        let diff = expected
            .iter()
            .zip(actual.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        (diff == 0).then(|| principal.clone())
    }

    /// Whether a device has a token on file (a device may instead use only
    /// its certificate).
    pub fn knows_device(&self, site: &SiteId, device: &DeviceId) -> bool {
        self.by_user.contains_key(&format!("{site}/{device}"))
    }

    pub fn len(&self) -> usize {
        self.by_user.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_user.is_empty()
    }
}

/// The principal for a device name taken from a verified certificate.
pub fn device_principal(name: &str) -> Option<Principal> {
    parse_device_name(name).map(|(site, device)| Principal::Device { site, device })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        let text = format!(
            "[[device]]\nsite = \"s1\"\ndevice = \"d1\"\ntoken_sha256 = \"{}\"\n\
             [[service]]\nname = \"bridge\"\ntoken_sha256 = \"{}\"\n",
            hash_token("device-secret"),
            hash_token("bridge-secret")
        );
        Credentials::from_toml(&text, "test").expect("valid")
    }

    #[test]
    fn right_token_authenticates_and_wrong_ones_do_not() {
        let c = creds();
        assert_eq!(
            c.authenticate("s1/d1", b"device-secret"),
            device_principal("s1/d1")
        );
        assert_eq!(
            c.authenticate("bridge", b"bridge-secret"),
            Some(Principal::Service {
                name: "bridge".into()
            })
        );
        assert_eq!(c.authenticate("s1/d1", b"bridge-secret"), None);
        assert_eq!(c.authenticate("s1/d2", b"device-secret"), None);
        assert_eq!(c.authenticate("bridge", b""), None);
    }

    #[test]
    fn debug_names_the_users_and_not_their_hashes() {
        let shown = format!("{:?}", creds());
        assert_eq!(shown, r#"Credentials { users: ["bridge", "s1/d1"], .. }"#);
        let hash = hash_token("device-secret");
        assert!(!shown.contains(&hash[..16]), "{shown}");
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let dup = format!(
            "[[service]]\nname = \"a\"\ntoken_sha256 = \"{h}\"\n[[service]]\nname = \"a\"\ntoken_sha256 = \"{h}\"\n",
            h = hash_token("x")
        );
        let cases = [
            (
                "[[device]]\nsite = \"s\"\ndevice = \"d\"\ntoken_sha256 = \"abc\"\n",
                "64 hex",
            ),
            (
                "[[service]]\nname = \"a/b\"\ntoken_sha256 = \"\"\n",
                "without '/'",
            ),
            (
                "[[device]]\nsite = \"s s\"\ndevice = \"d\"\ntoken_sha256 = \"\"\n",
                "s s",
            ),
            (dup.as_str(), "appears twice"),
            ("unknown = 1\n", "unknown field"),
        ];
        for (text, needle) in cases {
            let err = Credentials::from_toml(text, "f")
                .expect_err(text)
                .to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
    }
}
