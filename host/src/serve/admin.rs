//! The admin listener: `/metrics`, `/healthz` and `/readyz`, and with an admin token the
//! console under `/console` ([`crate::console`]), on an address of their own so that the
//! push listener, which faces CMQ, shows nothing of them.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use tokio::net::TcpListener;

use crate::console::{Console, ConsoleBody};
use crate::receiver::Receiver;
use crate::response::{AnswerBody, text};
use crate::serve::access::{Allowlist, Token};
use crate::serve::listener::Listener;

/// Connections the admin listener serves at once: scrapers and probes, a handful.
const MAX_CONNECTIONS: usize = 64;

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The content type of Prometheus' text format, OpenMetrics flavour, which is what
/// `prometheus-client` writes.
const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A bound admin listener, ready to serve.
#[derive(Debug)]
pub struct AdminServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    receiver: Arc<Receiver>,
    console: Option<Arc<Console>>,
}

impl AdminServer {
    /// Binds `addr` (port 0 picks a free port) for `receiver`'s metrics and health.
    pub async fn bind(addr: SocketAddr, receiver: Arc<Receiver>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the admin listener {addr}"))?;
        let local_addr = listener.local_addr().context("reading the bound address")?;
        Ok(AdminServer {
            listener,
            local_addr,
            receiver,
            console: None,
        })
    }

    /// Serves the console too, to whoever logs in with `token`.
    pub fn with_console(mut self, token: Token) -> Self {
        self.console = Some(Arc::new(Console::new(token)));
        self
    }

    /// Whether it serves the console.
    pub fn serves_console(&self) -> bool {
        self.console.is_some()
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes, then lets open requests finish for a second.
    /// `/healthz` answers 200 while the process serves; `/readyz` 200 until the
    /// receiver starts draining, then 503.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .keep_alive(true);
        let listener = Listener {
            listener: self.listener,
            name: "admin",
            max_connections: MAX_CONNECTIONS,
            allowlist: Allowlist::default(),
            tls: None,
            http,
            handshake_timeout: HEADER_READ_TIMEOUT,
        };
        let receiver = self.receiver;
        let console = self.console;
        // The console's chart reads the metrics while the listener serves.
        let reading = console
            .clone()
            .map(|console| console.read_rates(receiver.clone()));
        let handle = move |request: Request<Incoming>, peer| {
            let receiver = receiver.clone();
            let console = console.clone();
            async move {
                match &console {
                    Some(console) if request.uri().path().starts_with("/console") => {
                        console.answer(&receiver, request, peer).await
                    }
                    _ => answer(&receiver, &request).await.map(ConsoleBody::Left),
                }
            }
        };
        listener
            .serve(handle, shutdown, || Duration::from_secs(1))
            .await;
        if let Some(reading) = reading {
            reading.abort();
        }
        Ok(())
    }
}

async fn answer(receiver: &Receiver, request: &Request<Incoming>) -> Response<AnswerBody> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match request.uri().path() {
        "/metrics" => {
            let mut response = text(StatusCode::OK, receiver.metrics_text().await);
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(METRICS_CONTENT_TYPE),
            );
            response
        }
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" if receiver.is_ready() => text(StatusCode::OK, "ready\n".into()),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "draining\n".into()),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: /metrics, /healthz or /readyz\n".into(),
        ),
    }
}
