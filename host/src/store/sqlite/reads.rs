//! The SQLite store's reads, on its reading connection: the journal, a page of it
//! (newest first, or oldest first after an id), its counts by route, a message's
//! record.

use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension as _, params};

use super::super::request::{attempts, parse_format, time_of, unreadable};
use super::super::sql::{
    COUNT_DEAD_LETTERS, COUNT_JOURNAL_PAGE, SELECT_DEAD_LETTERS, SELECT_JOURNAL_AFTER,
    SELECT_JOURNAL_PAGE, SELECT_RECORD,
};
use super::super::{DeadLetter, JournalQuery, ListedDeadLetter, MessageRecord, RouteCount};
use super::numbered;

/// The journal's entries, oldest first: all of them, or the one `id` names.
pub(super) fn dead_letters(
    conn: &Connection,
    id: Option<i64>,
) -> rusqlite::Result<Vec<DeadLetter>> {
    let sql = format!("{SELECT_DEAD_LETTERS} WHERE ?1 IS NULL OR id = ?1 ORDER BY id");
    let mut statement = conn.prepare_cached(&sql)?;
    let rows = statement.query_map(params![id], dead_letter)?;
    rows.collect()
}

/// The entries `query` picks after the id `after`, oldest first, bodies included.
pub(super) fn journal_after(
    conn: &Connection,
    query: &JournalQuery,
    after: i64,
) -> rusqlite::Result<Vec<DeadLetter>> {
    let mut statement = conn.prepare_cached(&numbered(SELECT_JOURNAL_AFTER))?;
    let rows = statement.query_map(
        params![
            query.route,
            query.reason_pattern(),
            query.since_ms(),
            after,
            i64::from(query.limit),
        ],
        dead_letter,
    )?;
    rows.collect()
}

/// A row of [`SELECT_DEAD_LETTERS`]' columns as an entry.
fn dead_letter(row: &rusqlite::Row<'_>) -> rusqlite::Result<DeadLetter> {
    let id: i64 = row.get(0)?;
    let entry = format_args!("dead letter {id}");
    Ok(DeadLetter {
        id,
        message_id: row.get(1)?,
        reason: row.get(2)?,
        attempts: stored((3, Type::Integer), entry, attempts(row.get(3)?))?,
        format: stored(
            (4, Type::Text),
            entry,
            parse_format(&row.get::<_, String>(4)?),
        )?,
        request_id: row.get(5)?,
        message_tag: row.get(6)?,
        body: row.get(7)?,
        created: time_of(row.get(8)?),
        route: row.get(9)?,
    })
}

/// A page of the journal, newest first, and how many entries `query` matches.
pub(super) fn journal_page(
    conn: &Connection,
    query: &JournalQuery,
) -> rusqlite::Result<(Vec<ListedDeadLetter>, u64)> {
    let (route, reason, since) = (&query.route, query.reason_pattern(), query.since_ms());
    let matching: i64 = conn
        .prepare_cached(&numbered(COUNT_JOURNAL_PAGE))?
        .query_row(params![route, reason, since], |row| row.get(0))?;
    let mut statement = conn.prepare_cached(&numbered(SELECT_JOURNAL_PAGE))?;
    let rows = statement.query_map(
        params![
            route,
            reason,
            since,
            i64::from(query.limit),
            i64::try_from(query.offset).unwrap_or(i64::MAX),
        ],
        |row| {
            let id: i64 = row.get(0)?;
            Ok(ListedDeadLetter {
                id,
                message_id: row.get(1)?,
                reason: row.get(2)?,
                attempts: stored(
                    (3, Type::Integer),
                    format_args!("dead letter {id}"),
                    attempts(row.get(3)?),
                )?,
                created: time_of(row.get(4)?),
                route: row.get(5)?,
            })
        },
    )?;
    let entries = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((entries, u64::try_from(matching).unwrap_or(0)))
}

/// The journal's entries counted by route.
pub(super) fn dead_letter_counts(conn: &Connection) -> rusqlite::Result<Vec<RouteCount>> {
    let mut statement = conn.prepare_cached(COUNT_DEAD_LETTERS)?;
    let rows = statement.query_map([], |row| {
        Ok(RouteCount {
            route: row.get(0)?,
            entries: u64::try_from(row.get::<_, i64>(1)?).unwrap_or_default(),
        })
    })?;
    rows.collect()
}

/// The record of the message `message_id` keys, if there is one.
pub(super) fn record(
    conn: &Connection,
    message_id: &str,
) -> rusqlite::Result<Option<MessageRecord>> {
    conn.prepare_cached(&numbered(SELECT_RECORD))?
        .query_row([message_id], |row| {
            Ok(MessageRecord {
                attempts: stored(
                    (0, Type::Integer),
                    format_args!("message {message_id}"),
                    attempts(row.get(0)?),
                )?,
                state: row.get(1)?,
                last_decision: row.get(2)?,
                updated: time_of(row.get(3)?),
            })
        })
        .optional()
}

/// A stored value's check (`checked`) as the error of `column` (its index and type)
/// of the row `row` names.
fn stored<T>(
    (column, of): (usize, Type),
    row: std::fmt::Arguments<'_>,
    checked: Result<T, String>,
) -> rusqlite::Result<T> {
    checked.map_err(|what| {
        rusqlite::Error::FromSqlConversionFailure(column, of, unreadable(row, &what).into())
    })
}
