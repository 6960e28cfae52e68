//! The machine the tasks run on: who runs them, its commands, and Debian's packages.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Whether this runs as root (and so may install packages without asking).
pub(crate) fn is_root() -> bool {
    output(Path::new("id"), &["-u"]).is_some_and(|uid| uid.trim() == "0")
}

fn apt_get(args: &[&str]) -> Result<()> {
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        // Some tasks' reports are their stdout: apt's chatter goes to stderr.
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .context("running apt-get")?;
    if !status.success() {
        bail!("apt-get {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Installs Debian's `packages`, refreshing the package lists first, once per run.
///
/// A new machine's lists are old: an install from them can succeed with a version the
/// lists knew (the release's main suite) while the current one sits in an update or
/// security suite, so the lists are refreshed before the first install, not only after
/// a failed one.
pub(crate) fn install(packages: &[&str]) -> Result<()> {
    refresh_package_lists()?;
    let mut install = vec!["install", "-y"];
    install.extend_from_slice(packages);
    apt_get(&install)
}

/// `apt-get update`, the first time this run asks; later calls return at once.
fn refresh_package_lists() -> Result<()> {
    static REFRESHED: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut refreshed = REFRESHED.lock().unwrap_or_else(|e| e.into_inner());
    if !*refreshed {
        eprintln!("xtask: refreshing Debian's package lists (apt-get update)");
        apt_get(&["update"])?;
        *refreshed = true;
    }
    Ok(())
}

/// A server program a test starts itself: the binary the variable `var` names, or
/// Debian's `bin` from `package`, installed now when missing (as root; otherwise the
/// error says what to install). `needed_by` names the test, for that error.
pub(crate) fn test_program(var: &str, bin: &str, package: &str, needed_by: &str) -> Result<String> {
    if let Ok(bin) = std::env::var(var) {
        return Ok(bin);
    }
    if !Path::new(bin).is_file() {
        if !is_root() {
            bail!(
                "{needed_by} needs {bin}: install Debian's package {package}, set {var} to \
                 such a binary, or run as root so that this installs it"
            );
        }
        eprintln!("xtask: installing {package} (apt-get install {package})");
        install(&[package])?;
    }
    Ok(bin.to_owned())
}

/// A command's stdout, when it ran and succeeded.
pub(crate) fn output(program: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}
