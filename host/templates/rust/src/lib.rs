//! {{name}}: decides what CMQ is told about each message it pushes.

use cmq_guest::{Decision, Handler, Message, Result};

struct {{type}};

impl Handler for {{type}} {
    fn handle(message: Message) -> Result<Decision> {
        // A message that can never be handled is dropped (and kept in the host's
        // dead-letter journal); one that may be handled later is retried; `?` on an
        // error retries too, with the error's text.
        if message.has_tag("drop") {
            return Ok(Decision::drop("tagged drop"));
        }
        if message.has_tag("retry") {
            return Ok(Decision::retry("tagged retry"));
        }
        println!(
            "message {}: {}",
            message.message_id,
            message.body_str().unwrap_or("(not UTF-8)")
        );
        Ok(Decision::Ack)
    }
}

cmq_guest::export!({{type}});

#[cfg(test)]
mod tests {
    use cmq_guest::testing::Push;

    use super::{{type}};

    #[test]
    fn the_documented_push_is_acknowledged() {
        Push::documented().run::<{{type}}>().assert_ack();
        Push::simplified("raw bytes").run::<{{type}}>().assert_ack();
    }

    #[test]
    fn tags_ask_for_a_retry_or_a_drop() {
        let reason = Push::documented().tag("retry").run::<{{type}}>().assert_retry();
        assert_eq!(reason, "tagged retry");
        let reason = Push::documented().tag("drop").run::<{{type}}>().assert_drop();
        assert_eq!(reason, "tagged drop");
    }
}
