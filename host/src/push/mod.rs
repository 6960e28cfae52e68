//! The push path: the stages one push goes through, in order, each importing only the
//! stages before it. [`crate::receiver`] takes a push through them.
//!
//! - [`intake`]: admit, read and parse: the token, the method, a place in flight, the
//!   body within its limits, the CMQ message.
//! - [`delivery`]: claim the message in the store, run the guest, record how it ended,
//!   with what a journal entry would hold ([`journal_entry`]); or pass a `wasi:http`
//!   guest the request ([`http_delivery`]).
//! - [`verdict`]: how the push ended, decided once: the status and body, the decision,
//!   the reason.
//! - [`report`]: the verdict's log line and metrics.
//! - [`feed`]: the verdict for the console's live view, while someone watches.

pub(crate) mod intake;

pub(crate) mod journal_entry;

pub(crate) mod delivery;

pub(crate) mod http_delivery;

pub(crate) mod verdict;

pub(crate) mod report;

pub(crate) mod feed;
