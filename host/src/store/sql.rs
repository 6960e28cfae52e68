//! The statements of the store, the same for both backends: PostgreSQL's `$1`
//! parameters, which SQLite's `?1` binds by the same numbers, and `{id}`, `{int}` and
//! `{bytes}` in the schema for each database's types. Times are Unix milliseconds.

/// The schema, the same in both backends but for the types the `{id}`, `{int}` and
/// `{bytes}` placeholders stand for. Times are Unix milliseconds.
pub(super) const SCHEMA: &str = "
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
CREATE TABLE IF NOT EXISTS cmq_notes (
    note_id {int} PRIMARY KEY NOT NULL,
    push_key TEXT NOT NULL,
    deliveries {int} NOT NULL,
    taken {int} NOT NULL,
    updated_ms {int} NOT NULL
);
CREATE INDEX IF NOT EXISTS cmq_notes_untaken ON cmq_notes (push_key) WHERE taken = 0;
CREATE INDEX IF NOT EXISTS cmq_notes_updated ON cmq_notes (updated_ms);
CREATE TABLE IF NOT EXISTS cmq_dead_letters (
    id {id},
    message_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    attempts {int} NOT NULL,
    format TEXT NOT NULL,
    request_id TEXT,
    message_tag TEXT,
    body {bytes} NOT NULL,
    created_ms {int} NOT NULL,
    route TEXT
);
";

/// Adds the journal's `route` column to a store made before entries kept their route
/// (those entries have none). SQLite has no `IF NOT EXISTS` here: it runs this only
/// when the column is missing ([`HAS_ROUTE_COLUMN`]); PostgreSQL adds it to the words.
pub(super) const ADD_ROUTE_COLUMN: &str = "ALTER TABLE cmq_dead_letters ADD COLUMN route TEXT";

/// 1 when the journal has its `route` column (SQLite).
pub(super) const HAS_ROUTE_COLUMN: &str =
    "SELECT count(*) FROM pragma_table_info('cmq_dead_letters') WHERE name = 'route'";

/// Claims a delivery in one statement: `$1` key, `$2` now, `$3` the lease's end, `$4`
/// the instant after which an acknowledgement makes a duplicate, `$5` the new claim's
/// token, `$6` the deliveries of the message answered before any claim (see
/// [`super::Store::note_delivery`]). Every delivery is counted; the claim is taken unless another one's
/// lease is still running. Returns the count and the claim that holds the message
/// (this one's token when this delivery is to run), or no row for a duplicate: a
/// message settled for good (acknowledged, or journaled: dropped or out of attempts)
/// since `$4`. Past the window a settled message counts as new, from attempt 1. `SET`
/// reads the row as it was before the statement, in both databases.
pub(super) const CLAIM: &str = "
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
WHERE NOT (m.state IN ('acked', 'journaled') AND m.updated_ms > $4)
RETURNING attempts, claim
";

/// The claim of a message the store has no row of, as [`CLAIM`] would insert it, and
/// nothing when it has one (no row changed: [`CLAIM`] runs next). The SQLite store
/// tries it first: a plain insert of one row needs neither the upsert's statement
/// journal nor a row handed back. `$1` key, `$2` now, `$3` the lease's end, `$4` the
/// claim's token, `$5` the deliveries answered before.
pub(super) const CLAIM_NEW: &str = "
INSERT INTO cmq_messages (message_id, attempts, state, claim, lease_until_ms, updated_ms)
VALUES ($1, 1 + $5, 'running', $4, $3, $2)
ON CONFLICT (message_id) DO NOTHING
";

/// `$1` key, `$2` state, `$3` decision, `$4` now, `$5` the claim's token: only the
/// claim that holds the message settles it.
pub(super) const SETTLE: &str = "
UPDATE cmq_messages SET state = $2, last_decision = $3, lease_until_ms = 0, updated_ms = $4
WHERE message_id = $1 AND claim = $5 AND state = 'running'
";

/// `$1` message id, `$2` reason, `$3` attempts, `$4` format, `$5` request id, `$6` tag,
/// `$7` body, `$8` now, `$9` route.
pub(super) const INSERT_DEAD_LETTER: &str = "
INSERT INTO cmq_dead_letters
    (message_id, reason, attempts, format, request_id, message_tag, body, created_ms, route)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING id
";

/// `$2` reason, `$8` now (numbered as in [`INSERT_DEAD_LETTER`]), `$10` key, `$11` the
/// claim's token (NULL: a push that held no claim, which marks nothing).
pub(super) const MARK_JOURNALED: &str = "
UPDATE cmq_messages SET state = 'journaled', last_decision = $2, lease_until_ms = 0,
    updated_ms = $8
WHERE message_id = $10 AND claim = $11 AND state = 'running'
";

/// `$1` key, `$2` now: a journaled message whose entry a replay's guest acknowledged
/// is settled as acknowledged from then on.
pub(super) const MARK_REPLAYED: &str = "
UPDATE cmq_messages SET state = 'acked', last_decision = 'ack (a replay of its journal entry)',
    updated_ms = $2
WHERE message_id = $1 AND state = 'journaled'
";

pub(super) const SELECT_DEAD_LETTERS: &str = "
SELECT id, message_id, reason, attempts, format, request_id, message_tag, body, created_ms,
    route
FROM cmq_dead_letters
";

/// Which journal entries a page shows, shared by [`SELECT_JOURNAL_PAGE`],
/// [`SELECT_JOURNAL_AFTER`] and [`COUNT_JOURNAL_PAGE`]: `$1` the route (NULL: any), `$2` a `LIKE` pattern the
/// reason, in lower case, matches (NULL: any), `$3` the oldest `created_ms`.
macro_rules! journal_filter {
    () => {
        " WHERE (CAST($1 AS TEXT) IS NULL OR route = $1) \
          AND (CAST($2 AS TEXT) IS NULL OR lower(reason) LIKE $2 ESCAPE '!') \
          AND created_ms >= $3 "
    };
}

/// A page of the journal, newest first, without the bodies: the filter's `$1`–`$3`,
/// then `$4` entries at most from the `$5`th on.
pub(super) const SELECT_JOURNAL_PAGE: &str = concat!(
    "SELECT id, message_id, reason, attempts, created_ms, route FROM cmq_dead_letters",
    journal_filter!(),
    "ORDER BY id DESC LIMIT $4 OFFSET $5"
);

/// The journal's entries whole, bodies and all, oldest first: the filter's `$1`–`$3`,
/// then those after the id `$4`, `$5` at most. A list walks the journal page by page
/// from the id it last printed, however long the journal.
pub(super) const SELECT_JOURNAL_AFTER: &str = concat!(
    "SELECT id, message_id, reason, attempts, format, request_id, message_tag, body, \
     created_ms, route FROM cmq_dead_letters",
    journal_filter!(),
    "AND id > $4 ORDER BY id LIMIT $5"
);

/// How many entries the filter's `$1`–`$3` match.
pub(super) const COUNT_JOURNAL_PAGE: &str =
    concat!("SELECT count(*) FROM cmq_dead_letters", journal_filter!());

/// The journal's entries by route (NULL: entries from before the journal kept routes).
pub(super) const COUNT_DEAD_LETTERS: &str =
    "SELECT route, count(*) FROM cmq_dead_letters GROUP BY route";

pub(super) const SELECT_RECORD: &str = "
SELECT attempts, state, last_decision, updated_ms FROM cmq_messages WHERE message_id = $1
";

/// `$1`: records unchanged since before this instant go (a claim's lease is far
/// shorter than the age records are kept), `$2` of them at most, oldest first. The
/// outer test again: on PostgreSQL a record claimed again between the subquery and the
/// delete stays.
pub(super) const PRUNE: &str = "
DELETE FROM cmq_messages WHERE updated_ms < $1 AND message_id IN (
    SELECT message_id FROM cmq_messages WHERE updated_ms < $1 ORDER BY updated_ms LIMIT $2
)
";

/// A note of deliveries not yet counted: `$1` its id, `$2` the push key, `$3`
/// deliveries, `$4` now. Each note is written under an id of its own, so one written
/// twice (its first write timed out, and committed after all) counts once; the id of
/// a note for a claim the host gave up on is that claim's token (see [`CLAIM_GUARD`]).
pub(super) const NOTE: &str = "
INSERT INTO cmq_notes (note_id, push_key, deliveries, taken, updated_ms)
VALUES ($1, $2, $3, 0, $4)
ON CONFLICT (note_id) DO NOTHING
";

/// A claim's token as a taken note (`$1` token, `$2` push key, `$3` now), written by
/// the claim before it counts anything: when its note is there already (the host gave
/// up on the claim and noted its delivery instead) the claim does nothing, and when
/// the claim came first the note does nothing. Either way the delivery counts once.
pub(super) const CLAIM_GUARD: &str = "
INSERT INTO cmq_notes (note_id, push_key, deliveries, taken, updated_ms)
VALUES ($1, $2, 0, 1, $3)
ON CONFLICT (note_id) DO NOTHING
";

/// `$1` key, `$2` the token of a claim the host gave up on, `$3` now: if it did
/// commit, its lease is given up too, so that the next push runs the guest.
pub(super) const RELEASE_ABANDONED: &str = "
UPDATE cmq_messages SET state = 'failed', last_decision = 'the host gave up on its claim',
    lease_until_ms = 0, updated_ms = $3
WHERE message_id = $1 AND claim = $2 AND state = 'running'
";

/// `$1` the push key, `$2` now: the notes counted under it, taken by the claim that
/// counts them (kept as taken, so that a note written again stays counted once).
pub(super) const TAKE_NOTES: &str = "
UPDATE cmq_notes SET taken = 1, updated_ms = $2 WHERE push_key = $1 AND taken = 0
RETURNING deliveries
";

/// `$1` the push key: deliveries noted by a cmq-host from before [`NOTE`], taken once.
pub(super) const TAKE_UNCOUNTED: &str =
    "DELETE FROM cmq_uncounted WHERE push_key = $1 RETURNING deliveries";

/// [`PRUNE`]'s twin for the notes of messages that never came back.
pub(super) const PRUNE_NOTES: &str = "
DELETE FROM cmq_notes WHERE updated_ms < $1 AND taken = 0 AND note_id IN (
    SELECT note_id FROM cmq_notes WHERE updated_ms < $1 AND taken = 0 ORDER BY updated_ms
    LIMIT $2
)
";

/// The notes taken, and the claims' guards: needed only while a late write of the
/// same note or claim may still arrive, so kept an hour ([`super::GUARD_AGE`]).
pub(super) const PRUNE_TAKEN_NOTES: &str = "
DELETE FROM cmq_notes WHERE updated_ms < $1 AND taken = 1 AND note_id IN (
    SELECT note_id FROM cmq_notes WHERE updated_ms < $1 AND taken = 1 ORDER BY updated_ms
    LIMIT $2
)
";

/// The same for the deliveries a cmq-host from before [`NOTE`] wrote.
pub(super) const PRUNE_UNCOUNTED: &str = "
DELETE FROM cmq_uncounted WHERE updated_ms < $1 AND push_key IN (
    SELECT push_key FROM cmq_uncounted WHERE updated_ms < $1 ORDER BY updated_ms LIMIT $2
)
";

/// Records one prune statement removes: each is a transaction of its own, short enough
/// that the claims queued behind it do not wait long, and small in the log.
pub(super) const PRUNE_CHUNK: i64 = 500;
