//! The same handler behind `wasi:http/incoming-handler`, for wasi-http platforms (Spin,
//! `wasmtime serve`): the push is checked and parsed inside the guest, with the parsing
//! crate `cmq-host` uses, and answered exactly as `cmq-host` answers it.

use std::marker::PhantomData;

use cmq_message::{
    ExpectedFormat, HEADER_MESSAGE_ID, HEADER_MESSAGE_TAG, HEADER_REQUEST_ID, PushHeaders,
};
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasip2::io::streams::StreamError;

use crate::{Decision, Handler};

/// The largest push body accepted: CMQ's largest message, as `cmq-host`'s default.
pub const MAX_BODY: usize = 1 << 20;

/// The environment variable that sets the push format (`auto`, `json` or `simplified`;
/// default `auto`), the equivalent of `cmq-host serve --format`.
pub const FORMAT_VARIABLE: &str = "CMQ_FORMAT";

/// One HTTP answer: status, body, and at most one extra header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: String,
    pub(crate) header: Option<(&'static str, &'static str)>,
}

impl Answer {
    fn new(status: u16, body: impl Into<String>) -> Self {
        Answer {
            status,
            body: body.into(),
            header: None,
        }
    }

    /// The answer for a decision, as `cmq-host` gives it: `200 ok` for ack and drop,
    /// `503 retry` for retry. Reasons go to stderr, the platform's log.
    pub(crate) fn for_decision(decision: &Decision, message_id: &str) -> Self {
        match decision {
            Decision::Ack => Answer::new(200, "ok"),
            Decision::Drop(reason) => {
                eprintln!("message {message_id} dropped: {reason}");
                Answer::new(200, "ok")
            }
            Decision::Retry(reason) => {
                eprintln!("message {message_id} to be retried: {reason}");
                Answer::new(503, "retry")
            }
        }
    }
}

/// The request's parts the answer depends on, read out of `wasi:http`.
pub(crate) struct Push {
    /// The method, when it is not POST.
    pub(crate) not_post: Option<String>,
    pub(crate) headers: PushHeaders,
    pub(crate) content_length: Option<u64>,
}

/// Decides the answer for a push: the same checks, in the same order, as `cmq-host`.
/// `read_body` is called only when the push passed the checks that need no body.
pub(crate) fn answer<H: Handler>(
    push: &Push,
    format: Result<ExpectedFormat, String>,
    read_body: impl FnOnce() -> Result<Vec<u8>, BodyError>,
) -> Answer {
    if let Some(method) = &push.not_post {
        return Answer {
            header: Some(("allow", "POST")),
            ..Answer::new(
                405,
                format!("method {method} not allowed: CMQ pushes with POST"),
            )
        };
    }
    let too_large = || {
        Answer::new(
            413,
            format!("body larger than the limit of {MAX_BODY} bytes"),
        )
    };
    if push
        .content_length
        .is_some_and(|length| length > MAX_BODY as u64)
    {
        return too_large();
    }
    let format = match format {
        Ok(format) => format,
        Err(reason) => {
            eprintln!("{reason}");
            return Answer::new(500, "guest failed");
        }
    };
    let body = match read_body() {
        Ok(body) => body,
        Err(BodyError::TooLarge) => return too_large(),
        Err(BodyError::Read(reason)) => {
            return Answer::new(400, format!("body could not be read: {reason}"));
        }
    };
    match cmq_message::parse(format, &push.headers, &body) {
        Ok(message) => {
            let id = message.message_id.clone();
            Answer::for_decision(&H::handle(message), &id)
        }
        Err(err) => Answer::new(400, err.to_string()),
    }
}

/// Why a body could not be had.
#[derive(Debug)]
pub(crate) enum BodyError {
    TooLarge,
    Read(String),
}

/// The format from [`FORMAT_VARIABLE`], `auto` when it is not set.
fn format_from_env() -> Result<ExpectedFormat, String> {
    match std::env::var(FORMAT_VARIABLE) {
        Ok(value) => value
            .parse()
            .map_err(|err| format!("{FORMAT_VARIABLE}: {err}")),
        Err(_) => Ok(ExpectedFormat::Auto),
    }
}

/// Adapts a [`Handler`] to `wasi:http/incoming-handler`. Public only for
/// [`export!`](crate::export); not part of the API.
#[doc(hidden)]
#[derive(Debug)]
pub struct HttpExport<H>(PhantomData<H>);

impl<H: Handler> wasip2::exports::http::incoming_handler::Guest for HttpExport<H> {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let push = read_push(&request);
        let answer = answer::<H>(&push, format_from_env(), || read_body(request));
        respond(response_out, &answer);
    }
}

fn read_push(request: &IncomingRequest) -> Push {
    let headers = request.headers();
    let first = |name: &str| {
        headers
            .get(name)
            .into_iter()
            .next()
            .map(|value| String::from_utf8_lossy(&value).into_owned())
    };
    let not_post = match request.method() {
        Method::Post => None,
        Method::Get => Some("GET".to_owned()),
        Method::Head => Some("HEAD".to_owned()),
        Method::Put => Some("PUT".to_owned()),
        Method::Delete => Some("DELETE".to_owned()),
        Method::Connect => Some("CONNECT".to_owned()),
        Method::Options => Some("OPTIONS".to_owned()),
        Method::Trace => Some("TRACE".to_owned()),
        Method::Patch => Some("PATCH".to_owned()),
        Method::Other(other) => Some(other),
    };
    Push {
        not_post,
        headers: PushHeaders {
            request_id: first(HEADER_REQUEST_ID),
            message_id: first(HEADER_MESSAGE_ID),
            message_tag: first(HEADER_MESSAGE_TAG),
        },
        content_length: first("content-length").and_then(|value| value.trim().parse().ok()),
    }
}

fn read_body(request: IncomingRequest) -> Result<Vec<u8>, BodyError> {
    let body = request
        .consume()
        .map_err(|()| BodyError::Read("body already consumed".into()))?;
    let stream = body
        .stream()
        .map_err(|()| BodyError::Read("body stream unavailable".into()))?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 << 10) {
            Ok(chunk) => {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > MAX_BODY {
                    return Err(BodyError::TooLarge);
                }
            }
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(err)) => {
                return Err(BodyError::Read(err.to_debug_string()));
            }
        }
    }
    Ok(bytes)
}

fn respond(response_out: ResponseOutparam, answer: &Answer) {
    let mut fields = vec![(
        "content-type".to_owned(),
        b"text/plain; charset=utf-8".to_vec(),
    )];
    if let Some((name, value)) = answer.header {
        fields.push((name.to_owned(), value.as_bytes().to_vec()));
    }
    let Ok(headers) = Fields::from_list(&fields) else {
        ResponseOutparam::set(
            response_out,
            Err(internal_error("invalid response headers")),
        );
        return;
    };
    let response = OutgoingResponse::new(headers);
    if response.set_status_code(answer.status).is_err() {
        ResponseOutparam::set(response_out, Err(internal_error("invalid status")));
        return;
    }
    let Ok(body) = response.body() else {
        ResponseOutparam::set(response_out, Err(internal_error("no response body")));
        return;
    };
    ResponseOutparam::set(response_out, Ok(response));
    if let Ok(stream) = body.write() {
        // At most 4096 bytes per call, as the stream contract allows.
        for chunk in answer.body.as_bytes().chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
    }
    let _ = OutgoingBody::finish(body, None);
}

fn internal_error(reason: &str) -> wasip2::http::types::ErrorCode {
    wasip2::http::types::ErrorCode::InternalError(Some(reason.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct ByTag;

    impl Handler for ByTag {
        fn handle(message: crate::Message) -> Decision {
            if message.has_tag("retry") {
                Decision::retry("asked")
            } else if message.has_tag("drop") {
                Decision::drop("asked")
            } else {
                Decision::Ack
            }
        }
    }

    fn push(method: Option<&str>, tag: &str, length: Option<u64>) -> Push {
        Push {
            not_post: method.map(str::to_owned),
            headers: PushHeaders {
                request_id: Some("1".into()),
                message_id: Some("m1".into()),
                message_tag: Some(tag.into()),
            },
            content_length: length,
        }
    }

    fn body(bytes: &'static [u8]) -> impl FnOnce() -> Result<Vec<u8>, BodyError> {
        move || Ok(bytes.to_vec())
    }

    #[test]
    fn decisions_answer_as_cmq_host_does() {
        let ok = answer::<ByTag>(
            &push(None, "a", None),
            Ok(ExpectedFormat::Auto),
            body(b"hi"),
        );
        assert_eq!((ok.status, ok.body.as_str()), (200, "ok"));
        let drop = answer::<ByTag>(
            &push(None, "drop", None),
            Ok(ExpectedFormat::Auto),
            body(b"x"),
        );
        assert_eq!((drop.status, drop.body.as_str()), (200, "ok"));
        let retry = answer::<ByTag>(
            &push(None, "retry", None),
            Ok(ExpectedFormat::Auto),
            body(b"x"),
        );
        assert_eq!((retry.status, retry.body.as_str()), (503, "retry"));
    }

    #[test]
    fn bad_pushes_are_refused_before_the_handler() {
        let get = answer::<ByTag>(
            &push(Some("GET"), "", None),
            Ok(ExpectedFormat::Auto),
            || panic!("read a GET's body"),
        );
        assert_eq!(get.status, 405);
        assert_eq!(get.header, Some(("allow", "POST")));
        let large = answer::<ByTag>(
            &push(None, "", Some(MAX_BODY as u64 + 1)),
            Ok(ExpectedFormat::Auto),
            || panic!("read an oversized body"),
        );
        assert_eq!(large.status, 413);
        let not_json = answer::<ByTag>(&push(None, "", None), Ok(ExpectedFormat::Json), body(b"x"));
        assert_eq!(not_json.status, 400);
        let bad_format = answer::<ByTag>(&push(None, "", None), Err("bad".into()), body(b"x"));
        assert_eq!(
            (bad_format.status, bad_format.body.as_str()),
            (500, "guest failed")
        );
    }
}
