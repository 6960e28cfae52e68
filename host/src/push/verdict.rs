//! The verdict: how a push ended, decided once. The HTTP answer CMQ sees, the decision,
//! the log line and the metrics ([`super::report`]), the live feed's entry
//! ([`super::feed`]) and the span's attributes all read from it; this is the one file
//! of the push path that writes a status.
//!
//! Only an acknowledgement, a drop kept in the journal, a message the journal keeps,
//! or a duplicate of a settled one answer 2xx; everything else has exactly one non-2xx
//! status, so that CMQ delivers again.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use crate::push::delivery::{Outcome, Recorded};
use crate::push::intake::Refusal;
use crate::push::journal_entry::clip;
use crate::response::{AnswerBody, text};
use crate::sandbox::bindings::Decision;
use crate::sandbox::guest_fault::GuestFault;
use crate::store::Settled;

/// How a push that reached its route's delivery ended.
pub(crate) struct Verdict {
    /// What ended it.
    pub(crate) ended: Ended,
    /// The status CMQ gets.
    pub(crate) status: StatusCode,
    /// The attempt the store counted, if it counted one.
    pub(crate) attempt: Option<u32>,
    /// The journal entry that keeps the message, if one does.
    pub(crate) dead_letter: Option<i64>,
    /// Why, when there is more to say than the decision: the guest's reason (clipped),
    /// its fault, the store's error, what the push duplicates.
    pub(crate) reason: Option<String>,
    answer: Answer,
}

/// What ended a push.
pub(crate) enum Ended {
    /// The guest decided (a `wasi:http` guest by its status: 2xx acknowledges).
    Decided(Decided),
    /// The guest gave no decision.
    Fault(GuestFault),
    /// Settled within the dedupe window: not run again.
    Duplicate(Settled),
    /// Another push of the message is running.
    Busy,
    /// The store could not claim it: not run.
    Unclaimed,
}

/// A guest's decision, without its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decided {
    Ack,
    Retry,
    Drop,
}

impl Decided {
    fn name(self) -> &'static str {
        match self {
            Decided::Ack => "ack",
            Decided::Retry => "retry",
            Decided::Drop => "drop",
        }
    }
}

/// Where the answer's body comes from.
enum Answer {
    /// The host's own words.
    Host(&'static str),
    /// The host's own words, with `Retry-After: 1`.
    HostRetryAfter(&'static str),
    /// A `wasi:http` guest's response, as it gave it.
    Guest(Response<AnswerBody>),
}

impl Verdict {
    /// A push handler's delivery, as [`super::delivery::Delivery::run`] ended it.
    pub(crate) fn of(outcome: Outcome) -> Verdict {
        match outcome {
            Outcome::Duplicate { of } => Verdict {
                reason: Some(format!("a duplicate of {}", of.name())),
                ..Verdict::ok(Ended::Duplicate(of), None, None)
            },
            Outcome::Busy {
                attempt,
                journaled: Some(id),
            } => Verdict::ok(Ended::Busy, Some(attempt), Some(id)),
            Outcome::Busy {
                attempt,
                journaled: None,
            } => Verdict {
                attempt: Some(attempt),
                ..Verdict::unavailable(Ended::Busy, None, "in progress")
            },
            // The store's details (a path, a server's message) go to the log only.
            Outcome::Unclaimed(err) => {
                Verdict::unavailable(Ended::Unclaimed, Some(err.to_string()), "store unavailable")
            }
            Outcome::Ran {
                attempt,
                result,
                recorded,
            } => Verdict::ran(attempt, result, recorded),
        }
    }

    /// A delivery whose guest ran.
    fn ran(
        attempt: Option<u32>,
        result: Result<Decision, GuestFault>,
        recorded: Recorded,
    ) -> Verdict {
        let ok = (StatusCode::OK, Answer::Host("ok"));
        let (ended, reason, guest_answer) = match result {
            Ok(Decision::Ack) => (Ended::Decided(Decided::Ack), None, ok),
            Ok(Decision::Retry(reason)) => (
                Ended::Decided(Decided::Retry),
                Some(clip(&reason).into()),
                (StatusCode::SERVICE_UNAVAILABLE, Answer::Host("retry")),
            ),
            Ok(Decision::Drop(reason)) => (
                Ended::Decided(Decided::Drop),
                Some(clip(&reason).into()),
                ok,
            ),
            Err(fault) => {
                let (answer, reason) = (fault_answer(&fault), Some(fault.to_string()));
                (Ended::Fault(fault), reason, answer)
            }
        };
        let (status, answer) = match &recorded {
            // The journal keeps it, whatever the guest said.
            Recorded::Journaled(_) => (StatusCode::OK, Answer::Host("ok")),
            Recorded::DropNotJournaled => (
                StatusCode::SERVICE_UNAVAILABLE,
                Answer::HostRetryAfter("store unavailable"),
            ),
            Recorded::NoStore | Recorded::StoreFailed | Recorded::Settled => guest_answer,
        };
        let dead_letter = match recorded {
            Recorded::Journaled(id) => Some(id),
            _ => None,
        };
        Verdict {
            ended,
            status,
            attempt,
            dead_letter,
            reason,
            answer,
        }
    }

    /// A `wasi:http/incoming-handler` guest's delivery: its response is the answer.
    pub(crate) fn passed(result: Result<Response<Full<Bytes>>, GuestFault>) -> Verdict {
        match result {
            Ok(response) => {
                let status = response.status();
                let decision = if status.is_success() {
                    Decided::Ack
                } else {
                    Decided::Retry
                };
                Verdict::answer(Ended::Decided(decision), status, Answer::Guest(response))
            }
            Err(fault) => {
                let (status, answer) = fault_answer(&fault);
                let reason = Some(fault.to_string());
                Verdict {
                    reason,
                    ..Verdict::answer(Ended::Fault(fault), status, answer)
                }
            }
        }
    }

    /// The decision, as the span, the log line, the metrics and the feed name it.
    pub(crate) fn decision(&self) -> &'static str {
        match &self.ended {
            Ended::Decided(decision) => decision.name(),
            Ended::Fault(_) => "fault",
            Ended::Duplicate(_) => "duplicate",
            Ended::Busy => "busy",
            Ended::Unclaimed => "unclaimed",
        }
    }

    /// The HTTP answer.
    pub(crate) fn into_response(self) -> Response<AnswerBody> {
        match self.answer {
            Answer::Guest(response) => response,
            Answer::Host(body) => text(self.status, body.to_owned()),
            Answer::HostRetryAfter(body) => retry_after(text(self.status, body.to_owned())),
        }
    }

    /// `200 ok`: CMQ forgets the message.
    fn ok(ended: Ended, attempt: Option<u32>, dead_letter: Option<i64>) -> Verdict {
        Verdict {
            attempt,
            dead_letter,
            ..Verdict::answer(ended, StatusCode::OK, Answer::Host("ok"))
        }
    }

    /// `503` with `Retry-After: 1`: CMQ delivers again (on its own schedule).
    fn unavailable(ended: Ended, reason: Option<String>, body: &'static str) -> Verdict {
        Verdict {
            reason,
            ..Verdict::answer(
                ended,
                StatusCode::SERVICE_UNAVAILABLE,
                Answer::HostRetryAfter(body),
            )
        }
    }

    fn answer(ended: Ended, status: StatusCode, answer: Answer) -> Verdict {
        Verdict {
            ended,
            status,
            attempt: None,
            dead_letter: None,
            reason: None,
            answer,
        }
    }
}

/// The answer for a guest that gave no decision: nothing of its internals, which go
/// to the log.
fn fault_answer(fault: &GuestFault) -> (StatusCode, Answer) {
    match fault {
        // No instance could be made (slots or memory exhausted): the host is out of
        // room, which is overload, not a guest fault.
        GuestFault::Instantiate(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Answer::HostRetryAfter("overloaded"),
        ),
        GuestFault::Deadline(_) | GuestFault::Trap(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Answer::Host("guest failed"),
        ),
    }
}

/// The status of a push refused at intake.
pub(crate) fn refusal_status(refusal: &Refusal) -> StatusCode {
    match refusal {
        Refusal::NotFound => StatusCode::NOT_FOUND,
        Refusal::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
        Refusal::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        Refusal::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
        Refusal::BodyRead(_) | Refusal::Parse(_) => StatusCode::BAD_REQUEST,
        Refusal::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The answer for a push refused at intake: the sender learns what was wrong with its
/// request.
pub(crate) fn refused(refusal: &Refusal) -> Response<AnswerBody> {
    let status = refusal_status(refusal);
    match refusal {
        Refusal::Overloaded(_) => retry_after(text(status, "overloaded".to_owned())),
        Refusal::MethodNotAllowed(_) => {
            let mut response = text(status, refusal.to_string());
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            response
        }
        _ => text(status, refusal.to_string()),
    }
}

fn retry_after(mut response: Response<AnswerBody>) -> Response<AnswerBody> {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
