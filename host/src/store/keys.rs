//! The keys the store knows messages by: the message key of a push's claim, and the
//! push key its deliveries before any claim are counted by.

/// The key the store knows a pushed message by: a JSON array of the route, the format,
/// the topic's owner and name, the subscription and the message id. The array keeps
/// every part apart whatever it holds (no `a/b` + `c` that reads like `a` + `b/c`), and
/// JSON escapes every control character, so any id is stored as text on both backends.
/// Keys of one subscription share their start and sort by id, so that ids CMQ hands out
/// in order land next to each other in the store's index (a hash would scatter them,
/// and every message would dirty a page of its own). A key longer than
/// `MAX_PLAIN_KEY` (512) bytes is `sha256:` and its digest in hex instead, which no array
/// can be mistaken for. SIMPLIFIED pushes name no topic or subscription.
pub fn message_key(route: &str, message: &cmq_message::Message) -> String {
    bounded(
        serde_json::json!([
            route,
            message.format.name(),
            message.topic_owner,
            message.topic_name,
            message.subscription_name,
            message.message_id,
        ])
        .to_string(),
    )
}

/// The key deliveries answered before a claim are counted by (see [`super::Store::note_delivery`]): a
/// JSON array of the route and the message id, all that is known of a push before its
/// body is read. Two subscriptions pushing one id to one route share it, so such a
/// delivery may count for both: a message journaled a delivery early, never one lost.
pub fn push_key(route: &str, message_id: &str) -> String {
    bounded(serde_json::json!([route, message_id]).to_string())
}

/// `key`, or past `MAX_PLAIN_KEY` (512) bytes `sha256:` and its digest in hex, which no
/// JSON array can be mistaken for.
fn bounded(key: String) -> String {
    use sha2::{Digest as _, Sha256};
    if key.len() <= MAX_PLAIN_KEY {
        return key;
    }
    let digest: String = Sha256::digest(key.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("sha256:{digest}")
}

/// The longest key kept as it is: far below what an index entry may hold on either
/// backend (PostgreSQL's B-tree takes about 2,700 bytes).
const MAX_PLAIN_KEY: usize = 512;

#[cfg(test)]
mod tests {
    use super::*;
    use cmq_message::Format;

    fn message(format: Format, subscription: Option<&str>, id: &str) -> cmq_message::Message {
        cmq_message::Message {
            message_id: id.to_owned(),
            format,
            subscription_name: subscription.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn message_keys_keep_their_parts_apart() {
        use Format::{Json, Simplified};
        let key = |route, message| message_key(route, &message);
        // The pair that once made one key: subscription `sub` with id `1`, and a
        // SIMPLIFIED id `sub/1`.
        assert_ne!(
            key("default", message(Json, Some("sub"), "1")),
            key("default", message(Simplified, None, "sub/1"))
        );
        assert_ne!(
            key("a/b", message(Simplified, None, "c")),
            key("a", message(Simplified, None, "b/c"))
        );
        assert_ne!(
            key("default", message(Json, Some("s"), "1")),
            key("default", message(Json, Some("t"), "1"))
        );
        assert_eq!(
            key("default", message(Json, Some("s"), "1")),
            key("default", message(Json, Some("s"), "1"))
        );
        // Control characters are escaped; a long key is hashed.
        let nul = key("default", message(Simplified, None, "a\0b"));
        assert!(!nul.contains('\0') && nul.contains("a\\u0000b"), "{nul}");
        let long = key("default", message(Simplified, None, &"x".repeat(100_000)));
        assert_eq!(long.len(), "sha256:".len() + 64);
        assert!(long.starts_with("sha256:"));
    }
}
