//! The writer: every write of the store is a [`Job`] queued for one task on the async
//! runtime, which takes all that are waiting, runs them in one transaction and commits
//! once (group commit). A job's failure must undo only its own writes: one statement
//! does so by itself, and a job of several runs them [`in_savepoint`].
//!
//! The task runs a transaction on the runtime's thread itself: a commit with
//! `synchronous=NORMAL` writes the log without syncing it (tens of microseconds), and a
//! push that waits for it is woken on the same thread, with no other thread to wake
//! and switch to (measured: BENCHMARKS.md). What may take longer runs on a blocking
//! thread instead, the task waiting for it: a batch holding a synced write (the
//! dead-letter journal), a copy of the log into the database ([`Log::copy`], which
//! syncs), and a batch whose transaction must wait for a lock another process holds.

use std::time::Duration;

use rusqlite::{Connection, ErrorCode};
use tokio::sync::mpsc;

use super::wal::Log;

/// Most operations committed together.
const MAX_BATCH: usize = 256;

/// Bytes of message bodies past which a transaction takes no more operations: a batch
/// of journal writes would otherwise hold up to [`MAX_BATCH`] bodies of 1 MiB, all in
/// the log at once. (The operation that crosses it is in: at most this and one body.)
const MAX_BATCH_BYTES: usize = 4 << 20;

/// How long a transaction on a blocking thread waits for a lock another process holds
/// (the `dead-letter` command, say). On the runtime's thread, none: a busy database
/// sends the batch to a blocking thread.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// One operation: runs inside the batch's transaction (or not at all, given `None`
/// when the transaction could not begin) and returns what to send its caller once the
/// commit's outcome is known.
pub(super) struct Job {
    pub(super) durable: bool,
    /// The message bytes it writes, counted against [`MAX_BATCH_BYTES`].
    pub(super) bytes: usize,
    pub(super) run: Operation,
}

pub(super) type Operation = Box<dyn FnOnce(Option<&Connection>) -> Reply + Send>;

pub(super) type Reply = Box<dyn FnOnce(Result<(), &str>) + Send>;

/// The writing connection and what it keeps between transactions.
pub(super) struct Writer {
    conn: Connection,
    log: Log,
    /// Whether the connection commits with `synchronous=FULL` now.
    synced: bool,
    /// Whether the connection waits [`BUSY_TIMEOUT`] for a lock now (else not at all).
    waits: bool,
    /// Whether [`Log::copy`] is due before the next transaction.
    copy_due: bool,
}

/// Operations to commit together.
struct Batch {
    jobs: Vec<Job>,
    durable: bool,
}

/// Where a transaction runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Thread {
    /// The runtime's: nothing may wait.
    Runtime,
    /// A blocking thread: syncs, copies and locks may wait.
    Blocking,
}

impl Writer {
    /// `conn` opened with a busy timeout of [`BUSY_TIMEOUT`] and `synchronous=NORMAL`.
    pub(super) fn new(conn: Connection, log: Log) -> Self {
        Writer {
            conn,
            log,
            synced: false,
            waits: true,
            copy_due: false,
        }
    }

    /// Commits the queued jobs, batch after batch, until every handle to the queue is
    /// gone.
    pub(super) async fn run(mut self, mut queue: mpsc::UnboundedReceiver<Job>) {
        while let Some(first) = queue.recv().await {
            // Let the pushes that are ready now queue their operations too, until a
            // turn of the runtime adds none: one commit for all of them.
            loop {
                let queued = queue.len();
                tokio::task::yield_now().await;
                if queue.len() == queued {
                    break;
                }
            }
            let batch = Batch::take(first, &mut queue);
            let batch = if batch.durable || self.copy_due {
                batch
            } else {
                match self.commit(batch, Thread::Runtime) {
                    None => continue,
                    Some(busy) => busy,
                }
            };
            let blocking = tokio::task::spawn_blocking(move || {
                if self.copy_due {
                    self.copy_due = false;
                    self.log.copy(&self.conn);
                }
                self.commit(batch, Thread::Blocking);
                self
            });
            match blocking.await {
                Ok(writer) => self = writer,
                // It panicked: the queue goes with this task, and every caller hears
                // that the store stopped.
                Err(_) => return,
            }
        }
    }

    /// Opens the batch's transaction, `durable` (synced at commit) or not, waiting on
    /// a busy database only when the thread it runs on `waits`.
    fn begin(&mut self, durable: bool, waits: bool) -> rusqlite::Result<()> {
        let conn = &self.conn;
        // A transaction some failure left open would refuse the pragma below.
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        if waits != self.waits {
            let timeout = if waits { BUSY_TIMEOUT } else { Duration::ZERO };
            conn.busy_timeout(timeout)?;
            self.waits = waits;
        }
        if durable != self.synced {
            let level = if durable { "FULL" } else { "NORMAL" };
            conn.pragma_update(None, "synchronous", level)?;
            self.synced = durable;
        }
        execute_cached(conn, "BEGIN IMMEDIATE")
    }

    /// Runs `batch` in one transaction, commits and answers each job. On the runtime's
    /// thread, a database another process holds locked gives the batch back, untouched.
    fn commit(&mut self, batch: Batch, thread: Thread) -> Option<Batch> {
        let waits = thread == Thread::Blocking;
        let began = self.begin(batch.durable, waits);
        let conn = &self.conn;
        match began {
            Ok(()) => {}
            Err(err) if !waits && err.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) => {
                return Some(batch);
            }
            Err(err) => {
                let reason = err.to_string();
                for job in batch.jobs {
                    (job.run)(None)(Err(&reason));
                }
                return None;
            }
        }
        let mut replies: Vec<Reply> = Vec::with_capacity(batch.jobs.len());
        let mut rolled_back = false;
        for job in batch.jobs {
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
            execute_cached(conn, "COMMIT").map_err(|err| {
                let _ = conn.execute_batch("ROLLBACK");
                err.to_string()
            })
        };
        let committed = committed.as_ref().map(|_| ()).map_err(String::as_str);
        if committed.is_ok() {
            self.copy_due = self.log.committed();
        }
        for reply in replies {
            reply(committed);
        }
        None
    }
}

impl Batch {
    /// `first` and every job waiting behind it, up to [`MAX_BATCH`] jobs and
    /// [`MAX_BATCH_BYTES`].
    fn take(first: Job, queue: &mut mpsc::UnboundedReceiver<Job>) -> Batch {
        let mut bytes = first.bytes;
        let mut durable = first.durable;
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match queue.try_recv() {
                Ok(job) => {
                    bytes += job.bytes;
                    durable |= job.durable;
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        Batch { jobs, durable }
    }
}

/// Runs a statement without parameters, prepared once per connection.
fn execute_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Runs `op` so that a failure undoes only its own writes, not its batch's.
pub(super) fn in_savepoint<T>(
    conn: &Connection,
    op: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    execute_cached(conn, "SAVEPOINT op")?;
    match op(conn) {
        Ok(value) => {
            execute_cached(conn, "RELEASE op")?;
            Ok(value)
        }
        Err(err) => {
            let _ = conn.execute_batch("ROLLBACK TO op; RELEASE op");
            Err(err)
        }
    }
}
