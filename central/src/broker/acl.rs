//! Who may publish and subscribe to what: the per-packet rules the gateway
//! enforces, as pure functions of the principal and the topic.
//!
//! DESIGN
//! - A device publishes only to its own `{prefix}/v1/{site}/{device}/`
//!   `status`, `events` or `telemetry`; subscribes only to exactly its own
//!   `ack` and `cmd` topics (no wildcards, no shared subscriptions); its last
//!   will, when it has one, is its own `status` topic.
//! - A service (the bridge) subscribes to device topics of any device: plain
//!   or `$share/{group}/` filters whose levels after `{prefix}/v1/` are three
//!   levels (`+` or a valid site / device id / topic kind) or a single `#`.
//!   It publishes only to `ack` and `cmd` topics (of any device), and a will
//!   of a service follows the same rule.
//! - Anything else is denied; nothing outside `{prefix}/v1/` is reachable
//!   through the gateway (no `$SYS`, no other tenants' prefixes).

use inspection_core::ids::{DeviceId, SiteId};
use inspection_core::topic::{TOPIC_VERSION, Topic, TopicKind, TopicPrefix};

use crate::auth::Principal;

/// Whether `principal` may publish to `topic`.
pub fn may_publish(prefix: &TopicPrefix, principal: &Principal, topic: &str) -> bool {
    let Ok(parsed) = Topic::parse(prefix, topic) else {
        return false;
    };
    match principal {
        Principal::Device { site, device } => {
            parsed.site == *site && parsed.device == *device && parsed.kind.is_device_to_central()
        }
        Principal::Service { .. } => !parsed.kind.is_device_to_central(),
    }
}

/// Whether `principal` may subscribe to `filter`.
pub fn may_subscribe(prefix: &TopicPrefix, principal: &Principal, filter: &str) -> bool {
    match principal {
        Principal::Device { site, device } => [TopicKind::Ack, TopicKind::Cmd]
            .into_iter()
            .any(|kind| Topic::new(site.clone(), device.clone(), kind).render(prefix) == filter),
        Principal::Service { .. } => service_filter_ok(prefix, filter),
    }
}

/// Whether a CONNECT may carry a last will on `topic`.
pub fn may_set_will(prefix: &TopicPrefix, principal: &Principal, topic: &str) -> bool {
    match principal {
        Principal::Device { site, device } => {
            Topic::new(site.clone(), device.clone(), TopicKind::Status).render(prefix) == topic
        }
        Principal::Service { .. } => may_publish(prefix, principal, topic),
    }
}

fn service_filter_ok(prefix: &TopicPrefix, filter: &str) -> bool {
    let filter = match filter.strip_prefix("$share/") {
        Some(rest) => {
            let Some((group, rest)) = rest.split_once('/') else {
                return false;
            };
            // The group follows the id rule (no `/`, no wildcards).
            if prefix
                .shared_fleet_filter(group, TopicKind::Events)
                .is_err()
            {
                return false;
            }
            rest
        }
        None => filter,
    };
    let Some(rest) = filter
        .strip_prefix(prefix.as_str())
        .and_then(|r| r.strip_prefix('/'))
        .and_then(|r| r.strip_prefix(TOPIC_VERSION))
        .and_then(|r| r.strip_prefix('/'))
    else {
        return false;
    };
    if rest == "#" {
        return true;
    }
    let levels: Vec<&str> = rest.split('/').collect();
    let [site, device, kind] = levels.as_slice() else {
        return false;
    };
    (*site == "+" || SiteId::new(*site).is_ok())
        && (*device == "+" || DeviceId::new(*device).is_ok())
        && (*kind == "+" || kind.parse::<TopicKind>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(site: &str, device: &str) -> Principal {
        Principal::Device {
            site: SiteId::new(site).unwrap(),
            device: DeviceId::new(device).unwrap(),
        }
    }

    fn bridge() -> Principal {
        Principal::Service {
            name: "bridge".into(),
        }
    }

    #[test]
    fn a_device_publishes_only_its_own_device_to_central_topics() {
        let p = TopicPrefix::new("acme/inspect").unwrap();
        let d = device("s1", "d1");
        for ok in ["status", "events", "telemetry"] {
            let topic = format!("acme/inspect/v1/s1/d1/{ok}");
            assert!(may_publish(&p, &d, &topic), "{topic}");
        }
        for bad in [
            "acme/inspect/v1/s1/d1/ack",
            "acme/inspect/v1/s1/d1/cmd",
            "acme/inspect/v1/s1/d2/events",
            "acme/inspect/v1/s2/d1/events",
            "acme/inspect/v1/s1/d1/events/x",
            "acme/inspect/v1/s1/d1",
            "inspect/v1/s1/d1/events",
            "acme/inspect/v2/s1/d1/events",
            "$SYS/broker",
            "",
        ] {
            assert!(!may_publish(&p, &d, bad), "{bad:?} was allowed");
        }
    }

    #[test]
    fn a_device_subscribes_only_to_exactly_its_ack_and_cmd() {
        let p = TopicPrefix::default();
        let d = device("s1", "d1");
        assert!(may_subscribe(&p, &d, "inspect/v1/s1/d1/ack"));
        assert!(may_subscribe(&p, &d, "inspect/v1/s1/d1/cmd"));
        for bad in [
            "inspect/v1/s1/d2/cmd",
            "inspect/v1/s1/d1/events",
            "inspect/v1/s1/d1/+",
            "inspect/v1/s1/+/cmd",
            "inspect/v1/s1/d1/#",
            "inspect/#",
            "#",
            "$share/g/inspect/v1/s1/d1/cmd",
            "$SYS/#",
        ] {
            assert!(!may_subscribe(&p, &d, bad), "{bad:?} was allowed");
        }
    }

    #[test]
    fn a_device_will_is_its_own_status_topic() {
        let p = TopicPrefix::default();
        let d = device("s1", "d1");
        assert!(may_set_will(&p, &d, "inspect/v1/s1/d1/status"));
        assert!(!may_set_will(&p, &d, "inspect/v1/s1/d2/status"));
        assert!(!may_set_will(&p, &d, "inspect/v1/s1/d1/events"));
    }

    #[test]
    fn a_service_reads_the_fleet_and_writes_acks_and_commands() {
        let p = TopicPrefix::default();
        let b = bridge();
        for ok in [
            "inspect/v1/+/+/events",
            "inspect/v1/+/+/status",
            "inspect/v1/s1/+/telemetry",
            "inspect/v1/+/+/+",
            "inspect/v1/#",
            "$share/bridge/inspect/v1/+/+/events",
        ] {
            assert!(may_subscribe(&p, &b, ok), "{ok}");
        }
        for bad in [
            "#",
            "inspect/#",
            "other/v1/+/+/events",
            "inspect/v1/+/+/bogus",
            "inspect/v1/+/+/events/#",
            "$share/a/b/inspect/v1/+/+/events",
            "$share//inspect/v1/+/+/events",
            "$share/bridge",
            "$SYS/#",
        ] {
            assert!(!may_subscribe(&p, &b, bad), "{bad:?} was allowed");
        }
        assert!(may_publish(&p, &b, "inspect/v1/s1/d1/ack"));
        assert!(may_publish(&p, &b, "inspect/v1/s1/d1/cmd"));
        assert!(!may_publish(&p, &b, "inspect/v1/s1/d1/events"));
        assert!(!may_publish(&p, &b, "inspect/v1/+/+/cmd"));
    }
}
