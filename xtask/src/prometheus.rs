//! The monitoring server the metrics test scrapes `cmq-host` with: Debian's Prometheus,
//! installed when missing. The test starts its own instance, on its own port and with a
//! data folder of its own, and stops it; the package's service is never started.
//!
//! `CMQ_TEST_PROMETHEUS`, when set, names a `prometheus` binary of your own instead.

use std::path::Path;

use anyhow::{Result, bail};

/// The variable the tests read: the `prometheus` binary.
pub const BIN_VAR: &str = "CMQ_TEST_PROMETHEUS";

const DEBIAN_BIN: &str = "/usr/bin/prometheus";

/// The `prometheus` binary for the tests: the caller's own, or Debian's, installed now
/// if missing.
pub fn ensure() -> Result<String> {
    if let Ok(bin) = std::env::var(BIN_VAR) {
        return Ok(bin);
    }
    if !Path::new(DEBIAN_BIN).is_file() {
        if !crate::system::is_root() {
            bail!(
                "the metrics test needs Prometheus: install Debian's package prometheus, set \
                 {BIN_VAR} to a prometheus binary, or run as root so that this installs it"
            );
        }
        eprintln!("xtask: installing Prometheus (apt-get install prometheus)");
        crate::system::install(&["prometheus"])?;
    }
    Ok(DEBIAN_BIN.to_owned())
}
