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
    for command in ["run", "validate", "detect", "certs"] {
        assert!(
            help.contains(&format!("  {command}")),
            "{command} missing:\n{help}"
        );
    }
}

#[test]
fn run_refuses_roles_that_are_not_built_and_unknown_ones() {
    let example = format!("{}/config/central.example.toml", env!("CARGO_MANIFEST_DIR"));
    let unknown = central()
        .args(["run", "--config", &example, "--roles", "brokr"])
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("unknown role"), "{stderr}");

    // The api role with no way for anyone to sign in: refused at start,
    // before anything is opened.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("central.toml");
    std::fs::write(&config, "[mqtt]\ntopic_prefix = \"inspect\"\n").unwrap();
    let api = central()
        .current_dir(dir.path())
        .args(["run", "--config"])
        .arg(&config)
        .args(["--roles", "api"])
        .output()
        .unwrap();
    assert!(!api.status.success());
    let stderr = String::from_utf8_lossy(&api.stderr);
    assert!(stderr.contains("nobody could sign in"), "{stderr}");
    assert!(!dir.path().join("data").exists(), "nothing opened");
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
