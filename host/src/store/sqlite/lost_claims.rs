//! Claims that committed after their push stopped waiting for them.
//!
//! A push waits a bounded time for its claim; when it gives up, it notes its delivery
//! under the claim's token, to be counted once the store is back. If the claim
//! committed after all, that note must count nothing. PostgreSQL's claim writes a
//! guard row under its token for that ([`CLAIM_GUARD`]) in every claim, since another
//! host may write the note first. The SQLite store has one writer, which runs its
//! operations in the order they were queued, so a note always comes after its claim,
//! and a claim whose push has gone is not run at all: the guard is needed only for a
//! claim that ran and committed while its push was giving up. The writer knows when it
//! could not hand a committed result over; the push knows when it went with a result
//! unread ([`Waiting`]). Either way the claim is kept here, and its guard is written
//! before the next notes, in their transaction (about a third of this store's cost per
//! message, when it was written with every claim).

use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use super::super::StoreError;
use super::super::sql::CLAIM_GUARD;
use super::numbered;

/// Claims kept at most: each is one that committed while its push gave up (the
/// store's timeout), written and forgotten by the next notes' transaction.
const MAX_KEPT: usize = 16_384;

/// A claim whose result its push did not take.
#[derive(Debug, Clone)]
pub(super) struct LostClaim {
    pub(super) token: i64,
    pub(super) push_key: String,
}

/// The claims to guard before the next notes are written.
#[derive(Debug, Default)]
pub(super) struct LostClaims(Mutex<Vec<LostClaim>>);

impl LostClaims {
    pub(super) fn keep(&self, claim: LostClaim) {
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() < MAX_KEPT {
            kept.push(claim);
        } else {
            drop(kept);
            tracing::error!(
                "a claim that committed after its push gave up could not be kept: \
                 its delivery may be counted twice"
            );
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// Writes the guards of the claims kept (a guard written before adds nothing) and
    /// returns their tokens, to [`LostClaims::forget`] once the transaction commits.
    pub(super) fn write(&self, conn: &Connection, now: i64) -> rusqlite::Result<Vec<i64>> {
        let kept = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for claim in &kept {
            conn.prepare_cached(&numbered(CLAIM_GUARD))?
                .execute(params![claim.token, claim.push_key, now])?;
        }
        Ok(kept.into_iter().map(|claim| claim.token).collect())
    }

    /// Forgets the claims whose guards are committed.
    pub(super) fn forget(&self, tokens: &[i64]) {
        if tokens.is_empty() {
            return;
        }
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|claim| !tokens.contains(&claim.token));
    }
}

/// Whom to tell when a committed claim's result is not taken.
pub(super) type Watch = Option<(LostClaim, Arc<LostClaims>)>;

/// The writer's side: hands `result` over, or keeps the claim when its push has gone.
pub(super) fn hand_over<T>(
    done: oneshot::Sender<Result<T, StoreError>>,
    result: Result<T, StoreError>,
    watch: Watch,
) {
    if let (Err(Ok(_)), Some((claim, lost))) = (done.send(result), watch) {
        lost.keep(claim);
    }
}

/// The push's side: the result of an operation queued for the writer. Dropped unread
/// (the store's timeout gave up on it) with a committed claim's result in it, it keeps
/// the claim.
pub(super) struct Waiting<T> {
    result: oneshot::Receiver<Result<T, StoreError>>,
    watch: Watch,
}

impl<T> Waiting<T> {
    pub(super) fn new(result: oneshot::Receiver<Result<T, StoreError>>, watch: Watch) -> Self {
        Waiting { result, watch }
    }

    pub(super) async fn result(mut self) -> Result<T, StoreError> {
        let result = (&mut self.result)
            .await
            .map_err(|_| StoreError("the store's writer stopped".into()))?;
        self.watch = None;
        result
    }
}

impl<T> Drop for Waiting<T> {
    fn drop(&mut self) {
        if let Some((claim, lost)) = self.watch.take() {
            // Closed first: from here on the writer cannot hand it over, and keeps the
            // claim itself (see [`hand_over`]).
            self.result.close();
            if let Ok(Ok(_)) = self.result.try_recv() {
                lost.keep(claim);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::task::{Context, Waker};
    use std::time::Duration;

    use super::super::super::backend::Backend as _;
    use super::super::super::request::ClaimRequest;
    use super::super::super::uncounted::Note;
    use super::super::super::{Claim, ClaimToken};
    use super::super::SqliteStore;

    fn request(token: ClaimToken, notes: Vec<Note>) -> ClaimRequest {
        ClaimRequest {
            key: "m-1".into(),
            push_key: "p-1".into(),
            earlier: 0,
            notes,
            token,
            lease: Duration::ZERO,
            dedupe_window: None,
        }
    }

    /// A claim that commits while its push gives up (here: its future is dropped with
    /// the result unread) counts its delivery once, though the push notes it too.
    #[tokio::test]
    async fn a_claim_whose_result_was_dropped_unread_is_not_counted_again_by_its_note() {
        // A folder of its own: the store's log and its index go with it at the end.
        let dir = std::env::temp_dir().join(format!("cmq-lost-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a folder");
        let path = dir.join("store.db");
        let store = SqliteStore::open(&path).await.expect("a store");

        let given_up = ClaimToken::new();
        {
            let mut claim = pin!(store.claim(request(given_up, Vec::new())));
            let mut cx = Context::from_waker(Waker::noop());
            assert!(claim.as_mut().poll(&mut cx).is_pending(), "queued");
            // The writer commits it; the push never looks.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(store.lost.0.lock().unwrap().len(), 1, "the claim is kept");

        // The push noted its delivery under the claim's token, as `Store::claim` does.
        let note = Note {
            id: given_up.0,
            push_key: "p-1".into(),
            deliveries: 1,
            abandoned_claim: Some("m-1".into()),
        };
        match store.claim(request(ClaimToken::new(), vec![note])).await {
            Ok(Claim::Run { attempt, .. }) => assert_eq!(attempt, 2, "two deliveries, not 3"),
            other => panic!("{other:?}"),
        }
        assert!(
            store.lost.0.lock().unwrap().is_empty(),
            "guarded, forgotten"
        );
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
