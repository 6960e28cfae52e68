//! What an operator grants a guest beyond the default nothing: named environment
//! variables, read-only directories, and outbound HTTP to named hosts.

use std::os::fd::AsRawFd as _;
use std::path::PathBuf;
use std::str::FromStr;

use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::sandbox::config_vars::ConfigVar;
use crate::sandbox::http_grant::{HttpGrant, Reach};
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
    /// Settings the guest reads through `wasi:config/store`, name and value.
    pub config: Vec<ConfigVar>,
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
}
