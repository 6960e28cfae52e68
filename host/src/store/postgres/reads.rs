//! The PostgreSQL store's reads: the journal, a page of it (newest first, or oldest
//! first after an id), its counts by route, a message's record. A value the store could not have written is an error naming its
//! row, never a default.

use tokio_postgres::{Client, Statement};

use super::super::request::{attempts, parse_format, time_of, unreadable};
use super::super::sql::{
    COUNT_DEAD_LETTERS, COUNT_JOURNAL_PAGE, SELECT_DEAD_LETTERS, SELECT_JOURNAL_AFTER,
    SELECT_JOURNAL_PAGE,
};
use super::super::{
    DeadLetter, JournalQuery, ListedDeadLetter, MessageRecord, RouteCount, StoreError,
};

/// The journal's entries, oldest first: all of them, or the one `id` names.
pub(super) async fn dead_letters(
    client: &Client,
    id: Option<i64>,
) -> Result<Vec<DeadLetter>, StoreError> {
    let sql = format!("{SELECT_DEAD_LETTERS} WHERE $1::BIGINT IS NULL OR id = $1 ORDER BY id");
    let rows = client
        .query(&sql, &[&id])
        .await
        .map_err(|err| StoreError::new("reading the journal", err))?;
    rows.iter().map(dead_letter).collect()
}

/// The entries `query` picks after the id `after`, oldest first, bodies included.
pub(super) async fn journal_after(
    client: &Client,
    query: JournalQuery,
    after: i64,
) -> Result<Vec<DeadLetter>, StoreError> {
    let reason = query.reason_pattern();
    let since = query.since_ms();
    let limit = i64::from(query.limit);
    let rows = client
        .query(
            SELECT_JOURNAL_AFTER,
            &[&query.route, &reason, &since, &after, &limit],
        )
        .await
        .map_err(|err| StoreError::new("reading the journal", err))?;
    rows.iter().map(dead_letter).collect()
}

/// A row of [`SELECT_DEAD_LETTERS`]' columns as an entry.
fn dead_letter(row: &tokio_postgres::Row) -> Result<DeadLetter, StoreError> {
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
}

/// One page of the journal as `query` asks, newest first, and how many entries match.
pub(super) async fn journal_page(
    client: &Client,
    query: JournalQuery,
) -> Result<(Vec<ListedDeadLetter>, u64), StoreError> {
    let reason = query.reason_pattern();
    let since = query.since_ms();
    let limit = i64::from(query.limit);
    let offset = i64::try_from(query.offset).unwrap_or(i64::MAX);
    let failed = |err| StoreError::new("reading the journal", err);
    let matching: i64 = client
        .query_one(COUNT_JOURNAL_PAGE, &[&query.route, &reason, &since])
        .await
        .map_err(failed)?
        .get(0);
    let rows = client
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
}

/// The journal's entries per route.
pub(super) async fn dead_letter_counts(client: &Client) -> Result<Vec<RouteCount>, StoreError> {
    let rows = client
        .query(COUNT_DEAD_LETTERS, &[])
        .await
        .map_err(|err| StoreError::new("counting the journal", err))?;
    rows.iter()
        .map(|row| {
            let entries: i64 = row.try_get(1).map_err(unread)?;
            Ok(RouteCount {
                route: row.try_get(0).map_err(unread)?,
                entries: u64::try_from(entries).unwrap_or_default(),
            })
        })
        .collect()
}

/// What the store holds of `message_id`, read with the prepared `statement`.
pub(super) async fn record(
    client: &Client,
    statement: &Statement,
    message_id: &str,
) -> Result<Option<MessageRecord>, StoreError> {
    let row = client
        .query_opt(statement, &[&message_id])
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
}

/// A column of a row that is not of the type the store wrote.
fn unread(err: tokio_postgres::Error) -> StoreError {
    StoreError::new("reading a row", err)
}

/// A stored value's check (`checked`), as the error of the row `row` names.
fn stored<T>(row: std::fmt::Arguments<'_>, checked: Result<T, String>) -> Result<T, StoreError> {
    checked.map_err(|what| StoreError(unreadable(row, &what)))
}
