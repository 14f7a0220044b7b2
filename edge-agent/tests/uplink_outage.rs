//! Broker outage mid-stream: mosquitto is killed while events flow and
//! started again on the same ports. Every event arrives, duplicates come
//! only from re-publishes, and the outbox empties. Central is the
//! STAND-IN of `uplink_support`.

mod uplink_support;

use std::time::Duration;

use uplink_support::mosquitto::Mosquitto;
use uplink_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_nothing() {
    let pki = Pki::new();
    let mut broker = start_broker(&pki);
    let (plain, tls) = (broker.plain.port(), broker.tls.unwrap().port());
    let central = StandIn::start(&broker, &pki).await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = open_outbox(dir.path());
    let uplink = RunningUplink::start(pki.uplink(&broker, central.upload), outbox.clone());
    let diag = || central.diag();

    let mut sent = Vec::new();
    for _ in 0..20 {
        sent.push(append_small(&outbox));
    }
    wait_until(
        "the first events through",
        Duration::from_secs(30),
        || !central.seen.lock().unwrap().events.is_empty(),
        diag,
    )
    .await;

    broker.kill();
    wait_until(
        "the uplink to notice the outage",
        Duration::from_secs(30),
        || uplink.metrics.connected.get() == 0,
        diag,
    )
    .await;
    // The stream goes on while the broker is down.
    for n in 0..20u8 {
        let sha = append_image(&outbox, &jpeg(n));
        sent.push(append_frame(&outbox, &sha));
    }
    drop(broker);
    let broker = Mosquitto::start_on(pki.broker_options(), plain, Some(tls));
    for _ in 0..20 {
        sent.push(append_small(&outbox));
    }

    wait_until(
        "the outbox to empty after the restart",
        Duration::from_secs(60),
        || outbox_len(&outbox) == 0,
        || format!("{}\nbroker log:\n{}", diag(), broker.log()),
    )
    .await;
    check_delivery(&central, &uplink, &sent);
    assert!(uplink.metrics.connects.get() >= 2);
    uplink.stop();
}
