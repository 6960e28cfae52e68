//! Records what `cmq-host --version` says beside the crate's version: the commit it was
//! built from and the wasmtime it links. A `.cwasm` and the compile cache's entries are
//! native code for exactly one wasmtime, so a user comparing hosts needs both.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    println!("cargo:rustc-env=CMQ_HOST_COMMIT={}", commit(&manifest));
    let lock = manifest.join("../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    println!(
        "cargo:rustc-env=CMQ_HOST_WASMTIME={}",
        locked_version(&lock, "wasmtime").unwrap_or_else(|| "unknown".into())
    );
}

/// The short hash of the checked-out commit, or `unknown` outside a git checkout (a
/// source tarball, a crate); the build runs again when the checkout moves.
fn commit(manifest: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(manifest)
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .filter(|text| !text.is_empty())
    };
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        let dir = PathBuf::from(dir);
        let mut watched = vec![dir.join("HEAD"), dir.join("packed-refs")];
        if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
            let loose = dir.join(reference);
            // A packed branch has no loose ref until its next commit writes one into
            // this folder.
            watched.extend(loose.parent().map(Path::to_path_buf));
            watched.push(loose);
        }
        // Only files that exist: cargo reruns a build script whose watched file is
        // missing on every build (a fresh `git init` has no packed-refs, a packed branch
        // no loose ref), and cmq-host with everything after it would rebuild each time.
        for file in watched.iter().filter(|file| file.exists()) {
            println!("cargo:rerun-if-changed={}", file.display());
        }
    }
    git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into())
}

/// The version of `package` in the workspace's lock file.
fn locked_version(lock: &Path, package: &str) -> Option<String> {
    let text = std::fs::read_to_string(lock).ok()?;
    let name = format!("name = \"{package}\"");
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() == name {
            let version = lines.next()?.trim().strip_prefix("version = ")?;
            return Some(version.trim_matches('"').to_owned());
        }
    }
    None
}
