//! The `Store` contract, run against every backend: each check is a plain
//! async function taking an `Arc<dyn Store>`; one list of them at the bottom
//! (`on_every_backend!`) instantiates one `#[tokio::test]` per check and backend
//! (SQLite in a temp folder; a fresh database on a real PostgreSQL started
//! by `support::postgres`). Concurrency checks take several stores on the
//! same database (separate pools, so separate connections). Failure tests
//! that need a backend's own knobs (a full database, an unopenable path, a
//! server that goes away) follow.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use central::report::{Attempt, Language, Report, ReportSummary, SummaryDamage};
use central::store::{
    AuditEntry, Charge, CommandRecord, Comparison, DEAD_LETTER_MAX_PAYLOAD, DamageModel, DataClass,
    DeadLetter, Erasure, ErasurePlan, ErasureSelector, Finding, FindingDecision, FindingReview,
    FindingSource, FindingStatus, FrameRecord, FrameState, ImageRef, InspectionListItem,
    InspectionQuery, InspectionResult, InspectionReview, InspectionStatus, JobKind, JobState,
    PgStore, PlateBoxSource, PlateOutcome, PlateReadRecord, Recorded, ReviewState, SortOrder,
    SqliteStore, Store, StoreConfig, StoreError, Summary, VehiclePlate, open_store,
};
use chrono::{DateTime, Duration, TimeZone, Utc};
use inspection_core::geometry::BBox;
use inspection_core::ids::{CameraId, DeviceId, SiteId};
use inspection_core::wire::{
    CommandOutcome, CompletionReason, DeviceState, Event, EventBody, InspectionKind, V1, examples,
};
use support::events::inspection;
use support::postgres::PgServer;
use support::staff::seed_pair;
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

// ---- Central processing: status, results, vehicles, audit --------------

const LEASE: std::time::Duration = std::time::Duration::from_secs(30);

/// The example inspection of `kind`, started at `started` (later events a
/// second apart), seqs from `first_seq`.
fn inspection_of(kind: InspectionKind, first_seq: u64, started: DateTime<Utc>) -> Vec<Event> {
    let mut events = inspection(first_seq);
    if let EventBody::InspectionStarted { kind: k, .. } = &mut events[0].event {
        *k = kind;
    }
    for (i, e) in events.iter_mut().enumerate() {
        e.at = started + Duration::seconds(i as i64);
    }
    events
}

/// Records a whole inspection (so it is queued with a job); its id.
async fn complete(
    store: &Arc<dyn Store>,
    kind: InspectionKind,
    first_seq: u64,
    started: DateTime<Utc>,
    received: DateTime<Utc>,
) -> Uuid {
    let events = inspection_of(kind, first_seq, started);
    store.record_events(&events, received).await.unwrap();
    events[0].inspection_id.unwrap()
}

fn cam(name: &str) -> CameraId {
    CameraId::new(name).unwrap()
}

/// A result exercising every field: every frame state, boxes with and
/// without the vehicle box, floats that do not round nicely.
fn rich_result(id: Uuid, worker: &str, at: DateTime<Utc>, plate: Option<&str>) -> InspectionResult {
    let sha = |c: char| c.to_string().repeat(64);
    let frames = vec![
        FrameRecord {
            camera: cam("cam-front"),
            position: "front".into(),
            sha256: sha('a'),
            rank: 1,
            state: FrameState::Ok,
            width: Some(1920),
            height: Some(1080),
            sharpness: Some(412.5),
            brightness: Some(1.0 / 3.0),
            vehicle_box: Some(BBox {
                x1: 10.1,
                y1: 20.2,
                x2: 1900.7,
                y2: 1000.3,
            }),
        },
        FrameRecord {
            camera: cam("cam-left"),
            position: "left".into(),
            sha256: sha('b'),
            rank: 2,
            state: FrameState::Rejected {
                reasons: vec!["blurred".into(), "dark".into()],
            },
            width: Some(640),
            height: Some(480),
            sharpness: Some(0.1),
            brightness: Some(12.0),
            vehicle_box: None,
        },
        FrameRecord {
            camera: cam("cam-rear"),
            position: "rear".into(),
            sha256: sha('c'),
            rank: 1,
            state: FrameState::Corrupt {
                reason: "truncated JPEG".into(),
            },
            width: None,
            height: None,
            sharpness: None,
            brightness: None,
            vehicle_box: None,
        },
        FrameRecord {
            camera: cam("cam-right"),
            position: "right".into(),
            sha256: sha('d'),
            rank: 1,
            state: FrameState::Missing,
            width: None,
            height: None,
            sharpness: None,
            brightness: None,
            vehicle_box: None,
        },
    ];
    let findings = vec![
        Finding {
            id: Uuid::now_v7(),
            camera: cam("cam-front"),
            position: "front".into(),
            sha256: sha('a'),
            class: "scratch".into(),
            confidence: 0.876_543_2,
            source: FindingSource::Model,
            status: FindingStatus::New,
            bbox: BBox {
                x1: 100.25,
                y1: 200.5,
                x2: 300.75,
                y2: 400.125,
            },
            vehicle_bbox: Some(BBox {
                x1: 0.1,
                y1: 0.2,
                x2: 0.3,
                y2: 0.4,
            }),
            matched_finding: None,
        },
        Finding {
            id: Uuid::now_v7(),
            camera: cam("cam-front"),
            position: "front".into(),
            sha256: sha('a'),
            class: "dent".into(),
            confidence: 0.5,
            source: FindingSource::Model,
            status: FindingStatus::PreExisting,
            bbox: BBox {
                x1: 1.0,
                y1: 2.0,
                x2: 3.0,
                y2: 4.0,
            },
            vehicle_bbox: Some(BBox {
                x1: 0.01,
                y1: 0.02,
                x2: 0.03,
                y2: 0.04,
            }),
            matched_finding: Some(Uuid::now_v7()),
        },
        Finding {
            id: Uuid::now_v7(),
            camera: cam("cam-left"),
            position: "left".into(),
            sha256: sha('b'),
            class: "change".into(),
            confidence: 0.333_333_34,
            source: FindingSource::Change,
            status: FindingStatus::PossibleNewDamage,
            bbox: BBox {
                x1: 5.5,
                y1: 6.5,
                x2: 7.5,
                y2: 8.5,
            },
            vehicle_bbox: None,
            matched_finding: None,
        },
    ];
    let plate_reads = vec![
        PlateReadRecord {
            camera: cam("cam-front"),
            sha256: sha('a'),
            outcome: PlateOutcome::Read,
            bbox: Some(BBox {
                x1: 812.0,
                y1: 640.0,
                x2: 1010.0,
                y2: 690.0,
            }),
            box_source: Some(PlateBoxSource::Detector),
            raw_text: Some("AB 12 CDE".into()),
            plate: plate.map(str::to_owned),
            country: plate.map(|_| "GB".to_owned()),
            confidence: 0.987_654_3,
        },
        PlateReadRecord {
            camera: cam("cam-left"),
            sha256: sha('b'),
            outcome: PlateOutcome::Unreadable,
            bbox: Some(BBox {
                x1: 1.5,
                y1: 2.5,
                x2: 31.5,
                y2: 16.5,
            }),
            box_source: Some(PlateBoxSource::TextDetection),
            raw_text: Some("29".into()),
            plate: None,
            country: None,
            confidence: 0.67,
        },
        PlateReadRecord {
            camera: cam("cam-rear"),
            sha256: sha('c'),
            outcome: PlateOutcome::NotFound,
            bbox: None,
            box_source: None,
            raw_text: None,
            plate: None,
            country: None,
            confidence: 0.0,
        },
    ];
    let mut by_class = BTreeMap::new();
    by_class.insert(
        "scratch".to_owned(),
        BTreeMap::from([("new".to_owned(), 1)]),
    );
    by_class.insert(
        "dent".to_owned(),
        BTreeMap::from([("pre_existing".to_owned(), 1)]),
    );
    InspectionResult {
        inspection_id: id,
        processed_at: at,
        worker: worker.into(),
        damage_model: DamageModel::Used {
            model: "cardd.onnx@0123456789ab".into(),
            classes: vec!["dent".into(), "scratch".into()],
        },
        plate_models: vec!["platedet.onnx@3f2a9c41d0be".into(), "rec.onnx@aa".into()],
        frames,
        findings,
        plate_reads,
        plate: plate.map(|p| VehiclePlate {
            plate: p.into(),
            display: format!("{} {}", &p[..2], &p[2..]),
            country: "GB".into(),
            confidence: 0.912_345_6,
            votes: 2,
            readable_frames: 3,
        }),
        comparison: Comparison::Compared {
            pickup_inspection_id: Uuid::now_v7(),
            positions: vec!["front".into(), "left".into()],
        },
        summary: Summary {
            findings: by_class,
            new: 1,
            pre_existing: 1,
            possible_new_damage: 1,
            frames_ok: 1,
            frames_skipped: 3,
        },
    }
}

/// A small result for a pickup or return with this plate.
fn plain_result(id: Uuid, at: DateTime<Utc>, plate: &str) -> InspectionResult {
    InspectionResult {
        inspection_id: id,
        processed_at: at,
        worker: "w1".into(),
        damage_model: DamageModel::NotConfigured,
        plate_models: vec![],
        frames: vec![],
        findings: vec![],
        plate_reads: vec![],
        plate: Some(VehiclePlate {
            plate: plate.into(),
            display: plate.into(),
            country: "DE".into(),
            confidence: 0.9,
            votes: 1,
            readable_frames: 1,
        }),
        comparison: Comparison::NotApplicable,
        summary: Summary::default(),
    }
}

/// `close_incomplete` at `now` closes nothing.
async fn assert_closes_nothing(
    store: &Arc<dyn Store>,
    grace: std::time::Duration,
    now: DateTime<Utc>,
) {
    let closed = store.close_incomplete(grace, now, 100).await.unwrap();
    assert!(closed.is_empty(), "closed at {now}: {closed:?}");
}

/// An inspection its board can no longer complete is queued with what
/// arrived, once the board's own telemetry, taken `grace` after the start
/// (board clock), shows an empty outbox; never before, never twice, and its
/// detail survives processing.
pub async fn incomplete_inspections_close_once_the_board_has_nothing_more(store: Arc<dyn Store>) {
    let grace = std::time::Duration::from_secs(1800);
    // A: started and one frame; the agent stopped before the end.
    let a = inspection_of(InspectionKind::Return, 1, t(0));
    let a_id = a[0].inspection_id.unwrap();
    store.record_events(&a[..2], t(1)).await.unwrap();
    // B: ended announcing two frames; one arrived (the other was dropped).
    let mut b = inspection_of(InspectionKind::Pickup, 4, t(10));
    let b_id = b[0].inspection_id.unwrap();
    if let EventBody::InspectionCompleted { frames, .. } = &mut b[2].event {
        *frames = 2;
    }
    store.record_events(&b, t(12)).await.unwrap();
    // C: started later, so the telemetry below is too early to judge it.
    let c = inspection_of(InspectionKind::Return, 7, t(1000));
    let c_id = c[0].inspection_id.unwrap();
    store.record_events(&c[..1], t(1001)).await.unwrap();
    let receiving = |id| {
        let store = store.clone();
        async move { store.inspection(id).await.unwrap().unwrap().status }
    };

    // No telemetry yet: nothing is closed.
    assert_closes_nothing(&store, grace, t(5000)).await;
    // The outbox is empty, but the telemetry was taken within the grace of
    // A's and B's starts (t(0) and t(10), plus 1800 s).
    let mut telemetry = examples::telemetry();
    telemetry.at = t(1700);
    telemetry.outbox.entries = 0;
    store.record_telemetry(&telemetry, t(1701)).await.unwrap();
    assert_closes_nothing(&store, grace, t(5000)).await;
    // Late enough for A and B, with entries still in the outbox.
    telemetry.at = t(1900);
    telemetry.outbox.entries = 3;
    store.record_telemetry(&telemetry, t(1901)).await.unwrap();
    assert_closes_nothing(&store, grace, t(5000)).await;
    let mut newest = telemetry.clone();
    newest.at = t(1950);
    newest.outbox.entries = 0;
    store.record_telemetry(&newest, t(1951)).await.unwrap();
    // Empty outbox, taken late enough for A and B (not C, started at
    // t(1000)); but central first saw them too recently (`now` - grace is
    // before their first sight).
    assert_closes_nothing(&store, grace, t(1000)).await;
    for id in [a_id, b_id, c_id] {
        assert_eq!(receiving(id).await, InspectionStatus::Receiving);
    }

    let closed = store.close_incomplete(grace, t(5000), 100).await.unwrap();
    let mut ids: Vec<Uuid> = closed.iter().map(|c| c.id).collect();
    ids.sort();
    let mut want = vec![a_id, b_id];
    want.sort();
    assert_eq!(ids, want, "{closed:#?}");
    let a_closed = closed.iter().find(|c| c.id == a_id).unwrap();
    assert_eq!(
        (a_closed.frames_received, a_closed.frames_expected),
        (1, None)
    );
    let b_closed = closed.iter().find(|c| c.id == b_id).unwrap();
    assert_eq!(
        (b_closed.frames_received, b_closed.frames_expected),
        (1, Some(2))
    );
    for c in &closed {
        let record = store.inspection(c.id).await.unwrap().unwrap();
        assert_eq!(record.status, InspectionStatus::Queued);
        assert_eq!(record.status_detail.as_deref(), Some(c.detail.as_str()));
        assert_eq!(record.incomplete.as_deref(), Some(c.detail.as_str()));
        let jobs = store.inspection_jobs(c.id).await.unwrap();
        assert_eq!(jobs.len(), 1, "{jobs:?}");
        assert_eq!(
            (jobs[0].kind, jobs[0].state),
            (JobKind::ProcessInspection, JobState::Queued)
        );
    }
    assert!(
        a_closed.detail.contains("never ended"),
        "{}",
        a_closed.detail
    );
    assert!(b_closed.detail.contains("1 of 2"), "{}", b_closed.detail);
    assert_eq!(receiving(c_id).await, InspectionStatus::Receiving);
    // Never twice.
    assert_closes_nothing(&store, grace, t(6000)).await;
    // A straggler for A is stored but queues nothing more.
    store.record_events(&a[2..], t(6001)).await.unwrap();
    assert_eq!(store.inspection_jobs(a_id).await.unwrap().len(), 1);
    // Processing keeps the incompleteness (staff must see that views may be
    // missing) through every status change; a whole inspection has none.
    store
        .set_inspection_status(b_id, InspectionStatus::Processing, None, t(6050))
        .await
        .unwrap();
    store
        .record_result(&plain_result(b_id, t(6100), "MAB1234"))
        .await
        .unwrap();
    let record = store.inspection(b_id).await.unwrap().unwrap();
    assert_eq!(record.status, InspectionStatus::Processed);
    assert_eq!(record.incomplete.as_deref(), Some(b_closed.detail.as_str()));
    let d = complete(&store, InspectionKind::Pickup, 20, t(7000), t(7001)).await;
    assert_eq!(store.inspection(d).await.unwrap().unwrap().incomplete, None);
    // At most `limit` per call.
    let e = inspection_of(InspectionKind::Return, 30, t(7100));
    let f = inspection_of(InspectionKind::Return, 33, t(7101));
    store.record_events(&e[..1], t(7100)).await.unwrap();
    store.record_events(&f[..1], t(7101)).await.unwrap();
    newest.at = t(9000);
    store.record_telemetry(&newest, t(9001)).await.unwrap();
    // C, E and F can all be closed now, oldest (first seen) first.
    for want in [
        c_id,
        e[0].inspection_id.unwrap(),
        f[0].inspection_id.unwrap(),
    ] {
        let one = store.close_incomplete(grace, t(9100), 1).await.unwrap();
        assert_eq!(one.iter().map(|c| c.id).collect::<Vec<_>>(), [want]);
    }
    assert!(
        store
            .close_incomplete(grace, t(9100), 1)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn inspection_status_lifecycle(store: Arc<dyn Store>) {
    // Started and the frame, not completed: receiving, no job.
    let events = inspection(1);
    let id = events[0].inspection_id.unwrap();
    store.record_events(&events[..2], t(1)).await.unwrap();
    let record = store.inspection(id).await.unwrap().unwrap();
    assert_eq!(record.status, InspectionStatus::Receiving);
    assert_eq!((record.status_detail, record.plate), (None, None));
    assert!(store.inspection_jobs(id).await.unwrap().is_empty());
    // The completion makes it complete: queued with one job, in the same call.
    store.record_events(&events[2..], t(2)).await.unwrap();
    let record = store.inspection(id).await.unwrap().unwrap();
    assert_eq!(record.status, InspectionStatus::Queued);
    let jobs = store.inspection_jobs(id).await.unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].kind, JobKind::ProcessInspection);
    assert_eq!(jobs[0].state, JobState::Queued);
    assert_eq!((jobs[0].enqueued_at, jobs[0].run_at), (t(2), t(2)));
    assert_eq!((jobs[0].attempts, jobs[0].max_attempts), (0, 5));
    // A redelivery changes nothing.
    store.record_events(&events, t(3)).await.unwrap();
    assert_eq!(store.inspection_jobs(id).await.unwrap().len(), 1);
    // The events in seq order.
    let stored: Vec<Event> = store
        .inspection_events(id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.event)
        .collect();
    assert_eq!(stored, events);
    assert!(
        store
            .inspection_events(Uuid::now_v7())
            .await
            .unwrap()
            .is_empty()
    );
    // Explicit changes, with a detail for people.
    assert!(
        store
            .set_inspection_status(
                id,
                InspectionStatus::ImagesMissing,
                Some("cam-front: 9f86"),
                t(4)
            )
            .await
            .unwrap()
    );
    let record = store.inspection(id).await.unwrap().unwrap();
    assert_eq!(record.status, InspectionStatus::ImagesMissing);
    assert_eq!(record.status_detail.as_deref(), Some("cam-front: 9f86"));
    for status in InspectionStatus::ALL {
        assert!(
            store
                .set_inspection_status(id, status, None, t(5))
                .await
                .unwrap()
        );
        let record = store.inspection(id).await.unwrap().unwrap();
        assert_eq!((record.status, record.status_detail), (status, None));
    }
    assert!(
        !store
            .set_inspection_status(Uuid::now_v7(), InspectionStatus::Failed, None, t(6))
            .await
            .unwrap()
    );
}

pub async fn result_round_trip_and_replacement(store: Arc<dyn Store>) {
    let id = complete(&store, InspectionKind::Return, 1, t(0), t(1)).await;
    assert_eq!(store.inspection_result(id).await.unwrap(), None);
    let first = rich_result(id, "worker-a", t(10), Some("AB12CDE"));
    store.record_result(&first).await.unwrap();
    assert_eq!(
        store.inspection_result(id).await.unwrap().as_ref(),
        Some(&first)
    );
    let record = store.inspection(id).await.unwrap().unwrap();
    assert_eq!(record.status, InspectionStatus::Processed);
    assert_eq!(record.plate.as_deref(), Some("AB12CDE"));
    // Processing again replaces it whole: fewer findings, no plate.
    let mut second = rich_result(id, "worker-b", t(20), None);
    second.findings.truncate(1);
    second.frames.truncate(2);
    second.plate_reads.remove(0);
    second.damage_model = DamageModel::NotConfigured;
    second.comparison = Comparison::NoPickup;
    store.record_result(&second).await.unwrap();
    assert_eq!(
        store.inspection_result(id).await.unwrap().as_ref(),
        Some(&second)
    );
    let record = store.inspection(id).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.plate),
        (InspectionStatus::Processed, None)
    );
    // The same finding ids again (a retried write) are no conflict.
    store.record_result(&second).await.unwrap();
    assert_eq!(
        store.inspection_result(id).await.unwrap().as_ref(),
        Some(&second)
    );
    // Each result is audited by its worker.
    let target = format!("inspection:{id}");
    let log = store.audit_log(Some(&target), 10).await.unwrap();
    assert_eq!(log.len(), 3);
    assert!(log.iter().all(|a| a.entry.action == "inspection.processed"));
    assert_eq!(log[2].entry.actor, "worker:worker-a");
    assert_eq!(log[1].entry.actor, "worker:worker-b");
    assert_eq!(log[2].entry.at, t(10));
    assert_eq!(log[2].entry.before.as_ref().unwrap()["status"], "queued");
    assert_eq!(log[1].entry.before.as_ref().unwrap()["plate"], "AB12CDE");
    assert_eq!(log[2].entry.after.as_ref().unwrap()["status"], "processed");
    // A result for an inspection the store never heard of is refused whole.
    let stranger = rich_result(Uuid::now_v7(), "worker-a", t(30), Some("XY99ZZZ"));
    assert!(store.record_result(&stranger).await.is_err());
    assert_eq!(
        store
            .inspection_result(stranger.inspection_id)
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.audit_log(None, 10).await.unwrap().len(), 3);
}

fn report(inspection_id: Uuid, writer: &str, at: DateTime<Utc>) -> Report {
    Report {
        id: Uuid::now_v7(),
        inspection_id,
        writer: writer.into(),
        model: (writer != "template").then(|| "llama-3.1-8b-instruct".into()),
        language: Language::De,
        summary: ReportSummary {
            plate: Some("AB12CDE".into()),
            damages: vec![SummaryDamage {
                finding: "F1".into(),
                class: "dent".into(),
                position: "front".into(),
                status: "new".into(),
            }],
        },
        narrative: "Rückgabe von AB 12 CDE: eine neue Delle an der Front (F1).".into(),
        attempts: vec![
            Attempt {
                writer: "llm".into(),
                outcome: "error".into(),
                reason: Some("timeout".into()),
                detail: Some("no answer in 30 s".into()),
                seconds: 30.0,
            },
            Attempt {
                writer: writer.into(),
                outcome: "accepted".into(),
                reason: None,
                detail: None,
                seconds: 0.25,
            },
        ],
        created_at: at,
    }
}

pub async fn reports_round_trip_newest_first(store: Arc<dyn Store>) {
    let id = complete(&store, InspectionKind::Return, 1, t(0), t(1)).await;
    assert_eq!(store.reports(id).await.unwrap(), vec![]);
    let first = report(id, "template", t(10));
    let second = report(id, "fallback", t(20));
    store.record_report(&first).await.unwrap();
    store.record_report(&second).await.unwrap();
    assert_eq!(
        store.reports(id).await.unwrap(),
        vec![second, first.clone()]
    );
    // Another inspection's reports are its own.
    let other = complete(&store, InspectionKind::Return, 20, t(0), t(1)).await;
    assert_eq!(store.reports(other).await.unwrap(), vec![]);
    // The same report twice is a conflict, not a copy.
    assert!(store.record_report(&first).await.is_err());
    // A report for an inspection the store never heard of is refused.
    let stranger = report(Uuid::now_v7(), "template", t(30));
    assert!(store.record_report(&stranger).await.is_err());
    assert_eq!(store.reports(stranger.inspection_id).await.unwrap(), vec![]);
}

/// Two boards whose clocks disagree: each inspection is dated on central's
/// clock with the offset its board last reported, and a return is compared
/// with the pickup that really came last.
pub async fn latest_pickup_is_judged_on_centrals_clock(store: Arc<dyn Store>) {
    let plate = "SK3W1";
    let site = site();
    let board = |device: &str, offset_ms: Option<i64>| {
        let mut telemetry = examples::telemetry();
        telemetry.site = site.clone();
        telemetry.device = DeviceId::new(device).unwrap();
        telemetry.central_clock_offset_ms = offset_ms;
        telemetry
    };
    // bay-slow's clock is 2 h behind central's (it says so); bay-ok's is
    // right; bay-wild reports an offset no clock could have.
    store
        .record_telemetry(&board("bay-slow", Some(7_200_000)), t(0))
        .await
        .unwrap();
    store
        .record_telemetry(&board("bay-ok", Some(0)), t(0))
        .await
        .unwrap();
    store
        .record_telemetry(&board("bay-wild", Some(5 * 31_536_000_000)), t(0))
        .await
        .unwrap();
    let at = |device| (site.as_str(), device);
    // Real (central) times: pickup A at 1 h, pickup B at 2 h (bay-slow
    // writes 0 h), return R at 3 h.
    let a = complete_at(&store, InspectionKind::Pickup, 1, t(3600), at("bay-ok")).await;
    let b = complete_at(&store, InspectionKind::Pickup, 1, t(0), at("bay-slow")).await;
    let r = complete_at(&store, InspectionKind::Return, 10, t(10_800), at("bay-ok")).await;
    // A return by the slow board at 2.5 h (it writes 0.5 h).
    let r_slow = complete_at(&store, InspectionKind::Return, 10, t(1800), at("bay-slow")).await;
    let wild = complete_at(&store, InspectionKind::Pickup, 1, t(50), at("bay-wild")).await;
    for (i, id) in [a, b, wild].into_iter().enumerate() {
        store
            .record_result(&plain_result(id, t(20_000 + i as i64), plate))
            .await
            .unwrap();
    }
    let started = |id| {
        let store = store.clone();
        async move {
            let record = store.inspection(id).await.unwrap().unwrap();
            (
                record.started_at.unwrap(),
                record.started_at_central.unwrap(),
            )
        }
    };
    assert_eq!(started(a).await, (t(3600), t(3600)));
    assert_eq!(started(b).await, (t(0), t(7200)));
    assert_eq!(started(r_slow).await, (t(1800), t(9000)));
    assert_eq!(
        started(wild).await,
        (t(50), t(50)),
        "an absurd offset is ignored"
    );
    let before_r = started(r).await.1;
    assert_eq!(store.latest_pickup(plate, before_r).await.unwrap(), Some(b));
    let before_r_slow = started(r_slow).await.1;
    assert_eq!(
        store.latest_pickup(plate, before_r_slow).await.unwrap(),
        Some(b)
    );
    // Before B's real start, A is the latest.
    assert_eq!(store.latest_pickup(plate, t(7000)).await.unwrap(), Some(a));
}

pub async fn vehicles_and_latest_pickup(store: Arc<dyn Store>) {
    let plate = "B4ND1T";
    let pickup1 = complete(&store, InspectionKind::Pickup, 1, t(100), t(103)).await;
    let pickup2 = complete(&store, InspectionKind::Pickup, 10, t(200), t(203)).await;
    let unprocessed = complete(&store, InspectionKind::Pickup, 20, t(250), t(253)).await;
    let ret = complete(&store, InspectionKind::Return, 30, t(300), t(303)).await;
    let other = complete(&store, InspectionKind::Pickup, 40, t(50), t(53)).await;
    // Recorded out of time order: the order is the inspections' start.
    store
        .record_result(&plain_result(pickup2, t(400), plate))
        .await
        .unwrap();
    store
        .record_result(&plain_result(pickup1, t(401), plate))
        .await
        .unwrap();
    store
        .record_result(&plain_result(ret, t(402), plate))
        .await
        .unwrap();
    store
        .record_result(&plain_result(other, t(403), "OTHER1"))
        .await
        .unwrap();
    assert_eq!(
        store.latest_pickup(plate, t(300)).await.unwrap(),
        Some(pickup2)
    );
    assert_eq!(
        store.latest_pickup(plate, t(1000)).await.unwrap(),
        Some(pickup2)
    );
    assert_eq!(
        store.latest_pickup(plate, t(200)).await.unwrap(),
        Some(pickup1)
    );
    assert_eq!(
        store.latest_pickup(plate, t(150)).await.unwrap(),
        Some(pickup1)
    );
    assert_eq!(store.latest_pickup(plate, t(100)).await.unwrap(), None);
    assert_eq!(store.latest_pickup("NOSUCH", t(1000)).await.unwrap(), None);
    assert_eq!(
        store.latest_pickup("OTHER1", t(1000)).await.unwrap(),
        Some(other)
    );
    assert_eq!(
        store.inspection(unprocessed).await.unwrap().unwrap().plate,
        None
    );
    // A pickup being processed again is not a baseline until processed.
    store
        .set_inspection_status(pickup2, InspectionStatus::Processing, None, t(500))
        .await
        .unwrap();
    assert_eq!(
        store.latest_pickup(plate, t(1000)).await.unwrap(),
        Some(pickup1)
    );
    for id in [pickup1, pickup2, ret] {
        let record = store.inspection(id).await.unwrap().unwrap();
        assert_eq!(record.plate.as_deref(), Some(plate));
    }
}

pub async fn audit_log_by_target_newest_first(store: Arc<dyn Store>) {
    let entry = |n: i64, target: &str| AuditEntry {
        at: t(n),
        actor: "user:alice".into(),
        action: "finding.confirm".into(),
        target: target.into(),
        before: Some(serde_json::json!({ "status": "new", "n": n })),
        after: if n % 2 == 0 {
            Some(serde_json::json!({ "status": "confirmed", "note": "ünïcode ✓" }))
        } else {
            None
        },
    };
    let mut ids = Vec::new();
    for n in 0..5 {
        let target = if n % 2 == 0 { "finding:a" } else { "finding:b" };
        ids.push(store.audit(&entry(n, target)).await.unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let all = store.audit_log(None, 10).await.unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(all[0].id, ids[4]);
    assert_eq!(all[0].entry, entry(4, "finding:a"));
    assert_eq!(all[4].entry, entry(0, "finding:a"));
    let a = store.audit_log(Some("finding:a"), 10).await.unwrap();
    assert_eq!(
        a.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![ids[4], ids[2], ids[0]]
    );
    assert_eq!(a[1].entry, entry(2, "finding:a"));
    assert_eq!(
        store.audit_log(Some("finding:b"), 1).await.unwrap().len(),
        1
    );
    assert!(
        store
            .audit_log(Some("nothing"), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

// ---- Central processing: the job queue ------------------------------------

pub async fn enqueue_is_idempotent(store: Arc<dyn Store>) {
    let id = complete(&store, InspectionKind::Return, 1, t(0), t(1)).await;
    // The completion enqueued it: a second one is a duplicate.
    assert_eq!(
        store
            .enqueue_job(JobKind::ProcessInspection, id, t(2))
            .await
            .unwrap(),
        Recorded::Duplicate
    );
    let job = store.claim_job("w1", LEASE, t(3)).await.unwrap().unwrap();
    assert_eq!(job.inspection_id, id);
    // Still one while it runs.
    assert_eq!(
        store
            .enqueue_job(JobKind::ProcessInspection, id, t(4))
            .await
            .unwrap(),
        Recorded::Duplicate
    );
    assert!(store.complete_job(job.id, "w1", t(5)).await.unwrap());
    // Done: processing again (e.g. an operator's request) is a new job.
    assert_eq!(
        store
            .enqueue_job(JobKind::ProcessInspection, id, t(6))
            .await
            .unwrap(),
        Recorded::Inserted
    );
    assert_eq!(
        store.inspection(id).await.unwrap().unwrap().status,
        InspectionStatus::Queued
    );
    let jobs = store.inspection_jobs(id).await.unwrap();
    assert_eq!(
        jobs.iter().map(|j| j.state).collect::<Vec<_>>(),
        vec![JobState::Done, JobState::Queued]
    );
    assert_eq!(jobs[0].finished_at, Some(t(5)));
    assert_eq!(jobs[0].attempts, 1);
    assert_eq!(jobs[1].enqueued_at, t(6));
}

pub async fn claims_oldest_due_first(store: Arc<dyn Store>) {
    assert_eq!(store.claim_job("w1", LEASE, t(0)).await.unwrap(), None);
    // Completed at t(3), t(1), t(2): claimed in that order of enqueueing.
    let c = complete(&store, InspectionKind::Return, 20, t(0), t(3)).await;
    let a = complete(&store, InspectionKind::Return, 1, t(0), t(1)).await;
    let b = complete(&store, InspectionKind::Return, 10, t(0), t(2)).await;
    // Nothing is due before it was enqueued.
    assert_eq!(store.claim_job("w1", LEASE, t(0)).await.unwrap(), None);
    let first = store.claim_job("w1", LEASE, t(10)).await.unwrap().unwrap();
    assert_eq!(first.inspection_id, a);
    assert_eq!((first.attempt, first.max_attempts), (1, 5));
    assert_eq!(first.enqueued_at, t(1));
    assert_eq!(first.lease_until, t(40));
    assert_eq!(first.kind, JobKind::ProcessInspection);
    let record = store.inspection(a).await.unwrap().unwrap();
    assert_eq!(record.status, InspectionStatus::Processing);
    let jobs = store.inspection_jobs(a).await.unwrap();
    assert_eq!(jobs[0].state, JobState::Running);
    assert_eq!(jobs[0].lease_owner.as_deref(), Some("w1"));
    assert_eq!(jobs[0].lease_until, Some(t(40)));
    let second = store.claim_job("w2", LEASE, t(10)).await.unwrap().unwrap();
    assert_eq!(second.inspection_id, b);
    let third = store.claim_job("w1", LEASE, t(11)).await.unwrap().unwrap();
    assert_eq!(third.inspection_id, c);
    assert_eq!(store.claim_job("w3", LEASE, t(12)).await.unwrap(), None);
    // A live lease can be extended by its holder only.
    assert!(
        store
            .heartbeat_job(first.id, "w1", LEASE, t(20))
            .await
            .unwrap()
    );
    assert_eq!(
        store.inspection_jobs(a).await.unwrap()[0].lease_until,
        Some(t(50))
    );
    assert!(
        !store
            .heartbeat_job(first.id, "w2", LEASE, t(20))
            .await
            .unwrap()
    );
    assert!(!store.complete_job(first.id, "w2", t(21)).await.unwrap());
    assert_eq!(
        store
            .fail_job(first.id, "w2", "x", t(30), t(21))
            .await
            .unwrap(),
        None
    );
    assert!(
        !store
            .defer_job(first.id, "w2", t(30), "x", t(21))
            .await
            .unwrap()
    );
    assert!(
        !store
            .heartbeat_job(Uuid::now_v7(), "w1", LEASE, t(20))
            .await
            .unwrap()
    );
    assert!(store.complete_job(first.id, "w1", t(22)).await.unwrap());
    // Done is final.
    assert!(!store.complete_job(first.id, "w1", t(23)).await.unwrap());
    assert!(
        !store
            .heartbeat_job(first.id, "w1", LEASE, t(23))
            .await
            .unwrap()
    );
}

/// Times from a real clock (nanoseconds) come back as stored (microseconds):
/// a claimed job equals its record.
pub async fn clock_times_are_kept_to_the_microsecond(store: Arc<dyn Store>) {
    let now = Utc::now();
    let id = complete(&store, InspectionKind::Return, 1, t(0), now).await;
    let job = store
        .claim_job("w", LEASE, now + Duration::nanoseconds(1_234_567))
        .await
        .unwrap()
        .unwrap();
    let record = store.inspection_jobs(id).await.unwrap().remove(0);
    assert_eq!(Some(job.lease_until), record.lease_until);
    assert_eq!(job.enqueued_at, record.enqueued_at);
    assert_eq!(job.lease_until.timestamp_subsec_nanos() % 1000, 0);
}

pub async fn expired_lease_is_claimed_again(store: Arc<dyn Store>) {
    let id = complete(&store, InspectionKind::Return, 1, t(0), t(1)).await;
    let a = store.claim_job("a", LEASE, t(10)).await.unwrap().unwrap();
    // Within the lease nobody else gets it.
    assert_eq!(store.claim_job("b", LEASE, t(39)).await.unwrap(), None);
    assert_eq!(store.claim_job("b", LEASE, t(40)).await.unwrap(), None);
    // "a" stopped heartbeating; after its lease "b" takes over.
    let b = store.claim_job("b", LEASE, t(41)).await.unwrap().unwrap();
    assert_eq!((b.id, b.attempt, b.lease_until), (a.id, 2, t(71)));
    // "a" wakes up: everything it tries is refused.
    assert!(!store.heartbeat_job(a.id, "a", LEASE, t(42)).await.unwrap());
    assert!(!store.complete_job(a.id, "a", t(42)).await.unwrap());
    assert_eq!(
        store
            .fail_job(a.id, "a", "late", t(50), t(42))
            .await
            .unwrap(),
        None
    );
    assert!(
        !store
            .defer_job(a.id, "a", t(50), "late", t(42))
            .await
            .unwrap()
    );
    assert!(store.complete_job(b.id, "b", t(43)).await.unwrap());
    let jobs = store.inspection_jobs(id).await.unwrap();
    assert_eq!((jobs[0].state, jobs[0].attempts), (JobState::Done, 2));
    assert_eq!(jobs[0].lease_owner.as_deref(), Some("b"));
}

pub async fn failures_retry_then_dead(store: Arc<dyn Store>) {
    let id = complete(&store, InspectionKind::Return, 1, t(0), t(1)).await;
    let mut now = t(10);
    for attempt in 1..=5u32 {
        let job = store.claim_job("w", LEASE, now).await.unwrap().unwrap();
        assert_eq!(job.attempt, attempt);
        let backoff = Duration::seconds(10 * i64::from(attempt));
        let error = format!("inference timed out (attempt {attempt})");
        let state = store
            .fail_job(
                job.id,
                "w",
                &error,
                now + backoff,
                now + Duration::seconds(1),
            )
            .await
            .unwrap();
        let record = store.inspection(id).await.unwrap().unwrap();
        if attempt < 5 {
            assert_eq!(state, Some(JobState::Queued));
            assert_eq!(record.status, InspectionStatus::Queued);
            let jobs = store.inspection_jobs(id).await.unwrap();
            assert_eq!(jobs[0].run_at, now + backoff);
            assert_eq!(jobs[0].last_error.as_deref(), Some(error.as_str()));
            assert_eq!(
                (jobs[0].lease_owner.clone(), jobs[0].lease_until),
                (None, None)
            );
            // Not before its backoff.
            assert_eq!(
                store
                    .claim_job("w", LEASE, now + backoff - Duration::seconds(1))
                    .await
                    .unwrap(),
                None
            );
            let stats = store.job_stats(now + Duration::seconds(2)).await.unwrap();
            assert_eq!((stats.ready, stats.scheduled), (0, 1));
            now += backoff;
        } else {
            assert_eq!(state, Some(JobState::Dead));
            assert_eq!(record.status, InspectionStatus::Failed);
            assert_eq!(record.status_detail.as_deref(), Some(error.as_str()));
            let jobs = store.inspection_jobs(id).await.unwrap();
            assert_eq!(jobs[0].state, JobState::Dead);
            assert_eq!(jobs[0].finished_at, Some(now + Duration::seconds(1)));
        }
    }
    assert_eq!(store.claim_job("w", LEASE, t(100_000)).await.unwrap(), None);
    let stats = store.job_stats(t(100_000)).await.unwrap();
    assert_eq!(
        (stats.ready, stats.scheduled, stats.running, stats.dead),
        (0, 0, 0, 1)
    );
    // Dead is no active job: the inspection can be queued again.
    assert_eq!(
        store
            .enqueue_job(JobKind::ProcessInspection, id, t(100_001))
            .await
            .unwrap(),
        Recorded::Inserted
    );
}

pub async fn lease_running_out_on_the_last_attempt_is_dead(store: Arc<dyn Store>) {
    let id = complete(&store, InspectionKind::Return, 1, t(0), t(1)).await;
    let mut now = t(10);
    for _ in 1..5 {
        let job = store.claim_job("w", LEASE, now).await.unwrap().unwrap();
        // Each of these workers dies: the lease runs out.
        now = job.lease_until + Duration::seconds(1);
    }
    let last = store.claim_job("w", LEASE, now).await.unwrap().unwrap();
    assert_eq!(last.attempt, 5);
    // It dies too: the job is dead, not claimable.
    assert_eq!(
        store
            .claim_job("w2", LEASE, last.lease_until + Duration::seconds(1))
            .await
            .unwrap(),
        None
    );
    let jobs = store.inspection_jobs(id).await.unwrap();
    assert_eq!((jobs[0].state, jobs[0].attempts), (JobState::Dead, 5));
    assert!(
        jobs[0].last_error.as_deref().unwrap().contains("lease"),
        "{jobs:?}"
    );
    let record = store.inspection(id).await.unwrap().unwrap();
    assert_eq!(record.status, InspectionStatus::Failed);
    assert!(record.status_detail.is_some());
    assert!(!store.complete_job(last.id, "w", now).await.unwrap());
}

pub async fn defer_does_not_use_an_attempt(store: Arc<dyn Store>) {
    let id = complete(&store, InspectionKind::Return, 1, t(0), t(1)).await;
    let job = store.claim_job("w", LEASE, t(10)).await.unwrap().unwrap();
    assert_eq!(job.attempt, 1);
    assert!(
        store
            .defer_job(job.id, "w", t(70), "waiting for cam-front 9f86d081", t(11))
            .await
            .unwrap()
    );
    let record = store.inspection(id).await.unwrap().unwrap();
    assert_eq!(record.status, InspectionStatus::WaitingForImages);
    assert_eq!(
        record.status_detail.as_deref(),
        Some("waiting for cam-front 9f86d081")
    );
    let jobs = store.inspection_jobs(id).await.unwrap();
    assert_eq!((jobs[0].state, jobs[0].attempts), (JobState::Queued, 0));
    assert_eq!(jobs[0].run_at, t(70));
    assert_eq!(store.claim_job("w", LEASE, t(69)).await.unwrap(), None);
    let again = store.claim_job("w", LEASE, t(70)).await.unwrap().unwrap();
    assert_eq!((again.id, again.attempt), (job.id, 1));
    // Deferring many times never kills the job.
    let mut now = t(70);
    for _ in 0..10 {
        let job = store
            .claim_job("w", LEASE, now)
            .await
            .unwrap()
            .unwrap_or(again.clone());
        assert!(
            store
                .defer_job(job.id, "w", now + Duration::seconds(5), "wait", now)
                .await
                .unwrap()
        );
        now += Duration::seconds(5);
    }
    let job = store.claim_job("w", LEASE, now).await.unwrap().unwrap();
    assert_eq!(job.attempt, 1);
}

pub async fn job_stats_at_a_glance(store: Arc<dyn Store>) {
    assert_eq!(store.job_stats(t(0)).await.unwrap(), Default::default());
    // Five jobs, enqueued at t(1)..t(5).
    let ids: Vec<Uuid> = {
        let mut ids = Vec::new();
        for i in 0..5u64 {
            ids.push(
                complete(
                    &store,
                    InspectionKind::Return,
                    1 + 10 * i,
                    t(0),
                    t(1 + i as i64),
                )
                .await,
            );
        }
        ids
    };
    // t(1): running with a live lease.
    let running = store.claim_job("w", LEASE, t(10)).await.unwrap().unwrap();
    // t(2): running, its lease expires at t(40).
    let expired = store.claim_job("w", LEASE, t(10)).await.unwrap().unwrap();
    assert!(
        store
            .heartbeat_job(running.id, "w", std::time::Duration::from_secs(100), t(10))
            .await
            .unwrap()
    );
    // t(3): deferred to t(500).
    let deferred = store.claim_job("w", LEASE, t(10)).await.unwrap().unwrap();
    assert!(
        store
            .defer_job(deferred.id, "w", t(500), "wait", t(10))
            .await
            .unwrap()
    );
    // t(4): dead (max attempts reached by failures).
    let mut now = t(10);
    let dying = loop {
        let job = store.claim_job("w", LEASE, now).await.unwrap().unwrap();
        assert_eq!(job.inspection_id, ids[3]);
        if store.fail_job(job.id, "w", "boom", now, now).await.unwrap() == Some(JobState::Dead) {
            break job;
        }
        now += Duration::seconds(1);
    };
    assert_eq!(dying.attempt, 5);
    // t(5): queued and due.
    let stats = store.job_stats(t(100)).await.unwrap();
    assert_eq!(stats.ready, 2, "{stats:?}"); // ids[4] queued + ids[1] expired
    assert_eq!(stats.scheduled, 1);
    assert_eq!(stats.running, 1);
    assert_eq!(stats.dead, 1);
    // The oldest ready one is the expired job, enqueued at t(2).
    assert_eq!(
        stats.oldest_ready_age,
        Some(std::time::Duration::from_secs(98))
    );
    assert_eq!(expired.inspection_id, ids[1]);
    // Before the expiry, only the queued one is ready.
    let stats = store.job_stats(t(20)).await.unwrap();
    assert_eq!((stats.ready, stats.running), (1, 2));
    assert_eq!(
        stats.oldest_ready_age,
        Some(std::time::Duration::from_secs(15))
    );
}

// ---- Concurrency: several stores (pools) on one database ------------------

/// 200 jobs, 4 workers on their own connections claiming in parallel:
/// every job is claimed and completed exactly once.
pub async fn parallel_workers_claim_each_job_once(stores: Vec<Arc<dyn Store>>) {
    let setup = stores[0].clone();
    let mut expected = HashSet::new();
    for i in 0..200u64 {
        // One batch per inspection, as the bridge stores them.
        expected.insert(complete(&setup, InspectionKind::Return, 1 + 3 * i, t(0), t(1)).await);
    }
    let mut tasks = Vec::new();
    for (n, store) in stores.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let worker = format!("worker-{n}");
            let mut done = Vec::new();
            while let Some(job) = store.claim_job(&worker, LEASE, t(100)).await.unwrap() {
                assert!(store.complete_job(job.id, &worker, t(101)).await.unwrap());
                done.push(job.inspection_id);
            }
            done
        }));
    }
    let mut seen = HashSet::new();
    let mut per_worker = Vec::new();
    for task in tasks {
        let done = task.await.unwrap();
        per_worker.push(done.len());
        for id in done {
            assert!(seen.insert(id), "{id} was claimed twice");
        }
    }
    assert_eq!(seen, expected, "every job claimed once ({per_worker:?})");
    let stats = setup.job_stats(t(200)).await.unwrap();
    assert_eq!(
        (stats.ready, stats.running, stats.scheduled, stats.dead),
        (0, 0, 0, 0)
    );
    for id in expected.iter().take(10) {
        let jobs = setup.inspection_jobs(*id).await.unwrap();
        assert_eq!(
            (jobs.len(), jobs[0].state, jobs[0].attempts),
            (1, JobState::Done, 1)
        );
    }
}

/// Bridges storing the events of the same inspections at the same time, in
/// separate transactions on separate connections: each inspection is queued
/// once with exactly one job.
pub async fn parallel_bridges_enqueue_each_inspection_once(stores: Vec<Arc<dyn Store>>) {
    let inspections: Vec<Vec<Event>> = (0..30u64)
        .map(|i| {
            let mut events = inspection(1 + 3 * i);
            // A device per inspection, so that they do not all queue on one
            // device's row.
            for e in &mut events {
                e.device = DeviceId::new(format!("bay-{i}")).unwrap();
            }
            events
        })
        .collect();
    let mut tasks = Vec::new();
    for (i, events) in inspections.iter().enumerate() {
        for (j, event) in events.iter().enumerate() {
            let store = stores[(i + j) % stores.len()].clone();
            let event = event.clone();
            tasks.push(tokio::spawn(async move {
                // Transient refusals (a deadlock or busy database) are the
                // bridge's to retry, as it does.
                loop {
                    match store
                        .record_events(std::slice::from_ref(&event), t(1))
                        .await
                    {
                        Ok(r) => break r,
                        Err(e) if e.is_transient() => tokio::task::yield_now().await,
                        Err(e) => panic!("{e}"),
                    }
                }
            }));
        }
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), vec![Recorded::Inserted]);
    }
    for events in &inspections {
        let id = events[0].inspection_id.unwrap();
        let record = stores[0].inspection(id).await.unwrap().unwrap();
        assert!(record.is_complete(), "{record:?}");
        assert_eq!(record.status, InspectionStatus::Queued);
        let jobs = stores[0].inspection_jobs(id).await.unwrap();
        assert_eq!(jobs.len(), 1, "{jobs:?}");
    }
    assert_eq!(stores[0].job_stats(t(2)).await.unwrap().ready, 30);
}

/// Worker A claims a job and is killed mid-job (its task aborted: no more
/// heartbeats). After the lease B claims and finishes it; A's late
/// complete is refused.
pub async fn killed_worker_job_is_taken_over(stores: Vec<Arc<dyn Store>>) {
    let (a_store, b_store) = (stores[0].clone(), stores[1].clone());
    let id = complete(&a_store, InspectionKind::Return, 1, t(0), t(1)).await;
    let (claimed_tx, claimed_rx) = tokio::sync::oneshot::channel();
    let store = a_store.clone();
    let a = tokio::spawn(async move {
        let job = store.claim_job("a", LEASE, t(10)).await.unwrap().unwrap();
        // Working and heartbeating (to t(50))...
        for now in [t(15), t(20)] {
            assert!(store.heartbeat_job(job.id, "a", LEASE, now).await.unwrap());
        }
        claimed_tx.send(job.clone()).unwrap();
        // ...until killed (no statement in flight, so none lands later).
        std::future::pending::<()>().await;
    });
    let job = claimed_rx.await.unwrap();
    a.abort();
    assert!(a.await.unwrap_err().is_cancelled());
    let lease_until = a_store.inspection_jobs(id).await.unwrap()[0]
        .lease_until
        .unwrap();
    assert_eq!(lease_until, t(50));
    assert_eq!(
        b_store.claim_job("b", LEASE, lease_until).await.unwrap(),
        None
    );
    let b = b_store
        .claim_job("b", LEASE, lease_until + Duration::seconds(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((b.id, b.attempt), (job.id, 2));
    assert!(
        b_store
            .complete_job(b.id, "b", lease_until + Duration::seconds(2))
            .await
            .unwrap()
    );
    assert!(
        !a_store
            .complete_job(job.id, "a", lease_until + Duration::seconds(3))
            .await
            .unwrap()
    );
    let jobs = a_store.inspection_jobs(id).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        (jobs[0].state, jobs[0].lease_owner.as_deref()),
        (JobState::Done, Some("b"))
    );
}

/// The fleet listing: every device once, in (site, device) order, paged;
/// and the fleet summary the gauges are computed from.
pub async fn devices_are_listed_in_order_and_summarised(store: Arc<dyn Store>) {
    let mut expected = Vec::new();
    for (i, (s, d)) in [
        ("site-b", "dev-1"),
        ("site-a", "dev-2"),
        ("site-a", "dev-1"),
        ("site-c", "x"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut status = examples::status();
        status.site = SiteId::new(s).unwrap();
        status.device = DeviceId::new(d).unwrap();
        status.at = t(i as i64);
        if s == "site-c" {
            status.state = DeviceState::Offline;
        }
        store.record_status(&status, t(i as i64)).await.unwrap();
        let mut telemetry = examples::telemetry();
        telemetry.site = status.site.clone();
        telemetry.device = status.device.clone();
        telemetry.at = t(i as i64);
        telemetry.outbox.entries = 10 * (i as u64 + 1);
        telemetry.outbox.oldest_age_seconds = 100 * (i as u64 + 1);
        // site-a/dev-1 last spoke long ago: online by status, but silent.
        let received = if (s, d) == ("site-a", "dev-1") {
            t(0)
        } else {
            t(3600)
        };
        store.record_telemetry(&telemetry, received).await.unwrap();
        expected.push((s.to_owned(), d.to_owned()));
    }
    expected.sort();
    let all = store.devices(None, 100).await.unwrap();
    let ids: Vec<(String, String)> = all
        .iter()
        .map(|r| (r.site.to_string(), r.device.to_string()))
        .collect();
    assert_eq!(ids, expected);
    let first = store.devices(None, 2).await.unwrap();
    let last = &first[1];
    let rest = store
        .devices(Some((&last.site, &last.device)), 100)
        .await
        .unwrap();
    assert_eq!(first.len() + rest.len(), 4);
    assert_eq!(rest[0].site.as_str(), "site-b");

    let summary =
        central::fleet::summarise(store.as_ref(), t(3600), std::time::Duration::from_secs(300))
            .await
            .unwrap();
    assert_eq!(
        summary,
        central::fleet::FleetSummary {
            online: 3,
            offline: 1,
            unknown: 0,
            silent: 1,
            outbox_events: 10 + 20 + 30 + 40,
            outbox_bytes: 4 * examples::telemetry().outbox.bytes,
            outbox_oldest_age_s: 400,
        }
    );
}

// ---- The staff API: search, review before charge, vehicles, sites ----------

/// The example inspection of `kind` at `site`/`device`, started at
/// `started`, stored whole five seconds later; its id.
async fn complete_at(
    store: &Arc<dyn Store>,
    kind: InspectionKind,
    first_seq: u64,
    started: DateTime<Utc>,
    (site, device): (&str, &str),
) -> Uuid {
    let mut events = inspection_of(kind, first_seq, started);
    for e in &mut events {
        e.site = SiteId::new(site).unwrap();
        e.device = DeviceId::new(device).unwrap();
    }
    store
        .record_events(&events, started + Duration::seconds(5))
        .await
        .unwrap();
    events[0].inspection_id.unwrap()
}

/// Records `rich_result` for `id` (findings `new`, `pre_existing`,
/// `possible_new_damage`, in that order); the findings' ids.
async fn rich_processed(
    store: &Arc<dyn Store>,
    id: Uuid,
    at: DateTime<Utc>,
    plate: &str,
) -> [Uuid; 3] {
    let result = rich_result(id, "w1", at, Some(plate));
    store.record_result(&result).await.unwrap();
    [
        result.findings[0].id,
        result.findings[1].id,
        result.findings[2].id,
    ]
}

/// A processed return with `rich_result`'s findings: its id and theirs.
async fn processed_return(
    store: &Arc<dyn Store>,
    first_seq: u64,
    started: DateTime<Utc>,
) -> (Uuid, [Uuid; 3]) {
    let id = complete(
        store,
        InspectionKind::Return,
        first_seq,
        started,
        started + Duration::seconds(5),
    )
    .await;
    let findings = rich_processed(store, id, started + Duration::seconds(10), "AB12CDE").await;
    (id, findings)
}

/// A processed pickup with one `baseline` finding: its id and the finding's.
async fn processed_pickup(
    store: &Arc<dyn Store>,
    first_seq: u64,
    started: DateTime<Utc>,
) -> (Uuid, Uuid) {
    let id = complete(
        store,
        InspectionKind::Pickup,
        first_seq,
        started,
        started + Duration::seconds(5),
    )
    .await;
    let mut result = plain_result(id, started + Duration::seconds(10), "AB12CDE");
    let mut finding = rich_result(id, "w1", started, None).findings.remove(0);
    finding.status = FindingStatus::Baseline;
    result.findings.push(finding.clone());
    store.record_result(&result).await.unwrap();
    (id, finding.id)
}

fn decision(
    inspection_id: Uuid,
    finding_id: Uuid,
    decision: FindingDecision,
    note: Option<&str>,
    actor: &str,
    at: DateTime<Utc>,
) -> FindingReview {
    FindingReview {
        inspection_id,
        finding_id,
        decision,
        note: note.map(str::to_owned),
        actor: actor.into(),
        at,
    }
}

fn review_mark(actor: &str, at: DateTime<Utc>, note: Option<&str>) -> InspectionReview {
    InspectionReview {
        actor: actor.into(),
        at,
        note: note.map(str::to_owned),
    }
}

fn charge_of(inspection_id: Uuid, findings: &[Uuid], at: DateTime<Utc>) -> Charge {
    Charge {
        id: Uuid::now_v7(),
        inspection_id,
        findings: findings.to_vec(),
        note: Some("bumper respray, 240 EUR".into()),
        actor: "user:carol".into(),
        at,
    }
}

/// Every inspection (up to 1000), newest first: the query to narrow.
fn everything() -> InspectionQuery {
    InspectionQuery {
        limit: 1000,
        ..InspectionQuery::default()
    }
}

async fn search_ids(store: &Arc<dyn Store>, query: InspectionQuery) -> Vec<Uuid> {
    store
        .search_inspections(&query)
        .await
        .unwrap()
        .iter()
        .map(|i| i.record.id)
        .collect()
}

/// The error's kind (`not_found`, `conflict`, ...) and message.
fn refused<T: std::fmt::Debug>(result: Result<T, StoreError>) -> (&'static str, String) {
    let e = result.expect_err("refused");
    assert!(!e.is_transient(), "{e:?}");
    (e.code(), e.to_string())
}

pub async fn search_narrows_by_every_filter(store: Arc<dyn Store>) {
    let (a_site, b_site) = (("site-a", "bay-1"), ("site-b", "bay-1"));
    // A: a return at site-a, processed, decided and marked reviewed.
    let a = complete_at(&store, InspectionKind::Return, 1, t(100), a_site).await;
    let a_findings = rich_processed(&store, a, t(1000), "AAA111").await;
    // B: a pickup at site-a/bay-2, processed (pending review).
    let b = complete_at(
        &store,
        InspectionKind::Pickup,
        1,
        t(200),
        ("site-a", "bay-2"),
    )
    .await;
    store
        .record_result(&plain_result(b, t(1001), "AAA111"))
        .await
        .unwrap();
    // C: a return at site-b, processed (pending review).
    let c = complete_at(&store, InspectionKind::Return, 10, t(300), b_site).await;
    rich_processed(&store, c, t(1002), "BBB222").await;
    // D: a return at site-b, queued.
    let d = complete_at(&store, InspectionKind::Return, 20, t(400), b_site).await;
    // E: only its completion so far (receiving, no start): sorted by when
    // its first event arrived.
    let mut e_events = inspection(30);
    for ev in &mut e_events {
        ev.site = SiteId::new("site-c").unwrap();
    }
    store.record_events(&e_events[2..], t(250)).await.unwrap();
    let e = e_events[0].inspection_id.unwrap();

    let [new, _, possible] = a_findings;
    for (finding, choice) in [
        (new, FindingDecision::Confirm),
        (possible, FindingDecision::Reject),
    ] {
        store
            .review_finding(&decision(a, finding, choice, None, "user:alice", t(2000)))
            .await
            .unwrap();
    }
    store
        .mark_reviewed(a, &review_mark("user:alice", t(2001), Some("ok")))
        .await
        .unwrap();
    store
        .approve_charge(&charge_of(a, &[new], t(2002)))
        .await
        .unwrap();

    // Everything, newest first, then oldest first.
    assert_eq!(search_ids(&store, everything()).await, vec![d, c, e, b, a]);
    let oldest = InspectionQuery {
        order: SortOrder::OldestFirst,
        ..everything()
    };
    assert_eq!(search_ids(&store, oldest).await, vec![a, b, e, c, d]);
    // Each filter.
    let q = |f: fn(&mut InspectionQuery)| {
        let mut q = everything();
        f(&mut q);
        q
    };
    let cases: Vec<(InspectionQuery, Vec<Uuid>)> = vec![
        (q(|q| q.plate = Some("AAA111".into())), vec![b, a]),
        (q(|q| q.plate = Some("NOSUCH".into())), vec![]),
        (
            q(|q| q.sites = Some(vec![SiteId::new("site-b").unwrap()])),
            vec![d, c],
        ),
        (
            q(|q| {
                q.sites = Some(vec![
                    SiteId::new("site-a").unwrap(),
                    SiteId::new("site-c").unwrap(),
                ])
            }),
            vec![e, b, a],
        ),
        // An empty scope sees nothing.
        (q(|q| q.sites = Some(vec![])), vec![]),
        (
            q(|q| q.device = Some(DeviceId::new("bay-2").unwrap())),
            vec![b],
        ),
        (q(|q| q.kind = Some(InspectionKind::Pickup)), vec![b]),
        (q(|q| q.kind = Some(InspectionKind::Return)), vec![d, c, a]),
        (q(|q| q.status = Some(InspectionStatus::Queued)), vec![d]),
        (q(|q| q.status = Some(InspectionStatus::Receiving)), vec![e]),
        (
            q(|q| q.status = Some(InspectionStatus::Processed)),
            vec![c, b, a],
        ),
        (q(|q| q.review = Some(ReviewState::Pending)), vec![c, b]),
        (q(|q| q.review = Some(ReviewState::Reviewed)), vec![a]),
        // `from` inclusive, `to` exclusive.
        (
            q(|q| {
                q.from = Some(t(200));
                q.to = Some(t(300));
            }),
            vec![e, b],
        ),
        (q(|q| q.from = Some(t(300))), vec![d, c]),
        (q(|q| q.to = Some(t(100))), vec![]),
        // Filters combine.
        (
            q(|q| {
                q.sites = Some(vec![SiteId::new("site-a").unwrap()]);
                q.kind = Some(InspectionKind::Return);
            }),
            vec![a],
        ),
        (
            q(|q| {
                q.plate = Some("AAA111".into());
                q.review = Some(ReviewState::Pending);
            }),
            vec![b],
        ),
        (
            q(|q| {
                q.sites = Some(vec![]);
                q.plate = Some("AAA111".into());
            }),
            vec![],
        ),
        (
            q(|q| {
                q.limit = 2;
            }),
            vec![d, c],
        ),
        (q(|q| q.limit = 0), vec![]),
    ];
    for (query, expected) in cases {
        assert_eq!(
            search_ids(&store, query.clone()).await,
            expected,
            "{query:?}"
        );
    }

    // What an item carries.
    let items = store.search_inspections(&everything()).await.unwrap();
    for item in &items {
        assert_eq!(
            Some(&item.record),
            store.inspection(item.record.id).await.unwrap().as_ref()
        );
    }
    let item = |id: Uuid| items.iter().find(|i| i.record.id == id).unwrap();
    assert_eq!(item(a).at, t(100));
    assert_eq!(item(e).at, t(250));
    assert_eq!(item(e).record.started_at, None);
    assert_eq!(
        item(a).findings,
        vec![
            (FindingStatus::PreExisting, 1),
            (FindingStatus::Confirmed, 1),
            (FindingStatus::Rejected, 1),
        ]
    );
    assert_eq!(
        item(c).findings,
        vec![
            (FindingStatus::New, 1),
            (FindingStatus::PreExisting, 1),
            (FindingStatus::PossibleNewDamage, 1),
        ]
    );
    assert_eq!(item(b).findings, vec![]);
    assert_eq!(item(d).findings, vec![]);
    assert_eq!(
        item(a).reviewed,
        Some(review_mark("user:alice", t(2001), Some("ok")))
    );
    assert_eq!(item(c).reviewed, None);
    assert!(item(a).charged);
    assert!(!item(c).charged && !item(b).charged);
    assert_eq!(item(a).record.plate.as_deref(), Some("AAA111"));
    assert_eq!(item(a).cursor().at, t(100));
}

pub async fn search_pages_both_ways_without_repeats_or_skips(store: Arc<dyn Store>) {
    // 13 inspections, three to a start time (ties are ordered by id), and
    // one that has only its completion (sorted by its arrival).
    let mut keyed = Vec::new();
    for i in 0..12u64 {
        let started = t(100 + (i as i64 / 3) * 10);
        let id = complete(&store, InspectionKind::Return, 1 + 3 * i, started, t(1000)).await;
        keyed.push((started, id));
    }
    let late = inspection(100);
    store.record_events(&late[2..], t(115)).await.unwrap();
    keyed.push((t(115), late[0].inspection_id.unwrap()));
    keyed.sort();
    let oldest_first: Vec<Uuid> = keyed.iter().map(|(_, id)| *id).collect();
    let newest_first: Vec<Uuid> = oldest_first.iter().rev().copied().collect();

    async fn pages(store: &Arc<dyn Store>, mut query: InspectionQuery) -> Vec<Vec<Uuid>> {
        let mut pages = Vec::new();
        loop {
            let page = store.search_inspections(&query).await.unwrap();
            assert!(page.len() <= query.limit as usize);
            let Some(last) = page.last() else { break };
            query.after = Some(last.cursor());
            pages.push(page.iter().map(|i| i.record.id).collect());
            assert!(pages.len() < 100, "paging does not end");
        }
        pages
    }
    for (order, expected) in [
        (SortOrder::NewestFirst, &newest_first),
        (SortOrder::OldestFirst, &oldest_first),
    ] {
        for size in [1u32, 4, 5, 13, 50] {
            let query = InspectionQuery {
                order,
                limit: size,
                ..InspectionQuery::default()
            };
            let pages = pages(&store, query).await;
            assert_eq!(
                pages.len(),
                13usize.div_ceil(size as usize),
                "{order:?} {size}"
            );
            let seen: Vec<Uuid> = pages.concat();
            assert_eq!(&seen, expected, "{order:?} by {size}");
        }
    }
    // Paging with a filter and a scope.
    let mut query = InspectionQuery {
        sites: Some(vec![site()]),
        status: Some(InspectionStatus::Queued),
        order: SortOrder::OldestFirst,
        limit: 5,
        ..InspectionQuery::default()
    };
    let queued: Vec<Uuid> = oldest_first
        .iter()
        .copied()
        .filter(|id| *id != late[0].inspection_id.unwrap())
        .collect();
    assert_eq!(pages(&store, query.clone()).await.concat(), queued);
    query.sites = Some(vec![SiteId::new("elsewhere").unwrap()]);
    assert!(pages(&store, query).await.is_empty());

    // An inspection that arrives while paging newest first sorts before the
    // cursor: the remaining pages are the ones there when paging began.
    let mut query = InspectionQuery {
        limit: 4,
        ..InspectionQuery::default()
    };
    let first = store.search_inspections(&query).await.unwrap();
    assert_eq!(
        first.iter().map(|i| i.record.id).collect::<Vec<_>>(),
        newest_first[..4]
    );
    complete(&store, InspectionKind::Return, 500, t(900), t(1001)).await;
    query.after = Some(first[3].cursor());
    assert_eq!(pages(&store, query).await.concat(), newest_first[4..]);
}

pub async fn review_decisions_can_change_and_notes_keep_status(store: Arc<dyn Store>) {
    let (id, [new, pre, possible]) = processed_return(&store, 1, t(0)).await;
    let review = |finding, choice, note, actor, at| decision(id, finding, choice, note, actor, at);
    // Confirm, then change it to a rejection.
    let first = store
        .review_finding(&review(
            new,
            FindingDecision::Confirm,
            Some("deep scratch"),
            "user:alice",
            t(100),
        ))
        .await
        .unwrap();
    assert_eq!(
        (first.inspection_id, first.finding_id, first.decision),
        (id, new, FindingDecision::Confirm)
    );
    assert_eq!(
        (first.status_before, first.status_after),
        (FindingStatus::New, FindingStatus::Confirmed)
    );
    assert_eq!(first.note.as_deref(), Some("deep scratch"));
    assert_eq!((first.actor.as_str(), first.at), ("user:alice", t(100)));
    let status_of = |result: &InspectionResult, finding: Uuid| {
        result
            .findings
            .iter()
            .find(|f| f.id == finding)
            .unwrap()
            .status
    };
    let result = store.inspection_result(id).await.unwrap().unwrap();
    assert_eq!(status_of(&result, new), FindingStatus::Confirmed);
    assert_eq!(status_of(&result, pre), FindingStatus::PreExisting);
    let second = store
        .review_finding(&review(
            new,
            FindingDecision::Reject,
            None,
            "user:bob",
            t(101),
        ))
        .await
        .unwrap();
    assert!(second.id > first.id);
    assert_eq!(
        (second.status_before, second.status_after),
        (FindingStatus::Confirmed, FindingStatus::Rejected)
    );
    // An annotation keeps the status, on any return finding.
    let note = store
        .review_finding(&review(
            possible,
            FindingDecision::Annotate,
            Some("looks like road dirt"),
            "user:bob",
            t(102),
        ))
        .await
        .unwrap();
    assert_eq!(
        (note.status_before, note.status_after),
        (
            FindingStatus::PossibleNewDamage,
            FindingStatus::PossibleNewDamage
        )
    );
    store
        .review_finding(&review(
            pre,
            FindingDecision::Annotate,
            Some("known dent"),
            "user:bob",
            t(103),
        ))
        .await
        .unwrap();
    // The stored result shows the current statuses; nothing else changed.
    let result = store.inspection_result(id).await.unwrap().unwrap();
    assert_eq!(status_of(&result, new), FindingStatus::Rejected);
    assert_eq!(status_of(&result, pre), FindingStatus::PreExisting);
    assert_eq!(
        status_of(&result, possible),
        FindingStatus::PossibleNewDamage
    );
    let recorded = rich_result(id, "w1", t(10), Some("AB12CDE"));
    assert_eq!(result.frames, recorded.frames);
    assert_eq!(result.plate_reads, recorded.plate_reads);
    assert_eq!(result.findings.len(), 3);
    // The history: the worker's status of decided findings, the actions
    // oldest first.
    let record = store.review_record(id).await.unwrap();
    assert_eq!(record.worker_status, vec![(new, FindingStatus::New)]);
    assert_eq!(record.actions.len(), 4);
    assert_eq!(record.actions[0], first);
    assert_eq!(record.actions[1], second);
    assert_eq!(record.actions[2], note);
    assert_eq!(
        record
            .actions
            .iter()
            .map(|a| (a.finding_id, a.decision))
            .collect::<Vec<_>>(),
        vec![
            (new, FindingDecision::Confirm),
            (new, FindingDecision::Reject),
            (possible, FindingDecision::Annotate),
            (pre, FindingDecision::Annotate),
        ]
    );
    assert_eq!((record.reviewed, record.charge), (None, None));
    // Still pending review: one finding is undecided.
    let pending = InspectionQuery {
        review: Some(ReviewState::Pending),
        ..everything()
    };
    assert_eq!(search_ids(&store, pending).await, vec![id]);
    // Nothing for an inspection without reviews, or none at all.
    let (other, _) = processed_return(&store, 10, t(50)).await;
    assert_eq!(
        store.review_record(other).await.unwrap(),
        Default::default()
    );
    assert_eq!(
        store.review_record(Uuid::now_v7()).await.unwrap(),
        Default::default()
    );
}

pub async fn staff_writes_are_refused_with_not_found_or_conflict(store: Arc<dyn Store>) {
    let (ret, [new, pre, possible]) = processed_return(&store, 1, t(0)).await;
    let (other, [other_new, ..]) = processed_return(&store, 10, t(50)).await;
    let (pickup, baseline) = processed_pickup(&store, 20, t(100)).await;
    let queued = complete(&store, InspectionKind::Return, 30, t(150), t(155)).await;
    let stranger = Uuid::now_v7();
    let audit_count = || {
        let store = store.clone();
        async move { store.audit_log(None, 1000).await.unwrap().len() }
    };
    let audited = audit_count().await;
    let confirm = |id, finding| {
        decision(
            id,
            finding,
            FindingDecision::Confirm,
            None,
            "user:a",
            t(200),
        )
    };

    // Not found: no such inspection, a finding of another inspection or none.
    for review in [
        confirm(stranger, new),
        confirm(ret, other_new),
        confirm(ret, Uuid::now_v7()),
    ] {
        let (code, message) = refused(store.review_finding(&review).await);
        assert_eq!(code, "not_found", "{message}");
    }
    let (code, _) = refused(
        store
            .mark_reviewed(stranger, &review_mark("user:a", t(200), None))
            .await,
    );
    assert_eq!(code, "not_found");
    let (code, _) = refused(
        store
            .approve_charge(&charge_of(stranger, &[new], t(200)))
            .await,
    );
    assert_eq!(code, "not_found");
    // Conflict: a pickup's baseline; an inspection not processed.
    let (code, message) = refused(store.review_finding(&confirm(pickup, baseline)).await);
    assert_eq!(code, "conflict");
    assert!(message.contains("baseline"), "{message}");
    let annotate = decision(
        pickup,
        baseline,
        FindingDecision::Annotate,
        Some("n"),
        "user:a",
        t(200),
    );
    assert_eq!(refused(store.review_finding(&annotate).await).0, "conflict");
    let (code, message) = refused(
        store
            .mark_reviewed(queued, &review_mark("user:a", t(200), None))
            .await,
    );
    assert_eq!(code, "conflict");
    assert!(message.contains("queued"), "{message}");
    // Marking reviewed with findings undecided names them.
    let (code, message) = refused(
        store
            .mark_reviewed(ret, &review_mark("user:a", t(200), None))
            .await,
    );
    assert_eq!(code, "conflict");
    assert!(message.contains("findings still undecided"), "{message}");
    assert!(message.contains(&new.to_string()), "{message}");
    assert!(message.contains(&possible.to_string()), "{message}");
    assert!(!message.contains(&pre.to_string()), "{message}");
    // A charge before the review.
    let (code, message) = refused(store.approve_charge(&charge_of(ret, &[new], t(200))).await);
    assert_eq!(code, "conflict");
    assert!(message.contains("not marked reviewed"), "{message}");
    // Nothing refused left a trace.
    assert_eq!(audit_count().await, audited);
    assert_eq!(store.review_record(ret).await.unwrap(), Default::default());

    // Decide both, then mark reviewed.
    store.review_finding(&confirm(ret, new)).await.unwrap();
    store
        .review_finding(&decision(
            ret,
            possible,
            FindingDecision::Reject,
            None,
            "user:a",
            t(201),
        ))
        .await
        .unwrap();
    store
        .mark_reviewed(ret, &review_mark("user:a", t(202), None))
        .await
        .unwrap();
    // A pickup can be marked reviewed (no undecided findings) but not charged.
    store
        .mark_reviewed(pickup, &review_mark("user:a", t(202), None))
        .await
        .unwrap();
    let (code, message) = refused(
        store
            .approve_charge(&charge_of(pickup, &[baseline], t(203)))
            .await,
    );
    assert_eq!(code, "conflict");
    assert!(message.contains("not a return"), "{message}");
    // Charges on findings that are not confirmed, on none, twice the same,
    // or on another inspection's.
    let audited = audit_count().await;
    for findings in [vec![possible], vec![new, pre], vec![]] {
        let (code, message) = refused(
            store
                .approve_charge(&charge_of(ret, &findings, t(203)))
                .await,
        );
        assert_eq!(code, "conflict", "{findings:?}: {message}");
    }
    let (_, message) = refused(
        store
            .approve_charge(&charge_of(ret, &[new, pre], t(203)))
            .await,
    );
    assert!(message.contains("not confirmed"), "{message}");
    assert!(message.contains(&pre.to_string()), "{message}");
    assert_eq!(
        refused(
            store
                .approve_charge(&charge_of(ret, &[new, new], t(203)))
                .await
        )
        .0,
        "conflict"
    );
    assert_eq!(
        refused(
            store
                .approve_charge(&charge_of(ret, &[new, other_new], t(203)))
                .await
        )
        .0,
        "not_found"
    );
    assert_eq!(audit_count().await, audited);
    // The charge, then no second one, and decisions are final.
    let charge = charge_of(ret, &[new], t(204));
    store.approve_charge(&charge).await.unwrap();
    assert_eq!(store.review_record(ret).await.unwrap().charge, Some(charge));
    let (code, message) = refused(store.approve_charge(&charge_of(ret, &[new], t(205))).await);
    assert_eq!(code, "conflict");
    assert!(message.contains("already approved"), "{message}");
    for choice in [FindingDecision::Confirm, FindingDecision::Reject] {
        let (code, message) = refused(
            store
                .review_finding(&decision(ret, possible, choice, None, "user:a", t(206)))
                .await,
        );
        assert_eq!(code, "conflict", "{message}");
        assert!(message.contains("charge"), "{message}");
    }
    // Annotating is still allowed after the charge.
    let note = store
        .review_finding(&decision(
            ret,
            new,
            FindingDecision::Annotate,
            Some("customer informed"),
            "user:a",
            t(207),
        ))
        .await
        .unwrap();
    assert_eq!(note.status_after, FindingStatus::Confirmed);
    // Another return that is not reviewed cannot be charged either.
    assert_eq!(
        refused(
            store
                .approve_charge(&charge_of(other, &[other_new], t(208)))
                .await
        )
        .0,
        "conflict"
    );
}

pub async fn staff_writes_are_audited_with_before_and_after(store: Arc<dyn Store>) {
    let (id, [new, _, possible]) = processed_return(&store, 1, t(0)).await;
    let target = format!("inspection:{id}");
    store
        .review_finding(&decision(
            id,
            new,
            FindingDecision::Confirm,
            Some("deep scratch"),
            "user:alice",
            t(100),
        ))
        .await
        .unwrap();
    store
        .review_finding(&decision(
            id,
            possible,
            FindingDecision::Reject,
            None,
            "user:alice",
            t(101),
        ))
        .await
        .unwrap();
    store
        .review_finding(&decision(
            id,
            possible,
            FindingDecision::Annotate,
            Some("dirt"),
            "user:bob",
            t(102),
        ))
        .await
        .unwrap();
    store
        .mark_reviewed(id, &review_mark("user:bob", t(103), Some("all checked")))
        .await
        .unwrap();
    // Marked again: who and when are replaced.
    store
        .mark_reviewed(id, &review_mark("user:carol", t(104), None))
        .await
        .unwrap();
    let charge = charge_of(id, &[new], t(105));
    store.approve_charge(&charge).await.unwrap();

    let log = store.audit_log(Some(&target), 100).await.unwrap();
    let staff: Vec<&AuditEntry> = log
        .iter()
        .rev()
        .map(|a| &a.entry)
        .filter(|e| e.action != "inspection.processed")
        .collect();
    use serde_json::json;
    let expected = vec![
        AuditEntry {
            at: t(100),
            actor: "user:alice".into(),
            action: "finding.confirm".into(),
            target: target.clone(),
            before: Some(json!({ "finding": new, "status": "new", "note": null })),
            after: Some(json!({ "finding": new, "status": "confirmed", "note": "deep scratch" })),
        },
        AuditEntry {
            at: t(101),
            actor: "user:alice".into(),
            action: "finding.reject".into(),
            target: target.clone(),
            before: Some(
                json!({ "finding": possible, "status": "possible_new_damage", "note": null }),
            ),
            after: Some(json!({ "finding": possible, "status": "rejected", "note": null })),
        },
        AuditEntry {
            at: t(102),
            actor: "user:bob".into(),
            action: "finding.annotate".into(),
            target: target.clone(),
            before: Some(json!({ "finding": possible, "status": "rejected", "note": null })),
            after: Some(json!({ "finding": possible, "status": "rejected", "note": "dirt" })),
        },
        AuditEntry {
            at: t(103),
            actor: "user:bob".into(),
            action: "inspection.reviewed".into(),
            target: target.clone(),
            before: Some(json!({ "reviewed_by": null, "reviewed_at": null, "note": null })),
            after: Some(json!({
                "reviewed_by": "user:bob",
                "reviewed_at": "2026-11-02T09:01:43.000000Z",
                "note": "all checked",
            })),
        },
        AuditEntry {
            at: t(104),
            actor: "user:carol".into(),
            action: "inspection.reviewed".into(),
            target: target.clone(),
            before: Some(json!({
                "reviewed_by": "user:bob",
                "reviewed_at": "2026-11-02T09:01:43.000000Z",
                "note": "all checked",
            })),
            after: Some(json!({
                "reviewed_by": "user:carol",
                "reviewed_at": "2026-11-02T09:01:44.000000Z",
                "note": null,
            })),
        },
        AuditEntry {
            at: t(105),
            actor: "user:carol".into(),
            action: "charge.approved".into(),
            target: target.clone(),
            before: Some(json!({ "charge": null })),
            after: Some(json!({
                "charge": charge.id,
                "findings": [new],
                "note": "bumper respray, 240 EUR",
            })),
        },
    ];
    assert_eq!(staff.len(), expected.len(), "{staff:#?}");
    for (got, want) in staff.iter().zip(&expected) {
        assert_eq!(*got, want);
    }
    let record = store.review_record(id).await.unwrap();
    assert_eq!(
        record.reviewed,
        Some(review_mark("user:carol", t(104), None))
    );
    assert_eq!(
        record.worker_status,
        vec![
            (new, FindingStatus::New),
            (possible, FindingStatus::PossibleNewDamage)
        ]
    );
}

pub async fn record_result_is_refused_once_review_began(store: Arc<dyn Store>) {
    // A finding decision.
    let (id, [new, ..]) = processed_return(&store, 1, t(0)).await;
    store
        .review_finding(&decision(
            id,
            new,
            FindingDecision::Confirm,
            None,
            "user:alice",
            t(100),
        ))
        .await
        .unwrap();
    let kept = store.inspection_result(id).await.unwrap().unwrap();
    let record = store.inspection(id).await.unwrap().unwrap();
    let audited = store.audit_log(None, 1000).await.unwrap().len();
    let again = rich_result(id, "worker-b", t(200), Some("ZZ99ZZZ"));
    let (code, message) = refused(store.record_result(&again).await);
    assert_eq!(code, "conflict");
    assert!(message.contains("review"), "{message}");
    assert_eq!(store.inspection_result(id).await.unwrap().unwrap(), kept);
    assert_eq!(store.inspection(id).await.unwrap().unwrap(), record);
    assert_eq!(store.audit_log(None, 1000).await.unwrap().len(), audited);
    assert_eq!(store.vehicle("ZZ99ZZZ").await.unwrap(), None);
    // An annotation alone is a review begun.
    let (id, [_, pre, _]) = processed_return(&store, 10, t(50)).await;
    store
        .review_finding(&decision(
            id,
            pre,
            FindingDecision::Annotate,
            Some("n"),
            "user:alice",
            t(100),
        ))
        .await
        .unwrap();
    let again = rich_result(id, "worker-b", t(200), Some("AB12CDE"));
    assert_eq!(refused(store.record_result(&again).await).0, "conflict");
    // The review mark alone (nothing to decide).
    let plain = complete(&store, InspectionKind::Return, 20, t(60), t(65)).await;
    store
        .record_result(&plain_result(plain, t(70), "PLAIN1"))
        .await
        .unwrap();
    store
        .mark_reviewed(plain, &review_mark("user:alice", t(100), None))
        .await
        .unwrap();
    let kept = store.inspection_result(plain).await.unwrap();
    assert_eq!(
        refused(
            store
                .record_result(&plain_result(plain, t(200), "OTHER2"))
                .await
        )
        .0,
        "conflict"
    );
    assert_eq!(store.inspection_result(plain).await.unwrap(), kept);
    // Not reviewed: reprocessing still replaces the result.
    let (fresh, _) = processed_return(&store, 30, t(80)).await;
    let replacement = plain_result(fresh, t(300), "AB12CDE");
    store.record_result(&replacement).await.unwrap();
    assert_eq!(
        store.inspection_result(fresh).await.unwrap(),
        Some(replacement)
    );
}

pub async fn vehicles_and_sites(store: Arc<dyn Store>) {
    assert_eq!(store.vehicle("B4ND1T").await.unwrap(), None);
    assert_eq!(store.sites().await.unwrap(), vec![]);
    let first = complete(&store, InspectionKind::Pickup, 1, t(100), t(105)).await;
    let second = complete(&store, InspectionKind::Return, 10, t(200), t(205)).await;
    store
        .record_result(&plain_result(first, t(400), "B4ND1T"))
        .await
        .unwrap();
    store
        .record_result(&plain_result(second, t(500), "B4ND1T"))
        .await
        .unwrap();
    let vehicle = store.vehicle("B4ND1T").await.unwrap().unwrap();
    assert_eq!(
        (
            vehicle.plate.as_str(),
            vehicle.display.as_str(),
            vehicle.country.as_str()
        ),
        ("B4ND1T", "B4ND1T", "DE")
    );
    assert_eq!(
        (vehicle.first_seen_at, vehicle.last_seen_at),
        (t(400), t(500))
    );
    assert_eq!(store.vehicle("b4nd1t").await.unwrap(), None);

    // Sites: from events, statuses and telemetry; devices counted.
    for (s, d, at) in [
        ("site-b", "dev-1", 10),
        ("site-a", "dev-2", 20),
        ("site-a", "dev-1", 30),
    ] {
        let mut status = examples::status();
        status.site = SiteId::new(s).unwrap();
        status.device = DeviceId::new(d).unwrap();
        store.record_status(&status, t(at)).await.unwrap();
    }
    let mut telemetry = examples::telemetry();
    telemetry.site = SiteId::new("site-b").unwrap();
    telemetry.device = DeviceId::new("dev-1").unwrap();
    store.record_telemetry(&telemetry, t(600)).await.unwrap();
    let sites = store.sites().await.unwrap();
    let mut expected = vec![
        ("site-a".to_owned(), t(20), t(30), 2),
        ("site-b".to_owned(), t(10), t(600), 1),
        (site().to_string(), t(105), t(205), 1),
    ];
    expected.sort();
    assert_eq!(
        sites
            .iter()
            .map(|s| (
                s.site.to_string(),
                s.first_seen_at,
                s.last_seen_at,
                s.devices
            ))
            .collect::<Vec<_>>(),
        expected
    );
}

// ---- Retention, erasure and device commands ---------------------------------

/// A SHA-256-like name for test image `n`.
fn image(n: u32) -> String {
    format!("{n:064x}")
}

/// Frames (state ok) showing these images, in order.
fn frames_of(shas: &[String]) -> Vec<FrameRecord> {
    shas.iter()
        .enumerate()
        .map(|(i, sha)| FrameRecord {
            camera: cam(&format!("cam-{i}")),
            position: format!("pos-{i}"),
            sha256: sha.clone(),
            rank: 1,
            state: FrameState::Ok,
            width: Some(640),
            height: Some(480),
            sharpness: Some(100.0),
            brightness: Some(120.0),
            vehicle_box: None,
        })
        .collect()
}

/// A processed inspection of `kind` started at `started`, showing these
/// images, with this plate (or none); its id.
async fn processed_with(
    store: &Arc<dyn Store>,
    kind: InspectionKind,
    first_seq: u64,
    started: DateTime<Utc>,
    plate: Option<&str>,
    shas: &[String],
) -> Uuid {
    let id = complete(
        store,
        kind,
        first_seq,
        started,
        started + Duration::seconds(5),
    )
    .await;
    let mut result = plain_result(id, started + Duration::seconds(10), plate.unwrap_or("NONE"));
    if plate.is_none() {
        result.plate = None;
    }
    result.frames = frames_of(shas);
    store.record_result(&result).await.unwrap();
    id
}

/// One inspection's search hit.
async fn list_item(store: &Arc<dyn Store>, id: Uuid) -> InspectionListItem {
    let mut items = store
        .search_inspections(&InspectionQuery {
            id: Some(id),
            ..everything()
        })
        .await
        .unwrap();
    assert_eq!(items.len(), 1, "inspection {id}");
    items.remove(0)
}

fn image_ref(inspection_id: Uuid, sha256: String) -> ImageRef {
    ImageRef {
        inspection_id,
        sha256,
    }
}

/// The images of an inspection's stored frames, in frame order.
async fn frame_images(store: &Arc<dyn Store>, id: Uuid) -> Vec<String> {
    store
        .inspection_result(id)
        .await
        .unwrap()
        .expect("processed")
        .frames
        .into_iter()
        .map(|f| f.sha256)
        .collect()
}

/// Reviews a processed return's findings, marks it reviewed and charges
/// the confirmed one.
async fn charge_return(store: &Arc<dyn Store>, id: Uuid, [new, _, possible]: [Uuid; 3]) {
    for (finding, choice) in [
        (new, FindingDecision::Confirm),
        (possible, FindingDecision::Reject),
    ] {
        store
            .review_finding(&decision(id, finding, choice, None, "user:carol", t(2000)))
            .await
            .unwrap();
    }
    store
        .mark_reviewed(id, &review_mark("user:carol", t(2001), None))
        .await
        .unwrap();
    store
        .approve_charge(&charge_of(id, &[new], t(2002)))
        .await
        .unwrap();
}

pub async fn expired_images_spare_newer_and_charged_inspections(store: Arc<dyn Store>) {
    use InspectionKind::Return;
    let old = processed_with(
        &store,
        Return,
        1,
        t(0),
        Some("AB12CDE"),
        &[image(1), image(2)],
    )
    .await;
    // Image 2 is still shown by a newer inspection: kept while it is.
    let newer = processed_with(&store, Return, 4, t(1000), None, &[image(2), image(3)]).await;
    // One image in two frames: one reference.
    let twice = processed_with(
        &store,
        Return,
        7,
        t(40),
        None,
        &[image(5), image(6), image(5)],
    )
    .await;
    // A charged return (rich_result's images 'a'..'d') keeps its images as
    // evidence, and so keeps image 'a' of another old inspection.
    let (charged, findings) = processed_return(&store, 10, t(20)).await;
    charge_return(&store, charged, findings).await;
    let sharing =
        processed_with(&store, Return, 13, t(30), None, &["a".repeat(64), image(7)]).await;

    let before = t(500);
    let expected = vec![
        image_ref(old, image(1)),
        image_ref(sharing, image(7)),
        image_ref(twice, image(5)),
        image_ref(twice, image(6)),
    ];
    assert_eq!(
        store.expired_images(before, 100, false).await.unwrap(),
        expected
    );
    assert_eq!(
        store.expired_images(before, 0, false).await.unwrap(),
        vec![]
    );
    // Oldest first, at most `limit`.
    let first = store.expired_images(before, 2, false).await.unwrap();
    assert_eq!(first, expected[..2]);
    store.mark_images_purged(&first, t(600)).await.unwrap();
    let log = store.audit_log(Some("retention:images"), 10).await.unwrap();
    assert_eq!(log.len(), 1);
    let entry = &log[0].entry;
    assert_eq!(
        (entry.action.as_str(), entry.actor.as_str(), entry.at),
        ("retention.purge", "system:retention", t(600))
    );
    assert_eq!(entry.before, None);
    assert_eq!(
        entry.after,
        Some(serde_json::json!({"class": "images", "deleted": 2, "frames": 2, "inspections": 2}))
    );
    // Marked purged: not handed out again, and not recorded twice.
    assert_eq!(
        store.expired_images(before, 100, false).await.unwrap(),
        expected[2..]
    );
    store.mark_images_purged(&first, t(601)).await.unwrap();
    store.mark_images_purged(&[], t(602)).await.unwrap();
    assert_eq!(
        store
            .audit_log(Some("retention:images"), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    // Both frames of an image shown twice are marked.
    store
        .mark_images_purged(&expected[2..3], t(603))
        .await
        .unwrap();
    let log = store.audit_log(Some("retention:images"), 10).await.unwrap();
    assert_eq!(
        log[0].entry.after,
        Some(serde_json::json!({"class": "images", "deleted": 1, "frames": 2, "inspections": 1}))
    );
    // Search counts the purged frames; the frames themselves stay.
    for (id, purged) in [(old, 1), (sharing, 1), (twice, 2), (newer, 0), (charged, 0)] {
        let item = list_item(&store, id).await;
        assert_eq!((item.images_purged, item.erased_at), (purged, None), "{id}");
    }
    assert_eq!(frame_images(&store, old).await, vec![image(1), image(2)]);
    // Once the newer inspection is old too, the image they share goes; the
    // charged inspection's images still stay.
    let without_charged = vec![
        image_ref(old, image(2)),
        image_ref(twice, image(6)),
        image_ref(newer, image(2)),
        image_ref(newer, image(3)),
    ];
    assert_eq!(
        store.expired_images(t(5000), 100, false).await.unwrap(),
        without_charged
    );
    // When the inspections themselves go (the findings rule), the charged
    // one's images go with them.
    let with_charged = store.expired_images(t(5000), 100, true).await.unwrap();
    assert!(
        with_charged.iter().any(|r| r.inspection_id == charged),
        "{with_charged:?}"
    );
    assert!(without_charged.iter().all(|r| with_charged.contains(r)));
}

pub async fn purge_of_findings_deletes_inspections_whole_in_batches(store: Arc<dyn Store>) {
    use InspectionKind::{Pickup, Return};
    let a = processed_with(&store, Pickup, 1, t(0), Some("OLD1"), &[image(1)]).await;
    let b = processed_with(&store, Pickup, 4, t(10), Some("OLD2"), &[image(2)]).await;
    let c = processed_with(&store, Return, 7, t(20), Some("OLD1"), &[image(3)]).await;
    // Abandoned: started, never completed.
    let abandoned = inspection_of(Return, 10, t(30));
    store.record_events(&abandoned[..2], t(31)).await.unwrap();
    let d = abandoned[0].inspection_id.unwrap();
    let fresh = processed_with(&store, Return, 13, t(1000), Some("NEW1"), &[image(4)]).await;
    store
        .record_report(&report(a, "template", t(11)))
        .await
        .unwrap();
    store
        .record_report(&report(fresh, "template", t(1011)))
        .await
        .unwrap();
    // A command result naming an old inspection goes with it.
    let mut answer = command_result(100);
    answer.inspection_id = Some(a);
    store.record_events(&[answer.clone()], t(12)).await.unwrap();
    let events = store.counts().await.unwrap().events;
    assert_eq!(events, 3 * 4 + 2 + 1);

    // The two oldest, whole, and the vehicle only they showed.
    assert_eq!(
        store.purge(DataClass::Findings, t(500), 2).await.unwrap(),
        2
    );
    for id in [a, b] {
        assert_eq!(store.inspection(id).await.unwrap(), None);
        assert!(store.inspection_events(id).await.unwrap().is_empty());
        assert!(store.inspection_jobs(id).await.unwrap().is_empty());
        assert!(store.reports(id).await.unwrap().is_empty());
        assert_eq!(store.inspection_result(id).await.unwrap(), None);
    }
    assert_eq!(store.event(answer.msg_id).await.unwrap(), None);
    assert_eq!(store.counts().await.unwrap().events, events - 7);
    assert_eq!(store.vehicle("OLD2").await.unwrap(), None);
    assert!(
        store.vehicle("OLD1").await.unwrap().is_some(),
        "c still shows it"
    );
    let log = store
        .audit_log(Some("retention:findings"), 10)
        .await
        .unwrap();
    assert_eq!(log.len(), 1);
    let entry = &log[0].entry;
    assert_eq!(
        (entry.action.as_str(), entry.actor.as_str()),
        ("retention.purge", "system:retention")
    );
    assert_eq!(
        entry.after,
        Some(serde_json::json!({
            "class": "findings", "deleted": 2, "before": "2026-11-02T09:08:20.000000Z"
        }))
    );
    // The next batch: the next two, the abandoned one included.
    assert_eq!(
        store.purge(DataClass::Findings, t(500), 2).await.unwrap(),
        2
    );
    for id in [c, d] {
        assert_eq!(store.inspection(id).await.unwrap(), None);
    }
    assert_eq!(store.vehicle("OLD1").await.unwrap(), None);
    // Nothing left that old: no audit entry.
    assert_eq!(
        store.purge(DataClass::Findings, t(500), 2).await.unwrap(),
        0
    );
    assert_eq!(
        store
            .audit_log(Some("retention:findings"), 10)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(search_ids(&store, everything()).await, vec![fresh]);
    assert_eq!(store.reports(fresh).await.unwrap().len(), 1);
    assert!(store.vehicle("NEW1").await.unwrap().is_some());
    assert_eq!(store.counts().await.unwrap().events, 3);
    // A limit of 0 deletes nothing; images are not purged here.
    assert_eq!(
        store.purge(DataClass::Findings, t(5000), 0).await.unwrap(),
        0
    );
    assert_eq!(search_ids(&store, everything()).await, vec![fresh]);
    let (code, message) = refused(store.purge(DataClass::Images, t(5000), 10).await);
    assert_eq!(code, "data");
    assert!(message.contains("expired_images"), "{message}");
}

pub async fn purge_of_reports_and_audit_in_batches(store: Arc<dyn Store>) {
    use InspectionKind::Return;
    let old = complete(&store, Return, 1, t(0), t(1)).await;
    let older_report_later = complete(&store, Return, 4, t(10), t(11)).await;
    let fresh = complete(&store, Return, 7, t(1000), t(1001)).await;
    let r1 = report(old, "template", t(200));
    let r2 = report(old, "llm", t(100));
    let r3 = report(older_report_later, "template", t(50));
    let r4 = report(fresh, "template", t(1100));
    for r in [&r1, &r2, &r3, &r4] {
        store.record_report(r).await.unwrap();
    }
    // By the inspection's time, then the report's.
    assert_eq!(store.purge(DataClass::Reports, t(500), 2).await.unwrap(), 2);
    assert_eq!(store.reports(old).await.unwrap(), vec![]);
    assert_eq!(
        store.reports(older_report_later).await.unwrap(),
        vec![r3.clone()]
    );
    assert_eq!(store.purge(DataClass::Reports, t(500), 2).await.unwrap(), 1);
    assert_eq!(store.purge(DataClass::Reports, t(500), 2).await.unwrap(), 0);
    assert_eq!(store.reports(fresh).await.unwrap(), vec![r4]);
    assert_eq!(
        search_ids(&store, everything()).await.len(),
        3,
        "inspections stay"
    );
    let log = store
        .audit_log(Some("retention:reports"), 10)
        .await
        .unwrap();
    let deleted: Vec<_> = log
        .iter()
        .map(|a| a.entry.after.as_ref().unwrap()["deleted"].clone())
        .collect();
    assert_eq!(deleted, vec![serde_json::json!(1), serde_json::json!(2)]);

    // Audit entries by their own time, oldest first.
    for (second, target) in [(3, "x:3"), (1, "x:1"), (2, "x:2"), (600, "x:600")] {
        store
            .audit(&AuditEntry {
                at: t(second),
                actor: "user:alice".into(),
                action: "test.entry".into(),
                target: target.into(),
                before: None,
                after: None,
            })
            .await
            .unwrap();
    }
    assert_eq!(store.purge(DataClass::Audit, t(500), 2).await.unwrap(), 2);
    let left: Vec<String> = store
        .audit_log(None, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.entry.action == "test.entry")
        .map(|a| a.entry.target)
        .collect();
    assert_eq!(left, vec!["x:600", "x:3"]);
    assert_eq!(store.purge(DataClass::Audit, t(500), 2).await.unwrap(), 1);
    assert_eq!(store.purge(DataClass::Audit, t(500), 2).await.unwrap(), 0);
    let log = store.audit_log(None, 100).await.unwrap();
    assert!(log.iter().all(|a| a.entry.at >= t(500)), "{log:?}");
    assert!(log.iter().any(|a| a.entry.target == "x:600"));
    // The purge's own entries are new (the clock's time): kept.
    let purges = store.audit_log(Some("retention:audit"), 10).await.unwrap();
    assert_eq!(purges.len(), 2);
    assert!(purges.iter().all(|a| a.entry.at > t(500)));
    assert_eq!(purges[1].entry.after.as_ref().unwrap()["deleted"], 2);
    assert_eq!(
        store
            .audit_log(Some("retention:reports"), 10)
            .await
            .unwrap()
            .len(),
        2
    );
}

/// An empty in-memory object store for `seed_pair`'s pictures.
fn object_store() -> Arc<dyn object_store::ObjectStore> {
    Arc::new(object_store::memory::InMemory::new())
}

pub async fn erasure_by_plate_redacts_every_trace(store: Arc<dyn Store>) {
    use InspectionKind::{Pickup, Return};
    let images = object_store();
    let a = seed_pair(&store, &images, "site-a", "bay-1", "MAB1234", 1, t(0)).await;
    let b = seed_pair(&store, &images, "site-b", "bay-1", "XYZ987", 1, t(0)).await;
    // Another car's inspection showing one of the return's images.
    let other = processed_with(
        &store,
        Pickup,
        100,
        t(200_000),
        Some("OTHER1"),
        std::slice::from_ref(&a.front),
    )
    .await;
    // No plate voted, but one frame read it.
    let read_only = complete(&store, Return, 103, t(300_000), t(300_005)).await;
    let mut result = plain_result(read_only, t(300_010), "UNUSED");
    result.plate = None;
    result.frames = frames_of(&[image(9)]);
    result.plate_reads = vec![PlateReadRecord {
        camera: cam("cam-0"),
        sha256: image(9),
        outcome: PlateOutcome::Read,
        bbox: Some(BBox::new(10.0, 20.0, 90.0, 40.0)),
        box_source: Some(PlateBoxSource::Detector),
        raw_text: Some("M AB 1234".into()),
        plate: Some("MAB1234".into()),
        country: Some("DE".into()),
        confidence: 0.6,
    }];
    store.record_result(&result).await.unwrap();
    // Staff wrote the plate in a note.
    let note = "customer MAB1234 disputes this";
    store
        .review_finding(&decision(
            a.ret,
            a.new_dent,
            FindingDecision::Annotate,
            Some(note),
            "user:alice",
            t(400_000),
        ))
        .await
        .unwrap();

    let plan = store
        .erasure_plan(&ErasureSelector::Plate("MAB1234".into()))
        .await
        .unwrap();
    assert_eq!(plan.inspections, vec![a.pickup, a.ret, read_only]);
    assert_eq!(plan.plates, vec!["MAB1234".to_owned()]);
    let mut expected: Vec<String> = frame_images(&store, a.pickup).await;
    expected.extend(frame_images(&store, a.ret).await);
    expected.push(image(9));
    expected.retain(|sha| *sha != a.front);
    expected.sort();
    assert_eq!(plan.images, expected, "the image another car shows is kept");
    assert_eq!(plan.images.len(), 2 + 3 + 1);

    let erasure = Erasure {
        id: Uuid::now_v7(),
        selector: "plate".into(),
        inspections: plan.inspections.clone(),
        images_deleted: plan.images.len() as u32,
        reason: "DSAR for MAB1234, ticket 4711".into(),
        actor: "user:dpo".into(),
        at: t(500_000),
    };
    store.erase(&plan, &erasure).await.unwrap();

    for (id, purged) in [(a.pickup, 2), (a.ret, 3), (read_only, 1)] {
        let item = list_item(&store, id).await;
        assert_eq!(item.erased_at, Some(t(500_000)));
        assert_eq!(item.record.plate, None);
        assert_eq!(item.images_purged, purged, "{id}");
        let result = store.inspection_result(id).await.unwrap().unwrap();
        assert_eq!(result.plate, None);
        assert!(!result.plate_reads.is_empty());
        for read in &result.plate_reads {
            assert_eq!(
                (&read.raw_text, &read.plate, &read.country, read.bbox),
                (&None, &None, &None, None)
            );
        }
        assert!(store.reports(id).await.unwrap().is_empty());
        let log = store
            .audit_log(Some(&format!("inspection:{id}")), 100)
            .await
            .unwrap();
        assert!(!log.is_empty());
        for entry in &log {
            let text = format!("{:?} {:?}", entry.entry.before, entry.entry.after);
            assert!(!text.contains("MAB1234"), "{text}");
        }
    }
    // Redacted where the plate was, the rest of the entries as they were.
    let log = store
        .audit_log(Some(&format!("inspection:{}", a.ret)), 100)
        .await
        .unwrap();
    let processed = log
        .iter()
        .find(|e| e.entry.action == "inspection.processed")
        .unwrap();
    assert_eq!(processed.entry.after.as_ref().unwrap()["plate"], "[erased]");
    assert_eq!(processed.entry.after.as_ref().unwrap()["new"], 1);
    let annotated = log
        .iter()
        .find(|e| e.entry.action == "finding.annotate")
        .unwrap();
    assert_eq!(
        annotated.entry.after.as_ref().unwrap()["note"],
        "customer [erased] disputes this"
    );
    let review = store.review_record(a.ret).await.unwrap();
    assert_eq!(
        review.actions[0].note.as_deref(),
        Some("customer [erased] disputes this")
    );
    assert_eq!(store.vehicle("MAB1234").await.unwrap(), None);
    assert!(
        search_ids(
            &store,
            InspectionQuery {
                plate: Some("MAB1234".into()),
                ..everything()
            }
        )
        .await
        .is_empty()
    );
    // The other car, and the inspection sharing an image, are untouched.
    let item = list_item(&store, b.ret).await;
    assert_eq!(item.record.plate.as_deref(), Some("XYZ987"));
    assert_eq!((item.erased_at, item.images_purged), (None, 0));
    assert!(store.vehicle("XYZ987").await.unwrap().is_some());
    assert_eq!(store.reports(b.ret).await.unwrap().len(), 1);
    assert_eq!(list_item(&store, other).await.images_purged, 0);
    // The erasure's own entry, without the plate (even from the reason).
    let log = store
        .audit_log(Some(&format!("erasure:{}", erasure.id)), 10)
        .await
        .unwrap();
    assert_eq!(log.len(), 1);
    let entry = &log[0].entry;
    assert_eq!(
        (entry.action.as_str(), entry.actor.as_str(), entry.at),
        ("gdpr.erasure", "user:dpo", t(500_000))
    );
    assert_eq!(entry.before, None);
    assert_eq!(
        entry.after,
        Some(serde_json::json!({
            "erasure": erasure.id,
            "selector": "plate",
            "inspections": plan.inspections,
            "images_deleted": 6,
            "reason": "DSAR for [erased], ticket 4711",
        }))
    );
    // Purged images are not handed out by retention again.
    let expired = store
        .expired_images(t(10_000_000), 1000, false)
        .await
        .unwrap();
    assert!(expired.iter().all(|r| !plan.images.contains(&r.sha256)));
    assert!(expired.iter().any(|r| r.sha256 == a.front), "{expired:?}");
    // Nothing is left to erase by that plate; an unknown inspection is none.
    let (code, message) = refused(
        store
            .erasure_plan(&ErasureSelector::Plate("MAB1234".into()))
            .await,
    );
    assert_eq!(
        (code, message.as_str()),
        ("not_found", "not found: no inspection of plate MAB1234")
    );
    let stranger = Uuid::now_v7();
    let (code, message) = refused(
        store
            .erasure_plan(&ErasureSelector::Inspection(stranger))
            .await,
    );
    assert_eq!(
        (code, message),
        ("not_found", format!("not found: no inspection {stranger}"))
    );
    // A late result never writes the plate back.
    let (code, message) = refused(
        store
            .record_result(&plain_result(a.pickup, t(600_000), "MAB1234"))
            .await,
    );
    assert_eq!(code, "conflict");
    assert!(message.contains("erased"), "{message}");
    assert_eq!(
        store.inspection(a.pickup).await.unwrap().unwrap().plate,
        None
    );
}

pub async fn erasure_of_one_inspection_keeps_what_others_need(store: Arc<dyn Store>) {
    let images = object_store();
    let a = seed_pair(&store, &images, "site-a", "bay-1", "MAB1234", 1, t(0)).await;
    let plan = store
        .erasure_plan(&ErasureSelector::Inspection(a.pickup))
        .await
        .unwrap();
    let mut pickup_images = frame_images(&store, a.pickup).await;
    pickup_images.sort();
    assert_eq!(
        plan,
        ErasurePlan {
            inspections: vec![a.pickup],
            plates: vec!["MAB1234".into()],
            images: pickup_images,
        }
    );
    let erasure = |at: DateTime<Utc>, plan: &ErasurePlan| Erasure {
        id: Uuid::now_v7(),
        selector: "inspection".into(),
        inspections: plan.inspections.clone(),
        images_deleted: plan.images.len() as u32,
        reason: "wrong car photographed".into(),
        actor: "user:dpo".into(),
        at,
    };
    store
        .erase(&plan, &erasure(t(500_000), &plan))
        .await
        .unwrap();
    let pickup = list_item(&store, a.pickup).await;
    assert_eq!(
        (pickup.record.plate, pickup.erased_at, pickup.images_purged),
        (None, Some(t(500_000)), 2)
    );
    // The return keeps its plate, vehicle, report, images and audit.
    let ret = list_item(&store, a.ret).await;
    assert_eq!(
        (
            ret.record.plate.as_deref(),
            ret.erased_at,
            ret.images_purged
        ),
        (Some("MAB1234"), None, 0)
    );
    assert!(store.vehicle("MAB1234").await.unwrap().is_some());
    assert_eq!(store.reports(a.ret).await.unwrap().len(), 1);
    let log = store
        .audit_log(Some(&format!("inspection:{}", a.ret)), 10)
        .await
        .unwrap();
    assert_eq!(log[0].entry.after.as_ref().unwrap()["plate"], "MAB1234");
    let log = store
        .audit_log(Some(&format!("inspection:{}", a.pickup)), 10)
        .await
        .unwrap();
    assert_eq!(log[0].entry.after.as_ref().unwrap()["plate"], "[erased]");
    // Again: nothing personal is left, and the first erasure's time stays.
    let again = store
        .erasure_plan(&ErasureSelector::Inspection(a.pickup))
        .await
        .unwrap();
    assert_eq!(
        again,
        ErasurePlan {
            inspections: vec![a.pickup],
            plates: vec![],
            images: vec![],
        }
    );
    store
        .erase(&again, &erasure(t(600_000), &again))
        .await
        .unwrap();
    assert_eq!(
        list_item(&store, a.pickup).await.erased_at,
        Some(t(500_000))
    );
    let erasures = store
        .audit_log(None, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.entry.action == "gdpr.erasure")
        .count();
    assert_eq!(erasures, 2);
    // By plate now: the return only; then its vehicle goes.
    let plan = store
        .erasure_plan(&ErasureSelector::Plate("MAB1234".into()))
        .await
        .unwrap();
    assert_eq!(plan.inspections, vec![a.ret]);
    store
        .erase(&plan, &erasure(t(700_000), &plan))
        .await
        .unwrap();
    assert_eq!(store.vehicle("MAB1234").await.unwrap(), None);
    assert_eq!(list_item(&store, a.ret).await.images_purged, 4);
}

/// A command as the API stores it before publishing.
fn command_of(kind: &str, requested_at: DateTime<Utc>, device: &DeviceId) -> CommandRecord {
    let cmd_id = Uuid::now_v7();
    CommandRecord {
        cmd_id,
        site: site(),
        device: device.clone(),
        command: serde_json::json!({
            "v": 1, "cmd_id": cmd_id, "at": "2026-11-02T09:00:00Z", "type": kind,
        }),
        kind: kind.into(),
        requested_by: "user:alice".into(),
        requested_at,
        expires_at: Some(requested_at + Duration::seconds(120)),
        published_at: None,
        outcome: None,
        detail: None,
        result_at: None,
    }
}

/// The device's `command_result` for `cmd`, at `t(seq)`.
fn result_of(cmd: Uuid, outcome: CommandOutcome, detail: Option<&str>, seq: u64) -> Event {
    let mut event = command_result(seq);
    if let EventBody::CommandResult {
        cmd_id,
        outcome: o,
        detail: d,
        ..
    } = &mut event.event
    {
        *cmd_id = cmd;
        *o = outcome;
        *d = detail.map(str::to_owned);
    }
    event
}

pub async fn commands_round_trip_with_the_first_result_kept(store: Arc<dyn Store>) {
    let start = command_of("start_inspection", t(10), &device());
    store.record_command(&start).await.unwrap();
    assert_eq!(
        store.command(start.cmd_id).await.unwrap(),
        Some(start.clone())
    );
    assert_eq!(store.command(Uuid::now_v7()).await.unwrap(), None);
    // Audited in the same call.
    let target = format!("device:{}/{}", site(), device());
    let log = store.audit_log(Some(&target), 10).await.unwrap();
    assert_eq!(log.len(), 1);
    let entry = &log[0].entry;
    assert_eq!(
        (entry.action.as_str(), entry.actor.as_str(), entry.at),
        ("device.command", "user:alice", t(10))
    );
    assert_eq!(
        entry.after,
        Some(serde_json::json!({
            "cmd_id": start.cmd_id,
            "kind": "start_inspection",
            "expires_at": "2026-11-02T09:02:10.000000Z",
        }))
    );
    // The same command twice is refused whole.
    assert!(store.record_command(&start).await.is_err());
    assert_eq!(store.audit_log(Some(&target), 10).await.unwrap().len(), 1);
    // Published.
    store
        .mark_command_published(start.cmd_id, t(11))
        .await
        .unwrap();
    let stranger = Uuid::now_v7();
    let (code, message) = refused(store.mark_command_published(stranger, t(11)).await);
    assert_eq!(
        (code, message),
        ("not_found", format!("not found: no command {stranger}"))
    );
    // The device's answer, stored as the bridge stores it.
    let executed = result_of(start.cmd_id, CommandOutcome::Executed, None, 12);
    assert_eq!(
        store
            .record_events(std::slice::from_ref(&executed), t(12))
            .await
            .unwrap(),
        vec![Recorded::Inserted]
    );
    let answered = CommandRecord {
        published_at: Some(t(11)),
        outcome: Some("executed".into()),
        detail: None,
        result_at: Some(t(12)),
        ..start.clone()
    };
    assert_eq!(
        store.command(start.cmd_id).await.unwrap(),
        Some(answered.clone())
    );
    // A later `duplicate` (the command redelivered) and the same event again
    // change nothing.
    let duplicate = result_of(
        start.cmd_id,
        CommandOutcome::Duplicate,
        Some("already executed"),
        13,
    );
    assert_eq!(
        store
            .record_events(&[duplicate.clone(), executed.clone()], t(13))
            .await
            .unwrap(),
        vec![Recorded::Inserted, Recorded::Duplicate]
    );
    assert_eq!(store.command(start.cmd_id).await.unwrap(), Some(answered));
    assert!(store.event(duplicate.msg_id).await.unwrap().is_some());
    // Refused, with the device's reason, before it was marked published.
    let stop = command_of("stop_inspection", t(20), &device());
    store.record_command(&stop).await.unwrap();
    store
        .record_events(
            &[result_of(
                stop.cmd_id,
                CommandOutcome::Refused,
                Some("no inspection running"),
                21,
            )],
            t(21),
        )
        .await
        .unwrap();
    let stored = store.command(stop.cmd_id).await.unwrap().unwrap();
    assert_eq!(
        (
            stored.outcome.as_deref(),
            stored.detail.as_deref(),
            stored.result_at,
            stored.published_at
        ),
        (
            Some("refused"),
            Some("no inspection running"),
            Some(t(21)),
            None
        )
    );
    // Another device cannot answer for it.
    let capture = command_of("capture_now", t(30), &device());
    store.record_command(&capture).await.unwrap();
    let mut forged = result_of(capture.cmd_id, CommandOutcome::Executed, None, 31);
    forged.device = DeviceId::new("bay-9").unwrap();
    store.record_events(&[forged], t(31)).await.unwrap();
    assert_eq!(store.command(capture.cmd_id).await.unwrap(), Some(capture));
    // An answer to a command this store never sent is an event like any other.
    let unknown = result_of(Uuid::now_v7(), CommandOutcome::Expired, None, 40);
    assert_eq!(
        store
            .record_events(std::slice::from_ref(&unknown), t(40))
            .await
            .unwrap(),
        vec![Recorded::Inserted]
    );
    assert_eq!(
        store.event(unknown.msg_id).await.unwrap().unwrap().event,
        unknown
    );
}

pub async fn device_commands_newest_first(store: Arc<dyn Store>) {
    let other = DeviceId::new("bay-9").unwrap();
    let reload = command_of("reload_config", t(10), &device());
    let capture = command_of("capture_now", t(30), &device());
    let stop = command_of("stop_inspection", t(20), &device());
    let elsewhere = command_of("capture_now", t(40), &other);
    for c in [&reload, &capture, &stop, &elsewhere] {
        store.record_command(c).await.unwrap();
    }
    let ids = |list: Vec<CommandRecord>| list.into_iter().map(|c| c.cmd_id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.device_commands(&site(), &device(), 10).await.unwrap()),
        vec![capture.cmd_id, stop.cmd_id, reload.cmd_id]
    );
    assert_eq!(
        ids(store.device_commands(&site(), &device(), 2).await.unwrap()),
        vec![capture.cmd_id, stop.cmd_id]
    );
    assert_eq!(
        store.device_commands(&site(), &other, 10).await.unwrap(),
        vec![elsewhere]
    );
    let nowhere = SiteId::new("site-z").unwrap();
    assert!(
        store
            .device_commands(&nowhere, &device(), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

// ---- SQLite -------------------------------------------------------------

async fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig::sqlite(&dir.path().join("nested/folder/central.sqlite3"));
    let store = open_store(&config).await.expect("open sqlite store");
    assert_eq!(store.backend(), "sqlite");
    (store, dir)
}

/// `n` stores (pools) on one new SQLite file.
async fn sqlite_many(n: usize) -> (Vec<Arc<dyn Store>>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig::sqlite(&dir.path().join("central.sqlite3"));
    let mut stores = Vec::new();
    for _ in 0..n {
        stores.push(open_store(&config).await.expect("open sqlite store"));
    }
    (stores, dir)
}

// ---- PostgreSQL ---------------------------------------------------------

/// A fresh database on the test process's PostgreSQL.
async fn postgres() -> (Arc<dyn Store>, ()) {
    let (mut stores, guard) = postgres_many(1).await;
    (stores.remove(0), guard)
}

/// `n` stores (pools) on one fresh database.
async fn postgres_many(n: usize) -> (Vec<Arc<dyn Store>>, ()) {
    let url = PgServer::shared().database().await;
    let config = StoreConfig {
        url,
        ..StoreConfig::default()
    };
    let mut stores = Vec::new();
    for _ in 0..n {
        let store = open_store(&config).await.expect("open postgres store");
        assert_eq!(store.backend(), "postgres");
        stores.push(store);
    }
    (stores, ())
}

macro_rules! conformance {
    ($factory:ident, $many:ident: $($check:ident),* ; concurrent: $($multi:ident),* $(,)?) => {
        mod $factory {
            $(
                #[tokio::test]
                async fn $check() {
                    let (store, _guard) = super::$factory().await;
                    super::$check(store).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $multi() {
                    let (stores, _guard) = super::$many(4).await;
                    super::$multi(stores).await;
                }
            )*
        }
    };
}

// One list of checks, run on every backend: a check added here runs on both.
macro_rules! on_every_backend {
    ($($backend:ident, $many:ident);*) => {
        $(
            conformance!($backend, $many:
                devices_are_listed_in_order_and_summarised,
                same_event_twice_is_stored_once,
                same_event_twice_in_one_batch,
                an_empty_batch_records_nothing,
                inspection_lifecycle_in_order_and_out_of_order,
                command_results_need_no_inspection,
                status_and_telemetry_newer_wins,
                device_events_in_seq_order_with_paging,
                dead_letters_are_kept_and_truncated,
                counts_and_ping,
                inspection_status_lifecycle,
                incomplete_inspections_close_once_the_board_has_nothing_more,
                result_round_trip_and_replacement,
                reports_round_trip_newest_first,
                vehicles_and_latest_pickup,
                latest_pickup_is_judged_on_centrals_clock,
                audit_log_by_target_newest_first,
                enqueue_is_idempotent,
                claims_oldest_due_first,
                expired_lease_is_claimed_again,
                failures_retry_then_dead,
                lease_running_out_on_the_last_attempt_is_dead,
                defer_does_not_use_an_attempt,
                job_stats_at_a_glance,
                clock_times_are_kept_to_the_microsecond,
                search_narrows_by_every_filter,
                search_pages_both_ways_without_repeats_or_skips,
                review_decisions_can_change_and_notes_keep_status,
                staff_writes_are_refused_with_not_found_or_conflict,
                staff_writes_are_audited_with_before_and_after,
                record_result_is_refused_once_review_began,
                vehicles_and_sites,
                expired_images_spare_newer_and_charged_inspections,
                purge_of_findings_deletes_inspections_whole_in_batches,
                purge_of_reports_and_audit_in_batches,
                erasure_by_plate_redacts_every_trace,
                erasure_of_one_inspection_keeps_what_others_need,
                commands_round_trip_with_the_first_result_kept,
                device_commands_newest_first;
                concurrent:
                parallel_workers_claim_each_job_once,
                parallel_bridges_enqueue_each_inspection_once,
                killed_worker_job_is_taken_over,
            );
        )*
    };
}

on_every_backend!(sqlite, sqlite_many; postgres, postgres_many);

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
        ("mysql://db/central", "unknown database scheme"),
        ("postgres:db", "unknown database scheme"),
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
        job_max_attempts: 0,
        ..StoreConfig::default()
    };
    assert_eq!(bad.problems("store", false).len(), 3);
    let postgres = StoreConfig {
        url: "postgresql://central@db/central".into(),
        ..StoreConfig::default()
    };
    assert!(postgres.problems("store", false).is_empty());
    // max_size_bytes is SQLite's; PostgreSQL refuses it instead of ignoring it.
    let postgres = StoreConfig {
        max_size_bytes: Some(1 << 30),
        job_max_attempts: 101,
        ..postgres
    };
    let problems = postgres.problems("store", false);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("SQLite only"), "{problems:?}");
    let err = match open_store(&postgres).await {
        Ok(_) => panic!("opened with max_size_bytes"),
        Err(e) => e,
    };
    assert_eq!(err.code(), "config", "{err}");
}

// ---- PostgreSQL failures ------------------------------------------------

/// Nothing listening: `unavailable` (transient), not a crash or a config error.
#[tokio::test]
async fn postgres_wrong_port_is_unavailable() {
    let port = support::mosquitto::free_port();
    let config = StoreConfig {
        url: format!("postgres://test@127.0.0.1:{port}/nothing"),
        busy_timeout_ms: 1000,
        ..StoreConfig::default()
    };
    let err = match PgStore::open(&config).await {
        Ok(_) => panic!("opened a database on a closed port"),
        Err(e) => e,
    };
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(err.is_transient());
}

/// The server goes away: calls fail with `unavailable`; it comes back: the
/// same store works again (the pool reconnects) with the data intact.
#[tokio::test]
async fn postgres_outage_is_unavailable_then_recovers() {
    let mut server = PgServer::start();
    let config = StoreConfig {
        url: server.database().await,
        busy_timeout_ms: 1000,
        ..StoreConfig::default()
    };
    let store = PgStore::open(&config).await.expect("open");
    let before = inspection(1);
    store.record_events(&before, t(0)).await.unwrap();
    server.stop();
    let err = store.ping().await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let during = inspection(10);
    let err = store.record_events(&during, t(1)).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let err = store.claim_job("w", LEASE, t(2)).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    server.restart();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match store.ping().await {
            Ok(()) => break,
            Err(e) if std::time::Instant::now() > deadline => {
                panic!("the store did not recover: {e}; {}", server.log())
            }
            Err(e) => assert!(e.is_transient(), "{e:?}"),
        }
        tokio::task::yield_now().await;
    }
    // The refused batch was not stored; it can be stored now.
    assert_eq!(store.counts().await.unwrap().events, 3);
    store.record_events(&during, t(3)).await.unwrap();
    assert_eq!(store.counts().await.unwrap().events, 6);
    let job = store.claim_job("w", LEASE, t(10)).await.unwrap().unwrap();
    assert_eq!(Some(job.inspection_id), before[0].inspection_id);
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

// ---- Upgrades -----------------------------------------------------------

/// The transport issue's schema (migration 0001 only) with one complete and
/// one incomplete inspection, as a store of that time left them.
const OLD_ROWS: [&str; 2] = [
    "INSERT INTO inspections (id, site, device, kind, started_at, completed_at,
        completion_reason, frames_expected, frames_received, first_seen_at, updated_at)
     VALUES ('0190a000-0000-7000-8000-000000000001', 'site-1', 'bay-1', 'return',
        '2026-11-02T09:00:00.000000Z', '2026-11-02T09:00:05.000000Z', 'vehicle_left', 1, 1,
        '2026-11-02T09:00:00.000000Z', '2026-11-02T09:00:06.000000Z')",
    "INSERT INTO inspections (id, site, device, kind, started_at, frames_received,
        first_seen_at, updated_at)
     VALUES ('0190a000-0000-7000-8000-000000000002', 'site-1', 'bay-1', 'pickup',
        '2026-11-02T09:01:00.000000Z', 0,
        '2026-11-02T09:01:00.000000Z', '2026-11-02T09:01:00.000000Z')",
];

async fn check_upgraded(store: &dyn Store) {
    let complete = Uuid::parse_str("0190a000-0000-7000-8000-000000000001").unwrap();
    let incomplete = Uuid::parse_str("0190a000-0000-7000-8000-000000000002").unwrap();
    let record = store.inspection(complete).await.unwrap().unwrap();
    assert_eq!(record.status, InspectionStatus::Queued);
    let jobs = store.inspection_jobs(complete).await.unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!((jobs[0].state, jobs[0].max_attempts), (JobState::Queued, 5));
    let record = store.inspection(incomplete).await.unwrap().unwrap();
    assert_eq!(record.status, InspectionStatus::Receiving);
    assert!(store.inspection_jobs(incomplete).await.unwrap().is_empty());
    let job = store.claim_job("w", LEASE, t(3600)).await.unwrap().unwrap();
    assert_eq!((job.id, job.inspection_id), (jobs[0].id, complete));
    assert_eq!(store.claim_job("w", LEASE, t(3600)).await.unwrap(), None);
}

#[tokio::test]
async fn sqlite_upgrade_queues_inspections_completed_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.sqlite3");
    {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        let mut old = sqlx::migrate!("./migrations/sqlite");
        old.migrations = std::borrow::Cow::Owned(old.migrations[..1].to_vec());
        old.run(&pool).await.unwrap();
        for row in OLD_ROWS {
            sqlx::query(row).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }
    let store = SqliteStore::open(&StoreConfig::sqlite(&path))
        .await
        .unwrap();
    check_upgraded(&store).await;
}

#[tokio::test]
async fn postgres_upgrade_queues_inspections_completed_before_it() {
    let url = PgServer::shared().database().await;
    {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let mut old = sqlx::migrate!("./migrations/postgres");
        old.migrations = std::borrow::Cow::Owned(old.migrations[..1].to_vec());
        old.run(&pool).await.unwrap();
        for row in OLD_ROWS {
            sqlx::query(row).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }
    let store = PgStore::open(&StoreConfig {
        url,
        ..StoreConfig::default()
    })
    .await
    .unwrap();
    check_upgraded(&store).await;
}
