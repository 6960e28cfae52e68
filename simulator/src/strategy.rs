//! CMQ's retry strategies (a subscription's `NotifyStrategy`): when a push that failed is
//! tried again, and when CMQ gives up.

use std::str::FromStr;
use std::time::Duration;

/// How CMQ retries a push that was not answered 2xx.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetryStrategy {
    /// `BACKOFF_RETRY`: 3 retries at one fixed, random interval, then the message is
    /// discarded. The documentation gives the interval as 10–20 s in one place and
    /// 19–29 s in another; the simulator draws it from 10–29 s.
    Backoff,
    /// `EXPONENTIAL_DECAY_RETRY` (the API's default): retries after 1, 2, 4, ... 256 s,
    /// then every 512 s, 176 retries in all (about a day), then discarded.
    #[default]
    ExponentialDecay,
}

/// Retries after the first attempt with `BACKOFF_RETRY`.
const BACKOFF_RETRIES: usize = 3;
/// Retries after the first attempt with `EXPONENTIAL_DECAY_RETRY`.
const EXPONENTIAL_RETRIES: usize = 176;
/// The longest interval of `EXPONENTIAL_DECAY_RETRY`.
const EXPONENTIAL_CAP: Duration = Duration::from_secs(512);

impl RetryStrategy {
    /// The waits before each retry of one message, in order: its length is the number of
    /// retries, so a message gets `len() + 1` attempts in all.
    pub fn intervals(self, rng: &mut fastrand::Rng) -> Vec<Duration> {
        match self {
            RetryStrategy::Backoff => {
                let interval = Duration::from_millis(rng.u64(10_000..=29_000));
                vec![interval; BACKOFF_RETRIES]
            }
            RetryStrategy::ExponentialDecay => (0..EXPONENTIAL_RETRIES)
                .map(|retry| Duration::from_secs(1u64 << retry.min(9)).min(EXPONENTIAL_CAP))
                .collect(),
        }
    }

    /// The name CMQ's API uses.
    pub fn api_name(self) -> &'static str {
        match self {
            RetryStrategy::Backoff => "BACKOFF_RETRY",
            RetryStrategy::ExponentialDecay => "EXPONENTIAL_DECAY_RETRY",
        }
    }
}

impl FromStr for RetryStrategy {
    type Err = String;

    /// Accepts CMQ's names (`BACKOFF_RETRY`, `EXPONENTIAL_DECAY_RETRY`) and the short
    /// `backoff` and `exponential`, in any case.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "backoff" | "backoff_retry" => Ok(RetryStrategy::Backoff),
            "exponential" | "exponential_decay_retry" => Ok(RetryStrategy::ExponentialDecay),
            _ => Err(format!(
                "unknown retry strategy {text:?} (expected backoff or exponential)"
            )),
        }
    }
}

impl std::fmt::Display for RetryStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.api_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_retries_three_times_at_one_interval() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..100 {
            let intervals = RetryStrategy::Backoff.intervals(&mut rng);
            assert_eq!(intervals.len(), 3);
            assert!(intervals.iter().all(|i| *i == intervals[0]));
            assert!((10..=29).contains(&intervals[0].as_secs()));
        }
    }

    #[test]
    fn exponential_decay_doubles_to_512_and_lasts_about_a_day() {
        let intervals = RetryStrategy::ExponentialDecay.intervals(&mut fastrand::Rng::new());
        assert_eq!(intervals.len(), 176);
        let secs: Vec<u64> = intervals.iter().map(Duration::as_secs).collect();
        assert_eq!(secs[..10], [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]);
        assert!(secs[10..].iter().all(|s| *s == 512));
        let total: u64 = secs.iter().sum();
        assert!(
            (80_000..=90_000).contains(&total),
            "{total} s is not about a day"
        );
    }

    #[test]
    fn strategies_parse_from_cmq_names_and_short_names() {
        assert_eq!("BACKOFF_RETRY".parse(), Ok(RetryStrategy::Backoff));
        assert_eq!("exponential".parse(), Ok(RetryStrategy::ExponentialDecay));
        assert!("linear".parse::<RetryStrategy>().is_err());
    }
}
