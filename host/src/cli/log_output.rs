//! Where log lines go: standard error, written in batches. A line is appended to a
//! buffer, and the buffer is written with one system call when a thread of the async
//! runtime runs out of work ([`flush`] is its park hook), when it holds
//! [`FLUSH_AT`] bytes, every [`FLUSH_INTERVAL`] at the latest, at once for a warning or
//! an error, before a panic's message and when the command ends. Under load that is one
//! write for many messages' lines instead of one each (measured: BENCHMARKS.md).
//!
//! Lines keep their order: whoever writes holds the buffer's lock while writing.

use std::io::Write as _;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Bytes buffered past which the line that crosses it is written with the rest.
const FLUSH_AT: usize = 32 << 10;

/// The longest a line waits in the buffer while every runtime thread stays busy.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

static BUFFER: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// The log's writer: `tracing_subscriber::fmt().with_writer(Stderr::start())`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stderr;

impl Stderr {
    /// Starts the thread that writes what waits longer than [`FLUSH_INTERVAL`], and
    /// has a panic's message follow the lines logged before it.
    pub(crate) fn start() -> Stderr {
        let started = std::thread::Builder::new()
            .name("cmq-log".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(FLUSH_INTERVAL);
                    flush();
                }
            });
        if let Err(err) = started {
            // Lines are still written: by the runtime's threads, and at the end.
            eprintln!("cmq-host: no log flushing thread ({err}): log lines may lag");
        }
        let panic_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            flush();
            panic_hook(info);
        }));
        Stderr
    }
}

/// Writes every buffered line to standard error.
pub(crate) fn flush() {
    let mut buffer = BUFFER.lock().unwrap_or_else(PoisonError::into_inner);
    write_out(&mut buffer);
}

fn write_out(buffer: &mut Vec<u8>) {
    if buffer.is_empty() {
        return;
    }
    // Nowhere else to report a failure to write the log.
    let _ = std::io::stderr().lock().write_all(buffer);
    buffer.clear();
}

/// One event's line, formatted whole by the subscriber and written to the buffer once.
pub(crate) struct Line {
    /// Warnings and errors are written at once, with what waits before them.
    urgent: bool,
}

impl std::io::Write for Line {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut buffer = BUFFER.lock().unwrap_or_else(PoisonError::into_inner);
        buffer.extend_from_slice(bytes);
        if self.urgent || buffer.len() >= FLUSH_AT {
            write_out(&mut buffer);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line { urgent: true }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line {
        Line {
            urgent: *meta.level() <= Level::WARN,
        }
    }
}
