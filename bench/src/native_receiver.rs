//! The benchmark's limit: a plain hyper receiver that does what cmq-host does to a push
//! (read the body within the same limit, parse it with the same `cmq-message` crate,
//! answer `200 ok` or `400`) with no sandbox and no guest.
//!
//!     native-receiver [ADDR]   (default 127.0.0.1:0; prints "listening on http://ADDR")

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use cmq_message::{
    ExpectedFormat, HEADER_MESSAGE_ID, HEADER_MESSAGE_TAG, HEADER_REQUEST_ID, PushHeaders,
};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The same body limit as cmq-host's default.
const MAX_BODY: usize = 1 << 20;

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let headers = PushHeaders {
        request_id: header(request.headers(), HEADER_REQUEST_ID),
        message_id: header(request.headers(), HEADER_MESSAGE_ID),
        message_tag: header(request.headers(), HEADER_MESSAGE_TAG),
    };
    let (status, text) = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(body) => match cmq_message::parse(ExpectedFormat::Auto, &headers, &body.to_bytes()) {
            Ok(_message) => (StatusCode::OK, "ok"),
            Err(_) => (StatusCode::BAD_REQUEST, "bad push"),
        },
        Err(_) => (StatusCode::BAD_REQUEST, "bad body"),
    };
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    Ok(response)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = match std::env::args().nth(1) {
        Some(addr) => addr
            .parse()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
        None => SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let listener = TcpListener::bind(addr).await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
        });
    }
}
