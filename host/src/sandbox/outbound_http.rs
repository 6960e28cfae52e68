//! Outbound HTTP for guests (the wasi:http outgoing handler). A request goes out only
//! to a destination the operator granted, and only to an address the host checked: the
//! host resolves a granted name itself, keeps the public addresses (all of them for a
//! grant that allows private ones, or an IP literal granted as such), and connects to
//! one of those, never looking the name up again. Each instance has a few requests in
//! flight at most, and the whole host a share of its file descriptors; a request past
//! either fails in the guest (`connection-limit-reached`), never in the receiver. Every
//! timeout ends within the message's deadline.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::sandbox::grants::{Grants, Reach};

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
        let permits = match (
            requests.in_flight.clone().try_acquire_owned(),
            self.shared.host_wide.clone().try_acquire_owned(),
        ) {
            (Ok(mine), Ok(host_wide)) => (mine, host_wide),
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
                return Box::new(async { Err(Error::ConnectionLimitReached) });
            }
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
            let sent = send(&shared, request, reach, timeouts, permits).await;
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

#[derive(Clone, Copy)]
struct Timeouts {
    connect: Duration,
    first_byte: Duration,
}

/// Resolves, checks, connects and sends; the response's connection keeps the permits.
async fn send(
    shared: &Outbound,
    mut request: http::Request<WasiBody>,
    reach: Reach,
    timeouts: Timeouts,
    permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
) -> Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), Error>> + Send>,
    ),
    Error,
> {
    let uri = request.uri().clone();
    let use_tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?;
    let bare_host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = uri.port_u16().unwrap_or(if use_tls { 443 } else { 80 });
    let stream = tokio::time::timeout(timeouts.connect, connect(bare_host, port, reach))
        .await
        .map_err(|_| Error::ConnectionTimeout)??;
    let stream = if use_tls {
        secure(shared, bare_host, stream, timeouts.connect).await?
    } else {
        Box::new(stream)
    };
    let (mut sender, connection) = tokio::time::timeout(
        timeouts.connect,
        hyper::client::conn::http1::handshake::<_, WasiBody>(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;
    // The request line carries the path and query only: the authority went into `Host`.
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    *request.uri_mut() = path.parse().map_err(|_| Error::HttpRequestUriInvalid)?;
    let mut connection = Box::pin(connection);
    let mut connection_done = None;
    let response = tokio::time::timeout(timeouts.first_byte, async {
        let mut sending = std::pin::pin!(sender.send_request(request));
        loop {
            tokio::select! {
                response = &mut sending => break response.map_err(Error::from),
                // The connection ended before the response: the sender says why next.
                ended = &mut connection, if connection_done.is_none() => {
                    connection_done = Some(ended);
                }
            }
        }
    })
    .await
    .map_err(|_| Error::ConnectionReadTimeout)??;
    drop(sender);
    let response = response.map(|body| body.map_err(Error::from).boxed_unsync());
    let io: Box<dyn Future<Output = Result<(), Error>> + Send> = Box::new(async move {
        // The permits are held for as long as the connection is open.
        let _permits = permits;
        match connection_done {
            Some(ended) => ended.map_err(Error::from),
            None => connection.await.map_err(Error::from),
        }
    });
    Ok((response, io))
}

/// A connection to `host` (a name or an address) on `port`, to one of its addresses
/// `reach` allows: none allowed is `destination-IP-prohibited`, before any is tried.
async fn connect(host: &str, port: u16, reach: Reach) -> Result<TcpStream, Error> {
    let resolved: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|_| Error::DnsError {
                rcode: None,
                info_code: None,
            })?
            .collect(),
    };
    let allowed = reachable(&resolved, reach);
    if allowed.is_empty() {
        return Err(if resolved.is_empty() {
            Error::DestinationNotFound
        } else {
            Error::DestinationIpProhibited
        });
    }
    let mut last = Error::DestinationUnavailable;
    for address in allowed {
        match TcpStream::connect(address).await {
            Ok(stream) => return Ok(stream),
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = Error::ConnectionRefused;
            }
            Err(err) => last = Error::Connect(err),
        }
    }
    Err(last)
}

/// `stream` after a TLS handshake with `host`, within `timeout`.
async fn secure(
    shared: &Outbound,
    host: &str,
    stream: TcpStream,
    timeout: Duration,
) -> Result<Box<dyn Stream>, Error> {
    let name = match host.parse::<IpAddr>() {
        Ok(ip) => rustls_pki_types::ServerName::from(ip),
        Err(_) => rustls_pki_types::ServerName::try_from(host.to_owned())
            .map_err(|_| Error::HttpRequestUriInvalid)?,
    };
    let tls = tokio::time::timeout(timeout, shared.tls.connect(name, stream))
        .await
        .map_err(|_| Error::ConnectionTimeout)?
        .map_err(tls_error)?;
    Ok(Box::new(tls))
}

/// A failed handshake as the guest's error: a certificate that does not verify is
/// `TLS-certificate-error`, an alert from the server `TLS-alert-received`.
fn tls_error(err: std::io::Error) -> Error {
    match err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(_)) => Error::TlsCertificateError,
        Some(rustls::Error::AlertReceived(alert)) => Error::TlsAlertReceived {
            alert_id: Some(u8::from(*alert)),
            alert_message: Some(format!("{alert:?}")),
        },
        _ => Error::Tls(err),
    }
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Stream for T {}

/// The addresses a request may connect to: all of them when the grant names its
/// addresses, otherwise the public ones only.
fn reachable(resolved: &[SocketAddr], reach: Reach) -> Vec<SocketAddr> {
    resolved
        .iter()
        .filter(|address| reach == Reach::Named || is_public(address.ip()))
        .copied()
        .collect()
}

/// Whether `ip` is an address on the public internet: not unspecified, loopback,
/// private (RFC 1918, shared address space, unique-local), link-local (cloud metadata
/// services live there), multicast, broadcast or reserved, nor any of those inside an
/// IPv6 address that carries an IPv4 one (mapped, compatible, NAT64, 6to4).
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_unspecified()
        || a == 0
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || (a == 100 && (64..128).contains(&b)) // shared address space (RFC 6598)
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || ip.is_multicast()
        || ip.is_broadcast()
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    let embedded_v4 = |high: usize| {
        let octets = ip.octets();
        Ipv4Addr::new(
            octets[high],
            octets[high + 1],
            octets[high + 2],
            octets[high + 3],
        )
    };
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    if segments[..6] == [0; 6] {
        // `::`, `::1` and the deprecated IPv4-compatible form `::a.b.c.d`.
        return !ip.is_unspecified() && !ip.is_loopback() && is_public_v4(embedded_v4(12));
    }
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(embedded_v4(12)); // NAT64
    }
    if segments[0] == 0x2002 {
        return is_public_v4(embedded_v4(2)); // 6to4
    }
    !(ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00 // unique-local
        || (segments[0] & 0xffc0) == 0xfe80 // link-local
        || (segments[0] & 0xffc0) == 0xfec0) // site-local (deprecated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "192.0.0.8",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::10.0.0.1",
            "2002:7f00:1::",
            "fd00::1",
            "fc00::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ] {
            let ip: IpAddr = private.parse().expect("an address");
            assert!(!is_public(ip), "{private} counted as public");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            let ip: IpAddr = public.parse().expect("an address");
            assert!(is_public(ip), "{public} counted as private");
        }
    }

    #[test]
    fn a_name_with_one_private_address_reaches_only_its_public_ones() {
        let resolved: Vec<SocketAddr> = ["10.0.0.5:443", "93.184.215.14:443", "[::1]:443"]
            .iter()
            .map(|a| a.parse().expect("an address"))
            .collect();
        assert_eq!(
            reachable(&resolved, Reach::Public),
            vec!["93.184.215.14:443".parse::<SocketAddr>().expect("address")]
        );
        assert_eq!(reachable(&resolved, Reach::Named), resolved);
        assert!(reachable(&resolved[..1], Reach::Public).is_empty());
    }
}
