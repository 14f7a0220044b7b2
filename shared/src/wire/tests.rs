//! Wire codec tests: round trips, versions, malformed input, source checks.

use super::*;
use crate::ids::{DeviceId, SiteId};
use crate::topic::{Topic, TopicPrefix};

fn round_trip<T: Payload + PartialEq + std::fmt::Debug>(msg: &T) {
    let bytes = encode(msg).unwrap();
    assert_eq!(&decode::<T>(&bytes).unwrap(), msg);
}

#[test]
fn every_example_round_trips() {
    round_trip(&examples::status());
    round_trip(&examples::telemetry());
    round_trip(&examples::ack());
    round_trip(&examples::command());
    for e in examples::inspection() {
        round_trip(&e);
    }
}

fn with_field(value: serde_json::Value, field: &str, new: serde_json::Value) -> Vec<u8> {
    let mut value = value;
    value[field] = new;
    serde_json::to_vec(&value).unwrap()
}

#[test]
fn versions_other_than_1_are_refused_with_a_version_error() {
    let base = serde_json::to_value(examples::ack()).unwrap();
    for (v, found) in [
        (serde_json::json!(2), "2"),
        (serde_json::json!(0), "0"),
        (serde_json::json!("1"), "\"1\""),
        (serde_json::json!(1.5), "1.5"),
    ] {
        let err = decode::<Ack>(&with_field(base.clone(), "v", v)).unwrap_err();
        assert_eq!(
            err,
            WireError::UnsupportedVersion {
                found: found.into()
            }
        );
        assert_eq!(err.code(), "unsupported_version");
    }
    // A long non-ASCII version must not be cut inside a character.
    let unicode = with_field(base.clone(), "v", "\u{e9}".repeat(40).into());
    let err = decode::<Ack>(&unicode).unwrap_err();
    assert_eq!(
        err,
        WireError::UnsupportedVersion {
            found: format!("\"{}", "\u{e9}".repeat(31))
        }
    );
    let null_v = with_field(base.clone(), "v", serde_json::Value::Null);
    assert_eq!(
        decode::<Ack>(&null_v).unwrap_err(),
        WireError::MissingVersion
    );
    let mut no_v = base;
    no_v.as_object_mut().unwrap().remove("v");
    assert_eq!(
        decode::<Ack>(&serde_json::to_vec(&no_v).unwrap()).unwrap_err(),
        WireError::MissingVersion
    );
}

#[test]
fn malformed_payloads_give_typed_errors() {
    let cases: &[&[u8]] = &[
        b"",
        b"null",
        b"[]",
        b"{",
        b"\xff\xfe",
        b"{\"v\":1}",
        b"{\"v\":1,\"msg_ids\":\"x\",\"at\":\"2026-01-01T00:00:00Z\"}",
        b"{\"v\":1,\"msg_ids\":[\"not-a-uuid\"],\"at\":\"2026-01-01T00:00:00Z\"}",
    ];
    for case in cases {
        let err = decode::<Ack>(case).unwrap_err();
        assert!(
            matches!(err, WireError::Malformed(_) | WireError::MissingVersion),
            "{:?} -> {err:?}",
            String::from_utf8_lossy(case)
        );
    }
    // Deep nesting is stopped by serde_json's recursion limit, not the stack.
    let deep = format!("{{\"v\":1,\"x\":{}{}}}", "[".repeat(5000), "]".repeat(5000));
    assert!(decode::<Ack>(deep.as_bytes()).is_err());
}

#[test]
fn oversized_payloads_are_refused_before_parsing() {
    let big = vec![b' '; MAX_PAYLOAD_BYTES + 1];
    assert_eq!(
        decode::<Event>(&big).unwrap_err(),
        WireError::TooLarge {
            size: MAX_PAYLOAD_BYTES + 1,
            max: MAX_PAYLOAD_BYTES
        }
    );
}

#[test]
fn field_rules_beyond_serde_are_enforced() {
    let mut ack = examples::ack();
    ack.msg_ids.clear();
    assert!(matches!(
        encode(&ack),
        Err(WireError::Invalid {
            field: "msg_ids",
            ..
        })
    ));

    let mut frame = examples::inspection().remove(1);
    if let EventBody::FrameSelected { detections, .. } = &mut frame.event {
        detections[0].score = 1.5;
    }
    assert!(matches!(
        decode::<Event>(&serde_json::to_vec(&frame).unwrap()),
        Err(WireError::Invalid {
            field: "detections.score",
            ..
        })
    ));

    let mut frame = examples::inspection().remove(1);
    if let EventBody::FrameSelected { detections, .. } = &mut frame.event {
        let d = detections[0].clone();
        detections.resize(MAX_DETECTIONS_PER_FRAME + 1, d);
    }
    assert!(matches!(
        encode(&frame),
        Err(WireError::Invalid {
            field: "detections",
            ..
        })
    ));

    let mut telemetry = examples::telemetry();
    telemetry.central_clock_offset_ms = Some(-(MAX_CLOCK_OFFSET_MS as i64) - 1);
    assert!(matches!(
        encode(&telemetry),
        Err(WireError::Invalid {
            field: "central_clock_offset_ms",
            ..
        })
    ));
    assert_eq!(telemetry.central_clock_offset(), None);
    telemetry.central_clock_offset_ms = Some(7_200_000);
    assert_eq!(
        telemetry.central_clock_offset(),
        Some(chrono::TimeDelta::hours(2))
    );

    // Ids are checked while decoding: a wildcard in a payload's device id.
    let value = serde_json::to_value(examples::status()).unwrap();
    let err = decode::<Status>(&with_field(value, "device", "bay/+".into())).unwrap_err();
    assert!(matches!(err, WireError::Malformed(_)), "{err:?}");
}

#[test]
fn unknown_fields_are_ignored_within_a_version() {
    let bytes = with_field(
        serde_json::to_value(examples::ack()).unwrap(),
        "new_optional",
        7.into(),
    );
    assert_eq!(decode::<Ack>(&bytes).unwrap(), examples::ack());
}

#[test]
fn device_messages_must_come_from_the_topics_device() {
    let prefix = TopicPrefix::default();
    let status = examples::status();
    let own = Topic::new(
        status.site.clone(),
        status.device.clone(),
        TopicKind::Status,
    );
    let bytes = encode(&status).unwrap();
    assert!(matches!(
        decode_device_message(&own, &bytes),
        Ok(DeviceMessage::Status(_))
    ));

    let other = Topic::new(
        status.site.clone(),
        DeviceId::new("bay-04").unwrap(),
        TopicKind::Status,
    );
    let err = decode_device_message(&other, &bytes).unwrap_err();
    assert_eq!(err.code(), "source_mismatch");
    assert!(err.to_string().contains("bay-04"), "{err}");

    let ack_topic = Topic::new(
        SiteId::new("s").unwrap(),
        DeviceId::new("d").unwrap(),
        TopicKind::Ack,
    );
    assert_eq!(
        decode_device_message(&ack_topic, &bytes).unwrap_err(),
        WireError::NotFromDevice(TopicKind::Ack)
    );
    // An event on the status topic is a malformed status, not an event.
    let event_bytes = encode(&examples::inspection()[0]).unwrap();
    assert!(decode_device_message(&own, &event_bytes).is_err());
    let _ = prefix;
}

#[test]
fn sha256_hex_is_64_lowercase_hex() {
    assert!(Sha256Hex::new("a".repeat(64)).is_ok());
    for bad in [
        "A".repeat(64),
        "a".repeat(63),
        "g".repeat(64),
        String::new(),
    ] {
        assert!(Sha256Hex::new(bad).is_err());
    }
    assert_eq!(
        Sha256Hex::from_digest(&[0xab; 32]).as_str(),
        "ab".repeat(32)
    );
}

#[test]
fn every_payload_kind_has_one_schema() {
    let names: Vec<String> = schemas().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "status.v1.schema.json",
            "event.v1.schema.json",
            "telemetry.v1.schema.json",
            "ack.v1.schema.json",
            "command.v1.schema.json"
        ]
    );
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    fn mutate(value: &mut serde_json::Value, path: &[usize], new: serde_json::Value) {
        // Walk into the document by index and replace the value reached.
        let Some((&i, rest)) = path.split_first() else {
            *value = new;
            return;
        };
        match value {
            serde_json::Value::Object(map) if !map.is_empty() => {
                let key = map.keys().nth(i % map.len()).cloned().unwrap();
                mutate(map.get_mut(&key).unwrap(), rest, new);
            }
            serde_json::Value::Array(items) if !items.is_empty() => {
                let n = items.len();
                mutate(&mut items[i % n], rest, new);
            }
            _ => *value = new,
        }
    }

    fn any_json() -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(Into::into),
            any::<i64>().prop_map(Into::into),
            any::<f64>().prop_map(|f| serde_json::json!(f)),
            ".{0,80}".prop_map(Into::into),
            Just(serde_json::json!([])),
            Just(serde_json::json!({})),
        ]
    }

    proptest! {
        #[test]
        fn on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<Event>(&bytes);
            let _ = decode::<Status>(&bytes);
            let _ = decode::<Command>(&bytes);
        }

        #[test]
        fn on_mutated_valid_payloads(
            which in 0usize..3,
            path in proptest::collection::vec(any::<usize>(), 0..5),
            new in any_json(),
        ) {
            let mut value = serde_json::to_value(&examples::inspection()[which]).unwrap();
            mutate(&mut value, &path, new);
            let bytes = serde_json::to_vec(&value).unwrap();
            // Either it decodes to something that re-encodes, or it is refused.
            if let Ok(event) = decode::<Event>(&bytes) {
                prop_assert!(encode(&event).is_ok());
            }
        }
    }
}
