//! MQTT topics: `{prefix}/v1/{site}/{device}/{kind}`.
//!
//! The device identity is part of the topic so that a broker can enforce
//! per-device ACLs on it (a device may publish only below its own
//! `{site}/{device}`). The prefix is configurable (default `inspect`) so
//! several environments can share one broker; it may have several levels
//! (`acme/prod/inspect`) but never wildcards or empty levels.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ids::{DeviceId, IdError, SiteId};

/// The protocol level in every topic. A breaking change of the topic layout
/// bumps it; payload versions are carried inside the payloads.
pub const TOPIC_VERSION: &str = "v1";

/// The default topic prefix.
pub const DEFAULT_PREFIX: &str = "inspect";

/// Longest prefix accepted, in bytes.
pub const MAX_PREFIX_LEN: usize = 128;

/// The five kinds of topic of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TopicKind {
    /// Edge -> central, retained: online/offline, also the last will.
    Status,
    /// Edge -> central: inspection started / frame selected / completed.
    Events,
    /// Edge -> central: periodic statistics.
    Telemetry,
    /// Central -> edge: message ids that were persisted.
    Ack,
    /// Central -> edge: start/stop inspection, reload config.
    Cmd,
}

impl TopicKind {
    pub const ALL: [TopicKind; 5] = [
        TopicKind::Status,
        TopicKind::Events,
        TopicKind::Telemetry,
        TopicKind::Ack,
        TopicKind::Cmd,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TopicKind::Status => "status",
            TopicKind::Events => "events",
            TopicKind::Telemetry => "telemetry",
            TopicKind::Ack => "ack",
            TopicKind::Cmd => "cmd",
        }
    }

    /// True for the topics a device publishes on; false for those it subscribes to.
    pub fn is_device_to_central(self) -> bool {
        matches!(
            self,
            TopicKind::Status | TopicKind::Events | TopicKind::Telemetry
        )
    }
}

impl fmt::Display for TopicKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TopicKind {
    type Err = TopicError;
    fn from_str(s: &str) -> Result<Self, TopicError> {
        TopicKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| TopicError::UnknownKind(s.to_owned()))
    }
}

/// Why a topic or prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic prefix must not be empty")]
    EmptyPrefix,
    #[error("topic prefix is {0} bytes long; at most {MAX_PREFIX_LEN} are allowed")]
    PrefixTooLong(usize),
    #[error("topic prefix {0:?} has an empty level, a wildcard, '$' or a control character")]
    InvalidPrefix(String),
    #[error("topic {topic:?} does not start with {expected:?}")]
    WrongPrefix { topic: String, expected: String },
    #[error(
        "topic {0:?} must have exactly three levels (site/device/kind) after the prefix and version"
    )]
    WrongShape(String),
    #[error("unknown topic kind {0:?}")]
    UnknownKind(String),
    #[error(transparent)]
    Id(#[from] IdError),
}

/// A validated topic prefix: one or more non-empty levels without wildcards.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicPrefix(String);

impl TopicPrefix {
    pub fn new(s: impl Into<String>) -> Result<Self, TopicError> {
        let s = s.into();
        if s.is_empty() {
            return Err(TopicError::EmptyPrefix);
        }
        if s.len() > MAX_PREFIX_LEN {
            return Err(TopicError::PrefixTooLong(s.len()));
        }
        // `$` at the start would put us among the broker's system topics, and
        // wildcards or empty levels would make our subscriptions match other
        // tenants' traffic.
        let bad_level = s.split('/').any(|level| level.is_empty());
        let bad_char = s
            .chars()
            .any(|c| matches!(c, '+' | '#' | '\0') || c.is_control());
        if bad_level || bad_char || s.starts_with('$') {
            return Err(TopicError::InvalidPrefix(s));
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The filter that matches one kind of topic of every device:
    /// `{prefix}/v1/+/+/{kind}`.
    pub fn fleet_filter(&self, kind: TopicKind) -> String {
        format!("{}/{TOPIC_VERSION}/+/+/{kind}", self.0)
    }

    /// A shared-subscription filter (`$share/{group}/{filter}`) so that bridge
    /// replicas split the fleet's messages between them. The group name
    /// follows the id rules: a `/` or wildcard in it would change what the
    /// filter matches.
    pub fn shared_fleet_filter(&self, group: &str, kind: TopicKind) -> Result<String, TopicError> {
        crate::ids::check_id("share group", group)?;
        Ok(format!("$share/{group}/{}", self.fleet_filter(kind)))
    }
}

impl Default for TopicPrefix {
    fn default() -> Self {
        Self(DEFAULT_PREFIX.to_owned())
    }
}

impl fmt::Display for TopicPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TopicPrefix {
    type Err = TopicError;
    fn from_str(s: &str) -> Result<Self, TopicError> {
        Self::new(s)
    }
}

impl TryFrom<String> for TopicPrefix {
    type Error = TopicError;
    fn try_from(s: String) -> Result<Self, TopicError> {
        Self::new(s)
    }
}

impl From<TopicPrefix> for String {
    fn from(p: TopicPrefix) -> String {
        p.0
    }
}

impl Serialize for TopicPrefix {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TopicPrefix {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TopicPrefix::new(s).map_err(serde::de::Error::custom)
    }
}

/// One device topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Topic {
    pub site: SiteId,
    pub device: DeviceId,
    pub kind: TopicKind,
}

impl Topic {
    pub fn new(site: SiteId, device: DeviceId, kind: TopicKind) -> Self {
        Self { site, device, kind }
    }

    /// The topic string under `prefix`.
    pub fn render(&self, prefix: &TopicPrefix) -> String {
        format!(
            "{}/{TOPIC_VERSION}/{}/{}/{}",
            prefix.as_str(),
            self.site,
            self.device,
            self.kind
        )
    }

    /// Parses a concrete topic (no wildcards) under `prefix`.
    pub fn parse(prefix: &TopicPrefix, topic: &str) -> Result<Topic, TopicError> {
        let wrong_prefix = || TopicError::WrongPrefix {
            topic: topic.to_owned(),
            expected: format!("{}/{TOPIC_VERSION}/", prefix.as_str()),
        };
        let rest = topic
            .strip_prefix(prefix.as_str())
            .and_then(|r| r.strip_prefix('/'))
            .and_then(|r| r.strip_prefix(TOPIC_VERSION))
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(wrong_prefix)?;
        let mut levels = rest.split('/');
        let (Some(site), Some(device), Some(kind), None) =
            (levels.next(), levels.next(), levels.next(), levels.next())
        else {
            return Err(TopicError::WrongShape(topic.to_owned()));
        };
        Ok(Topic {
            site: SiteId::new(site)?,
            device: DeviceId::new(device)?,
            kind: kind.parse()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(site: &str, device: &str, kind: TopicKind) -> Topic {
        Topic::new(
            SiteId::new(site).unwrap(),
            DeviceId::new(device).unwrap(),
            kind,
        )
    }

    #[test]
    fn render_and_parse_round_trip_for_every_kind_and_prefix() {
        for prefix in ["inspect", "acme/prod/inspect"] {
            let prefix = TopicPrefix::new(prefix).unwrap();
            for kind in TopicKind::ALL {
                let t = topic("de-muc-01", "bay-3", kind);
                let s = t.render(&prefix);
                assert_eq!(Topic::parse(&prefix, &s).unwrap(), t, "{s}");
            }
        }
        assert_eq!(
            topic("s1", "d1", TopicKind::Events).render(&TopicPrefix::default()),
            "inspect/v1/s1/d1/events"
        );
    }

    #[test]
    fn parse_rejects_what_is_not_one_devices_topic() {
        let p = TopicPrefix::default();
        let cases = [
            "inspect/v1/s1/d1",
            "inspect/v1/s1/d1/events/extra",
            "inspect/v2/s1/d1/events",
            "other/v1/s1/d1/events",
            "inspectx/v1/s1/d1/events",
            "inspect/v1/+/d1/events",
            "inspect/v1/s1/#/events",
            "inspect/v1//d1/events",
            "inspect/v1/s1/d1/bogus",
            "inspect/v1/s1/d\u{e4}/events",
            "",
        ];
        for case in cases {
            assert!(Topic::parse(&p, case).is_err(), "{case:?} was accepted");
        }
        let long = format!("inspect/v1/{}/d1/events", "s".repeat(65));
        assert!(matches!(
            Topic::parse(&p, &long),
            Err(TopicError::Id(IdError::TooLong { .. }))
        ));
    }

    #[test]
    fn prefixes_without_wildcards_or_empty_levels() {
        for bad in [
            "", "/inspect", "inspect/", "a//b", "in+spect", "#", "$SYS/x", "a\u{0}",
        ] {
            assert!(TopicPrefix::new(bad).is_err(), "{bad:?}");
        }
        assert!(TopicPrefix::new("x".repeat(129)).is_err());
        let p = TopicPrefix::new("acme/inspect").unwrap();
        assert_eq!(
            p.fleet_filter(TopicKind::Events),
            "acme/inspect/v1/+/+/events"
        );
        assert_eq!(
            p.shared_fleet_filter("bridge", TopicKind::Status).unwrap(),
            "$share/bridge/acme/inspect/v1/+/+/status"
        );
        for bad in ["", "a/b", "#", "+", "g\u{e4}"] {
            assert!(
                p.shared_fleet_filter(bad, TopicKind::Events).is_err(),
                "{bad:?}"
            );
        }
    }
}
