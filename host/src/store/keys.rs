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
    bounded(json_array(&[
        Some(route),
        Some(message.format.name()),
        message.topic_owner.as_deref(),
        message.topic_name.as_deref(),
        message.subscription_name.as_deref(),
        Some(&message.message_id),
    ]))
}

/// The key deliveries answered before a claim are counted by (see [`super::Store::note_delivery`]): a
/// JSON array of the route and the message id, all that is known of a push before its
/// body is read. Two subscriptions pushing one id to one route share it, so such a
/// delivery may count for both: a message journaled a delivery early, never one lost.
pub fn push_key(route: &str, message_id: &str) -> String {
    bounded(json_array(&[Some(route), Some(message_id)]))
}

/// `parts` as a compact JSON array, `null` for a missing part: the bytes serde_json
/// writes for it (the keys in stores written before were made by serde_json), written
/// straight into one string.
fn json_array(parts: &[Option<&str>]) -> String {
    let quoted: usize = parts
        .iter()
        .map(|part| part.map_or(4, |text| text.len() + 3))
        .sum();
    let mut out = String::with_capacity(quoted + 2);
    out.push('[');
    for (index, part) in parts.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        match part {
            Some(text) => push_json_string(&mut out, text),
            None => out.push_str("null"),
        }
    }
    out.push(']');
    out
}

/// Appends `text` as a JSON string, escaped as serde_json escapes it: `"` and `\` as
/// `\"` and `\\`, the control characters below U+0020 as `\b`, `\t`, `\n`, `\f`, `\r`
/// where JSON has a short form and `\u00xx` otherwise; everything else as it is.
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    let mut plain = 0;
    for (at, byte) in text.bytes().enumerate() {
        let short = match byte {
            b'"' => '"',
            b'\\' => '\\',
            0x08 => 'b',
            b'\t' => 't',
            b'\n' => 'n',
            0x0c => 'f',
            b'\r' => 'r',
            0..=0x1f => 'u',
            _ => continue,
        };
        out.push_str(&text[plain..at]);
        out.push('\\');
        out.push(short);
        if short == 'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("00");
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        plain = at + 1;
    }
    out.push_str(&text[plain..]);
    out.push('"');
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

    /// The keys a store holds were written by serde_json (a `json!` array printed):
    /// the same message must make the same key now, byte for byte.
    #[test]
    fn keys_are_the_bytes_serde_json_wrote() {
        let mut texts: Vec<String> = (0u8..0x80)
            .map(|byte| char::from(byte).to_string())
            .collect();
        texts.extend(
            [
                "",
                "plain",
                "a\"b\\c",
                "tab\there\r\n",
                "\u{7f}\u{80}é✓😀",
                "\u{2028}\u{2029}",
            ]
            .map(String::from),
        );
        // Arbitrary strings, every character drawn from a mix of the kinds above.
        let pool: Vec<char> = "\0\u{1}\u{1f} \"\\/aZ9\u{7f}\u{a0}é✓😀\u{fffd}"
            .chars()
            .collect();
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..2_000 {
            let text: String = (0..seed % 24)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    pool[(seed % pool.len() as u64) as usize]
                })
                .collect();
            texts.push(text);
        }
        for (at, text) in texts.iter().enumerate() {
            let other = &texts[(at * 7 + 3) % texts.len()];
            assert_eq!(
                push_key(text, other),
                bounded(serde_json::json!([text, other]).to_string()),
                "{text:?} {other:?}"
            );
            let mut message = message(Format::Json, Some(other), text);
            message.topic_owner = Some(other.clone());
            message.topic_name = (at % 3 != 0).then(|| text.clone());
            for format in [Format::Json, Format::Simplified] {
                message.format = format;
                let wrote = serde_json::json!([
                    other,
                    message.format.name(),
                    message.topic_owner,
                    message.topic_name,
                    message.subscription_name,
                    message.message_id,
                ]);
                assert_eq!(message_key(other, &message), bounded(wrote.to_string()));
            }
        }
    }
}
