//! End to end with the real parts on both sides: the edge agent (synthetic
//! bay, real pre-screen model, real outbox, real uplink) -> a real broker
//! (central's embedded rumqttd behind its TLS gateway, or Debian's
//! mosquitto with the fleet ACL), both with client certificates -> central's
//! bridge -> the SQLite store; images over HTTPS into central's upload role
//! and its object store. Mid-stream the broker is stopped and started again
//! on the same ports.
//!
//! What must hold afterwards: the device's events are in the store exactly
//! once with no gap in `seq`, every completed inspection has all its frames,
//! every image a stored frame names is in the object store, and the
//! device's own telemetry (stored by the bridge) reports an empty outbox.

mod central_support;
#[path = "../../shared/tests/common/mod.rs"]
mod common;
mod uplink_support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use central::bridge::BridgeConfig;
use central::broker::{BrokerConfig, BrokerMetrics};
use central_support::{
    Central, Prescreen, embedded_broker_config, run_embedded_broker, wait_for_progress,
};
use edge_agent::config::{Config, FileChecks};
use tokio::sync::watch;
use uplink_support::mosquitto::Mosquitto;
use uplink_support::*;

/// A synthetic bay: a car in frames 1-4 of every 30, so the bay is empty
/// (and the uplink can drain) most of the time.
fn agent_config(dir: &Path, pki: &Pki, mqtt: SocketAddr, upload: SocketAddr) -> String {
    central_support::agent_config(
        dir,
        pki,
        mqtt,
        upload,
        &Prescreen {
            model: &common::fetched("platedet/platedet.onnx"),
            min_trigger_score: 0.4,
        },
        "{ kind = \"synthetic\", width = 640, height = 480, fps = 0, frames = 30, enter_at = 1, stay = 4, loop = true }",
    )
}

async fn start_agent(
    dir: &Path,
    pki: &Pki,
    mqtt: SocketAddr,
    upload: SocketAddr,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let path = dir.join("edge-agent.toml");
    std::fs::write(&path, agent_config(dir, pki, mqtt, upload)).unwrap();
    let (config, identity) = Config::load(&path, FileChecks::On).expect("valid agent config");
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        edge_agent::agent::run(path, config, identity, rx)
            .await
            .expect("agent runs");
    });
    (tx, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edge_to_store_through_the_embedded_broker_survives_a_broker_restart() {
    let pki = Pki::new();
    let broker_config = embedded_broker_config(&pki);
    let metrics = BrokerMetrics::default();
    let broker = run_embedded_broker(&broker_config, metrics.clone()).await;
    let addrs = broker.addrs;
    let central = Central::start(
        &pki,
        BridgeConfig {
            url: format!("mqtt://{}", addrs.internal),
            ..BridgeConfig::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let tls_addr = addrs.tls.unwrap();
    let (agent_stop, agent) = start_agent(dir.path(), &pki, tls_addr, central.upload).await;

    // The first inspection arrives whole.
    wait_for_progress(&central, 1).await;

    // Outage: the broker goes away (connections closed, rumqttd stopped,
    // its in-memory state lost) and comes back on the same ports.
    let _ = broker.stop.send(true);
    broker.task.await.unwrap().expect("broker stops cleanly");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let broker = run_embedded_broker(
        &BrokerConfig {
            internal_listen: addrs.internal,
            tls_listen: Some(tls_addr),
            ..broker_config.clone()
        },
        metrics.clone(),
    )
    .await;

    wait_for_progress(&central, 3).await;
    let completed = central.check_exactly_once().await.completed;
    assert!(completed >= 3, "{completed} inspections");
    assert_eq!(
        metrics.acl_denied("publish"),
        0,
        "the device stays in its topics"
    );
    assert!(
        central.bridge_metrics.stored_count("inserted") > 0,
        "{}",
        central.diag().await
    );

    let _ = agent_stop.send(true);
    let _ = agent.await;
    let _ = central.stop.send(true);
    let _ = broker.stop.send(true);
    let _ = broker.task.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_agent_through_mosquitto_survives_a_broker_kill() {
    let pki = Pki::new();
    let mut broker = start_broker(&pki);
    let (plain, tls) = (broker.plain, broker.tls.unwrap());
    let central = Central::start(
        &pki,
        BridgeConfig {
            url: format!("mqtt://{plain}"),
            username: Some("bridge".into()),
            ..BridgeConfig::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (agent_stop, agent) = start_agent(dir.path(), &pki, tls, central.upload).await;

    wait_for_progress(&central, 1).await;

    // kill -9 of the broker process; it comes back empty on the same ports.
    broker.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _broker = Mosquitto::start_on(pki.broker_options(), plain.port(), Some(tls.port()));

    wait_for_progress(&central, 3).await;
    let completed = central.check_exactly_once().await.completed;
    assert!(completed >= 3, "{completed} inspections");

    let _ = agent_stop.send(true);
    let _ = agent.await;
    let _ = central.stop.send(true);
}
