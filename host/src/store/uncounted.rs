//! Deliveries the store did not count when they came: answered non-2xx before a claim
//! (too many messages in flight, a body that came too slowly) or because the store
//! failed. CMQ counts them all the same, so the host must too, or its last delivery
//! would look like an earlier one and be answered non-2xx without a journal entry.
//!
//! They are noted here, in memory, by [push key](super::push_key) (the route and the
//! `x-cmq-message-id` header: known before the body is read), written to the store's
//! `cmq_notes` table a moment later by the [upkeep](super::upkeep), and added to
//! the message's count by its next claim, on whichever host it lands. A claim on this
//! host also takes what is noted here and not yet written.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Push keys held at most, about 0.5 KiB each: beyond it a delivery goes uncounted
/// (logged, and counted in [`Uncounted::lost`]). Written every 200 ms, they fill only
/// while the store is down.
const MAX_PENDING: usize = 16_384;

/// A note to write: deliveries of the message `push_key` names, under an id of its own
/// that makes a second write of it count nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Note {
    pub(super) id: i64,
    pub(super) push_key: String,
    pub(super) deliveries: u32,
    /// For a claim the host gave up on (the note's id is its token): the message's
    /// key, whose lease the claim holds if it committed after all.
    pub(super) abandoned_claim: Option<String>,
}

/// The deliveries noted and not yet written.
#[derive(Debug, Default)]
pub(super) struct Uncounted {
    pending: Mutex<Pending>,
    lost: AtomicU64,
}

#[derive(Debug, Default)]
struct Pending {
    /// Never written: by push key, a claim on this host may take them.
    fresh: HashMap<String, u32>,
    /// Written once, or by a claim, with an outcome nobody saw (the write timed out):
    /// written again under the same id, never taken here.
    in_doubt: Vec<Note>,
}

impl Pending {
    fn len(&self) -> usize {
        self.fresh.len() + self.in_doubt.len()
    }
}

impl Uncounted {
    /// Notes `deliveries` more of the message `push_key` names; false (logged, and
    /// counted as lost) when there was no room.
    pub(super) fn note(&self, push_key: String, deliveries: u32) -> bool {
        let mut pending = self.lock();
        let room = pending.len() < MAX_PENDING;
        match pending.fresh.get_mut(&push_key) {
            Some(count) => *count = count.saturating_add(deliveries),
            None if room => {
                pending.fresh.insert(push_key, deliveries);
            }
            None => {
                drop(pending);
                self.lose(deliveries);
                return false;
            }
        }
        true
    }

    /// Notes the deliveries of a claim that timed out (`token`, of the message `key`):
    /// it may yet commit, so its note carries its token and excludes it (see
    /// [`super::sql::CLAIM_GUARD`]).
    pub(super) fn abandon(&self, token: i64, push_key: String, key: String, deliveries: u32) {
        self.keep_in_doubt(vec![Note {
            id: token,
            push_key,
            deliveries,
            abandoned_claim: Some(key),
        }]);
    }

    /// Deliveries that found no room, since the store opened.
    pub(super) fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// Takes what is noted of `push_key`, for a claim to count: the deliveries never
    /// written, and the notes in doubt, which the claim writes (again) before it counts
    /// what is written.
    pub(super) fn take(&self, push_key: &str) -> (u32, Vec<Note>) {
        let mut pending = self.lock();
        let fresh = pending.fresh.remove(push_key).unwrap_or(0);
        let doubtful = pending
            .in_doubt
            .extract_if(.., |note| note.push_key == push_key)
            .collect();
        (fresh, doubtful)
    }

    /// Takes everything noted, to write to the store: what was never written under a
    /// new id each, the rest under the id it had.
    pub(super) fn drain(&self) -> Vec<Note> {
        let mut pending = self.lock();
        let mut notes = std::mem::take(&mut pending.in_doubt);
        notes.extend(pending.fresh.drain().map(|(push_key, deliveries)| Note {
            id: super::ClaimToken::new().0,
            push_key,
            deliveries,
            abandoned_claim: None,
        }));
        notes
    }

    /// Puts back what could not be written: it may have been, so it keeps its id.
    pub(super) fn restore(&self, notes: Vec<Note>) {
        self.keep_in_doubt(notes);
    }

    fn keep_in_doubt(&self, notes: Vec<Note>) {
        let mut pending = self.lock();
        for note in notes {
            if pending.len() < MAX_PENDING {
                pending.in_doubt.push(note);
            } else {
                self.lose(note.deliveries);
            }
        }
    }

    fn lose(&self, deliveries: u32) {
        self.lost
            .fetch_add(u64::from(deliveries), Ordering::Relaxed);
        tracing::error!(
            deliveries,
            "a delivery could not be counted (too many waiting for the store): \
             CMQ's last delivery of its message may not be recognised as the last"
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_add_up_are_taken_once_and_stop_at_the_limit() {
        let uncounted = Uncounted::default();
        assert!(uncounted.note("a".into(), 1));
        assert!(uncounted.note("a".into(), 2));
        assert_eq!(uncounted.take("a"), (3, Vec::new()));
        assert_eq!(uncounted.take("a"), (0, Vec::new()));
        for i in 0..MAX_PENDING {
            assert!(uncounted.note(i.to_string(), 1));
        }
        assert!(!uncounted.note("one too many".into(), 1));
        // A key already held still adds up.
        assert!(uncounted.note("0".into(), 1));
        assert_eq!(uncounted.lost(), 1);
        let drained = uncounted.drain();
        assert_eq!(drained.len(), MAX_PENDING);
        // Restored, they are in doubt: a claim takes them as notes to write again under
        // their ids, never as a count.
        let ids: Vec<i64> = drained.iter().map(|note| note.id).collect();
        uncounted.restore(drained);
        assert_eq!(uncounted.lost(), 1);
        let (count, notes) = uncounted.take("0");
        assert_eq!((count, notes.len(), notes[0].deliveries), (0, 1, 2));
        let again: Vec<i64> = uncounted.drain().iter().map(|note| note.id).collect();
        assert_eq!(again.len(), ids.len() - 1);
        assert!(again.iter().all(|id| ids.contains(id)));
        uncounted.restore(vec![Note {
            id: 7,
            push_key: "new".into(),
            deliveries: 5,
            abandoned_claim: None,
        }]);
        assert_eq!(uncounted.drain().len(), 1);
        // A claim given up on is noted under its token.
        uncounted.abandon(42, "p".into(), "k".into(), 2);
        let abandoned = uncounted.drain();
        assert_eq!(abandoned[0].id, 42);
        assert_eq!(abandoned[0].abandoned_claim.as_deref(), Some("k"));
    }
}
