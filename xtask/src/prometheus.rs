//! The monitoring server the metrics test scrapes `cmq-host` with: Debian's Prometheus,
//! installed when missing. The test starts its own instance, on its own port and with a
//! data folder of its own, and stops it; the package's service is never started.
//!
//! `CMQ_TEST_PROMETHEUS`, when set, names a `prometheus` binary of your own instead.

use anyhow::Result;

/// The variable the tests read: the `prometheus` binary.
pub const BIN_VAR: &str = "CMQ_TEST_PROMETHEUS";

/// The `prometheus` binary for the tests: the caller's own, or Debian's, installed now
/// if missing.
pub fn ensure() -> Result<String> {
    crate::system::test_program(
        BIN_VAR,
        "/usr/bin/prometheus",
        "prometheus",
        "the metrics test",
    )
}
