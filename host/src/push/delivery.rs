//! Delivery, the second stage of a push: its message claimed in the store, run through
//! a fresh instance of the route's guest, and how it ended recorded, all of which
//! becomes an [`Outcome`]. A `wasi:http` guest gets the request instead, and its
//! response is the answer ([`super::http_delivery`]).
//!
//! With a store, every delivery counts toward the message's attempts; the last attempt
//! is journaled before its guest runs, and failures on it are journaled with the
//! guest's decision, so that CMQ giving up never loses a message (see the README's
//! delivery guarantees).

use std::time::{Duration, Instant};

use tracing::Instrument as _;

use crate::metrics::Metrics;
use crate::push::intake::RawPush;
use crate::push::journal_entry::{Kept, clip};
use crate::route::Route;
use crate::sandbox::bindings::{Decision, Message};
use crate::sandbox::guest_fault::GuestFault;
use crate::store::{
    Claim, ClaimToken, DeadLetter, Settled, Settlement, Store, StoreError, message_key, push_key,
};
use crate::trace;

/// How much longer than the guest deadline a claim holds off other pushes of its
/// message: a host that dies mid-run frees its claims after this.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// How a delivery ended, which its [`super::verdict::Verdict`] is made of.
pub(crate) enum Outcome {
    /// Settled within the dedupe window (acknowledged, dropped or journaled): not run
    /// again.
    Duplicate { of: Settled },
    /// Another push of the message is running; on the last attempt this one was
    /// journaled under `journaled`.
    Busy {
        attempt: u32,
        journaled: Option<i64>,
    },
    /// The store could not claim it: not run (the delivery is noted, to be counted).
    Unclaimed(StoreError),
    /// The guest ran: its decision, or why it gave none, and what the store did.
    Ran {
        /// The attempt, with a store.
        attempt: Option<u32>,
        result: Result<Decision, GuestFault>,
        recorded: Recorded,
    },
}

/// A store operation a delivery waits for.
#[derive(Debug, Clone, Copy)]
enum StoreOperation {
    Claim,
    Settle,
    Journal,
}

impl StoreOperation {
    /// Its `operation` label on `cmq_store_operation_duration_seconds`.
    fn label(self) -> &'static str {
        match self {
            StoreOperation::Claim => "claim",
            StoreOperation::Settle => "settle",
            StoreOperation::Journal => "journal",
        }
    }

    /// The name of its span in a push's trace.
    fn stage(self) -> &'static str {
        match self {
            StoreOperation::Claim => "store claim",
            StoreOperation::Settle => "store settle",
            StoreOperation::Journal => "store journal",
        }
    }
}

/// What the store did with a delivery the guest ran.
pub(crate) enum Recorded {
    /// The receiver has no store; the guest's decision is the answer.
    NoStore,
    /// The store failed to record it (logged); the guest's decision is the answer.
    StoreFailed,
    /// Settled; the guest's decision is the answer.
    Settled,
    /// In the dead-letter journal under this id: answered `200 ok`.
    Journaled(i64),
    /// A drop that could not be journaled: answered so that CMQ redelivers.
    DropNotJournaled,
}

/// One route's deliveries, with the receiver's store.
pub(crate) struct Delivery<'a> {
    pub(crate) route: &'a Route,
    pub(crate) store: Option<&'a Store>,
    pub(crate) metrics: &'a Metrics,
}

/// A delivery this push claimed in the store.
struct Claimed<'a> {
    store: &'a Store,
    key: String,
    token: ClaimToken,
    attempt: u32,
}

impl Delivery<'_> {
    /// Claims `message`, runs the guest when the claim says so, and records how it
    /// ended. Without a store the guest simply runs.
    pub(crate) async fn run(&self, message: cmq_message::Message, raw: RawPush) -> Outcome {
        let Some(store) = self.store else {
            let result = self.run_guest(message).await;
            return Outcome::Ran {
                attempt: None,
                result,
                recorded: Recorded::NoStore,
            };
        };
        // Boxed: the store's states would double the size of the future every push
        // builds and moves (3,240 bytes, 1,832 without them), store or none.
        Box::pin(self.run_stored(store, message, raw)).await
    }

    /// [`Delivery::run`] with a store.
    async fn run_stored(
        &self,
        store: &Store,
        mut message: cmq_message::Message,
        raw: RawPush,
    ) -> Outcome {
        let claimed = match self.claim(store, &message, &raw).await {
            Ok(claimed) => claimed,
            Err(outcome) => return outcome,
        };
        message.attempt = Some(claimed.attempt);
        let kept = Kept::of(self.route, &message, &raw, claimed.attempt);
        let provisional = self.keep_last_delivery(&claimed, &kept).await;
        let result = self.run_guest(message).await;
        let recorded = self.record(&claimed, kept, &result).await;
        if let Some(provisional) = provisional {
            let acked = matches!(result, Ok(Decision::Ack));
            release_last_delivery(&claimed, provisional, acked, &recorded).await;
        }
        Outcome::Ran {
            attempt: Some(claimed.attempt),
            result,
            recorded,
        }
    }

    /// Awaits the store's `operation` in a span of its own, and counts how long it took.
    async fn observed<T>(&self, operation: StoreOperation, call: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let outcome = call.instrument(trace::stage(operation.stage())).await;
        self.metrics
            .store_operation(operation.label(), started.elapsed());
        outcome
    }

    /// Runs the guest on `message`, and counts how long its instance and its run took.
    async fn run_guest(&self, message: cmq_message::Message) -> Result<Decision, GuestFault> {
        let (result, times) = self.route.guest.handle(Message::from(message)).await;
        self.metrics.guest_ran(&self.route.series, times);
        result
    }

    /// Whether `attempt` is the route's last (`max_attempts`; 0: none is), on which a
    /// message that is not acknowledged goes to the journal.
    fn is_last(&self, attempt: u32) -> bool {
        let max = self.route.options.max_attempts;
        max > 0 && attempt >= max
    }

    /// Claims the message in `store`: a claim to run it, or the outcome without a run.
    async fn claim<'s>(
        &self,
        store: &'s Store,
        message: &cmq_message::Message,
        raw: &RawPush,
    ) -> Result<Claimed<'s>, Outcome> {
        let route_name = self.route.name.as_str();
        let key = message_key(route_name, message);
        let push_key = push_key(route_name, &message.message_id);
        let lease = self.route.options.deadline + LEASE_MARGIN;
        let window = self.route.options.dedupe_window;
        match self
            .observed(
                StoreOperation::Claim,
                store.claim(&key, &push_key, lease, window),
            )
            .await
        {
            Ok(Claim::Run { attempt, token }) => Ok(Claimed {
                store,
                key,
                token,
                attempt,
            }),
            Ok(Claim::Duplicate { of }) => Err(Outcome::Duplicate { of }),
            Ok(Claim::Busy { attempt, holder }) => {
                let kept = Kept::of(self.route, message, raw, attempt);
                Err(self.busy(store, &key, kept, holder).await)
            }
            Err(err) => {
                self.metrics.store_error(route_name);
                Err(Outcome::Unclaimed(err))
            }
        }
    }

    /// A push whose message another push is running: on the last attempt it goes to
    /// the journal (CMQ would not ask again, and the other run may yet fail), and the
    /// message is settled as journaled, taken from the claim `holder` (a run that ends
    /// later records nothing more: the journal holds the message).
    async fn busy(&self, store: &Store, key: &str, kept: Kept, holder: ClaimToken) -> Outcome {
        let attempt = kept.attempt;
        let max = self.route.options.max_attempts;
        if !self.is_last(attempt) {
            return Outcome::Busy {
                attempt,
                journaled: None,
            };
        }
        let message_id = kept.message_id.clone();
        let entry = kept.entry(format!(
            "another push of it was in progress on attempt {attempt}, the last of {max}"
        ));
        match self
            .observed(
                StoreOperation::Journal,
                store.journal(entry, key, Some(holder)),
            )
            .await
        {
            Ok(id) => Outcome::Busy {
                attempt,
                journaled: Some(id),
            },
            Err(err) => {
                self.metrics.store_error(&self.route.name);
                tracing::error!(
                    messaging.cmq.route = self.route.name,
                    messaging.message.id = message_id,
                    messaging.cmq.attempt = attempt,
                    "last attempt could not be journaled, CMQ may discard the message: {err}"
                );
                Outcome::Busy {
                    attempt,
                    journaled: None,
                }
            }
        }
    }

    /// On the last attempt, journals the message before its guest runs, so that a host
    /// that dies during the run (CMQ gets no answer, and asks no more) has kept it.
    /// Returns the entry's id; `None` before the last attempt, or when the journal
    /// failed (logged: the guest runs all the same, its decision may yet be a 2xx).
    async fn keep_last_delivery(&self, claimed: &Claimed<'_>, kept: &Kept) -> Option<i64> {
        let max = self.route.options.max_attempts;
        if !self.is_last(claimed.attempt) {
            return None;
        }
        let entry = kept.clone().entry(format!(
            "kept while its last delivery ran (attempt {}, the last of {max}): the host \
             stopped, or could not record the guest's decision",
            claimed.attempt
        ));
        match self
            .observed(
                StoreOperation::Journal,
                claimed.store.journal(entry, &claimed.key, None),
            )
            .await
        {
            Ok(id) => Some(id),
            Err(err) => {
                self.metrics.store_error(&self.route.name);
                tracing::error!(
                    messaging.cmq.route = self.route.name,
                    messaging.message.id = kept.message_id,
                    "the last delivery could not be kept before its guest ran: {err}"
                );
                None
            }
        }
    }

    /// Records how a claimed delivery ended. Drops, and failures on the last attempt,
    /// go to the dead-letter journal (synced) so that their 2xx keeps them.
    async fn record(
        &self,
        claimed: &Claimed<'_>,
        kept: Kept,
        result: &Result<Decision, GuestFault>,
    ) -> Recorded {
        let attempt = claimed.attempt;
        let message_id = kept.message_id.clone();
        let failure = match result {
            // The guest acknowledged: the answer stays 2xx even when the store fails.
            // Only a later duplicate would run again.
            Ok(Decision::Ack) => {
                return self
                    .settle(claimed, &message_id, Settlement::Acked, "acknowledgement")
                    .await;
            }
            Ok(Decision::Drop(reason)) => {
                let entry = kept.entry(format!("dropped: {}", clip(reason)));
                let err = match self.journal(claimed, entry).await {
                    Ok(id) => return Recorded::Journaled(id),
                    Err(err) => err,
                };
                self.metrics.store_error(&self.route.name);
                tracing::error!(
                    messaging.message.id = message_id,
                    messaging.cmq.attempt = attempt,
                    "dropped message could not be journaled, answered so that CMQ delivers \
                     it again: {err}"
                );
                let failed = Settlement::Failed("drop not journaled".into());
                self.settle(claimed, &message_id, failed, "failure").await;
                return Recorded::DropNotJournaled;
            }
            Ok(Decision::Retry(reason)) => format!("retry: {}", clip(reason)),
            Err(fault) => format!("fault: {fault}"),
        };
        if self.is_last(attempt) {
            let max = self.route.options.max_attempts;
            let entry = kept.entry(format!("{failure} (attempt {attempt}, the last of {max})"));
            match self.journal(claimed, entry).await {
                Ok(id) => return Recorded::Journaled(id),
                Err(err) => tracing::error!(
                    messaging.message.id = message_id,
                    messaging.cmq.attempt = attempt,
                    "last attempt failed and could not be journaled, CMQ may discard the \
                     message: {err}"
                ),
            }
        }
        self.settle(claimed, &message_id, Settlement::Failed(failure), "failure")
            .await
    }

    /// Settles the claim; a store that fails is logged as `what` not recorded.
    async fn settle(
        &self,
        claimed: &Claimed<'_>,
        message_id: &str,
        settlement: Settlement,
        what: &str,
    ) -> Recorded {
        let settled = claimed
            .store
            .settle(&claimed.key, claimed.token, settlement);
        match self.observed(StoreOperation::Settle, settled).await {
            Ok(()) => Recorded::Settled,
            Err(err) => {
                tracing::warn!(
                    messaging.message.id = message_id,
                    "{what} not recorded: {err}"
                );
                Recorded::StoreFailed
            }
        }
    }

    /// Journals `entry` and settles the claim by it.
    async fn journal(&self, claimed: &Claimed<'_>, entry: DeadLetter) -> Result<i64, StoreError> {
        let journaled = claimed
            .store
            .journal(entry, &claimed.key, Some(claimed.token));
        self.observed(StoreOperation::Journal, journaled).await
    }
}

/// Removes the entry [`Delivery::keep_last_delivery`] wrote once it is not the
/// message's only copy: the guest acknowledged it, or it was journaled again with the
/// guest's decision. Otherwise (the answer is not 2xx, and CMQ asks no more) it stays.
async fn release_last_delivery(
    claimed: &Claimed<'_>,
    provisional: i64,
    acked: bool,
    recorded: &Recorded,
) {
    if !acked && !matches!(recorded, Recorded::Journaled(_)) {
        return;
    }
    if let Err(err) = claimed
        .store
        .remove_dead_letters(Some(vec![provisional]))
        .await
    {
        tracing::warn!(
            dead_letter = provisional,
            "a handled message stays in the journal: {err}"
        );
    }
}
