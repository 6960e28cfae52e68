//! The delivery store: per message id, the attempts seen and the last decision, and the
//! dead-letter journal. It is what turns CMQ's "at least once, then discard" into
//! "handled once, or kept for a human".
//!
//! Two backends with the same semantics: SQLite in one file ([`sqlite`], the default:
//! one machine needs no server) and PostgreSQL ([`postgres`], shared by several hosts
//! behind a load balancer), both behind one trait ([`backend::Backend`]); [`Store`]
//! adds what they share: timeouts, the deliveries noted before a claim, the upkeep.
//! What it hands out and takes (claims, records, dead letters, errors) is in
//! [`records`].
//! Every operation that decides something is one atomic
//! statement in the database, so two hosts never both claim one message.
//!
//! Durability: a dead-letter write is synced before it returns, since the 2xx sent after
//! it is the only copy's receipt. Claims and settlements are committed before they
//! return but not synced one by one (SQLite: WAL with `synchronous=NORMAL`, group
//! committed; PostgreSQL: `synchronous_commit=off`); a crash of the machine may lose
//! the last of them: a lost acknowledgement costs a duplicate run of a guest, a lost
//! count leaves the count one behind CMQ's, which the default `max_attempts` (one
//! below CMQ's last delivery) absorbs.
//!
//! Every delivery counts toward its message's attempts, those answered before any claim
//! too (see [`Uncounted`]), and the last attempt is journaled before its guest runs, so
//! that a host dying in it has kept the message.

mod backend;
mod keys;
mod location;
mod postgres;
mod records;
mod request;
mod sql;
mod sqlite;
mod uncounted;
mod upkeep;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backend::Backend;
pub use keys::{message_key, push_key};
pub use location::StoreLocation;
pub(crate) use records::ListedDeadLetter;
pub use records::{
    Claim, ClaimToken, DeadLetter, JournalQuery, MessageRecord, Pruned, RouteCount, Settled,
    Settlement, StoreError, StoreFiles,
};
use request::{ClaimRequest, Journal, Settle, millis, millis_u64, now_ms};
use sql::{PRUNE, PRUNE_CHUNK, PRUNE_NOTES, PRUNE_TAKEN_NOTES, PRUNE_UNCOUNTED};
use uncounted::Uncounted;

/// How long a claim's guard and a taken note are kept: far longer than any write of the
/// same note or claim can arrive late (a store timeout, a connection's buffers).
const GUARD_AGE: Duration = Duration::from_secs(3600);

pub use sqlite::WAL_LIMIT;

/// The delivery store, shared by every push of a receiver (cheap to clone).
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    location: StoreLocation,
    shared: Arc<Shared>,
}

/// What the clones of one store share besides the database.
#[derive(Debug, Default)]
struct Shared {
    /// Deliveries answered before their claim, waiting to be written.
    uncounted: Uncounted,
    /// How long message records are kept (see [`Store::keep_records_for`]), in
    /// milliseconds.
    keep_records_ms: AtomicU64,
    /// Whether [`upkeep`] runs for this store.
    upkeep_started: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store at `location`, creating its tables when missing.
    pub async fn open(location: &StoreLocation) -> Result<Store, StoreError> {
        let backend: Arc<dyn Backend> = match location {
            StoreLocation::Sqlite(path) => Arc::new(sqlite::SqliteStore::open(path).await?),
            StoreLocation::Postgres(url) => Arc::new(postgres::PostgresStore::open(url).await?),
        };
        let shared = Shared {
            keep_records_ms: AtomicU64::new(millis_u64(upkeep::KEEP_RECORDS)),
            ..Shared::default()
        };
        Ok(Store {
            backend,
            location: location.clone(),
            shared: Arc::new(shared),
        })
    }

    /// Where the store is (a URL's password left out).
    pub fn location(&self) -> &StoreLocation {
        &self.location
    }

    /// The sizes of the store's files, for a SQLite store (`None` for PostgreSQL).
    pub fn files(&self) -> Option<StoreFiles> {
        let StoreLocation::Sqlite(path) = &self.location else {
            return None;
        };
        let size = |suffix: &str| {
            let mut name = path.clone().into_os_string();
            name.push(suffix);
            std::fs::metadata(name).map_or(0, |meta| meta.len())
        };
        Some(StoreFiles {
            database: size(""),
            wal: size("-wal"),
            shm: size("-shm"),
        })
    }

    /// Records a delivery of the message `key` names and says whether to run the
    /// guest. The count also takes the deliveries noted under `push_key` (see
    /// `push_key` and [`Store::note_delivery`]). `lease` is how long a claim holds off
    /// other pushes of the message (a host that dies mid-run frees it by expiry);
    /// acknowledgements within `dedupe_window` make later pushes duplicates (`None`:
    /// never). When the claim fails, the delivery is noted under the claim's token, to be
    /// counted once the store is back, once: a claim that commits late after all, or
    /// a note written twice, counts nothing more and holds no lease.
    pub async fn claim(
        &self,
        key: &str,
        push_key: &str,
        lease: Duration,
        dedupe_window: Option<Duration>,
    ) -> Result<Claim, StoreError> {
        upkeep::start(self);
        let (earlier, doubtful) = self.shared.uncounted.take(push_key);
        let token = ClaimToken::new();
        let request = ClaimRequest {
            key: key.to_owned(),
            push_key: push_key.to_owned(),
            earlier: i64::from(earlier),
            notes: doubtful.clone(),
            token,
            lease,
            dedupe_window,
        };
        let claimed = self.timed(self.backend.claim(request)).await;
        if claimed.is_err() {
            self.shared.uncounted.restore(doubtful);
            self.shared.uncounted.abandon(
                token.0,
                push_key.to_owned(),
                key.to_owned(),
                earlier.saturating_add(1),
            );
        }
        claimed
    }

    /// Notes a delivery of the message `push_key` names that was answered before any
    /// claim (overloaded, say): it is written within 200 ms and
    /// counted by the message's next claim, on any host.
    pub fn note_delivery(&self, push_key: String) {
        upkeep::start(self);
        self.shared.uncounted.note(push_key, 1);
    }

    /// Deliveries that could not be noted for want of room, since the store opened.
    pub fn uncounted_lost(&self) -> u64 {
        self.shared.uncounted.lost()
    }

    /// Keeps message records for `age` after their last change (at least a day of
    /// CMQ's retries); the upkeep forgets older ones every hour.
    pub fn keep_records_for(&self, age: Duration) {
        let age = age.max(upkeep::KEEP_RECORDS);
        self.shared
            .keep_records_ms
            .store(millis_u64(age), Ordering::Relaxed);
    }

    /// Writes the deliveries noted and not yet counted; what fails stays noted for the
    /// next time.
    pub async fn flush(&self) {
        upkeep::flush(self).await;
    }

    /// Counts deliveries answered before any claim, by push key: the next claim of each
    /// message adds them to its count.
    async fn count_uncounted(&self, deliveries: Vec<uncounted::Note>) -> Result<(), StoreError> {
        self.timed(self.backend.count_uncounted(deliveries)).await
    }

    /// Records how the claim `token` of `key` ended; does nothing when another push has
    /// taken the message over since.
    pub async fn settle(
        &self,
        key: &str,
        token: ClaimToken,
        settlement: Settlement,
    ) -> Result<(), StoreError> {
        let (state, decision) = match settlement {
            Settlement::Acked => ("acked", "ack".to_owned()),
            Settlement::Failed(decision) => ("failed", decision),
        };
        let settle = Settle {
            key: key.to_owned(),
            token: token.0,
            state,
            decision,
        };
        self.timed(self.backend.settle(settle)).await
    }

    /// Settles the journaled message `key` as acknowledged: a replay of its journal
    /// entry was acknowledged by its guest, so a later push of it is a duplicate of
    /// that ack. Returns whether a journaled record was there to change.
    pub async fn mark_replayed(&self, key: &str) -> Result<bool, StoreError> {
        self.timed(self.backend.mark_replayed(key.to_owned())).await
    }

    /// Writes `entry` to the dead-letter journal, synced to disk before returning, and
    /// with `claim` marks the message `key` settled by it. Returns the entry's id.
    /// `entry.id` and `entry.created` are ignored: the journal assigns them.
    pub async fn journal(
        &self,
        entry: DeadLetter,
        key: &str,
        claim: Option<ClaimToken>,
    ) -> Result<i64, StoreError> {
        let journal = Journal {
            entry,
            key: key.to_owned(),
            token: claim.map(|token| token.0),
        };
        self.timed(self.backend.journal(journal)).await
    }

    /// The journal's entries, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        self.timed(self.backend.dead_letters(None)).await
    }

    /// The entries `query` picks, newest first and without their bodies, and how many
    /// it matches in all: a page of the journal, however long the journal.
    pub(crate) async fn journal_page(
        &self,
        query: JournalQuery,
    ) -> Result<(Vec<ListedDeadLetter>, u64), StoreError> {
        self.timed(self.backend.journal_page(query)).await
    }

    /// The entries `query` picks whose id is above `after`, oldest first and bodies
    /// included, `query.limit` at most: a list walks the journal a page at a time, from
    /// the last id it was given, and holds one page, however long the journal.
    pub async fn journal_after(
        &self,
        query: JournalQuery,
        after: i64,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        self.timed(self.backend.journal_after(query, after)).await
    }

    /// How many entries the journal holds, by route.
    pub async fn dead_letter_counts(&self) -> Result<Vec<RouteCount>, StoreError> {
        self.timed(self.backend.dead_letter_counts()).await
    }

    /// One journal entry, if it exists.
    pub async fn dead_letter(&self, id: i64) -> Result<Option<DeadLetter>, StoreError> {
        let found = self.timed(self.backend.dead_letters(Some(id))).await?;
        Ok(found.into_iter().next())
    }

    /// Removes the journal entries `ids` (all of them with `None`); returns how many
    /// were removed.
    pub async fn remove_dead_letters(&self, ids: Option<Vec<i64>>) -> Result<u64, StoreError> {
        self.timed(self.backend.remove_dead_letters(ids)).await
    }

    /// What the store knows of the message `key` names.
    pub async fn record(&self, key: &str) -> Result<Option<MessageRecord>, StoreError> {
        self.timed(self.backend.record(key.to_owned())).await
    }

    /// Forgets message records and uncounted deliveries (not journal entries) unchanged
    /// for longer than `age`, `PRUNE_CHUNK` (500) at a time so that claims go on between
    /// the chunks; returns how many, in how many statements.
    pub async fn prune(&self, age: Duration) -> Result<Pruned, StoreError> {
        let now = now_ms();
        let before = now - millis(age);
        let guards_before = now - millis(GUARD_AGE);
        let mut pruned = Pruned::default();
        for (statement, before) in [
            (PRUNE, before),
            (PRUNE_NOTES, before),
            (PRUNE_TAKEN_NOTES, guards_before),
            (PRUNE_UNCOUNTED, before),
        ] {
            loop {
                let chunk = self
                    .timed(self.backend.prune(statement, before, PRUNE_CHUNK))
                    .await?;
                pruned.rows += chunk;
                pruned.statements += 1;
                if chunk < PRUNE_CHUNK as u64 {
                    break;
                }
            }
        }
        Ok(pruned)
    }
}

/// Longest any store operation may take before the push is answered `store
/// unavailable` (see `crate::push::verdict`).
const STORE_TIMEOUT: Duration = Duration::from_secs(3);

impl Store {
    /// Awaits `operation` for at most [`STORE_TIMEOUT`]; past it the backend is told
    /// ([`Backend::timed_out`]: a stalled PostgreSQL connection would hold every later
    /// statement back, and deliver them all at once when it resumes).
    async fn timed<T>(
        &self,
        operation: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(STORE_TIMEOUT, operation).await {
            Ok(result) => result,
            Err(_) => {
                self.backend.timed_out();
                Err(StoreError(format!("no answer within {STORE_TIMEOUT:?}")))
            }
        }
    }
}
