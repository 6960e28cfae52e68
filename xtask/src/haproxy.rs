//! The load balancer the many-hosts test puts in front of two `cmq-host` processes:
//! Debian's HAProxy, installed when missing. The test starts its own instance, on its
//! own ports, and stops it; the package's service is never started.
//!
//! `CMQ_TEST_HAPROXY`, when set, names a `haproxy` binary of your own instead.

use std::path::Path;

use anyhow::{Result, bail};

/// The variable the tests read: the `haproxy` binary.
pub const BIN_VAR: &str = "CMQ_TEST_HAPROXY";

const DEBIAN_BIN: &str = "/usr/sbin/haproxy";

/// The `haproxy` binary for the tests: the caller's own, or Debian's, installed now if
/// missing.
pub fn ensure() -> Result<String> {
    if let Ok(bin) = std::env::var(BIN_VAR) {
        return Ok(bin);
    }
    if !Path::new(DEBIAN_BIN).is_file() {
        if !crate::system::is_root() {
            bail!(
                "the many-hosts test needs HAProxy: install Debian's package haproxy, set \
                 {BIN_VAR} to a haproxy binary, or run as root so that this installs it"
            );
        }
        eprintln!("xtask: installing HAProxy (apt-get install haproxy)");
        crate::system::install(&["haproxy"])?;
    }
    Ok(DEBIAN_BIN.to_owned())
}
