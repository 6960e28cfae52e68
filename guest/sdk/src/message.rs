//! The pushed message as a handler sees it: the WIT record turned into owned,
//! documented Rust fields, plus helpers to read the body.

use serde::de::DeserializeOwned;

use crate::bindings::exports::cmq::push::handler as wit;

/// How CMQ encoded the push: the subscription's `NotifyContentFormat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Format {
    /// The push was a JSON envelope; [`Message::body`] is its `msgBody`, as UTF-8
    /// bytes, and the topic fields are set. CMQ's default.
    #[default]
    Json,
    /// The push body was the message itself, byte for byte (it need not be UTF-8);
    /// the metadata came from the `x-cmq-*` headers, so the topic fields are `None`.
    Simplified,
}

/// One message, as CMQ pushed it to the host.
///
/// `Default` gives an empty JSON-format message, handy in unit tests:
///
/// ```
/// let msg = cmq_guest::Message {
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
    /// The message id (`msgId`, or the `x-cmq-message-id` header). Opaque; the same
    /// id arrives again when CMQ redelivers the message.
    pub message_id: String,
    /// The id of this push attempt (`x-cmq-request-id`), when CMQ sent one.
    pub request_id: Option<String>,
    /// The message's tags (`x-cmq-message-tag: a, b` gives `["a", "b"]`); empty when
    /// the message has none.
    pub tags: Vec<String>,
    /// The topic owner's APPID (`TopicOwner`). JSON format only.
    pub topic_owner: Option<String>,
    /// The topic name (`topicName`). JSON format only.
    pub topic_name: Option<String>,
    /// The subscription name (`subscriptionName`). JSON format only.
    pub subscription_name: Option<String>,
    /// The publish time (`publishTime`), in the unit CMQ sends (undocumented).
    /// JSON format only.
    pub publish_time: Option<i64>,
    /// The message body, byte for byte.
    pub body: Vec<u8>,
    /// The format the push arrived in.
    pub format: Format,
}

impl Message {
    /// The body's bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body as text, or `None` when it is not UTF-8 (possible in the SIMPLIFIED
    /// format).
    pub fn body_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// The body parsed as JSON into `T`.
    ///
    /// `T` derives `Deserialize` through the SDK's re-export, so a handler crate
    /// needs no serde dependency of its own:
    ///
    /// ```
    /// use cmq_guest::serde::Deserialize;
    ///
    /// #[derive(Deserialize)]
    /// #[serde(crate = "cmq_guest::serde")]
    /// struct Order {
    ///     id: u64,
    /// }
    ///
    /// let msg = cmq_guest::Message { body: br#"{"id": 7}"#.to_vec(), ..Default::default() };
    /// let order: Order = msg.body_json()?;
    /// assert_eq!(order.id, 7);
    /// # Ok::<(), cmq_guest::serde_json::Error>(())
    /// ```
    pub fn body_json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// Whether the message carries exactly this tag (case-sensitive, as CMQ's tag
    /// filters match).
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

impl From<wit::Format> for Format {
    fn from(format: wit::Format) -> Self {
        match format {
            wit::Format::Json => Format::Json,
            wit::Format::Simplified => Format::Simplified,
        }
    }
}

impl From<wit::Message> for Message {
    fn from(msg: wit::Message) -> Self {
        Message {
            message_id: msg.message_id,
            request_id: msg.request_id,
            tags: msg.tags,
            topic_owner: msg.topic_owner,
            topic_name: msg.topic_name,
            subscription_name: msg.subscription_name,
            publish_time: msg.publish_time,
            body: msg.body,
            format: msg.format.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wit_message() -> wit::Message {
        wit::Message {
            message_id: "6942316962".into(),
            request_id: Some("2394928734".into()),
            tags: vec!["a".into(), "b".into()],
            topic_owner: Some("100015036".into()),
            topic_name: Some("MyTopic".into()),
            subscription_name: Some("mysubscription".into()),
            publish_time: Some(11203432),
            body: b"test message".to_vec(),
            format: wit::Format::Json,
        }
    }

    #[test]
    fn every_field_survives_the_conversion() {
        let msg = Message::from(wit_message());
        assert_eq!(
            msg,
            Message {
                message_id: "6942316962".into(),
                request_id: Some("2394928734".into()),
                tags: vec!["a".into(), "b".into()],
                topic_owner: Some("100015036".into()),
                topic_name: Some("MyTopic".into()),
                subscription_name: Some("mysubscription".into()),
                publish_time: Some(11203432),
                body: b"test message".to_vec(),
                format: Format::Json,
            }
        );
        let simplified = wit::Message {
            format: wit::Format::Simplified,
            ..wit_message()
        };
        assert_eq!(Message::from(simplified).format, Format::Simplified);
    }

    #[test]
    fn body_str_is_none_for_non_utf8() {
        let msg = Message {
            body: vec![0xff, 0xfe, b'a'],
            ..Default::default()
        };
        assert_eq!(msg.body(), &[0xff, 0xfe, b'a']);
        assert_eq!(msg.body_str(), None);
    }

    #[test]
    fn body_json_parses_and_reports_errors() {
        let msg = Message {
            body: br#"{"n": 3}"#.to_vec(),
            ..Default::default()
        };
        let value: serde_json::Value = msg.body_json().expect("valid JSON");
        assert_eq!(value["n"], 3);

        let bad = Message {
            body: b"test message".to_vec(),
            ..Default::default()
        };
        assert!(bad.body_json::<serde_json::Value>().is_err());
    }

    #[test]
    fn has_tag_matches_whole_tags_only() {
        let msg = Message::from(wit_message());
        assert!(msg.has_tag("a"));
        assert!(msg.has_tag("b"));
        assert!(!msg.has_tag("a, b"));
        assert!(!msg.has_tag("A"));
        assert!(!Message::default().has_tag(""));
    }
}
