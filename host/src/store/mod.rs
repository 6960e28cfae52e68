//! The delivery store: per message id, the attempts seen and the last decision, and the
//! dead-letter journal. It is what turns CMQ's "at least once, then discard" into
//! "handled once, or kept for a human".
//!
//! Two backends with the same semantics: SQLite in one file ([`sqlite`], the default:
//! one machine needs no server) and PostgreSQL ([`postgres`], shared by several hosts
//! behind a load balancer), both behind one trait ([`backend::Backend`]); [`Store`]
//! adds what they share: timeouts, the deliveries noted before a claim, the upkeep.
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
mod request;
mod sql;
mod sqlite;
mod uncounted;
mod upkeep;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use cmq_message::Format;

use backend::Backend;
pub use keys::{message_key, push_key};
pub use location::StoreLocation;
use request::{ClaimRequest, Journal, Settle, millis, millis_u64, now_ms};
use sql::{PRUNE, PRUNE_CHUNK, PRUNE_NOTES, PRUNE_TAKEN_NOTES, PRUNE_UNCOUNTED};
use uncounted::Uncounted;

/// How long a claim's guard and a taken note are kept: far longer than any write of the
/// same note or claim can arrive late (a store timeout, a connection's buffers).
const GUARD_AGE: Duration = Duration::from_secs(3600);

/// The sizes in bytes of a SQLite store's files (0 for a file that does not exist).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreFiles {
    /// The database file.
    pub database: u64,
    /// The write-ahead log (`-wal`): at most twice [`WAL_LIMIT`] and one transaction,
    /// and emptied once it has not changed for a second.
    pub wal: u64,
    /// The log's index (`-shm`), which grows with the log.
    pub shm: u64,
}

pub use sqlite::WAL_LIMIT;

/// The store could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("delivery store: {0}")]
pub struct StoreError(String);

impl StoreError {
    fn new(context: &str, err: impl fmt::Display) -> Self {
        StoreError(format!("{context}: {err}"))
    }
}

/// What a push may do with its message, decided atomically with recording it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Run the guest: this is delivery number `attempt` of the message. Settle it with
    /// `token`.
    Run {
        /// Deliveries seen, this one included, counted from 1; starts again at 1 after
        /// the message was settled for good.
        attempt: u32,
        /// Identifies this claim: settling with it is refused once another push has
        /// taken the message over (after this claim's lease ran out).
        token: ClaimToken,
    },
    /// The message was settled within the dedupe window (acknowledged, dropped or
    /// journaled): answer `200 ok` without running the guest again.
    Duplicate {
        /// How it was settled.
        of: Settled,
    },
    /// Another push of the same message is being handled (here or on another host):
    /// answer non-2xx, CMQ asks again later. This delivery is counted all the same.
    Busy {
        /// Deliveries seen, this one included.
        attempt: u32,
        /// The claim that holds the message: journaling this push with it settles the
        /// message as journaled (on the last attempt).
        holder: ClaimToken,
    },
}

/// How a message was settled for good, which makes a later push of it a duplicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The guest acknowledged it (or a replay of its journal entry did).
    Ack,
    /// The guest dropped it: it is in the journal.
    Drop,
    /// It is in the journal for another reason: its last attempt failed.
    Journaled,
}

impl Settled {
    /// Its name in logs and metrics: `ack`, `drop`, `journaled`.
    pub fn name(self) -> &'static str {
        match self {
            Settled::Ack => "ack",
            Settled::Drop => "drop",
            Settled::Journaled => "journaled",
        }
    }
}

/// The identity of one claim (see [`Claim::Run`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimToken(i64);

impl ClaimToken {
    /// A new random token: unique across hosts for all practical purposes.
    fn new() -> Self {
        use std::hash::BuildHasher as _;
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let count = COUNT.fetch_add(1, Ordering::Relaxed);
        // RandomState draws fresh random keys per process; the counter makes every
        // token of this process different.
        let random = std::hash::RandomState::new().hash_one((count, std::process::id()));
        ClaimToken(i64::from_ne_bytes(random.to_ne_bytes()))
    }
}

/// How a claimed delivery ended, when it did not go to the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// The guest acknowledged: later pushes of the message are duplicates.
    Acked,
    /// The delivery failed (retry, fault, deadline); CMQ will redeliver. The text is
    /// the decision as logged.
    Failed(String),
}

/// What the store knows of one message id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    /// Deliveries claimed in the current round.
    pub attempts: u32,
    /// `running`, `failed`, `acked` or `journaled`.
    pub state: String,
    /// The last decision, as logged (`ack`, `retry: ...`, `fault: ...`).
    pub last_decision: Option<String>,
    /// When the record last changed.
    pub updated: SystemTime,
}

/// A message kept in the dead-letter journal, as it was pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The journal's id for the entry (not the message id).
    pub id: i64,
    /// The message id.
    pub message_id: String,
    /// Why it was journaled: `dropped: ...`, or the last failure on the last attempt.
    pub reason: String,
    /// Deliveries seen, the journaled one included.
    pub attempts: u32,
    /// The format it was pushed in.
    pub format: Format,
    /// The `x-cmq-request-id` of the journaled delivery.
    pub request_id: Option<String>,
    /// The `x-cmq-message-tag` header, as sent.
    pub message_tag: Option<String>,
    /// The push body, byte for byte (the whole JSON envelope in JSON format).
    pub body: Vec<u8>,
    /// When it was journaled.
    pub created: SystemTime,
    /// The route it was pushed to; none for entries journaled before the journal kept
    /// routes.
    pub route: Option<String>,
}

/// Which journal entries to list, and how many.
#[derive(Debug, Clone, Default)]
pub(crate) struct JournalQuery {
    /// Only this route's.
    pub(crate) route: Option<String>,
    /// Only those whose reason holds this text (ASCII letters in either case).
    pub(crate) reason: Option<String>,
    /// Only those journaled since.
    pub(crate) since: Option<SystemTime>,
    pub(crate) limit: u32,
    pub(crate) offset: u64,
}

impl JournalQuery {
    /// The reason's `LIKE` pattern: lower case, `!` escaping the wildcards.
    fn reason_pattern(&self) -> Option<String> {
        self.reason.as_ref().map(|text| {
            let mut pattern = String::from("%");
            for c in text.to_ascii_lowercase().chars() {
                if matches!(c, '%' | '_' | '!') {
                    pattern.push('!');
                }
                pattern.push(c);
            }
            pattern.push('%');
            pattern
        })
    }

    /// The oldest `created_ms` it lists.
    fn since_ms(&self) -> i64 {
        self.since
            .and_then(|since| since.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, millis)
    }
}

/// A journal entry as a list shows it: without its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListedDeadLetter {
    pub(crate) id: i64,
    pub(crate) message_id: String,
    pub(crate) reason: String,
    pub(crate) attempts: u32,
    pub(crate) created: SystemTime,
    pub(crate) route: Option<String>,
}

/// How many journal entries one route has (none: entries from before the journal kept
/// routes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteCount {
    /// The route's name.
    pub route: Option<String>,
    /// Its entries.
    pub entries: u64,
}

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

/// What [`Store::prune`] forgot: rows, and the statements it took to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Message records and uncounted deliveries forgotten.
    pub rows: u64,
    /// The statements that took: one per chunk of `PRUNE_CHUNK`, and a last short one.
    pub statements: u32,
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
