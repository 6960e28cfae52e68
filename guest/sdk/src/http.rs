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

/// The setting that holds the endpoint's secret token, the equivalent of `cmq-host serve
/// --token`: when set, a push must carry it as `/push/TOKEN` at the end of its path or
/// as `?token=TOKEN`, or it is answered `404 not found` before anything else, as
/// `cmq-host` answers it. At least 16 letters, digits or `-._~`. Read through
/// [`crate::config`] (`wasmtime serve -S config-var=cmq_token=...`, `cmq-host
/// --config-var`), or, when no such setting is given, from the environment variable
/// [`TOKEN_VARIABLE`].
pub const TOKEN_SETTING: &str = "cmq_token";

/// The environment variable that holds the endpoint's token when the setting
/// [`TOKEN_SETTING`] is not given.
pub const TOKEN_VARIABLE: &str = "CMQ_TOKEN";

/// The setting that sets the push format (`auto`, `json` or `simplified`; default
/// `auto`), the equivalent of `cmq-host serve --format`; when not given, the
/// environment variable [`FORMAT_VARIABLE`].
pub const FORMAT_SETTING: &str = "cmq_format";

/// The environment variable that sets the push format when the setting
/// [`FORMAT_SETTING`] is not given.
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
    /// The request's path and query, where a token is looked for.
    pub(crate) path_with_query: String,
    /// The method, when it is not POST.
    pub(crate) not_post: Option<String>,
    pub(crate) headers: PushHeaders,
    pub(crate) content_length: Option<u64>,
}

/// Decides the answer for a push: the same checks, in the same order, as `cmq-host`.
/// `read_body` is called only when the push passed the checks that need no body.
pub(crate) fn answer<H: Handler>(
    push: &Push,
    settings: Result<Settings, String>,
    read_body: impl FnOnce() -> Result<Vec<u8>, BodyError>,
) -> Answer {
    let settings = match settings {
        Ok(settings) => settings,
        Err(reason) => {
            eprintln!("{reason}");
            return Answer::new(500, "guest failed");
        }
    };
    if let Some(token) = &settings.token
        && !carries(&push.path_with_query, token)
    {
        return Answer::new(404, "not found");
    }
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
    let format = settings.format;
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
            Answer::for_decision(&crate::error::decided(H::handle(message)), &id)
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

/// What the platform sets: the push format and the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) format: ExpectedFormat,
    pub(crate) token: Option<String>,
}

impl Settings {
    /// [`FORMAT_SETTING`] or [`FORMAT_VARIABLE`] (`auto` when neither is set) and
    /// [`TOKEN_SETTING`] or [`TOKEN_VARIABLE`], checked. Their values are never printed.
    fn from_platform() -> Result<Settings, String> {
        let format = match setting(FORMAT_SETTING, FORMAT_VARIABLE)? {
            Some((value, from)) => value.parse().map_err(|err| format!("{from}: {err}"))?,
            None => ExpectedFormat::Auto,
        };
        let token = match setting(TOKEN_SETTING, TOKEN_VARIABLE)? {
            Some((token, from)) => Some(checked_token(token, from)?),
            None => None,
        };
        Ok(Settings { format, token })
    }
}

/// The setting `name`, else the environment variable `variable`, with where it came
/// from; `None` when neither is set. An empty setting counts as none given: Spin's
/// variables always have a value, so a default of `""` stands for "not set".
fn setting(
    name: &'static str,
    variable: &'static str,
) -> Result<Option<(String, &'static str)>, String> {
    let given = crate::config::get(name).map_err(|err| err.to_string())?;
    if let Some(value) = given.filter(|value| !value.is_empty()) {
        return Ok(Some((value, name)));
    }
    Ok(std::env::var(variable).ok().map(|value| (value, variable)))
}

/// `token` when it is one `cmq-host` would take (the same rule, from `cmq-message`);
/// `from` names where it was read.
fn checked_token(token: String, from: &str) -> Result<String, String> {
    cmq_message::check_token(&token)
        .map_err(|reason| format!("{from} (value not shown): {reason}"))?;
    Ok(token)
}

/// Whether `path_with_query` carries `token`: as `/push/TOKEN` ending the path, or as
/// a `token=TOKEN` parameter. Compared in constant time, both places always.
fn carries(path_with_query: &str, token: &str) -> bool {
    let (path, query) = path_with_query
        .split_once('?')
        .map_or((path_with_query, None), |(path, query)| (path, Some(query)));
    let in_path = path
        .rsplit_once("/push/")
        .is_some_and(|(_, given)| same(given, token));
    let in_query = query.is_some_and(|query| {
        query
            .split('&')
            .filter_map(|pair| pair.strip_prefix("token="))
            .fold(false, |found, given| found | same(given, token))
    });
    in_path | in_query
}

/// `a == b` in time that depends on their lengths only.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |differ, (x, y)| differ | (x ^ y))
            == 0
}

/// Adapts a [`Handler`] to `wasi:http/incoming-handler`. Public only for
/// [`export!`](crate::export); not part of the API.
#[doc(hidden)]
#[derive(Debug)]
pub struct HttpExport<H>(PhantomData<H>);

impl<H: Handler> wasip2::exports::http::incoming_handler::Guest for HttpExport<H> {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let push = read_push(&request);
        let answer = answer::<H>(&push, Settings::from_platform(), || read_body(request));
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
        path_with_query: request.path_with_query().unwrap_or_default(),
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
        fn handle(message: crate::Message) -> crate::Result<Decision> {
            Ok(if message.has_tag("retry") {
                Decision::retry("asked")
            } else if message.has_tag("drop") {
                Decision::drop("asked")
            } else {
                Decision::Ack
            })
        }
    }

    fn push(method: Option<&str>, tag: &str, length: Option<u64>) -> Push {
        Push {
            path_with_query: "/cgi".into(),
            not_post: method.map(str::to_owned),
            headers: PushHeaders {
                request_id: Some("1".into()),
                message_id: Some("m1".into()),
                message_tag: Some(tag.into()),
            },
            content_length: length,
        }
    }

    fn auto() -> Result<Settings, String> {
        Ok(Settings {
            format: ExpectedFormat::Auto,
            token: None,
        })
    }

    fn body(bytes: &'static [u8]) -> impl FnOnce() -> Result<Vec<u8>, BodyError> {
        move || Ok(bytes.to_vec())
    }

    #[test]
    fn decisions_answer_as_cmq_host_does() {
        let ok = answer::<ByTag>(&push(None, "a", None), auto(), body(b"hi"));
        assert_eq!((ok.status, ok.body.as_str()), (200, "ok"));
        let drop = answer::<ByTag>(&push(None, "drop", None), auto(), body(b"x"));
        assert_eq!((drop.status, drop.body.as_str()), (200, "ok"));
        let retry = answer::<ByTag>(&push(None, "retry", None), auto(), body(b"x"));
        assert_eq!((retry.status, retry.body.as_str()), (503, "retry"));
    }

    #[test]
    fn bad_pushes_are_refused_before_the_handler() {
        let get = answer::<ByTag>(&push(Some("GET"), "", None), auto(), || {
            panic!("read a GET's body")
        });
        assert_eq!(get.status, 405);
        assert_eq!(get.header, Some(("allow", "POST")));
        let large = answer::<ByTag>(&push(None, "", Some(MAX_BODY as u64 + 1)), auto(), || {
            panic!("read an oversized body")
        });
        assert_eq!(large.status, 413);
        let not_json = answer::<ByTag>(
            &push(None, "", None),
            Ok(Settings {
                format: ExpectedFormat::Json,
                token: None,
            }),
            body(b"x"),
        );
        assert_eq!(not_json.status, 400);
        let bad_format = answer::<ByTag>(&push(None, "", None), Err("bad".into()), body(b"x"));
        assert_eq!(
            (bad_format.status, bad_format.body.as_str()),
            (500, "guest failed")
        );
    }

    #[test]
    fn a_token_set_is_required_in_the_path_or_the_query_as_cmq_host_requires_it() {
        const TOKEN: &str = "s3cret-token-0123456789";
        let with = |path: &str| {
            let push = Push {
                path_with_query: path.into(),
                ..push(None, "", None)
            };
            let settings = Ok(Settings {
                format: ExpectedFormat::Auto,
                token: Some(TOKEN.into()),
            });
            answer::<ByTag>(&push, settings, body(b"x")).status
        };
        assert_eq!(with(&format!("/orders/push/{TOKEN}")), 200);
        assert_eq!(with(&format!("/push/{TOKEN}")), 200);
        assert_eq!(with(&format!("/orders?a=1&token={TOKEN}")), 200);
        assert_eq!(with("/orders"), 404);
        assert_eq!(with("/orders/push/s3cret-token-012345678"), 404);
        assert_eq!(with(&format!("/orders/push/{TOKEN}x")), 404);
        assert_eq!(with(&format!("/orders?token={TOKEN}0")), 404);
        // Before the method: a GET without the token learns nothing.
        let get = Push {
            path_with_query: "/orders".into(),
            ..push(Some("GET"), "", None)
        };
        let settings = Ok(Settings {
            format: ExpectedFormat::Auto,
            token: Some(TOKEN.into()),
        });
        assert_eq!(answer::<ByTag>(&get, settings, body(b"")).status, 404);
        // A token cmq-host would refuse is refused, its value not shown.
        // A value no message could contain by chance, in any quoting.
        let err = checked_token("qz7x".into(), TOKEN_SETTING).expect_err("too short");
        assert!(
            !err.contains("qz7x") && err.starts_with("cmq_token "),
            "{err}"
        );
        let err =
            checked_token("qz7x qz7x qz7x qz7x qz7x".into(), TOKEN_VARIABLE).expect_err("a space");
        assert!(!err.contains("qz7x"), "{err}");
        assert!(checked_token("has space in it 0123".into(), TOKEN_SETTING).is_err());
        assert!(checked_token(TOKEN.into(), TOKEN_SETTING).is_ok());
    }
}
