//! Why a push could not be turned into a [`Message`](crate::Message).
//!
//! Every message here is one lowercase line without a trailing period, so the host can
//! send it as-is as the body of its `400` answer and log it next to the request.

/// A push body or header set that can never become a message.
///
/// All variants mean the same thing to CMQ (the payload is unacceptable, retrying will
/// not help); they differ only in what they tell the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The body was expected to be a JSON envelope but is not JSON at all.
    #[error("body is not valid JSON: {0}")]
    NotJson(String),

    /// The body is JSON, but not an object (it is an array, a string, ...).
    #[error("body must be a JSON object, not {found}")]
    NotAnObject {
        /// What the body is instead, with its article ("an array").
        found: &'static str,
    },

    /// The JSON envelope lacks one of CMQ's keys.
    #[error("missing key \"{key}\" in JSON push")]
    MissingKey {
        /// The key, spelt as CMQ spells it (`TopicOwner`, `msgBody`, ...).
        key: &'static str,
    },

    /// A key of the JSON envelope holds a value of the wrong type.
    #[error("key \"{key}\" must be {expected}")]
    WrongType {
        /// The key, spelt as CMQ spells it.
        key: &'static str,
        /// The type it must have, with its article ("an integer").
        expected: &'static str,
    },

    /// A key of the JSON envelope that must carry text is empty or whitespace.
    #[error("key \"{key}\" must not be empty")]
    EmptyKey {
        /// The key, spelt as CMQ spells it.
        key: &'static str,
    },

    /// A SIMPLIFIED push came without a usable `x-cmq-message-id` header.
    #[error("no message id: the x-cmq-message-id header is missing or empty")]
    NoMessageId,

    /// The message id holds a control character (NUL, say): no CMQ id does, and
    /// a store cannot keep every one of them as text.
    #[error("the message id holds a control character")]
    ControlInMessageId,

    /// The `x-cmq-message-id` header is not UTF-8: read lossily, two different ids
    /// could become one.
    #[error("the x-cmq-message-id header is not UTF-8 text")]
    MessageIdNotText,
}

/// A string that names none of the [`ExpectedFormat`](crate::ExpectedFormat)s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
// `{0:?}` quotes and escapes the input, so the message stays on one line whatever the
// user typed.
#[error("unknown push format {0:?}: expected \"auto\", \"json\" or \"simplified\"")]
pub struct UnknownFormat(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    /// One of every variant, with the widest payloads the parser produces.
    fn every_error() -> Vec<ParseError> {
        vec![
            ParseError::NotJson("expected value at line 1 column 1".to_owned()),
            ParseError::NotAnObject { found: "an array" },
            ParseError::MissingKey { key: "msgBody" },
            ParseError::WrongType {
                key: "TopicOwner",
                expected: "a string or an integer",
            },
            ParseError::EmptyKey { key: "msgId" },
            ParseError::NoMessageId,
        ]
    }

    /// The host sends these texts as HTTP 400 bodies: keep them one plain line.
    #[test]
    fn every_message_is_one_lowercase_line_without_period() {
        let mut texts: Vec<String> = every_error().iter().map(ToString::to_string).collect();
        texts.push(UnknownFormat("xml\nx".to_owned()).to_string());
        for text in texts {
            assert!(!text.contains('\n') && !text.contains('\r'), "{text:?}");
            assert!(!text.ends_with('.'), "{text:?}");
            assert!(
                text.starts_with(|c: char| c.is_ascii_lowercase()),
                "{text:?}"
            );
        }
    }

    #[test]
    fn messages_name_the_key() {
        assert_eq!(
            ParseError::MissingKey { key: "msgBody" }.to_string(),
            r#"missing key "msgBody" in JSON push"#
        );
        assert_eq!(
            ParseError::WrongType {
                key: "publishTime",
                expected: "an integer"
            }
            .to_string(),
            r#"key "publishTime" must be an integer"#
        );
        assert_eq!(
            ParseError::NoMessageId.to_string(),
            "no message id: the x-cmq-message-id header is missing or empty"
        );
    }
}
