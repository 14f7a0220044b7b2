//! The `edge-agent` binary as an operator uses it.

// One helper for every crate's tests: where `models/fetch.sh` put the files.
#[path = "../../shared/tests/common/mod.rs"]
mod common;

use std::process::Command;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_edge-agent"))
}

fn example() -> String {
    format!(
        "{}/config/edge-agent.example.toml",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn help_lists_the_commands_and_says_what_is_not_built() {
    let out = agent().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for command in ["run", "validate", "quality"] {
        assert!(
            help.contains(&format!("  {command}")),
            "{command} missing:\n{help}"
        );
    }
    assert!(help.contains("uplink"), "{help}");
}

#[test]
fn validate_exits_0_on_a_good_file_and_2_listing_all_problems_on_a_bad_one() {
    let ok = agent()
        .args(["validate", "--skip-file-checks", "--config", &example()])
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let bad = agent()
        .args(["validate", "--config", &example()])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8(bad.stderr).unwrap();
    assert!(stderr.contains("3 problem(s)"), "{stderr}");

    let missing = agent()
        .args(["validate", "--config", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read"));
}

#[test]
fn quality_accepts_the_sharp_bus_and_rejects_the_blurred_sedan() {
    let bus = common::fetched("photos/pexels_double_decker_bus.jpg");
    let sedan = common::fetched("photos/licenseplate_motion.jpg");
    let out = agent()
        .arg("quality")
        .arg(&bus)
        .arg(&sedan)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].ends_with("accepted"), "{stdout}");
    assert!(
        lines[1].contains("rejected") && lines[1].contains("blur"),
        "{stdout}"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "a rejected frame makes the exit code 1"
    );

    let truncated = std::env::temp_dir().join(format!("truncated-{}.jpg", std::process::id()));
    let bytes = std::fs::read(&bus).unwrap();
    // Cut inside the headers: image 0.25 decodes a JPEG cut at half its
    // length without complaint (the missing rows come out grey), which the
    // capture and upload paths must catch by checking the EOI marker.
    std::fs::write(&truncated, &bytes[..200]).unwrap();
    let out = agent().arg("quality").arg(&truncated).output().unwrap();
    std::fs::remove_file(&truncated).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot decode"));
}
