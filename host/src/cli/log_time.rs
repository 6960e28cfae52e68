//! A log line's time: the same bytes as tracing-subscriber's `SystemTime` timer, without
//! working out the date from the calendar for every line (measured: BENCHMARKS.md, "A
//! push's log line, with instances reused").

use std::cell::Cell;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

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
    use std::time::Duration;

    use tracing_subscriber::fmt::time::SystemTime as DefaultTime;

    use super::*;

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
