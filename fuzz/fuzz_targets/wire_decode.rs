//! Every MQTT payload a peer can send, decoded as the receiver decodes it:
//! device messages (status, events, telemetry) as the bridge does, by their
//! topic, and acks and commands as a board does. The first byte picks the
//! topic kind, the rest is the payload.
//!
//! Must hold: no panic; what decodes also re-encodes (it passed the same
//! validation) unless re-encoding makes it larger than the limit, and the
//! re-encoded bytes decode again.
#![no_main]

use inspection_core::topic::{Topic, TopicKind};
use inspection_core::wire::{self, Ack, Command, DeviceMessage, Payload, WireError};
use inspection_core::{DeviceId, SiteId};
use libfuzzer_sys::fuzz_target;

fn round_trip<T: Payload>(msg: &T) {
    match wire::encode(msg) {
        Ok(bytes) => {
            if let Err(e) = wire::decode::<T>(&bytes) {
                panic!("re-encoded payload does not decode: {e}");
            }
        }
        Err(WireError::TooLarge { .. }) => {}
        Err(e) => panic!("a decoded payload does not encode: {e}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    let kinds = [
        TopicKind::Status,
        TopicKind::Events,
        TopicKind::Telemetry,
        TopicKind::Ack,
        TopicKind::Cmd,
    ];
    let kind = kinds[usize::from(selector) % kinds.len()];
    let topic = Topic::new(
        SiteId::new("de-muc-airport").unwrap(),
        DeviceId::new("bay-03").unwrap(),
        kind,
    );
    match kind {
        TopicKind::Ack => {
            if let Ok(ack) = wire::decode::<Ack>(payload) {
                round_trip(&ack);
            }
        }
        TopicKind::Cmd => {
            if let Ok(cmd) = wire::decode::<Command>(payload) {
                round_trip(&cmd);
            }
        }
        _ => match wire::decode_device_message(&topic, payload) {
            Ok(DeviceMessage::Status(m)) => round_trip(&m),
            Ok(DeviceMessage::Event(m)) => round_trip(&m),
            Ok(DeviceMessage::Telemetry(m)) => round_trip(&m),
            Err(_) => {}
        },
    }
});
