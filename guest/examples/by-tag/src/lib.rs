//! Decides by tag, so tests can drive every outcome from the push itself: tag
//! `retry` asks CMQ to redeliver, tag `drop` drops the message, anything else acks.

use cmq_guest::{Decision, Handler, Message};

struct ByTag;

impl Handler for ByTag {
    fn handle(message: Message) -> Decision {
        if message.has_tag("retry") {
            Decision::retry("tagged retry")
        } else if message.has_tag("drop") {
            Decision::drop("tagged drop")
        } else {
            Decision::Ack
        }
    }
}

cmq_guest::export!(ByTag);
