//! The edge agent's configuration: the shipped example is valid, and a bad
//! file gets every problem reported at once.

use std::path::PathBuf;

use proptest::prelude::*;

use edge_agent::config::{Config, FileChecks};

#[path = "../../shared/tests/common/mutate.rs"]
mod mutate;

fn example() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/edge-agent.example.toml");
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn the_shipped_example_is_valid() {
    let (config, id) = Config::from_toml(&example(), FileChecks::Off).unwrap();
    assert_eq!(id.site.as_str(), "de-muc-airport");
    assert_eq!(id.device.as_str(), "bay-03");
    assert_eq!(config.cameras.len(), 2);
    assert_eq!(config.quality.min_sharpness, 100.0);
}

#[test]
fn file_checks_report_missing_model_and_frame_directory() {
    let errors = Config::from_toml(&example(), FileChecks::On).unwrap_err();
    assert_eq!(errors.0.len(), 3, "{errors}");
    assert!(errors.0[0].starts_with("prescreen.model:"), "{errors}");
    // On by default: no face model, no start.
    assert!(
        errors.0[1].starts_with("anonymise.model:") && errors.0[1].contains("centerface.onnx"),
        "{errors}"
    );
    assert!(
        errors.0[2].starts_with("cameras[1].source.path:"),
        "{errors}"
    );
}

#[test]
fn anonymisation_is_on_by_default_and_off_per_camera_or_with_a_reason() {
    let (config, _) = Config::from_toml(&example(), FileChecks::Off).unwrap();
    assert!(config.anonymise.enabled);
    assert_eq!(
        config
            .cameras
            .iter()
            .map(|c| c.anonymise_faces)
            .collect::<Vec<_>>(),
        [true, false],
        "the example's second camera opts out"
    );

    // Off for the whole board: no face model needed.
    let off = example().replace("[anonymise]\n", "[anonymise]\nenabled = false\n");
    let errors = Config::from_toml(&off, FileChecks::On).unwrap_err();
    assert!(
        !errors.0.iter().any(|e| e.starts_with("anonymise")),
        "{errors}"
    );

    let bad = example()
        .replace("threshold = 0.5", "threshold = 1.5")
        .replace("method = \"blur\"", "method = \"smudge\"");
    let errors = Config::from_toml(&bad, FileChecks::Off).unwrap_err();
    assert!(errors.to_string().contains("smudge"), "{errors}");
    let bad = example().replace("threshold = 0.5", "threshold = 1.5");
    let errors = Config::from_toml(&bad, FileChecks::Off).unwrap_err();
    assert_eq!(errors.0, ["anonymise.threshold: 0.05 to 0.95"], "{errors}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"
        [device]
        site = "de/muc"
        device = "bay+3"
        [mqtt]
        topic_prefix = "in#spect"
        [quality]
        min_sharpness = -1.0
        [prescreen]
        model = "m.onnx"
        input_size = 100
        decode = { conf_threshold = 1.5 }
        [[cameras]]
        id = "cam"
        position = "front"
        source = { kind = "directory", path = "/x", fps = -1.0 }
        [[cameras]]
        id = "cam"
        position = "left side"
        source = { kind = "v4l2", device = "/dev/video0", width = 0, height = 720, fps = 15.0, format = "yuyv" }
        [session]
        frames_per_camera = 0
    "#;
    let errors = Config::from_toml(text, FileChecks::Off).unwrap_err();
    let fields: Vec<&str> = errors
        .0
        .iter()
        .map(|e| e.split(':').next().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "device.site",
            "device.device",
            "mqtt.topic_prefix",
            "quality",
            "prescreen.input_size",
            "prescreen.decode",
            "session.frames_per_camera",
            "cameras[0].source.fps",
            "cameras[1].id",
            "cameras[1].position",
            "cameras[1].source.width",
        ],
        "{errors}"
    );
}

#[test]
fn unknown_keys_and_wrong_types_are_refused_with_their_location() {
    let typo = example().replace("topic_prefix", "topic_prefx");
    let errors = Config::from_toml(&typo, FileChecks::Off).unwrap_err();
    assert!(errors.to_string().contains("topic_prefx"), "{errors}");

    let wrong_type = example().replace("input_size = 640", "input_size = \"640\"");
    let errors = Config::from_toml(&wrong_type, FileChecks::Off).unwrap_err();
    assert!(errors.to_string().contains("input_size"), "{errors}");

    let errors = Config::from_toml("not toml at all [", FileChecks::Off).unwrap_err();
    assert_eq!(errors.0.len(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 3000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// The parser and validator on random edits of the shipped example
    /// (TOML syntax, huge and negative numbers, NaN, unicode, paths, bad
    /// addresses, duplicated lines): never a panic; an error names what is
    /// wrong; what loads validates again.
    #[test]
    fn random_edits_of_the_example_never_panic(edits in mutate::edits()) {
        let text = mutate::apply(&example(), &edits);
        match Config::from_toml(&text, FileChecks::Off) {
            Ok((config, _)) => prop_assert!(config.validate(FileChecks::Off).is_ok()),
            Err(errors) => {
                prop_assert!(!errors.0.is_empty());
                prop_assert!(errors.0.iter().all(|e| !e.trim().is_empty()), "{errors}");
            }
        }
    }
}
