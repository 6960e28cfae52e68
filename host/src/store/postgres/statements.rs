//! The shared statements as PostgreSQL runs them: the times read from the database's
//! clock, and a group of claims, of settlements, or every note at once, in one
//! statement.

use super::super::sql::{
    CLAIM, CLAIM_GUARD, NOTE, RELEASE_ABANDONED, SETTLE, TAKE_NOTES, TAKE_UNCOUNTED,
};

/// The database's clock as the statement starts, in Unix milliseconds.
pub(super) const NOW: &str = "(extract(epoch from statement_timestamp()) * 1000)::bigint";

/// A group of claims in one statement ([`super::grouped`]), with the times read from
/// the database's clock, so that hosts whose clocks differ still agree on leases: each
/// claim guarded by its token (see [`CLAIM_GUARD`]), and the deliveries noted under its
/// push key taken in the same statement. Arrays, one element a claim: `$1` keys, `$2`
/// the claims' tokens, `$3` leases in milliseconds, `$4` dedupe windows in milliseconds
/// (NULL: none), `$5` push keys, `$6` deliveries to add that the database does not
/// hold. No two claims of a group share a key or a push key. A row a claim, in their
/// order: whether its guard was written (false: the claim was given up on, it does
/// nothing), then the claim's count and holder (NULL for a duplicate). The messages are
/// written in the order of their keys, so two hosts' groups lock rows in one order.
pub(super) fn claim_sql() -> String {
    const VALUES: &str = "VALUES ($1, 1 + $6, 'running', $5, $3, $2)";
    debug_assert!(CLAIM.contains(VALUES));
    let noted = |table: &str| {
        format!(
            "(SELECT COALESCE(sum(deliveries), 0)::bigint FROM {table} t \
             WHERE t.push_key = g.push_key)"
        )
    };
    let rows = format!(
        "SELECT g.message_key, 1 + g.earlier + {} + {}, 'running', g.token, {NOW} + g.lease, \
         {NOW} FROM guarded g ORDER BY g.message_key",
        noted("taken"),
        noted("taken_before"),
    );
    let claim = renumbered(&CLAIM.replace(VALUES, &rows), |n| match n {
        2 => NOW.to_owned(),
        3 => "EXCLUDED.lease_until_ms".to_owned(),
        4 => format!(
            "(SELECT COALESCE({NOW} - r.window_ms, 9223372036854775807) FROM req r \
             WHERE r.message_key = EXCLUDED.message_id)"
        ),
        5 => "EXCLUDED.claim".to_owned(),
        6 => "(EXCLUDED.attempts - 1)".to_owned(),
        n => format!("${n}"),
    });
    const RETURNING: &str = "RETURNING attempts, claim";
    debug_assert!(claim.contains(RETURNING));
    let claim = claim.replace(RETURNING, "RETURNING message_id, attempts, claim");
    const ONE_GUARD: &str = "VALUES ($1, $2, 0, 1, $3)";
    debug_assert!(CLAIM_GUARD.contains(ONE_GUARD));
    let guard = CLAIM_GUARD.replace(
        ONE_GUARD,
        &format!("SELECT r.token, r.push_key, 0, 1, {NOW} FROM req r"),
    );
    const ONE_PUSH: &str = "push_key = $1";
    debug_assert!(TAKE_NOTES.contains(ONE_PUSH) && TAKE_UNCOUNTED.contains(ONE_PUSH));
    let guarded_push = "push_key IN (SELECT g.push_key FROM guarded g)";
    let returning =
        |sql: &str| sql.replace("RETURNING deliveries", "RETURNING push_key, deliveries");
    let take = returning(
        &TAKE_NOTES
            .replace(ONE_PUSH, guarded_push)
            .replace("$2", NOW),
    );
    let take_before = returning(&TAKE_UNCOUNTED.replace(ONE_PUSH, guarded_push));
    format!(
        "WITH req AS (SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], \
         $4::bigint[], $5::text[], $6::bigint[]) WITH ORDINALITY \
         AS r(message_key, token, lease, window_ms, push_key, earlier, ord)), \
         guard AS ({guard} RETURNING note_id), \
         guarded AS (SELECT r.* FROM req r JOIN guard ON guard.note_id = r.token), \
         taken AS ({take}), taken_before AS ({take_before}), claimed AS ({claim}) \
         SELECT guard.note_id IS NOT NULL, claimed.attempts, claimed.claim FROM req r \
         LEFT JOIN guard ON guard.note_id = r.token \
         LEFT JOIN claimed ON claimed.message_id = r.message_key ORDER BY r.ord"
    )
}

/// A group of settlements in one statement ([`super::grouped`]); arrays, one element a
/// settlement: `$1` keys, `$2` states, `$3` decisions, `$4` the claims' tokens. Only
/// the claim that holds a message settles it.
pub(super) fn settle_sql() -> String {
    const WHERE: &str = "\nWHERE";
    debug_assert!(SETTLE.contains(WHERE));
    let settle = renumbered(SETTLE, |n| match n {
        1 => "s.s_key".to_owned(),
        2 => "s.s_state".to_owned(),
        3 => "s.s_decision".to_owned(),
        4 => NOW.to_owned(),
        5 => "s.s_token".to_owned(),
        n => format!("${n}"),
    });
    settle.replace(
        WHERE,
        "\nFROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) \
         AS s(s_key, s_state, s_decision, s_token)\nWHERE",
    )
}

/// Every note at once, in one statement: `$1` their ids, `$2` their push keys, `$3`
/// their deliveries ([`NOTE`]); and the claims given up on released ([`RELEASE_ABANDONED`]):
/// `$4` their messages' keys, `$5` their tokens.
pub(super) fn count_uncounted_sql() -> String {
    const ONE: &str = "VALUES ($1, $2, $3, 0, $4)";
    const ALL: &str = "SELECT id, key, count, 0, $4 \
        FROM unnest($1::bigint[], $2::text[], $3::bigint[]) AS t(id, key, count)";
    debug_assert!(NOTE.contains(ONE));
    let noted = renumbered(&NOTE.replace(ONE, ALL), |n| match n {
        4 => NOW.to_owned(),
        n => format!("${n}"),
    });
    const WHERE: &str = "WHERE message_id = $1 AND claim = $2 AND state = 'running'";
    debug_assert!(RELEASE_ABANDONED.contains(WHERE));
    let released = RELEASE_ABANDONED
        .replace(
            WHERE,
            "FROM unnest($1::text[], $2::bigint[]) AS r(key, token) \
             WHERE message_id = r.key AND claim = r.token AND state = 'running'",
        )
        .replace("$3", NOW)
        .replace("$1", "$4")
        .replace("$2", "$5");
    format!(
        "WITH noted AS ({noted} RETURNING 1), released AS ({released} RETURNING 1) \
         SELECT (SELECT count(*) FROM noted), (SELECT count(*) FROM released)"
    )
}

/// `sql` with its parameter `$now` read from the database's clock instead, and the
/// parameters after it numbered one lower.
pub(super) fn on_database_clock(sql: &str, now: usize) -> String {
    renumbered(sql, |n| match n {
        n if n == now => NOW.to_owned(),
        n if n > now => format!("${}", n - 1),
        n => format!("${n}"),
    })
}

/// `sql` with every parameter `$n` replaced by `replace(n)`.
pub(super) fn renumbered(sql: &str, replace: impl Fn(usize) -> String) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        match after[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&replace(n)),
            Err(_) => out.push('$'),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_renumbered_past_the_one_the_database_clock_replaces() {
        assert_eq!(
            on_database_clock("a = $1, b = $2, c = $10, d = $3, e = $", 2),
            format!("a = $1, b = {NOW}, c = $9, d = $2, e = $")
        );
        let claim = claim_sql();
        for n in 1..=6 {
            assert!(claim.contains(&format!("${n}")), "${n} unused in {claim}");
        }
        assert!(!claim.contains("$7"));
        let settle = settle_sql();
        assert!(settle.contains("$4::bigint[]") && !settle.contains("$5"));
        assert!(count_uncounted_sql().contains("unnest"));
    }
}
