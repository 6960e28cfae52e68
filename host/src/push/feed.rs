//! The feed of decisions as they happen, for whoever watches them (the console's live
//! page): each delivery's outcome, published on a bounded broadcast channel, and only
//! while someone watches. The push path never waits for a watcher: one that falls
//! behind misses decisions and is told how many. A message's body is copied (at most
//! [`BODY_CLIP`] bytes of it) only while a watcher asked for bodies. When the host
//! shuts down the feed closes, and every watcher is told.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::push::report::Subject;
use crate::push::verdict::Verdict;
use crate::route::Route;

/// Decisions a watcher may fall behind by before it misses some.
const CAPACITY: usize = 256;

/// Watchers at once.
pub(crate) const MAX_WATCHERS: usize = 16;

/// The most of a body a watcher is shown.
pub(crate) const BODY_CLIP: usize = 4096;

/// The feed of decisions.
#[derive(Debug)]
pub(crate) struct Feed {
    sender: broadcast::Sender<Arc<Decided>>,
    counts: Arc<Counts>,
    /// Turns true when the host shuts down.
    closed: watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct Counts {
    watchers: AtomicUsize,
    /// Watchers that asked for bodies.
    bodies: AtomicUsize,
}

/// One delivery as a watcher sees it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Decided {
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
    /// ([`Decided::json`]).
    #[serde(skip)]
    pub(crate) body: Option<Body>,
}

/// A [`Decided`] as one watcher is shown it: with its body only if that watcher asked.
#[derive(Serialize)]
struct Shown<'a> {
    #[serde(flatten)]
    decided: &'a Decided,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a Body>,
}

/// A body as shown: its text (invalid UTF-8 replaced), its first [`BODY_CLIP`] bytes
/// at most, cut where a character ends.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Body {
    pub(crate) text: String,
    /// Its whole length, in bytes.
    pub(crate) bytes: usize,
    /// Whether `text` is only its beginning.
    pub(crate) clipped: bool,
}

impl Body {
    pub(crate) fn of(bytes: &[u8]) -> Body {
        let clip = bytes.len().min(BODY_CLIP);
        // A character the cut would split is left out whole: back to where it starts
        // (a UTF-8 character is 4 bytes at most, its later ones `10xxxxxx`).
        let mut cut = clip;
        while cut > 0 && clip - cut < 3 && bytes.get(cut).is_some_and(|b| b & 0xc0 == 0x80) {
            cut -= 1;
        }
        let shown = &bytes[..cut];
        Body {
            text: String::from_utf8_lossy(shown).into_owned(),
            bytes: bytes.len(),
            clipped: shown.len() < bytes.len(),
        }
    }
}

/// What a message brings to a [`Decided`] before its guest takes it: its tags, and its
/// body when a watcher asked for bodies.
#[derive(Debug, Default)]
pub(crate) struct Preview {
    pub(crate) tags: Vec<String>,
    pub(crate) body: Option<Body>,
}

impl Default for Feed {
    fn default() -> Self {
        Feed {
            sender: broadcast::channel(CAPACITY).0,
            counts: Arc::default(),
            closed: watch::Sender::new(false),
        }
    }
}

impl Feed {
    /// Whether anyone watches: nothing is made for the feed otherwise.
    pub(crate) fn watched(&self) -> bool {
        self.counts.watchers.load(Ordering::Relaxed) > 0
    }

    /// What a message brings, if anyone watches.
    pub(crate) fn preview(
        &self,
        tags: impl FnOnce() -> Vec<String>,
        body: &[u8],
    ) -> Option<Preview> {
        self.watched().then(|| Preview {
            tags: tags(),
            body: (self.counts.bodies.load(Ordering::Relaxed) > 0).then(|| Body::of(body)),
        })
    }

    /// Publishes `decided`.
    pub(crate) fn publish(&self, decided: Decided) {
        // An error: no watcher left since the preview, so nobody misses it.
        let _ = self.sender.send(Arc::new(decided));
    }

    /// Closes the feed: every watcher's next is [`Next::Closed`], a watcher's who comes
    /// later too.
    pub(crate) fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Turns true when the feed closes (the host shuts down), for a stream that watches
    /// something else until then.
    pub(crate) fn closing(&self) -> watch::Receiver<bool> {
        self.closed.subscribe()
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
            closed: self.closed.subscribe(),
        })
    }
}

/// A watcher's place on the feed; leaving drops it.
#[derive(Debug)]
pub(crate) struct Watch {
    receiver: broadcast::Receiver<Arc<Decided>>,
    bodies: bool,
    counts: Arc<Counts>,
    closed: watch::Receiver<bool>,
}

/// What a watcher receives next.
#[derive(Debug)]
pub(crate) enum Next {
    Decided(Arc<Decided>),
    /// It fell behind and missed so many (of every route and decision).
    Missed(u64),
    /// The host shuts down: nothing more comes.
    Closed,
}

impl Watch {
    /// The next decision, or how many it missed, or that the feed closed.
    pub(crate) async fn next(&mut self) -> Next {
        tokio::select! {
            // A closed feed ends the watch even with decisions still queued.
            biased;
            _ = self.closed.wait_for(|closed| *closed) => Next::Closed,
            received = self.receiver.recv() => match received {
                Ok(decided) => Next::Decided(decided),
                Err(broadcast::error::RecvError::Lagged(missed)) => Next::Missed(missed),
                Err(broadcast::error::RecvError::Closed) => Next::Closed,
            },
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

impl Decided {
    /// Its JSON, with its body when `with_body`.
    pub(crate) fn json(&self, with_body: bool) -> String {
        let shown = Shown {
            decided: self,
            body: self.body.as_ref().filter(|_| with_body),
        };
        // Strings, numbers and options only: it cannot fail.
        serde_json::to_string(&shown).unwrap_or_default()
    }

    /// A push that reached its route's delivery, as its verdict says it ended.
    pub(crate) fn of(
        route: &Route,
        subject: &Subject,
        verdict: &Verdict,
        elapsed: Duration,
        preview: Preview,
    ) -> Decided {
        Decided::new(route, subject, verdict.decision(), elapsed, preview).with(verdict)
    }

    fn new(
        route: &Route,
        subject: &Subject,
        decision: &'static str,
        elapsed: Duration,
        preview: Preview,
    ) -> Decided {
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            });
        Decided {
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
            tags: preview.tags,
            body: preview.body,
        }
    }

    fn with(mut self, verdict: &Verdict) -> Decided {
        self.reason.clone_from(&verdict.reason);
        self.status = verdict.status.as_u16();
        self.attempt = verdict.attempt;
        self.dead_letter = verdict.dead_letter;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchers_are_bounded_and_counted_out_when_they_leave() {
        let feed = Feed::default();
        assert!(!feed.watched());
        assert!(feed.preview(Vec::new, b"body").is_none());
        let watches: Vec<Watch> = (0..MAX_WATCHERS)
            .map(|i| feed.watch(i == 0).expect("a place"))
            .collect();
        assert!(feed.watch(false).is_none(), "one more than the limit");
        let preview = feed.preview(|| vec!["t".into()], b"body").expect("watched");
        assert_eq!(preview.body.expect("bodies asked").text, "body");
        drop(watches);
        assert!(!feed.watched());
        assert!(feed.watch(false).is_some());
    }

    #[tokio::test]
    async fn a_closed_feed_ends_every_watch_even_one_that_comes_later() {
        let feed = Feed::default();
        let mut early = feed.watch(false).expect("a place");
        feed.close();
        assert!(matches!(early.next().await, Next::Closed));
        let mut late = feed.watch(false).expect("a place");
        assert!(matches!(late.next().await, Next::Closed));
        assert!(matches!(late.next().await, Next::Closed));
    }

    #[test]
    fn only_a_watcher_that_asked_is_shown_the_body() {
        let decided = Decided {
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
        assert!(
            !decided.json(false).contains("secret"),
            "{}",
            decided.json(false)
        );
        let shown: serde_json::Value = serde_json::from_str(&decided.json(true)).unwrap();
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
        assert!(body.clipped);
        assert_eq!(Body::of(&[0xff, b'x']).text, "\u{fffd}x");
        // An invalid byte before the cut changes nothing at the cut.
        let mixed = [&[0xff][..], "é".repeat(BODY_CLIP).as_bytes()].concat();
        let body = Body::of(&mixed);
        assert!(
            body.text.ends_with('é'),
            "{:?}",
            &body.text[body.text.len() - 6..]
        );
        assert!(!Body::of(b"short").clipped);
        // A character the cut would split is left out whole.
        let accented = format!("a{}", "é".repeat(BODY_CLIP));
        let body = Body::of(accented.as_bytes());
        assert_eq!(body.text.len(), BODY_CLIP - 1);
        assert!(!body.text.contains('\u{fffd}'));
        assert!(body.clipped);
    }
}
