//! The messages a simulation publishes: read from JSON lines, or generated.

use std::io::BufRead;

use serde::{Deserialize, Serialize};

/// A message as a publisher hands it to the topic (the fields of CMQ's `PublishMessage`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Published {
    /// The id CMQ assigns; the simulator makes one up when it is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<String>,
    /// The body, at least one byte.
    pub msg_body: String,
    /// Its tags (CMQ allows 5, of 16 characters each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub msg_tag: Vec<String>,
    /// Its routing key, for subscriptions with binding keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_key: Option<String>,
}

/// A line of a messages file that is not a message.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file could not be read.
    #[error("reading messages: {0}")]
    Read(#[from] std::io::Error),
    /// A line is not a JSON message object.
    #[error("line {line}: {reason}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// Reads one message per line: `{"msgBody": "...", "msgTag": ["a"], "routingKey": "x.y",
/// "msgId": "..."}`, only `msgBody` required. Blank lines are skipped.
pub fn read_json_lines(reader: impl BufRead) -> Result<Vec<Published>, SourceError> {
    let mut messages = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let at = |reason: String| SourceError::Line {
            line: index + 1,
            reason,
        };
        let message: Published = serde_json::from_str(&line).map_err(|e| at(e.to_string()))?;
        if message.msg_body.is_empty() {
            return Err(at(
                "msgBody is empty (CMQ requires at least one byte)".into()
            ));
        }
        if message
            .msg_id
            .as_deref()
            .is_some_and(|id| id.trim().is_empty())
        {
            return Err(at("msgId is empty".into()));
        }
        check_header_values(&message).map_err(at)?;
        messages.push(message);
    }
    Ok(messages)
}

/// Message ids and tags travel in HTTP headers: refuses what a header cannot carry.
pub fn check_header_values(message: &Published) -> Result<(), String> {
    let fits = |value: &str| http::HeaderValue::from_str(value).is_ok();
    if let Some(id) = &message.msg_id
        && !fits(id)
    {
        return Err(format!("msgId {id:?} cannot be sent in an HTTP header"));
    }
    match message
        .msg_tag
        .iter()
        .find(|tag| !fits(tag) || tag.contains(','))
    {
        Some(tag) => Err(format!(
            "tag {tag:?} cannot be sent in x-cmq-message-tag (no commas or control characters)"
        )),
        None => Ok(()),
    }
}

/// `count` messages with bodies `message 1`, `message 2`, ..., or `body` when given, each
/// with `tags` and `routing_key`.
pub fn generate(
    count: usize,
    body: Option<&str>,
    tags: &[String],
    routing_key: Option<&str>,
) -> Vec<Published> {
    (1..=count)
        .map(|n| Published {
            msg_id: None,
            msg_body: body.map_or_else(|| format!("message {n}"), str::to_owned),
            msg_tag: tags.to_vec(),
            routing_key: routing_key.map(str::to_owned),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_need_only_a_body() {
        let text = "{\"msgBody\":\"a\"}\n\n{\"msgBody\":\"b\",\"msgTag\":[\"t\"],\"routingKey\":\"x.y\",\"msgId\":\"7\"}\n";
        let messages = read_json_lines(text.as_bytes()).expect("valid");
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[1].msg_tag, ["t"]);
        assert_eq!(messages[1].msg_id.as_deref(), Some("7"));
    }

    #[test]
    fn bad_lines_are_named_by_number() {
        for (text, needle) in [
            ("{\"msgBody\":\"a\"}\n{\"body\":\"b\"}\n", "line 2"),
            ("{\"msgBody\":\"\"}\n", "at least one byte"),
            ("not json\n", "line 1"),
            ("{\"msgBody\":\"a\",\"msgId\":\"a\\nb\"}\n", "HTTP header"),
            ("{\"msgBody\":\"a\",\"msgTag\":[\"x,y\"]}\n", "no commas"),
        ] {
            let err = read_json_lines(text.as_bytes())
                .expect_err(text)
                .to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn generated_messages_are_numbered() {
        let messages = generate(3, None, &["t".into()], Some("a.b"));
        assert_eq!(messages[2].msg_body, "message 3");
        assert_eq!(messages[0].routing_key.as_deref(), Some("a.b"));
    }
}
