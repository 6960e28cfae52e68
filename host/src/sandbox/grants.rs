//! What an operator grants a guest beyond the default nothing: named environment
//! variables, read-only directories, and outbound HTTP to named hosts.

use std::os::fd::AsRawFd as _;
use std::path::PathBuf;
use std::str::FromStr;

use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::serve::access::Token;

/// The variables that hold the host's own secrets: the push token, the console's token
/// and the store's URL (which may carry a password).
const HOST_SECRETS: &[&str] = &["CMQ_HOST_TOKEN", "CMQ_HOST_ADMIN_TOKEN", "CMQ_HOST_STATE"];

/// Capabilities granted to every instance of a component. Empty by default.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Environment variables the guest sees, name and value.
    pub env: Vec<EnvGrant>,
    /// Host directories the guest may read (never write), each at a path of its own.
    pub dirs: Vec<DirGrant>,
    /// Hosts the guest may send HTTP requests to (wasi:http outgoing handler).
    pub http: Vec<HttpGrant>,
}

/// One environment variable: `NAME=VALUE`, or `NAME` to pass the host's own value.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvGrant {
    /// The variable's name.
    pub name: String,
    /// Its value.
    pub value: String,
}

// Values may be secrets (API keys are what handlers need): never print them.
impl std::fmt::Debug for EnvGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EnvGrant({}=***)", self.name)
    }
}

impl FromStr for EnvGrant {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, value) = match text.split_once('=') {
            Some((name, value)) => (name, value.to_owned()),
            None => {
                let value = std::env::var(text).map_err(|_| {
                    format!("{text} is not set in the host's environment (or use {text}=VALUE)")
                })?;
                (text, value)
            }
        };
        if name.is_empty() {
            return Err("an environment variable needs a name".into());
        }
        Ok(EnvGrant {
            name: name.to_owned(),
            value,
        })
    }
}

/// A host directory and the path the guest sees it at: `HOST::GUEST`, or `HOST` for
/// the same path in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    /// The directory on the host.
    pub host: PathBuf,
    /// Where the guest finds it.
    pub guest: String,
}

impl FromStr for DirGrant {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (host, guest) = text.split_once("::").unwrap_or((text, text));
        if host.is_empty() || guest.is_empty() {
            return Err(format!("{text:?}: use HOST_DIR or HOST_DIR::GUEST_DIR"));
        }
        Ok(DirGrant {
            host: host.into(),
            guest: guest.to_owned(),
        })
    }
}

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
    fn permits(&self, uri: &http::Uri) -> Option<Reach> {
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

impl Grants {
    /// Whether a guest may send an HTTP request to `uri`, and to which addresses: the
    /// widest reach of the grants that match.
    pub(crate) fn permits_http(&self, uri: &http::Uri) -> Option<(&HttpGrant, Reach)> {
        self.http
            .iter()
            .filter_map(|grant| Some((grant, grant.permits(uri)?)))
            .max_by_key(|(_, reach)| *reach == Reach::Named)
    }

    /// What the operator should hear at start: a grant whose text left its scheme to
    /// the reader, and one of the host's own secrets handed to guests (by the name of
    /// the variable that holds it, or by its value: `route_token` is the route's).
    pub(crate) fn warnings(&self, route_token: Option<&Token>) -> Vec<String> {
        let host_secrets: Vec<(&str, String)> = HOST_SECRETS
            .iter()
            .filter_map(|name| Some((*name, std::env::var(name).ok()?)))
            .filter(|(_, value)| !value.is_empty())
            .collect();
        let mut warnings: Vec<String> = self.http.iter().filter_map(HttpGrant::note).collect();
        for grant in &self.env {
            let secret = if HOST_SECRETS.contains(&grant.name.as_str()) {
                Some(grant.name.clone())
            } else if route_token.is_some_and(|token| token.is(&grant.value)) {
                Some("the route's token".to_owned())
            } else {
                host_secrets
                    .iter()
                    .find(|(_, value)| *value == grant.value)
                    .map(|(name, _)| format!("the value of {name}"))
            };
            if let Some(secret) = secret {
                warnings.push(format!(
                    "guests are granted the host's own secret ({secret}) as {}: any guest \
                     can print it or send it where its grants reach",
                    grant.name
                ));
            }
        }
        warnings
    }

    /// Opens each granted directory, at a guest path no other grant uses. The
    /// directories are held open from here on: every instance sees what was opened now,
    /// whatever later happens to the host path (a reload opens them anew).
    pub(crate) fn hold_dirs(&self) -> anyhow::Result<HeldDirs> {
        let mut held = Vec::with_capacity(self.dirs.len());
        for (index, dir) in self.dirs.iter().enumerate() {
            if let Some(other) = self.dirs[..index].iter().find(|o| o.guest == dir.guest) {
                anyhow::bail!(
                    "directories {} and {} are both granted at {}",
                    other.host.display(),
                    dir.host.display(),
                    dir.guest
                );
            }
            anyhow::ensure!(
                dir.host.is_dir(),
                "granted directory {} is not a directory",
                dir.host.display()
            );
            let file = std::fs::File::open(&dir.host).map_err(|err| {
                anyhow::anyhow!("opening granted directory {}: {err}", dir.host.display())
            })?;
            let held_dir = HeldDir {
                path: PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd())),
                _file: file,
                guest: dir.guest.clone(),
            };
            // What every instance will do: open it again through the descriptor.
            WasiCtxBuilder::new()
                .preopened_dir(&held_dir.path, &held_dir.guest, FsPerms::ReadOnly)
                .map_err(|err| {
                    anyhow::anyhow!(
                        "opening granted directory {} again through {} (is /proc mounted?): \
                         {err}",
                        dir.host.display(),
                        held_dir.path.display()
                    )
                })?;
            held.push(held_dir);
        }
        Ok(HeldDirs(held))
    }

    /// Adds the grants to one instance's WASI context, the directories those `dirs`
    /// holds (this route's, from [`Grants::hold_dirs`]).
    pub(crate) fn apply(&self, wasi: &mut WasiCtxBuilder, dirs: &HeldDirs) -> wasmtime::Result<()> {
        for grant in &self.env {
            wasi.env(&grant.name, &grant.value);
        }
        for dir in &dirs.0 {
            wasi.preopened_dir(&dir.path, &dir.guest, FsPerms::ReadOnly)?;
        }
        Ok(())
    }
}

/// The granted directories of one route, held open while it serves.
#[derive(Debug, Default)]
pub(crate) struct HeldDirs(Vec<HeldDir>);

#[derive(Debug)]
struct HeldDir {
    /// Open while the route serves; `path` names this very descriptor.
    _file: std::fs::File,
    /// `/proc/self/fd/N`: reopening it gives the directory opened, not what the host
    /// path names now.
    path: PathBuf,
    guest: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_grants_take_a_value_or_the_hosts_and_never_print_it() {
        let grant: EnvGrant = "API_KEY=s3cret".parse().expect("valid");
        assert_eq!(
            (grant.name.as_str(), grant.value.as_str()),
            ("API_KEY", "s3cret")
        );
        assert_eq!(format!("{grant:?}"), "EnvGrant(API_KEY=***)");
        assert!("CMQ_SURELY_NOT_SET_ANYWHERE".parse::<EnvGrant>().is_err());
        assert!("=x".parse::<EnvGrant>().is_err());
    }

    #[test]
    fn dir_grants_map_host_to_guest_paths() {
        let grant: DirGrant = "./data::/data".parse().expect("valid");
        assert_eq!(
            (grant.host, grant.guest.as_str()),
            (PathBuf::from("./data"), "/data")
        );
        let same: DirGrant = "/srv/x".parse().expect("valid");
        assert_eq!(same.guest, "/srv/x");
        assert!("::/data".parse::<DirGrant>().is_err());
    }

    #[test]
    fn two_directories_may_not_share_a_guest_path() {
        let here = std::env::temp_dir();
        let grant = |guest: &str| DirGrant {
            host: here.clone(),
            guest: guest.into(),
        };
        let grants = |dirs| Grants {
            dirs,
            ..Grants::default()
        };
        grants(vec![grant("/a"), grant("/b")])
            .hold_dirs()
            .expect("two paths");
        let err = grants(vec![grant("/a"), grant("/a")])
            .hold_dirs()
            .expect_err("one path twice");
        assert!(err.to_string().contains("both granted at /a"), "{err}");
    }

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
