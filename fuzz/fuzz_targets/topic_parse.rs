//! Topic strings as the broker delivers them, parsed as the bridge parses
//! them, and topic prefixes as configuration gives them.
//!
//! Must hold: no panic; a topic that parses renders back to the same string
//! (so no two strings name one device's topic, and ids with wildcards,
//! separators or other characters outside the id alphabet never parse).
#![no_main]

use inspection_core::topic::{Topic, TopicKind, TopicPrefix};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let prefix = TopicPrefix::default();
    if let Ok(topic) = Topic::parse(&prefix, text) {
        assert_eq!(topic.render(&prefix), text);
        assert!(!text.contains(['+', '#', '\0']));
    }
    // The same text as a configured prefix: if accepted, every topic under it
    // parses back with the same ids.
    if let Ok(custom) = TopicPrefix::new(text) {
        assert!(!custom.as_str().contains(['+', '#']));
        let topic = Topic::parse(&prefix, "inspect/v1/fra-01/bay-1/events").unwrap();
        let rendered = topic.render(&custom);
        assert_eq!(Topic::parse(&custom, &rendered).unwrap(), topic);
        let _ = custom.shared_fleet_filter("bridge", TopicKind::Events);
    }
});
