//! Properties of the parser over arbitrary input: it never panics, every rejection is
//! a one-line reason, and a JSON message survives serialise-then-parse unchanged.

use cmq_message::{ExpectedFormat, Format, Message, PushHeaders, parse};
use proptest::prelude::*;

fn expected_format() -> impl Strategy<Value = ExpectedFormat> {
    prop_oneof![
        Just(ExpectedFormat::Auto),
        Just(ExpectedFormat::Json),
        Just(ExpectedFormat::Simplified)
    ]
}

fn headers() -> impl Strategy<Value = PushHeaders> {
    (
        proptest::option::of(".{0,20}"),
        proptest::option::of(".{0,20}"),
        proptest::option::of(".{0,40}"),
    )
        .prop_map(|(request_id, message_id, message_tag)| PushHeaders {
            request_id,
            message_id,
            message_tag,
        })
}

/// Bodies that are random bytes, or JSON objects built from CMQ's keys with values of
/// any type, so that the JSON paths are reached too.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let key = prop_oneof![
        Just("TopicOwner"),
        Just("topicName"),
        Just("subscriptionName"),
        Just("msgId"),
        Just("msgBody"),
        Just("publishTime"),
        Just("other"),
    ];
    let value = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        ".{0,10}".prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
        Just("null".to_owned()),
        Just("[1,2]".to_owned()),
        Just("{}".to_owned()),
    ];
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        proptest::collection::vec((key, value), 0..8).prop_map(|pairs| {
            let fields: Vec<String> = pairs.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!("{{{}}}", fields.join(",")).into_bytes()
        }),
    ]
}

fn json_message() -> impl Strategy<Value = Message> {
    (
        "[0-9a-zA-Z]{1,20}",
        proptest::option::of("[0-9]{1,12}"),
        proptest::collection::vec("[a-z0-9]{1,16}", 0..5),
        "[0-9]{1,12}",
        "[A-Za-z][A-Za-z0-9_-]{0,63}",
        "[A-Za-z][A-Za-z0-9_-]{0,63}",
        any::<i64>(),
        ".{0,200}",
    )
        .prop_map(
            |(id, request_id, tags, owner, topic, subscription, time, body)| Message {
                message_id: id,
                request_id,
                tags,
                topic_owner: Some(owner),
                topic_name: Some(topic),
                subscription_name: Some(subscription),
                publish_time: Some(time),
                body: body.into_bytes(),
                format: Format::Json,
                attempt: None,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn any_input_parses_or_gives_a_one_line_reason(
        expected in expected_format(),
        headers in headers(),
        body in body(),
    ) {
        match parse(expected, &headers, &body) {
            Ok(message) => {
                prop_assert!(!message.message_id.trim().is_empty());
                if message.format == Format::Simplified {
                    prop_assert_eq!(message.body, body);
                }
            }
            Err(err) => {
                let reason = err.to_string();
                prop_assert!(!reason.is_empty() && !reason.contains('\n'), "{:?}", reason);
            }
        }
    }

    #[test]
    fn a_json_message_round_trips_through_its_envelope(message in json_message()) {
        let envelope = message.to_json_envelope().expect("a JSON message has an envelope");
        let headers = PushHeaders {
            request_id: message.request_id.clone(),
            message_id: None,
            message_tag: Some(message.tags.join(", ")),
        };
        let parsed = parse(ExpectedFormat::Json, &headers, &envelope).expect("its own envelope parses");
        prop_assert_eq!(parsed, message);
    }
}
