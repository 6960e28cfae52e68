//! Keeping the SQLite store's write-ahead log bounded.
//!
//! A checkpoint copies the log into the database, but SQLite starts the log again from
//! its beginning only when a write transaction begins with the whole log copied; under
//! a steady load the writer always begins before a checkpoint on another thread has
//! caught up, so the log would grow for as long as the load lasts. So:
//! - a checkpoint thread ([`Checkpoints`]) copies the log in the background every
//!   [`RESTART_GAP`] frames and every second, without blocking anyone;
//! - once the log holds [`WAL_LIMIT`] and the checkpoints are close behind its end, the
//!   writer ([`Log`]) pauses between two transactions to copy the little that is left
//!   itself (on a blocking thread: a copy syncs), so that its next transaction starts the log again, and
//!   `journal_size_limit` cuts the file back to the limit; at twice the limit it does
//!   so however far behind the checkpoints are;
//! - once the log has not changed for a second (nobody, in this process or another, has
//!   written), the checkpoint thread empties it and truncates its file to nothing.

use std::cell::Cell;
use std::os::raw::c_int;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, PoisonError, TryLockError, mpsc};
use std::time::Duration;

use rusqlite::Connection;
use rusqlite::hooks::Wal;

/// The size at which the writer makes the log start again, and the size its file is
/// cut back to when it does. The log grows to at most twice this and one transaction
/// (at most 4 MiB of bodies and their rows); under the loads measured,
/// to this and one transaction.
pub const WAL_LIMIT: u64 = 16 << 20;

/// How often the checkpoint thread looks at the log unnudged; how long the log must
/// have stayed the same before it is emptied.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// How long the checkpoint thread waits for a lock before giving up until its next
/// turn: emptying the log holds off the writer, which must not wait on a slow reader.
const CHECKPOINT_BUSY_TIMEOUT: Duration = Duration::from_millis(200);

thread_local! {
    /// The log's length in frames after the last commit on this thread, as SQLite's
    /// WAL hook reports it while the commit runs; the writer reads it right after
    /// (see [`Log::committed`]), on the same thread.
    static WAL_FRAMES: Cell<c_int> = const { Cell::new(0) };
}

/// SQLite's WAL hook for the writer's connection: remembers the log's length.
pub(super) fn note_wal_frames(_wal: &Wal, frames: c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.set(frames);
    Ok(())
}

/// The writer's side of keeping the log bounded.
pub(super) struct Log {
    /// Held by whoever checkpoints, so that the writer's checkpoint waits for one
    /// under way instead of failing on SQLite's checkpoint lock.
    checkpointing: Arc<Mutex<()>>,
    /// How far the checkpoint thread's last checkpoint copied, in frames.
    copied: Arc<AtomicI32>,
    /// The log's length, in [`RESTART_GAP`]s, at the last nudge.
    nudged: c_int,
    /// Wakes the checkpoint thread; dropped when the writer ends, which stops it.
    nudge: mpsc::SyncSender<()>,
    /// The log's length in frames at which the writer restarts it: [`WAL_LIMIT`] in
    /// frames of this database's pages.
    restart_frames: c_int,
    /// No restart is tried below this length: the limit, or more after a restart that
    /// a reader in another process kept from finishing.
    restart_at: c_int,
    /// The log's length in frames after the last commit.
    frames: c_int,
}

/// The checkpoint thread's side.
pub(super) struct Checkpoints {
    checkpointing: Arc<Mutex<()>>,
    copied: Arc<AtomicI32>,
    nudged: mpsc::Receiver<()>,
}

/// What `PRAGMA wal_checkpoint` says: whether it was kept from finishing, the log's
/// frames, and how many of them are in the database now.
#[derive(Debug, Clone, Copy)]
struct Checkpointed {
    busy: bool,
    frames: c_int,
    copied: c_int,
}

impl Checkpointed {
    fn complete(self) -> bool {
        !self.busy && self.copied >= self.frames
    }
}

fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<Checkpointed> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        Ok(Checkpointed {
            busy: row.get::<_, i64>(0)? != 0,
            frames: row.get(1)?,
            copied: row.get(2)?,
        })
    })
}

/// How many frames the log grows by between two nudges of the checkpoint thread, and
/// how close behind the log's end its checkpoints must be before the writer restarts
/// the log: what is left for the writer to copy and sync while every push waits (a
/// sync's cost grows with the pages copied). More often, the checkpoints take the
/// writer's CPU; less often, the writer waits longer (BENCHMARKS.md, the store's size
/// under load).
const RESTART_GAP: c_int = 512;

impl Log {
    /// For a database of `page_size` bytes a page.
    pub(super) fn new(page_size: i64) -> (Log, Checkpoints) {
        let checkpointing = Arc::new(Mutex::new(()));
        let copied = Arc::new(AtomicI32::new(0));
        let (nudge, nudged) = mpsc::sync_channel(1);
        // A frame is a page and its 24-byte header.
        let frame_bytes = u64::try_from(page_size.max(512)).unwrap_or(1024) + 24;
        let restart_frames = c_int::try_from(WAL_LIMIT / frame_bytes).unwrap_or(c_int::MAX);
        let log = Log {
            checkpointing: checkpointing.clone(),
            copied: copied.clone(),
            nudged: 0,
            nudge,
            restart_frames,
            restart_at: restart_frames,
            frames: 0,
        };
        let checkpoints = Checkpoints {
            checkpointing,
            copied,
            nudged,
        };
        (log, checkpoints)
    }

    /// After each commit, on the thread that committed (SQLite's WAL hook has just
    /// told it the log's length): wakes the checkpoint thread every [`RESTART_GAP`]
    /// frames, and says whether the writer is to copy what is left of the log before
    /// its next transaction ([`Log::copy`]): past [`WAL_LIMIT`], once the checkpoints
    /// are close behind (or at twice the limit, whatever they do).
    pub(super) fn committed(&mut self) -> bool {
        let frames = WAL_FRAMES.get();
        self.frames = frames;
        let step = frames / RESTART_GAP;
        if step != self.nudged {
            self.nudged = step;
            // Full means a nudge is already waiting: nothing is lost.
            let _ = self.nudge.try_send(());
        }
        if frames < self.restart_frames {
            // Started again since the last restart: a restart may be tried at the limit.
            self.restart_at = self.restart_frames;
        }
        if frames < self.restart_at {
            return false;
        }
        let behind = frames.saturating_sub(self.copied.load(Ordering::Relaxed));
        behind <= RESTART_GAP || self.urgent()
    }

    /// At twice the limit: the writer copies the log however far behind the
    /// checkpoints are.
    fn urgent(&self) -> bool {
        self.frames >= self.restart_frames.saturating_mul(2)
    }

    /// Copies what is left of the log into the database (and syncs it), so that the
    /// next transaction starts the log again: when [`Log::committed`] said so, before
    /// the next transaction, off the runtime's threads.
    pub(super) fn copy(&mut self, conn: &Connection) {
        let urgent = self.urgent();
        let one = match self.checkpointing.try_lock() {
            Ok(one) => one,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            // The checkpoint thread is copying: let it finish, and look again after the
            // next commit (at twice the limit, wait for it).
            Err(TryLockError::WouldBlock) if !urgent => return,
            Err(TryLockError::WouldBlock) => self
                .checkpointing
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        };
        let done = checkpoint(conn, "PASSIVE");
        drop(one);
        match done {
            Ok(done) if done.complete() => self.restart_at = self.restart_frames,
            Ok(done) => {
                // A reader (another process) still uses the log: try again once it has
                // grown by another gap's worth, not after every commit.
                tracing::debug!(?done, "the store's log could not be copied whole");
                self.restart_at = self.frames.saturating_add(RESTART_GAP);
            }
            Err(err) => {
                tracing::warn!("store checkpoint failed: {err}");
                self.restart_at = self.frames.saturating_add(RESTART_GAP);
            }
        }
    }
}

impl Checkpoints {
    /// Copies the log into the database every [`RESTART_GAP`] frames (so that little is
    /// left for the writer when it restarts the log) and every second, and empties it
    /// (truncating its file) once it has not changed for a second: nobody, in this
    /// process or another, has written since. Ends when the writer does. A checkpoint
    /// syncs the disk: done by the writer after every commit it would stall every push.
    pub(super) fn run(self, path: &Path) {
        let conn = match Connection::open(path) {
            Ok(conn) => conn,
            Err(err) => {
                tracing::error!("the store's checkpoints cannot start: {err}");
                return;
            }
        };
        let _ = conn.busy_timeout(CHECKPOINT_BUSY_TIMEOUT);
        // The log's length at the last look, once a second.
        let mut last_seen = None;
        loop {
            let nudged = match self.nudged.recv_timeout(CHECKPOINT_INTERVAL) {
                Ok(()) => true,
                Err(mpsc::RecvTimeoutError::Timeout) => false,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            let Some(done) = self.checkpoint(&conn, "PASSIVE") else {
                continue;
            };
            if nudged {
                continue;
            }
            let unchanged = last_seen == Some(done.frames);
            last_seen = Some(done.frames);
            if unchanged && done.frames > 0 {
                // TRUNCATE takes the write lock while it works: nobody has written for a
                // second, and all of the log is copied already, so it is brief.
                self.checkpoint(&conn, "TRUNCATE");
            }
        }
    }

    /// Runs one checkpoint, one at a time with the writer's; what it did, unless
    /// another process's checkpoint was under way or it failed.
    fn checkpoint(&self, conn: &Connection, mode: &str) -> Option<Checkpointed> {
        let done = {
            let _one = self
                .checkpointing
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            checkpoint(conn, mode)
        };
        match done {
            // Another process's checkpoint holds SQLite's lock: it says -1, -1.
            Ok(done) if done.busy && done.frames < 0 => None,
            Ok(done) => {
                self.copied.store(done.copied, Ordering::Relaxed);
                Some(done)
            }
            Err(err) => {
                tracing::warn!("store checkpoint failed: {err}");
                None
            }
        }
    }
}
