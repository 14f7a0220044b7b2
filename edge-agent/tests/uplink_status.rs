//! Presence and telemetry: the retained `online` status after connecting,
//! the broker's `offline` last will when the agent dies without a goodbye,
//! the agent's own `offline` on a clean stop, and telemetry that validates.
//! Central is the STAND-IN of `uplink_support`.

mod uplink_support;

use std::time::Duration;

use inspection_core::wire::DeviceState;
use uplink_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_retained_will_on_crash_offline_on_stop_and_telemetry() {
    let pki = Pki::new();
    let broker = start_broker(&pki);
    let central = StandIn::start(&broker, &pki).await;
    let dir = tempfile::tempdir().unwrap();
    let outbox = open_outbox(dir.path());
    let diag = || central.diag();

    let first = RunningUplink::start(pki.uplink(&broker, central.upload), outbox.clone());
    wait_until(
        "two telemetry messages",
        Duration::from_secs(30),
        || central.seen.lock().unwrap().telemetry.len() >= 2,
        diag,
    )
    .await;
    let status = retained_status(&broker).await.expect("a retained status");
    assert_eq!(status.state, DeviceState::Online);
    assert_eq!(status.boot_id, first.boot_id);
    {
        let seen = central.seen.lock().unwrap();
        let t = &seen.telemetry[1];
        assert_eq!((t.site.as_str(), t.device.as_str()), (SITE, DEVICE));
        assert_eq!(t.outbox.entries, 0);
        assert_eq!(t.cameras.len(), 1);
        assert_eq!(t.prescreen_latency_ms, None, "no frame was screened");
        assert!(seen.telemetry[0].at <= t.at);
    }

    // A crash: the broker publishes the will.
    first.kill();
    let mut last = None;
    wait_until(
        "the offline will",
        Duration::from_secs(30),
        || {
            last = futures_block(retained_status(&broker));
            last.as_ref()
                .is_some_and(|s| s.state == DeviceState::Offline)
        },
        diag,
    )
    .await;
    let will = last.unwrap();
    assert_eq!(will.boot_id, status.boot_id, "the will of the first run");

    // A new run says online again, then offline itself on a clean stop.
    let second = RunningUplink::start(pki.uplink(&broker, central.upload), outbox.clone());
    let boot = second.boot_id;
    assert_ne!(boot, status.boot_id);
    wait_until(
        "online again",
        Duration::from_secs(30),
        || {
            central
                .seen
                .lock()
                .unwrap()
                .statuses
                .iter()
                .any(|(s, _)| s.boot_id == boot && s.state == DeviceState::Online)
        },
        diag,
    )
    .await;
    let metrics = second.metrics.clone();
    second.stop();
    assert_eq!(metrics.publishes_of("status"), 2, "online and offline");
    let status = retained_status(&broker).await.expect("a retained status");
    assert_eq!((status.state, status.boot_id), (DeviceState::Offline, boot));
}

/// Runs a future to completion from inside a synchronous closure on a
/// multi-threaded runtime.
fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}
