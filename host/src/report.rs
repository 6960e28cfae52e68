//! What the log and the metrics say of each push: one line when it ends, whatever the
//! stage it ended in, and the counters behind `/metrics`. The path of a push may hold
//! its route's token, so no line holds the path.

use std::net::SocketAddr;
use std::time::Duration;

use http::Response;

use crate::answer::fault_status;
use crate::bindings::Decision;
use crate::delivery::{Outcome, Recorded, clip};
use crate::guest::GuestFault;
use crate::intake::Refusal;
use crate::metrics::{Metrics, NO_ROUTE};
use crate::route::Route;

/// A push no route serves.
pub(crate) fn no_route(metrics: &Metrics, peer: SocketAddr) {
    tracing::info!(%peer, http.response.status_code = 404, "push rejected: no route serves the path");
    metrics.rejected(NO_ROUTE, 404);
}

/// A push refused at intake.
pub(crate) fn refused(metrics: &Metrics, peer: SocketAddr, route_name: &str, err: &Refusal) {
    let status = err.status().as_u16();
    tracing::info!(%peer, messaging.cmq.route = route_name, http.response.status_code = status, "push rejected: {err}");
    match err {
        Refusal::Overloaded(_) => metrics.overloaded(route_name),
        _ => metrics.rejected(route_name, status),
    }
}

/// Which message a line is about: what CMQ said of it, as every message line says it.
#[derive(Debug, Clone)]
pub(crate) struct Subject {
    pub(crate) message_id: String,
    /// The topic (JSON pushes only).
    pub(crate) topic: Option<String>,
    /// The subscription (JSON pushes only).
    pub(crate) subscription: Option<String>,
    /// CMQ's id of this delivery (`x-cmq-request-id`).
    pub(crate) request_id: Option<String>,
}

impl Subject {
    pub(crate) fn of(message: &cmq_message::Message) -> Subject {
        Subject {
            message_id: message.message_id.clone(),
            topic: message.topic_name.clone(),
            subscription: message.subscription_name.clone(),
            request_id: message.request_id.clone(),
        }
    }

    /// Its message id, topic, subscription and request id, borrowed for a log line.
    pub(crate) fn fields(&self) -> (&str, Option<&str>, Option<&str>, Option<&str>) {
        (
            &self.message_id,
            self.topic.as_deref(),
            self.subscription.as_deref(),
            self.request_id.as_deref(),
        )
    }
}

/// A push handler's delivery, as it ended.
pub(crate) fn delivered(
    metrics: &Metrics,
    route: &Route,
    subject: &Subject,
    outcome: &Outcome,
    elapsed: Duration,
) {
    let route_name = route.name.as_str();
    let (message_id, topic, subscription, request_id) = subject.fields();
    match outcome {
        Outcome::Duplicate { of } => {
            metrics.dedupe_hit(route_name, *of);
            tracing::info!(
                messaging.cmq.route = route_name,
                messaging.message.id = message_id,
                messaging.destination.name = topic,
                messaging.destination.subscription.name = subscription,
                messaging.cmq.request_id = request_id,
                messaging.cmq.decision = "duplicate",
                duplicate_of = of.name(),
                "message already settled: a duplicate of {}, answered without running the \
                 guest",
                of.name()
            );
        }
        Outcome::Busy {
            attempt,
            journaled: Some(dead_letter),
        } => {
            metrics.dead_letter(route_name);
            tracing::info!(
                messaging.cmq.route = route_name,
                messaging.message.id = message_id,
                messaging.destination.name = topic,
                messaging.destination.subscription.name = subscription,
                messaging.cmq.request_id = request_id,
                messaging.cmq.attempt = attempt,
                dead_letter,
                "message kept: another push of it is in progress on the last attempt"
            );
        }
        Outcome::Busy {
            attempt,
            journaled: None,
        } => {
            tracing::info!(
                messaging.cmq.route = route_name,
                messaging.message.id = message_id,
                messaging.destination.name = topic,
                messaging.destination.subscription.name = subscription,
                messaging.cmq.request_id = request_id,
                messaging.cmq.attempt = attempt,
                http.response.status_code = 503,
                "message not handled: another push of it is in progress"
            );
        }
        Outcome::Unclaimed(err) => {
            tracing::warn!(
                messaging.cmq.route = route_name,
                messaging.message.id = message_id,
                messaging.destination.name = topic,
                messaging.destination.subscription.name = subscription,
                messaging.cmq.request_id = request_id,
                http.response.status_code = 503,
                "message not handled: {err}"
            );
        }
        Outcome::Ran {
            attempt,
            result,
            recorded,
        } => ran(
            metrics,
            route,
            subject,
            (*attempt, result, recorded),
            elapsed,
        ),
    }
}

/// A delivery whose guest ran: its decision, or why it gave none.
fn ran(
    metrics: &Metrics,
    route: &Route,
    subject: &Subject,
    (attempt, result, recorded): (Option<u32>, &Result<Decision, GuestFault>, &Recorded),
    elapsed: Duration,
) {
    let route_name = route.name.as_str();
    let (message_id, topic, subscription, request_id) = subject.fields();
    let seconds = elapsed.as_secs_f64();
    let duration_ms = seconds * 1000.0;
    let dead_letter = match recorded {
        Recorded::Journaled(id) => {
            metrics.dead_letter(route_name);
            Some(*id)
        }
        Recorded::DropNotJournaled => {
            metrics.store_error(route_name);
            None
        }
        Recorded::NotStored | Recorded::Settled => None,
    };
    match result {
        Ok(decision) => {
            let (name, reason) = match decision {
                Decision::Ack => ("ack", None),
                Decision::Retry(reason) => ("retry", Some(clip(reason))),
                Decision::Drop(reason) => ("drop", Some(clip(reason))),
            };
            metrics.message(route_name, name, seconds);
            // `reason`, `attempt` and `dead_letter` are left out when there are none.
            tracing::info!(
                messaging.cmq.route = route_name,
                generation = route.generation,
                messaging.message.id = message_id,
                messaging.destination.name = topic,
                messaging.destination.subscription.name = subscription,
                messaging.cmq.request_id = request_id,
                messaging.cmq.decision = name,
                reason,
                messaging.cmq.attempt = attempt,
                dead_letter,
                duration_ms,
                "message handled"
            );
        }
        Err(fault) => {
            fault_counted(metrics, route_name, fault, seconds);
            if let Some(backtrace) = fault.backtrace() {
                // A line an event: the frames' names are the guest's own (its name
                // section), so each is escaped like the guest's output.
                for frame in backtrace.lines() {
                    tracing::debug!(
                        messaging.message.id = message_id,
                        "guest backtrace: {}",
                        crate::guest_output::escaped(frame)
                    );
                }
            }
            let status = match recorded {
                Recorded::Journaled(_) => 200,
                _ => fault_status(fault).as_u16(),
            };
            tracing::warn!(
                messaging.cmq.route = route_name,
                generation = route.generation,
                messaging.message.id = message_id,
                messaging.destination.name = topic,
                messaging.destination.subscription.name = subscription,
                messaging.cmq.request_id = request_id,
                http.response.status_code = status,
                messaging.cmq.attempt = attempt,
                dead_letter,
                duration_ms,
                "message not handled: {fault}"
            );
        }
    }
}

/// A `wasi:http` guest's delivery, as it ended.
pub(crate) fn passed<B>(
    metrics: &Metrics,
    route: &Route,
    subject: &Subject,
    result: &Result<Response<B>, GuestFault>,
    elapsed: Duration,
) {
    let route_name = route.name.as_str();
    let message_id = subject.message_id.as_str();
    let request_id = subject.request_id.as_deref();
    let seconds = elapsed.as_secs_f64();
    let duration_ms = seconds * 1000.0;
    match result {
        Ok(response) => {
            let status = response.status().as_u16();
            let decision = http_decision(response.status());
            metrics.message(route_name, decision, seconds);
            tracing::info!(
                messaging.cmq.route = route_name,
                generation = route.generation,
                messaging.message.id = message_id,
                messaging.cmq.request_id = request_id,
                http.response.status_code = status,
                messaging.cmq.decision = decision,
                duration_ms,
                "message handled"
            );
        }
        Err(fault) => {
            fault_counted(metrics, route_name, fault, seconds);
            let status = fault_status(fault).as_u16();
            tracing::warn!(
                messaging.cmq.route = route_name,
                messaging.message.id = message_id,
                messaging.cmq.request_id = request_id,
                http.response.status_code = status,
                duration_ms,
                "message not handled: {fault}"
            );
        }
    }
}

/// A `wasi:http` guest's decision, by the status it answered: 2xx acknowledges.
pub(crate) fn http_decision(status: http::StatusCode) -> &'static str {
    if status.is_success() { "ack" } else { "retry" }
}

/// Counts a message whose guest gave no decision, and the kind of fault.
fn fault_counted(metrics: &Metrics, route_name: &str, fault: &GuestFault, seconds: f64) {
    let kind = match fault {
        GuestFault::Deadline(_) => "deadline",
        GuestFault::Instantiate(_) => "instantiate",
        GuestFault::Trap(_) => "trap",
    };
    metrics.fault(route_name, kind);
    metrics.message(route_name, "fault", seconds);
}
