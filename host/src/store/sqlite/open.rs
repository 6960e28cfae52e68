//! Opening the SQLite store's file: made private, in WAL mode, its schema brought up to
//! date.

use std::path::Path;

use rusqlite::Connection;

use super::super::StoreError;
use super::super::sql::{ADD_ROUTE_COLUMN, HAS_ROUTE_COLUMN, SCHEMA};
use super::BUSY_TIMEOUT;
use super::wal::{WAL_LIMIT, note_wal_frames};

/// The database's page size for a new file (see [`open_connection`]); a file made by
/// an older cmq-host may have 4 KiB pages.
pub(super) const PAGE_SIZE: i64 = 1024;

/// Statements kept prepared per connection: more than the store has.
const STATEMENT_CACHE: usize = 32;

/// Opens (creating when missing) the database at `path` for the writer.
pub(super) fn open_connection(path: &Path) -> Result<Connection, StoreError> {
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
