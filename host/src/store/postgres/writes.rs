//! The claims and the settlements, each kind run in groups ([`super::grouped`]) over
//! a connection of its own.

use std::sync::Arc;

use super::super::StoreError;
use super::super::request::{ClaimRequest, Settle, millis};
use super::grouped::{Grouped, Run};
use super::session::Session;

/// A claim as its group's statement takes it.
pub(super) struct Claiming {
    key: String,
    push_key: String,
    token: i64,
    lease: i64,
    window: Option<i64>,
    earlier: i64,
}

impl Claiming {
    pub(super) fn of(request: &ClaimRequest) -> Self {
        Claiming {
            key: request.key.clone(),
            push_key: request.push_key.clone(),
            token: request.token.0,
            lease: millis(request.lease),
            window: request.dedupe_window.map(millis),
            earlier: request.earlier,
        }
    }
}

/// A claim's row: whether its guard was written, then its count and holder (none for
/// a duplicate).
pub(super) type ClaimRow = (bool, Option<i64>, Option<i64>);

/// The claims' queue: no two claims of a group share a key or a push key.
pub(super) fn claims(connection: Arc<Session>) -> Grouped<Claiming, ClaimRow> {
    let run: Run<Claiming, ClaimRow> = Arc::new(move |group: Vec<Claiming>| {
        let connection = connection.clone();
        Box::pin(async move { claim_group(&connection, group).await })
    });
    Grouped::start(|claim| [&claim.key, &claim.push_key], run)
}

/// The settlements' queue: no two settlements of a group share a key.
pub(super) fn settlements(connection: Arc<Session>) -> Grouped<Settle, ()> {
    let run: Run<Settle, ()> = Arc::new(move |group: Vec<Settle>| {
        let connection = connection.clone();
        Box::pin(async move { settle_group(&connection, group).await })
    });
    Grouped::start(|settle| [&settle.key, &settle.key], run)
}

async fn claim_group(
    connection: &Session,
    group: Vec<Claiming>,
) -> Result<Vec<ClaimRow>, StoreError> {
    let session = connection.get().await?;
    // One array a column, an element a claim.
    let column = |of: fn(&Claiming) -> i64| group.iter().map(of).collect::<Vec<_>>();
    let (tokens, leases, earlier) = (
        column(|claim| claim.token),
        column(|claim| claim.lease),
        column(|claim| claim.earlier),
    );
    let keys: Vec<&str> = group.iter().map(|claim| claim.key.as_str()).collect();
    let push_keys: Vec<&str> = group.iter().map(|claim| claim.push_key.as_str()).collect();
    let windows: Vec<Option<i64>> = group.iter().map(|claim| claim.window).collect();
    let rows = session
        .client
        .query(
            &session.claim,
            &[&keys, &tokens, &leases, &windows, &push_keys, &earlier],
        )
        .await
        .map_err(|err| StoreError::new("claiming", err))?;
    // Read with `try_get`: a row of unexpected types fails its group, and panics no task.
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(|err| StoreError::new("reading the claims' rows", err))
}

/// The settlements go in the order of their keys, as the claims do, so that a claim's
/// group and a settlement's that share two messages lock them in one order, never each
/// holding what the other waits for.
async fn settle_group(connection: &Session, mut group: Vec<Settle>) -> Result<Vec<()>, StoreError> {
    group.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    let session = connection.get().await?;
    let keys: Vec<&str> = group.iter().map(|settle| settle.key.as_str()).collect();
    let states: Vec<&str> = group.iter().map(|settle| settle.state).collect();
    let decisions: Vec<&str> = group
        .iter()
        .map(|settle| settle.decision.as_str())
        .collect();
    let tokens: Vec<i64> = group.iter().map(|settle| settle.token).collect();
    session
        .client
        .execute(&session.settle, &[&keys, &states, &decisions, &tokens])
        .await
        .map_err(|err| StoreError::new("settling", err))?;
    Ok(vec![(); group.len()])
}
