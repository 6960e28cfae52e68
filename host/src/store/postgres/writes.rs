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
    let count = group.len();
    let (mut keys, mut tokens, mut leases) = (
        Vec::with_capacity(count),
        Vec::with_capacity(count),
        Vec::with_capacity(count),
    );
    let (mut windows, mut push_keys, mut earlier) = (
        Vec::with_capacity(count),
        Vec::with_capacity(count),
        Vec::with_capacity(count),
    );
    for claim in group {
        keys.push(claim.key);
        tokens.push(claim.token);
        leases.push(claim.lease);
        windows.push(claim.window);
        push_keys.push(claim.push_key);
        earlier.push(claim.earlier);
    }
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
    let count = group.len();
    let (mut keys, mut states, mut decisions, mut tokens) = (
        Vec::with_capacity(count),
        Vec::with_capacity(count),
        Vec::with_capacity(count),
        Vec::with_capacity(count),
    );
    for settle in group {
        keys.push(settle.key);
        states.push(settle.state);
        decisions.push(settle.decision);
        tokens.push(settle.token);
    }
    session
        .client
        .execute(&session.settle, &[&keys, &states, &decisions, &tokens])
        .await
        .map_err(|err| StoreError::new("settling", err))?;
    Ok(vec![(); count])
}
