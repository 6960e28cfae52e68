//! The writer thread: every write of the store is a [`Job`] sent to it; it takes all
//! that are waiting, runs them in one transaction and commits once (group commit), each
//! in a savepoint of its own so that a failure undoes only its own writes.

use std::sync::mpsc;

use rusqlite::Connection;

use super::wal::Log;

/// Most operations committed together.
const MAX_BATCH: usize = 256;

/// Bytes of message bodies past which a transaction takes no more operations: a batch
/// of journal writes would otherwise hold up to [`MAX_BATCH`] bodies of 1 MiB, all in
/// the log at once. (The operation that crosses it is in: at most this and one body.)
const MAX_BATCH_BYTES: usize = 4 << 20;

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

/// Takes every waiting operation, runs them in one transaction, commits, answers.
/// Ends when every handle is gone.
pub(super) fn write_loop(conn: &Connection, queue: &mpsc::Receiver<Job>, mut log: Log) {
    let mut synced = false;
    while let Ok(first) = queue.recv() {
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match queue.try_recv() {
                Ok(job) => {
                    bytes += job.bytes;
                    batch.push(job);
                }
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
        if committed.is_ok() {
            log.committed(conn);
        }
    }
}

/// Runs `op` so that a failure undoes only its own writes, not its batch's.
pub(super) fn in_savepoint<T>(
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
