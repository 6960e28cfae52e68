//! How a log line's fields are written: the same bytes as tracing-subscriber's
//! `DefaultFields`, at a fraction of the cost for the fields a message's line is made of.
//! Every push writes one line, and the defaults took a tenth of the host's CPU with
//! instances reused (measured: BENCHMARKS.md): each field went through `core::fmt` and
//! terminal styling even with colours off. Its time: [`super::log_time`].
//!
//! Only plain text is written this way: a line in colours (a terminal), the `message`
//! field and any value that is not a string, a number or a flag is written by
//! `DefaultFields` itself.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};

/// A line's fields: `name=value` apart by spaces, the message first and bare, as
/// `DefaultFields` writes them.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LogFields;

impl<'a> MakeVisitor<Writer<'a>> for LogFields {
    type Visitor = FieldsVisitor<'a>;

    fn make_visitor(&self, writer: Writer<'a>) -> FieldsVisitor<'a> {
        FieldsVisitor {
            writer,
            is_empty: true,
            result: Ok(()),
        }
    }
}

/// Writes one line's fields.
pub(crate) struct FieldsVisitor<'a> {
    writer: Writer<'a>,
    /// No field written yet: the next needs no space before it.
    is_empty: bool,
    result: fmt::Result,
}

impl FieldsVisitor<'_> {
    /// Whether `field` is written here (else by `DefaultFields`): a plain name on a
    /// line without colours. `log.` fields are the `log` crate's metadata, which
    /// `DefaultFields` leaves out.
    fn plain(&self, field: &Field) -> bool {
        let name = field.name();
        self.result.is_ok()
            && !self.writer.has_ansi_escapes()
            && name != "message"
            && !name.starts_with("r#")
            && !name.starts_with("log.")
    }

    /// `name=`, after a space unless it is the first field.
    fn name(&mut self, field: &Field) -> fmt::Result {
        if self.is_empty {
            self.is_empty = false;
        } else {
            self.writer.write_char(' ')?;
        }
        self.writer.write_str(field.name())?;
        self.writer.write_char('=')
    }

    /// Hands `field` to `DefaultFields`'s own visitor.
    fn default(&mut self, field: &Field, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        let mut visitor = DefaultVisitor::new(self.writer.by_ref(), self.is_empty);
        record(&mut visitor);
        self.result = visitor.finish();
        self.is_empty = false;
    }

    /// A whole number or a flag: its `Debug` is its `Display`.
    fn display(&mut self, field: &Field, value: impl fmt::Display) {
        self.result = self
            .name(field)
            .and_then(|()| write!(self.writer, "{value}"));
    }
}

impl Visit for FieldsVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if !self.plain(field) {
            return self.default(field, |visitor| visitor.record_str(field, value));
        }
        self.result = self.name(field).and_then(|()| {
            // `Debug` quotes a string and escapes what is not printable ASCII, `"` and
            // `\`: a string with none of those is written as it is.
            if value
                .bytes()
                .all(|byte| matches!(byte, b' '..=b'~') && byte != b'"' && byte != b'\\')
            {
                self.writer.write_char('"')?;
                self.writer.write_str(value)?;
                self.writer.write_char('"')
            } else {
                write!(self.writer, "{value:?}")
            }
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if !self.plain(field) {
            return self.default(field, |visitor| visitor.record_u64(field, value));
        }
        self.display(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if !self.plain(field) {
            return self.default(field, |visitor| visitor.record_i64(field, value));
        }
        self.display(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if !self.plain(field) {
            return self.default(field, |visitor| visitor.record_bool(field, value));
        }
        self.display(field, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        let abs = value.abs();
        if self.plain(field) && (abs == 0.0 || (1e-4..1e16).contains(&abs)) {
            let mut buffer = ryu::Buffer::new();
            let text = buffer.format_finite(value);
            if !ryu_may_differ(value, text) {
                self.result = self.name(field).and_then(|()| self.writer.write_str(text));
                return;
            }
        }
        self.default(field, |visitor| visitor.record_f64(field, value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.default(field, |visitor| visitor.record_error(field, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.default(field, |visitor| visitor.record_debug(field, value));
    }
}

/// Whether `Debug` may write `value` otherwise than Ryū wrote it, as `text`. From 1e-4
/// up to 1e16 both write the shortest digits that read back as the number, in decimal
/// notation, with `.0` after a whole number (outside, `Debug` uses an exponent, and not
/// Ryū's); they differ only on a tie, two such digits as near as each other, where one
/// rounds half up and the other half to even. The number is then exactly midway, its
/// exact decimal one digit longer than `text`: a number of `n` binary digits after the
/// point has exactly `n` decimal digits after it. A push's duration, from nanoseconds,
/// has about fifty, and never ties.
fn ryu_may_differ(value: f64, text: &str) -> bool {
    let bits = value.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i64;
    let mantissa = bits & ((1 << 52) - 1);
    if mantissa == 0 && exponent == 0 {
        return false;
    }
    let (mantissa, exponent) = if exponent == 0 {
        (mantissa, -1074)
    } else {
        (mantissa | (1 << 52), exponent - 1075)
    };
    let binary_after_point = -(exponent + i64::from(mantissa.trailing_zeros()));
    let written_after_point = match text.split_once('.') {
        Some((_, "0")) | None => 0,
        Some((_, fraction)) => fraction.len() as i64,
    };
    binary_after_point == written_after_point + 1
}

impl VisitOutput<fmt::Result> for FieldsVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for FieldsVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.writer
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::fmt::format::DefaultFields;

    use super::*;

    /// What a subscriber wrote.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    /// What the events `emit` makes are written as through `fields` (with colours when
    /// `ansi`), without times.
    fn written<F>(fields: F, ansi: bool, emit: impl FnOnce()) -> String
    where
        F: for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static,
    {
        let out = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(out.clone())
            .with_ansi(ansi)
            .without_time()
            .fmt_fields(fields)
            .with_max_level(tracing::Level::TRACE)
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let written = out.0.lock().unwrap().clone();
        String::from_utf8(written).unwrap()
    }

    /// Events with every kind of field a line holds, strings that need escaping among
    /// them, written through `fields` (with colours when `ansi`), without times.
    fn lines<F>(fields: F, ansi: bool) -> String
    where
        F: for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static,
    {
        written(fields, ansi, || {
            let none: Option<&str> = None;
            let error = std::io::Error::other("a disk \"full\"");
            tracing::info!(
                route = "default",
                generation = 3u64,
                id = "m-1",
                missing = none,
                quoted = "say \"hi\"\\",
                lines = "a\nb\tc",
                unicode = "naïve ✓ \u{7}\u{1b}[31m",
                empty = "",
                negative = -7i64,
                flag = true,
                duration_ms = 0.325018,
                whole = 2.0f64,
                r#type = "raw",
                log.target = "skipped",
                debugged = ?vec![1, 2],
                shown = %"as shown",
                error = &error as &(dyn std::error::Error + 'static),
                "message handled: {} {:?}", "x\u{1b}[1m", "y"
            );
            tracing::warn!(first = "no message");
            tracing::info!("only a message");
            let span = tracing::info_span!("push", id = "s-1", count = 5u64);
            let _entered = span.enter();
            tracing::info!(inside = "a span");
        })
    }

    #[test]
    fn fields_are_written_as_the_default_writes_them() {
        for ansi in [false, true] {
            let ours = lines(LogFields, ansi);
            let theirs = lines(DefaultFields::new(), ansi);
            assert_eq!(ours, theirs, "ansi {ansi}");
        }
        assert!(lines(LogFields, false).contains("quoted=\"say \\\"hi\\\"\\\\\""));
    }

    /// One event a value of `values`, each as `duration_ms`, written through `fields`.
    fn numbers<F>(fields: F, values: &[f64]) -> String
    where
        F: for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static,
    {
        written(fields, false, || {
            for &duration_ms in values {
                tracing::info!(duration_ms);
            }
        })
    }

    #[test]
    fn numbers_are_written_as_the_default_writes_them() {
        let mut values = vec![
            0.0,
            -0.0,
            1.0,
            -2.5,
            123_456.0,
            1e-4,
            1e-4 - 1e-19,
            5e-5,
            9.999_999_999_999_998e15,
            1e16,
            1e-7,
            3e20,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        // Durations as a push's line has them (to the nanosecond, up to an hour), and
        // numbers of every size and precision, from a fixed sequence.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..50_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let nanos = (state >> 22) % 3_600_000_000_000;
            let duration_ms = Duration::from_nanos(nanos).as_secs_f64() * 1000.0;
            // A push's duration is written by Ryū (then compared with `Debug` below).
            let mut buffer = ryu::Buffer::new();
            assert!(!ryu_may_differ(duration_ms, buffer.format(duration_ms)) || duration_ms < 1e-4);
            values.push(duration_ms);
            let any = f64::from_bits(state);
            if any.is_finite() {
                values.push(any);
            }
        }
        let ours = numbers(LogFields, &values);
        let theirs = numbers(DefaultFields::new(), &values);
        for (ours, theirs) in ours.lines().zip(theirs.lines()) {
            assert_eq!(ours, theirs);
        }
        assert_eq!(ours.lines().count(), values.len());
        for expected in ["=0.0001", "=1e-7", "=123456.0", "=-0.0", "=NaN"] {
            let expected = format!("duration_ms{expected}");
            assert!(
                ours.lines().any(|line| line.ends_with(&expected)),
                "{expected}"
            );
        }
    }
}
