//! The `cmq-host` commands, one module each, and the arguments they share.

use std::path::{Path, PathBuf};

use cmq_host::{ConfigVar, DirGrant, EnvGrant, Grants, HttpGrant, StoreLocation};

pub(crate) mod check;
pub(crate) mod compile;
pub(crate) mod dead_letter;
pub(crate) mod log_format;
pub(crate) mod log_output;
pub(crate) mod log_time;
pub(crate) mod new;
pub(crate) mod push;
pub(crate) mod run;
pub(crate) mod serve;
pub(crate) mod systemd;
pub(crate) mod telemetry;

/// What a guest is granted beyond its sandbox, as `serve` and `run` take it.
#[derive(Debug, clap::Args)]
pub(crate) struct GrantArgs {
    /// Grant guests an environment variable: NAME=VALUE, or NAME for the host's own
    /// value (repeatable).
    #[arg(long = "env", value_name = "NAME[=VALUE]", help_heading = heading::GRANTS)]
    // Parsed in `grants`, not by clap, whose error would quote the value: values may
    // be secrets.
    env: Vec<String>,
    /// Grant guests read-only access to a host directory, seen at GUEST_DIR (default:
    /// the same path) (repeatable).
    #[arg(long = "dir", value_name = "HOST_DIR[::GUEST_DIR]", help_heading = heading::GRANTS)]
    dir: Vec<DirGrant>,
    /// Grant guests outbound HTTP to a destination (repeatable): HTTPS unless http:// is
    /// written; without a port, only the scheme's default (443, 80); `*.DOMAIN` matches
    /// its subdomains; HOST may be an IP address or a CIDR network. A name reaches only
    /// the public addresses it resolves to.
    #[arg(long = "http", value_name = "[SCHEME://]HOST[:PORT]", help_heading = heading::GRANTS)]
    http: Vec<HttpGrant>,
    /// As --http, and the name may resolve to loopback, private or link-local addresses:
    /// for a service inside your own network (repeatable).
    #[arg(long = "http-private", value_name = "[SCHEME://]HOST[:PORT]", help_heading = heading::GRANTS)]
    http_private: Vec<HttpGrant>,
    /// Give guests a setting they read through wasi:config/store, as `wasmtime serve -S
    /// config-var` does (repeatable). Values are never printed.
    #[arg(long = "config-var", value_name = "NAME=VALUE", help_heading = heading::GRANTS)]
    // Parsed in `grants`, as `--env`: values may be secrets.
    config_var: Vec<String>,
}

impl GrantArgs {
    /// The grants, `--env` values parsed here so that no error quotes one.
    pub(crate) fn grants(&self) -> anyhow::Result<Grants> {
        let env = self
            .env
            .iter()
            .map(|grant| grant.parse::<EnvGrant>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| anyhow::anyhow!("invalid --env: {reason}"))?;
        let config = self
            .config_var
            .iter()
            .map(|var| var.parse::<ConfigVar>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| anyhow::anyhow!("invalid --config-var: {reason}"))?;
        Ok(Grants {
            env,
            dirs: self.dir.clone(),
            http: self
                .http
                .iter()
                .cloned()
                .chain(
                    self.http_private
                        .iter()
                        .map(|grant| grant.clone().allowing_private()),
                )
                .collect(),
            config,
        })
    }
}

/// Where the delivery store is: shared by `serve` and `dead-letter`.
#[derive(Debug, clap::Args)]
pub(crate) struct StateArg {
    /// The delivery store: a SQLite file (created when missing), or a postgres:// URL
    /// that several hosts share. Prefer the environment variable for a URL with a
    /// password: flags show in `ps`.
    #[arg(
        long,
        global = true,
        value_name = "PATH|URL",
        help_heading = heading::STORE,
        default_value = "cmq-state.db",
        env = "CMQ_HOST_STATE",
        hide_env_values = true
    )]
    // Parsed here, not by clap, whose error would quote a URL's password.
    state: String,
}

impl StateArg {
    pub(crate) fn location(&self) -> anyhow::Result<StoreLocation> {
        self.state
            .parse()
            .map_err(|reason| anyhow::anyhow!("invalid --state (value not shown): {reason}"))
    }
}

/// A value parser for a flag whose values are `names`: help lists them as its possible
/// values, and each parses with `T`'s own `FromStr` (names are matched ignoring ASCII
/// case, as `T` does).
pub(crate) fn one_of<T>(
    names: &'static [&'static str],
) -> impl clap::builder::TypedValueParser<Value = T>
where
    T: std::str::FromStr + Clone + Send + Sync + 'static,
    T::Err: std::fmt::Display,
{
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(names)
        .try_map(|name| name.parse::<T>().map_err(|err| err.to_string()))
}

/// The headings `--help` groups flags under.
pub(crate) mod heading {
    pub(crate) const LISTENING: &str = "Listening";
    pub(crate) const HANDLER: &str = "Handler";
    pub(crate) const MESSAGE: &str = "Message";
    pub(crate) const LIMITS: &str = "Limits";
    pub(crate) const GRANTS: &str = "Grants";
    pub(crate) const STORE: &str = "Store";
    pub(crate) const COMPILED_CODE: &str = "Compiled code";
    pub(crate) const OBSERVABILITY: &str = "Observability";
}

/// The compile cache directory: `DIR`, none for `off`, or the default.
pub(crate) fn compile_cache_dir(flag: Option<&Path>) -> Option<PathBuf> {
    match flag {
        Some(dir) if dir.as_os_str() == "off" => None,
        Some(dir) => Some(dir.to_owned()),
        None => cmq_host::compile_cache_dir(),
    }
}
