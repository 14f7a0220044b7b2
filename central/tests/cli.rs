//! The `central` binary as an operator uses it.

// One helper for every crate's tests: where `models/fetch.sh` put the files.
#[path = "../../shared/tests/common/mod.rs"]
mod common;

use std::process::Command;

fn central() -> Command {
    Command::new(env!("CARGO_BIN_EXE_central"))
}

#[test]
fn help_lists_only_what_exists() {
    let out = central().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.contains("validate") && help.contains("detect"),
        "{help}"
    );
    assert!(
        !help.contains("  run"),
        "no run command until the roles exist:\n{help}"
    );
}

#[test]
fn validate_exit_codes() {
    let example = format!("{}/config/central.example.toml", env!("CARGO_MANIFEST_DIR"));
    let ok = central()
        .args(["validate", "--skip-file-checks", "--config", &example])
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = central()
        .args(["validate", "--config", &example])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn detect_prints_the_bus_plate_as_json() {
    let out = central()
        .env_remove("ORT_DYLIB_PATH")
        .args(["detect", "--json", "--model"])
        .arg(common::fetched("platedet/platedet.onnx"))
        .arg(common::fetched("photos/pexels_double_decker_bus.jpg"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let line: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(line["label"], "plate");
    let x1 = line["bbox"][0].as_f64().unwrap();
    assert!((410.0..425.0).contains(&x1), "{line}");
}
