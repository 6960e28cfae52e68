//! Decides by tag, so tests can drive every outcome from the push itself: tag
//! `retry` asks CMQ to redeliver, tag `drop` drops the message, anything else acks.

use cmq_guest::{Decision, Handler, Message, Result};

struct ByTag;

impl Handler for ByTag {
    fn handle(message: Message) -> Result<Decision> {
        Ok(if message.has_tag("retry") {
            Decision::retry("tagged retry")
        } else if message.has_tag("drop") {
            Decision::drop("tagged drop")
        } else {
            Decision::Ack
        })
    }
}

cmq_guest::export!(ByTag);

#[cfg(test)]
mod tests {
    use cmq_guest::testing::Push;

    use super::ByTag;

    #[test]
    fn each_tag_decides() {
        Push::documented().run::<ByTag>().assert_ack();
        Push::simplified("raw")
            .tag("other")
            .run::<ByTag>()
            .assert_ack();
        assert_eq!(
            Push::documented()
                .tag("retry")
                .run::<ByTag>()
                .assert_retry(),
            "tagged retry"
        );
        assert_eq!(
            Push::json("{}")
                .tag("a")
                .tag("drop")
                .run::<ByTag>()
                .assert_drop(),
            "tagged drop"
        );
    }
}
