//! Listeners and connections: TLS accept (reading the client certificate
//! once per connection), HTTP/1.1 over hyper, graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::{Extension, Router};
use object_store::ObjectStore;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::http::{AppState, PeerIdentity, router};
use super::metrics::UploadMetrics;
use super::{UploadConfig, UploadError, open_object_store};
use crate::auth::{Credentials, Principal};
use crate::tls::certificate_device;

/// The addresses a bound [`UploadServer`] listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadAddrs {
    /// HTTPS, when `tls` is configured.
    pub https: Option<SocketAddr>,
    /// Plain HTTP (loopback), when `plain_listen` is configured.
    pub plain: Option<SocketAddr>,
}

/// The upload role, bound but not yet serving.
pub struct UploadServer {
    https: Option<(TcpListener, TlsAcceptor)>,
    plain: Option<TcpListener>,
    router: Router,
    metrics: UploadMetrics,
    request_timeout: Duration,
}

impl std::fmt::Debug for UploadServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadServer")
            .field("addrs", &self.local_addrs())
            .finish_non_exhaustive()
    }
}

async fn listen(addr: SocketAddr) -> Result<TcpListener, UploadError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| UploadError::Bind {
            addr,
            reason: e.to_string(),
        })
}

impl UploadServer {
    /// Opens the configured object store and binds the listeners.
    /// `credentials` are the loaded `upload.credentials` file (token auth).
    pub async fn bind(
        config: &UploadConfig,
        credentials: Option<Credentials>,
        metrics: UploadMetrics,
    ) -> Result<UploadServer, UploadError> {
        let store = open_object_store(&config.object_store)?;
        Self::bind_with_store(config, credentials, store, metrics).await
    }

    /// As [`UploadServer::bind`], writing to a store the caller opened.
    pub async fn bind_with_store(
        config: &UploadConfig,
        credentials: Option<Credentials>,
        store: Arc<dyn ObjectStore>,
        metrics: UploadMetrics,
    ) -> Result<UploadServer, UploadError> {
        let mut problems = config.problems("upload", false);
        problems.extend(
            config
                .serving_problems("upload")
                .into_iter()
                // The loaded credentials stand in for the file.
                .filter(|p| !(credentials.is_some() && p.contains("credentials"))),
        );
        if !problems.is_empty() {
            return Err(UploadError::Config(problems));
        }
        let https = match &config.tls {
            Some(tls) => {
                let acceptor = TlsAcceptor::from(tls.server_config(&[b"http/1.1"])?);
                Some((listen(config.listen).await?, acceptor))
            }
            None => None,
        };
        let plain = match config.plain_listen {
            Some(addr) => Some(listen(addr).await?),
            None => None,
        };
        let request_timeout = Duration::from_secs(config.request_timeout_s);
        let state = Arc::new(AppState {
            store,
            credentials,
            metrics: metrics.clone(),
            max_image_bytes: config.max_image_bytes,
            request_timeout,
            permits: Arc::new(Semaphore::new(config.max_concurrent_uploads)),
        });
        Ok(UploadServer {
            https,
            plain,
            router: router(state),
            metrics,
            request_timeout,
        })
    }

    /// Every bound address.
    pub fn local_addrs(&self) -> UploadAddrs {
        UploadAddrs {
            https: self.https.as_ref().and_then(|(l, _)| l.local_addr().ok()),
            plain: self.plain.as_ref().and_then(|l| l.local_addr().ok()),
        }
    }

    /// Serves until `shutdown` becomes true (or its sender is dropped), then
    /// stops accepting, lets requests in progress finish (each is bounded by
    /// `request_timeout_s`) and returns.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), UploadError> {
        let UploadServer {
            https,
            plain,
            router,
            metrics,
            request_timeout,
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        tracing::info!(
            https = ?https.as_ref().and_then(|(l, _)| l.local_addr().ok()),
            plain = ?plain.as_ref().and_then(|l| l.local_addr().ok()),
            "upload role serving"
        );
        loop {
            tokio::select! {
                _ = stopped(&mut shutdown) => break,
                accepted = accept(https.as_ref().map(|(l, _)| l)) => match accepted {
                    Ok((tcp, _)) => {
                        let acceptor = https.as_ref().map(|(_, a)| a.clone()).expect("https listener");
                        connections.spawn(serve_tls(
                            tcp, acceptor, router.clone(), metrics.clone(), request_timeout, stop_rx.clone(),
                        ));
                    }
                    Err(error) => accept_failed(&metrics, error).await,
                },
                accepted = accept(plain.as_ref()) => match accepted {
                    Ok((tcp, _)) => {
                        connections.spawn(serve(
                            tcp, PeerIdentity::Anonymous, router.clone(), request_timeout, stop_rx.clone(),
                        ));
                    }
                    Err(error) => accept_failed(&metrics, error).await,
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(https);
        drop(plain);
        let _ = stop_tx.send(true);
        tracing::info!(
            connections = connections.len(),
            "upload role stopping; finishing requests in progress"
        );
        let grace = request_timeout + Duration::from_secs(5);
        let finish = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, finish).await.is_err() {
            tracing::warn!(
                connections = connections.len(),
                "connections still open after the grace period; closing them"
            );
            connections.abort_all();
        }
        Ok(())
    }
}

/// Resolves when `rx` says stop, or its sender is gone (nobody could say
/// it any more).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Accepts on `listener`, or never when there is none.
async fn accept(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// An accept error (out of file descriptors, usually) is not fatal: count
/// it and pause briefly so a full table is not spun on.
async fn accept_failed(metrics: &UploadMetrics, error: std::io::Error) {
    metrics.connection_failed("accept");
    tracing::warn!(%error, "accept failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

async fn serve_tls(
    tcp: TcpStream,
    acceptor: TlsAcceptor,
    router: Router,
    metrics: UploadMetrics,
    timeout: Duration,
    stop: watch::Receiver<bool>,
) {
    let tls = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            // Includes certificates from another CA and expired ones.
            metrics.connection_failed("tls_handshake");
            tracing::info!(%error, "TLS handshake refused");
            return;
        }
        Err(_) => {
            metrics.connection_failed("handshake_timeout");
            return;
        }
    };
    let peer = match tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
        None => PeerIdentity::Anonymous,
        Some(cert) => match certificate_device(cert) {
            Ok((site, device)) => PeerIdentity::Device(Principal::Device { site, device }),
            Err(error) => PeerIdentity::NotADevice(error.to_string()),
        },
    };
    serve(tls, peer, router, timeout, stop).await;
}

/// Serves HTTP/1.1 on one connection, every request carrying `peer`.
async fn serve<IO>(
    io: IO,
    peer: PeerIdentity,
    router: Router,
    timeout: Duration,
    stop: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    crate::https::serve_http1(io, router.layer(Extension(peer)), timeout, stop).await;
}
