//! The committed JSON Schemas under `shared/schema/` match the Rust types,
//! and the example payloads validate against them.
//!
//! After changing a wire type on purpose, regenerate the files with
//! `UPDATE_SCHEMAS=1 cargo test -p inspection-core --test schemas -- --test-threads=1` and
//! review the diff: a change that is not additive needs a new version.

use std::collections::BTreeSet;
use std::path::PathBuf;

use inspection_core::wire;

fn schema_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schema")
}

fn render(value: &serde_json::Value) -> String {
    let mut s = serde_json::to_string_pretty(value).expect("schema serialises");
    s.push('\n');
    s
}

#[test]
fn committed_schemas_match_the_types() {
    let dir = schema_dir();
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
    let mut drifted = Vec::new();
    for (name, schema) in wire::schemas() {
        let path = dir.join(&name);
        let want = render(&schema);
        if update {
            std::fs::write(&path, &want).expect("write schema");
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(have) if have == want => {}
            Ok(_) => drifted.push(format!("{name} differs from the types")),
            Err(e) => drifted.push(format!("{name}: {e}")),
        }
    }
    // A schema file whose type is gone is drift too.
    let expected: BTreeSet<String> = wire::schemas().into_iter().map(|(n, _)| n).collect();
    for entry in std::fs::read_dir(&dir).expect("read shared/schema") {
        let name = entry
            .expect("dir entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name.ends_with(".schema.json") && !expected.contains(&name) {
            drifted.push(format!("{name} has no type any more"));
        }
    }
    assert!(
        drifted.is_empty(),
        "wire types and shared/schema/ drifted:\n  {}\nrun `UPDATE_SCHEMAS=1 cargo test -p inspection-core --test schemas -- --test-threads=1` and review the diff",
        drifted.join("\n  ")
    );
}

fn validator(name: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(schema_dir().join(name)).expect("committed schema");
    let schema: serde_json::Value = serde_json::from_str(&text).expect("schema is JSON");
    // Formats (uuid, date-time) are only annotations in draft 2020-12 unless asked for.
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("schema compiles")
}

#[test]
fn examples_validate_against_the_committed_schemas() {
    for (name, payload) in wire::examples::all_encoded() {
        let v = validator(&name);
        let errors: Vec<String> = v.iter_errors(&payload).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{name}: {errors:?}\n{payload:#}");
    }
}

#[test]
fn the_schemas_refuse_what_the_decoder_refuses() {
    let v = validator("ack.v1.schema.json");
    let good = serde_json::to_value(wire::examples::ack()).unwrap();
    assert!(v.is_valid(&good));
    for (field, bad) in [
        ("v", serde_json::json!(2)),
        ("msg_ids", serde_json::json!([])),
        ("msg_ids", serde_json::json!(["nope"])),
        ("at", serde_json::json!(17)),
    ] {
        let mut payload = good.clone();
        payload[field] = bad.clone();
        assert!(!v.is_valid(&payload), "schema accepted {field} = {bad}");
        let bytes = serde_json::to_vec(&payload).unwrap();
        assert!(
            wire::decode::<wire::Ack>(&bytes).is_err(),
            "decoder accepted {field} = {bad}"
        );
    }
    let v = validator("status.v1.schema.json");
    let mut status = serde_json::to_value(wire::examples::status()).unwrap();
    status["device"] = serde_json::json!("bay/#");
    assert!(!v.is_valid(&status));
}

#[test]
fn the_schemas_and_the_decoder_refuse_the_same_bad_frame_events() {
    let v = validator("event.v1.schema.json");
    let good = serde_json::to_value(&wire::examples::inspection()[1]).unwrap();
    assert!(v.is_valid(&good));
    let long_label = "x".repeat(65);
    let cases: &[(&str, serde_json::Value)] = &[
        ("/event/detections/0/score", serde_json::json!(1.5)),
        ("/event/detections/0/score", serde_json::json!(-0.1)),
        ("/event/detections/0/label", serde_json::json!("")),
        ("/event/detections/0/label", serde_json::json!(long_label)),
        ("/event/quality/mean_luma", serde_json::json!(300.0)),
        ("/event/quality/dark_fraction", serde_json::json!(1.2)),
        ("/event/rank", serde_json::json!(0)),
        ("/event/camera/position", serde_json::json!("front left")),
        ("/event/image/width", serde_json::json!(0)),
        ("/event/image/sha256", serde_json::json!("ABC")),
        ("/seq", serde_json::json!(-1)),
        ("/inspection_id", serde_json::json!("not-a-uuid")),
        ("/event/type", serde_json::json!("frame_deleted")),
    ];
    for (pointer, bad) in cases {
        let mut payload = good.clone();
        *payload.pointer_mut(pointer).expect(pointer) = bad.clone();
        assert!(!v.is_valid(&payload), "schema accepted {pointer} = {bad}");
        let bytes = serde_json::to_vec(&payload).unwrap();
        assert!(
            wire::decode::<wire::Event>(&bytes).is_err(),
            "decoder accepted {pointer} = {bad}"
        );
    }
    // A box outside the frame or upside down is a decoder rule (the schema
    // cannot relate fields to each other).
    for (pointer, bad) in [
        ("/event/detections/0/bbox/x2", 5000.0),
        ("/event/detections/0/bbox/x1", -3.0),
        ("/event/detections/0/bbox/y1", 700.0),
    ] {
        let mut payload = good.clone();
        *payload.pointer_mut(pointer).unwrap() = serde_json::json!(bad);
        let bytes = serde_json::to_vec(&payload).unwrap();
        let err = wire::decode::<wire::Event>(&bytes).unwrap_err();
        assert!(
            matches!(
                err,
                wire::WireError::Invalid {
                    field: "detections.bbox",
                    ..
                }
            ),
            "{err}"
        );
    }
}
