//! The shared statements as PostgreSQL runs them: the times read from the database's
//! clock, and a claim, or every note at once, in one statement.

use super::super::sql::{CLAIM, CLAIM_GUARD, NOTE, RELEASE_ABANDONED, TAKE_NOTES, TAKE_UNCOUNTED};

/// The database's clock as the statement starts, in Unix milliseconds.
pub(super) const NOW: &str = "(extract(epoch from statement_timestamp()) * 1000)::bigint";

/// The claim statement with the times read from the database's clock, so that hosts
/// whose clocks differ still agree on leases, guarded by the claim's token (see
/// [`CLAIM_GUARD`]), and the deliveries noted under the push key taken in the same
/// statement: `$1` key, `$2` the claim's token, `$3` the lease in milliseconds, `$4`
/// the dedupe window in milliseconds (NULL: none), `$5` the push key, `$6` deliveries
/// to add that the database does not hold. One row: whether the guard was written
/// (0: the claim was given up on, it does nothing), then the claim's count and holder
/// (NULL for a duplicate).
pub(super) fn claim_sql() -> String {
    const VALUES: &str = "VALUES ($1, 1 + $6, 'running', $5, $3, $2)";
    debug_assert!(CLAIM.contains(VALUES));
    let guarded = CLAIM.replace(
        VALUES,
        "SELECT $1, 1 + $6, 'running', $5, $3, $2 WHERE EXISTS (SELECT 1 FROM guard)",
    );
    let claim = renumbered(&guarded, |n| match n {
        2 => NOW.to_owned(),
        3 => format!("({NOW} + $3)"),
        4 => format!("COALESCE({NOW} - $4, 9223372036854775807)"),
        5 => "$2".to_owned(),
        6 => "($6 + (SELECT COALESCE(sum(deliveries), 0)::bigint FROM taken) \
              + (SELECT COALESCE(sum(deliveries), 0)::bigint FROM taken_before))"
            .to_owned(),
        n => format!("${n}"),
    });
    let guard = renumbered(&format!("{CLAIM_GUARD} RETURNING 1"), |n| match n {
        1 => "$2".to_owned(),
        2 => "$5".to_owned(),
        _ => NOW.to_owned(),
    });
    let only_if_guarded = " AND EXISTS (SELECT 1 FROM guard)";
    let take = renumbered(TAKE_NOTES, |n| match n {
        1 => "$5".to_owned(),
        _ => NOW.to_owned(),
    })
    .replace("AND taken = 0", &format!("AND taken = 0{only_if_guarded}"));
    let take_before = renumbered(TAKE_UNCOUNTED, |_| "$5".to_owned())
        .replace(" RETURNING", &format!("{only_if_guarded} RETURNING"));
    format!(
        "WITH guard AS ({guard}), taken AS ({take}), taken_before AS ({take_before}), \
         claimed AS ({claim}) \
         SELECT (SELECT count(*) FROM guard), claimed.attempts, claimed.claim \
         FROM (SELECT 1) AS one LEFT JOIN claimed ON true"
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
        assert!(count_uncounted_sql().contains("unnest"));
    }
}
