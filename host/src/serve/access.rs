//! Who may push. CMQ signs nothing, so an endpoint is protected by what only CMQ knows
//! (a secret token in the endpoint URL) and where CMQ comes from (source addresses).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use subtle::ConstantTimeEq;

/// The endpoint's secret. Never printed: its `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A token no sender knows, for a route whose token is not at hand while a config
    /// is only checked (`check --without-secrets`); never served.
    pub(crate) fn unset_for_checking() -> Token {
        Token("not-set-while-checking".to_owned())
    }
}

impl FromStr for Token {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        cmq_message::check_token(text)?;
        Ok(Token(text.to_owned()))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Token {
    /// Whether a request carries this token: as `/push/<token>` in `path` (what is
    /// left of the request's path after its route's), or as the parameter
    /// `token=<token>` in its `query`. Compared in constant time.
    pub(crate) fn is_in(&self, path: &str, query: Option<&str>) -> bool {
        let in_path = path
            .strip_prefix("/push/")
            .is_some_and(|given| self.is(given));
        let in_query = query.is_some_and(|query| {
            query
                .split('&')
                .filter_map(|pair| pair.strip_prefix("token="))
                .any(|given| self.is(given))
        });
        // Both are evaluated whatever the first gives, so timing tells nothing.
        in_path | in_query
    }

    /// `uri` without the token: without the `/push/<token>` that ends its path and
    /// without any `token=` parameter in its query, so that a guest given the request
    /// as it came never sees the secret (and cannot print it into the log).
    pub(crate) fn strip_from(&self, uri: &http::Uri) -> http::Uri {
        let path = uri.path();
        let path = path
            .strip_suffix(self.0.as_str())
            .and_then(|rest| rest.strip_suffix("/push/"))
            .map_or(path, |rest| if rest.is_empty() { "/" } else { rest });
        let mut stripped = path.to_owned();
        let query: Vec<&str> = uri
            .query()
            .into_iter()
            .flat_map(|query| query.split('&'))
            .filter(|pair| !pair.starts_with("token="))
            .collect();
        if !query.is_empty() {
            stripped.push('?');
            stripped.push_str(&query.join("&"));
        }
        let mut parts = uri.clone().into_parts();
        parts.path_and_query = stripped.parse().ok();
        // What is left of a valid URI is a valid URI; "/" is the fallback that keeps
        // the token out whatever happens.
        http::Uri::from_parts(parts).unwrap_or_else(|_| http::Uri::from_static("/"))
    }

    /// Whether `given` is this token, compared in constant time.
    pub(crate) fn is(&self, given: &str) -> bool {
        self.0.as_bytes().ct_eq(given.as_bytes()).into()
    }
}

/// Source addresses allowed to connect; empty allows every address.
#[derive(Debug, Clone, Default)]
pub(crate) struct Allowlist(Vec<IpNet>);

impl Allowlist {
    pub(crate) fn new(nets: Vec<IpNet>) -> Self {
        Allowlist(nets)
    }

    pub(crate) fn allows(&self, peer: IpAddr) -> bool {
        // An IPv4 client of a dual-stack socket shows up as ::ffff:a.b.c.d.
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            IpAddr::V4(_) => peer,
        };
        self.0.is_empty() || self.0.iter().any(|net| net.contains(&peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> Token {
        "s3cret-token-0123456789".parse().expect("valid token")
    }

    #[test]
    fn the_token_is_accepted_in_the_path_or_the_query() {
        let is_in = |path: &str, query: Option<&str>| token().is_in(path, query);
        assert!(is_in("/push/s3cret-token-0123456789", None));
        assert!(is_in("/cgi", Some("a=1&token=s3cret-token-0123456789")));
        assert!(!is_in("/push/s3cret-token-012345678", None));
        assert!(!is_in("/push/s3cret-token-0123456789/x", None));
        assert!(!is_in("/cgi", Some("token=wrong")));
        assert!(!is_in("/cgi", None));
    }

    #[test]
    fn the_token_is_stripped_from_the_path_and_the_query() {
        let strip = |uri: &'static str| token().strip_from(&http::Uri::from_static(uri));
        assert_eq!(strip("/push/s3cret-token-0123456789"), "/");
        assert_eq!(strip("/orders/push/s3cret-token-0123456789"), "/orders");
        assert_eq!(
            strip("/cgi?a=1&token=s3cret-token-0123456789&b=2"),
            "/cgi?a=1&b=2"
        );
        assert_eq!(strip("/cgi?token=s3cret-token-0123456789"), "/cgi");
        assert_eq!(strip("/cgi?token=wrong"), "/cgi");
        assert_eq!(strip("/cgi/x?y=1"), "/cgi/x?y=1");
    }

    #[test]
    fn short_or_unsafe_tokens_are_refused_and_tokens_never_print() {
        assert!("short".parse::<Token>().is_err());
        assert!("has a space in it, long enough".parse::<Token>().is_err());
        assert_eq!(format!("{:?} {}", token(), token()), "Token(***) ***");
    }

    #[test]
    fn the_allowlist_matches_cidrs_and_mapped_ipv4() {
        let list = Allowlist::new(vec![
            "10.0.0.0/8".parse().expect("cidr"),
            "::1/128".parse().expect("cidr"),
        ]);
        assert!(list.allows("10.1.2.3".parse().expect("ip")));
        assert!(list.allows("::ffff:10.1.2.3".parse().expect("ip")));
        assert!(list.allows("::1".parse().expect("ip")));
        assert!(!list.allows("192.168.0.1".parse().expect("ip")));
        assert!(Allowlist::default().allows("192.168.0.1".parse().expect("ip")));
    }
}
