//! The delivery store: per message id, the attempts seen and the last decision, and the
//! dead-letter journal. It is what turns CMQ's "at least once, then discard" into
//! "handled once, or kept for a human".
//!
//! Two backends with the same semantics: SQLite in one file ([`sqlite`], the default:
//! one machine needs no server) and PostgreSQL ([`postgres`], shared by several hosts
//! behind a load balancer). Every operation that decides something is one atomic
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

mod postgres;
mod sqlite;
mod uncounted;
mod upkeep;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cmq_message::Format;

use uncounted::Uncounted;

/// Where the delivery state lives: a SQLite file, or a PostgreSQL database URL.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A SQLite database file, created when missing.
    Sqlite(PathBuf),
    /// A PostgreSQL URL (`postgres://user:password@host/db`), shared by several hosts.
    Postgres(String),
}

impl FromStr for StoreLocation {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err("the store location is empty".into());
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(StoreLocation::Postgres(text.to_owned()));
        }
        if text.contains("://") {
            return Err("a store is a file path or a postgres:// URL".into());
        }
        Ok(StoreLocation::Sqlite(PathBuf::from(text)))
    }
}

impl fmt::Display for StoreLocation {
    /// A PostgreSQL URL is shown without its user info and its query: either may hold
    /// a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Sqlite(path) => write!(f, "{}", path.display()),
            StoreLocation::Postgres(url) => {
                let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
                let rest = rest.split_once('?').map_or(rest, |(before, _)| before);
                let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
                write!(f, "{scheme}://{rest}")
            }
        }
    }
}

impl fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreLocation({self})")
    }
}

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

/// The key the store knows a pushed message by: a JSON array of the route, the format,
/// the topic's owner and name, the subscription and the message id. The array keeps
/// every part apart whatever it holds (no `a/b` + `c` that reads like `a` + `b/c`), and
/// JSON escapes every control character, so any id is stored as text on both backends.
/// Keys of one subscription share their start and sort by id, so that ids CMQ hands out
/// in order land next to each other in the store's index (a hash would scatter them,
/// and every message would dirty a page of its own). A key longer than
/// `MAX_PLAIN_KEY` (512) bytes is `sha256:` and its digest in hex instead, which no array
/// can be mistaken for. SIMPLIFIED pushes name no topic or subscription.
pub fn message_key(route: &str, message: &cmq_message::Message) -> String {
    bounded(
        serde_json::json!([
            route,
            message.format.name(),
            message.topic_owner,
            message.topic_name,
            message.subscription_name,
            message.message_id,
        ])
        .to_string(),
    )
}

/// The key deliveries answered before a claim are counted by (see [`Uncounted`]): a
/// JSON array of the route and the message id, all that is known of a push before its
/// body is read. Two subscriptions pushing one id to one route share it, so such a
/// delivery may count for both: a message journaled a delivery early, never one lost.
pub fn push_key(route: &str, message_id: &str) -> String {
    bounded(serde_json::json!([route, message_id]).to_string())
}

/// `key`, or past `MAX_PLAIN_KEY` (512) bytes `sha256:` and its digest in hex, which no
/// JSON array can be mistaken for.
fn bounded(key: String) -> String {
    use sha2::{Digest as _, Sha256};
    if key.len() <= MAX_PLAIN_KEY {
        return key;
    }
    let digest: String = Sha256::digest(key.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("sha256:{digest}")
}

/// The longest key kept as it is: far below what an index entry may hold on either
/// backend (PostgreSQL's B-tree takes about 2,700 bytes).
const MAX_PLAIN_KEY: usize = 512;

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
    /// The message was acknowledged within the dedupe window: answer `200 ok` without
    /// running the guest again.
    Duplicate,
    /// Another push of the same message is being handled (here or on another host):
    /// answer non-2xx, CMQ asks again later. This delivery is counted all the same.
    Busy {
        /// Deliveries seen, this one included.
        attempt: u32,
    },
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
}

/// The delivery store, shared by every push of a receiver (cheap to clone).
#[derive(Clone)]
pub struct Store {
    backend: Backend,
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

#[derive(Clone)]
enum Backend {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PostgresStore),
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
        let backend = match location {
            StoreLocation::Sqlite(path) => Backend::Sqlite(sqlite::SqliteStore::open(path).await?),
            StoreLocation::Postgres(url) => {
                Backend::Postgres(postgres::PostgresStore::open(url).await?)
            }
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
    /// never). When the claim fails, the delivery is noted, to be counted once the
    /// store is back.
    pub async fn claim(
        &self,
        key: &str,
        push_key: &str,
        lease: Duration,
        dedupe_window: Option<Duration>,
    ) -> Result<Claim, StoreError> {
        upkeep::start(self);
        let earlier = self.shared.uncounted.take(push_key);
        let request = ClaimRequest {
            key: key.to_owned(),
            push_key: push_key.to_owned(),
            earlier: i64::from(earlier),
            token: ClaimToken::new(),
            lease,
            dedupe_window,
        };
        let claimed = match &self.backend {
            Backend::Sqlite(store) => timed(store.claim(request)).await,
            Backend::Postgres(store) => timed(store.claim(request)).await,
        };
        if claimed.is_err() {
            self.shared
                .uncounted
                .note(push_key.to_owned(), earlier.saturating_add(1));
        }
        claimed
    }

    /// Notes a delivery of the message `push_key` names that was answered before any
    /// claim (overloaded, say): it is written within [`upkeep::FLUSH_INTERVAL`] and
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
    async fn count_uncounted(&self, deliveries: Vec<(String, u32)>) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => timed(store.count_uncounted(deliveries)).await,
            Backend::Postgres(store) => timed(store.count_uncounted(deliveries)).await,
        }
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
        match &self.backend {
            Backend::Sqlite(store) => timed(store.settle(settle)).await,
            Backend::Postgres(store) => timed(store.settle(settle)).await,
        }
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
        match &self.backend {
            Backend::Sqlite(store) => timed(store.journal(journal)).await,
            Backend::Postgres(store) => timed(store.journal(journal)).await,
        }
    }

    /// The journal's entries, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => timed(store.dead_letters(None)).await,
            Backend::Postgres(store) => timed(store.dead_letters(None)).await,
        }
    }

    /// One journal entry, if it exists.
    pub async fn dead_letter(&self, id: i64) -> Result<Option<DeadLetter>, StoreError> {
        let found = match &self.backend {
            Backend::Sqlite(store) => timed(store.dead_letters(Some(id))).await?,
            Backend::Postgres(store) => timed(store.dead_letters(Some(id))).await?,
        };
        Ok(found.into_iter().next())
    }

    /// Removes the journal entries `ids` (all of them with `None`); returns how many
    /// were removed.
    pub async fn remove_dead_letters(&self, ids: Option<Vec<i64>>) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => timed(store.remove_dead_letters(ids)).await,
            Backend::Postgres(store) => timed(store.remove_dead_letters(ids)).await,
        }
    }

    /// What the store knows of the message `key` names.
    pub async fn record(&self, key: &str) -> Result<Option<MessageRecord>, StoreError> {
        match &self.backend {
            Backend::Sqlite(store) => timed(store.record(key.to_owned())).await,
            Backend::Postgres(store) => timed(store.record(key)).await,
        }
    }

    /// Forgets message records and uncounted deliveries (not journal entries) unchanged
    /// for longer than `age`, `PRUNE_CHUNK` (500) at a time so that claims go on between
    /// the chunks; returns how many.
    pub async fn prune(&self, age: Duration) -> Result<u64, StoreError> {
        let before = now_ms() - millis(age);
        let mut pruned = 0;
        for statement in [PRUNE, PRUNE_UNCOUNTED] {
            loop {
                let chunk = match &self.backend {
                    Backend::Sqlite(store) => {
                        timed(store.prune(statement, before, PRUNE_CHUNK)).await?
                    }
                    Backend::Postgres(store) => {
                        timed(store.prune(statement, before, PRUNE_CHUNK)).await?
                    }
                };
                pruned += chunk;
                if chunk < PRUNE_CHUNK as u64 {
                    break;
                }
            }
        }
        Ok(pruned)
    }
}

/// The schema, the same in both backends but for the types the `{id}`, `{int}` and
/// `{bytes}` placeholders stand for. Times are Unix milliseconds.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS cmq_messages (
    message_id TEXT PRIMARY KEY NOT NULL,
    attempts {int} NOT NULL,
    state TEXT NOT NULL,
    last_decision TEXT,
    claim {int},
    lease_until_ms {int} NOT NULL DEFAULT 0,
    updated_ms {int} NOT NULL
);
CREATE INDEX IF NOT EXISTS cmq_messages_updated ON cmq_messages (updated_ms);
CREATE TABLE IF NOT EXISTS cmq_uncounted (
    push_key TEXT PRIMARY KEY NOT NULL,
    deliveries {int} NOT NULL,
    updated_ms {int} NOT NULL
);
CREATE TABLE IF NOT EXISTS cmq_dead_letters (
    id {id},
    message_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    attempts {int} NOT NULL,
    format TEXT NOT NULL,
    request_id TEXT,
    message_tag TEXT,
    body {bytes} NOT NULL,
    created_ms {int} NOT NULL
);
";

/// Claims a delivery in one statement: `$1` key, `$2` now, `$3` the lease's end, `$4`
/// the instant after which an acknowledgement makes a duplicate, `$5` the new claim's
/// token, `$6` the deliveries of the message answered before any claim (see
/// [`Uncounted`]). Every delivery is counted; the claim is taken unless another one's
/// lease is still running. Returns the count and the claim that holds the message
/// (this one's token when this delivery is to run), or no row for a duplicate. `SET`
/// reads the row as it was before the statement, in both databases.
const CLAIM: &str = "
INSERT INTO cmq_messages AS m (message_id, attempts, state, claim, lease_until_ms, updated_ms)
VALUES ($1, 1 + $6, 'running', $5, $3, $2)
ON CONFLICT (message_id) DO UPDATE SET
    attempts = CASE WHEN m.state IN ('acked', 'journaled') THEN 1 ELSE m.attempts + 1 END + $6,
    claim = CASE WHEN m.state = 'running' AND m.lease_until_ms > $2 THEN m.claim ELSE $5 END,
    last_decision = CASE WHEN m.state = 'running' AND m.lease_until_ms > $2
        THEN m.last_decision ELSE NULL END,
    lease_until_ms = CASE WHEN m.state = 'running' AND m.lease_until_ms > $2
        THEN m.lease_until_ms ELSE $3 END,
    state = 'running',
    updated_ms = $2
WHERE NOT (m.state = 'acked' AND m.updated_ms > $4)
RETURNING attempts, claim
";

/// `$1` key, `$2` state, `$3` decision, `$4` now, `$5` the claim's token: only the
/// claim that holds the message settles it.
const SETTLE: &str = "
UPDATE cmq_messages SET state = $2, last_decision = $3, lease_until_ms = 0, updated_ms = $4
WHERE message_id = $1 AND claim = $5 AND state = 'running'
";

/// `$1` message id, `$2` reason, `$3` attempts, `$4` format, `$5` request id, `$6` tag,
/// `$7` body, `$8` now.
const INSERT_DEAD_LETTER: &str = "
INSERT INTO cmq_dead_letters
    (message_id, reason, attempts, format, request_id, message_tag, body, created_ms)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING id
";

/// `$2` reason, `$8` now (numbered as in [`INSERT_DEAD_LETTER`]), `$9` key, `$10` the
/// claim's token (NULL: a push that held no claim, which marks nothing).
const MARK_JOURNALED: &str = "
UPDATE cmq_messages SET state = 'journaled', last_decision = $2, lease_until_ms = 0,
    updated_ms = $8
WHERE message_id = $9 AND claim = $10 AND state = 'running'
";

const SELECT_DEAD_LETTERS: &str = "
SELECT id, message_id, reason, attempts, format, request_id, message_tag, body, created_ms
FROM cmq_dead_letters
";

const SELECT_RECORD: &str = "
SELECT attempts, state, last_decision, updated_ms FROM cmq_messages WHERE message_id = $1
";

/// `$1`: records unchanged since before this instant go (a claim's lease is far
/// shorter than the age records are kept), `$2` of them at most, oldest first. The
/// outer test again: on PostgreSQL a record claimed again between the subquery and the
/// delete stays.
const PRUNE: &str = "
DELETE FROM cmq_messages WHERE updated_ms < $1 AND message_id IN (
    SELECT message_id FROM cmq_messages WHERE updated_ms < $1 ORDER BY updated_ms LIMIT $2
)
";

/// `$1` the push key, `$2` deliveries to add, `$3` now. (PostgreSQL's takes them all
/// in one statement: [`postgres`].)
const COUNT_UNCOUNTED: &str = "
INSERT INTO cmq_uncounted AS u (push_key, deliveries, updated_ms) VALUES ($1, $2, $3)
ON CONFLICT (push_key) DO UPDATE SET
    deliveries = u.deliveries + excluded.deliveries, updated_ms = excluded.updated_ms
";

/// `$1` the push key: the deliveries counted under it, taken by the claim that counts
/// them.
const TAKE_UNCOUNTED: &str = "DELETE FROM cmq_uncounted WHERE push_key = $1 RETURNING deliveries";

/// [`PRUNE`]'s twin for the deliveries of messages that never came back.
const PRUNE_UNCOUNTED: &str = "
DELETE FROM cmq_uncounted WHERE updated_ms < $1 AND push_key IN (
    SELECT push_key FROM cmq_uncounted WHERE updated_ms < $1 ORDER BY updated_ms LIMIT $2
)
";

/// Records one prune statement removes: each is a transaction of its own, short enough
/// that the claims queued behind it do not wait long, and small in the log.
const PRUNE_CHUNK: i64 = 500;

/// A claim, as the backends receive it.
#[derive(Debug)]
struct ClaimRequest {
    key: String,
    push_key: String,
    /// Deliveries to add that the store does not hold.
    earlier: i64,
    token: ClaimToken,
    lease: Duration,
    dedupe_window: Option<Duration>,
}

impl ClaimRequest {
    /// The statement's times, read when it is about to run: `(now, the lease's end, the
    /// instant after which an acknowledgement makes a duplicate)`.
    fn times(&self) -> (i64, i64, i64) {
        let now = now_ms();
        let lease_until = now.saturating_add(millis(self.lease));
        // i64::MAX: no acknowledgement is that recent, so nothing is a duplicate.
        let acked_since = self
            .dedupe_window
            .map_or(i64::MAX, |window| now.saturating_sub(millis(window)));
        (now, lease_until, acked_since)
    }

    /// What the claim statement's row says.
    fn outcome(&self, row: Option<(i64, Option<i64>)>) -> Claim {
        match row {
            None => Claim::Duplicate,
            Some((count, holder)) if holder == Some(self.token.0) => Claim::Run {
                attempt: attempts(count),
                token: self.token,
            },
            Some((count, _)) => Claim::Busy {
                attempt: attempts(count),
            },
        }
    }
}

/// A settlement, as the backends receive it.
#[derive(Debug)]
struct Settle {
    key: String,
    token: i64,
    state: &'static str,
    decision: String,
}

/// A journal write, as the backends receive it.
#[derive(Debug)]
struct Journal {
    entry: DeadLetter,
    key: String,
    token: Option<i64>,
}

/// Longest any store operation may take before the push gets `503 store unavailable`.
const STORE_TIMEOUT: Duration = Duration::from_secs(3);

async fn timed<T>(operation: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    tokio::time::timeout(STORE_TIMEOUT, operation)
        .await
        .unwrap_or_else(|_| Err(StoreError(format!("no answer within {STORE_TIMEOUT:?}"))))
}

fn parse_format(name: &str) -> Format {
    if name == "json" {
        Format::Json
    } else {
        Format::Simplified
    }
}

fn attempts(count: i64) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, millis)
}

fn millis_u64(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn time_of(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(format: Format, subscription: Option<&str>, id: &str) -> cmq_message::Message {
        cmq_message::Message {
            message_id: id.to_owned(),
            format,
            subscription_name: subscription.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn message_keys_keep_their_parts_apart() {
        use Format::{Json, Simplified};
        let key = |route, message| message_key(route, &message);
        // The pair that once made one key: subscription `sub` with id `1`, and a
        // SIMPLIFIED id `sub/1`.
        assert_ne!(
            key("default", message(Json, Some("sub"), "1")),
            key("default", message(Simplified, None, "sub/1"))
        );
        assert_ne!(
            key("a/b", message(Simplified, None, "c")),
            key("a", message(Simplified, None, "b/c"))
        );
        assert_ne!(
            key("default", message(Json, Some("s"), "1")),
            key("default", message(Json, Some("t"), "1"))
        );
        assert_eq!(
            key("default", message(Json, Some("s"), "1")),
            key("default", message(Json, Some("s"), "1"))
        );
        // Control characters are escaped; a long key is hashed.
        let nul = key("default", message(Simplified, None, "a\0b"));
        assert!(!nul.contains('\0') && nul.contains("a\\u0000b"), "{nul}");
        let long = key("default", message(Simplified, None, &"x".repeat(100_000)));
        assert_eq!(long.len(), "sha256:".len() + 64);
        assert!(long.starts_with("sha256:"));
    }

    #[test]
    fn locations_parse_and_hide_passwords() {
        assert_eq!(
            "state/cmq.db".parse::<StoreLocation>(),
            Ok(StoreLocation::Sqlite("state/cmq.db".into()))
        );
        let url = "postgres://cmq:s3cret@db.internal:5432/cmq";
        let location: StoreLocation = url.parse().expect("a postgres URL");
        assert_eq!(location, StoreLocation::Postgres(url.into()));
        assert_eq!(location.to_string(), "postgres://db.internal:5432/cmq");
        assert!(!format!("{location:?}").contains("s3cret"));
        assert!("redis://localhost".parse::<StoreLocation>().is_err());
        assert!("".parse::<StoreLocation>().is_err());
    }
}
