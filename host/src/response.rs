//! The body every answer of the host has, pushes and pages alike, and its plain-text
//! answer.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

/// The answer's body type.
pub(crate) type AnswerBody = Full<Bytes>;

/// A `text/plain` answer.
pub(crate) fn text(status: StatusCode, body: String) -> Response<AnswerBody> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
