//! The types of one CMQ push: the headers it came with, the format it used, and the
//! [`Message`] it carries. [`Message`] mirrors the `message` record of `wit/cmq-push.wit`
//! field for field, so the host can convert one into the other without decisions.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::error::UnknownFormat;

/// Header carrying the id of this push attempt.
pub const HEADER_REQUEST_ID: &str = "x-cmq-request-id";
/// Header carrying the message id (the only place it is in a SIMPLIFIED push).
pub const HEADER_MESSAGE_ID: &str = "x-cmq-message-id";
/// Header carrying the message's tags, comma-separated (`a, b`).
pub const HEADER_MESSAGE_TAG: &str = "x-cmq-message-tag";

/// The format one push arrived in (the subscription's `NotifyContentFormat`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Format {
    /// The body was CMQ's JSON envelope; the message is its `msgBody`. CMQ's default.
    #[default]
    Json,
    /// The body was the message itself; metadata came from the `x-cmq-*` headers.
    Simplified,
}

impl Format {
    /// The lowercase name, as `ExpectedFormat` spells the same format.
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Simplified => "simplified",
        }
    }
}

/// The format an endpoint expects its pushes in.
///
/// Parses from `"auto"`, `"json"` or `"simplified"` (ASCII case ignored, so CMQ's own
/// `JSON` and `SIMPLIFIED` work too) and displays as the lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExpectedFormat {
    /// Decide per push: a JSON object carrying all six envelope keys is a JSON push,
    /// anything else is SIMPLIFIED.
    #[default]
    Auto,
    /// Every push must be a JSON envelope.
    Json,
    /// Every push is SIMPLIFIED, even when the body happens to look like an envelope.
    Simplified,
}

impl ExpectedFormat {
    /// The lowercase name, as accepted by [`FromStr`].
    fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Json => "json",
            Self::Simplified => "simplified",
        }
    }
}

impl FromStr for ExpectedFormat {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Auto, Self::Json, Self::Simplified]
            .into_iter()
            .find(|format| format.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownFormat(s.to_owned()))
    }
}

impl fmt::Display for ExpectedFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The `x-cmq-*` headers of one push, as the host read them (`None` when absent).
///
/// Values are taken raw: [`parse`](crate::parse) trims them and treats empty ones as
/// absent where that matters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushHeaders {
    /// The `x-cmq-request-id` header.
    pub request_id: Option<String>,
    /// The `x-cmq-message-id` header.
    pub message_id: Option<String>,
    /// The `x-cmq-message-tag` header.
    pub message_tag: Option<String>,
}

/// One message, as CMQ pushed it. Mirrors the WIT `message` record.
///
/// `Default` gives an empty JSON-format message, handy in a handler's unit tests:
///
/// ```
/// let msg = cmq_message::Message {
///     message_id: "6942316962".into(),
///     tags: vec!["a".into(), "b".into()],
///     body: b"test message".to_vec(),
///     ..Default::default()
/// };
/// assert!(msg.has_tag("b"));
/// assert_eq!(msg.body_str(), Some("test message"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// The message id (`msgId`, or the `x-cmq-message-id` header), trimmed and never
    /// empty. The same id arrives again when CMQ redelivers.
    pub message_id: String,
    /// The id of this push attempt (`x-cmq-request-id`), trimmed; `None` when absent
    /// or empty.
    pub request_id: Option<String>,
    /// The message's tags (`x-cmq-message-tag`); empty when it has none.
    pub tags: Vec<String>,
    /// The topic owner's APPID (`TopicOwner`), as a decimal string when CMQ sent a
    /// number. JSON format only.
    pub topic_owner: Option<String>,
    /// The topic name (`topicName`). JSON format only.
    pub topic_name: Option<String>,
    /// The subscription name (`subscriptionName`). JSON format only.
    pub subscription_name: Option<String>,
    /// The publish time (`publishTime`), unit as CMQ sends it. JSON format only.
    pub publish_time: Option<i64>,
    /// The message body, byte for byte: `msgBody`'s UTF-8 bytes in JSON format, the
    /// whole request body in SIMPLIFIED (which need not be UTF-8).
    pub body: Vec<u8>,
    /// The format the push arrived in.
    pub format: Format,
    /// Which delivery of this message this is, counted from 1 by `cmq-host`'s delivery
    /// store across CMQ's redeliveries; `None` when nothing counts them (parsing alone
    /// never does).
    pub attempt: Option<u32>,
}

/// CMQ's JSON envelope, keys in the documented order and casing.
#[derive(Serialize)]
struct Envelope<'a> {
    // Written as a string: the documented type is String, and a string keeps owners
    // such as "0100" intact, which a number would not.
    #[serde(rename = "TopicOwner")]
    topic_owner: &'a str,
    #[serde(rename = "topicName")]
    topic_name: &'a str,
    #[serde(rename = "subscriptionName")]
    subscription_name: &'a str,
    #[serde(rename = "msgId")]
    msg_id: &'a str,
    #[serde(rename = "msgBody")]
    msg_body: &'a str,
    #[serde(rename = "publishTime")]
    publish_time: i64,
}

impl Message {
    /// The body's bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body as text, or `None` when it is not UTF-8 (only possible in SIMPLIFIED).
    pub fn body_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// The body parsed as JSON into `T` (for example a type deriving
    /// `serde::Deserialize`).
    ///
    /// ```
    /// let msg = cmq_message::Message { body: br#"{"id": 7}"#.to_vec(), ..Default::default() };
    /// let order: serde_json::Value = msg.body_json()?;
    /// assert_eq!(order["id"], 7);
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn body_json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// Whether the message carries exactly this tag (case-sensitive, as CMQ's tag
    /// filters match).
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    /// The JSON envelope CMQ would push for this message, so that parsing it (with the
    /// same headers) gives this message back.
    ///
    /// `None` when one of the JSON-only fields is `None` (as in a SIMPLIFIED message) or
    /// the body is not UTF-8, since the envelope cannot carry either. `format` itself
    /// is not consulted. `TopicOwner` is written as a string.
    pub fn to_json_envelope(&self) -> Option<Vec<u8>> {
        let envelope = Envelope {
            topic_owner: self.topic_owner.as_deref()?,
            topic_name: self.topic_name.as_deref()?,
            subscription_name: self.subscription_name.as_deref()?,
            msg_id: &self.message_id,
            msg_body: self.body_str()?,
            publish_time: self.publish_time?,
        };
        // Serialising plain strings and an integer cannot fail; `ok()` keeps it total.
        serde_json::to_vec(&envelope).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ParseError, parse};

    #[test]
    fn has_tag_matches_whole_tags_only() {
        let msg = json_message();
        assert!(msg.has_tag("a") && msg.has_tag("b"));
        assert!(!msg.has_tag("a, b") && !msg.has_tag("A"));
        assert!(!Message::default().has_tag(""));
    }

    #[test]
    fn body_json_reads_json_and_reports_other_bodies() {
        let msg = Message {
            body: br#"{"n": 3}"#.to_vec(),
            ..Default::default()
        };
        let value: serde_json::Value = msg.body_json().expect("valid JSON");
        assert_eq!(value["n"], 3);
        let text = Message {
            body: b"test message".to_vec(),
            ..Default::default()
        };
        assert!(text.body_json::<serde_json::Value>().is_err());
    }

    fn json_message() -> Message {
        Message {
            message_id: "6942316962".to_owned(),
            request_id: Some("2394928734".to_owned()),
            tags: vec!["a".to_owned(), "b".to_owned()],
            topic_owner: Some("100015036".to_owned()),
            topic_name: Some("MyTopic".to_owned()),
            subscription_name: Some("mysubscription".to_owned()),
            publish_time: Some(11_203_432),
            // Quotes, a backslash, a newline and non-ASCII, to exercise escaping.
            body: "say \"hi\"\\\n 你好".as_bytes().to_vec(),
            format: Format::Json,
            attempt: None,
        }
    }

    fn headers() -> PushHeaders {
        PushHeaders {
            request_id: Some("2394928734".to_owned()),
            message_id: Some("6942316962".to_owned()),
            message_tag: Some("a, b".to_owned()),
        }
    }

    #[test]
    fn header_names_are_cmqs() {
        assert_eq!(HEADER_REQUEST_ID, "x-cmq-request-id");
        assert_eq!(HEADER_MESSAGE_ID, "x-cmq-message-id");
        assert_eq!(HEADER_MESSAGE_TAG, "x-cmq-message-tag");
    }

    #[test]
    fn expected_format_round_trips_through_its_name() -> Result<(), UnknownFormat> {
        for format in [
            ExpectedFormat::Auto,
            ExpectedFormat::Json,
            ExpectedFormat::Simplified,
        ] {
            assert_eq!(format.to_string().parse::<ExpectedFormat>()?, format);
        }
        assert_eq!(ExpectedFormat::Auto.to_string(), "auto");
        assert_eq!(ExpectedFormat::Json.to_string(), "json");
        assert_eq!(ExpectedFormat::Simplified.to_string(), "simplified");
        Ok(())
    }

    #[test]
    fn expected_format_accepts_cmqs_uppercase_names() -> Result<(), UnknownFormat> {
        assert_eq!("JSON".parse::<ExpectedFormat>()?, ExpectedFormat::Json);
        assert_eq!(
            "SIMPLIFIED".parse::<ExpectedFormat>()?,
            ExpectedFormat::Simplified
        );
        Ok(())
    }

    #[test]
    fn expected_format_rejects_other_names_listing_the_three() {
        let err = "xml".parse::<ExpectedFormat>();
        assert_eq!(err, Err(UnknownFormat("xml".to_owned())));
        let text = UnknownFormat("xml".to_owned()).to_string();
        assert_eq!(
            text,
            r#"unknown push format "xml": expected "auto", "json" or "simplified""#
        );
        assert!("".parse::<ExpectedFormat>().is_err());
        assert!(" json".parse::<ExpectedFormat>().is_err());
    }

    #[test]
    fn expected_format_defaults_to_auto() {
        assert_eq!(ExpectedFormat::default(), ExpectedFormat::Auto);
    }

    #[test]
    fn body_str_is_none_only_for_non_utf8() {
        let mut message = json_message();
        assert_eq!(message.body_str(), Some("say \"hi\"\\\n 你好"));
        message.body = vec![0xff, 0x00, 0xfe];
        assert_eq!(message.body_str(), None);
        message.body = Vec::new();
        assert_eq!(message.body_str(), Some(""));
    }

    #[test]
    fn json_envelope_parses_back_to_the_same_message() -> Result<(), ParseError> {
        let message = json_message();
        let Some(envelope) = message.to_json_envelope() else {
            panic!("a JSON message with every field has an envelope");
        };
        for expected in [ExpectedFormat::Json, ExpectedFormat::Auto] {
            assert_eq!(parse(expected, &headers(), &envelope)?, message);
        }
        Ok(())
    }

    #[test]
    fn json_envelope_uses_cmqs_keys_in_order() {
        let mut message = json_message();
        message.body = b"test message".to_vec();
        assert_eq!(
            message.to_json_envelope().as_deref(),
            Some(
                br#"{"TopicOwner":"100015036","topicName":"MyTopic","subscriptionName":"mysubscription","msgId":"6942316962","msgBody":"test message","publishTime":11203432}"#
                    .as_slice()
            )
        );
    }

    #[test]
    fn json_envelope_is_none_without_json_fields_or_utf8_body() {
        let full = json_message();
        let without: [fn(&mut Message); 5] = [
            |m| m.topic_owner = None,
            |m| m.topic_name = None,
            |m| m.subscription_name = None,
            |m| m.publish_time = None,
            |m| m.body = vec![0xff, 0x00, 0xfe],
        ];
        for (i, strip) in without.into_iter().enumerate() {
            let mut message = full.clone();
            strip(&mut message);
            assert_eq!(message.to_json_envelope(), None, "case {i}");
        }
    }
}
