//! What happened to each message: delivered on which attempt, discarded after how many,
//! or filtered out before any push.

use std::time::Duration;

use serde::Serialize;

use crate::FilteredBy;

/// The fate of one message at one subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The message id pushed.
    pub msg_id: String,
    /// How it ended.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Every push made, in order.
    pub attempts: Vec<Attempt>,
}

/// How a message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum Outcome {
    /// Answered 2xx on the last attempt.
    Delivered,
    /// Every attempt the strategy allows failed; CMQ would drop the message here.
    Discarded,
    /// Never pushed: the subscription's filters exclude it.
    Filtered {
        /// Which filter.
        #[serde(serialize_with = "display")]
        reason: FilteredBy,
    },
}

/// One push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// The `x-cmq-request-id` it carried.
    pub request_id: String,
    /// When it was sent, counted from the first attempt, in simulated time (the
    /// strategy's intervals, before the time scale).
    #[serde(serialize_with = "seconds")]
    pub at: Duration,
    /// What came back.
    #[serde(flatten)]
    pub answer: Answer,
}

/// What a push got back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Answer {
    /// An HTTP status.
    Status(u16),
    /// No status: the connection failed or the answer took too long.
    Error(String),
}

impl Answer {
    /// Whether CMQ counts this as delivered.
    pub fn is_success(&self) -> bool {
        matches!(self, Answer::Status(status) if (200..300).contains(status))
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Status(status) => write!(f, "{status}"),
            Answer::Error(error) => f.write_str(error),
        }
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.attempts.len();
        let last = self.attempts.last();
        match (&self.outcome, last) {
            (Outcome::Delivered, Some(last)) => write!(
                f,
                "{}: delivered on attempt {count} ({}, at {:?})",
                self.msg_id, last.answer, last.at
            ),
            (Outcome::Discarded, Some(last)) => write!(
                f,
                "{}: discarded after {count} attempts (last: {}, at {:?})",
                self.msg_id, last.answer, last.at
            ),
            (Outcome::Filtered { reason }, _) => {
                write!(f, "{}: filtered out: {reason}", self.msg_id)
            }
            (_, None) => write!(f, "{}: never pushed", self.msg_id),
        }
    }
}

/// Counts over a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Messages answered 2xx in the end.
    pub delivered: usize,
    /// Messages CMQ would have dropped.
    pub discarded: usize,
    /// Messages the filters kept from the subscription.
    pub filtered: usize,
    /// Pushes sent in all.
    pub pushes: usize,
}

impl Summary {
    /// Counts `reports`.
    pub fn of(reports: &[Report]) -> Summary {
        let mut summary = Summary::default();
        for report in reports {
            summary.pushes += report.attempts.len();
            match report.outcome {
                Outcome::Delivered => summary.delivered += 1,
                Outcome::Discarded => summary.discarded += 1,
                Outcome::Filtered { .. } => summary.filtered += 1,
            }
        }
        summary
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} delivered, {} discarded, {} filtered out, {} pushes",
            self.delivered, self.discarded, self.filtered, self.pushes
        )
    }
}

fn display<S: serde::Serializer>(
    value: &impl std::fmt::Display,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

fn seconds<S: serde::Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(value.as_secs_f64())
}
