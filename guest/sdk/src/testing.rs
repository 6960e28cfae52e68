//! Test a handler's logic with plain `cargo test`, natively, no host and no wasm: build
//! a message as CMQ would push it, run the handler on it, and assert on its decision.
//!
//! ```
//! use cmq_guest::testing::Push;
//! use cmq_guest::{Decision, Handler, Message, Result};
//!
//! struct ByTag;
//!
//! impl Handler for ByTag {
//!     fn handle(message: Message) -> Result<Decision> {
//!         Ok(if message.has_tag("retry") {
//!             Decision::retry("tagged retry")
//!         } else {
//!             Decision::Ack
//!         })
//!     }
//! }
//!
//! Push::documented().run::<ByTag>().assert_ack();
//! let reason = Push::json("{}").tag("retry").run::<ByTag>().assert_retry();
//! assert_eq!(reason, "tagged retry");
//! ```
//!
//! What runs is exactly what a host's call runs ([`Handler::handle`], an error made a
//! retry); `cmq-host run` then tries the built component on the same message.

use crate::error::decided;
use crate::{Decision, Format, Handler, Message};

/// A message as CMQ pushes it, built for a test. Every field starts as in the push of
/// CMQ's documentation: message id `6942316962`, request id `2394928734`, topic
/// `MyTopic`, subscription `mysubscription`, no tags, no attempt count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    message: Message,
    /// The settings [`crate::config::get`] reads while the handler runs.
    settings: Vec<(String, String)>,
}

impl Push {
    /// The documented push: JSON format, body `test message`.
    pub fn documented() -> Push {
        Push::json("test message")
    }

    /// A JSON-format push (topic, subscription, owner and publish time set) whose
    /// message body is `body`.
    pub fn json(body: impl Into<Vec<u8>>) -> Push {
        Push {
            message: Message {
                message_id: "6942316962".into(),
                request_id: Some("2394928734".into()),
                tags: Vec::new(),
                topic_owner: Some("100015036".into()),
                topic_name: Some("MyTopic".into()),
                subscription_name: Some("mysubscription".into()),
                publish_time: Some(11203432),
                body: body.into(),
                format: Format::Json,
                attempt: None,
            },
            settings: Vec::new(),
        }
    }

    /// A SIMPLIFIED-format push: the body alone, with no topic or subscription.
    pub fn simplified(body: impl Into<Vec<u8>>) -> Push {
        let mut push = Push::json(body);
        push.message.format = Format::Simplified;
        push.message.topic_owner = None;
        push.message.topic_name = None;
        push.message.subscription_name = None;
        push.message.publish_time = None;
        push
    }

    /// With this tag too.
    pub fn tag(mut self, tag: impl Into<String>) -> Push {
        self.message.tags.push(tag.into());
        self
    }

    /// With this message id.
    pub fn id(mut self, message_id: impl Into<String>) -> Push {
        self.message.message_id = message_id.into();
        self
    }

    /// As the `attempt`-th delivery, as a host with a store counts them.
    pub fn attempt(mut self, attempt: u32) -> Push {
        self.message.attempt = Some(attempt);
        self
    }

    /// With the setting `name` = `value`, which [`crate::config::get`] reads while the
    /// handler runs.
    pub fn config(mut self, name: impl Into<String>, value: impl Into<String>) -> Push {
        self.settings.push((name.into(), value.into()));
        self
    }

    /// The message a handler receives.
    pub fn message(self) -> Message {
        self.message
    }

    /// Runs handler `H` on it, as a host's call would.
    pub fn run<H: Handler>(self) -> Handled {
        SETTINGS.with(|settings| *settings.borrow_mut() = self.settings);
        let decision = decided(H::handle(self.message));
        SETTINGS.with(|settings| settings.borrow_mut().clear());
        Handled { decision }
    }
}

std::thread_local! {
    /// The settings of the push running on this thread.
    static SETTINGS: std::cell::RefCell<Vec<(String, String)>> = const {
        std::cell::RefCell::new(Vec::new())
    };
}

/// The setting `name` of the push running on this thread (the last given, as on a
/// command line).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn setting(name: &str) -> Option<String> {
    SETTINGS.with(|settings| {
        settings
            .borrow()
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    })
}

/// What a handler decided in a test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    /// The decision the host would act on (an error already made a retry).
    pub decision: Decision,
}

impl Handled {
    /// Panics unless the handler acknowledged the message.
    #[track_caller]
    pub fn assert_ack(self) {
        assert_eq!(self.decision, Decision::Ack, "the handler did not ack");
    }

    /// The retry's reason; panics unless the handler asked for a retry (or failed).
    #[track_caller]
    pub fn assert_retry(self) -> String {
        match self.decision {
            Decision::Retry(reason) => reason,
            other => panic!("the handler did not ask for a retry: {other:?}"),
        }
    }

    /// The drop's reason; panics unless the handler dropped the message.
    #[track_caller]
    pub fn assert_drop(self) -> String {
        match self.decision {
            Decision::Drop(reason) => reason,
            other => panic!("the handler did not drop the message: {other:?}"),
        }
    }
}
