//! Sizes, durations and dedupe windows as operators write them, on the command line and
//! in the config alike: `64MiB`, `10s`, `24h`, `off`. Each parses and prints the same
//! text, so the defaults `--help` shows are the options' own.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A number of bytes, parsed from a plain count or one with a binary unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub usize);

impl ByteSize {
    /// The count of bytes.
    pub fn bytes(self) -> usize {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let shift = match unit.trim() {
            "" | "B" => 0,
            "KiB" => 10,
            "MiB" => 20,
            "GiB" => 30,
            other => {
                return Err(format!(
                    "unknown unit {other:?}: use B, KiB, MiB or GiB (e.g. 64MiB)"
                ));
            }
        };
        let count: usize = digits.parse().map_err(|_| {
            format!("{text:?} is not a size: use a number with an optional unit, e.g. 64MiB")
        })?;
        count
            .checked_mul(1 << shift)
            .map(ByteSize)
            .ok_or_else(|| format!("{text:?} is too large"))
    }
}

impl fmt::Display for ByteSize {
    /// In the largest unit that divides it: `64MiB`, `1536KiB`, `100`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
            if self.0 != 0 && self.0.is_multiple_of(1 << shift) {
                return write!(f, "{}{unit}", self.0 >> shift);
            }
        }
        write!(f, "{}", self.0)
    }
}

/// A duration such as `10s`, `500ms` or `24h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(text)
            .map(HumanDuration)
            .map_err(|err| {
                format!("{text:?} is not a duration ({err}): write e.g. 10s, 500ms, 24h")
            })
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// A dedupe window: a duration, or `off` (so is a zero duration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupeWindow(pub Option<Duration>);

impl FromStr for DedupeWindow {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "off" {
            return Ok(DedupeWindow(None));
        }
        let window = text.parse::<HumanDuration>()?.0;
        Ok(DedupeWindow((!window.is_zero()).then_some(window)))
    }
}

impl fmt::Display for DedupeWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("off"),
            Some(window) => HumanDuration(window).fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counts_and_binary_units() {
        assert_eq!("65536".parse(), Ok(ByteSize(65536)));
        assert_eq!("64KiB".parse(), Ok(ByteSize(64 << 10)));
        assert_eq!("64MiB".parse(), Ok(ByteSize(64 << 20)));
        assert_eq!(" 1 GiB ".parse(), Ok(ByteSize(1 << 30)));
    }

    #[test]
    fn refuses_unknown_units_and_garbage() {
        assert!(
            "64MB"
                .parse::<ByteSize>()
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(
            "MiB"
                .parse::<ByteSize>()
                .unwrap_err()
                .contains("not a size")
        );
        assert!("99999999999999999999GiB".parse::<ByteSize>().is_err());
    }

    #[test]
    fn each_prints_what_it_parses_from() {
        for text in ["64MiB", "1GiB", "1536KiB", "100", "0"] {
            assert_eq!(
                text.parse::<ByteSize>().map(|s| s.to_string()),
                Ok(text.into())
            );
        }
        for text in ["10s", "500ms", "1day", "1h 30m"] {
            let parsed: HumanDuration = text.parse().expect("a duration");
            assert_eq!(parsed.to_string().parse::<HumanDuration>(), Ok(parsed));
        }
        assert_eq!("off".parse::<DedupeWindow>(), Ok(DedupeWindow(None)));
        assert_eq!("0s".parse::<DedupeWindow>(), Ok(DedupeWindow(None)));
        assert_eq!(DedupeWindow(None).to_string(), "off");
        assert_eq!(
            "24h".parse::<DedupeWindow>().map(|w| w.to_string()),
            Ok("1day".into())
        );
        assert!(
            "soon"
                .parse::<HumanDuration>()
                .unwrap_err()
                .contains("not a duration")
        );
    }
}
