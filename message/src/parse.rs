//! Turning one push (its `x-cmq-*` headers and body) into a [`Message`]: CMQ's JSON
//! envelope, the SIMPLIFIED body, and the per-push choice between them in `Auto`.
//! Every input gives a message or a [`ParseError`]; nothing here panics.

use serde_json::{Map, Value};

use crate::error::ParseError;
use crate::message::{ExpectedFormat, Format, Message, PushHeaders};

const TOPIC_OWNER: &str = "TopicOwner";
const TOPIC_NAME: &str = "topicName";
const SUBSCRIPTION_NAME: &str = "subscriptionName";
const MSG_ID: &str = "msgId";
const MSG_BODY: &str = "msgBody";
const PUBLISH_TIME: &str = "publishTime";

/// The envelope's keys, in the documented order (the first missing one is reported).
const ENVELOPE_KEYS: [&str; 6] = [
    TOPIC_OWNER,
    TOPIC_NAME,
    SUBSCRIPTION_NAME,
    MSG_ID,
    MSG_BODY,
    PUBLISH_TIME,
];

/// Parse one push into a [`Message`].
///
/// - [`ExpectedFormat::Json`]: the body must be CMQ's JSON envelope; the message id is
///   its `msgId` (the `x-cmq-message-id` header is ignored) and extra keys are ignored.
/// - [`ExpectedFormat::Simplified`]: the body is the message byte for byte (even empty,
///   even not UTF-8); the message id comes from the `x-cmq-message-id` header.
/// - [`ExpectedFormat::Auto`]: a JSON object carrying all six envelope keys is parsed
///   as a JSON push (so a mistyped key is an error), unless the `x-cmq-message-id`
///   header names another message than its `msgId` (CMQ sends the id in both places:
///   such a body is a SIMPLIFIED message that happens to look like an envelope, and the
///   header's id is the one to trust); anything else, including a JSON object lacking
///   a key (likely the publisher's own payload), is SIMPLIFIED.
///
/// In both formats the request id and the tags come from the headers.
pub fn parse(
    expected: ExpectedFormat,
    headers: &PushHeaders,
    body: &[u8],
) -> Result<Message, ParseError> {
    match expected {
        ExpectedFormat::Json => {
            let object = match serde_json::from_slice(body) {
                Ok(Value::Object(object)) => object,
                Ok(other) => {
                    return Err(ParseError::NotAnObject {
                        found: describe(&other),
                    });
                }
                Err(err) => return Err(ParseError::NotJson(err.to_string())),
            };
            if let Some(key) = missing_key(&object) {
                return Err(ParseError::MissingKey { key });
            }
            from_envelope(object, headers)
        }
        ExpectedFormat::Simplified => from_simplified(headers, body),
        ExpectedFormat::Auto => match serde_json::from_slice(body) {
            Ok(Value::Object(object))
                if missing_key(&object).is_none() && !names_another_id(&object, headers) =>
            {
                from_envelope(object, headers)
            }
            _ => from_simplified(headers, body),
        },
    }
}

/// Split an `x-cmq-message-tag` header (`a, b`) into tags: split on `,`, trim each
/// piece, drop the empty ones (so `""` and `"a,,b, "` are handled).
pub fn parse_tags(header: &str) -> Vec<String> {
    header
        .split(',')
        .map(str::trim)
        .filter(|tag| !tag.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether the push's `x-cmq-message-id` header names another message than the
/// envelope's `msgId`.
/// A `msgId` that is not a non-empty string is left for the envelope's own checks to
/// report.
fn names_another_id(object: &Map<String, Value>, headers: &PushHeaders) -> bool {
    let header = headers.message_id.as_deref().and_then(trimmed);
    let body = object.get(MSG_ID).and_then(Value::as_str).and_then(trimmed);
    matches!((header, body), (Some(header), Some(body)) if header != body)
}

/// The first envelope key `object` lacks, if any.
fn missing_key(object: &Map<String, Value>) -> Option<&'static str> {
    ENVELOPE_KEYS
        .into_iter()
        .find(|key| !object.contains_key(*key))
}

/// Build a JSON-format message from an envelope already known to have all six keys.
/// Takes the map by value so `msgBody` (up to 1 MB) moves into the message uncopied.
fn from_envelope(
    mut object: Map<String, Value>,
    headers: &PushHeaders,
) -> Result<Message, ParseError> {
    let topic_owner = match take(&mut object, TOPIC_OWNER)? {
        Value::String(owner) => owner,
        // The docs say String, the official example sends a bare number: accept any
        // integer (i64 or u64), as its decimal string. A float is no APPID.
        Value::Number(number) if number.is_i64() || number.is_u64() => number.to_string(),
        _ => {
            return Err(ParseError::WrongType {
                key: TOPIC_OWNER,
                expected: "a string or an integer",
            });
        }
    };
    let topic_name = take_string(&mut object, TOPIC_NAME)?;
    let subscription_name = take_string(&mut object, SUBSCRIPTION_NAME)?;
    let message_id =
        trimmed(&take_string(&mut object, MSG_ID)?).ok_or(ParseError::EmptyKey { key: MSG_ID })?;
    let message_id = without_control(message_id)?;
    let body = take_string(&mut object, MSG_BODY)?.into_bytes();
    // `as_i64` is `None` for floats (even `1.0`), strings and integers past i64::MAX.
    let publish_time = take(&mut object, PUBLISH_TIME)?
        .as_i64()
        .ok_or(ParseError::WrongType {
            key: PUBLISH_TIME,
            expected: "an integer",
        })?;

    Ok(Message {
        message_id,
        request_id: request_id(headers),
        tags: tags(headers),
        topic_owner: Some(topic_owner),
        topic_name: Some(topic_name),
        subscription_name: Some(subscription_name),
        publish_time: Some(publish_time),
        body,
        format: Format::Json,
        attempt: None,
    })
}

/// Build a SIMPLIFIED message: the body as is, everything else from the headers.
fn from_simplified(headers: &PushHeaders, body: &[u8]) -> Result<Message, ParseError> {
    let message_id = headers
        .message_id
        .as_deref()
        .and_then(trimmed)
        .ok_or(ParseError::NoMessageId)?;
    let message_id = without_control(message_id)?;
    Ok(Message {
        message_id,
        request_id: request_id(headers),
        tags: tags(headers),
        topic_owner: None,
        topic_name: None,
        subscription_name: None,
        publish_time: None,
        body: body.to_vec(),
        format: Format::Simplified,
        attempt: None,
    })
}

/// Remove `key` from the envelope. Callers have checked that every key is present, but
/// answering `MissingKey` here keeps this total without an `unwrap`.
fn take(object: &mut Map<String, Value>, key: &'static str) -> Result<Value, ParseError> {
    object.remove(key).ok_or(ParseError::MissingKey { key })
}

/// Remove `key` from the envelope, requiring a string.
fn take_string(object: &mut Map<String, Value>, key: &'static str) -> Result<String, ParseError> {
    match take(object, key)? {
        Value::String(text) => Ok(text),
        _ => Err(ParseError::WrongType {
            key,
            expected: "a string",
        }),
    }
}

/// `id`, unless it holds a control character.
fn without_control(id: String) -> Result<String, ParseError> {
    if id.chars().any(char::is_control) {
        return Err(ParseError::ControlInMessageId);
    }
    Ok(id)
}

/// `value` trimmed, or `None` when nothing is left.
fn trimmed(value: &str) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

fn request_id(headers: &PushHeaders) -> Option<String> {
    headers.request_id.as_deref().and_then(trimmed)
}

fn tags(headers: &PushHeaders) -> Vec<String> {
    headers
        .message_tag
        .as_deref()
        .map(parse_tags)
        .unwrap_or_default()
}

/// What a non-object JSON value is, for [`ParseError::NotAnObject`].
fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented JSON push, byte for byte.
    const DOC_JSON: &[u8] = br#"{"TopicOwner":100015036,"topicName":"MyTopic","subscriptionName":"mysubscription","msgId":"6942316962","msgBody":"test message","publishTime":11203432}"#;

    /// The same message in SIMPLIFIED format.
    const DOC_SIMPLIFIED: &[u8] = b"test message";

    /// The documented headers.
    fn doc_headers() -> PushHeaders {
        PushHeaders {
            request_id: Some("2394928734".to_owned()),
            message_id: Some("6942316962".to_owned()),
            message_tag: Some("a, b".to_owned()),
        }
    }

    fn doc_json_message() -> Message {
        Message {
            message_id: "6942316962".to_owned(),
            request_id: Some("2394928734".to_owned()),
            tags: vec!["a".to_owned(), "b".to_owned()],
            topic_owner: Some("100015036".to_owned()),
            topic_name: Some("MyTopic".to_owned()),
            subscription_name: Some("mysubscription".to_owned()),
            publish_time: Some(11_203_432),
            body: b"test message".to_vec(),
            format: Format::Json,
            attempt: None,
        }
    }

    fn doc_simplified_message() -> Message {
        Message {
            topic_owner: None,
            topic_name: None,
            subscription_name: None,
            publish_time: None,
            format: Format::Simplified,
            attempt: None,
            ..doc_json_message()
        }
    }

    /// The documented envelope as a map, to edit one key at a time.
    fn doc_object() -> Map<String, Value> {
        match serde_json::from_slice(DOC_JSON) {
            Ok(Value::Object(object)) => object,
            other => panic!("the documented push is an object: {other:?}"),
        }
    }

    fn to_body(object: &Map<String, Value>) -> Vec<u8> {
        Value::Object(object.clone()).to_string().into_bytes()
    }

    #[test]
    fn documented_json_push_parses_in_json_and_auto() -> Result<(), ParseError> {
        for expected in [ExpectedFormat::Json, ExpectedFormat::Auto] {
            assert_eq!(
                parse(expected, &doc_headers(), DOC_JSON)?,
                doc_json_message()
            );
        }
        Ok(())
    }

    #[test]
    fn documented_simplified_push_parses_in_simplified_and_auto() -> Result<(), ParseError> {
        for expected in [ExpectedFormat::Simplified, ExpectedFormat::Auto] {
            assert_eq!(
                parse(expected, &doc_headers(), DOC_SIMPLIFIED)?,
                doc_simplified_message()
            );
        }
        Ok(())
    }

    #[test]
    fn simplified_keeps_an_envelope_shaped_body_as_is() -> Result<(), ParseError> {
        let message = parse(ExpectedFormat::Simplified, &doc_headers(), DOC_JSON)?;
        assert_eq!(message.format, Format::Simplified);
        assert_eq!(message.body, DOC_JSON);
        assert_eq!(message.topic_owner, None);
        Ok(())
    }

    #[test]
    fn auto_takes_an_envelope_whose_msg_id_differs_from_the_header_as_simplified()
    -> Result<(), ParseError> {
        // The envelope says 6942316962; the header names another message.
        let mut headers = doc_headers();
        headers.message_id = Some("other-id".to_owned());
        let message = parse(ExpectedFormat::Auto, &headers, DOC_JSON)?;
        assert_eq!(message.format, Format::Simplified);
        assert_eq!(message.message_id, "other-id");
        assert_eq!(message.body, DOC_JSON);
        // Without the header, or with the same id, it is a JSON push.
        headers.message_id = None;
        assert_eq!(
            parse(ExpectedFormat::Auto, &headers, DOC_JSON)?.format,
            Format::Json
        );
        headers.message_id = Some(" 6942316962 ".to_owned());
        assert_eq!(
            parse(ExpectedFormat::Auto, &headers, DOC_JSON)?.format,
            Format::Json
        );
        // JSON is JSON, whatever the header says.
        headers.message_id = Some("other-id".to_owned());
        assert_eq!(
            parse(ExpectedFormat::Json, &headers, DOC_JSON)?.message_id,
            "6942316962"
        );
        Ok(())
    }

    #[test]
    fn message_ids_with_control_characters_are_refused() {
        let mut object = doc_object();
        object.insert(MSG_ID.to_owned(), Value::from("a\u{0}b"));
        let body = serde_json::to_vec(&object).expect("serializes");
        let headers = PushHeaders::default();
        assert_eq!(
            parse(ExpectedFormat::Json, &headers, &body),
            Err(ParseError::ControlInMessageId)
        );
        let headers = PushHeaders {
            message_id: Some("a\tb".to_owned()),
            ..PushHeaders::default()
        };
        assert_eq!(
            parse(ExpectedFormat::Simplified, &headers, b"x"),
            Err(ParseError::ControlInMessageId)
        );
    }

    #[test]
    fn simplified_keeps_non_utf8_body_intact() -> Result<(), ParseError> {
        let body = [0xff, 0x00, 0xfe];
        for expected in [ExpectedFormat::Simplified, ExpectedFormat::Auto] {
            let message = parse(expected, &doc_headers(), &body)?;
            assert_eq!(message.body, body);
            assert_eq!(message.format, Format::Simplified);
            assert_eq!(message.body_str(), None);
        }
        Ok(())
    }

    #[test]
    fn simplified_accepts_an_empty_body() -> Result<(), ParseError> {
        for expected in [ExpectedFormat::Simplified, ExpectedFormat::Auto] {
            let message = parse(expected, &doc_headers(), b"")?;
            assert_eq!(message.body, b"");
            assert_eq!(message.format, Format::Simplified);
        }
        Ok(())
    }

    #[test]
    fn topic_owner_may_be_a_string() -> Result<(), ParseError> {
        let mut object = doc_object();
        object.insert(TOPIC_OWNER.to_owned(), Value::from("100015036"));
        for expected in [ExpectedFormat::Json, ExpectedFormat::Auto] {
            assert_eq!(
                parse(expected, &doc_headers(), &to_body(&object))?,
                doc_json_message()
            );
        }
        Ok(())
    }

    #[test]
    fn topic_owner_number_becomes_its_decimal_string() -> Result<(), ParseError> {
        for (owner, text) in [
            (Value::from(u64::MAX), "18446744073709551615"),
            (Value::from(-7), "-7"),
            (Value::from(0), "0"),
        ] {
            let mut object = doc_object();
            object.insert(TOPIC_OWNER.to_owned(), owner);
            let message = parse(ExpectedFormat::Json, &doc_headers(), &to_body(&object))?;
            assert_eq!(message.topic_owner.as_deref(), Some(text));
        }
        Ok(())
    }

    #[test]
    fn each_missing_key_is_named_in_json() {
        for key in ENVELOPE_KEYS {
            let mut object = doc_object();
            object.remove(key);
            assert_eq!(
                parse(ExpectedFormat::Json, &doc_headers(), &to_body(&object)),
                Err(ParseError::MissingKey { key }),
            );
            assert_eq!(
                ParseError::MissingKey { key }.to_string(),
                format!("missing key \"{key}\" in JSON push")
            );
        }
    }

    #[test]
    fn keys_are_case_sensitive() {
        // `topicOwner` is not `TopicOwner`: CMQ's casing is inconsistent but exact.
        let body = String::from_utf8_lossy(DOC_JSON).replace("TopicOwner", "topicOwner");
        assert_eq!(
            parse(ExpectedFormat::Json, &doc_headers(), body.as_bytes()),
            Err(ParseError::MissingKey { key: TOPIC_OWNER }),
        );
    }

    #[test]
    fn auto_treats_an_object_lacking_a_key_as_simplified() -> Result<(), ParseError> {
        for key in ENVELOPE_KEYS {
            let mut object = doc_object();
            object.remove(key);
            let body = to_body(&object);
            let message = parse(ExpectedFormat::Auto, &doc_headers(), &body)?;
            assert_eq!(message.format, Format::Simplified, "without {key}");
            assert_eq!(message.body, body);
        }
        Ok(())
    }

    #[test]
    fn auto_treats_user_json_as_simplified() -> Result<(), ParseError> {
        for body in [
            br#"{"order":42,"msgBody":"not an envelope"}"#.as_slice(),
            br#"[1, 2, 3]"#,
            br#""a json string""#,
            b"42",
            b"null",
            b"{",
        ] {
            let message = parse(ExpectedFormat::Auto, &doc_headers(), body)?;
            assert_eq!(
                message,
                Message {
                    body: body.to_vec(),
                    ..doc_simplified_message()
                }
            );
        }
        Ok(())
    }

    #[test]
    fn mistyped_keys_are_errors_in_json_and_auto() {
        let cases = [
            (PUBLISH_TIME, Value::from(1.5), "an integer"),
            (PUBLISH_TIME, Value::from(1.0), "an integer"),
            (PUBLISH_TIME, Value::from("11203432"), "an integer"),
            (PUBLISH_TIME, Value::from(u64::MAX), "an integer"),
            (PUBLISH_TIME, Value::Null, "an integer"),
            (TOPIC_OWNER, Value::from(1.5), "a string or an integer"),
            (TOPIC_OWNER, Value::Bool(true), "a string or an integer"),
            (TOPIC_OWNER, Value::Null, "a string or an integer"),
            (TOPIC_NAME, Value::from(1), "a string"),
            (SUBSCRIPTION_NAME, Value::Array(Vec::new()), "a string"),
            (MSG_ID, Value::from(6_942_316_962_u64), "a string"),
            (MSG_BODY, Value::Null, "a string"),
            (MSG_BODY, Value::Object(Map::new()), "a string"),
        ];
        for (key, value, expected_type) in cases {
            let mut object = doc_object();
            object.insert(key.to_owned(), value.clone());
            let body = to_body(&object);
            for expected in [ExpectedFormat::Json, ExpectedFormat::Auto] {
                assert_eq!(
                    parse(expected, &doc_headers(), &body),
                    Err(ParseError::WrongType {
                        key,
                        expected: expected_type
                    }),
                    "{key} = {value} in {expected}",
                );
            }
        }
    }

    #[test]
    fn a_float_publish_time_with_exponent_is_rejected() {
        let body = String::from_utf8_lossy(DOC_JSON).replace("11203432", "1.1203432e7");
        assert_eq!(
            parse(ExpectedFormat::Json, &doc_headers(), body.as_bytes())
                .map_err(|err| err.to_string()),
            Err(r#"key "publishTime" must be an integer"#.to_owned()),
        );
    }

    #[test]
    fn json_mode_rejects_json_that_is_not_an_object() {
        for (body, found) in [
            b"[1, 2]".as_slice(),
            b"\"test message\"",
            b"42",
            b"true",
            b"null",
        ]
        .into_iter()
        .zip(["an array", "a string", "a number", "a boolean", "null"])
        {
            assert_eq!(
                parse(ExpectedFormat::Json, &doc_headers(), body),
                Err(ParseError::NotAnObject { found }),
            );
        }
        assert_eq!(
            ParseError::NotAnObject { found: "an array" }.to_string(),
            "body must be a JSON object, not an array"
        );
    }

    #[test]
    fn json_mode_rejects_bodies_that_are_not_json() {
        for body in [
            b"test message".as_slice(),
            b"",
            b"{\"TopicOwner\":1",
            &[0xff, 0x00, 0xfe],
        ] {
            match parse(ExpectedFormat::Json, &doc_headers(), body) {
                Err(ParseError::NotJson(reason)) => {
                    assert!(!reason.is_empty() && !reason.contains('\n'), "{reason:?}");
                }
                other => panic!("{body:?} gave {other:?}"),
            }
        }
        // serde_json's own wording follows the prefix; only the prefix is ours to pin.
        let text = parse(ExpectedFormat::Json, &doc_headers(), b"test message")
            .map_err(|err| err.to_string());
        assert!(
            matches!(&text, Err(text) if text.starts_with("body is not valid JSON: ")),
            "{text:?}"
        );
    }

    #[test]
    fn deeply_nested_json_is_an_error_not_a_crash() -> Result<(), ParseError> {
        let body = "[".repeat(100_000);
        assert!(matches!(
            parse(ExpectedFormat::Json, &doc_headers(), body.as_bytes()),
            Err(ParseError::NotJson(_))
        ));
        let message = parse(ExpectedFormat::Auto, &doc_headers(), body.as_bytes())?;
        assert_eq!(message.format, Format::Simplified);
        Ok(())
    }

    #[test]
    fn unknown_keys_are_ignored() -> Result<(), ParseError> {
        let mut object = doc_object();
        object.insert("msgTag".to_owned(), Value::from(vec!["x"]));
        object.insert("extra".to_owned(), Value::Null);
        for expected in [ExpectedFormat::Json, ExpectedFormat::Auto] {
            assert_eq!(
                parse(expected, &doc_headers(), &to_body(&object))?,
                doc_json_message()
            );
        }
        Ok(())
    }

    #[test]
    fn json_message_id_comes_from_msg_id_not_the_header() -> Result<(), ParseError> {
        let mut headers = doc_headers();
        headers.message_id = Some("something-else".to_owned());
        assert_eq!(
            parse(ExpectedFormat::Json, &headers, DOC_JSON)?,
            doc_json_message()
        );
        headers.message_id = None;
        assert_eq!(
            parse(ExpectedFormat::Json, &headers, DOC_JSON)?,
            doc_json_message()
        );
        Ok(())
    }

    #[test]
    fn json_msg_id_is_trimmed_and_must_not_be_empty() -> Result<(), ParseError> {
        let mut object = doc_object();
        object.insert(MSG_ID.to_owned(), Value::from(" 6942316962\t"));
        assert_eq!(
            parse(ExpectedFormat::Json, &doc_headers(), &to_body(&object))?,
            doc_json_message()
        );
        for empty in ["", "  "] {
            object.insert(MSG_ID.to_owned(), Value::from(empty));
            assert_eq!(
                parse(ExpectedFormat::Json, &doc_headers(), &to_body(&object)),
                Err(ParseError::EmptyKey { key: MSG_ID }),
            );
        }
        Ok(())
    }

    #[test]
    fn json_body_is_the_unescaped_msg_body() -> Result<(), ParseError> {
        let body = br#"{"TopicOwner":"1","topicName":"t","subscriptionName":"s","msgId":"m","msgBody":"a\"b\n\u00e9\ud83d\ude00","publishTime":-1}"#;
        let message = parse(ExpectedFormat::Json, &PushHeaders::default(), body)?;
        assert_eq!(message.body_str(), Some("a\"b\né😀"));
        assert_eq!(message.publish_time, Some(-1));
        Ok(())
    }

    #[test]
    fn simplified_without_a_message_id_header_is_an_error() {
        for message_id in [None, Some(""), Some("   "), Some("\t")] {
            let headers = PushHeaders {
                message_id: message_id.map(str::to_owned),
                ..doc_headers()
            };
            for expected in [ExpectedFormat::Simplified, ExpectedFormat::Auto] {
                assert_eq!(
                    parse(expected, &headers, DOC_SIMPLIFIED),
                    Err(ParseError::NoMessageId),
                    "{message_id:?} in {expected}",
                );
            }
        }
    }

    #[test]
    fn ids_are_trimmed_and_an_empty_request_id_is_none() -> Result<(), ParseError> {
        let headers = PushHeaders {
            request_id: Some(" 2394928734 ".to_owned()),
            message_id: Some("\t6942316962 ".to_owned()),
            message_tag: Some("a, b".to_owned()),
        };
        assert_eq!(
            parse(ExpectedFormat::Simplified, &headers, DOC_SIMPLIFIED)?,
            doc_simplified_message()
        );
        for request_id in [None, Some(""), Some("  ")] {
            let headers = PushHeaders {
                request_id: request_id.map(str::to_owned),
                ..doc_headers()
            };
            for (expected, body) in [
                (ExpectedFormat::Simplified, DOC_SIMPLIFIED),
                (ExpectedFormat::Json, DOC_JSON),
            ] {
                assert_eq!(parse(expected, &headers, body)?.request_id, None);
            }
        }
        Ok(())
    }

    #[test]
    fn tags_come_from_the_header_in_both_formats() -> Result<(), ParseError> {
        for message_tag in [None, Some(""), Some(" , ")] {
            let headers = PushHeaders {
                message_tag: message_tag.map(str::to_owned),
                ..doc_headers()
            };
            for (expected, body) in [
                (ExpectedFormat::Simplified, DOC_SIMPLIFIED),
                (ExpectedFormat::Json, DOC_JSON),
            ] {
                assert!(parse(expected, &headers, body)?.tags.is_empty());
            }
        }
        Ok(())
    }

    #[test]
    fn parse_tags_splits_trims_and_drops_empty_pieces() {
        assert_eq!(parse_tags("a, b"), ["a", "b"]);
        assert_eq!(parse_tags("a,b"), ["a", "b"]);
        assert_eq!(parse_tags(" a ,, b ,"), ["a", "b"]);
        assert_eq!(parse_tags("only"), ["only"]);
        assert_eq!(parse_tags("tag with space, x"), ["tag with space", "x"]);
        assert!(parse_tags("").is_empty());
        assert!(parse_tags("  ").is_empty());
        assert!(parse_tags(",").is_empty());
    }
}
