//! The HTTP/1.1 server: accepts connections, hands each request to the [`Receiver`], and
//! drains in-flight pushes on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::{Receiver, Tls};

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Most bytes of request line and headers buffered for one request (CMQ's are under
/// 1 KiB); beyond it the answer is 431.
const MAX_HEADER_BYTES: usize = 16 << 10;

/// Most header fields in one request; beyond it the answer is 431.
const MAX_HEADERS: usize = 64;

/// Least time between two warnings that the connection limit is reached.
const LIMIT_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// A bound receiver, ready to serve.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    receiver: Arc<Receiver>,
    tls: Option<Tls>,
}

impl Server {
    /// Checks that the receiver's guest instantiates, then binds `addr` (port 0 picks a
    /// free port; see [`Server::local_addr`]).
    pub async fn bind(addr: SocketAddr, receiver: Receiver) -> anyhow::Result<Self> {
        receiver.check().await?;
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let local_addr = listener.local_addr().context("reading the bound address")?;
        Ok(Server {
            listener,
            local_addr,
            receiver: Arc::new(receiver),
            tls: None,
        })
    }

    /// Serves HTTPS with `tls` instead of plain HTTP.
    pub fn with_tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The receiver it serves: to reload its routes, or to serve its metrics.
    pub fn receiver(&self) -> Arc<Receiver> {
        self.receiver.clone()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight pushes
    /// finish for up to the guest deadline, and closes what remains without answering
    /// (so CMQ redelivers those).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Server {
            listener,
            receiver,
            tls,
            ..
        } = self;
        let graceful = GracefulShutdown::new();
        let mut connections = JoinSet::new();
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(MAX_HEADER_BYTES)
            .max_headers(MAX_HEADERS);
        let allowlist = receiver.allowlist();
        let max_connections = receiver.max_connections();
        let connection_slots = Arc::new(Semaphore::new(max_connections));
        let mut last_limit_warning: Option<Instant> = None;
        tokio::pin!(shutdown);
        loop {
            // A slot before accepting: at the limit, new connections wait in the listen
            // backlog (the kernel's, not ours) until an open one closes.
            let slot = match connection_slots.clone().try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => {
                    if last_limit_warning.is_none_or(|at| at.elapsed() >= LIMIT_WARNING_INTERVAL) {
                        last_limit_warning = Some(Instant::now());
                        tracing::warn!(
                            max_connections,
                            "connection limit reached: new connections wait until one closes"
                        );
                    }
                    tokio::select! {
                        slot = connection_slots.clone().acquire_owned() => match slot {
                            Ok(slot) => slot,
                            Err(_closed) => break,
                        },
                        () = &mut shutdown => break,
                    }
                }
            };
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Out of file descriptors and the like: keep serving the
                        // connections already open, try again shortly.
                        tracing::warn!("accept failed: {err}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            if !allowlist.allows(peer.ip()) {
                tracing::info!(%peer, "connection refused: source address not allowed");
                drop(stream);
                continue;
            }
            let receiver = receiver.clone();
            let service = service_fn(move |request| {
                let receiver = receiver.clone();
                async move { Ok::<_, Infallible>(receiver.answer(request, peer).await) }
            });
            let watcher = graceful.watcher();
            let http = http.clone();
            let tls = tls.clone();
            connections.spawn(async move {
                let _slot = slot;
                let served = match tls {
                    None => {
                        let connection = http.serve_connection(TokioIo::new(stream), service);
                        watcher.watch(connection).await
                    }
                    Some(tls) => {
                        // The handshake gets the same time as the headers would.
                        let handshake =
                            tokio::time::timeout(HEADER_READ_TIMEOUT, tls.acceptor.accept(stream));
                        let stream = match handshake.await {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(err)) => {
                                tracing::debug!(%peer, "TLS handshake failed: {err}");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                        let connection = http.serve_connection(TokioIo::new(stream), service);
                        watcher.watch(connection).await
                    }
                };
                if let Err(err) = served {
                    tracing::debug!(%peer, "connection ended: {err}");
                }
            });
            // Reap finished connection tasks so the set does not grow.
            while connections.try_join_next().is_some() {}
        }
        drop(listener);
        receiver.start_draining();
        // Read now, not at start: a reload may have brought a longer deadline.
        let drain_timeout = receiver.drain_timeout();
        tracing::info!(
            connections = graceful.count(),
            "shutting down: draining in-flight pushes"
        );
        if tokio::time::timeout(drain_timeout, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("drain timed out: closing the remaining connections unanswered");
        }
        connections.shutdown().await;
        receiver.drained().await;
        Ok(())
    }
}
