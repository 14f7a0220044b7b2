//! The `Store` contract, run against every backend: each check is a plain
//! async function taking an `Arc<dyn Store>`; the `#[tokio::test]`s at the
//! bottom run them on SQLite. A new backend adds one factory and one test
//! per check (the `conformance!` macro). Failure tests that need a
//! backend's own knobs (a full database, an unopenable path) follow.

use std::sync::Arc;

use central::store::{
    DEAD_LETTER_MAX_PAYLOAD, DeadLetter, Recorded, SqliteStore, Store, StoreConfig, StoreError,
    open_store,
};
use chrono::{DateTime, Duration, TimeZone, Utc};
use inspection_core::ids::{DeviceId, SiteId};
use inspection_core::wire::{
    CommandOutcome, CompletionReason, DeviceState, Event, EventBody, InspectionKind, V1, examples,
};
use uuid::Uuid;

fn t(second: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).single().unwrap() + Duration::seconds(second)
}

fn site() -> SiteId {
    examples::inspection()[0].site.clone()
}

fn device() -> DeviceId {
    examples::inspection()[0].device.clone()
}

/// The example inspection with fresh ids, seqs from `first_seq`.
fn inspection(first_seq: u64) -> Vec<Event> {
    let inspection_id = Uuid::now_v7();
    examples::inspection()
        .into_iter()
        .enumerate()
        .map(|(i, mut e)| {
            e.msg_id = Uuid::now_v7();
            e.seq = first_seq + i as u64;
            e.inspection_id = Some(inspection_id);
            e
        })
        .collect()
}

fn command_result(seq: u64) -> Event {
    Event {
        v: V1,
        msg_id: Uuid::now_v7(),
        seq,
        site: site(),
        device: device(),
        inspection_id: None,
        at: t(seq as i64),
        event: EventBody::CommandResult {
            cmd_id: Uuid::now_v7(),
            command: "reload_config".into(),
            outcome: CommandOutcome::Executed,
            detail: None,
        },
    }
}

// ---- The suite ----------------------------------------------------------

pub async fn same_event_twice_is_stored_once(store: Arc<dyn Store>) {
    let events = inspection(1);
    let first = store.record_events(&events[..1], t(0)).await.unwrap();
    assert_eq!(first, vec![Recorded::Inserted]);
    let again = store.record_events(&events[..1], t(5)).await.unwrap();
    assert_eq!(again, vec![Recorded::Duplicate]);
    let stored = store
        .event(events[0].msg_id)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(stored.event, events[0]);
    assert_eq!(stored.received_at, t(0), "a duplicate must not overwrite");
    assert_eq!(store.counts().await.unwrap().events, 1);
}

pub async fn same_event_twice_in_one_batch(store: Arc<dyn Store>) {
    let events = inspection(1);
    let batch = vec![
        events[0].clone(),
        events[1].clone(),
        events[0].clone(),
        events[2].clone(),
        events[1].clone(),
    ];
    let recorded = store.record_events(&batch, t(0)).await.unwrap();
    use Recorded::*;
    assert_eq!(
        recorded,
        vec![Inserted, Inserted, Duplicate, Inserted, Duplicate]
    );
    let counts = store.counts().await.unwrap();
    assert_eq!((counts.events, counts.inspections), (3, 1));
    let stored = store
        .device_events(&site(), &device(), 0, 10)
        .await
        .unwrap();
    assert_eq!(stored.len(), 3);
}

pub async fn an_empty_batch_records_nothing(store: Arc<dyn Store>) {
    assert!(store.record_events(&[], t(0)).await.unwrap().is_empty());
    assert_eq!(store.counts().await.unwrap().events, 0);
}

pub async fn inspection_lifecycle_in_order_and_out_of_order(store: Arc<dyn Store>) {
    // In order.
    let a = inspection(1);
    for e in &a {
        store
            .record_events(std::slice::from_ref(e), t(1))
            .await
            .unwrap();
    }
    // Completed first, then the frame, then started (a reconnect can shuffle
    // them), in separate calls.
    let b = inspection(10);
    for e in b.iter().rev() {
        store
            .record_events(std::slice::from_ref(e), t(2))
            .await
            .unwrap();
    }
    // Redelivery of the whole of b: nothing changes (frames are not counted twice).
    let again = store.record_events(&b, t(3)).await.unwrap();
    assert!(again.iter().all(|r| *r == Recorded::Duplicate));
    let counts = store.counts().await.unwrap();
    assert_eq!(counts.inspections, 2);
    assert_eq!(counts.events, 6);
    // The typed events round-trip whatever the order of arrival.
    for e in a.iter().chain(&b) {
        assert_eq!(&store.event(e.msg_id).await.unwrap().unwrap().event, e);
    }
    let ids: Vec<u64> = store
        .device_events(&site(), &device(), 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|s| s.event.seq)
        .collect();
    assert_eq!(ids, vec![1, 2, 3, 10, 11, 12]);
    for (events, started, completed) in [(&a, true, true), (&b, true, true)] {
        let id = events[0].inspection_id.unwrap();
        let record = store.inspection(id).await.unwrap().expect("inspection row");
        assert_eq!(record.id, id);
        assert_eq!(
            (record.site.clone(), record.device.clone()),
            (site(), device())
        );
        assert_eq!(record.kind, Some(InspectionKind::Return));
        assert_eq!(record.started_at.is_some(), started);
        assert_eq!(record.started_at, Some(events[0].at));
        assert_eq!(record.completed_at.is_some(), completed);
        assert_eq!(record.completed_at, Some(events[2].at));
        assert_eq!(
            record.completion_reason,
            Some(CompletionReason::VehicleLeft)
        );
        assert_eq!(record.frames_expected, Some(1));
        assert_eq!(record.frames_received, 1, "{record:?}");
        assert!(record.is_complete());
    }
    // Only the completion so far: known, not complete.
    let c = inspection(20);
    store.record_events(&c[2..], t(4)).await.unwrap();
    let record = store
        .inspection(c[2].inspection_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((record.kind, record.started_at), (None, None));
    assert_eq!(
        (record.frames_expected, record.frames_received),
        (Some(1), 0)
    );
    assert!(!record.is_complete());
    assert!(store.inspection(Uuid::now_v7()).await.unwrap().is_none());
}

pub async fn command_results_need_no_inspection(store: Arc<dyn Store>) {
    let plain = command_result(1);
    let mut in_inspection = command_result(2);
    in_inspection.inspection_id = Some(Uuid::now_v7());
    let recorded = store
        .record_events(&[plain.clone(), in_inspection.clone()], t(0))
        .await
        .unwrap();
    assert_eq!(recorded, vec![Recorded::Inserted, Recorded::Inserted]);
    assert_eq!(
        store.event(plain.msg_id).await.unwrap().unwrap().event,
        plain
    );
    assert_eq!(
        store
            .event(in_inspection.msg_id)
            .await
            .unwrap()
            .unwrap()
            .event,
        in_inspection
    );
    let counts = store.counts().await.unwrap();
    assert_eq!(
        counts.inspections, 0,
        "a command result is no inspection step"
    );
    let record = store.device(&site(), &device()).await.unwrap().unwrap();
    assert_eq!(record.last_seq, Some(2));
}

pub async fn status_and_telemetry_newer_wins(store: Arc<dyn Store>) {
    assert!(store.device(&site(), &device()).await.unwrap().is_none());
    let mut online = examples::status();
    online.at = t(10);
    let mut late_will = examples::status();
    late_will.state = DeviceState::Offline;
    late_will.at = t(5);
    store.record_status(&online, t(11)).await.unwrap();
    store.record_status(&late_will, t(12)).await.unwrap();
    let record = store.device(&site(), &device()).await.unwrap().unwrap();
    assert_eq!(
        record.status.as_ref(),
        Some(&online),
        "an older status must not win"
    );
    assert_eq!(record.status_received_at, Some(t(11)));
    assert_eq!(record.telemetry, None);
    // The same `at` replaces (a will carries its connection's time).
    let mut will = examples::status();
    will.state = DeviceState::Offline;
    will.at = t(10);
    store.record_status(&will, t(13)).await.unwrap();
    let record = store.device(&site(), &device()).await.unwrap().unwrap();
    assert_eq!(record.status.as_ref(), Some(&will));

    let mut newer = examples::telemetry();
    newer.at = t(30);
    newer.uptime_seconds = 30;
    let mut older = examples::telemetry();
    older.at = t(20);
    older.uptime_seconds = 20;
    store.record_telemetry(&newer, t(31)).await.unwrap();
    store.record_telemetry(&older, t(32)).await.unwrap();
    let record = store.device(&site(), &device()).await.unwrap().unwrap();
    assert_eq!(record.telemetry.as_ref(), Some(&newer));
    assert_eq!(record.telemetry_received_at, Some(t(31)));
    assert_eq!(
        record.status.as_ref(),
        Some(&will),
        "telemetry keeps status"
    );
    assert_eq!(record.last_seq, None);
    assert_eq!(store.counts().await.unwrap().devices, 1);
}

pub async fn device_events_in_seq_order_with_paging(store: Arc<dyn Store>) {
    // Stored out of order, across two devices.
    let mut events: Vec<Event> = (1..=7).rev().map(command_result).collect();
    let mut other = command_result(4);
    other.device = DeviceId::new("bay-99").unwrap();
    events.push(other.clone());
    store.record_events(&events, t(0)).await.unwrap();
    let page = |after, limit| {
        let store = store.clone();
        async move {
            store
                .device_events(&site(), &device(), after, limit)
                .await
                .unwrap()
                .iter()
                .map(|s| s.event.seq)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(page(0, 3).await, vec![1, 2, 3]);
    assert_eq!(page(3, 3).await, vec![4, 5, 6]);
    assert_eq!(page(6, 3).await, vec![7]);
    assert_eq!(page(7, 3).await, Vec::<u64>::new());
    assert_eq!(page(u64::MAX, 3).await, Vec::<u64>::new());
    let others = store
        .device_events(&other.site, &other.device, 0, 10)
        .await
        .unwrap();
    assert_eq!(others.len(), 1);
    assert_eq!(others[0].event, other);
    let record = store.device(&site(), &device()).await.unwrap().unwrap();
    assert_eq!(record.last_seq, Some(7));
    assert_eq!(store.counts().await.unwrap().devices, 2);
}

pub async fn dead_letters_are_kept_and_truncated(store: Arc<dyn Store>) {
    let small = DeadLetter {
        topic: "inspect/v1/s1/d1/events".into(),
        payload: b"{not json".to_vec(),
        reason: "malformed".into(),
        detail: "expected value at line 1".into(),
        received_at: t(1),
    };
    let big = DeadLetter {
        topic: "elsewhere/entirely".into(),
        payload: vec![0xab; DEAD_LETTER_MAX_PAYLOAD + 1000],
        reason: "unknown_topic".into(),
        detail: "not a device topic".into(),
        received_at: t(2),
    };
    let id1 = store.dead_letter(&small).await.unwrap();
    let id2 = store.dead_letter(&big).await.unwrap();
    assert_ne!(id1, id2);
    let letters = store.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 2);
    // Newest first.
    assert_eq!(letters[0].id, id2);
    assert_eq!(letters[0].payload.len(), DEAD_LETTER_MAX_PAYLOAD);
    assert_eq!(
        letters[0].payload_len,
        (DEAD_LETTER_MAX_PAYLOAD + 1000) as u64
    );
    assert_eq!(letters[0].reason, "unknown_topic");
    assert_eq!(letters[0].topic, big.topic);
    assert_eq!(letters[1].payload, small.payload);
    assert_eq!(letters[1].payload_len, small.payload.len() as u64);
    assert_eq!(letters[1].detail, small.detail);
    assert_eq!(letters[1].received_at, t(1));
    assert_eq!(store.dead_letters(1).await.unwrap().len(), 1);
    assert_eq!(store.counts().await.unwrap().dead_letters, 2);
}

pub async fn counts_and_ping(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
    assert_eq!(store.counts().await.unwrap(), Default::default());
    store.record_events(&inspection(1), t(0)).await.unwrap();
    store
        .record_status(&examples::status(), t(0))
        .await
        .unwrap();
    let counts = store.counts().await.unwrap();
    assert_eq!(
        (
            counts.events,
            counts.inspections,
            counts.devices,
            counts.dead_letters
        ),
        (3, 1, 1, 0)
    );
    assert!(!store.backend().is_empty());
}

// ---- SQLite -------------------------------------------------------------

async fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig::sqlite(&dir.path().join("nested/folder/central.sqlite3"));
    let store = open_store(&config).await.expect("open sqlite store");
    assert_eq!(store.backend(), "sqlite");
    (store, dir)
}

macro_rules! conformance {
    ($factory:ident: $($check:ident),* $(,)?) => {
        mod $factory {
            $(
                #[tokio::test]
                async fn $check() {
                    let (store, _guard) = super::$factory().await;
                    super::$check(store).await;
                }
            )*
        }
    };
}

conformance!(sqlite:
    same_event_twice_is_stored_once,
    same_event_twice_in_one_batch,
    an_empty_batch_records_nothing,
    inspection_lifecycle_in_order_and_out_of_order,
    command_results_need_no_inspection,
    status_and_telemetry_newer_wins,
    device_events_in_seq_order_with_paging,
    dead_letters_are_kept_and_truncated,
    counts_and_ping,
);

// ---- SQLite failures ----------------------------------------------------

#[tokio::test]
async fn sqlite_full_database_refuses_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        max_size_bytes: Some(central::store::MIN_MAX_SIZE_BYTES),
        ..StoreConfig::sqlite(&dir.path().join("small.sqlite3"))
    };
    let store = SqliteStore::open(&config).await.expect("open");
    // Fill it with batches until it is full.
    let mut stored = 0u64;
    let mut seq = 1;
    let full = loop {
        let batch: Vec<Event> = (0..20)
            .flat_map(|_| {
                let i = inspection(seq);
                seq += 3;
                i
            })
            .collect();
        match store.record_events(&batch, t(0)).await {
            Ok(r) => stored += r.len() as u64,
            Err(e) => break e,
        }
        assert!(stored < 100_000, "a 256 KiB database never filled up");
    };
    assert!(matches!(full, StoreError::Full(_)), "{full:?}");
    assert_eq!(full.code(), "full");
    assert!(full.is_transient());
    let counts = store.counts().await.unwrap();
    assert_eq!(
        counts.events, stored,
        "the refused batch must leave no event behind"
    );
    assert_eq!(counts.inspections * 3, stored);
    // Reads and duplicates still work on a full database.
    store.ping().await.unwrap();
}

#[tokio::test]
async fn sqlite_unopenable_path_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the folder should be.
    let blocker = dir.path().join("not-a-folder");
    std::fs::write(&blocker, b"x").unwrap();
    let config = StoreConfig::sqlite(&blocker.join("central.sqlite3"));
    let err = match open_store(&config).await {
        Ok(_) => panic!("opened a database below a file"),
        Err(e) => e,
    };
    let message = err.to_string();
    assert!(message.contains("not-a-folder"), "{message}");
    // A folder where the file should be.
    let config = StoreConfig::sqlite(dir.path());
    let err = match open_store(&config).await {
        Ok(_) => panic!("opened a folder as a database"),
        Err(e) => e,
    };
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn unknown_database_schemes_are_refused() {
    for (url, needle) in [
        ("postgres://db/central", "Central processing"),
        ("mysql://db/central", "unknown database scheme"),
    ] {
        let config = StoreConfig {
            url: url.into(),
            ..StoreConfig::default()
        };
        let problems = config.problems("store", false);
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "{url}: {problems:?}"
        );
        let err = match open_store(&config).await {
            Ok(_) => panic!("{url} opened"),
            Err(e) => e,
        };
        assert_eq!(err.code(), "config", "{err}");
    }
    assert!(StoreConfig::default().problems("store", true).is_empty());
    let bad = StoreConfig {
        max_connections: 0,
        max_size_bytes: Some(10),
        ..StoreConfig::default()
    };
    assert_eq!(bad.problems("store", false).len(), 2);
}

#[tokio::test]
async fn sqlite_reopens_an_existing_database_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::sqlite(&dir.path().join("c.sqlite3"));
    let events = inspection(1);
    {
        let store = SqliteStore::open(&config).await.unwrap();
        store.record_events(&events, t(0)).await.unwrap();
        store.close().await;
    }
    let store = SqliteStore::open(&config).await.unwrap();
    assert_eq!(store.counts().await.unwrap().events, 3);
    assert_eq!(
        store.record_events(&events, t(1)).await.unwrap(),
        vec![Recorded::Duplicate; 3]
    );
}
