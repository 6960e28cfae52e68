//! Deliveries the store did not count when they came: answered `503` before a claim
//! (too many messages in flight, a body that came too slowly) or because the store
//! failed. CMQ counts them all the same, so the host must too, or its last delivery
//! would look like an earlier one and be answered non-2xx without a journal entry.
//!
//! They are noted here, in memory, by [push key](super::push_key) (the route and the
//! `x-cmq-message-id` header: known before the body is read), written to the store's
//! `cmq_uncounted` table a moment later by the [upkeep](super::upkeep), and added to
//! the message's count by its next claim, on whichever host it lands. A claim on this
//! host also takes what is noted here and not yet written.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Push keys held at most, about 0.5 KiB each: beyond it a delivery goes uncounted
/// (logged, and counted in [`Uncounted::lost`]). Written every 200 ms, they fill only
/// while the store is down.
const MAX_PENDING: usize = 16_384;

/// The deliveries noted and not yet written, by push key.
#[derive(Debug, Default)]
pub(super) struct Uncounted {
    pending: Mutex<HashMap<String, u32>>,
    lost: AtomicU64,
}

impl Uncounted {
    /// Notes `deliveries` more of the message `push_key` names; false (logged, and
    /// counted as lost) when there was no room.
    pub(super) fn note(&self, push_key: String, deliveries: u32) -> bool {
        let mut pending = self.lock();
        let room = pending.len() < MAX_PENDING;
        match pending.get_mut(&push_key) {
            Some(count) => *count = count.saturating_add(deliveries),
            None if room => {
                pending.insert(push_key, deliveries);
            }
            None => {
                drop(pending);
                self.lost
                    .fetch_add(u64::from(deliveries), Ordering::Relaxed);
                tracing::error!(
                    deliveries,
                    "a delivery could not be counted (too many waiting for the store): \
                     CMQ's last delivery of its message may not be recognised as the last"
                );
                return false;
            }
        }
        true
    }

    /// Deliveries that found no room, since the store opened.
    pub(super) fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// Takes what is noted of `push_key`, for a claim to count.
    pub(super) fn take(&self, push_key: &str) -> u32 {
        self.lock().remove(push_key).unwrap_or(0)
    }

    /// Takes everything noted, to write to the store.
    pub(super) fn drain(&self) -> Vec<(String, u32)> {
        self.lock().drain().collect()
    }

    /// Puts back what could not be written.
    pub(super) fn restore(&self, entries: Vec<(String, u32)>) {
        for (push_key, deliveries) in entries {
            self.note(push_key, deliveries);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
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
        assert_eq!(uncounted.take("a"), 3);
        assert_eq!(uncounted.take("a"), 0);
        for i in 0..MAX_PENDING {
            assert!(uncounted.note(i.to_string(), 1));
        }
        assert!(!uncounted.note("one too many".into(), 1));
        // A key already held still adds up.
        assert!(uncounted.note("0".into(), 1));
        assert_eq!(uncounted.lost(), 1);
        let drained = uncounted.drain();
        assert_eq!(drained.len(), MAX_PENDING);
        uncounted.restore(drained);
        assert_eq!(uncounted.lost(), 1);
        uncounted.restore(vec![("new".into(), 5)]);
        assert_eq!(uncounted.lost(), 6);
    }
}
