//! The central configuration: the shipped example is valid, and a bad file
//! gets every problem reported at once.

use std::path::PathBuf;

use proptest::prelude::*;

use central::config::{Config, FileChecks};

#[path = "../../shared/tests/common/mutate.rs"]
mod mutate;

fn example() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/central.example.toml");
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn the_shipped_example_is_valid_and_an_empty_file_means_all_defaults() {
    let config = Config::from_toml(&example(), FileChecks::Off).unwrap();
    assert!(config.detectors.plate.is_some());
    assert!(config.detectors.damage.is_none());
    let empty = Config::from_toml("", FileChecks::Off).unwrap();
    assert_eq!(empty.mqtt.topic_prefix, "inspect");
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"
        [mqtt]
        topic_prefix = "a//b"
        [onnxruntime]
        library = "/nonexistent/libonnxruntime.so"
        [detectors.plate]
        model = "/nonexistent/plate.onnx"
        input_size = 650
        decode = { conf_threshold = -0.1, iou_threshold = 2.0 }
        [detectors.damage]
        model = "/nonexistent/damage.onnx"
    "#;
    let errors = Config::from_toml(text, FileChecks::On).unwrap_err();
    let fields: Vec<&str> = errors
        .0
        .iter()
        .map(|e| e.split(':').next().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "mqtt.topic_prefix",
            "detectors.plate.decode",
            "detectors.plate.decode",
            "detectors.plate.input_size",
            "detectors.plate.model",
            "detectors.damage.model",
            "onnxruntime.library",
        ],
        "{errors}"
    );
}

#[test]
fn unknown_keys_are_refused() {
    let errors =
        Config::from_toml("[detectors.plates]\nmodel = \"x\"\n", FileChecks::Off).unwrap_err();
    assert!(errors.to_string().contains("plates"), "{errors}");
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
            Ok(config) => prop_assert!(config.validate(FileChecks::Off).is_ok()),
            Err(errors) => {
                prop_assert!(!errors.0.is_empty());
                prop_assert!(errors.0.iter().all(|e| !e.trim().is_empty()), "{errors}");
            }
        }
    }
}
