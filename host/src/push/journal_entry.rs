//! What a push's dead-letter journal entry would hold, kept until it is written, and a
//! guest's reason clipped to fit it and a log line.

use bytes::Bytes;

use crate::push::intake::RawPush;
use crate::route::Route;
use crate::store::DeadLetter;

/// What a push's journal entry would hold, kept cheaply (the body is shared) until
/// the entry is written.
#[derive(Clone)]
pub(crate) struct Kept {
    /// The route's name, kept with the entry.
    route: String,
    pub(crate) message_id: String,
    format: cmq_message::Format,
    headers: cmq_message::PushHeaders,
    body: Bytes,
    pub(crate) attempt: u32,
}

impl Kept {
    pub(crate) fn of(
        route: &Route,
        message: &cmq_message::Message,
        raw: &RawPush,
        attempt: u32,
    ) -> Kept {
        Kept {
            route: route.name.clone(),
            message_id: message.message_id.clone(),
            format: message.format,
            headers: raw.headers.clone(),
            body: raw.body.clone(),
            attempt,
        }
    }

    /// The journal entry, with `reason`. A NUL in it (a guest's text) becomes U+FFFD:
    /// PostgreSQL's text holds no NUL, and the entry must be written whatever the
    /// guest said.
    pub(crate) fn entry(self, reason: String) -> DeadLetter {
        DeadLetter {
            id: 0,
            message_id: self.message_id,
            reason: reason.replace('\0', "\u{FFFD}"),
            attempts: self.attempt,
            format: self.format,
            route: Some(self.route),
            request_id: self.headers.request_id,
            message_tag: self.headers.message_tag,
            body: self.body.to_vec(),
            created: std::time::UNIX_EPOCH,
        }
    }
}

/// A guest's reason, cut to a length that fits a log line.
pub(crate) fn clip(reason: &str) -> &str {
    const MAX: usize = 1024;
    if reason.len() <= MAX {
        return reason;
    }
    let mut end = MAX;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_short_reasons_and_cuts_long_ones_at_a_char_boundary() {
        assert_eq!(clip("busy"), "busy");
        let long = "é".repeat(1000); // 2000 bytes
        let clipped = clip(&long);
        assert!(clipped.len() <= 1024 && clipped.len() >= 1022);
        assert!(clipped.chars().all(|c| c == 'é'));
    }
}
