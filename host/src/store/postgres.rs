//! The shared store: PostgreSQL, for several hosts behind one load balancer.
//!
//! Claims are `INSERT ... ON CONFLICT DO UPDATE ... WHERE` statements, so two hosts
//! given the same push at once serialize on the message's row and only one runs the
//! guest. The claims that arrive while one statement is at the server go together in
//! the next one, and so do the settlements ([`grouped`]): under load the server does
//! one statement's work for many messages. Claims over one connection, settlements over
//! another, both with `synchronous_commit=off` (committed and visible at once, synced
//! by the server a moment later), dead-letter writes over a third with the server's
//! default, synced before the commit returns, and the console's and the CLI's reads
//! over a fourth, opened on the first read. A connection that breaks is reopened by
//! the next call.
//! Claims, settlements and journal writes read the time from the database's clock, so
//! that leases and dedupe windows hold across hosts whose clocks differ.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_postgres::Config;

use super::backend::{Backend, BoxFuture};
use super::request::{ClaimRequest, Journal, Settle};
use super::sql::MARK_REPLAYED;
use super::uncounted::Note;
use super::{
    Claim, DeadLetter, JournalQuery, ListedDeadLetter, MessageRecord, RouteCount, StoreError,
};

/// How long connecting may take; the store's per-operation timeout bounds the rest.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Idle time before TCP keepalives probe a connection, so a dead server is noticed.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub(super) struct PostgresStore {
    /// Claims, and the record of a claim's duplicate.
    fast: Arc<Session>,
    /// The claims, run in groups over `fast`.
    claims: Arc<Grouped<Claiming, ClaimRow>>,
    /// The settlements, run in groups over `settling`.
    settlements: Arc<Grouped<Settle, ()>>,
    /// Settlements, beside the claims: each connection is one process on the server,
    /// and this way a claim's group and a settlement's run at once.
    settling: Arc<Session>,
    /// The journal's pages and the records the console and the CLI read, with the
    /// server's planning: opened on the first such read.
    reading: Arc<Session>,
    /// Dead-letter writes and removals.
    durable: Arc<Session>,
}

mod grouped;
mod reads;
mod schema;
mod session;
mod statements;
mod writes;

use grouped::Grouped;
use session::{Session, connect};
use statements::on_database_clock;
use writes::{ClaimRow, Claiming};

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
        let reading = Arc::new(Session {
            config: config.clone(),
            synced: false,
            open: Mutex::new(None),
        });
        // For the claims and settlements only (the journal's pages, read over
        // `reading`, are planned for their filters each time, and may scan the table):
        // one plan for each statement, made once: a grouped statement's arrays change
        // length every time, and planning it anew cost the server more than running
        // it. Index lookups whatever the tables' sizes: a plan made while a table was
        // a page long (a new store) would otherwise scan the whole table for every
        // group long after it has grown.
        config.options(
            "-c client_min_messages=warning -c synchronous_commit=off \
             -c enable_seqscan=off -c plan_cache_mode=force_generic_plan",
        );
        let fast = Session {
            config: config.clone(),
            synced: false,
            open: Mutex::new(None),
        };
        let settling = Arc::new(Session {
            config,
            synced: false,
            open: Mutex::new(None),
        });
        // The statements are prepared on first use, once the tables exist.
        schema::make(&mut connect(&durable.config).await?).await?;
        let fast = Arc::new(fast);
        Ok(PostgresStore {
            claims: Arc::new(writes::claims(fast.clone())),
            settlements: Arc::new(writes::settlements(settling.clone())),
            settling,
            fast,
            reading,
            durable: Arc::new(durable),
        })
    }

    /// Leaves every connection, and whatever waits on them, to be opened anew by the
    /// next call (after an operation that did not answer in time). A connection being
    /// opened right now is left to be.
    pub(super) fn forget_connections(&self) {
        for session in [&self.fast, &self.settling, &self.reading, &self.durable] {
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
            let (guarded, attempts, holder) = self.claims.run(Claiming::of(&request)).await?;
            if !guarded {
                return Err(StoreError(
                    "the claim was given up on, and its delivery noted".into(),
                ));
            }
            let row = attempts.map(|attempts| (attempts, holder));
            let settled = match &row {
                Some(_) => None,
                None => {
                    let session = self.fast.get().await?;
                    session
                        .client
                        .query_opt(&session.record, &[&request.key])
                        .await
                        .map_err(|err| StoreError::new("reading a duplicate's record", err))?
                        .map(|record| (record.get(1), record.get(2)))
                }
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
        Box::pin(self.settlements.run(settle))
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
        Box::pin(async move { reads::dead_letters(&self.reading.get().await?.client, id).await })
    }

    fn journal_page(
        &self,
        query: JournalQuery,
    ) -> BoxFuture<'_, Result<(Vec<ListedDeadLetter>, u64), StoreError>> {
        Box::pin(async move { reads::journal_page(&self.reading.get().await?.client, query).await })
    }

    fn journal_after(
        &self,
        query: JournalQuery,
        after: i64,
    ) -> BoxFuture<'_, Result<Vec<DeadLetter>, StoreError>> {
        Box::pin(async move {
            reads::journal_after(&self.reading.get().await?.client, query, after).await
        })
    }

    fn dead_letter_counts(&self) -> BoxFuture<'_, Result<Vec<RouteCount>, StoreError>> {
        Box::pin(async move { reads::dead_letter_counts(&self.reading.get().await?.client).await })
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
            let session = self.reading.get().await?;
            reads::record(&session.client, &session.record, &message_id).await
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
