//! The load balancer the many-hosts test puts in front of two `cmq-host` processes:
//! Debian's HAProxy, installed when missing. The test starts its own instance, on its
//! own ports, and stops it; the package's service is never started.
//!
//! `CMQ_TEST_HAPROXY`, when set, names a `haproxy` binary of your own instead.

use anyhow::Result;

/// The variable the tests read: the `haproxy` binary.
pub const BIN_VAR: &str = "CMQ_TEST_HAPROXY";

/// The `haproxy` binary for the tests: the caller's own, or Debian's, installed now if
/// missing.
pub fn ensure() -> Result<String> {
    crate::system::test_program(
        BIN_VAR,
        "/usr/sbin/haproxy",
        "haproxy",
        "the many-hosts test",
    )
}
