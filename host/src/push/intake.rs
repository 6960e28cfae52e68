//! Intake, the first stage of a push: what can be refused before a byte of the body is
//! read (token, method, declared length), a place among the messages in flight, the
//! body within its size and time limits, and the CMQ message parsed from it.

use bytes::Bytes;
use cmq_message::PushHeaders;
use http::{HeaderMap, Method, Request, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tokio::sync::SemaphorePermit;

use crate::options::ServeAs;
use crate::options::SharedLimits;
use crate::route::{Route, Routes};

/// Why a push was refused before its message reached a guest.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    /// The push lacks the endpoint's token; answered like an unknown path.
    #[error("not found")]
    NotFound,
    /// CMQ only ever POSTs.
    #[error("method {0} not allowed: CMQ pushes with POST")]
    MethodNotAllowed(Method),
    /// The body is larger than the endpoint accepts.
    #[error("body larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    /// The sender took too long to send the body.
    #[error("body not received within {0:?}")]
    BodyTimeout(std::time::Duration),
    /// The sender stopped or broke the connection while sending the body.
    #[error("body could not be read: {0}")]
    BodyRead(String),
    /// The push is not a CMQ message this endpoint can parse.
    #[error(transparent)]
    Parse(#[from] cmq_message::ParseError),
    /// Too many messages are in flight; CMQ will retry.
    #[error("overloaded: {0} messages already in flight")]
    Overloaded(usize),
}

impl Refusal {
    /// Whether CMQ counts the push as a delivery that failed for want of room or time,
    /// one the store must count: a body that is not a push (400, 413) will never be
    /// handled anyway.
    pub(crate) fn is_a_delivery(&self) -> bool {
        matches!(
            self,
            Refusal::Overloaded(_) | Refusal::BodyTimeout(_) | Refusal::BodyRead(_)
        )
    }
}

/// A push that passed intake, holding its places in flight until it is answered.
pub(crate) struct Taken<'a> {
    /// The receiver's place, and the route's own when it has a cap.
    pub(crate) permits: (SemaphorePermit<'a>, Option<SemaphorePermit<'a>>),
    pub(crate) work: Work,
}

/// What a push that passed intake goes on to.
pub(crate) enum Work {
    /// A parsed message, for a `cmq:push/handler` guest, and the push it came in.
    Message(cmq_message::Message, RawPush),
    /// The request itself, for a `wasi:http/incoming-handler` guest.
    Request(http::request::Parts, Bytes),
}

/// A push as it came, for the dead-letter journal.
pub(crate) struct RawPush {
    pub(crate) headers: PushHeaders,
    pub(crate) body: Bytes,
}

/// Takes `request` in for `route` of `routes`; `rest` is what is left of the path after
/// the route's own. The places in flight are taken before the body is read, so that at
/// most `max_in_flight` bodies are ever buffered.
pub(crate) async fn take<'a>(
    routes: &'a Routes,
    route: &'a Route,
    rest: &str,
    request: Request<Incoming>,
) -> Result<Taken<'a>, Refusal> {
    admit(route, rest, &request, routes.limits.max_body)?;
    let permit = routes
        .in_flight
        .try_acquire()
        .map_err(|_| Refusal::Overloaded(routes.limits.max_in_flight))?;
    let route_permit = match (&route.in_flight, route.options.max_in_flight) {
        (Some(cap), Some(max)) => Some(cap.try_acquire().map_err(|_| Refusal::Overloaded(max))?),
        _ => None,
    };
    let (parts, body) = request.into_parts();
    let body = read_body(body, &routes.limits).await?;
    // A wasi-http guest gets the request as it came; a push handler, the message.
    let work = match route.guest.serves() {
        ServeAs::IncomingHandler => Work::Request(parts, body),
        ServeAs::PushHandler | ServeAs::Auto => {
            // Read lossily, two ids would make one key: refused instead.
            if message_id(&parts.headers).is_some_and(|id| id.is_err()) {
                return Err(cmq_message::ParseError::MessageIdNotText.into());
            }
            let headers = push_headers(&parts.headers);
            let message = cmq_message::parse(route.options.format, &headers, &body)?;
            Work::Message(message, RawPush { headers, body })
        }
    };
    Ok(Taken {
        permits: (permit, route_permit),
        work,
    })
}

/// The `x-cmq-message-id` header, if there is one, as text (an error when it is not
/// UTF-8).
fn message_id(headers: &HeaderMap) -> Option<Result<&str, std::str::Utf8Error>> {
    headers
        .get(cmq_message::HEADER_MESSAGE_ID)
        .map(|id| std::str::from_utf8(id.as_bytes()))
}

/// Refuses, before reading a byte of the body, what can never be a CMQ push for
/// `route`; `rest` is what is left of the path after the route's own.
fn admit(
    route: &Route,
    rest: &str,
    request: &Request<Incoming>,
    max_body: usize,
) -> Result<(), Refusal> {
    if let Some(token) = &route.options.token
        && !token.is_in(rest, request.uri().query())
    {
        return Err(Refusal::NotFound);
    }
    if request.method() != Method::POST {
        return Err(Refusal::MethodNotAllowed(request.method().clone()));
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max_body as u64) {
        return Err(Refusal::BodyTooLarge { limit: max_body });
    }
    Ok(())
}

/// Reads the body, within its size and time limits.
async fn read_body(body: Incoming, limits: &SharedLimits) -> Result<Bytes, Refusal> {
    let limit = limits.max_body;
    let collect = Limited::new(body, limit).collect();
    let body: Bytes = match tokio::time::timeout(limits.body_timeout, collect).await {
        Err(_elapsed) => return Err(Refusal::BodyTimeout(limits.body_timeout)),
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => {
            return Err(Refusal::BodyTooLarge { limit });
        }
        Ok(Err(err)) => return Err(Refusal::BodyRead(err.to_string())),
    };
    Ok(body)
}

/// The `x-cmq-*` headers. Values that are not UTF-8 are read lossily: tags are text, and
/// a mangled id still identifies a wasi-http push in the log (a push handler's is
/// refused before this).
pub(crate) fn push_headers(headers: &HeaderMap) -> PushHeaders {
    let text = |name: &str| {
        headers
            .get(name)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
    };
    PushHeaders {
        request_id: text(cmq_message::HEADER_REQUEST_ID),
        message_id: text(cmq_message::HEADER_MESSAGE_ID),
        message_tag: text(cmq_message::HEADER_MESSAGE_TAG),
    }
}
