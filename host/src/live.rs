//! Decisions as they happen, for whoever watches them (the console's live page): each
//! delivery's outcome, published on a bounded broadcast channel, and only while someone
//! watches. The push path never waits for a watcher: one that falls behind misses
//! decisions and is told how many. A message's body is copied (its first
//! [`BODY_CLIP`] bytes) only while a watcher asked for bodies.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::bindings::Decision;
use crate::delivery::{Outcome, Recorded, clip};
use crate::guest::GuestFault;
use crate::report::Subject;
use crate::route::Route;

/// Decisions a watcher may fall behind by before it misses some.
const CAPACITY: usize = 256;

/// Watchers at once.
pub(crate) const MAX_WATCHERS: usize = 16;

/// The most of a body a watcher is shown.
pub(crate) const BODY_CLIP: usize = 4096;

/// The feed of decisions.
#[derive(Debug)]
pub(crate) struct Live {
    sender: broadcast::Sender<Arc<Seen>>,
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    watchers: AtomicUsize,
    /// Watchers that asked for bodies.
    bodies: AtomicUsize,
}

/// One delivery as a watcher sees it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Seen {
    /// When it was answered, in milliseconds since the Unix epoch.
    pub(crate) at_ms: u64,
    pub(crate) route: String,
    pub(crate) generation: u64,
    pub(crate) message_id: String,
    /// `ack`, `retry`, `drop`, `fault`, `duplicate`, `busy` or `unclaimed`, as the
    /// push's span names it.
    pub(crate) decision: &'static str,
    /// The guest's reason, or the fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    /// The HTTP status CMQ was answered.
    pub(crate) status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) attempt: Option<u32>,
    /// The journal entry that keeps it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) dead_letter: Option<i64>,
    pub(crate) duration_ms: f64,
    pub(crate) tags: Vec<String>,
    /// Its body, when a watcher asked for bodies; only these watchers get it
    /// ([`Seen::json`]).
    #[serde(skip)]
    pub(crate) body: Option<Body>,
}

/// A [`Seen`] as one watcher is shown it: with its body only if that watcher asked.
#[derive(Serialize)]
struct Shown<'a> {
    #[serde(flatten)]
    seen: &'a Seen,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a Body>,
}

/// A body as shown: its text (invalid UTF-8 replaced), cut to [`BODY_CLIP`] bytes.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Body {
    pub(crate) text: String,
    /// Its whole length, in bytes.
    pub(crate) bytes: usize,
}

impl Body {
    pub(crate) fn of(bytes: &[u8]) -> Body {
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(BODY_CLIP)]).into_owned();
        Body {
            text,
            bytes: bytes.len(),
        }
    }
}

/// What a message brings to a [`Seen`] before its guest takes it: tags, and the body
/// when asked for.
#[derive(Debug, Default)]
pub(crate) struct Before {
    pub(crate) tags: Vec<String>,
    pub(crate) body: Option<Body>,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            sender: broadcast::channel(CAPACITY).0,
            counts: Arc::default(),
        }
    }
}

impl Live {
    /// Whether anyone watches: nothing is made for the feed otherwise.
    pub(crate) fn watched(&self) -> bool {
        self.counts.watchers.load(Ordering::Relaxed) > 0
    }

    /// What a message brings, if anyone watches.
    pub(crate) fn before(&self, tags: impl FnOnce() -> Vec<String>, body: &[u8]) -> Option<Before> {
        self.watched().then(|| Before {
            tags: tags(),
            body: (self.counts.bodies.load(Ordering::Relaxed) > 0).then(|| Body::of(body)),
        })
    }

    /// Publishes `seen`, answered `status`.
    pub(crate) fn publish(&self, mut seen: Seen, status: StatusCode) {
        seen.status = status.as_u16();
        // No watcher left since `before`: nobody misses it.
        let _ = self.sender.send(Arc::new(seen));
    }

    /// A new watcher, `None` when [`MAX_WATCHERS`] already watch.
    pub(crate) fn watch(&self, bodies: bool) -> Option<Watch> {
        let counts = &self.counts;
        counts
            .watchers
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |watchers| {
                (watchers < MAX_WATCHERS).then_some(watchers + 1)
            })
            .ok()?;
        if bodies {
            counts.bodies.fetch_add(1, Ordering::Relaxed);
        }
        Some(Watch {
            receiver: self.sender.subscribe(),
            bodies,
            counts: counts.clone(),
        })
    }
}

/// A watcher's place on the feed; leaving drops it.
#[derive(Debug)]
pub(crate) struct Watch {
    receiver: broadcast::Receiver<Arc<Seen>>,
    bodies: bool,
    counts: Arc<Counts>,
}

/// What a watcher receives next.
#[derive(Debug)]
pub(crate) enum Next {
    Seen(Arc<Seen>),
    /// It fell behind and missed so many.
    Missed(u64),
}

impl Watch {
    /// The next decision, or how many it missed.
    pub(crate) async fn next(&mut self) -> Next {
        match self.receiver.recv().await {
            Ok(seen) => Next::Seen(seen),
            Err(broadcast::error::RecvError::Lagged(missed)) => Next::Missed(missed),
            // The receiver owns the sender for as long as anything can watch.
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }

    /// Whether it asked for bodies.
    pub(crate) fn bodies(&self) -> bool {
        self.bodies
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.counts.watchers.fetch_sub(1, Ordering::Relaxed);
        if self.bodies {
            self.counts.bodies.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Seen {
    /// Its JSON, with its body when `with_body`.
    pub(crate) fn json(&self, with_body: bool) -> String {
        let shown = Shown {
            seen: self,
            body: self.body.as_ref().filter(|_| with_body),
        };
        // Strings, numbers and options only: it cannot fail.
        serde_json::to_string(&shown).unwrap_or_default()
    }

    /// A push handler's delivery, as it ended (its status comes with [`Live::publish`]).
    pub(crate) fn delivered(
        route: &Route,
        subject: &Subject,
        outcome: &Outcome,
        elapsed: Duration,
        before: Before,
    ) -> Seen {
        let (reason, dead_letter) = match outcome {
            Outcome::Ran {
                result, recorded, ..
            } => {
                let reason = match result {
                    Ok(Decision::Ack) => None,
                    Ok(Decision::Retry(reason) | Decision::Drop(reason)) => {
                        Some(clip(reason).to_owned())
                    }
                    Err(fault) => Some(fault.to_string()),
                };
                let dead_letter = match recorded {
                    Recorded::Journaled(id) => Some(*id),
                    _ => None,
                };
                (reason, dead_letter)
            }
            Outcome::Busy { journaled, .. } => (None, *journaled),
            Outcome::Unclaimed(err) => (Some(err.to_string()), None),
            Outcome::Duplicate => (None, None),
        };
        Seen::new(route, subject, outcome.decision(), elapsed, before).with(
            reason,
            outcome.attempt(),
            dead_letter,
        )
    }

    /// A `wasi:http` guest's delivery: acknowledged when it answered 2xx.
    pub(crate) fn passed(
        route: &Route,
        subject: &Subject,
        fault: Option<&GuestFault>,
        status: StatusCode,
        elapsed: Duration,
        before: Before,
    ) -> Seen {
        let decision = match fault {
            Some(_) => "fault",
            None if status.is_success() => "ack",
            None => "retry",
        };
        Seen::new(route, subject, decision, elapsed, before).with(
            fault.map(ToString::to_string),
            None,
            None,
        )
    }

    fn new(
        route: &Route,
        subject: &Subject,
        decision: &'static str,
        elapsed: Duration,
        before: Before,
    ) -> Seen {
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            });
        Seen {
            at_ms,
            route: route.name.clone(),
            generation: route.generation,
            message_id: subject.message_id.clone(),
            decision,
            reason: None,
            status: 0,
            attempt: None,
            dead_letter: None,
            duration_ms: elapsed.as_secs_f64() * 1000.0,
            tags: before.tags,
            body: before.body,
        }
    }

    fn with(
        mut self,
        reason: Option<String>,
        attempt: Option<u32>,
        dead_letter: Option<i64>,
    ) -> Seen {
        self.reason = reason;
        self.attempt = attempt;
        self.dead_letter = dead_letter;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchers_are_bounded_and_counted_out_when_they_leave() {
        let live = Live::default();
        assert!(!live.watched());
        assert!(live.before(Vec::new, b"body").is_none());
        let watches: Vec<Watch> = (0..MAX_WATCHERS)
            .map(|i| live.watch(i == 0).expect("a place"))
            .collect();
        assert!(live.watch(false).is_none(), "one more than the limit");
        let before = live.before(|| vec!["t".into()], b"body").expect("watched");
        assert_eq!(before.body.expect("bodies asked").text, "body");
        drop(watches);
        assert!(!live.watched());
        assert!(live.watch(false).is_some());
    }

    #[test]
    fn only_a_watcher_that_asked_is_shown_the_body() {
        let seen = Seen {
            at_ms: 1,
            route: "default".into(),
            generation: 1,
            message_id: "m-1".into(),
            decision: "ack",
            reason: None,
            status: 200,
            attempt: Some(1),
            dead_letter: None,
            duration_ms: 0.5,
            tags: vec!["t".into()],
            body: Some(Body::of(b"secret")),
        };
        assert!(!seen.json(false).contains("secret"), "{}", seen.json(false));
        let shown: serde_json::Value = serde_json::from_str(&seen.json(true)).unwrap();
        assert_eq!(shown["body"]["text"], "secret");
        assert_eq!(shown["message_id"], "m-1");
        assert_eq!(shown["attempt"], 1);
    }

    #[test]
    fn a_body_is_clipped_and_its_length_kept() {
        let long = vec![b'a'; BODY_CLIP * 2];
        let body = Body::of(&long);
        assert_eq!(body.text.len(), BODY_CLIP);
        assert_eq!(body.bytes, BODY_CLIP * 2);
        assert_eq!(Body::of(&[0xff, b'x']).text, "\u{fffd}x");
    }
}
