//! What a store's database does, the same for SQLite ([`super::sqlite`]) and PostgreSQL
//! ([`super::postgres`]): each operation is one statement or transaction there, run
//! with the semantics `sql.rs` writes once for both. [`super::Store`] adds what they
//! share: the timeout on every operation, the deliveries noted before their claim,
//! the upkeep.

use std::pin::Pin;

use super::request::{ClaimRequest, Journal, Settle};
use super::uncounted::Note;
use super::{
    Claim, DeadLetter, JournalQuery, ListedDeadLetter, MessageRecord, RouteCount, StoreError,
};

/// An operation's future, boxed: a backend is used as `dyn Backend`.
pub(super) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A store's database.
pub(super) trait Backend: Send + Sync {
    /// Counts a delivery and takes the message or not ([`Claim`]); the request's notes
    /// in doubt are counted first, so that the claim takes them.
    fn claim(&self, request: ClaimRequest) -> BoxFuture<'_, Result<Claim, StoreError>>;

    /// Writes deliveries counted before their claim (a note written before adds
    /// nothing), and releases the leases of the claims given up on among them.
    fn count_uncounted(&self, notes: Vec<Note>) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Records how a claim ended, if it still holds its message.
    fn settle(&self, settle: Settle) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Settles a journaled message as acknowledged by a replay; whether one was there.
    fn mark_replayed(&self, key: String) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// Writes a journal entry, synced; its id.
    fn journal(&self, journal: Journal) -> BoxFuture<'_, Result<i64, StoreError>>;

    /// The entry `id`, or every entry, oldest first.
    fn dead_letters(&self, id: Option<i64>) -> BoxFuture<'_, Result<Vec<DeadLetter>, StoreError>>;

    /// A page of the journal without bodies, and how many entries the query matches.
    fn journal_page(
        &self,
        query: JournalQuery,
    ) -> BoxFuture<'_, Result<(Vec<ListedDeadLetter>, u64), StoreError>>;

    /// The journal's entries by route.
    /// The entries `query` picks whose id is above `after`, oldest first, `query.limit`
    /// at most, bodies included.
    fn journal_after(
        &self,
        query: JournalQuery,
        after: i64,
    ) -> BoxFuture<'_, Result<Vec<DeadLetter>, StoreError>>;

    fn dead_letter_counts(&self) -> BoxFuture<'_, Result<Vec<RouteCount>, StoreError>>;

    /// Removes the entries `ids` (all with `None`); how many went.
    fn remove_dead_letters(&self, ids: Option<Vec<i64>>) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// What the store knows of the message `key` names.
    fn record(&self, key: String) -> BoxFuture<'_, Result<Option<MessageRecord>, StoreError>>;

    /// Runs one of the prune statements with `before` and `limit`; the rows it removed.
    fn prune(
        &self,
        statement: &'static str,
        before: i64,
        limit: i64,
    ) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// An operation did not answer within the store's timeout: a backend whose
    /// connection would hold back every later statement gives it up here.
    fn timed_out(&self) {}
}
