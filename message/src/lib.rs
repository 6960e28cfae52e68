//! Parse a Tencent Cloud CMQ topic push into a [`Message`].
//!
//! CMQ delivers each topic message to an HTTP subscription as one `POST`, in one of two
//! formats: `JSON` (the body is an envelope whose `msgBody` is the message) or
//! `SIMPLIFIED` (the body is the message itself). Either way the `x-cmq-*` headers carry
//! the request id, message id and tags. [`parse`] turns the headers and body into a
//! [`Message`], the native twin of the `message` record in `wit/cmq-push.wit`, or into a
//! [`ParseError`] whose text suits an HTTP `400` answer.
//!
//! This crate is plain Rust (serde, serde_json, thiserror): the host uses it, and wasm
//! guests can too.
//!
//! # Example
//!
//! The push from CMQ's documentation:
//!
//! ```
//! use cmq_message::{ExpectedFormat, Format, PushHeaders, parse};
//!
//! # fn main() -> Result<(), cmq_message::ParseError> {
//! let headers = PushHeaders {
//!     request_id: Some("2394928734".to_owned()),
//!     message_id: Some("6942316962".to_owned()),
//!     message_tag: Some("a, b".to_owned()),
//! };
//! let body = br#"{"TopicOwner":100015036,"topicName":"MyTopic","subscriptionName":"mysubscription","msgId":"6942316962","msgBody":"test message","publishTime":11203432}"#;
//!
//! let message = parse(ExpectedFormat::Auto, &headers, body)?;
//! assert_eq!(message.format, Format::Json);
//! assert_eq!(message.message_id, "6942316962");
//! assert_eq!(message.tags, ["a", "b"]);
//! assert_eq!(message.topic_owner.as_deref(), Some("100015036"));
//! assert_eq!(message.publish_time, Some(11203432));
//! assert_eq!(message.body_str(), Some("test message"));
//!
//! // The same message in SIMPLIFIED format: the body is the message itself.
//! let message = parse(ExpectedFormat::Auto, &headers, b"test message")?;
//! assert_eq!(message.format, Format::Simplified);
//! assert_eq!(message.message_id, "6942316962");
//! assert_eq!(message.topic_name, None);
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod error;
mod message;
mod parse;
mod token;

pub use self::error::{ParseError, UnknownFormat};
pub use self::message::{
    ExpectedFormat, Format, HEADER_MESSAGE_ID, HEADER_MESSAGE_TAG, HEADER_REQUEST_ID, Message,
    PushHeaders,
};
pub use self::parse::{parse, parse_tags};
pub use self::token::{MIN_TOKEN_LEN, check_token};
