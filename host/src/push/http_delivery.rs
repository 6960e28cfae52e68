//! A `wasi:http/incoming-handler` guest's delivery: the request passed on as it came,
//! and the guest's response, whose status is its decision.

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::Full;

use crate::route::Route;
use crate::sandbox::guest_fault::GuestFault;
use crate::sandbox::instance::GuestTimes;

/// Most bytes of a wasi-http guest's response body passed on to the sender.
const MAX_ANSWER_BODY: usize = 64 << 10;

/// A `wasi:http/incoming-handler` guest's delivery: the request as it came (the token
/// taken out of it), and its response, whose status is the decision.
pub(crate) async fn pass_request(
    route: &Route,
    mut parts: http::request::Parts,
    body: Bytes,
    message_id: &str,
) -> (Result<Response<Full<Bytes>>, GuestFault>, GuestTimes) {
    if let Some(token) = &route.options.token {
        parts.uri = token.strip_from(&parts.uri);
    }
    // wasi:http needs an authority; HTTP/1.1 senders always send `Host`.
    if !parts.headers.contains_key(header::HOST) {
        parts
            .headers
            .insert(header::HOST, http::HeaderValue::from_static("localhost"));
    }
    let request = Request::from_parts(parts, Full::new(body));
    let (response, times) = route
        .guest
        .handle_http(request, message_id, MAX_ANSWER_BODY)
        .await;
    (response.map(|response| response.map(Full::new)), times)
}
