//! What an operator grants a guest beyond the default nothing: named environment
//! variables and one read-only directory.

use std::path::PathBuf;
use std::str::FromStr;

use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// Capabilities granted to every instance of a component. Empty by default.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Environment variables the guest sees, name and value.
    pub env: Vec<EnvGrant>,
    /// One host directory the guest may read (never write).
    pub dir: Option<DirGrant>,
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
    /// Checks, at start, that the granted directory can be opened.
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        if let Some(dir) = &self.dir {
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
        if let Some(dir) = &self.dir {
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
}
