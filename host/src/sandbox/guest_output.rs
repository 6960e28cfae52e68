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
    /// The first [`CAPTURE_LIMIT`] bytes.
    bytes: Vec<u8>,
    /// Bytes past them, counted and dropped.
    dropped: usize,
    /// Lines the guest printed, those of the dropped bytes included: the newlines, and
    /// a last line without one.
    newlines: usize,
    ends_in_newline: bool,
}

impl Captured {
    fn lines_printed(&self) -> usize {
        let unterminated = !self.ends_in_newline && (self.dropped > 0 || !self.bytes.is_empty());
        self.newlines + usize::from(unterminated)
    }
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
        captured.newlines += bytes.iter().filter(|&&b| b == b'\n').count();
        if let Some(&last) = bytes.last() {
            captured.ends_in_newline = last == b'\n';
        }
    }

    /// Writes what the guest printed to the log, one event per line, tagged with the
    /// message id and the stream's name.
    /// The capture is empty afterwards, for the instance's next message if it is kept.
    pub(crate) fn log(&self, route: &str, message_id: &str, stream: &'static str) {
        let mut captured = self.lock();
        // The lines logged, and where they end in the captured bytes.
        let mut logged = 0;
        let mut logged_bytes = 0;
        for line in captured
            .bytes
            .split_inclusive(|&b| b == b'\n')
            .take(LINE_LIMIT)
        {
            logged += 1;
            logged_bytes += line.len();
            let line = String::from_utf8_lossy(line);
            let line = line.strip_suffix('\n').unwrap_or(&line);
            let line = escaped(line.strip_suffix('\r').unwrap_or(line));
            tracing::event!(
                target: TARGET,
                tracing::Level::INFO,
                messaging.cmq.route = route,
                messaging.message.id = message_id,
                stream,
                "{line}"
            );
        }
        // Of everything the guest printed, not only of the captured bytes.
        let lines_left = captured.lines_printed().saturating_sub(logged);
        let bytes_left = captured.bytes.len() - logged_bytes + captured.dropped;
        if lines_left > 0 || bytes_left > 0 {
            tracing::event!(
                target: TARGET,
                tracing::Level::INFO,
                messaging.cmq.route = route,
                messaging.message.id = message_id,
                stream,
                "... output truncated: {lines_left} more lines and {bytes_left} bytes not logged"
            );
        }
        *captured = Captured::default();
    }
}

/// `text` as a guest wrote it, but for what could make it pass for the host's own log:
/// every control character other than tab (a `\r` would let a line begin anew on a
/// terminal) and the bidirectional and line-separating marks (which reorder what a
/// reader sees) are written as escapes, `\r` or `\u{202e}`.
pub(crate) fn escaped(text: &str) -> std::borrow::Cow<'_, str> {
    let hidden = |c: char| {
        (c.is_control() && c != '\t')
            || matches!(
                c,
                '\u{061c}'
                    | '\u{200e}'
                    | '\u{200f}'
                    | '\u{202a}'..='\u{202e}'
                    | '\u{2066}'..='\u{2069}'
                    | '\u{2028}'
                    | '\u{2029}'
            )
    };
    if !text.contains(hidden) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            c if hidden(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
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
    fn what_could_pass_for_the_hosts_log_is_escaped() {
        assert_eq!(escaped("plain\ttext é"), "plain\ttext é");
        assert_eq!(
            escaped("x\r2030-01-01T00:00:00Z ERROR cmq_host: fake"),
            "x\\r2030-01-01T00:00:00Z ERROR cmq_host: fake"
        );
        assert_eq!(
            escaped("a\u{b}b\u{c}c\u{1b}[31m"),
            "a\\u{b}b\\u{c}c\\u{1b}[31m"
        );
        assert_eq!(escaped("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(escaped("one\u{2028}two"), "one\\u{2028}two");
    }

    #[test]
    fn the_lines_left_out_count_everything_printed() {
        let output = GuestOutput::default();
        let mut printed = 0;
        for i in 0..100_000 {
            let line = format!("flood line {i}\n");
            printed += line.len();
            output.append(line.as_bytes());
        }
        let captured = output.lock();
        assert_eq!(captured.lines_printed(), 100_000);
        assert_eq!(captured.bytes.len() + captured.dropped, printed);
        drop(captured);

        let partial = GuestOutput::default();
        partial.append(b"one\ntwo");
        assert_eq!(partial.lock().lines_printed(), 2);
        assert_eq!(GuestOutput::default().lock().lines_printed(), 0);
    }

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
