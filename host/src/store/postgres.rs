//! The shared store: PostgreSQL, for several hosts behind one load balancer.
//!
//! Claims are single `INSERT ... ON CONFLICT DO UPDATE ... WHERE` statements, so two
//! hosts given the same push at once serialize on the message's row and only one runs
//! the guest. Two connections: claims and settlements go over one with
//! `synchronous_commit=off` (committed and visible at once, synced by the server a
//! moment later), dead-letter writes over one with the server's default, synced
//! before the commit returns. A connection that breaks is reopened by the next call.
//! Claims, settlements and journal writes read the time from the database's clock, so
//! that leases and dedupe windows hold across hosts whose clocks differ.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_postgres::{Client, Config, NoTls, Statement};

use super::backend::{Backend, BoxFuture};
use super::request::{
    ClaimRequest, Journal, Settle, attempts, millis, parse_format, time_of, unreadable,
};
use super::sql::{
    ADD_ROUTE_COLUMN, CLAIM, CLAIM_GUARD, COUNT_DEAD_LETTERS, COUNT_JOURNAL_PAGE,
    INSERT_DEAD_LETTER, MARK_JOURNALED, MARK_REPLAYED, NOTE, RELEASE_ABANDONED, SCHEMA,
    SELECT_DEAD_LETTERS, SELECT_JOURNAL_PAGE, SELECT_RECORD, SETTLE, TAKE_NOTES, TAKE_UNCOUNTED,
};
use super::uncounted::Note;
use super::{
    Claim, DeadLetter, JournalQuery, ListedDeadLetter, MessageRecord, RouteCount, StoreError,
};

/// How long connecting may take; the store's per-operation timeout bounds the rest.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Idle time before TCP keepalives probe a connection, so a dead server is noticed.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);

/// Serializes schema creation between hosts starting at once (any fixed number).
const SCHEMA_LOCK: i64 = 0x636d_715f_7374_6f72;

#[derive(Clone)]
pub(super) struct PostgresStore {
    /// Claims, settlements and reads.
    fast: Arc<Session>,
    /// Dead-letter writes and removals.
    durable: Arc<Session>,
}

/// One connection, reopened when it breaks, with its prepared statements.
struct Session {
    config: Config,
    /// Whether its commits must be synced: checked on the live connection, since a
    /// pooler between the host and the server may drop the startup options that ask
    /// for it.
    synced: bool,
    open: Mutex<Option<Arc<Prepared>>>,
}

struct Prepared {
    client: Client,
    claim: Statement,
    count_uncounted: Statement,
    settle: Statement,
    journal: Statement,
    record: Statement,
}

impl PostgresStore {
    pub(super) async fn open(url: &str) -> Result<Self, StoreError> {
        // The URL is never part of an error: it may hold a password.
        let mut config: Config = url
            .parse()
            .map_err(|err| StoreError::new("invalid PostgreSQL URL", err))?;
        // "relation already exists, skipping" and such are not worth a log line.
        config.application_name("cmq-host");
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives_idle(KEEPALIVE_IDLE);
        // Whatever the server's or the role's default: journal writes are synced
        // before the commit returns.
        config.options("-c client_min_messages=warning -c synchronous_commit=on");
        let durable = Session {
            config: config.clone(),
            synced: true,
            open: Mutex::new(None),
        };
        config.options("-c client_min_messages=warning -c synchronous_commit=off");
        let fast = Session {
            config,
            synced: false,
            open: Mutex::new(None),
        };
        let schema = SCHEMA
            .replace("{id}", "BIGSERIAL PRIMARY KEY")
            .replace("{int}", "BIGINT")
            .replace("{bytes}", "BYTEA");
        // The statements are prepared on first use, once the tables exist.
        connect(&durable.config)
            .await?
            .batch_execute(&format!(
                "BEGIN; SELECT pg_advisory_xact_lock({SCHEMA_LOCK}); {schema} \
                 {add_route}; COMMIT;",
                add_route = ADD_ROUTE_COLUMN.replace("ADD COLUMN", "ADD COLUMN IF NOT EXISTS")
            ))
            .await
            .map_err(|err| StoreError::new("creating the tables", err))?;
        Ok(PostgresStore {
            fast: Arc::new(fast),
            durable: Arc::new(durable),
        })
    }

    /// Leaves both connections, and whatever waits on them, to be opened anew by the
    /// next call (after an operation that did not answer in time). A connection being
    /// opened right now is left to be.
    pub(super) fn forget_connections(&self) {
        for session in [&self.fast, &self.durable] {
            if let Ok(mut open) = session.open.try_lock() {
                *open = None;
            }
        }
    }
}

impl Backend for PostgresStore {
    fn claim(&self, request: ClaimRequest) -> BoxFuture<'_, Result<Claim, StoreError>> {
        Box::pin(async move {
            // Its notes in doubt first (almost always none), so that the claim takes them.
            if !request.notes.is_empty() {
                self.count_uncounted(request.notes.clone()).await?;
            }
            let session = self.fast.get().await?;
            let lease = millis(request.lease);
            let window = request.dedupe_window.map(millis);
            let row = session
                .client
                .query_one(
                    &session.claim,
                    &[
                        &request.key,
                        &request.token.0,
                        &lease,
                        &window,
                        &request.push_key,
                        &request.earlier,
                    ],
                )
                .await
                .map_err(|err| StoreError::new("claiming", err))?;
            // The guard's row, then the claim's (none for a duplicate).
            let (guarded, attempts, holder): (i64, Option<i64>, Option<i64>) =
                (row.get(0), row.get(1), row.get(2));
            if guarded == 0 {
                return Err(StoreError(
                    "the claim was given up on, and its delivery noted".into(),
                ));
            }
            let row = attempts.map(|attempts| (attempts, holder));
            let settled = match &row {
                Some(_) => None,
                None => session
                    .client
                    .query_opt(&session.record, &[&request.key])
                    .await
                    .map_err(|err| StoreError::new("reading a duplicate's record", err))?
                    .map(|record| (record.get(1), record.get(2))),
            };
            request.outcome(row, settled)
        })
    }

    fn count_uncounted(&self, notes: Vec<Note>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            if notes.is_empty() {
                return Ok(());
            }
            let session = self.fast.get().await?;
            let mut ids = Vec::with_capacity(notes.len());
            let mut push_keys = Vec::with_capacity(notes.len());
            let mut counts = Vec::with_capacity(notes.len());
            let (mut released_keys, mut released_tokens) = (Vec::new(), Vec::new());
            for note in notes {
                if let Some(key) = note.abandoned_claim {
                    released_keys.push(key);
                    released_tokens.push(note.id);
                }
                ids.push(note.id);
                push_keys.push(note.push_key);
                counts.push(i64::from(note.deliveries));
            }
            session
                .client
                .query_one(
                    &session.count_uncounted,
                    &[&ids, &push_keys, &counts, &released_keys, &released_tokens],
                )
                .await
                .map_err(|err| StoreError::new("counting deliveries", err))?;
            Ok(())
        })
    }

    fn settle(&self, settle: Settle) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let session = self.fast.get().await?;
            session
                .client
                .execute(
                    &session.settle,
                    &[&settle.key, &settle.state, &settle.decision, &settle.token],
                )
                .await
                .map_err(|err| StoreError::new("settling", err))?;
            Ok(())
        })
    }

    fn mark_replayed(&self, key: String) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let session = self.fast.get().await?;
            let marked = session
                .client
                .execute(on_database_clock(MARK_REPLAYED, 2).as_str(), &[&key])
                .await
                .map_err(|err| StoreError::new("marking a replayed message", err))?;
            Ok(marked > 0)
        })
    }

    fn journal(&self, journal: Journal) -> BoxFuture<'_, Result<i64, StoreError>> {
        Box::pin(async move {
            let session = self.durable.get().await?;
            let entry = &journal.entry;
            let row = session
                .client
                .query_one(
                    &session.journal,
                    &[
                        &entry.message_id,
                        &entry.reason,
                        &i64::from(entry.attempts),
                        &entry.format.name(),
                        &entry.request_id,
                        &entry.message_tag,
                        &entry.body,
                        &entry.route,
                        &journal.key,
                        &journal.token,
                    ],
                )
                .await
                .map_err(|err| StoreError::new("writing the dead letter", err))?;
            Ok(row.get(0))
        })
    }

    fn dead_letters(&self, id: Option<i64>) -> BoxFuture<'_, Result<Vec<DeadLetter>, StoreError>> {
        Box::pin(async move {
            let session = self.fast.get().await?;
            let sql =
                format!("{SELECT_DEAD_LETTERS} WHERE $1::BIGINT IS NULL OR id = $1 ORDER BY id");
            let rows = session
                .client
                .query(&sql, &[&id])
                .await
                .map_err(|err| StoreError::new("reading the journal", err))?;
            rows.iter()
                .map(|row| {
                    let id: i64 = row.try_get(0).map_err(unread)?;
                    let entry = format_args!("dead letter {id}");
                    Ok(DeadLetter {
                        id,
                        message_id: row.try_get(1).map_err(unread)?,
                        reason: row.try_get(2).map_err(unread)?,
                        attempts: stored(entry, attempts(row.try_get(3).map_err(unread)?))?,
                        format: stored(entry, parse_format(row.try_get(4).map_err(unread)?))?,
                        request_id: row.try_get(5).map_err(unread)?,
                        message_tag: row.try_get(6).map_err(unread)?,
                        body: row.try_get(7).map_err(unread)?,
                        created: time_of(row.try_get(8).map_err(unread)?),
                        route: row.try_get(9).map_err(unread)?,
                    })
                })
                .collect()
        })
    }

    fn journal_page(
        &self,
        query: JournalQuery,
    ) -> BoxFuture<'_, Result<(Vec<ListedDeadLetter>, u64), StoreError>> {
        Box::pin(async move {
            let session = self.fast.get().await?;
            let reason = query.reason_pattern();
            let since = query.since_ms();
            let limit = i64::from(query.limit);
            let offset = i64::try_from(query.offset).unwrap_or(i64::MAX);
            let failed = |err| StoreError::new("reading the journal", err);
            let matching: i64 = session
                .client
                .query_one(COUNT_JOURNAL_PAGE, &[&query.route, &reason, &since])
                .await
                .map_err(failed)?
                .get(0);
            let rows = session
                .client
                .query(
                    SELECT_JOURNAL_PAGE,
                    &[&query.route, &reason, &since, &limit, &offset],
                )
                .await
                .map_err(failed)?;
            let entries = rows
                .iter()
                .map(|row| {
                    let id: i64 = row.try_get(0).map_err(unread)?;
                    Ok(ListedDeadLetter {
                        id,
                        message_id: row.try_get(1).map_err(unread)?,
                        reason: row.try_get(2).map_err(unread)?,
                        attempts: stored(
                            format_args!("dead letter {id}"),
                            attempts(row.try_get(3).map_err(unread)?),
                        )?,
                        created: time_of(row.try_get(4).map_err(unread)?),
                        route: row.try_get(5).map_err(unread)?,
                    })
                })
                .collect::<Result<_, StoreError>>()?;
            Ok((entries, u64::try_from(matching).unwrap_or(0)))
        })
    }

    fn dead_letter_counts(&self) -> BoxFuture<'_, Result<Vec<RouteCount>, StoreError>> {
        Box::pin(async move {
            let session = self.fast.get().await?;
            let rows = session
                .client
                .query(COUNT_DEAD_LETTERS, &[])
                .await
                .map_err(|err| StoreError::new("counting the journal", err))?;
            Ok(rows
                .iter()
                .map(|row| RouteCount {
                    route: row.get(0),
                    entries: u64::try_from(row.get::<_, i64>(1)).unwrap_or_default(),
                })
                .collect())
        })
    }

    fn remove_dead_letters(&self, ids: Option<Vec<i64>>) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let session = self.durable.get().await?;
            let removed = match ids {
                None => {
                    session
                        .client
                        .execute("DELETE FROM cmq_dead_letters", &[])
                        .await
                }
                Some(ids) => {
                    session
                        .client
                        .execute("DELETE FROM cmq_dead_letters WHERE id = ANY($1)", &[&ids])
                        .await
                }
            };
            removed.map_err(|err| StoreError::new("removing dead letters", err))
        })
    }

    fn record(
        &self,
        message_id: String,
    ) -> BoxFuture<'_, Result<Option<MessageRecord>, StoreError>> {
        Box::pin(async move {
            let session = self.fast.get().await?;
            let row = session
                .client
                .query_opt(&session.record, &[&message_id])
                .await
                .map_err(|err| StoreError::new("reading a message record", err))?;
            row.map(|row| {
                Ok(MessageRecord {
                    attempts: stored(
                        format_args!("message {message_id}"),
                        attempts(row.try_get(0).map_err(unread)?),
                    )?,
                    state: row.try_get(1).map_err(unread)?,
                    last_decision: row.try_get(2).map_err(unread)?,
                    updated: time_of(row.try_get(3).map_err(unread)?),
                })
            })
            .transpose()
        })
    }

    /// Over the journal's connection: the claims' connection runs its statements one
    /// after the other, and a prune would hold up the claims behind it.
    fn prune(
        &self,
        statement: &'static str,
        before: i64,
        limit: i64,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let session = self.durable.get().await?;
            session
                .client
                .execute(statement, &[&before, &limit])
                .await
                .map_err(|err| StoreError::new("pruning", err))
        })
    }

    fn timed_out(&self) {
        self.forget_connections();
    }
}

impl Session {
    /// The open connection, or a new one when there is none or it broke.
    async fn get(&self) -> Result<Arc<Prepared>, StoreError> {
        let mut open = self.open.lock().await;
        if let Some(prepared) = open.as_ref()
            && !prepared.client.is_closed()
        {
            return Ok(prepared.clone());
        }
        let prepared = Arc::new(self.connect().await?);
        *open = Some(prepared.clone());
        Ok(prepared)
    }

    async fn connect(&self) -> Result<Prepared, StoreError> {
        let client = connect(&self.config).await?;
        if self.synced {
            let row = client
                .query_one("SHOW synchronous_commit", &[])
                .await
                .map_err(|err| StoreError::new("reading synchronous_commit", err))?;
            let setting: String = row.get(0);
            if setting == "off" {
                return Err(StoreError(
                    "the journal's connection has synchronous_commit=off (a pooler between \
                     the host and PostgreSQL may drop the options the host sets): journal \
                     writes, the receipt of every 2xx for a dead letter, would not be synced"
                        .into(),
                ));
            }
        }
        let prepare = |sql: String| {
            let client = &client;
            async move {
                client
                    .prepare(&sql)
                    .await
                    .map_err(|err| StoreError::new("preparing statements", err))
            }
        };
        Ok(Prepared {
            claim: prepare(claim_sql()).await?,
            count_uncounted: prepare(count_uncounted_sql()).await?,
            settle: prepare(on_database_clock(SETTLE, 4)).await?,
            journal: prepare(on_database_clock(
                &format!(
                    "WITH entry AS ({INSERT_DEAD_LETTER}), marked AS ({MARK_JOURNALED}) \
                     SELECT id FROM entry"
                ),
                8,
            ))
            .await?,
            record: prepare(SELECT_RECORD.to_owned()).await?,
            client,
        })
    }
}

/// The database's clock as the statement starts, in Unix milliseconds.
const NOW: &str = "(extract(epoch from statement_timestamp()) * 1000)::bigint";

/// The claim statement with the times read from the database's clock, so that hosts
/// whose clocks differ still agree on leases, guarded by the claim's token (see
/// [`CLAIM_GUARD`]), and the deliveries noted under the push key taken in the same
/// statement: `$1` key, `$2` the claim's token, `$3` the lease in milliseconds, `$4`
/// the dedupe window in milliseconds (NULL: none), `$5` the push key, `$6` deliveries
/// to add that the database does not hold. One row: whether the guard was written
/// (0: the claim was given up on, it does nothing), then the claim's count and holder
/// (NULL for a duplicate).
fn claim_sql() -> String {
    const VALUES: &str = "VALUES ($1, 1 + $6, 'running', $5, $3, $2)";
    debug_assert!(CLAIM.contains(VALUES));
    let guarded = CLAIM.replace(
        VALUES,
        "SELECT $1, 1 + $6, 'running', $5, $3, $2 WHERE EXISTS (SELECT 1 FROM guard)",
    );
    let claim = renumbered(&guarded, |n| match n {
        2 => NOW.to_owned(),
        3 => format!("({NOW} + $3)"),
        4 => format!("COALESCE({NOW} - $4, 9223372036854775807)"),
        5 => "$2".to_owned(),
        6 => "($6 + (SELECT COALESCE(sum(deliveries), 0)::bigint FROM taken) \
              + (SELECT COALESCE(sum(deliveries), 0)::bigint FROM taken_before))"
            .to_owned(),
        n => format!("${n}"),
    });
    let guard = renumbered(&format!("{CLAIM_GUARD} RETURNING 1"), |n| match n {
        1 => "$2".to_owned(),
        2 => "$5".to_owned(),
        _ => NOW.to_owned(),
    });
    let only_if_guarded = " AND EXISTS (SELECT 1 FROM guard)";
    let take = renumbered(TAKE_NOTES, |n| match n {
        1 => "$5".to_owned(),
        _ => NOW.to_owned(),
    })
    .replace("AND taken = 0", &format!("AND taken = 0{only_if_guarded}"));
    let take_before = renumbered(TAKE_UNCOUNTED, |_| "$5".to_owned())
        .replace(" RETURNING", &format!("{only_if_guarded} RETURNING"));
    format!(
        "WITH guard AS ({guard}), taken AS ({take}), taken_before AS ({take_before}), \
         claimed AS ({claim}) \
         SELECT (SELECT count(*) FROM guard), claimed.attempts, claimed.claim \
         FROM (SELECT 1) AS one LEFT JOIN claimed ON true"
    )
}

/// Every note at once, in one statement: `$1` their ids, `$2` their push keys, `$3`
/// their deliveries ([`NOTE`]); and the claims given up on released ([`RELEASE_ABANDONED`]):
/// `$4` their messages' keys, `$5` their tokens.
fn count_uncounted_sql() -> String {
    const ONE: &str = "VALUES ($1, $2, $3, 0, $4)";
    const ALL: &str = "SELECT id, key, count, 0, $4 \
        FROM unnest($1::bigint[], $2::text[], $3::bigint[]) AS t(id, key, count)";
    debug_assert!(NOTE.contains(ONE));
    let noted = renumbered(&NOTE.replace(ONE, ALL), |n| match n {
        4 => NOW.to_owned(),
        n => format!("${n}"),
    });
    const WHERE: &str = "WHERE message_id = $1 AND claim = $2 AND state = 'running'";
    debug_assert!(RELEASE_ABANDONED.contains(WHERE));
    let released = RELEASE_ABANDONED
        .replace(
            WHERE,
            "FROM unnest($1::text[], $2::bigint[]) AS r(key, token) \
             WHERE message_id = r.key AND claim = r.token AND state = 'running'",
        )
        .replace("$3", NOW)
        .replace("$1", "$4")
        .replace("$2", "$5");
    format!(
        "WITH noted AS ({noted} RETURNING 1), released AS ({released} RETURNING 1) \
         SELECT (SELECT count(*) FROM noted), (SELECT count(*) FROM released)"
    )
}

/// `sql` with its parameter `$now` read from the database's clock instead, and the
/// parameters after it numbered one lower.
fn on_database_clock(sql: &str, now: usize) -> String {
    renumbered(sql, |n| match n {
        n if n == now => NOW.to_owned(),
        n if n > now => format!("${}", n - 1),
        n => format!("${n}"),
    })
}

/// `sql` with every parameter `$n` replaced by `replace(n)`.
fn renumbered(sql: &str, replace: impl Fn(usize) -> String) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        match after[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&replace(n)),
            Err(_) => out.push('$'),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// A new connection, driven by its own task until it closes.
async fn connect(config: &Config) -> Result<Client, StoreError> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|err| StoreError::new("connecting to PostgreSQL", err))?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::warn!("PostgreSQL connection closed: {err}");
        }
    });
    Ok(client)
}

/// A column of a row that is not of the type the store wrote.
fn unread(err: tokio_postgres::Error) -> StoreError {
    StoreError::new("reading a row", err)
}

/// A stored value's check (`checked`), as the error of the row `row` names.
fn stored<T>(row: std::fmt::Arguments<'_>, checked: Result<T, String>) -> Result<T, StoreError> {
    checked.map_err(|what| StoreError(unreadable(row, &what)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_renumbered_past_the_one_the_database_clock_replaces() {
        assert_eq!(
            on_database_clock("a = $1, b = $2, c = $10, d = $3, e = $", 2),
            format!("a = $1, b = {NOW}, c = $9, d = $2, e = $")
        );
        let claim = claim_sql();
        for n in 1..=6 {
            assert!(claim.contains(&format!("${n}")), "${n} unused in {claim}");
        }
        assert!(!claim.contains("$7"));
        assert!(count_uncounted_sql().contains("unnest"));
    }
}
