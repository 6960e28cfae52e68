//! Which subscriptions CMQ pushes a message to: tag filters and binding keys, checked
//! before any push.

/// A subscription's filters. Empty filters let everything through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// `FilterTag`: the message must carry at least one of these tags exactly. A
    /// message without tags never passes a non-empty tag filter.
    pub tags: Vec<String>,
    /// `BindingKey`s: the message's routing key must match at least one (`*` is one
    /// word, `#` zero or more; words are separated by dots).
    pub binding_keys: Vec<String>,
}

/// Why a message did not reach the subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilteredBy {
    /// No tag of the message is in the subscription's `FilterTag`.
    Tags,
    /// The message's routing key matches none of the subscription's binding keys.
    BindingKeys,
}

impl std::fmt::Display for FilteredBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FilteredBy::Tags => "no tag matches the subscription's filter tags",
            FilteredBy::BindingKeys => "the routing key matches no binding key",
        })
    }
}

impl Filter {
    /// `Ok` when CMQ would push a message with these tags and routing key.
    pub fn check(&self, tags: &[String], routing_key: Option<&str>) -> Result<(), FilteredBy> {
        if !self.tags.is_empty() && !tags.iter().any(|tag| self.tags.contains(tag)) {
            return Err(FilteredBy::Tags);
        }
        if !self.binding_keys.is_empty() {
            let routing_key = routing_key.ok_or(FilteredBy::BindingKeys)?;
            if !self
                .binding_keys
                .iter()
                .any(|binding| binding_key_matches(binding, routing_key))
            {
                return Err(FilteredBy::BindingKeys);
            }
        }
        Ok(())
    }
}

/// Whether `routing_key` matches `binding_key`: words are separated by dots, `*`
/// matches exactly one word and `#` zero or more (`1.#.0` matches `1.0` and `1.2.3.0`;
/// `#` matches everything).
pub fn binding_key_matches(binding_key: &str, routing_key: &str) -> bool {
    let pattern: Vec<&str> = binding_key.split('.').collect();
    let words: Vec<&str> = routing_key.split('.').collect();
    // matched[j]: the pattern so far matches the first j words. One pass per pattern
    // word keeps this O(pattern × words), however many `#`s there are.
    let mut matched = vec![false; words.len() + 1];
    matched[0] = true;
    for part in &pattern {
        let mut next = vec![false; words.len() + 1];
        for j in 0..=words.len() {
            next[j] = match *part {
                "#" => matched[j] || (j > 0 && next[j - 1]),
                "*" => j > 0 && matched[j - 1],
                word => j > 0 && matched[j - 1] && words[j - 1] == word,
            };
        }
        matched = next;
    }
    matched[words.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_keys_follow_cmqs_examples() {
        assert!(binding_key_matches("1.#.0", "1.0"));
        assert!(binding_key_matches("1.#.0", "1.2.3.0"));
        assert!(!binding_key_matches("1.#.0", "1.2.3"));
        assert!(binding_key_matches("#", "a.b.c"));
        assert!(binding_key_matches("#", "a"));
        assert!(binding_key_matches("a.*.c", "a.b.c"));
        assert!(!binding_key_matches("a.*.c", "a.c"));
        assert!(!binding_key_matches("a.*.c", "a.b.b.c"));
        assert!(binding_key_matches("a.b", "a.b"));
        assert!(!binding_key_matches("a.b", "a.b.c"));
        assert!(!binding_key_matches("a.b.c", "a.b"));
        assert!(binding_key_matches("*.#", "x"));
        assert!(binding_key_matches("#.#", "a"));
        assert!(!binding_key_matches("*", "a.b"));
    }

    #[test]
    fn many_hashes_match_in_linear_time() {
        // 30 `#` over 60 words: a backtracking matcher tries about 60^30 ways and never
        // ends; a linear one answers at once. On a thread, so that the test fails (after
        // 5 s, far beyond a linear matcher's microseconds) instead of hanging.
        let (done, answered) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let pattern = format!("{}z", "#.".repeat(30));
            let words = vec!["w"; 60].join(".");
            let answers = (
                binding_key_matches(&pattern, &words),
                binding_key_matches(&pattern, &format!("{words}.z")),
            );
            let _ = done.send(answers);
        });
        let answers = answered
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("30 `#` over 60 words took over 5 s: the matcher is not linear");
        assert_eq!(answers, (false, true));
    }

    #[test]
    fn tag_filters_need_one_exact_tag() {
        let filter = Filter {
            tags: vec!["orders".into(), "refunds".into()],
            ..Default::default()
        };
        assert_eq!(filter.check(&["refunds".into()], None), Ok(()));
        assert_eq!(
            filter.check(&["Orders".into()], None),
            Err(FilteredBy::Tags)
        );
        assert_eq!(filter.check(&[], None), Err(FilteredBy::Tags));
        assert_eq!(Filter::default().check(&[], None), Ok(()));
    }

    #[test]
    fn binding_key_filters_need_a_routing_key() {
        let filter = Filter {
            binding_keys: vec!["order.*".into()],
            ..Default::default()
        };
        assert_eq!(filter.check(&[], Some("order.paid")), Ok(()));
        assert_eq!(
            filter.check(&[], Some("order.paid.late")),
            Err(FilteredBy::BindingKeys)
        );
        assert_eq!(filter.check(&[], None), Err(FilteredBy::BindingKeys));
    }
}
