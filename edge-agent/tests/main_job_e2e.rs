//! The main job end to end, as a user runs it (`central demo`): central with
//! every role a single machine needs (embedded broker behind its TLS
//! gateway, bridge, HTTPS upload, worker with the real models and report
//! writers, SQLite, local object store) in this process, and the
//! `edge-agent` binary as a separate process, its cameras directories of
//! real-photo frames (`central::demo`), over TLS MQTT and HTTPS.
//!
//! A pickup pass of a vehicle, then a return pass of the same vehicle with a
//! scratch painted on the front camera's view and a dent on the left's:
//!
//! - each pass is exactly one inspection, complete and processed, and the
//!   plate read on both is the plate rendered on the vehicle;
//! - the return is compared with that pickup, and each painted damage is a
//!   `possible_new_damage` finding at its camera's position, over the
//!   painted area; nothing is called pre-existing;
//! - a report is stored for each inspection, and the return's states the
//!   plate; the pictures and the PDF are written;
//! - every event the agent sent is stored exactly once with no gap in
//!   `seq`, every frame's image is in the object store, and the agent's own
//!   telemetry reported an empty outbox before each pass ended (the run
//!   waits for it).
//!
//! The demo runs twice in the same folder: a second run starts afresh and
//! reaches the same result.
//!
//! Log hygiene: central's log of both runs (info level, as shipped) and the
//! agents' logs hold neither the plate (any spelling), nor a private key,
//! nor the API token, nor image bytes; the vehicle appears as its keyed
//! tag.

#[path = "../../shared/tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::sync::Arc;

use central::demo::{DEVICE, DemoOutcome, DemoSettings, SITE};
use central::store::{Comparison, FindingStatus, SqliteStore, Store, StoreConfig};
use central::upload::object_key;
use inspection_core::ids::{DeviceId, SiteId};
use inspection_core::wire::EventBody;
use tokio::sync::watch;

fn settings(dir: PathBuf) -> DemoSettings {
    let models = common::fetched("photos/pexels_double_decker_bus.jpg")
        .parent()
        .and_then(|p| p.parent())
        .expect("the model cache")
        .to_path_buf();
    DemoSettings::new(dir, PathBuf::from(env!("CARGO_BIN_EXE_edge-agent")), models)
}

async fn run_demo(settings: &DemoSettings) -> DemoOutcome {
    let (_stop, stop_rx) = watch::channel(false);
    let progress = |line: &str| println!("demo: {line}");
    central::demo::run(settings, &progress, stop_rx)
        .await
        .unwrap_or_else(|e| panic!("the demo failed: {e}"))
}

async fn check(o: &DemoOutcome) {
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&StoreConfig::sqlite(&o.database))
            .await
            .expect("store opens"),
    );
    let pickup = store
        .inspection_result(o.pickup.inspection)
        .await
        .unwrap()
        .expect("pickup result");
    assert_eq!(
        pickup.plate.as_ref().map(|r| r.plate.as_str()),
        Some(o.bay.plate.as_str()),
        "pickup plate reads: {:?}",
        pickup.plate_reads
    );
    let r = &o.result;
    assert_eq!(
        r.plate.as_ref().map(|r| r.plate.as_str()),
        Some(o.bay.plate.as_str()),
        "return plate reads: {:?}",
        r.plate_reads
    );
    match &r.comparison {
        Comparison::Compared {
            pickup_inspection_id,
            ..
        } => assert_eq!(*pickup_inspection_id, o.pickup.inspection),
        other => panic!("return not compared with the pickup: {other:?}"),
    }
    for painted in &o.bay.damage {
        let hit = r.findings.iter().find(|f| {
            f.status == FindingStatus::PossibleNewDamage
                && f.position == painted.position
                && f.bbox.iou(&painted.bbox) > 0.0
        });
        assert!(
            hit.is_some(),
            "the {} at {} ({:?}) is not flagged: {:?}",
            painted.kind,
            painted.position,
            painted.bbox,
            r.findings
        );
    }
    assert!(
        r.findings
            .iter()
            .all(|f| f.status != FindingStatus::PreExisting),
        "{:?}",
        r.findings
    );
    for id in [o.pickup.inspection, o.ret.inspection] {
        assert!(
            !store.reports(id).await.unwrap().is_empty(),
            "no report for {id}"
        );
    }
    assert!(
        o.report
            .narrative
            .replace(' ', "")
            .contains(&o.bay.printed_plate.replace(' ', "")),
        "{}",
        o.report.narrative
    );
    assert!(!o.pictures.is_empty(), "no pickup/return picture written");
    for p in o.pictures.iter().chain([&o.pdf]) {
        let len = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        assert!(len > 10_000, "{} is {len} bytes", p.display());
    }
    assert!(std::fs::read(&o.pdf).unwrap().starts_with(b"%PDF-"));
    // Staff see the return through the API (as the demo's admin).
    assert_eq!(o.api.status, 200, "staff API: {:?}", o.api);
    assert_eq!(o.api.findings, o.result.findings.len());
    assert!(o.api.undecided >= o.bay.damage.len(), "{:?}", o.api);

    // Exactly once, images present.
    let site = SiteId::new(SITE).unwrap();
    let device = DeviceId::new(DEVICE).unwrap();
    let events = store
        .device_events(&site, &device, 0, 100_000)
        .await
        .unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.event.seq).collect();
    let first = seqs.first().copied().unwrap_or(1);
    assert_eq!(
        seqs,
        (first..first + seqs.len() as u64).collect::<Vec<_>>(),
        "every event stored once, none missing"
    );
    let mut images = 0;
    for e in &events {
        if let EventBody::FrameSelected { image, .. } = &e.event.event {
            let path = o.images.join(object_key(&image.sha256).to_string());
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|err| panic!("image {} not stored: {err}", path.display()));
            assert_eq!(bytes.len() as u64, image.bytes);
            images += 1;
        }
    }
    assert!(images >= 4, "{images} frames stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pickup_then_return_through_the_whole_system_flags_the_new_damage() {
    central::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let central_log = dir.path().join("central.log");
    // At the shipped level (info), whatever RUST_LOG says.
    central::ops::init_logging_to_at_default_level(
        central::ops::LogFormat::Text,
        std::fs::File::create(&central_log).unwrap(),
    );
    let settings = settings(dir.path().join("demo"));

    let first = run_demo(&settings).await;
    println!(
        "plate {}; report ({}):\n{}",
        first.bay.printed_plate, first.report.writer, first.report.narrative
    );
    check(&first).await;

    // Again in the same folder: a fresh run, the same result.
    let second = run_demo(&settings).await;
    check(&second).await;
    assert_ne!(first.ret.inspection, second.ret.inspection);
    assert_eq!(first.bay.plate, second.bay.plate);

    staff_ui_over_the_results(&second).await;
    logs_hold_no_personal_data_or_secrets(&central_log, &settings.dir, &second);
}

/// The logs of the whole run, searched for what must not be there.
fn logs_hold_no_personal_data_or_secrets(
    central_log: &std::path::Path,
    demo_dir: &std::path::Path,
    o: &DemoOutcome,
) {
    let central = std::fs::read_to_string(central_log).unwrap();
    let mut logs = vec![("central".to_owned(), central.clone())];
    for entry in std::fs::read_dir(demo_dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("agent-") && name.ends_with(".log") {
            logs.push((name, std::fs::read_to_string(entry.path()).unwrap()));
        }
    }
    assert!(logs.len() >= 3, "central's and both agents' logs: {logs:?}");
    assert!(
        central.contains("inspection processed"),
        "central's log has the run"
    );

    let plate = &o.bay.plate;
    let mut forbidden = vec![
        ("the plate".to_owned(), plate.clone()),
        ("the printed plate".to_owned(), o.bay.printed_plate.clone()),
        // JPEG bytes in base64 start so.
        ("image bytes".to_owned(), "/9j/".to_owned()),
    ];
    let token = std::fs::read_to_string(&o.api.token_file).unwrap();
    forbidden.push(("the API token".to_owned(), token.trim().to_owned()));
    for key in find_files(demo_dir, ".key") {
        let pem = std::fs::read_to_string(&key).unwrap();
        for line in pem
            .lines()
            .filter(|l| l.len() >= 40 && !l.starts_with("-----"))
        {
            forbidden.push((format!("{} key material", key.display()), line.to_owned()));
        }
    }
    assert!(forbidden.len() > 5, "keys found: {forbidden:?}");
    // The plate in the spellings people and programs use.
    forbidden.push((
        "the plate with dashes".to_owned(),
        o.bay.printed_plate.replace(' ', "-"),
    ));
    forbidden.push((
        "the plate without spaces".to_owned(),
        o.bay.printed_plate.replace(' ', ""),
    ));
    for (name, text) in &logs {
        // Case does not hide a plate (nor, here, anything else).
        let lower = text.to_lowercase();
        for (what, secret) in &forbidden {
            assert!(
                !lower.contains(&secret.to_lowercase()),
                "{what} ({secret}) in the {name} log"
            );
        }
    }
    // The vehicle, where a line needs it, is its keyed tag.
    let tag = central::privacy::vehicle_tag(plate);
    assert!(
        central.contains(&format!("vehicle={tag}")),
        "no line names the vehicle by its tag {tag}"
    );
}

fn find_files(dir: &std::path::Path, suffix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(find_files(&path, suffix));
        } else if path.to_string_lossy().ends_with(suffix) {
            found.push(path);
        }
    }
    found
}

/// What the demo prints: the api role alone, from the demo's configuration,
/// serves the web UI and the return to the demo's token.
async fn staff_ui_over_the_results(o: &DemoOutcome) {
    let config = central::config::Config::load(
        &o.database.with_file_name("central.toml"),
        central::config::FileChecks::On,
    )
    .expect("the demo's central.toml");
    let (stop, stop_rx) = watch::channel(false);
    let api = tokio::spawn(central::run::run(
        config,
        &[central::run::Role::Api],
        central::run::RoleMetrics::default(),
        stop_rx,
    ));
    let http = reqwest::Client::new();
    let token = std::fs::read_to_string(&o.api.token_file).expect("the demo's token");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let page = loop {
        match http.get(format!("{}/ui/", o.api.base_url)).send().await {
            Ok(r) if r.status().is_success() => break r.text().await.expect("page"),
            _ if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
            other => panic!("the web UI did not come up: {other:?}"),
        }
    };
    assert!(page.contains("/ui/app.js"), "{page}");
    let detail = http
        .get(format!(
            "{}/api/v1/inspections/{}",
            o.api.base_url, o.ret.inspection
        ))
        .bearer_auth(token.trim())
        .send()
        .await
        .expect("detail");
    assert_eq!(detail.status().as_u16(), 200);
    stop.send(true).expect("stop");
    api.await
        .expect("joined")
        .expect("the api role stops cleanly");
}
