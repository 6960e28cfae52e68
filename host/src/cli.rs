//! The `cmq-host` commands, one module each, and the arguments they share.

use std::path::{Path, PathBuf};

use cmq_host::StoreLocation;

pub(crate) mod check;
pub(crate) mod compile;
pub(crate) mod dead_letter;
pub(crate) mod log_output;
pub(crate) mod push;
pub(crate) mod serve;

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

/// The compile cache directory: `DIR`, none for `off`, or the default.
pub(crate) fn compile_cache_dir(flag: Option<&Path>) -> Option<PathBuf> {
    match flag {
        Some(dir) if dir.as_os_str() == "off" => None,
        Some(dir) => Some(dir.to_owned()),
        None => cmq_host::compile_cache_dir(),
    }
}
