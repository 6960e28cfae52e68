//! The pushed message as a handler sees it: the WIT record converted into
//! [`cmq_message::Message`], the same type the host parses pushes into, with helpers
//! to read the body ([`Message::body_str`], [`Message::body_json`], [`Message::has_tag`]).

pub use cmq_message::{Format, Message};

use crate::bindings::exports::cmq::push::handler as wit;

/// Converts the WIT record (moving its fields, no copies).
pub(crate) fn from_wit(msg: wit::Message) -> Message {
    Message {
        message_id: msg.message_id,
        request_id: msg.request_id,
        tags: msg.tags,
        topic_owner: msg.topic_owner,
        topic_name: msg.topic_name,
        subscription_name: msg.subscription_name,
        publish_time: msg.publish_time,
        body: msg.body,
        format: match msg.format {
            wit::Format::Json => Format::Json,
            wit::Format::Simplified => Format::Simplified,
        },
        attempt: msg.attempt,
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
            attempt: Some(3),
        }
    }

    #[test]
    fn every_field_survives_the_conversion() {
        let msg = from_wit(wit_message());
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
                attempt: Some(3),
            }
        );
        let simplified = wit::Message {
            format: wit::Format::Simplified,
            ..wit_message()
        };
        assert_eq!(from_wit(simplified).format, Format::Simplified);
    }
}
