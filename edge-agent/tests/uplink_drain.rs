//! The drain against real mosquitto (TLS, client certificates, fleet ACL)
//! and a STAND-IN FOR CENTRAL (see `uplink_support`): images go up before
//! the events naming them, entries leave only on central's ack, unacked
//! events are published again, a 503 is retried and a permanent refusal
//! removes the image and is counted.

mod uplink_support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use inspection_core::topic::TopicKind;
use uplink_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_first_removal_only_on_ack_retries_and_refusals() {
    let pki = Pki::new();
    let broker = start_broker(&pki);
    let central = StandIn::start(&broker, &pki).await;
    // No acks at first, and the first two PUTs fail with 503.
    central.acking.store(false, Ordering::SeqCst);
    central.fail_puts.store(2, Ordering::SeqCst);

    let dir = tempfile::tempdir().unwrap();
    let outbox = open_outbox(dir.path());
    let mut images = Vec::new();
    let mut events = Vec::new();
    for n in 0..4 {
        let sha = append_image(&outbox, &jpeg(n));
        events.push(append_frame(&outbox, &sha));
        events.push(append_small(&outbox));
        images.push(sha);
    }
    // Not a JPEG: central refuses it for good (422).
    let garbage = append_image(&outbox, b"definitely not a jpeg");
    events.push(append_frame(&outbox, &garbage));
    events.push(append_small(&outbox));
    assert_eq!(outbox_len(&outbox), 15);

    let uplink = RunningUplink::start(pki.uplink(&broker, central.upload), outbox.clone());
    let diag = || central.diag();
    wait_until(
        "every event published",
        Duration::from_secs(30),
        || central.seen.lock().unwrap().distinct_events().len() == events.len(),
        diag,
    )
    .await;
    // Central has every event but acked none: they all stay.
    assert_eq!(outbox_len(&outbox), events.len(), "only events remain");
    wait_until(
        "a re-publish after the ack timeout",
        Duration::from_secs(30),
        || uplink.metrics.republishes_of("ack_timeout") > 0,
        diag,
    )
    .await;
    // The metric counts the re-publish when it is sent; central sees it a
    // moment later. (Never call `diag` while holding `seen`: it locks it.)
    wait_until(
        "a re-published event at central",
        Duration::from_secs(30),
        || {
            let seen = central.seen.lock().unwrap();
            seen.events.len() > seen.distinct_events().len()
        },
        diag,
    )
    .await;
    assert_eq!(outbox_len(&outbox), events.len(), "unacked events stay");

    // Garbage on the ack topic is counted and ignored.
    central.raw(TopicKind::Ack, b"{not json").await;
    wait_until(
        "the bad ack counted",
        Duration::from_secs(10),
        || uplink.metrics.bad_messages_of("ack", "malformed") == 1,
        diag,
    )
    .await;

    central.acking.store(true, Ordering::SeqCst);
    wait_until(
        "the outbox to empty once acks flow",
        Duration::from_secs(30),
        || outbox_len(&outbox) == 0,
        diag,
    )
    .await;

    let seen = central.seen.lock().unwrap();
    for sha in &images {
        assert!(seen.images.contains_key(sha), "{sha} never uploaded");
    }
    // The only event that arrived before its image is the one whose image
    // central refused.
    assert!(
        seen.order_violations
            .iter()
            .all(|v| v.contains(garbage.as_str())),
        "{:?}",
        seen.order_violations
    );
    assert_eq!(seen.puts.iter().filter(|s| **s == 503).count(), 2);
    assert_eq!(seen.puts.iter().filter(|s| **s == 422).count(), 1);
    assert_eq!(uplink.metrics.uploads_of("retry"), 2);
    assert_eq!(uplink.metrics.uploads_of("created"), 4);
    assert_eq!(uplink.metrics.rejected_of("image", "422"), 1);
    assert!(uplink.metrics.backoff_seconds_of("upload") > 0.0);
    // Events arrived in the outbox's order the first time each was seen.
    let mut first_seen = Vec::new();
    for e in &seen.events {
        if !first_seen.contains(&e.msg_id) {
            first_seen.push(e.msg_id);
        }
    }
    assert_eq!(first_seen, events);
    drop(seen);
    uplink.stop();
}
