//! The accept loop both listeners share, the push listener ([`crate::serve::server`]) and the
//! admin one ([`crate::serve::admin`]): at most so many connections open, sources outside the
//! allowlist closed at once, TLS when configured, one HTTP/1.1 connection task per
//! connection, and on shutdown no more accepting and a bounded wait for the open
//! connections to finish.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::serve::access::Allowlist;
use crate::serve::tls::Tls;

/// Least time between two warnings that the connection limit is reached.
const LIMIT_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// A bound listener and how it serves.
pub(crate) struct Listener {
    pub(crate) listener: TcpListener,
    /// Names the listener in log lines: `push` or `admin`.
    pub(crate) name: &'static str,
    pub(crate) max_connections: usize,
    pub(crate) allowlist: Allowlist,
    pub(crate) tls: Option<Tls>,
    /// The HTTP/1.1 settings, timeouts and limits included. A TLS handshake gets the
    /// same time as the headers.
    pub(crate) http: http1::Builder,
    pub(crate) handshake_timeout: Duration,
}

/// What a connection reads from and writes to: TCP, or TLS over it.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl Listener {
    /// Serves each request with `handle` until `shutdown` completes; then accepts no
    /// more, calls `stopping` for how long open connections may take to finish, waits
    /// that long at most, and closes what remains without answering. The answers' body
    /// is the listener's own: whole for the push listener, whole or a stream of events
    /// for the admin one.
    pub(crate) async fn serve<H, F, B>(
        self,
        handle: H,
        shutdown: impl Future<Output = ()>,
        stopping: impl FnOnce() -> Duration,
    ) where
        H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Response<B>> + Send + 'static,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let name = self.name;
        let graceful = GracefulShutdown::new();
        let mut connections = JoinSet::new();
        let slots = Arc::new(Semaphore::new(self.max_connections));
        let mut last_limit_warning: Option<Instant> = None;
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                accepted = self.next(&slots, &mut last_limit_warning) => accepted,
                () = &mut shutdown => break,
            };
            let Some((stream, peer, slot)) = accepted else {
                continue;
            };
            let connection = Connection {
                stream,
                peer,
                name,
                http: self.http.clone(),
                tls: self.tls.clone(),
                handshake_timeout: self.handshake_timeout,
            };
            connections.spawn(connection.serve(handle.clone(), graceful.watcher(), slot));
            // Reap finished connection tasks so the set does not grow.
            while connections.try_join_next().is_some() {}
        }
        drop(self.listener);
        let drain = stopping();
        tracing::info!(
            listener = name,
            connections = graceful.count(),
            "shutting down: draining open connections"
        );
        if tokio::time::timeout(drain, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                listener = name,
                "drain timed out: closing the remaining connections unanswered"
            );
        }
        connections.shutdown().await;
    }
}

impl Listener {
    /// The next connection to serve, with its slot: a slot first (at the limit, new
    /// connections wait in the listen backlog, the kernel's, not ours, until an open one
    /// closes), then the connection. `None` for one that failed or is not allowed.
    async fn next(
        &self,
        slots: &Arc<Semaphore>,
        last_limit_warning: &mut Option<Instant>,
    ) -> Option<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
        let name = self.name;
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if last_limit_warning.is_none_or(|at| at.elapsed() >= LIMIT_WARNING_INTERVAL) {
                    *last_limit_warning = Some(Instant::now());
                    tracing::warn!(
                        listener = name,
                        max_connections = self.max_connections,
                        "connection limit reached: new connections wait until one closes"
                    );
                }
                // The semaphore is never closed.
                slots.clone().acquire_owned().await.ok()?
            }
        };
        let (stream, peer) = match self.listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors and the like: keep serving the connections
                // already open, try again shortly.
                tracing::warn!(listener = name, "accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                return None;
            }
        };
        if !self.allowlist.allows(peer.ip()) {
            tracing::info!(%peer, listener = name, "connection refused: source address not allowed");
            return None;
        }
        Some((stream, peer, slot))
    }
}

/// One accepted connection, to be served on a task of its own.
struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    name: &'static str,
    http: http1::Builder,
    tls: Option<Tls>,
    handshake_timeout: Duration,
}

impl Connection {
    /// Serves the connection's requests with `handle` until it closes or shutdown
    /// ends it; `slot` is its place among the connections open.
    async fn serve<H, F, B>(self, handle: H, watcher: Watcher, slot: OwnedSemaphorePermit)
    where
        H: Fn(Request<Incoming>, SocketAddr) -> F + Send + Sync + 'static,
        F: Future<Output = Response<B>> + Send + 'static,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let _slot = slot;
        let Connection {
            stream,
            peer,
            name,
            http,
            tls,
            handshake_timeout,
        } = self;
        let io: Box<dyn Io> = match tls {
            None => Box::new(stream),
            Some(tls) => {
                match tokio::time::timeout(handshake_timeout, tls.acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => Box::new(stream),
                    Ok(Err(err)) => {
                        tracing::debug!(%peer, "TLS handshake failed: {err}");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                }
            }
        };
        let service = service_fn(move |request| {
            let answer = handle(request, peer);
            async move { Ok::<_, Infallible>(answer.await) }
        });
        let connection = http.serve_connection(TokioIo::new(io), service);
        if let Err(err) = watcher.watch(connection).await {
            tracing::debug!(%peer, listener = name, "connection ended: {err}");
        }
    }
}
