//! Why a guest gave no decision, and how a wasmtime error is told as one line.

use std::time::Duration;

/// Why a guest gave no decision. Every fault answers non-2xx, so CMQ redelivers.
#[derive(Debug, thiserror::Error)]
pub enum GuestFault {
    /// The guest ran past its deadline and was stopped.
    #[error("deadline of {0:?} exceeded")]
    Deadline(Duration),
    /// The guest could not be instantiated (for example: no free instance slot).
    #[error("instantiation failed: {}", one_line(.0))]
    Instantiate(wasmtime::Error),
    /// The guest trapped: a panic, a stack overflow, memory over its cap, ...
    #[error("guest trapped: {}", one_line(.0))]
    Trap(wasmtime::Error),
}

impl GuestFault {
    /// The guest's wasm backtrace, when it has one: too long for the message's log line.
    pub fn backtrace(&self) -> Option<String> {
        match self {
            GuestFault::Instantiate(err) | GuestFault::Trap(err) => err
                .downcast_ref::<wasmtime::WasmBacktrace>()
                .map(|trace| trace.to_string()),
            GuestFault::Deadline(_) => None,
        }
    }
}

/// The cause of a wasmtime error on one line: its root cause (a trap code such as
/// "wasm `unreachable` instruction executed", or a host error such as a memory limit).
fn one_line(err: &wasmtime::Error) -> String {
    let cause = err.root_cause().to_string();
    let cause = cause.split_whitespace().collect::<Vec<_>>().join(" ");
    crate::sandbox::guest_output::escaped(&cause).into_owned()
}
