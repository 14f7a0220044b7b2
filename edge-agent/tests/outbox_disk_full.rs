//! A full disk (SQLITE_FULL, provoked with `PRAGMA max_page_count`): a typed
//! error, counted, nothing committed is lost, and the outbox keeps working
//! once space is freed.

#[path = "outbox_support/mod.rs"]
mod support;

use edge_agent::outbox::{EntryKind, OutboxError, Priority};
use support::{config, event, image, metric, open};
use uuid::Uuid;

#[test]
fn sqlite_full_is_a_typed_counted_error_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let mut o = open(&cfg);
    let inspection = Uuid::now_v7();
    let before = o.outbox.append_event(event).unwrap();
    // Room for a few more pages only: the budget is far away, the "disk" is not.
    let cap = o.outbox.limit_pages_for_tests(40).unwrap();
    assert!(cap >= 40);
    let mut stored = Vec::new();
    let mut full = 0u64;
    for n in 0..20 {
        let (sha, jpeg) = image(n, 30_000);
        match o
            .outbox
            .append_image(&sha, &jpeg, Priority::frame(1), inspection)
        {
            Ok(_) => stored.push(sha),
            Err(OutboxError::DiskFull(e)) => {
                full += 1;
                assert_eq!(
                    e.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DiskFull),
                    "{e}"
                );
            }
            Err(other) => panic!("expected DiskFull, got {other}"),
        }
    }
    assert!(full > 0, "the cap must be reached");
    assert!(!stored.is_empty(), "some images fit before the cap");
    assert_eq!(
        metric(
            &o.registry,
            "edge_outbox_dropped_total{kind=\"image\",reason=\"disk_full\"}"
        ),
        full as f64
    );
    let stats = o.outbox.stats().unwrap();
    assert_eq!(stats.entries, 1 + stored.len() as u64);
    assert_eq!(stats.dropped_total, full);
    // An event fails the same way, and consumes no seq.
    let err = loop {
        match o.outbox.append_event(event) {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, OutboxError::DiskFull(_)), "{err}");
    let last_seq = o.outbox.last_seq();

    // Freeing space makes it usable again, on the same connection.
    assert!(o.outbox.ack_image(&stored[0]).unwrap());
    let (sha, jpeg) = image(100, 20_000);
    o.outbox
        .append_image(&sha, &jpeg, Priority::frame(1), inspection)
        .unwrap();
    stored.remove(0);
    stored.push(sha);
    assert_eq!(o.outbox.append_event(event).unwrap().seq, last_seq + 1);
    drop(o);

    // Nothing committed was lost, and the file is healthy.
    let o = open(&cfg);
    assert!(o.report.recovered.is_none());
    let pending = o.outbox.pending(usize::MAX).unwrap();
    let images: Vec<_> = pending
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::Image { sha256, .. } => Some(sha256.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(images, stored);
    assert!(matches!(
        &pending[0].kind,
        EntryKind::Event { msg_id, .. } if *msg_id == before.msg_id
    ));
    assert_eq!(o.report.last_seq, last_seq + 1);
}
