//! The answer, the last stage of a push: the one place that turns how it ended into the
//! HTTP answer CMQ sees. Only an acknowledgement, a drop kept in the journal, a message
//! the journal keeps, or a duplicate of an acknowledged one answer 2xx; everything else
//! has exactly one non-2xx status, so that CMQ delivers again.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use crate::bindings::Decision;
use crate::delivery::{Outcome, Recorded};
use crate::guest::GuestFault;
use crate::intake::Refusal;

/// The answer's body type.
pub(crate) type AnswerBody = Full<Bytes>;

/// The answer for how a delivery ended.
pub(crate) fn of(outcome: Outcome) -> Response<AnswerBody> {
    match outcome {
        Outcome::Duplicate { .. }
        | Outcome::Busy {
            journaled: Some(_), ..
        }
        | Outcome::Ran {
            recorded: Recorded::Journaled(_),
            ..
        } => ok(),
        Outcome::Busy {
            journaled: None, ..
        } => unavailable("in progress"),
        // The store's details (a path, a server's message) go to the log.
        Outcome::Unclaimed(_)
        | Outcome::Ran {
            recorded: Recorded::DropNotJournaled,
            ..
        } => unavailable("store unavailable"),
        Outcome::Ran {
            result: Ok(Decision::Ack | Decision::Drop(_)),
            ..
        } => ok(),
        Outcome::Ran {
            result: Ok(Decision::Retry(_)),
            ..
        } => text(StatusCode::SERVICE_UNAVAILABLE, "retry".to_owned()),
        Outcome::Ran {
            result: Err(fault), ..
        } => guest_failed(&fault),
    }
}

/// The answer for a push refused at intake: the sender learns what was wrong with its
/// request.
pub(crate) fn refused(refusal: &Refusal) -> Response<AnswerBody> {
    match refusal {
        Refusal::Overloaded(_) => unavailable("overloaded"),
        Refusal::MethodNotAllowed(_) => {
            let mut response = text(refusal.status(), refusal.to_string());
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            response
        }
        _ => text(refusal.status(), refusal.to_string()),
    }
}

/// The answer for a guest that gave no decision: nothing of its internals, which go to
/// the log.
pub(crate) fn guest_failed(fault: &GuestFault) -> Response<AnswerBody> {
    match fault {
        GuestFault::Instantiate(_) => unavailable("overloaded"),
        GuestFault::Deadline(_) | GuestFault::Trap(_) => {
            text(fault_status(fault), "guest failed".to_owned())
        }
    }
}

/// The status of a push whose guest gave no decision.
pub(crate) fn fault_status(fault: &GuestFault) -> StatusCode {
    match fault {
        // No instance could be made (slots or memory exhausted): the host is out of
        // room, which is overload, not a guest fault.
        GuestFault::Instantiate(_) => StatusCode::SERVICE_UNAVAILABLE,
        GuestFault::Deadline(_) | GuestFault::Trap(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `200 ok`: CMQ forgets the message.
fn ok() -> Response<AnswerBody> {
    text(StatusCode::OK, "ok".to_owned())
}

/// `503` with `Retry-After: 1`: CMQ delivers again (on its own schedule).
fn unavailable(body: &str) -> Response<AnswerBody> {
    let mut response = text(StatusCode::SERVICE_UNAVAILABLE, body.to_owned());
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

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
