//! Sizes on the command line and in the config: `65536`, `64KiB`, `64MiB`, `1GiB`.

use std::fmt;
use std::str::FromStr;

/// A number of bytes, parsed from a plain count or one with a binary unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(usize);

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
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0)
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
}
