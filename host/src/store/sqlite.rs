//! The embedded store: one SQLite file, written by one thread.
//!
//! Every operation is sent to the writer thread, which takes all that are waiting,
//! runs them in one transaction and commits once (group commit). The database is in
//! WAL mode with `synchronous=NORMAL`, so a commit survives the process being killed
//! but is synced to disk only at checkpoints; a batch holding a dead-letter write is
//! committed with `synchronous=FULL`, synced before any of its callers hear back.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension as _, params};
use tokio::sync::oneshot;

use super::{
    CLAIM, Claim, ClaimRequest, DeadLetter, INSERT_DEAD_LETTER, Journal, MARK_JOURNALED,
    MessageRecord, PRUNE, SCHEMA, SELECT_DEAD_LETTERS, SELECT_RECORD, SETTLE, Settle, StoreError,
    attempts, now_ms, parse_format, time_of,
};

/// Most operations committed together.
const MAX_BATCH: usize = 256;

/// How long a writer waits for a lock another process holds (the CLI, say).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A handle to the writer thread; cloning shares it.
#[derive(Clone)]
pub(super) struct SqliteStore {
    jobs: mpsc::Sender<Job>,
}

/// One operation: runs inside the batch's transaction (or not at all, given `None`
/// when the transaction could not begin) and returns what to send its caller once the
/// commit's outcome is known.
struct Job {
    durable: bool,
    run: Operation,
}

type Operation = Box<dyn FnOnce(Option<&Connection>) -> Reply + Send>;

type Reply = Box<dyn FnOnce(Result<(), &str>) + Send>;

impl SqliteStore {
    pub(super) async fn open(path: &Path) -> Result<Self, StoreError> {
        let path = path.to_owned();
        let (jobs, queue) = mpsc::channel::<Job>();
        let (opened, ready) = oneshot::channel();
        std::thread::Builder::new()
            .name("cmq-store".into())
            .spawn(move || match open_connection(&path) {
                Ok(conn) => {
                    // Checkpoints run on a thread of their own; the writer's stop when
                    // it ends, which drops `_stop`.
                    let (_stop, stopped) = mpsc::channel::<()>();
                    let checkpointer = std::thread::Builder::new()
                        .name("cmq-store-checkpoint".into())
                        .spawn(move || checkpoint_loop(&path, &stopped));
                    if let Err(err) = checkpointer {
                        let _ = opened.send(Err(StoreError::new("starting checkpoints", err)));
                        return;
                    }
                    let _ = opened.send(Ok(()));
                    write_loop(&conn, &queue);
                }
                Err(err) => {
                    let _ = opened.send(Err(err));
                }
            })
            .map_err(|err| StoreError::new("starting the store thread", err))?;
        ready
            .await
            .map_err(|_| StoreError("the store thread stopped".into()))??;
        Ok(SqliteStore { jobs })
    }

    /// Runs `op` in the writer's next transaction and returns its result once that
    /// transaction is committed.
    async fn run<T: Send + 'static>(
        &self,
        durable: bool,
        op: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (done, result) = oneshot::channel::<Result<T, StoreError>>();
        let job = Job {
            durable,
            run: Box::new(move |conn| {
                let outcome = conn.map(|conn| in_savepoint(conn, op));
                Box::new(move |committed: Result<(), &str>| {
                    let result = match (outcome, committed) {
                        (None, Err(err)) => Err(StoreError::new("sqlite begin", err)),
                        (None, Ok(())) => Err(StoreError("sqlite: not run".into())),
                        (Some(Err(err)), _) => Err(StoreError::new("sqlite", err)),
                        (Some(Ok(_)), Err(err)) => Err(StoreError::new("sqlite commit", err)),
                        (Some(Ok(value)), Ok(())) => Ok(value),
                    };
                    let _ = done.send(result);
                })
            }),
        };
        self.jobs
            .send(job)
            .map_err(|_| StoreError("the store thread stopped".into()))?;
        result
            .await
            .map_err(|_| StoreError("the store thread stopped".into()))?
    }

    pub(super) async fn claim(&self, request: ClaimRequest) -> Result<Claim, StoreError> {
        self.run(false, move |conn| {
            // The times are read here, on the writer thread, as the statement runs.
            let (now, lease_until, acked_since) = request.times();
            let row = conn
                .prepare_cached(&numbered(CLAIM))?
                .query_row(
                    params![request.key, now, lease_until, acked_since, request.token.0],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            Ok(request.outcome(row))
        })
        .await
    }

    pub(super) async fn settle(&self, settle: Settle) -> Result<(), StoreError> {
        self.run(false, move |conn| {
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
    }

    pub(super) async fn journal(&self, journal: Journal) -> Result<i64, StoreError> {
        self.run(true, move |conn| {
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
                journal.key,
                journal.token
            ];
            let id: i64 = conn
                .prepare_cached(&numbered(INSERT_DEAD_LETTER))?
                .query_row(&values[..8], |row| row.get(0))?;
            conn.prepare_cached(&numbered(MARK_JOURNALED))?
                .execute(values)?;
            Ok(id)
        })
        .await
    }

    pub(super) async fn dead_letters(
        &self,
        id: Option<i64>,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        self.run(false, move |conn| {
            let sql = format!("{SELECT_DEAD_LETTERS} WHERE ?1 IS NULL OR id = ?1 ORDER BY id");
            let mut statement = conn.prepare_cached(&sql)?;
            let rows = statement.query_map(params![id], |row| {
                Ok(DeadLetter {
                    id: row.get(0)?,
                    message_id: row.get(1)?,
                    reason: row.get(2)?,
                    attempts: attempts(row.get(3)?),
                    format: parse_format(&row.get::<_, String>(4)?),
                    request_id: row.get(5)?,
                    message_tag: row.get(6)?,
                    body: row.get(7)?,
                    created: time_of(row.get(8)?),
                })
            })?;
            rows.collect()
        })
        .await
    }

    pub(super) async fn remove_dead_letters(
        &self,
        ids: Option<Vec<i64>>,
    ) -> Result<u64, StoreError> {
        self.run(true, move |conn| {
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
        .await
    }

    pub(super) async fn record(
        &self,
        message_id: String,
    ) -> Result<Option<MessageRecord>, StoreError> {
        self.run(false, move |conn| read_record(conn, &message_id))
            .await
    }

    pub(super) async fn prune(&self, before: i64) -> Result<u64, StoreError> {
        self.run(false, move |conn| {
            Ok(conn.prepare_cached(&numbered(PRUNE))?.execute([before])? as u64)
        })
        .await
    }
}

fn read_record(conn: &Connection, message_id: &str) -> rusqlite::Result<Option<MessageRecord>> {
    conn.prepare_cached(&numbered(SELECT_RECORD))?
        .query_row([message_id], |row| {
            Ok(MessageRecord {
                attempts: attempts(row.get(0)?),
                state: row.get(1)?,
                last_decision: row.get(2)?,
                updated: time_of(row.get(3)?),
            })
        })
        .optional()
}

/// How often the WAL is copied into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// Checkpoints the WAL every second until `stopped` disconnects. A checkpoint syncs the
/// disk, which takes milliseconds to tens of them: done by the writer (SQLite's
/// default, every 1000 pages) it would stall every push behind it.
fn checkpoint_loop(path: &Path, stopped: &mpsc::Receiver<()>) {
    let conn = match Connection::open(path) {
        Ok(conn) => conn,
        Err(err) => {
            tracing::error!("the store's checkpoints cannot start: {err}");
            return;
        }
    };
    let _ = conn.busy_timeout(BUSY_TIMEOUT);
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_INTERVAL) {
        // PASSIVE: copies what it can without waiting for, or blocking, the writer.
        if let Err(err) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!("store checkpoint failed: {err}");
        }
    }
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let context = |what: &str| format!("{what} {}", path.display());
    let conn = Connection::open(path).map_err(|err| StoreError::new(&context("opening"), err))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        // Rows are small and every commit writes whole pages to the WAL: 1 KiB pages
        // write a quarter of the bytes of the default 4 KiB. (Takes effect when the
        // file is created.)
        .and_then(|()| conn.pragma_update(None, "page_size", 1024))
        .and_then(|()| conn.pragma_update(None, "journal_mode", "WAL"))
        .and_then(|()| conn.pragma_update(None, "synchronous", "NORMAL"))
        .and_then(|()| conn.pragma_update(None, "wal_autocheckpoint", 0))
        .and_then(|()| {
            conn.execute_batch(
                &SCHEMA
                    .replace("{id}", "INTEGER PRIMARY KEY AUTOINCREMENT")
                    .replace("{int}", "INTEGER")
                    .replace("{bytes}", "BLOB"),
            )
        })
        .map_err(|err| StoreError::new(&context("preparing"), err))?;
    Ok(conn)
}

/// Takes every waiting operation, runs them in one transaction, commits, answers.
/// Ends when every handle is gone.
fn write_loop(conn: &Connection, queue: &mpsc::Receiver<Job>) {
    let mut synced = false;
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // A transaction some failure left open would refuse the pragma below.
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        let durable = batch.iter().any(|job| job.durable);
        let mut began = Ok(());
        if durable != synced {
            let level = if durable { "FULL" } else { "NORMAL" };
            began = conn.pragma_update(None, "synchronous", level);
            synced = durable && began.is_ok();
        }
        let began = began.and_then(|()| conn.execute_batch("BEGIN IMMEDIATE"));
        if let Err(err) = began {
            let reason = err.to_string();
            for job in batch {
                (job.run)(None)(Err(&reason));
            }
            continue;
        }
        let mut replies: Vec<Reply> = Vec::with_capacity(batch.len());
        let mut rolled_back = false;
        for job in batch {
            if rolled_back {
                replies.push((job.run)(None));
                continue;
            }
            replies.push((job.run)(Some(conn)));
            // Some errors (a full disk, an I/O error) make SQLite roll back the whole
            // transaction: what ran before in the batch is undone too.
            rolled_back = conn.is_autocommit();
        }
        let committed = if rolled_back {
            Err("the transaction was rolled back".to_owned())
        } else {
            conn.execute_batch("COMMIT").map_err(|err| {
                let _ = conn.execute_batch("ROLLBACK");
                err.to_string()
            })
        };
        let committed = committed.as_ref().map(|_| ()).map_err(String::as_str);
        for reply in replies {
            reply(committed);
        }
    }
}

/// Runs `op` so that a failure undoes only its own writes, not its batch's.
fn in_savepoint<T>(
    conn: &Connection,
    op: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.execute_batch("SAVEPOINT op")?;
    match op(conn) {
        Ok(value) => {
            conn.execute_batch("RELEASE op")?;
            Ok(value)
        }
        Err(err) => {
            let _ = conn.execute_batch("ROLLBACK TO op; RELEASE op");
            Err(err)
        }
    }
}

/// The shared statements number parameters PostgreSQL's way, `$1`; SQLite's `?1` binds
/// by the same numbers.
fn numbered(sql: &str) -> String {
    sql.replace('$', "?")
}
