//! Outbound HTTP a guest is granted: a destination (`[SCHEME://]HOST[:PORT]`) and the
//! addresses a request to it may connect to.

use std::str::FromStr;

/// One destination for outbound HTTP: `[SCHEME://]HOST[:PORT]`, where HOST is a name, an
/// IP literal or a CIDR network. The scheme is the only one allowed, and `https` when
/// none is written: cleartext must be asked for. The port, when omitted, is the scheme's
/// default (80 for http, 443 for https), so a grant never opens a host's other services
/// by accident. `*.example.com` matches every subdomain of example.com (not example.com
/// itself).
///
/// A name is resolved by the host when the guest sends, and only its public addresses
/// are connected to: a name that resolves to loopback, private, link-local or other
/// special addresses is refused unless the grant allows private addresses
/// (`--http-private`). A grant by IP literal or network names its addresses outright.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGrant {
    scheme: HttpScheme,
    /// No scheme was written: `https` is implied (`check` says so).
    scheme_implied: bool,
    host: GrantedHost,
    port: Option<u16>,
    private: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum GrantedHost {
    /// One host name, lowercase.
    Name(String),
    /// Every subdomain of this domain (`*.DOMAIN`), lowercase, without the `*.`.
    Subdomains(String),
    /// An IP literal (a one-address network) or a CIDR network.
    Addresses(ipnet::IpNet),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HttpScheme {
    Http,
    Https,
}

impl HttpScheme {
    fn default_port(self) -> u16 {
        match self {
            HttpScheme::Http => 80,
            HttpScheme::Https => 443,
        }
    }

    fn name(self) -> &'static str {
        match self {
            HttpScheme::Http => "http",
            HttpScheme::Https => "https",
        }
    }
}

impl FromStr for HttpGrant {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let usage = || {
            format!(
                "{text:?}: use [http://|https://]HOST[:PORT], HOST a name (*.DOMAIN for its \
                 subdomains), an IP address or a CIDR network"
            )
        };
        let (scheme, scheme_implied, rest) = match text.split_once("://") {
            Some(("http", rest)) => (HttpScheme::Http, false, rest),
            Some(("https", rest)) => (HttpScheme::Https, false, rest),
            Some(_) => return Err(usage()),
            None => (HttpScheme::Https, true, text),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = split_port(rest).ok_or_else(usage)?;
        let host = if let Some(network) = parse_network(host) {
            GrantedHost::Addresses(network)
        } else {
            // A name: what `Authority` accepts, without user info, brackets or a port.
            let authority: http::uri::Authority = host.parse().map_err(|_| usage())?;
            if authority.as_str() != host
                || authority.host() != host
                || host.contains(['@', '[', ']', '/'])
            {
                return Err(usage());
            }
            let host = host.to_ascii_lowercase();
            match host.strip_prefix("*.") {
                Some(domain) if !domain.is_empty() && !domain.contains('*') => {
                    GrantedHost::Subdomains(domain.to_owned())
                }
                Some(_) => return Err(usage()),
                None if host.is_empty() || host.contains('*') => return Err(usage()),
                None => GrantedHost::Name(host),
            }
        };
        Ok(HttpGrant {
            scheme,
            scheme_implied,
            host,
            port,
            private: false,
        })
    }
}

/// Splits `HOST[:PORT]` (HOST may be `[IPv6]` or `[IPv6/PREFIX]`) into the host, without
/// brackets, and the port; `None` when the port is not a 16-bit number.
fn split_port(text: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(bracketed) = text.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        match after {
            "" => (host, None),
            after => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host, Some(port)),
            Some(_) => return None,
            None => (text, None),
        }
    };
    let port = match port {
        Some(port) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            Some(port.parse::<u16>().ok()?)
        }
        Some(_) => return None,
        None => None,
    };
    (!host.is_empty()).then_some((host, port))
}

/// An IP literal as a one-address network, or a CIDR network; `None` for a name.
fn parse_network(host: &str) -> Option<ipnet::IpNet> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Some(ipnet::IpNet::from(ip));
    }
    host.parse::<ipnet::IpNet>().ok().map(|net| net.trunc())
}

impl HttpGrant {
    /// The same destination, and the private addresses its name resolves to as well
    /// (`--http-private`): for a service inside the operator's own network.
    pub fn allowing_private(mut self) -> Self {
        self.private = true;
        self
    }

    /// What the grant means when its text left something to the reader: a grant
    /// without a scheme is HTTPS only.
    pub fn note(&self) -> Option<String> {
        self.scheme_implied.then(|| {
            let destination = self.destination_text();
            format!(
                "outbound grant {destination} means https://{destination} only: write http:// \
                 to allow cleartext"
            )
        })
    }

    /// `HOST[:PORT]` as granted.
    fn destination_text(&self) -> String {
        let host = match &self.host {
            GrantedHost::Name(name) => name.clone(),
            GrantedHost::Subdomains(domain) => format!("*.{domain}"),
            GrantedHost::Addresses(net) if net.prefix_len() == net.max_prefix_len() => {
                match net.addr() {
                    std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                    v4 => v4.to_string(),
                }
            }
            GrantedHost::Addresses(net) => net.to_string(),
        };
        match self.port {
            Some(port) => format!("{host}:{port}"),
            None => host,
        }
    }

    /// Whether a request to `uri` falls under this grant: `Some` with what the
    /// connection may reach, `None` when it does not.
    pub(crate) fn permits(&self, uri: &http::Uri) -> Option<Reach> {
        let scheme = match uri.scheme_str() {
            Some("http") => HttpScheme::Http,
            Some("https") => HttpScheme::Https,
            _ => return None,
        };
        let authority = uri.authority()?;
        // The connection goes to the authority as written: it must be exactly the host
        // and an optional valid port, with no user info for the resolver to see.
        let host = authority.host();
        let after_host = authority.as_str().strip_prefix(host).unwrap_or("@");
        let port_ok = after_host.is_empty()
            || after_host
                .strip_prefix(':')
                .is_some_and(|port| port.parse::<u16>().is_ok());
        if !port_ok || scheme != self.scheme {
            return None;
        }
        let port = uri.port_u16().unwrap_or(scheme.default_port());
        if port != self.port.unwrap_or(scheme.default_port()) {
            return None;
        }
        let literal = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .parse::<std::net::IpAddr>()
            .ok();
        let host = host.to_ascii_lowercase();
        let matches = match (&self.host, literal) {
            (GrantedHost::Addresses(net), Some(ip)) => net.contains(&ip),
            (GrantedHost::Name(name), None) => host == *name,
            (GrantedHost::Subdomains(domain), None) => host
                .strip_suffix(domain.as_str())
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
            _ => false,
        };
        matches.then_some(match literal {
            Some(_) => Reach::Named,
            None if self.private => Reach::Named,
            None => Reach::Public,
        })
    }
}

impl std::fmt::Display for HttpGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme.name(), self.destination_text())?;
        if self.private {
            f.write_str(" (private addresses allowed)")?;
        }
        Ok(())
    }
}

/// Which addresses a granted request may connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Only public addresses: the grant names a host, whose DNS may point anywhere.
    Public,
    /// Whatever the destination resolves to: an IP literal or network granted as
    /// such, or a name granted with `--http-private`.
    Named,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reach(grant: &str, uri: &str) -> Option<Reach> {
        let grant: HttpGrant = grant.parse().expect("valid grant");
        grant.permits(&uri.parse().expect("valid uri"))
    }

    fn permits(grant: &str, uri: &str) -> bool {
        reach(grant, uri).is_some()
    }

    #[test]
    fn http_grants_match_scheme_host_and_port() {
        assert!(permits("api.example.com", "https://api.example.com/v1"));
        assert!(permits("api.example.com", "https://API.example.com/"));
        assert!(!permits("api.example.com", "https://api.example.com:8443/"));
        assert!(!permits("api.example.com", "https://example.com/"));
        assert!(!permits(
            "api.example.com",
            "https://api.example.com.evil.net/"
        ));
        assert!(permits(
            "https://api.example.com",
            "https://api.example.com:443/"
        ));
        assert!(!permits(
            "https://api.example.com",
            "http://api.example.com/"
        ));
        assert!(permits(
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080/x?y"
        ));
        assert!(!permits("http://127.0.0.1:8080", "http://127.0.0.1:8081/"));
        assert!(!permits("http://127.0.0.1:8080", "http://127.0.0.2:8080/"));
        assert!(permits("*.example.com", "https://a.b.example.com/"));
        assert!(!permits("*.example.com", "https://example.com/"));
        assert!(!permits("*.example.com", "https://badexample.com/"));
        assert!(permits("http://[::1]:9000", "http://[::1]:9000/"));
        // What the connection would use differs from what was checked: refused.
        assert!(!permits("api.example.com", "https://x@api.example.com/"));
        assert!(!permits(
            "api.example.com",
            "https://evil.com:80@api.example.com:443/"
        ));
        assert!(!permits("api.example.com", "https://api.example.com:/"));
    }

    #[test]
    fn a_grant_without_a_scheme_is_https_only_and_says_so() {
        assert!(!permits("api.example.com", "http://api.example.com/"));
        assert!(!permits(
            "api.example.com:8080",
            "http://api.example.com:8080/"
        ));
        let grant: HttpGrant = "api.example.com".parse().expect("valid");
        assert_eq!(
            grant.note().as_deref(),
            Some(
                "outbound grant api.example.com means https://api.example.com only: write \
                 http:// to allow cleartext"
            )
        );
        let written: HttpGrant = "http://api.example.com".parse().expect("valid");
        assert_eq!(written.note(), None);
    }

    #[test]
    fn names_reach_public_addresses_unless_granted_private_and_literals_reach_themselves() {
        assert_eq!(
            reach("http://granted.test:8080", "http://granted.test:8080/"),
            Some(Reach::Public)
        );
        let private = "http://granted.test:8080"
            .parse::<HttpGrant>()
            .expect("valid")
            .allowing_private();
        assert_eq!(
            private.permits(&"http://granted.test:8080/".parse().expect("uri")),
            Some(Reach::Named)
        );
        assert_eq!(
            reach("http://127.0.0.1:8080", "http://127.0.0.1:8080/"),
            Some(Reach::Named)
        );
        assert_eq!(
            reach("http://10.1.0.0/16:8080", "http://10.1.2.3:8080/"),
            Some(Reach::Named)
        );
        assert!(!permits("http://10.1.0.0/16:8080", "http://10.2.0.1:8080/"));
        assert!(permits("https://[fd00::/8]", "https://[fd12::1]/"));
        // A name never matches an address grant, nor an address a name grant.
        assert!(!permits("http://10.0.0.0/8", "http://ten.example/"));
        assert!(!permits("http://localhost", "http://127.0.0.1/"));
    }

    #[test]
    fn http_grants_refuse_what_is_not_a_destination() {
        for bad in [
            "",
            "ftp://example.com",
            "user@example.com",
            "example.com/path",
            "*",
            "*.",
            "a.*.com",
            "example.com:99999",
            "example.com:",
            "10.0.0.0/33",
            "[::1",
            "::1",
        ] {
            assert!(bad.parse::<HttpGrant>().is_err(), "{bad:?} was accepted");
        }
    }
}
