//! The embedded store: one SQLite file, written by one connection.
//!
//! Every write is queued for the writer ([`writer`]), a task that takes all that are
//! waiting, runs them in one transaction and commits once (group commit). The database is in
//! WAL mode with `synchronous=NORMAL`, so a commit survives the process being killed
//! but is synced to disk only at checkpoints; a batch holding a dead-letter write is
//! committed with `synchronous=FULL`, synced before any of its callers hear back.
//!
//! The write-ahead log is kept bounded by [`wal`].

mod counting;
mod lost_claims;
mod wal;
mod writer;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::types::Type;
use rusqlite::{Connection, OpenFlags, OptionalExtension as _, params};
use tokio::sync::{mpsc, oneshot};

use super::backend::{Backend, BoxFuture};
use super::request::{
    ClaimRequest, Journal, Settle, attempts, now_ms, parse_format, time_of, unreadable,
};
use super::sql::{
    ADD_ROUTE_COLUMN, COUNT_DEAD_LETTERS, COUNT_JOURNAL_PAGE, HAS_ROUTE_COLUMN, INSERT_DEAD_LETTER,
    MARK_JOURNALED, MARK_REPLAYED, PRUNE_NOTES, PRUNE_UNCOUNTED, SCHEMA, SELECT_DEAD_LETTERS,
    SELECT_JOURNAL_PAGE, SELECT_RECORD, SETTLE,
};
use super::uncounted::Note;
use super::{
    Claim, DeadLetter, JournalQuery, ListedDeadLetter, MessageRecord, RouteCount, StoreError,
};

/// The database's page size for a new file (see [`open_connection`]); a file made by
/// an older cmq-host may have 4 KiB pages.
const PAGE_SIZE: i64 = 1024;

use counting::{Counting, Untaken};
use lost_claims::{LostClaim, LostClaims, Waiting, Watch, hand_over};
pub use wal::WAL_LIMIT;
use wal::{Log, note_wal_frames};
use writer::{Job, Writer, in_savepoint};

/// Statements kept prepared per connection: more than the store has.
const STATEMENT_CACHE: usize = 32;

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
        Box::pin(async move {
            self.read(move |conn| {
                let sql = format!("{SELECT_DEAD_LETTERS} WHERE ?1 IS NULL OR id = ?1 ORDER BY id");
                let mut statement = conn.prepare_cached(&sql)?;
                let rows = statement.query_map(params![id], |row| {
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
                })?;
                rows.collect()
            })
            .await
        })
    }

    fn journal_page(
        &self,
        query: JournalQuery,
    ) -> BoxFuture<'_, Result<(Vec<ListedDeadLetter>, u64), StoreError>> {
        Box::pin(async move {
            self.read(move |conn| {
                let (route, reason, since) =
                    (&query.route, query.reason_pattern(), query.since_ms());
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
            })
            .await
        })
    }

    fn dead_letter_counts(&self) -> BoxFuture<'_, Result<Vec<RouteCount>, StoreError>> {
        Box::pin(async move {
            self.read(|conn| {
                let mut statement = conn.prepare_cached(COUNT_DEAD_LETTERS)?;
                let rows = statement.query_map([], |row| {
                    Ok(RouteCount {
                        route: row.get(0)?,
                        entries: u64::try_from(row.get::<_, i64>(1)?).unwrap_or_default(),
                    })
                })?;
                rows.collect()
            })
            .await
        })
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
        Box::pin(async move { self.read(move |conn| read_record(conn, &message_id)).await })
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

fn read_record(conn: &Connection, message_id: &str) -> rusqlite::Result<Option<MessageRecord>> {
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

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let context = |what: &str| format!("{what} {}", path.display());
    create_private(path).map_err(|err| StoreError::new(&context("creating"), err))?;
    let conn = Connection::open(path).map_err(|err| StoreError::new(&context("opening"), err))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        // Rows are small and every commit writes whole pages to the WAL: 1 KiB pages
        // write a quarter of the bytes of the default 4 KiB. (Takes effect when the
        // file is created.)
        .and_then(|()| conn.pragma_update(None, "page_size", PAGE_SIZE))
        .and_then(|()| conn.pragma_update(None, "journal_mode", "WAL"))
        .and_then(|()| conn.pragma_update(None, "synchronous", "NORMAL"))
        // No checkpoints by the writer after its commits (see [`Log`]).
        .and_then(|()| conn.pragma_update(None, "wal_autocheckpoint", 0))
        // When the log starts again, its file is cut back to this.
        .and_then(|()| conn.pragma_update(None, "journal_size_limit", WAL_LIMIT as i64))
        .and_then(|()| {
            conn.execute_batch(
                &SCHEMA
                    .replace("{id}", "INTEGER PRIMARY KEY AUTOINCREMENT")
                    .replace("{int}", "INTEGER")
                    .replace("{bytes}", "BLOB"),
            )
        })
        .and_then(|()| {
            let has_route: i64 = conn.query_row(HAS_ROUTE_COLUMN, [], |row| row.get(0))?;
            if has_route == 0 {
                conn.execute_batch(ADD_ROUTE_COLUMN)?;
            }
            Ok(())
        })
        .map_err(|err| StoreError::new(&context("preparing"), err))?;
    // Every statement the writer runs stays prepared (rusqlite keeps 16 by default).
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // After `wal_autocheckpoint`, which sets a hook of its own.
    conn.wal_hook(Some(note_wal_frames));
    Ok(conn)
}

/// Creates the database file when it does not exist, readable and writable by its
/// owner only: it holds message bodies. SQLite gives the log and its index the
/// database file's permissions.
#[cfg(unix)]
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(err),
        Ok(_) => Ok(()),
    }
}

#[cfg(not(unix))]
fn create_private(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

/// The shared statements number parameters PostgreSQL's way, `$1`; SQLite's `?1` binds
/// by the same numbers.
fn numbered(sql: &str) -> String {
    sql.replace('$', "?")
}
