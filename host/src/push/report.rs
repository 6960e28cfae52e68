//! What the log and the metrics say of each push: one line when it ends, whatever the
//! stage it ended in, and the counters behind `/metrics`. The path of a push may hold
//! its route's token, so no line holds the path.

use std::net::SocketAddr;
use std::time::Duration;

use crate::metrics::{Metrics, NO_ROUTE, RouteSeries};
use crate::push::intake::Refusal;
use crate::push::verdict::{Ended, Verdict, refusal_status};
use crate::route::Route;
use crate::sandbox::guest_fault::GuestFault;

/// A push no route serves.
pub(crate) fn no_route(metrics: &Metrics, peer: SocketAddr) {
    let status = refusal_status(&Refusal::NotFound).as_u16();
    tracing::info!(%peer, http.response.status_code = status, "push rejected: no route serves the path");
    metrics.rejected(NO_ROUTE, status);
}

/// A push refused at intake.
pub(crate) fn refused(metrics: &Metrics, peer: SocketAddr, route_name: &str, err: &Refusal) {
    let status = refusal_status(err).as_u16();
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

/// A push that reached its route's delivery, as its verdict says it ended: one line,
/// and its metrics.
pub(crate) fn ended(
    metrics: &Metrics,
    route: &Route,
    subject: &Subject,
    verdict: &Verdict,
    elapsed: Duration,
) {
    count(metrics, &route.series, verdict, elapsed.as_secs_f64());
    log(route, subject, verdict, elapsed);
}

/// The log line of a push that ended as `verdict` says.
fn log(route: &Route, subject: &Subject, verdict: &Verdict, elapsed: Duration) {
    let route_name = route.name.as_str();
    let (message_id, topic, subscription, request_id) = subject.fields();
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    let decision = verdict.decision();
    let status = verdict.status.as_u16();
    let (attempt, dead_letter) = (verdict.attempt, verdict.dead_letter);
    // Fields that are `None` are left out of the line.
    macro_rules! line {
        ($level:ident, $($rest:tt)*) => {
            tracing::$level!(
                messaging.cmq.route = route_name,
                generation = route.generation,
                messaging.message.id = message_id,
                messaging.destination.name = topic,
                messaging.destination.subscription.name = subscription,
                messaging.cmq.request_id = request_id,
                messaging.cmq.decision = decision,
                http.response.status_code = status,
                messaging.cmq.attempt = attempt,
                dead_letter,
                duration_ms,
                $($rest)*
            )
        };
    }
    let reason = verdict.reason.as_deref();
    match &verdict.ended {
        Ended::Decided(_) => line!(info, reason, "message handled"),
        Ended::Fault(fault) => {
            log_backtrace(message_id, fault);
            line!(warn, "message not handled: {fault}");
        }
        Ended::Duplicate(of) => {
            line!(
                info,
                duplicate_of = of.name(),
                "message already settled: a duplicate of {}, answered without running the \
                 guest",
                of.name()
            );
        }
        Ended::Busy if dead_letter.is_some() => line!(
            info,
            "message kept: another push of it is in progress on the last attempt"
        ),
        Ended::Busy => line!(
            info,
            "message not handled: another push of it is in progress"
        ),
        Ended::Unclaimed => line!(
            warn,
            "message not handled: {}",
            reason.unwrap_or("the store failed")
        ),
    }
}

/// The metrics of a push that ended as `verdict` says.
fn count(metrics: &Metrics, route: &RouteSeries, verdict: &Verdict, seconds: f64) {
    if verdict.dead_letter.is_some() {
        metrics.dead_letter(route.name());
    }
    match &verdict.ended {
        Ended::Decided(_) => metrics.message(route, verdict.decision(), seconds),
        Ended::Fault(fault) => fault_counted(metrics, route, fault, seconds),
        Ended::Duplicate(of) => metrics.dedupe_hit(route.name(), *of),
        Ended::Busy | Ended::Unclaimed => {}
    }
}

/// A fault's guest backtrace, a line an event: the frames' names are the guest's own
/// (its name section), so each is escaped like the guest's output.
fn log_backtrace(message_id: &str, fault: &GuestFault) {
    if let Some(backtrace) = fault.backtrace() {
        for frame in backtrace.lines() {
            tracing::debug!(
                messaging.message.id = message_id,
                "guest backtrace: {}",
                crate::sandbox::guest_output::escaped(frame)
            );
        }
    }
}

/// Counts a message whose guest gave no decision, and the kind of fault.
fn fault_counted(metrics: &Metrics, route: &RouteSeries, fault: &GuestFault, seconds: f64) {
    let kind = match fault {
        GuestFault::Deadline(_) => "deadline",
        GuestFault::Instantiate(_) => "instantiate",
        GuestFault::Trap(_) => "trap",
    };
    metrics.fault(route.name(), kind);
    metrics.message(route, "fault", seconds);
}
