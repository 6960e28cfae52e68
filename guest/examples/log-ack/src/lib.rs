//! The receiver from CMQ's HTTP subscription documentation, as a handler: print
//! what arrived, then acknowledge it (the sample's `200 ok`).

use cmq_guest::{Decision, Handler, Message};

struct LogAck;

impl Handler for LogAck {
    fn handle(message: Message) -> Decision {
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
        Decision::Ack
    }
}

fn or_none(value: Option<&str>) -> &str {
    value.unwrap_or("-")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

cmq_guest::export!(LogAck);
