//! The local ops endpoint over a real socket: Prometheus text on `/metrics`,
//! `/healthz` turning 503 when a part is unhealthy, clean shutdown.

use std::sync::Arc;
use std::time::Duration;

use edge_agent::ops::{Health, OpsState, serve};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

#[tokio::test]
async fn metrics_and_health_over_http() {
    let frames = Counter::<u64>::default();
    let mut registry = Registry::default();
    registry.register("edge_capture_frames", "Frames captured", frames.clone());
    frames.inc_by(7);
    let health = Health::new();
    health.set("camera:cam-front", true, "streaming");

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let state = OpsState {
        registry: Arc::new(registry),
        health: health.clone(),
    };
    let server = tokio::spawn(serve(listener, state, async {
        let _ = stopped.await;
    }));

    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("edge_capture_frames_total 7"), "{body}");
    assert!(body.contains("# EOF"), "{body}");

    let (status, body) = get(addr, "/healthz").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"status\":\"ok\""), "{body}");

    health.set("outbox", false, "database is full");
    let (status, body) = get(addr, "/healthz").await;
    assert_eq!(status, 503);
    assert!(body.contains("database is full"), "{body}");

    let (status, _) = get(addr, "/nope").await;
    assert_eq!(status, 404);

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server stops on shutdown")
        .unwrap()
        .unwrap();
}
