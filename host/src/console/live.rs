//! The console's live page: decisions as they happen, filtered by route and decision,
//! bodies only when asked. The page is rendered here; `live.js` (embedded, served at
//! `/console/live.js`) opens the server-sent events stream `/console/live/events`,
//! which this module writes from the receiver's feed ([`crate::push::feed`]).
//!
//! A stream sends at most [`MAX_EVENTS_PER_SECOND`] decisions a second (more than a
//! person reads) and says how many it left out; it ends when its session does, when
//! the host shuts down, or when its stream stays backed up for [`SEND_TIMEOUT`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use crate::push::feed::{Decided, Next, Watch};
use crate::receiver::Receiver;

use super::page::escape;
use super::session::{Current, Sessions};
use super::{Form, url_encode};

/// The page's script.
pub(crate) const SCRIPT: &str = include_str!("live.js");

/// Decisions a stream sends a second at most.
const MAX_EVENTS_PER_SECOND: u32 = 100;

/// Seconds between two comments that keep a quiet stream open (and find a client gone).
pub(super) const KEEP_ALIVE_SECONDS: u32 = 15;

/// How long an event may wait for room in a stream backed up (its client reads
/// nothing) before the stream ends.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// The decisions a filter can pick.
const DECISIONS: [&str; 7] = [
    "ack",
    "retry",
    "drop",
    "fault",
    "duplicate",
    "busy",
    "unclaimed",
];

/// Which decisions a page or stream shows.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    route: Option<String>,
    decision: Option<String>,
    bodies: bool,
}

impl Filter {
    pub(crate) fn of(query: &Form) -> Filter {
        let first = |name: &str| {
            query
                .first(name)
                .filter(|value| !value.is_empty())
                .map(str::to_owned)
        };
        Filter {
            route: first("route"),
            decision: first("decision").filter(|decision| DECISIONS.contains(&decision.as_str())),
            bodies: first("bodies").as_deref() == Some("1"),
        }
    }

    /// Whether the stream asks for bodies.
    pub(crate) fn bodies(&self) -> bool {
        self.bodies
    }

    fn passes(&self, seen: &Decided) -> bool {
        self.route.as_ref().is_none_or(|route| *route == seen.route)
            && self
                .decision
                .as_ref()
                .is_none_or(|decision| decision == seen.decision)
    }

    fn query(&self) -> String {
        let mut query = format!(
            "route={}&decision={}",
            url_encode(self.route.as_deref().unwrap_or("")),
            url_encode(self.decision.as_deref().unwrap_or(""))
        );
        if self.bodies {
            query.push_str("&bodies=1");
        }
        query
    }
}

/// The live page's body: the filter, and the table the script fills.
pub(crate) fn body(receiver: &Receiver, filter: &Filter) -> String {
    let mut routes: Vec<String> = receiver
        .routes()
        .into_iter()
        .map(|route| route.name)
        .collect();
    routes.sort();
    let option = |value: &str, shown: &str, chosen: Option<&String>| {
        format!(
            "<option value=\"{v}\"{s}>{t}</option>",
            v = escape(value),
            t = escape(shown),
            s = if chosen.is_some_and(|chosen| chosen == value) {
                " selected"
            } else {
                ""
            }
        )
    };
    let route_options: String = routes
        .iter()
        .map(|name| option(name, name, filter.route.as_ref()))
        .collect();
    let decision_options: String = DECISIONS
        .iter()
        .map(|name| option(name, name, filter.decision.as_ref()))
        .collect();
    format!(
        "<form class=\"filter\" method=\"get\">\
         <select name=\"route\" aria-label=\"route\"><option value=\"\">every route</option>{route_options}</select>\
         <select name=\"decision\" aria-label=\"decision\"><option value=\"\">every decision</option>{decision_options}</select>\
         <label><input type=\"checkbox\" name=\"bodies\" value=\"1\"{checked}> show bodies</label>\
         <button>Watch</button></form>\
         <p id=\"live-status\" class=\"note\">Connecting…</p>\
         <table id=\"live\" class=\"cards\" data-source=\"/console/live/events?{query}\"><thead><tr><th>Time (UTC)</th><th>Route</th>\
         <th>Message id</th><th>Decision</th><th>Status</th><th>Attempt</th>\
         <th>Took</th><th>Tags</th><th>Reason</th></tr></thead></table>\
         <noscript><p>The live page needs JavaScript; <a href=\"/console/routes\">Routes</a> shows the counts.</p></noscript>\
         <script src=\"/console/live.js\"></script>",
        checked = if filter.bodies { " checked" } else { "" },
        query = escape(&filter.query()),
    )
}

/// A stream of server-sent events, as a response body.
#[derive(Debug)]
pub(crate) struct EventStream {
    events: mpsc::Receiver<Bytes>,
}

impl Body for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.events
            .poll_recv(cx)
            .map(|event| event.map(|event| Ok(Frame::data(event))))
    }
}

/// The stream of `watch`'s decisions that pass `filter`, for as long as `session` is
/// open, the host serves and `peer` reads.
pub(crate) fn stream(
    watch: Watch,
    filter: Filter,
    sessions: Arc<Sessions>,
    session: Current,
    peer: SocketAddr,
) -> EventStream {
    spawn(8, "live", session.number, peer, |sender| async move {
        forward(watch, filter, &sessions, &session, &sender).await
    })
}

/// A stream of `capacity` events in waiting at most, written by the future `forward`
/// makes of its sender: when that ends, the page is told why (when it can be told
/// anything) and the end is logged as the `view`'s of `session` (`console live view
/// closed: the session ended`).
pub(super) fn spawn<F>(
    capacity: usize,
    view: &'static str,
    session: u64,
    peer: SocketAddr,
    forward: impl FnOnce(mpsc::Sender<Bytes>) -> F,
) -> EventStream
where
    F: Future<Output = Ended> + Send + 'static,
{
    let (sender, events) = mpsc::channel(capacity);
    let forwarding = forward(sender.clone());
    tokio::spawn(async move {
        let why = forwarding.await;
        if let Some(farewell) = why.farewell() {
            // The client may not read it: never wait for it.
            let _ = sender.try_send(Bytes::from(format!("event: ended\ndata: {farewell}\n\n")));
        }
        tracing::info!(target: "cmq_host::console", session, %peer, "console {view} view closed: {}", why.said());
    });
    EventStream { events }
}

/// Why a stream ended.
#[derive(Debug, Clone, Copy)]
pub(super) enum Ended {
    /// The client went, or its stream stayed backed up for [`SEND_TIMEOUT`].
    ClientGone,
    SessionClosed,
    HostShutDown,
}

impl Ended {
    /// What the page is told, if it can be told anything.
    pub(super) fn farewell(self) -> Option<&'static str> {
        match self {
            Ended::ClientGone => None,
            Ended::SessionClosed => Some("The session ended: log in again."),
            Ended::HostShutDown => Some("The host is shutting down."),
        }
    }

    pub(super) fn said(self) -> &'static str {
        match self {
            Ended::ClientGone => "the client went",
            Ended::SessionClosed => "the session ended",
            Ended::HostShutDown => "the host shuts down",
        }
    }
}

async fn forward(
    mut watch: Watch,
    filter: Filter,
    sessions: &Sessions,
    session: &Current,
    sender: &mpsc::Sender<Bytes>,
) -> Ended {
    let mut second = tokio::time::interval(Duration::from_secs(1));
    second.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut sent = 0;
    let mut missed = 0u64;
    let mut quiet = 0;
    // The first event says the stream is open; the browser retries after 3 s.
    let mut event = "retry: 3000\n: watching\n\n".to_owned();
    loop {
        if !send(sender, event).await {
            return Ended::ClientGone;
        }
        event = loop {
            tokio::select! {
                next = watch.next() => match next {
                    Next::Decided(decided) if filter.passes(&decided) => {
                        if sent >= MAX_EVENTS_PER_SECOND {
                            missed += 1;
                            continue;
                        }
                        // Nothing more once the session is closed, however busy the feed.
                        if !sessions.is_open(session) {
                            return Ended::SessionClosed;
                        }
                        sent += 1;
                        quiet = 0;
                        break format!("data: {}\n\n", decided.json(watch.bodies()));
                    }
                    Next::Decided(_) => {}
                    Next::Missed(count) => missed += count,
                    Next::Closed => return Ended::HostShutDown,
                },
                _ = second.tick() => {
                    sent = 0;
                    if !sessions.is_open(session) {
                        return Ended::SessionClosed;
                    }
                    if missed > 0 {
                        break format!("event: missed\ndata: {}\n\n", std::mem::take(&mut missed));
                    }
                    quiet += 1;
                    if quiet % KEEP_ALIVE_SECONDS == 0 {
                        break ": still watching\n\n".to_owned();
                    }
                }
                () = sender.closed() => return Ended::ClientGone,
            }
        };
    }
}

/// Sends `event`, or says the client is gone: it went, or took nothing for
/// [`SEND_TIMEOUT`] (it holds a view's place).
pub(super) async fn send(sender: &mpsc::Sender<Bytes>, event: String) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, sender.send(Bytes::from(event))).await,
        Ok(Ok(()))
    )
}
