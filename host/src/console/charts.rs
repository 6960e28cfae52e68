//! The routes page's charts as they change: after each reading of the metrics (every
//! [`rates::EVERY`](super::rates::EVERY)) the charts are sent, as JSON, to every routes
//! page that listens on the live view's stream with `charts=1`
//! (`/console/live/events?charts=1`), and its `routes.js` sets the points and
//! captions. Such a stream carries no decisions, so it never makes the push path
//! publish them; at most [`MAX_VIEWS`] are open at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;

use super::live::{self, Ended, EventStream, KEEP_ALIVE_SECONDS, send};
use super::session::{Current, Sessions};

/// Routes pages listening at once.
pub(crate) const MAX_VIEWS: usize = 16;

/// The latest charts, for the streams that listen.
#[derive(Debug)]
pub(crate) struct Charts {
    latest: watch::Sender<Arc<str>>,
    /// Held while a place is counted and taken, so that two at once cannot both take
    /// the last one.
    places: std::sync::Mutex<()>,
}

impl Default for Charts {
    fn default() -> Self {
        Charts {
            latest: watch::Sender::new(Arc::from("")),
            places: std::sync::Mutex::new(()),
        }
    }
}

impl Charts {
    /// Whether any stream listens (else the charts need not be drawn).
    pub(crate) fn listened(&self) -> bool {
        self.latest.receiver_count() > 0
    }

    /// Sends `json`, the charts after a reading, to every stream.
    pub(crate) fn publish(&self, json: String) {
        self.latest.send_replace(Arc::from(json));
    }

    /// A place to listen, `None` when [`MAX_VIEWS`] listen already.
    pub(crate) fn listen(&self) -> Option<watch::Receiver<Arc<str>>> {
        let _counting = self
            .places
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (self.latest.receiver_count() < MAX_VIEWS).then(|| {
            let mut listening = self.latest.subscribe();
            // The page was drawn with the charts of now: only later ones are sent.
            listening.mark_unchanged();
            listening
        })
    }
}

/// The stream of the charts `listening` receives, for as long as `session` is open,
/// the host serves (`closing` stays false) and `peer` reads.
pub(crate) fn stream(
    listening: watch::Receiver<Arc<str>>,
    closing: watch::Receiver<bool>,
    sessions: Arc<Sessions>,
    session: Current,
    peer: SocketAddr,
) -> EventStream {
    live::spawn(2, "charts", session.number, peer, |sender| async move {
        forward(listening, closing, &sessions, &session, &sender).await
    })
}

async fn forward(
    mut listening: watch::Receiver<Arc<str>>,
    mut closing: watch::Receiver<bool>,
    sessions: &Sessions,
    session: &Current,
    sender: &mpsc::Sender<bytes::Bytes>,
) -> Ended {
    let mut keep_alive = tokio::time::interval(Duration::from_secs(KEEP_ALIVE_SECONDS.into()));
    keep_alive.set_missed_tick_behavior(MissedTickBehavior::Skip);
    keep_alive.reset();
    // The first event says the stream is open; the browser retries after 3 s.
    let mut event = "retry: 3000\n: listening\n\n".to_owned();
    loop {
        if !send(sender, event).await {
            return Ended::ClientGone;
        }
        event = tokio::select! {
            changed = listening.changed() => {
                if changed.is_err() {
                    return Ended::HostShutDown;
                }
                if !sessions.is_open(session) {
                    return Ended::SessionClosed;
                }
                let charts = listening.borrow_and_update().clone();
                format!("event: charts\ndata: {charts}\n\n")
            }
            _ = closing.wait_for(|closed| *closed) => return Ended::HostShutDown,
            _ = keep_alive.tick() => {
                if !sessions.is_open(session) {
                    return Ended::SessionClosed;
                }
                ": still listening\n\n".to_owned()
            }
            () = sender.closed() => return Ended::ClientGone,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_counted_and_only_later_charts_are_sent() {
        let charts = Charts::default();
        assert!(!charts.listened());
        charts.publish("before".into());
        let mut places: Vec<_> = (0..MAX_VIEWS).map_while(|_| charts.listen()).collect();
        assert_eq!(places.len(), MAX_VIEWS);
        assert!(charts.listen().is_none(), "every place is taken");
        assert!(charts.listened());
        // The charts of before the page was drawn are not sent again.
        assert!(!places[0].has_changed().unwrap());
        charts.publish("after".into());
        assert!(places[0].has_changed().unwrap());
        assert_eq!(&**places[0].borrow_and_update(), "after");
        // A stream that ends frees its place.
        places.pop();
        assert!(charts.listen().is_some());
    }
}
