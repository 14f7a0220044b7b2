//! Validated identifiers for sites, devices and cameras.
//!
//! Ids end up in MQTT topic levels, object-store keys, metric-free log fields
//! and file names, so they are deliberately narrow: 1 to 64 ASCII characters
//! from `[A-Za-z0-9._-]`, starting with a letter or digit. That excludes the
//! MQTT wildcards `+` and `#`, the level separator `/`, `$` (broker system
//! topics), whitespace, control characters and look-alike unicode, and it
//! makes `.`/`..` path segments impossible.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Longest id accepted, in bytes (all ids are ASCII).
pub const MAX_ID_LEN: usize = 64;

/// The JSON Schema / regex form of the id rule.
pub const ID_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$";

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    #[error("{what} is {len} bytes long; at most {MAX_ID_LEN} are allowed")]
    TooLong { what: &'static str, len: usize },
    #[error(
        "{what} contains {found:?} at position {position}; only ASCII letters, digits, '.', '_' and '-' are allowed"
    )]
    InvalidChar {
        what: &'static str,
        found: char,
        position: usize,
    },
    #[error("{what} must start with an ASCII letter or digit, not {found:?}")]
    InvalidStart { what: &'static str, found: char },
}

/// Checks `s` against the id rule; `what` names it in the error.
pub(crate) fn check_id(what: &'static str, s: &str) -> Result<(), IdError> {
    let Some(first) = s.chars().next() else {
        return Err(IdError::Empty { what });
    };
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { what, len: s.len() });
    }
    if let Some((position, found)) = s
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(IdError::InvalidChar {
            what,
            found,
            position,
        });
    }
    if !first.is_ascii_alphanumeric() {
        return Err(IdError::InvalidStart { what, found: first });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates `s` as this kind of id.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                check_id($what, &s)?;
                Ok(Self(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "description": concat!("A ", $what, ": 1-64 ASCII letters, digits, '.', '_' or '-', starting with a letter or digit."),
                    "minLength": 1,
                    "maxLength": MAX_ID_LEN,
                    "pattern": ID_PATTERN,
                })
            }
        }
    };
}

id_type!(
    /// A rental location (one of ~5,000), e.g. `de-muc-airport`.
    SiteId,
    "site id"
);
id_type!(
    /// One edge board in a return bay, unique within its site, e.g. `bay-03`.
    DeviceId,
    "device id"
);
id_type!(
    /// One camera attached to an edge board, unique within the board, e.g. `cam-front`.
    CameraId,
    "camera id"
);

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, ok: bool) {
        let got = DeviceId::new(input);
        assert_eq!(got.is_ok(), ok, "{input:?} -> {got:?}");
        // The JSON path applies the same rule as the constructor.
        let json = serde_json::to_string(input).unwrap();
        assert_eq!(
            serde_json::from_str::<DeviceId>(&json).is_ok(),
            ok,
            "{input:?} via JSON"
        );
    }

    #[test]
    fn ids_accept_the_documented_alphabet_only() {
        for good in ["bay-03", "a", "B.2_x-y", "0", &"x".repeat(64)] {
            check(good, true);
        }
        for bad in [
            "",
            "+",
            "#",
            "bay/03",
            "bay 03",
            "bay+",
            "bay#",
            "$SYS",
            ".",
            "..",
            "-a",
            "bäy",
            "bay\u{0}",
            "bay\n",
            "ｂay",
            &"x".repeat(65),
        ] {
            check(bad, false);
        }
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(
            SiteId::new("a/b").unwrap_err(),
            IdError::InvalidChar {
                what: "site id",
                found: '/',
                position: 1
            }
        );
        assert!(matches!(
            CameraId::new(""),
            Err(IdError::Empty { what: "camera id" })
        ));
        assert!(matches!(
            DeviceId::new("y".repeat(100)),
            Err(IdError::TooLong { len: 100, .. })
        ));
    }
}
