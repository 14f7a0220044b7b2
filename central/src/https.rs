//! An HTTP/1.1 listener for an axum router, over TLS or plain: the accept
//! loop, handshake and header time limits, graceful shutdown. The inference
//! and api roles serve through it.
//!
//! The rule every listener follows (ARCHITECTURE.md, "Architecture
//! invariants"): TLS unless the address is loopback or the section sets
//! `plain_http = true`, an explicit choice for in-cluster traffic behind a
//! NetworkPolicy (TLS then ends at the ingress). [`plain_listener_problem`]
//! states it once for every section.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// The problem with a listener at `listen` that has no TLS, if any: it must
/// be loopback unless `plain_http` says otherwise. `at` names the section.
pub fn plain_listener_problem(
    at: &str,
    listen: SocketAddr,
    tls: bool,
    plain_http: bool,
) -> Option<String> {
    (!tls && !plain_http && !listen.ip().is_loopback()).then(|| {
        format!(
            "{at}.listen: {listen} is not a loopback address; set {at}.tls, or {at}.plain_http = true for in-cluster plain HTTP"
        )
    })
}

/// Called with a code (`tls_handshake`, `handshake_timeout`, `accept`) for
/// each connection dropped before any request: the role's metric.
pub type ConnectionFailed = Arc<dyn Fn(&'static str) + Send + Sync>;

/// Serves `router` on `listener` (through `tls` when given) until `shutdown`
/// becomes true (or its sender is dropped); then stops accepting, lets the
/// requests in progress finish (each bounded by `request_timeout`, plus 5 s)
/// and returns. `role` names the role in the log.
pub async fn serve(
    role: &'static str,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    request_timeout: Duration,
    failed: ConnectionFailed,
    mut shutdown: watch::Receiver<bool>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tracing::info!(role, addr = ?listener.local_addr().ok(), tls = tls.is_some(), "serving");
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    connections.spawn(serve_connection(
                        tcp, tls.clone(), router.clone(), failed.clone(), request_timeout, stop_rx.clone(),
                    ));
                }
                Err(error) => {
                    // Out of file descriptors, usually: not fatal.
                    failed("accept");
                    tracing::warn!(role, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    tracing::info!(
        role,
        connections = connections.len(),
        "stopping; finishing requests in progress"
    );
    let grace = request_timeout + Duration::from_secs(5);
    let finish = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, finish).await.is_err() {
        tracing::warn!(
            role,
            connections = connections.len(),
            "connections still open after the grace period; closing them"
        );
        connections.abort_all();
    }
}

async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn serve_connection(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    router: Router,
    failed: ConnectionFailed,
    timeout: Duration,
    stop: watch::Receiver<bool>,
) {
    let Some(acceptor) = tls else {
        serve_http1(tcp, router, timeout, stop).await;
        return;
    };
    match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => serve_http1(stream, router, timeout, stop).await,
        Ok(Err(error)) => {
            failed("tls_handshake");
            tracing::info!(%error, "TLS handshake refused");
        }
        Err(_) => failed("handshake_timeout"),
    }
}

/// Serves HTTP/1.1 on one connection.
pub(crate) async fn serve_http1<IO>(
    io: IO,
    router: Router,
    timeout: Duration,
    mut stop: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(router));
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = stopped(&mut stop) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_listener_is_loopback_or_an_explicit_choice() {
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let lo: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let lo6: SocketAddr = "[::1]:8080".parse().unwrap();
        assert_eq!(plain_listener_problem("api", lo, false, false), None);
        assert_eq!(plain_listener_problem("api", lo6, false, false), None);
        assert_eq!(plain_listener_problem("api", any, true, false), None);
        assert_eq!(plain_listener_problem("api", any, false, true), None);
        let problem = plain_listener_problem("api", any, false, false).unwrap();
        assert!(
            problem.starts_with("api.listen: 0.0.0.0:8080 is not a loopback"),
            "{problem}"
        );
        assert!(problem.contains("api.plain_http = true"), "{problem}");
    }
}
