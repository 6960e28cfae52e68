//! What the store hands out and takes: claims and their tokens, settlements, message
//! records, dead letters and the journal's pages, the store's errors and file sizes.

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use cmq_message::Format;

use super::request::millis;

/// The sizes in bytes of a SQLite store's files (0 for a file that does not exist).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreFiles {
    /// The database file.
    pub database: u64,
    /// The write-ahead log (`-wal`): at most twice [`super::WAL_LIMIT`] and one transaction,
    /// and emptied once it has not changed for a second.
    pub wal: u64,
    /// The log's index (`-shm`), which grows with the log.
    pub shm: u64,
}

/// The store could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("delivery store: {0}")]
pub struct StoreError(pub(super) String);

impl StoreError {
    pub(super) fn new(context: &str, err: impl fmt::Display) -> Self {
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
pub struct ClaimToken(pub(super) i64);

impl ClaimToken {
    /// A new random token: unique across hosts for all practical purposes.
    pub(super) fn new() -> Self {
        use std::hash::{BuildHasher as _, RandomState};
        static COUNT: AtomicU64 = AtomicU64::new(0);
        static KEYS: OnceLock<RandomState> = OnceLock::new();
        let count = COUNT.fetch_add(1, Ordering::Relaxed);
        // Random keys drawn once per process, and a counter that makes every token of
        // this process different (keyed SipHash of distinct inputs). No system call a
        // claim: the process id was one.
        let random = KEYS.get_or_init(RandomState::new).hash_one(count);
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
pub struct JournalQuery {
    /// Only this route's.
    pub route: Option<String>,
    /// Only those whose reason holds this text (ASCII letters in either case).
    pub reason: Option<String>,
    /// Only those journaled since.
    pub since: Option<SystemTime>,
    /// At most this many.
    pub limit: u32,
    /// Past this many (a page of the console's, newest first).
    pub offset: u64,
}

impl JournalQuery {
    /// The reason's `LIKE` pattern: lower case, `!` escaping the wildcards.
    pub(super) fn reason_pattern(&self) -> Option<String> {
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
    pub(super) fn since_ms(&self) -> i64 {
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

/// What [`super::Store::prune`] forgot: rows, and the statements it took to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Message records and uncounted deliveries forgotten.
    pub rows: u64,
    /// The statements that took: one per chunk of `PRUNE_CHUNK`, and a last short one.
    pub statements: u32,
}
