//! Outbound HTTP for guests (the wasi:http outgoing handler). A request goes out only
//! to a destination the operator granted, and only to an address the host checked: the
//! host resolves a granted name itself, keeps the public addresses (all of them for a
//! grant that allows private ones, or an IP literal granted as such), and connects to
//! one of those, never looking the name up again. Each instance has a few requests in
//! flight at most, and the whole host a share of its file descriptors; a request past
//! either fails in the guest (`connection-limit-reached`), never in the receiver. Every
//! timeout ends within the message's deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::sandbox::grants::Grants;
use crate::sandbox::outbound_send::{Timeouts, send};

/// Requests one instance may have in flight (connecting, or holding a connection).
pub(crate) const MAX_REQUESTS_PER_INSTANCE: usize = 16;

/// The labels of `cmq_outbound_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutboundLabels {
    route: String,
    outcome: &'static str,
}

/// What every instance of every route shares: the TLS client configuration, the
/// host-wide cap on outbound connections, and their count.
pub(crate) struct Outbound {
    tls: tokio_rustls::TlsConnector,
    host_wide: Arc<Semaphore>,
    cap: usize,
    requests: Family<OutboundLabels, Counter>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("cap", &self.cap)
            .finish_non_exhaustive()
    }
}

impl Outbound {
    /// Shared state whose host-wide cap is a quarter of the process's file descriptors
    /// (at least 16): the rest stay for accepted connections, the store and the guests'
    /// compiled code.
    pub(crate) fn new(requests: Family<OutboundLabels, Counter>) -> anyhow::Result<Self> {
        let cap = (open_files_limit() / 4).max(16);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Outbound {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            host_wide: Arc::new(Semaphore::new(cap)),
            cap,
            requests,
        })
    }

    /// How many outbound requests the whole host may have in flight.
    pub(crate) fn cap(&self) -> usize {
        self.cap
    }
}

/// The soft limit on open files (`ulimit -n`), from `/proc/self/limits`; 1024, the usual
/// default, when it cannot be read.
fn open_files_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find_map(|line| line.strip_prefix("Max open files"))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|soft| soft.parse().ok())
        })
        .unwrap_or(1024)
}

/// One instance's outbound HTTP: its grants, its own cap and its deadline. Made for
/// every instance, so it allocates nothing until the guest sends a granted request.
pub(crate) struct OutboundHttp {
    shared: Arc<Outbound>,
    grants: Arc<Grants>,
    route: Arc<str>,
    deadline: Instant,
    /// What its requests share, made at its first request.
    requests: Option<Arc<InstanceRequests>>,
}

/// One instance's requests together: its cap, and whether a refusal was logged (a guest
/// retrying a refused request in a loop gets one log line, not thousands), also by the
/// requests still resolving.
struct InstanceRequests {
    in_flight: Arc<Semaphore>,
    logged_refusal: AtomicBool,
}

impl InstanceRequests {
    /// Logs a refusal, once per instance.
    fn refused(&self, says: impl FnOnce() -> String) {
        if !self.logged_refusal.swap(true, Ordering::Relaxed) {
            tracing::info!("{}", says());
        }
    }
}

impl OutboundHttp {
    pub(crate) fn new(
        shared: Arc<Outbound>,
        grants: Arc<Grants>,
        route: Arc<str>,
        deadline: Instant,
    ) -> Self {
        OutboundHttp {
            shared,
            grants,
            route,
            deadline,
            requests: None,
        }
    }

    /// Readies a reused instance's outbound HTTP for its next message, due by
    /// `deadline`: its timeouts end then, and its first refusal is logged again.
    pub(crate) fn begin(&mut self, deadline: Instant) {
        self.deadline = deadline;
        if let Some(requests) = &self.requests {
            requests.logged_refusal.store(false, Ordering::Relaxed);
        }
    }

    fn count(&self, outcome: &'static str) {
        count(&self.shared, &self.route, outcome);
    }

    /// The two permits a request holds, its instance's and the host's; `None`, counted
    /// and logged, when either cap is reached.
    fn permits(
        &self,
        requests: &InstanceRequests,
    ) -> Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)> {
        match (
            requests.in_flight.clone().try_acquire_owned(),
            self.shared.host_wide.clone().try_acquire_owned(),
        ) {
            (Ok(mine), Ok(host_wide)) => Some((mine, host_wide)),
            (mine, _) => {
                self.count("limited");
                let cap = self.shared.cap;
                requests.refused(|| match mine {
                    Err(_) => format!(
                        "guest's outbound request refused: it has {MAX_REQUESTS_PER_INSTANCE} \
                         in flight already"
                    ),
                    Ok(_) => format!(
                        "guest's outbound request refused: the host has {cap} in flight \
                         already (a quarter of its open-files limit)"
                    ),
                });
                None
            }
        }
    }

    /// The instance's requests' shared state, made at the first.
    fn requests(&mut self) -> Arc<InstanceRequests> {
        self.requests
            .get_or_insert_with(|| {
                Arc::new(InstanceRequests {
                    in_flight: Arc::new(Semaphore::new(MAX_REQUESTS_PER_INSTANCE)),
                    logged_refusal: AtomicBool::new(false),
                })
            })
            .clone()
    }
}

fn count(shared: &Outbound, route: &str, outcome: &'static str) {
    shared
        .requests
        .get_or_create(&OutboundLabels {
            route: route.to_owned(),
            outcome,
        })
        .inc();
}

/// Scheme, host and port only: user info, path or query may carry a secret.
fn destination(uri: &http::Uri) -> String {
    format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("?"),
        uri.host().unwrap_or("?"),
        uri.port().map(|p| format!(":{p}")).unwrap_or_default(),
    )
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_done: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> SendFuture {
        let permitted = self
            .grants
            .permits_http(request.uri())
            .map(|(grant, reach)| (grant.to_string(), reach));
        let requests = self.requests();
        let Some((grant, reach)) = permitted else {
            self.count("denied");
            let uri = request.uri().clone();
            requests.refused(|| {
                format!(
                    "guest's outbound request to {} denied: not granted (--http)",
                    destination(&uri)
                )
            });
            return Box::new(async { Err(Error::HttpRequestDenied) });
        };
        let Some(permits) = self.permits(&requests) else {
            return Box::new(async { Err(Error::ConnectionLimitReached) });
        };
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let within = |asked: Option<Duration>| asked.map_or(remaining, |t| t.min(remaining));
        let timeouts = Timeouts {
            connect: within(options.and_then(|o| o.connect_timeout)),
            first_byte: within(options.and_then(|o| o.first_byte_timeout)),
        };
        let shared = self.shared.clone();
        let route = self.route.clone();
        Box::new(async move {
            let destination = destination(request.uri());
            let sent = send(&shared.tls, request, reach, timeouts, permits).await;
            let outcome = match &sent {
                Ok(_) => "sent",
                Err(Error::DestinationIpProhibited) => {
                    requests.refused(|| {
                        format!(
                            "guest's outbound request to {destination} refused: it resolves \
                             only to addresses the grant {grant} does not reach (loopback, \
                             private, link-local or other special ones); grant it with \
                             --http-private if the service is yours"
                        )
                    });
                    "prohibited"
                }
                Err(_) => "failed",
            };
            count(&shared, &route, outcome);
            sent
        })
    }
}
