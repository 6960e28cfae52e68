//! Counting deliveries in the SQLite store: the claim, the notes of deliveries counted
//! later, and what the claim must take besides its own delivery.
//!
//! A claim writes with one statement ([`CLAIM_NEW`] for a message the store has no row
//! of, [`CLAIM`] after it for one it has) when there is nothing else to take: no notes
//! of its message in doubt, no lost claims to guard ([`LostClaims`]), and no notes
//! untaken in the database ([`Untaken`]), which is the case whenever every delivery
//! was claimed as it came. Otherwise it writes and takes them first, in a savepoint of
//! its own so that it counts all of it or nothing.

use std::sync::{Mutex, PoisonError};

use rusqlite::{Connection, OptionalExtension as _, params};

use super::super::request::ClaimRequest;
use super::super::sql::{
    CLAIM, CLAIM_NEW, NOTE, RELEASE_ABANDONED, SELECT_RECORD, TAKE_NOTES, TAKE_UNCOUNTED,
};
use super::super::uncounted::Note;
use super::super::{Claim, StoreError};
use super::lost_claims::LostClaims;
use super::numbered;
use super::writer::in_savepoint;

/// Whether the database may hold deliveries a claim must take: notes not yet taken
/// (`cmq_notes`), and the deliveries an older cmq-host wrote (`cmq_uncounted`, which
/// this one never writes). Read when the store opens, set by every note written, and
/// cleared when a look after a prune, once committed, finds none and no note was
/// written since. Only the writer writes the tables, so a claim that skips the taking
/// misses nothing.
#[derive(Debug)]
pub(super) struct Untaken(Mutex<UntakenState>);

#[derive(Debug, Clone, Copy)]
struct UntakenState {
    notes: bool,
    older: bool,
    /// Notes written since the store opened.
    written: u64,
}

/// What a look at the tables found (see [`Untaken::look`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Look(UntakenState);

const ANY_NOTES: &str = "SELECT EXISTS (SELECT 1 FROM cmq_notes WHERE taken = 0)";
const ANY_OLDER: &str = "SELECT EXISTS (SELECT 1 FROM cmq_uncounted)";

impl Untaken {
    pub(super) fn read(conn: &Connection) -> rusqlite::Result<Self> {
        let Look(state) = Self::look_at(conn, 0)?;
        Ok(Untaken(Mutex::new(state)))
    }

    /// What the tables hold now, in the writer's transaction.
    pub(super) fn look(&self, conn: &Connection) -> rusqlite::Result<Look> {
        Self::look_at(conn, self.state().written)
    }

    fn look_at(conn: &Connection, written: u64) -> rusqlite::Result<Look> {
        let any = |sql: &str| -> rusqlite::Result<bool> {
            conn.prepare_cached(sql)?.query_row([], |row| row.get(0))
        };
        Ok(Look(UntakenState {
            notes: any(ANY_NOTES)?,
            older: any(ANY_OLDER)?,
            written,
        }))
    }

    /// Takes in what `look` found, once its transaction committed.
    pub(super) fn committed(&self, Look(found): Look) {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        state.older &= found.older;
        if state.written == found.written {
            state.notes &= found.notes;
        }
    }

    fn noted(&self) {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        state.notes = true;
        state.written += 1;
    }

    fn state(&self) -> UntakenState {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The state a claim runs against.
pub(super) struct Counting<'a> {
    pub(super) lost: &'a LostClaims,
    pub(super) untaken: &'a Untaken,
}

impl Counting<'_> {
    /// Claims the delivery `request` describes, taking what it must first. Returns the
    /// claim and the lost claims guarded.
    pub(super) fn claim(
        &self,
        conn: &Connection,
        request: &ClaimRequest,
    ) -> rusqlite::Result<(Result<Claim, StoreError>, Vec<i64>)> {
        // The times are read here, by the writer, as the statement runs.
        let now = request.times().0;
        let UntakenState { notes, older, .. } = self.untaken.state();
        if request.notes.is_empty() && self.lost.is_empty() && !notes && !older {
            return Ok((claim(conn, request, request.earlier)?, Vec::new()));
        }
        in_savepoint(conn, |conn| {
            let guarded = self.write_notes(conn, &request.notes, now)?;
            let earlier = request.earlier + self.take(conn, &request.push_key, now)?;
            Ok((claim(conn, request, earlier)?, guarded))
        })
    }

    /// Writes the guards of the lost claims, then `notes` (a note written before, or
    /// under a guard's token, adds nothing), and releases the leases of the claims
    /// given up on among them. Returns the lost claims guarded.
    pub(super) fn write_notes(
        &self,
        conn: &Connection,
        notes: &[Note],
        now: i64,
    ) -> rusqlite::Result<Vec<i64>> {
        let guarded = self.lost.write(conn, now)?;
        for note in notes {
            let written = conn.prepare_cached(&numbered(NOTE))?.execute(params![
                note.id,
                note.push_key,
                i64::from(note.deliveries),
                now
            ])?;
            if written > 0 {
                self.untaken.noted();
            }
            if let Some(key) = &note.abandoned_claim {
                conn.prepare_cached(&numbered(RELEASE_ABANDONED))?
                    .execute(params![key, note.id, now])?;
            }
        }
        Ok(guarded)
    }

    /// The deliveries noted under `push_key`, taken.
    fn take(&self, conn: &Connection, push_key: &str, now: i64) -> rusqlite::Result<i64> {
        let UntakenState { notes, older, .. } = self.untaken.state();
        let mut taken = 0;
        if older {
            taken += conn
                .prepare_cached(&numbered(TAKE_UNCOUNTED))?
                .query_row([push_key], |row| row.get::<_, i64>(0))
                .optional()?
                .unwrap_or(0);
        }
        if notes {
            taken += conn
                .prepare_cached(&numbered(TAKE_NOTES))?
                .query_map(params![push_key, now], |row| row.get::<_, i64>(0))?
                .sum::<rusqlite::Result<i64>>()?;
        }
        Ok(taken)
    }
}

/// The claim statement, counting `earlier` deliveries besides this one; for a
/// duplicate, the record's state is read too. A message without a row is inserted by
/// [`CLAIM_NEW`], the cheaper statement, and the claim statement runs only when it has
/// one.
fn claim(
    conn: &Connection,
    request: &ClaimRequest,
    earlier: i64,
) -> rusqlite::Result<Result<Claim, StoreError>> {
    let (now, lease_until, acked_since) = request.times();
    let inserted = conn.prepare_cached(&numbered(CLAIM_NEW))?.execute(params![
        request.key,
        now,
        lease_until,
        request.token.0,
        earlier
    ])?;
    if inserted > 0 {
        return Ok(request.outcome(Some((1 + earlier, Some(request.token.0))), None));
    }
    let row = conn
        .prepare_cached(&numbered(CLAIM))?
        .query_row(
            params![
                request.key,
                now,
                lease_until,
                acked_since,
                request.token.0,
                earlier
            ],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let settled = match row {
        Some(_) => None,
        None => conn
            .prepare_cached(&numbered(SELECT_RECORD))?
            .query_row([&request.key], |row| Ok((row.get(1)?, row.get(2)?)))
            .optional()?,
    };
    Ok(request.outcome(row, settled))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::super::backend::Backend as _;
    use super::super::super::request::ClaimRequest;
    use super::super::super::sql::{PRUNE_CHUNK, PRUNE_NOTES};
    use super::super::super::uncounted::Note;
    use super::super::super::{Claim, ClaimToken};
    use super::super::SqliteStore;

    fn request(key: &str) -> ClaimRequest {
        ClaimRequest {
            key: key.into(),
            push_key: format!("p-{key}"),
            earlier: 0,
            notes: Vec::new(),
            token: ClaimToken::new(),
            lease: Duration::from_secs(60),
            dedupe_window: None,
        }
    }

    async fn attempt(store: &SqliteStore, key: &str) -> u32 {
        match store.claim(request(key)).await {
            Ok(Claim::Run { attempt, .. }) => attempt,
            other => panic!("{other:?}"),
        }
    }

    fn note(id: i64, key: &str) -> Note {
        Note {
            id,
            push_key: format!("p-{key}"),
            deliveries: 1,
            abandoned_claim: None,
        }
    }

    /// Claims skip the notes only while none can be there: a note written, or one a
    /// store opened with, is taken by its message's claim; a prune that leaves one
    /// keeps claims looking.
    #[tokio::test]
    async fn claims_take_every_note_whether_written_now_or_found_at_open() {
        // A folder of its own: the store's log and its index go with it at the end.
        let dir = std::env::temp_dir().join(format!("cmq-untaken-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a folder");
        let path = dir.join("store.db");
        let store = SqliteStore::open(&path).await.expect("a store");
        assert!(!store.untaken.state().notes, "a new store has none");
        assert_eq!(attempt(&store, "a").await, 1);

        store
            .count_uncounted(vec![note(1, "b")])
            .await
            .expect("noted");
        // A prune that removes nothing (nothing is old) leaves the flag up.
        store
            .prune(PRUNE_NOTES, 0, PRUNE_CHUNK)
            .await
            .expect("pruned");
        assert_eq!(attempt(&store, "b").await, 2, "the note taken");
        // All taken: the next look clears it.
        store
            .prune(PRUNE_NOTES, 0, PRUNE_CHUNK)
            .await
            .expect("pruned");
        assert!(!store.untaken.state().notes, "none left");
        assert_eq!(attempt(&store, "c").await, 1);

        store
            .count_uncounted(vec![note(2, "d")])
            .await
            .expect("noted");
        drop(store);
        let store = SqliteStore::open(&path).await.expect("opened again");
        assert_eq!(
            attempt(&store, "d").await,
            2,
            "the note found at open taken"
        );
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
