//! The embedded store: one SQLite file, written by one connection.
//!
//! Every write is queued for the writer ([`writer`]), a task that takes all that are
//! waiting, runs them in one transaction and commits once (group commit). The database is in
//! WAL mode with `synchronous=NORMAL`, so a commit survives the process being killed
//! but is synced to disk only at checkpoints; a batch holding a dead-letter write is
//! committed with `synchronous=FULL`, synced before any of its callers hear back.
//!
//! The write-ahead log is kept bounded by [`wal`]. Beside them: [`open`] (the file and
//! its schema), [`counting`] (the claim and the notes), [`lost_claims`] (claims that
//! committed after their push gave up) and [`reads`] (the reading connection's
//! queries).

mod counting;
mod lost_claims;
mod open;
mod reads;
mod wal;
mod writer;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, params};
use tokio::sync::{mpsc, oneshot};

use super::backend::{Backend, BoxFuture};
use super::request::{ClaimRequest, Journal, Settle, now_ms};
use super::sql::{
    INSERT_DEAD_LETTER, MARK_JOURNALED, MARK_REPLAYED, PRUNE_NOTES, PRUNE_UNCOUNTED, SETTLE,
};
use super::uncounted::Note;
use super::{
    Claim, DeadLetter, JournalQuery, ListedDeadLetter, MessageRecord, RouteCount, StoreError,
};

use counting::{Counting, Untaken};
use lost_claims::{LostClaim, LostClaims, Waiting, Watch, hand_over};
use open::{PAGE_SIZE, open_connection};
use wal::Log;
pub use wal::WAL_LIMIT;
use writer::{Job, Writer, in_savepoint};

/// How long a reader waits for a lock another process holds (the CLI, say).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A handle to the writer; cloning shares it.
#[derive(Clone)]
pub(super) struct SqliteStore {
    jobs: mpsc::UnboundedSender<Job>,
    /// Reads (the journal, a record) go over a connection of their own, outside the
    /// writer's transactions: listing the journal takes no write lock, and holds up
    /// no push.
    reader: Arc<Mutex<Connection>>,
    /// Claims that committed after their push gave up, to guard before the next notes.
    lost: Arc<LostClaims>,
    /// Whether claims must look for deliveries noted in the database.
    untaken: Arc<Untaken>,
}

impl SqliteStore {
    pub(super) async fn open(path: &Path) -> Result<Self, StoreError> {
        let reader_path = path.to_owned();
        let path = path.to_owned();
        let opened = tokio::task::spawn_blocking(move || {
            let conn = open_connection(&path)?;
            // A log an older cmq-host left (it grew without bound) is copied now,
            // before any push waits on it; PASSIVE blocks no other process.
            if let Err(err) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!("store checkpoint failed: {err}");
            }
            let page_size = conn
                .pragma_query_value(None, "page_size", |row| row.get(0))
                .unwrap_or(PAGE_SIZE);
            // Checkpoints run on a thread of their own; they stop when the writer
            // ends, which drops its `Log` and with it the nudges.
            let untaken = Untaken::read(&conn)
                .map_err(|err| StoreError::new("reading the store's notes", err))?;
            let (log, checkpoints) = Log::new(page_size);
            std::thread::Builder::new()
                .name("cmq-store-checkpoint".into())
                .spawn(move || checkpoints.run(&path))
                .map_err(|err| StoreError::new("starting checkpoints", err))?;
            Ok::<_, StoreError>((Writer::new(conn, log), untaken))
        })
        .await
        .map_err(|err| StoreError::new("opening the store", err))??;
        let (opened, untaken) = opened;
        let (jobs, queue) = mpsc::unbounded_channel::<Job>();
        tokio::spawn(opened.run(queue));
        let reader = Connection::open_with_flags(
            &reader_path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .and_then(|conn| conn.busy_timeout(BUSY_TIMEOUT).map(|()| conn))
        .map_err(|err| StoreError::new("opening the store for reading", err))?;
        Ok(SqliteStore {
            jobs,
            reader: Arc::new(Mutex::new(reader)),
            lost: Arc::default(),
            untaken: Arc::new(untaken),
        })
    }

    /// Runs `op` on the reading connection, on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            op(&conn)
        })
        .await
        .map_err(|err| StoreError::new("sqlite read", err))?
        .map_err(|err| StoreError::new("sqlite", err))
    }

    /// Runs `op` in the writer's next transaction and returns its result once that
    /// transaction is committed. An `op` of several writes runs them
    /// [`in_savepoint`], so that its failure undoes them all and nothing else of its
    /// batch; one statement fails as a whole by itself.
    async fn run<T: Send + 'static>(
        &self,
        durable: bool,
        bytes: usize,
        op: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.run_watched(durable, bytes, op, None).await
    }

    /// [`SqliteStore::run`], for a claim when `watch` is given: a committed claim
    /// whose result is not taken is kept in [`LostClaims`].
    async fn run_watched<T: Send + 'static>(
        &self,
        durable: bool,
        bytes: usize,
        op: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
        watch: Watch,
    ) -> Result<T, StoreError> {
        let writer_watch = watch.clone();
        let (done, result) = oneshot::channel::<Result<T, StoreError>>();
        let job = Job {
            durable,
            bytes,
            run: Box::new(move |conn| {
                // A caller that gave up (the store's timeout answered its push `store unavailable`) has
                // counted its delivery as not recorded: a late claim would count it twice.
                let outcome = match conn {
                    Some(conn) if !done.is_closed() => Some(op(conn)),
                    _ => None,
                };
                Box::new(move |committed: Result<(), &str>| {
                    let result = match (outcome, committed) {
                        (None, Err(err)) => Err(StoreError::new("sqlite begin", err)),
                        (None, Ok(())) => Err(StoreError("sqlite: not run".into())),
                        (Some(Err(err)), _) => Err(StoreError::new("sqlite", err)),
                        (Some(Ok(_)), Err(err)) => Err(StoreError::new("sqlite commit", err)),
                        (Some(Ok(value)), Ok(())) => Ok(value),
                    };
                    hand_over(done, result, writer_watch);
                })
            }),
        };
        self.jobs
            .send(job)
            .map_err(|_| StoreError("the store's writer stopped".into()))?;
        Waiting::new(result, watch).result().await
    }
}

impl Backend for SqliteStore {
    fn claim(&self, request: ClaimRequest) -> BoxFuture<'_, Result<Claim, StoreError>> {
        Box::pin(async move {
            let watch = LostClaim {
                token: request.token.0,
                push_key: request.push_key.clone(),
            };
            let (lost, untaken) = (self.lost.clone(), self.untaken.clone());
            let (claim, guarded) = self
                .run_watched(
                    false,
                    0,
                    move |conn| {
                        let counting = Counting {
                            lost: &lost,
                            untaken: &untaken,
                        };
                        counting.claim(conn, &request)
                    },
                    Some((watch, self.lost.clone())),
                )
                .await?;
            self.lost.forget(&guarded);
            claim
        })
    }

    fn count_uncounted(&self, notes: Vec<Note>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let (lost, untaken) = (self.lost.clone(), self.untaken.clone());
            let guarded = self
                .run(false, 0, move |conn| {
                    let counting = Counting {
                        lost: &lost,
                        untaken: &untaken,
                    };
                    in_savepoint(conn, |conn| counting.write_notes(conn, &notes, now_ms()))
                })
                .await?;
            self.lost.forget(&guarded);
            Ok(())
        })
    }
    fn settle(&self, settle: Settle) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.run(false, 0, move |conn| {
                conn.prepare_cached(&numbered(SETTLE))?.execute(params![
                    settle.key,
                    settle.state,
                    settle.decision,
                    now_ms(),
                    settle.token
                ])?;
                Ok(())
            })
            .await
        })
    }

    fn mark_replayed(&self, key: String) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            self.run(false, 0, move |conn| {
                let marked = conn
                    .prepare_cached(&numbered(MARK_REPLAYED))?
                    .execute(params![key, now_ms()])?;
                Ok(marked > 0)
            })
            .await
        })
    }

    fn journal(&self, journal: Journal) -> BoxFuture<'_, Result<i64, StoreError>> {
        Box::pin(async move {
            let bytes = journal.entry.body.len() + journal.entry.reason.len();
            self.run(true, bytes, move |conn| {
                in_savepoint(conn, |conn| {
                    let entry = &journal.entry;
                    let values = params![
                        entry.message_id,
                        entry.reason,
                        i64::from(entry.attempts),
                        entry.format.name(),
                        entry.request_id,
                        entry.message_tag,
                        entry.body,
                        now_ms(),
                        entry.route,
                        journal.key,
                        journal.token
                    ];
                    let id: i64 = conn
                        .prepare_cached(&numbered(INSERT_DEAD_LETTER))?
                        .query_row(&values[..9], |row| row.get(0))?;
                    conn.prepare_cached(&numbered(MARK_JOURNALED))?
                        .execute(values)?;
                    Ok(id)
                })
            })
            .await
        })
    }

    fn dead_letters(&self, id: Option<i64>) -> BoxFuture<'_, Result<Vec<DeadLetter>, StoreError>> {
        Box::pin(async move { self.read(move |conn| reads::dead_letters(conn, id)).await })
    }

    fn journal_page(
        &self,
        query: JournalQuery,
    ) -> BoxFuture<'_, Result<(Vec<ListedDeadLetter>, u64), StoreError>> {
        Box::pin(async move {
            self.read(move |conn| reads::journal_page(conn, &query))
                .await
        })
    }

    fn journal_after(
        &self,
        query: JournalQuery,
        after: i64,
    ) -> BoxFuture<'_, Result<Vec<DeadLetter>, StoreError>> {
        Box::pin(async move {
            self.read(move |conn| reads::journal_after(conn, &query, after))
                .await
        })
    }

    fn dead_letter_counts(&self) -> BoxFuture<'_, Result<Vec<RouteCount>, StoreError>> {
        Box::pin(async move { self.read(reads::dead_letter_counts).await })
    }

    fn remove_dead_letters(&self, ids: Option<Vec<i64>>) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            self.run(true, 0, move |conn| {
                in_savepoint(conn, |conn| {
                    let removed = match ids {
                        None => conn.execute("DELETE FROM cmq_dead_letters", [])?,
                        Some(ids) => {
                            let mut statement =
                                conn.prepare_cached("DELETE FROM cmq_dead_letters WHERE id = ?1")?;
                            let mut removed = 0;
                            for id in ids {
                                removed += statement.execute([id])?;
                            }
                            removed
                        }
                    };
                    Ok(removed as u64)
                })
            })
            .await
        })
    }

    fn record(
        &self,
        message_id: String,
    ) -> BoxFuture<'_, Result<Option<MessageRecord>, StoreError>> {
        Box::pin(async move {
            self.read(move |conn| reads::record(conn, &message_id))
                .await
        })
    }

    fn prune(
        &self,
        statement: &'static str,
        before: i64,
        limit: i64,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let untaken = self.untaken.clone();
            let (pruned, look) = self
                .run(false, 0, move |conn| {
                    let pruned = conn
                        .prepare_cached(&numbered(statement))?
                        .execute([before, limit])? as u64;
                    let look = [PRUNE_NOTES, PRUNE_UNCOUNTED]
                        .contains(&statement)
                        .then(|| untaken.look(conn))
                        .transpose()?;
                    Ok((pruned, look))
                })
                .await?;
            if let Some(look) = look {
                self.untaken.committed(look);
            }
            Ok(pruned)
        })
    }
}

/// The shared statements number parameters PostgreSQL's way, `$1`; SQLite's `?1` binds
/// by the same numbers.
fn numbered(sql: &str) -> String {
    sql.replace('$', "?")
}
