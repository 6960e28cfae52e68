//! The answer, the last stage of a push: the one place that turns how it ended into the
//! HTTP answer CMQ sees. Only an acknowledgement, a drop kept in the journal, a message
//! the journal keeps, or a duplicate of an acknowledged one answer 2xx; every error is a
//! variant of [`PushError`] with exactly one status code.

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::Full;

use crate::bindings::Decision;
use crate::delivery::{Outcome, Recorded};
use crate::guest::GuestFault;
use crate::store::StoreError;

/// The answer's body type.
pub(crate) type AnswerBody = Full<Bytes>;

/// Why a push got no decision from its guest.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PushError {
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
    /// Another push of the same message is being handled; CMQ will retry.
    #[error("another push of this message is in progress")]
    InProgress,
    /// The delivery store failed; CMQ will retry.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The guest gave no decision.
    #[error(transparent)]
    Guest(#[from] GuestFault),
}

impl PushError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            PushError::NotFound => StatusCode::NOT_FOUND,
            PushError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            PushError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            PushError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            PushError::BodyRead(_) | PushError::Parse(_) => StatusCode::BAD_REQUEST,
            PushError::Overloaded(_) | PushError::InProgress | PushError::Store(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            PushError::Guest(fault) => fault_status(fault),
        }
    }

    pub(crate) fn into_response(self) -> Response<AnswerBody> {
        let status = self.status();
        // The sender learns what was wrong with its request, but nothing of the guest's
        // internals: those go to the log.
        let body = match &self {
            PushError::Overloaded(_) | PushError::Guest(GuestFault::Instantiate(_)) => {
                "overloaded".to_owned()
            }
            PushError::Guest(_) => "guest failed".to_owned(),
            PushError::InProgress => "in progress".to_owned(),
            // The store's details (a path, a server's message) go to the log.
            PushError::Store(_) => "store unavailable".to_owned(),
            other => other.to_string(),
        };
        let mut response = text(status, body);
        match self {
            PushError::MethodNotAllowed(_) => {
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("POST"));
            }
            _ if status == StatusCode::SERVICE_UNAVAILABLE => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

/// The answer for how a delivery ended.
pub(crate) fn of(outcome: Outcome) -> Response<AnswerBody> {
    match outcome {
        Outcome::Duplicate
        | Outcome::Busy {
            journaled: Some(_), ..
        }
        | Outcome::Ran {
            recorded: Recorded::Journaled(_),
            ..
        } => ok_response(),
        Outcome::Busy {
            journaled: None, ..
        } => PushError::InProgress.into_response(),
        Outcome::Unclaimed(err)
        | Outcome::Ran {
            recorded: Recorded::DropNotJournaled(err),
            ..
        } => PushError::Store(err).into_response(),
        Outcome::Ran {
            result: Ok(decision),
            ..
        } => decision_response(&decision),
        Outcome::Ran {
            result: Err(fault), ..
        } => PushError::Guest(fault).into_response(),
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

/// The answer for a guest's decision: `200 ok` for ack and drop, `503` for retry.
fn decision_response(decision: &Decision) -> Response<AnswerBody> {
    match decision {
        Decision::Ack | Decision::Drop(_) => ok_response(),
        Decision::Retry(_) => text(StatusCode::SERVICE_UNAVAILABLE, "retry".to_owned()),
    }
}

/// `200 ok`: CMQ forgets the message.
fn ok_response() -> Response<AnswerBody> {
    text(StatusCode::OK, "ok".to_owned())
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
