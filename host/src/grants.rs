//! What an operator grants a guest beyond the default nothing: named environment
//! variables, read-only directories, and outbound HTTP to named hosts.

use std::path::PathBuf;
use std::str::FromStr;

use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

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

/// One destination for outbound HTTP: `[SCHEME://]HOST[:PORT]`. The scheme, when given,
/// is the only one allowed; the port, when omitted, is the scheme's default (80 for
/// http, 443 for https), so a grant never opens a host's other services by accident.
/// `*.example.com` matches every subdomain of example.com (not example.com itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGrant {
    scheme: Option<HttpScheme>,
    host: String,
    port: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HttpScheme {
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
}

impl FromStr for HttpGrant {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let usage = || format!("{text:?}: use [http://|https://]HOST[:PORT], HOST may be *.DOMAIN");
        let (scheme, rest) = match text.split_once("://") {
            Some(("http", rest)) => (Some(HttpScheme::Http), rest),
            Some(("https", rest)) => (Some(HttpScheme::Https), rest),
            Some(_) => return Err(usage()),
            None => (None, text),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let authority: http::uri::Authority = rest.parse().map_err(|_| usage())?;
        if authority.as_str() != rest || rest.contains('@') {
            return Err(usage());
        }
        // `Authority` accepts any digits as a port; a grant's must fit in 16 bits.
        let port = match rest[authority.host().len()..].strip_prefix(':') {
            Some(port) => Some(port.parse::<u16>().map_err(|_| usage())?),
            None => None,
        };
        let host = authority.host().to_ascii_lowercase();
        let bare = host.strip_prefix("*.").unwrap_or(&host);
        if bare.is_empty() || bare.contains('*') {
            return Err(usage());
        }
        Ok(HttpGrant { scheme, host, port })
    }
}

impl HttpGrant {
    /// Whether a request to `uri` falls under this grant.
    fn permits(&self, uri: &http::Uri) -> bool {
        let scheme = match uri.scheme_str() {
            Some("http") => HttpScheme::Http,
            Some("https") => HttpScheme::Https,
            _ => return false,
        };
        let Some(authority) = uri.authority() else {
            return false;
        };
        // The connection goes to the authority as written: it must be exactly the host
        // and an optional valid port, with no user info for the resolver to see.
        let host = authority.host();
        let after_host = authority.as_str().strip_prefix(host).unwrap_or("@");
        let port_ok = after_host.is_empty()
            || after_host
                .strip_prefix(':')
                .is_some_and(|port| port.parse::<u16>().is_ok());
        if !port_ok {
            return false;
        }
        let host = host.to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(scheme.default_port());
        let host_matches = match self.host.strip_prefix("*.") {
            Some(domain) => host
                .strip_suffix(domain)
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
            None => host == self.host,
        };
        host_matches
            && self.scheme.is_none_or(|granted| granted == scheme)
            && match self.port {
                Some(granted) => granted == port,
                None => match self.scheme {
                    Some(granted) => port == granted.default_port(),
                    None => port == 80 || port == 443,
                },
            }
    }
}

impl Grants {
    /// Whether a guest may send an HTTP request to `uri`.
    pub(crate) fn permits_http(&self, uri: &http::Uri) -> bool {
        self.http.iter().any(|grant| grant.permits(uri))
    }

    /// Checks, at start, that each granted directory can be opened, at a guest path no
    /// other grant uses.
    pub(crate) fn check(&self) -> anyhow::Result<()> {
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
            WasiCtxBuilder::new()
                .preopened_dir(&dir.host, &dir.guest, FsPerms::ReadOnly)
                .map_err(|err| {
                    anyhow::anyhow!("opening granted directory {}: {err}", dir.host.display())
                })?;
        }
        Ok(())
    }

    /// Adds the grants to one instance's WASI context.
    pub(crate) fn apply(&self, wasi: &mut WasiCtxBuilder) -> wasmtime::Result<()> {
        for grant in &self.env {
            wasi.env(&grant.name, &grant.value);
        }
        for dir in &self.dirs {
            wasi.preopened_dir(&dir.host, &dir.guest, FsPerms::ReadOnly)?;
        }
        Ok(())
    }
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
            .check()
            .expect("two paths");
        let err = grants(vec![grant("/a"), grant("/a")])
            .check()
            .expect_err("one path twice");
        assert!(err.to_string().contains("both granted at /a"), "{err}");
    }

    fn permits(grant: &str, uri: &str) -> bool {
        let grant: HttpGrant = grant.parse().expect("valid grant");
        grant.permits(&uri.parse().expect("valid uri"))
    }

    #[test]
    fn http_grants_match_scheme_host_and_port() {
        assert!(permits("api.example.com", "https://api.example.com/v1"));
        assert!(permits("api.example.com", "http://API.example.com/"));
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
        assert!(permits("[::1]:9000", "http://[::1]:9000/"));
        // What the connection would use differs from what was checked: refused.
        assert!(!permits("api.example.com", "https://x@api.example.com/"));
        assert!(!permits(
            "api.example.com",
            "https://evil.com:80@api.example.com:443/"
        ));
        assert!(!permits("api.example.com", "https://api.example.com:/"));
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
        ] {
            assert!(bad.parse::<HttpGrant>().is_err(), "{bad:?} was accepted");
        }
    }
}
