//! A guest's stdout or stderr: captured per message, bounded, and written to the host's
//! log tagged with the message id once the guest is done.
//!
//! Writes never fail and never block, so a guest that floods its output is not broken by
//! it; bytes past [`CAPTURE_LIMIT`] are counted and dropped.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// The `tracing` target of the lines a guest printed.
pub const TARGET: &str = "cmq_host::guest";

/// Bytes of one stream kept per message.
pub(crate) const CAPTURE_LIMIT: usize = 16 << 10;

/// Lines of one stream logged per message.
const LINE_LIMIT: usize = 64;

/// One guest output stream; clones share the same buffer.
#[derive(Debug, Clone, Default)]
pub(crate) struct GuestOutput {
    captured: Arc<Mutex<Captured>>,
}

#[derive(Debug, Default)]
struct Captured {
    bytes: Vec<u8>,
    dropped: usize,
}

impl GuestOutput {
    fn lock(&self) -> MutexGuard<'_, Captured> {
        // A poisoned lock only means another writer panicked mid-append; the bytes are
        // still worth logging.
        self.captured
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn append(&self, bytes: &[u8]) {
        let mut captured = self.lock();
        let room = CAPTURE_LIMIT.saturating_sub(captured.bytes.len());
        let kept = bytes.len().min(room);
        captured.bytes.extend_from_slice(&bytes[..kept]);
        captured.dropped += bytes.len() - kept;
    }

    /// Writes what the guest printed to the log, one event per line, tagged with the
    /// message id and the stream's name.
    pub(crate) fn log(&self, route: &str, message_id: &str, stream: &'static str) {
        let captured = self.lock();
        let text = String::from_utf8_lossy(&captured.bytes);
        let mut lines = text.lines();
        for line in lines.by_ref().take(LINE_LIMIT) {
            tracing::event!(
                target: TARGET,
                tracing::Level::INFO,
                messaging.cmq.route = route,
                messaging.message.id = message_id,
                stream,
                "{line}"
            );
        }
        let lines_left = lines.count();
        if lines_left > 0 || captured.dropped > 0 {
            tracing::event!(
                target: TARGET,
                tracing::Level::INFO,
                messaging.cmq.route = route,
                messaging.message.id = message_id,
                stream,
                "... output truncated: {lines_left} more lines and {} bytes not logged",
                captured.dropped
            );
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(CAPTURE_LIMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_bytes_and_counts_the_rest() {
        let output = GuestOutput::default();
        output.append(&vec![b'a'; CAPTURE_LIMIT - 1]);
        output.append(b"bcd");
        let captured = output.lock();
        assert_eq!(captured.bytes.len(), CAPTURE_LIMIT);
        assert_eq!(captured.bytes.last(), Some(&b'b'));
        assert_eq!(captured.dropped, 2);
    }
}
