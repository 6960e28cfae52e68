//! How a log line is written: the same bytes as tracing-subscriber's defaults (its
//! `SystemTime` timer and `DefaultFields`), at a fraction of the cost for the fields a
//! message's line is made of. Every push writes one line, and the defaults took a tenth
//! of the host's CPU with instances reused (measured: BENCHMARKS.md): each field went
//! through `core::fmt` and terminal styling even with colours off, and each line's time
//! was worked out from the calendar again.
//!
//! Only plain text is written this way: a line in colours (a terminal), the `message`
//! field and any value that is not a string, a whole number or a flag is written by
//! `DefaultFields` itself.

use std::cell::Cell;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};
use tracing_subscriber::fmt::time::FormatTime;

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

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.default(field, |visitor| visitor.record_error(field, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.default(field, |visitor| visitor.record_debug(field, value));
    }
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

/// A line's time, in UTC to the microsecond (`2026-12-03T18:07:49.370407Z`), as
/// tracing-subscriber's `SystemTime` writes it for a clock between 1970 and 9999
/// (outside, the line says `<unknown time>`). The date and time to the second are
/// worked out once a second on each thread.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LogTime;

/// `YYYY-MM-DDTHH:MM:SS.`, the part of a time that changes once a second.
type SecondPrefix = [u8; 20];

thread_local! {
    /// The second last written on this thread, and its prefix.
    static LAST_SECOND: Cell<(u64, SecondPrefix)> = const { Cell::new((u64::MAX, [0; 20])) };
}

impl FormatTime for LogTime {
    fn format_time(&self, writer: &mut Writer<'_>) -> fmt::Result {
        write_time(writer, SystemTime::now())
    }
}

/// `time` as [`LogTime`] writes it.
fn write_time(writer: &mut impl fmt::Write, time: SystemTime) -> fmt::Result {
    let since_epoch = time.duration_since(UNIX_EPOCH).map_err(|_| fmt::Error)?;
    let seconds = since_epoch.as_secs();
    let prefix = LAST_SECOND.with(|last| {
        let (second, prefix) = last.get();
        if second == seconds {
            return Some(prefix);
        }
        let prefix = second_prefix(seconds)?;
        last.set((seconds, prefix));
        Some(prefix)
    });
    let mut line = [0u8; 27];
    line[..20].copy_from_slice(&prefix.ok_or(fmt::Error)?);
    digits(&mut line[20..26], since_epoch.subsec_micros());
    line[26] = b'Z';
    writer.write_str(std::str::from_utf8(&line).map_err(|_| fmt::Error)?)
}

/// The date and time to the second of `seconds` since the epoch, with the `.` before
/// the fraction; none past the year 9999.
fn second_prefix(seconds: u64) -> Option<SecondPrefix> {
    let days = seconds / 86_400;
    let of_day = (seconds % 86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    if year > 9999 {
        return None;
    }
    let mut prefix = *b"0000-00-00T00:00:00.";
    digits(&mut prefix[0..4], year);
    digits(&mut prefix[5..7], month);
    digits(&mut prefix[8..10], day);
    digits(&mut prefix[11..13], of_day / 3600);
    digits(&mut prefix[14..16], of_day / 60 % 60);
    digits(&mut prefix[17..19], of_day % 60);
    Some(prefix)
}

/// The proleptic Gregorian year, month and day `days` after 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, for days from the epoch on).
fn civil_from_days(days: u64) -> (u32, u32, u32) {
    let days = days + 719_468;
    let era = days / 146_097;
    let of_era = days % 146_097;
    let year_of_era = (of_era - of_era / 1460 + of_era / 36_524 - of_era / 146_096) / 365;
    let day_of_year = of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year as u32, month as u32, day as u32)
}

/// `value` in decimal, zero-padded to fill `out`.
fn digits(out: &mut [u8], mut value: u32) {
    for digit in out.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::fmt::format::DefaultFields;
    use tracing_subscriber::fmt::time::SystemTime as DefaultTime;

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

    /// Events with every kind of field a line holds, strings that need escaping among
    /// them, written through `fields` (with colours when `ansi`), without times.
    fn lines<F>(fields: F, ansi: bool) -> String
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
        tracing::subscriber::with_default(subscriber, || {
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
        });
        let written = out.0.lock().unwrap().clone();
        String::from_utf8(written).unwrap()
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

    fn ours(time: SystemTime) -> String {
        let mut out = String::new();
        write_time(&mut out, time).unwrap();
        out
    }

    #[test]
    fn times_are_written_as_the_default_writes_them() {
        let at = |seconds: u64, micros: u64| {
            ours(UNIX_EPOCH + Duration::from_secs(seconds) + Duration::from_micros(micros))
        };
        // `date -u -d @SECONDS +%FT%T`
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400, 7), "2000-02-29T00:00:00.000007Z");
        assert_eq!(at(1_796_320_069, 370_407), "2026-12-03T17:47:49.370407Z");
        assert_eq!(at(1_796_320_069, 999_999), "2026-12-03T17:47:49.999999Z");
        // The next second on the same thread: the kept prefix is not reused.
        assert_eq!(at(1_796_320_070, 0), "2026-12-03T17:47:50.000000Z");
        assert_eq!(at(4_107_542_399, 1), "2100-02-28T23:59:59.000001Z");
        assert_eq!(at(253_402_300_799, 0), "9999-12-31T23:59:59.000000Z");
        let mut past = String::new();
        assert!(write_time(&mut past, UNIX_EPOCH + Duration::from_secs(253_402_300_800)).is_err());

        // Now, between two of the default's: same width, so the text sorts as the time.
        let default_now = || {
            let mut out = String::new();
            DefaultTime.format_time(&mut Writer::new(&mut out)).unwrap();
            out
        };
        let before = default_now();
        let now = ours(SystemTime::now());
        let after = default_now();
        assert_eq!(now.len(), before.len());
        assert!(before <= now && now <= after, "{before} {now} {after}");
    }
}
