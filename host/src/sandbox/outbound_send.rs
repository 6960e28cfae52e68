//! One outbound request on its own connection: the destination resolved and checked,
//! connected to, secured with TLS for `https`, and the request sent, each step within
//! its timeout.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_rustls::TlsConnector;
use wasmtime_wasi_http::{Error, WasiBody};

use crate::sandbox::http_grant::Reach;
use crate::sandbox::public_address::reachable;

#[derive(Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) connect: Duration,
    pub(crate) first_byte: Duration,
}

/// Resolves, checks, connects and sends; the response's connection keeps the permits.
pub(crate) async fn send(
    tls: &TlsConnector,
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
    let stream = open(tls, &uri, reach, timeouts.connect).await?;
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

/// A connection to `uri`'s host and port (its scheme's default when it names none),
/// secured with TLS for `https`, within `timeout` for each of the two.
async fn open(
    tls: &TlsConnector,
    uri: &http::Uri,
    reach: Reach,
    timeout: Duration,
) -> Result<Box<dyn Stream>, Error> {
    let use_tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?;
    let bare_host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = uri.port_u16().unwrap_or(if use_tls { 443 } else { 80 });
    let stream = tokio::time::timeout(timeout, connect(bare_host, port, reach))
        .await
        .map_err(|_| Error::ConnectionTimeout)??;
    if use_tls {
        secure(tls, bare_host, stream, timeout).await
    } else {
        Ok(Box::new(stream))
    }
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
    tls: &TlsConnector,
    host: &str,
    stream: TcpStream,
    timeout: Duration,
) -> Result<Box<dyn Stream>, Error> {
    let name = match host.parse::<IpAddr>() {
        Ok(ip) => rustls_pki_types::ServerName::from(ip),
        Err(_) => rustls_pki_types::ServerName::try_from(host.to_owned())
            .map_err(|_| Error::HttpRequestUriInvalid)?,
    };
    let tls = tokio::time::timeout(timeout, tls.connect(name, stream))
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
