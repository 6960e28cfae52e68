//! The receiver from CMQ's HTTP subscription documentation, as a handler: print
//! what arrived, then acknowledge it (the sample's `200 ok`).

use cmq_guest::{Decision, Handler, Message, Result};

struct LogAck;

impl Handler for LogAck {
    fn handle(message: Message) -> Result<Decision> {
        println!("message id: {}", message.message_id);
        println!("request id: {}", or_none(message.request_id.as_deref()));
        println!("tags: {}", message.tags.join(", "));
        println!("topic owner: {}", or_none(message.topic_owner.as_deref()));
        println!("topic name: {}", or_none(message.topic_name.as_deref()));
        println!(
            "subscription: {}",
            or_none(message.subscription_name.as_deref())
        );
        match message.publish_time {
            Some(time) => println!("publish time: {time}"),
            None => println!("publish time: -"),
        }
        println!("format: {:?}", message.format);
        match message.body_str() {
            Some(text) => println!("body ({} bytes): {text}", message.body().len()),
            // SIMPLIFIED pushes carry the raw body, which need not be text.
            None => println!(
                "body ({} bytes, not UTF-8): {}",
                message.body().len(),
                hex(message.body())
            ),
        }
        Ok(Decision::Ack)
    }
}

fn or_none(value: Option<&str>) -> &str {
    value.unwrap_or("-")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

cmq_guest::export!(LogAck);

#[cfg(test)]
mod tests {
    use cmq_guest::testing::Push;

    use super::LogAck;

    #[test]
    fn every_message_is_acknowledged_whatever_its_format() {
        Push::documented().run::<LogAck>().assert_ack();
        Push::simplified(vec![0xff, 0x00])
            .tag("a")
            .attempt(2)
            .run::<LogAck>()
            .assert_ack();
    }
}
