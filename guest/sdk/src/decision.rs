//! What a handler returns, and how it becomes the WIT `decision` the host maps to
//! the HTTP answer CMQ sees.

use crate::bindings::exports::cmq::push::handler as wit;

/// What to do with a message; the host answers CMQ accordingly.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Handled: the host answers `200 ok` and CMQ forgets the message.
    Ack,
    /// Not handled now: the host answers `503` and CMQ redelivers on the
    /// subscription's retry schedule. The reason goes to the host's log.
    Retry(String),
    /// Never going to be handled: the host answers `200 ok` so CMQ stops
    /// redelivering, and records the message as dropped with this reason.
    Drop(String),
}

impl Decision {
    /// [`Decision::Retry`] with this reason.
    pub fn retry(reason: impl Into<String>) -> Self {
        Decision::Retry(reason.into())
    }

    /// [`Decision::Drop`] with this reason.
    pub fn drop(reason: impl Into<String>) -> Self {
        Decision::Drop(reason.into())
    }
}

impl From<Decision> for wit::Decision {
    fn from(decision: Decision) -> Self {
        match decision {
            Decision::Ack => wit::Decision::Ack,
            Decision::Retry(reason) => wit::Decision::Retry(reason),
            Decision::Drop(reason) => wit::Decision::Drop(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_and_conversion_keep_the_reason() {
        assert_eq!(Decision::retry("later"), Decision::Retry("later".into()));
        assert_eq!(
            Decision::drop(String::from("never")),
            Decision::Drop("never".into())
        );

        assert!(matches!(
            wit::Decision::from(Decision::Ack),
            wit::Decision::Ack
        ));
        assert!(matches!(
            wit::Decision::from(Decision::retry("later")),
            wit::Decision::Retry(r) if r == "later"
        ));
        assert!(matches!(
            wit::Decision::from(Decision::drop("never")),
            wit::Decision::Drop(r) if r == "never"
        ));
    }
}
