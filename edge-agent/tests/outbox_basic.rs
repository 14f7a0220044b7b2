//! The outbox's contract on a real SQLite file: append, list, ack, sequence
//! numbers across restarts, image dedup, and refusing what is not valid.

#[path = "outbox_support/mod.rs"]
mod support;

use edge_agent::outbox::{EntryKind, Outbox, OutboxError, OutboxMetrics, Priority};
use inspection_core::wire::{Event, decode};
use support::{config, event, image, metric, open};
use uuid::Uuid;

#[test]
fn append_pending_ack_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let mut o = open(&cfg);
    assert!(o.report.recovered.is_none());
    assert_eq!((o.report.entries, o.report.last_seq), (0, 0));

    let inspection = Uuid::now_v7();
    let (sha, jpeg) = image(1, 200_000);
    let img = o
        .outbox
        .append_image(&sha, &jpeg, Priority::frame(1), inspection)
        .unwrap();
    assert!(!img.duplicate);
    let a = o.outbox.append_event(event).unwrap();
    let b = o.outbox.append_event(event).unwrap();
    assert_eq!((a.seq, b.seq), (1, 2));

    let pending = o.outbox.pending(10).unwrap();
    assert_eq!(pending.len(), 3);
    assert!(pending.windows(2).all(|w| w[0].id < w[1].id));
    match &pending[0].kind {
        EntryKind::Image { sha256, jpeg: got } => {
            assert_eq!(sha256, &sha);
            assert_eq!(got, &jpeg);
        }
        other => panic!("expected the image first, got {other:?}"),
    }
    assert_eq!(pending[0].inspection_id, Some(inspection));
    assert_eq!(pending[0].priority, Priority::frame(1));
    match &pending[1].kind {
        EntryKind::Event {
            msg_id,
            seq,
            payload,
        } => {
            assert_eq!((*msg_id, *seq), (a.msg_id, 1));
            // The stored payload is the wire encoding, ready to publish.
            let decoded: Event = decode(payload).unwrap();
            assert_eq!(decoded, event(1, a.msg_id));
        }
        other => panic!("expected an event, got {other:?}"),
    }
    assert_eq!(pending[1].priority, Priority::EVENT);

    let stats = o.outbox.stats().unwrap();
    assert_eq!(stats.entries, 3);
    let event_len = match &pending[1].kind {
        EntryKind::Event { payload, .. } => payload.len() as u64,
        _ => unreachable!(),
    };
    assert_eq!(stats.bytes, 200_000 + 2 * event_len);
    assert_eq!(
        metric(&o.registry, "edge_outbox_entries"),
        3.0,
        "gauge follows"
    );

    // Acks: unknown ids are ignored, each entry goes once.
    assert_eq!(
        o.outbox
            .ack_events(&[a.msg_id, Uuid::now_v7(), a.msg_id])
            .unwrap(),
        1
    );
    assert!(o.outbox.ack_image(&sha).unwrap());
    assert!(!o.outbox.ack_image(&sha).unwrap());
    let left = o.outbox.pending(10).unwrap();
    assert_eq!(left.len(), 1);
    assert!(matches!(left[0].kind, EntryKind::Event { seq: 2, .. }));
    assert_eq!(o.outbox.stats().unwrap().bytes, event_len);
    assert_eq!(
        metric(&o.registry, "edge_outbox_acked_total{kind=\"event\"}"),
        1.0
    );
    assert_eq!(
        metric(&o.registry, "edge_outbox_acked_total{kind=\"image\"}"),
        1.0
    );
    assert_eq!(
        metric(&o.registry, "edge_outbox_appended_total{kind=\"event\"}"),
        2.0
    );
    assert_eq!(metric(&o.registry, "edge_outbox_bytes"), event_len as f64);
}

#[test]
fn seq_keeps_increasing_across_close_reopen_and_full_acks() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let mut last = 0;
    for round in 0..3 {
        let mut o = open(&cfg);
        assert!(o.report.recovered.is_none());
        assert_eq!(o.report.last_seq, last);
        let mut ids = Vec::new();
        for _ in 0..5 {
            let a = o.outbox.append_event(event).unwrap();
            assert_eq!(a.seq, last + 1, "round {round}");
            last = a.seq;
            ids.push(a.msg_id);
        }
        // Acking everything must not reset the counter.
        assert_eq!(o.outbox.ack_events(&ids).unwrap(), 5);
        assert_eq!(o.outbox.stats().unwrap().entries, 0);
    }
    assert_eq!(last, 15);
}

#[test]
fn the_same_image_twice_is_one_entry_and_keeps_the_higher_priority() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = open(&config(dir.path()));
    let (sha, jpeg) = image(7, 50_000);
    let inspection = Uuid::now_v7();
    let first = o
        .outbox
        .append_image(&sha, &jpeg, Priority::frame(3), inspection)
        .unwrap();
    let again = o
        .outbox
        .append_image(&sha, &jpeg, Priority::frame(1), inspection)
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.id, first.id);
    let lower = o
        .outbox
        .append_image(&sha, &jpeg, Priority::frame(5), inspection)
        .unwrap();
    assert!(lower.duplicate);
    let pending = o.outbox.pending(10).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].priority, Priority::frame(1));
    assert_eq!(o.outbox.stats().unwrap().bytes, 50_000);
    assert_eq!(
        metric(&o.registry, "edge_outbox_appended_total{kind=\"image\"}"),
        1.0
    );
}

#[test]
fn bad_input_is_refused_without_consuming_a_seq() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = open(&config(dir.path()));
    let (sha, _) = image(1, 1000);
    let (_, other) = image(2, 1000);
    let err = o
        .outbox
        .append_image(&sha, &other, Priority::frame(1), Uuid::now_v7())
        .unwrap_err();
    assert!(matches!(err, OutboxError::HashMismatch { .. }), "{err}");

    let err = o
        .outbox
        .append_event(|seq, _| event(seq, Uuid::now_v7()))
        .unwrap_err();
    assert!(
        matches!(err, OutboxError::EventMismatch { seq: 1, .. }),
        "{err}"
    );
    let err = o
        .outbox
        .append_event(|seq, id| {
            let mut e = event(seq, id);
            if let inspection_core::wire::EventBody::InspectionCompleted { frames, .. } =
                &mut e.event
            {
                *frames = 1_000_000; // above MAX_FRAMES_PER_INSPECTION
            }
            e
        })
        .unwrap_err();
    assert!(matches!(err, OutboxError::Wire(_)), "{err}");
    assert_eq!(o.outbox.append_event(event).unwrap().seq, 1);
    assert_eq!(o.outbox.stats().unwrap().entries, 1);
}

#[test]
fn paging_and_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = open(&config(dir.path()));
    for _ in 0..5 {
        o.outbox.append_event(event).unwrap();
    }
    let first = o.outbox.pending(2).unwrap();
    assert_eq!(first.len(), 2);
    let rest = o.outbox.pending_after(Some(first[1].id), 10).unwrap();
    assert_eq!(rest.len(), 3);
    assert!(rest[0].id > first[1].id);
    o.outbox
        .record_attempts(&[first[0].id, first[0].id, rest[2].id])
        .unwrap();
    let all = o.outbox.pending(10).unwrap();
    let attempts: Vec<u32> = all.iter().map(|e| e.attempts).collect();
    assert_eq!(attempts, vec![2, 0, 0, 0, 1]);
}

#[test]
fn a_second_process_holding_the_database_is_busy_not_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let mut o = open(&cfg);
    o.outbox.append_event(event).unwrap();
    let err = Outbox::open(&cfg, OutboxMetrics::new()).unwrap_err();
    assert!(matches!(err, OutboxError::Busy { .. }), "{err}");
    assert!(
        support::files_starting(dir.path(), "outbox.sqlite3.corrupt").is_empty(),
        "a locked database must never be moved aside"
    );
    drop(o);
    let o = open(&cfg);
    assert!(o.report.recovered.is_none());
    assert_eq!(o.report.entries, 1);
}

#[test]
fn stats_convert_to_the_wire_and_age() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = open(&config(dir.path()));
    let empty: inspection_core::wire::OutboxStats = o.outbox.stats().unwrap().into();
    assert_eq!((empty.entries, empty.oldest_age_seconds), (0, 0));
    o.outbox.append_event(event).unwrap();
    let wire: inspection_core::wire::OutboxStats = o.outbox.stats().unwrap().into();
    assert_eq!(wire.entries, 1);
    assert!(wire.bytes > 0);
    assert_eq!(wire.dropped_total, 0);
}
