//! What a handler returns when it cannot decide: an error, which becomes
//! [`Decision::Retry`](crate::Decision::Retry) with its text, so that `?` works in a
//! handler and CMQ delivers the message again later.

use std::fmt;

use crate::Decision;

/// A handler's result: its [`Decision`], or an [`Error`] that asks for a retry.
pub type Result<T = Decision, E = Error> = core::result::Result<T, E>;

/// Why a handler could not decide: its text is the retry's reason, in the host's log.
///
/// Any `std::error::Error` converts into it (so `?` works on `serde_json`, `std::io`
/// and other errors), its sources appended: `reading the order: expected value at line
/// 1 column 1`. [`Error::msg`] makes one from text. An error that redelivering cannot
/// mend (a body that will never parse) is better answered with an explicit
/// [`Decision::drop`].
pub struct Error {
    message: String,
}

impl Error {
    /// An error with this text.
    pub fn msg(message: impl fmt::Display) -> Error {
        Error {
            message: message.to_string(),
        }
    }

    /// This error with `context` before it: `context: error`.
    pub fn context(self, context: impl fmt::Display) -> Error {
        Error {
            message: format!("{context}: {}", self.message),
        }
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for Error {
    fn from(error: E) -> Error {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Error { message }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({:?})", self.message)
    }
}

/// The decision a handler's result stands for: an error is a retry with its text.
pub(crate) fn decided(result: Result) -> Decision {
    result.unwrap_or_else(|error| Decision::Retry(error.message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("reading the order")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn an_error_is_a_retry_with_its_text_and_sources() {
        let error = Error::from(Outer(std::io::Error::other("disk on fire")));
        assert_eq!(
            decided(Err(error)),
            Decision::retry("reading the order: disk on fire")
        );
        assert_eq!(
            decided(Err(Error::msg("later").context("stock service"))),
            Decision::retry("stock service: later")
        );
        assert_eq!(decided(Ok(Decision::Ack)), Decision::Ack);
    }
}
