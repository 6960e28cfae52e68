//! The push listener: CMQ's pushes over HTTP/1.1 (or HTTPS), each answered by the
//! [`Receiver`], and on shutdown the in-flight pushes drained.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use ipnet::IpNet;
use tokio::net::TcpListener;

use crate::options::{DEFAULT_MAX_CONNECTIONS, MAX_LIMIT};
use crate::receiver::Receiver;
use crate::serve::access::Allowlist;
use crate::serve::listener::Listener;
use crate::serve::tls::Tls;

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Most bytes of request line and headers buffered for one request (CMQ's are under
/// 1 KiB); beyond it the answer is 431.
const MAX_HEADER_BYTES: usize = 16 << 10;

/// Most header fields in one request; beyond it the answer is 431.
const MAX_HEADERS: usize = 64;

/// A bound receiver, ready to serve.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    receiver: Arc<Receiver>,
    tls: Option<Tls>,
    max_connections: usize,
    allow: Vec<IpNet>,
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
            max_connections: DEFAULT_MAX_CONNECTIONS,
            allow: Vec::new(),
        })
    }

    /// Serves HTTPS with `tls` instead of plain HTTP.
    pub fn with_tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Keeps at most `max` connections open (default 1024); beyond it new connections
    /// wait in the kernel's listen backlog until one closes, so idle or slow senders
    /// cannot exhaust the process's file descriptors.
    pub fn limit_connections(mut self, max: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(
            (1..=MAX_LIMIT).contains(&max),
            "max connections must be between 1 and {MAX_LIMIT}"
        );
        self.max_connections = max;
        Ok(self)
    }

    /// Accepts connections from these source networks only; others are closed at once
    /// (default: empty, every address).
    pub fn allow(mut self, nets: Vec<IpNet>) -> Self {
        self.allow = nets;
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
            max_connections,
            allow,
            ..
        } = self;
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(MAX_HEADER_BYTES)
            .max_headers(MAX_HEADERS);
        let listener = Listener {
            listener,
            name: "push",
            max_connections,
            allowlist: Allowlist::new(allow),
            tls,
            http,
            handshake_timeout: HEADER_READ_TIMEOUT,
        };
        let handle = {
            let receiver = receiver.clone();
            move |request, peer| {
                let receiver = receiver.clone();
                // A push's future is kilobytes (every stage's state): boxed once here,
                // hyper moves a pointer instead of copying it at each step.
                Box::pin(async move { receiver.answer(request, peer).await })
            }
        };
        let stopping = || {
            receiver.start_draining();
            // Read now, not at start: a reload may have brought a longer deadline.
            receiver.drain_timeout()
        };
        listener.serve(handle, shutdown, stopping).await;
        receiver.drained().await;
        Ok(())
    }
}
