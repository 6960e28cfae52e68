//! The store's operations as the backends receive them, and the conversions both use.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cmq_message::Format;

use super::{Claim, ClaimToken, DeadLetter, Settled, StoreError};

/// A claim, as the backends receive it.
#[derive(Debug)]
pub(super) struct ClaimRequest {
    pub(super) key: String,
    pub(super) push_key: String,
    /// Deliveries to add that the store does not hold.
    pub(super) earlier: i64,
    /// Notes of the message whose writes were in doubt, written (again) before the
    /// claim counts what is written (SQLite: in the claim's transaction).
    pub(super) notes: Vec<super::uncounted::Note>,
    pub(super) token: ClaimToken,
    pub(super) lease: Duration,
    pub(super) dedupe_window: Option<Duration>,
}

impl ClaimRequest {
    /// The statement's times, read when it is about to run: `(now, the lease's end, the
    /// instant after which an acknowledgement makes a duplicate)`.
    pub(super) fn times(&self) -> (i64, i64, i64) {
        let now = now_ms();
        let lease_until = now.saturating_add(millis(self.lease));
        // i64::MAX: no acknowledgement is that recent, so nothing is a duplicate.
        let acked_since = self
            .dedupe_window
            .map_or(i64::MAX, |window| now.saturating_sub(millis(window)));
        (now, lease_until, acked_since)
    }

    /// What the claim statement's row says; `settled` is the record's state and last
    /// decision, read when there is no row (a duplicate).
    pub(super) fn outcome(
        &self,
        row: Option<(i64, Option<i64>)>,
        settled: Option<(String, Option<String>)>,
    ) -> Result<Claim, StoreError> {
        Ok(match row {
            None => {
                let (state, decision) = settled.ok_or_else(|| {
                    StoreError(format!("{}: a duplicate without a record", self.key))
                })?;
                Claim::Duplicate {
                    of: settled_of(&state, decision.as_deref())
                        .map_err(|err| StoreError(format!("{}: {err}", self.key)))?,
                }
            }
            Some((count, holder)) => {
                let attempt = attempts(count)
                    .map_err(|what| StoreError(unreadable(format_args!("{}", self.key), &what)))?;
                if holder == Some(self.token.0) {
                    Claim::Run {
                        attempt,
                        token: self.token,
                    }
                } else {
                    Claim::Busy {
                        attempt,
                        holder: ClaimToken(holder.unwrap_or_default()),
                    }
                }
            }
        })
    }
}

/// How a record in `state`, whose last decision was `decision`, was settled; a state
/// that settles nothing is an error, never a guess.
pub(super) fn settled_of(state: &str, decision: Option<&str>) -> Result<Settled, String> {
    match state {
        "acked" => Ok(Settled::Ack),
        "journaled" if decision.is_some_and(|d| d.starts_with("dropped: ")) => Ok(Settled::Drop),
        "journaled" => Ok(Settled::Journaled),
        other => Err(format!("a duplicate of a record in state {other:?}")),
    }
}

/// A settlement, as the backends receive it.
#[derive(Debug)]
pub(super) struct Settle {
    pub(super) key: String,
    pub(super) token: i64,
    pub(super) state: &'static str,
    pub(super) decision: String,
}

/// A journal write, as the backends receive it.
#[derive(Debug)]
pub(super) struct Journal {
    pub(super) entry: DeadLetter,
    pub(super) key: String,
    pub(super) token: Option<i64>,
}

/// A stored push format: one this cmq-host does not know (a newer one wrote it, or the
/// row is damaged) is refused, not read as another.
pub(super) fn parse_format(name: &str) -> Result<Format, String> {
    [Format::Json, Format::Simplified]
        .into_iter()
        .find(|format| format.name() == name)
        .ok_or_else(|| format!("unknown push format {name:?}"))
}

/// A stored count of attempts: a negative one, or one past `u32`, is refused.
pub(super) fn attempts(count: i64) -> Result<u32, String> {
    u32::try_from(count).map_err(|_| format!("attempts {count} out of range"))
}

/// The error for a row holding a value [`parse_format`] or [`attempts`] refused: `row`
/// names it (`dead letter 12`, `message m-1`).
pub(super) fn unreadable(row: impl std::fmt::Display, what: &str) -> String {
    format!("{row} cannot be read: {what}")
}

pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, millis)
}

pub(super) fn millis_u64(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

pub(super) fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

pub(super) fn time_of(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}
