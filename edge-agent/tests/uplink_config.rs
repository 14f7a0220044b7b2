//! The `[uplink]` section of the shipped example (commented out there, so
//! the example runs offline) is valid once uncommented, and a bad section
//! gets every problem listed.

use std::path::PathBuf;

use edge_agent::config::{Config, FileChecks};

fn example_with_uplink() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/edge-agent.example.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let (head, tail) = text.split_at(text.find("# [uplink]").expect("an [uplink] example"));
    let tail: Vec<String> = tail
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if rest.starts_with('[') || rest.contains(" = ") => rest.to_owned(),
            _ => l.to_owned(),
        })
        .collect();
    format!("{head}{}\n", tail.join("\n"))
}

#[test]
fn the_example_uplink_section_is_valid() {
    let (config, _) = Config::from_toml(&example_with_uplink(), FileChecks::Off).unwrap();
    let uplink = config.uplink.expect("the section parsed");
    assert_eq!(uplink.max_in_flight, 64);
    assert!(uplink.token_file.is_some());
}

#[test]
fn a_bad_uplink_section_lists_every_problem() {
    let text = example_with_uplink()
        .replace(
            "mqtts://central.example.net:8883",
            "mqtt://central.example.net",
        )
        .replace("ack_timeout_s = 30", "ack_timeout_s = 0")
        .replace("key = \"/etc/edge-agent/tls/device.key\"", "");
    let errors = Config::from_toml(&text, FileChecks::Off).unwrap_err();
    for want in ["uplink.mqtt_url:", "uplink.ack_timeout_s:", "uplink.key:"] {
        assert!(
            errors.0.iter().any(|p| p.starts_with(want)),
            "{want} missing: {errors}"
        );
    }
    let typo = example_with_uplink().replace("upload_url", "uplod_url");
    assert!(Config::from_toml(&typo, FileChecks::Off).is_err());
}
