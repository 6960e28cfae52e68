//! `cargo xtask guests`: builds handler crates into wasm32-wasip2 components and
//! copies them to `target/guests/<crate_name>.wasm`, where the host's tests and
//! users' configurations find them.
//!
//! rustup's `wasm32-wasip2` standard library is used when it is installed. Where it
//! is not (and `rustup target add` cannot download it, as on the machines this
//! project grew up on), Debian's `rustc-web` compiler rebuilds the standard library
//! from its `rust-web-src` sources with `-Zbuild-std`, linking against `wasi-libc`.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::system::{is_root, output};
use crate::{cargo, componentize, repo_root};

const TARGET: &str = "wasm32-wasip2";

/// A handler component exports one of these (the SDK exports both); names are stored
/// verbatim in the binary.
const EXPORTED_INTERFACE: &str = "cmq:push/handler@0.2.0";
const WASI_HTTP_INTERFACE: &str = "wasi:http/incoming-handler@0.2";

/// `\0asm`, then the component-model layer version (core modules have `1 0 0 0`).
const COMPONENT_HEADER: [u8; 8] = *b"\0asm\x0d\x00\x01\x00";

/// The fallback toolchain: Debian's packages and where they put things. The compiler
/// and its library sources must be of one version, so they are installed together.
const APT_PACKAGES: [&str; 3] = ["rustc-web", "rust-web-src", "wasi-libc"];
const COMPILER_PACKAGES: [&str; 2] = ["rustc-web", "rust-web-src"];
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const WASI_LIBC_DIR: &str = "/usr/lib/wasm32-wasi";

/// Inherited variables that would leak the outer build's (or the user's host-only)
/// settings into the wasm build; `CARGO_BUILD_*` and `CARGO_TARGET_*` go too.
const SCRUBBED_ENV: [&str; 9] = [
    "RUSTC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTC_BOOTSTRAP",
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTDOC",
    "RUSTDOCFLAGS",
    "CARGO_MAKEFLAGS",
];

/// What `cargo xtask guests` builds: Rust handler crates, and Python or JavaScript
/// handler files. Nothing named means every example and test fixture.
#[derive(Debug, Default)]
pub struct Selection {
    pub crates: Vec<PathBuf>,
    pub scripts: Vec<PathBuf>,
    /// Every example must build: a language this machine cannot build is an error,
    /// not a skip (the test suite's guests are all built by the run that uses them).
    pub require_all: bool,
}

/// Parses `[--crate PATH]... [--script FILE.py|FILE.js]...`.
pub fn parse_args(args: &[String]) -> Result<Selection, String> {
    let mut selection = Selection::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag, Some(value.to_owned())),
            None => (arg.as_str(), None),
        };
        let list = match flag {
            "--crate" => &mut selection.crates,
            "--script" => &mut selection.scripts,
            _ => return Err(format!("unexpected argument to `guests`: {arg}")),
        };
        let value = match inline {
            Some(value) => value,
            None => args.next().ok_or(format!("{flag} needs a path"))?.clone(),
        };
        list.push(as_the_shell_sees_it(Path::new(&value)));
    }
    Ok(selection)
}

/// A relative path read from where the shell says it is (`$PWD`), when that is the
/// current directory: in a checkout reached through a symbolic link, `--crate
/// ../orders` then names the folder beside the link, as `ls ../orders` does.
fn as_the_shell_sees_it(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    let logical = std::env::var_os("PWD").map(PathBuf::from);
    let here = std::env::current_dir().ok();
    match (logical, here) {
        (Some(logical), Some(here))
            if logical.is_absolute() && logical.canonicalize().ok() == here.canonicalize().ok() =>
        {
            normalize(&logical.join(path))
        }
        _ => path.to_path_buf(),
    }
}

/// `a/b/../c` as `a/c`, without asking the file system (which would follow links).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Builds the selected handlers (or every example and test fixture under `guest/`) and
/// returns where their components now are.
pub fn run(selection: &Selection) -> Result<Vec<PathBuf>> {
    let root = repo_root();
    let everything = selection.crates.is_empty() && selection.scripts.is_empty();
    let crates = if everything {
        workspace_guests(&root)?
    } else {
        selection
            .crates
            .iter()
            .map(|path| GuestCrate::read(path))
            .collect::<Result<_>>()?
    };
    let scripts = if everything {
        componentize::examples(&root)?
    } else {
        selection
            .scripts
            .iter()
            .map(|path| componentize::Script::read(path))
            .collect::<Result<_>>()?
    };
    let out_dir = root.join("target").join("guests");
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;

    let mut built = Vec::new();
    // The Rust crates are built with it, and so is the wasi-http entrance that a Python
    // or JavaScript handler is composed with.
    let toolchain = if crates.is_empty() && scripts.is_empty() {
        None
    } else {
        Some(Toolchain::find(needed_version(&root, &crates)?)?)
    };
    for krate in &crates {
        let toolchain = toolchain.as_ref().context("a toolchain for the crates")?;
        let started = Instant::now();
        let artifact = toolchain.build(&root, krate)?;
        let elapsed = started.elapsed();

        let dest = out_dir.join(format!("{}.wasm", krate.lib_name));
        let bytes = fs::read(&artifact).with_context(|| {
            format!("reading {} (is the crate a `cdylib`?)", artifact.display())
        })?;
        check_component(&bytes).with_context(|| format!("checking {}", artifact.display()))?;
        fs::write(&dest, &bytes).with_context(|| format!("writing {}", dest.display()))?;
        report(&root, &dest, bytes.len(), Some(elapsed));
        built.push(dest);
    }
    let entrance = match &toolchain {
        Some(toolchain) if !scripts.is_empty() => {
            let entrance = GuestCrate::read(&root.join("guest/entrance"))?;
            let artifact = toolchain.build(&root, &entrance)?;
            Some(fs::read(&artifact).with_context(|| format!("reading {}", artifact.display()))?)
        }
        _ => None,
    };
    for script in &scripts {
        // The examples in a language this machine cannot build are skipped, so that
        // the Rust handlers still build; a handler named with --script is an error.
        if everything && let Some(why) = componentize::unavailable(script.language) {
            let shown = script.source.strip_prefix(&root).unwrap_or(&script.source);
            // An earlier build's component would pass for this run's: it goes.
            let stale = out_dir.join(script.component_name());
            if stale.exists() {
                fs::remove_file(&stale)
                    .with_context(|| format!("removing the stale {}", stale.display()))?;
            }
            if selection.require_all {
                bail!("cannot build {}: {why}", shown.display());
            }
            eprintln!("xtask: skipping {}: {why}", shown.display());
            continue;
        }
        let started = Instant::now();
        let dest = out_dir.join(script.component_name());
        let rebuilt = componentize::build(&root, script, &dest, entrance.as_deref())?;
        let bytes = fs::read(&dest).with_context(|| format!("reading {}", dest.display()))?;
        check_component(&bytes).with_context(|| format!("checking {}", dest.display()))?;
        report(
            &root,
            &dest,
            bytes.len(),
            rebuilt.then(|| started.elapsed()),
        );
        built.push(dest);
    }
    Ok(built)
}

/// One line per component: where it is, its size, and how long it took (or that it was
/// up to date).
fn report(root: &Path, dest: &Path, bytes: usize, elapsed: Option<Duration>) {
    let when = match elapsed {
        Some(elapsed) => format!("built in {}", duration(elapsed)),
        None => "up to date".into(),
    };
    eprintln!(
        "xtask: {} ({}) {when}",
        dest.strip_prefix(root).unwrap_or(dest).display(),
        size(bytes),
    );
}

/// A handler crate to build: its manifest and the name of the `.wasm` it produces.
struct GuestCrate {
    manifest: PathBuf,
    /// The library's crate name (`-` turned into `_`), which names the artifact.
    lib_name: String,
}

impl GuestCrate {
    /// Reads a crate from its directory or its `Cargo.toml`.
    fn read(path: &Path) -> Result<Self> {
        let manifest = if path.is_dir() {
            path.join("Cargo.toml")
        } else {
            path.to_path_buf()
        };
        let manifest = manifest
            .canonicalize()
            .with_context(|| format!("no handler crate at {}", path.display()))?;
        let text = fs::read_to_string(&manifest)
            .with_context(|| format!("reading {}", manifest.display()))?;
        let lib_name = lib_name(&text)
            .with_context(|| format!("no [package] name in {}", manifest.display()))?;
        Ok(GuestCrate { manifest, lib_name })
    }

    fn dir(&self) -> &Path {
        self.manifest.parent().unwrap_or(Path::new("."))
    }
}

/// Every crate under `guest/examples` and `guest/fixtures` (the integration tests'
/// misbehaving guests), in name order.
fn workspace_guests(root: &Path) -> Result<Vec<GuestCrate>> {
    let mut crates = Vec::new();
    for folder in ["examples", "fixtures"] {
        let dir = root.join("guest").join(folder);
        for entry in fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let path = entry?.path();
            if path.join("Cargo.toml").is_file() {
                crates.push(GuestCrate::read(&path)?);
            }
        }
    }
    crates.sort_by(|a, b| a.lib_name.cmp(&b.lib_name));
    Ok(crates)
}

/// The library crate name from a manifest: `[lib] name`, else `[package] name` with
/// `-` as `_`. A line-based reading is enough for the `name = "..."` lines cargo
/// itself writes; it spares xtask a TOML parser.
fn lib_name(manifest: &str) -> Option<String> {
    let (mut section, mut package, mut lib) = (String::new(), None, None);
    for line in manifest.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = header.trim().to_string();
        } else if let Some((key, value)) = line.split_once('=') {
            if key.trim() != "name" {
                continue;
            }
            let value = value.trim().trim_matches(['"', '\'']).to_string();
            match section.as_str() {
                "package" => package = Some(value),
                "lib" => lib = Some(value),
                _ => {}
            }
        }
    }
    lib.or(package).map(|name| name.replace('-', "_"))
}

/// How this machine builds for wasm32-wasip2.
enum Toolchain {
    /// rustup's toolchain has the target's standard library: a plain cargo build.
    Rustup,
    /// Debian's compiler and library sources, with `-Zbuild-std`.
    Fallback {
        /// rustup's `lib/rustlib/<host>/bin`, holding `rust-lld` and
        /// `wasm-component-ld`, which Debian's packages lack.
        linker_dir: PathBuf,
    },
}

impl Toolchain {
    /// The toolchain for crates that need at least `needed` (their `rust-version`),
    /// installing or upgrading the fallback's packages when that is possible without
    /// asking. Says which path it took, with the versions, before anything builds.
    fn find(needed: RustVersion) -> Result<Self> {
        let rustc = rustup_rustc();
        if has_target_std(&rustc) {
            eprintln!(
                "xtask: {TARGET}: using {} ({})'s installed standard library (guests need \
                 rustc {needed})",
                rustc.display(),
                version(&rustc).unwrap_or_else(|| "version unknown".into()),
            );
            return Ok(Toolchain::Rustup);
        }

        let missing = missing_fallback_parts();
        if !missing.is_empty() {
            install_fallback(&rustc, &missing, needed)?;
        }
        let mut installed = fallback_version();
        match fallback_verdict(needed, installed, can_install()) {
            Verdict::Fits => {}
            Verdict::Upgrade => {
                eprintln!(
                    "xtask: {TARGET}: the fallback's {DEBIAN_RUSTC} is {}, the guests need \
                     {needed}: upgrading {} together",
                    shown(installed),
                    COMPILER_PACKAGES.join(" and "),
                );
                crate::system::install(&COMPILER_PACKAGES)?;
                installed = fallback_version();
                if let Verdict::Stop(why) = fallback_verdict(needed, installed, false) {
                    bail!("{why}");
                }
            }
            Verdict::Stop(why) => bail!("{why}"),
        }
        let linker_dir = linker_dir(&rustc)?;
        eprintln!(
            "xtask: {TARGET}: no standard library in {}; using the fallback: {} ({}) with \
             -Zbuild-std (guests need rustc {needed}), wasi-libc from {WASI_LIBC_DIR}, \
             linkers from {}",
            rustc.display(),
            DEBIAN_RUSTC,
            version(Path::new(DEBIAN_RUSTC)).unwrap_or_else(|| "version unknown".into()),
            linker_dir.display(),
        );
        Ok(Toolchain::Fallback { linker_dir })
    }

    /// Builds one crate in release mode; returns the component cargo wrote.
    fn build(&self, root: &Path, krate: &GuestCrate) -> Result<PathBuf> {
        // The guest workspace keeps its artifacts in guest/target; other crates get
        // one directory of their own under the repository's target, shared between
        // them so the standard library is compiled once. The fallback's artifacts
        // (another compiler) never share a directory with rustup's.
        let guest_dir = root.join("guest").canonicalize()?;
        let mut target_dir = if krate.manifest.starts_with(&guest_dir) {
            guest_dir.join("target")
        } else {
            root.join("target").join("guest-crates")
        };

        let mut cmd = Command::new(cargo());
        for (key, _) in std::env::vars_os() {
            let Some(key) = key.to_str() else { continue };
            if SCRUBBED_ENV.contains(&key)
                || key.starts_with("CARGO_BUILD_")
                || key.starts_with("CARGO_TARGET_")
            {
                cmd.env_remove(key);
            }
        }
        cmd.args(["build", "--release", "--target", TARGET, "--manifest-path"])
            .arg(&krate.manifest)
            .current_dir(krate.dir());

        if let Toolchain::Fallback { linker_dir } = self {
            target_dir.push("wasm-fallback");
            let rustflags = [
                format!("-Lnative={WASI_LIBC_DIR}"),
                "-Clink-self-contained=no".into(),
                // Handlers are reactors (exports, no `main`).
                format!("-Clink-arg={WASI_LIBC_DIR}/crt1-reactor.o"),
            ];
            let mut path = OsString::from(linker_dir);
            if let Some(old) = std::env::var_os("PATH") {
                path.push(":");
                path.push(old);
            }
            cmd.arg("-Zbuild-std=std,panic_abort")
                // Every crate, proc-macros too, builds with the compiler whose
                // library sources are installed.
                .env("RUSTC", DEBIAN_RUSTC)
                // Lets stable cargo and rustc accept -Z flags.
                .env("RUSTC_BOOTSTRAP", "1")
                .env("CARGO_ENCODED_RUSTFLAGS", rustflags.join("\x1f"))
                .env("PATH", path);
        }
        cmd.arg("--target-dir").arg(&target_dir);

        eprintln!(
            "xtask: building {} ({})",
            krate.lib_name,
            krate.dir().display()
        );
        let status = cmd
            .status()
            .with_context(|| format!("running {}", cargo().display()))?;
        if !status.success() {
            bail!("building {} failed ({status})", krate.manifest.display());
        }
        Ok(target_dir
            .join(TARGET)
            .join("release")
            .join(format!("{}.wasm", krate.lib_name)))
    }
}

/// rustup's compiler: the one next to the cargo running xtask, not whatever `rustc`
/// comes first on PATH (which may be Debian's).
fn rustup_rustc() -> PathBuf {
    let rustc = cargo().with_file_name("rustc");
    if rustc.is_file() {
        rustc
    } else {
        "rustc".into()
    }
}

/// Whether `rustc`'s sysroot holds the target's `libstd-*.rlib`.
fn has_target_std(rustc: &Path) -> bool {
    let Some(libdir) = output(rustc, &["--print", "target-libdir", "--target", TARGET]) else {
        return false;
    };
    let Ok(entries) = fs::read_dir(libdir.trim()) else {
        return false;
    };
    entries.filter_map(Result::ok).any(|entry| {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        name.starts_with("libstd-") && name.ends_with(".rlib")
    })
}

/// What the fallback needs that this machine lacks, as readable descriptions.
fn missing_fallback_parts() -> Vec<String> {
    let mut missing = Vec::new();
    let sysroot = output(Path::new(DEBIAN_RUSTC), &["--print", "sysroot"]);
    match &sysroot {
        None => missing.push(format!("{DEBIAN_RUSTC} (package rustc-web)")),
        Some(sysroot) => {
            let library = Path::new(sysroot.trim()).join("lib/rustlib/src/rust/library");
            if !library.join("std").join("Cargo.toml").is_file() {
                missing.push(format!("{} (package rust-web-src)", library.display()));
            }
        }
    }
    for file in ["libc.a", "crt1-reactor.o"] {
        let path = Path::new(WASI_LIBC_DIR).join(file);
        if !path.is_file() {
            missing.push(format!("{} (package wasi-libc)", path.display()));
        }
    }
    missing
}

/// Installs the fallback's packages when that is possible without asking: as root,
/// with apt-get. Otherwise explains the two ways to get a wasm32-wasip2 toolchain.
fn install_fallback(rustc: &Path, missing: &[String], needed: RustVersion) -> Result<()> {
    if !can_install() {
        bail!(
            "{rustc} has no {TARGET} standard library, and the fallback toolchain is \
             incomplete (missing: {missing}). Either:\n  \
             - install the target: rustup target add {TARGET}\n  \
             - or, on Debian 12 or later, install the fallback (rustc-web {needed} or \
             later): sudo apt-get update && sudo apt-get install -y {packages}\n\
             then run this again.",
            rustc = rustc.display(),
            missing = missing.join(", "),
            packages = APT_PACKAGES.join(" "),
        );
    }
    eprintln!(
        "xtask: {TARGET} standard library not installed and fallback incomplete (missing: {}); \
         running as root, so installing {} with apt-get",
        missing.join(", "),
        APT_PACKAGES.join(" "),
    );
    crate::system::install(&APT_PACKAGES)?;
    let still_missing = missing_fallback_parts();
    if !still_missing.is_empty() {
        bail!(
            "still missing after apt-get install: {}",
            still_missing.join(", ")
        );
    }
    Ok(())
}

/// Whether this run may install Debian's packages without asking.
fn can_install() -> bool {
    is_root() && Path::new("/usr/bin/apt-get").is_file()
}

/// A Rust release, as `rust-version` and `rustc --version` write it (the patch level
/// is left out: `rust-version` rarely names one, and a release's patches build alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct RustVersion {
    major: u32,
    minor: u32,
}

impl RustVersion {
    /// `1.95`, `1.95.0`, or `rustc 1.96.0 (...)`.
    fn parse(text: &str) -> Option<RustVersion> {
        let text = text.trim();
        let number = text.strip_prefix("rustc ").unwrap_or(text);
        let number = number.split([' ', '-', '+']).next()?;
        let mut parts = number.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(RustVersion { major, minor })
    }
}

impl std::fmt::Display for RustVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// What to do about the fallback compiler the guests would be built with.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// It is recent enough.
    Fits,
    /// It is not (or its version cannot be read), and this run may upgrade it.
    Upgrade,
    /// It is not, and nothing here can change that: why, and what to run.
    Stop(String),
}

/// Decides on the fallback's compiler: `installed` is `/usr/bin/rustc`'s version
/// (`None` when it cannot be read), `needed` the guests' `rust-version`.
fn fallback_verdict(
    needed: RustVersion,
    installed: Option<RustVersion>,
    can_install: bool,
) -> Verdict {
    if installed.is_some_and(|installed| installed >= needed) {
        return Verdict::Fits;
    }
    if can_install {
        return Verdict::Upgrade;
    }
    Verdict::Stop(format!(
        "the guests need rustc {needed} or later, and the fallback's {DEBIAN_RUSTC} is {}. \
         Either:\n  \
         - install the target: rustup target add {TARGET}\n  \
         - or upgrade Debian's compiler and its library sources together, to {needed} or \
         later: sudo apt-get update && sudo apt-get install -y {}\n\
         (a package list older than the security suite's compiler offers 1.85; check \
         with `{DEBIAN_RUSTC} --version`), then run this again.",
        shown(installed),
        APT_PACKAGES.join(" "),
    ))
}

fn shown(version: Option<RustVersion>) -> String {
    version.map_or_else(|| "of an unknown version".into(), |v| v.to_string())
}

/// The fallback compiler's version, or `None` when it cannot be read, or when its
/// library sources are another version than it (the two packages must match).
fn fallback_version() -> Option<RustVersion> {
    let compiler = RustVersion::parse(&version(Path::new(DEBIAN_RUSTC))?)?;
    let packages = output(
        Path::new("dpkg-query"),
        &[
            "-W",
            "-f",
            "${Version}\\n",
            COMPILER_PACKAGES[0],
            COMPILER_PACKAGES[1],
        ],
    );
    // Where dpkg cannot say (not Debian, or installed otherwise), trust the compiler.
    if let Some(packages) = packages {
        let versions: Vec<&str> = packages.lines().map(str::trim).collect();
        if versions.len() == 2 && versions[0] != versions[1] {
            return None;
        }
    }
    Some(compiler)
}

/// The oldest compiler every crate to build accepts: the highest `rust-version` of the
/// guest workspace (which the SDK and the examples inherit) and of each crate.
fn needed_version(root: &Path, crates: &[GuestCrate]) -> Result<RustVersion> {
    let workspace = root.join("guest/Cargo.toml");
    let text = fs::read_to_string(&workspace)
        .with_context(|| format!("reading {}", workspace.display()))?;
    let mut needed = rust_version(&text)
        .with_context(|| format!("no rust-version in {}", workspace.display()))?;
    for krate in crates {
        let text = fs::read_to_string(&krate.manifest)
            .with_context(|| format!("reading {}", krate.manifest.display()))?;
        if let Some(version) = rust_version(&text) {
            needed = needed.max(version);
        }
    }
    Ok(needed)
}

/// The `rust-version = "X.Y"` a manifest states (`rust-version.workspace = true` is
/// not a version, and is skipped).
fn rust_version(manifest: &str) -> Option<RustVersion> {
    manifest.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("").trim();
        let (key, value) = line.split_once('=')?;
        (key.trim() == "rust-version")
            .then(|| RustVersion::parse(value.trim().trim_matches(['"', '\''])))
            .flatten()
    })
}

/// rustup's `lib/rustlib/<host>/bin`, checked to hold the two linkers the build needs.
fn linker_dir(rustc: &Path) -> Result<PathBuf> {
    let sysroot = output(rustc, &["--print", "sysroot"])
        .with_context(|| format!("asking {} for its sysroot", rustc.display()))?;
    let host = output(rustc, &["-vV"])
        .and_then(|v| {
            v.lines()
                .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        })
        .with_context(|| format!("asking {} for its host triple", rustc.display()))?;
    let dir = Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(host.trim())
        .join("bin");
    for tool in ["rust-lld", "wasm-component-ld"] {
        if !dir.join(tool).is_file() {
            bail!(
                "{} is missing: the fallback links with the rust-lld and wasm-component-ld \
                 that rustup's toolchain ships",
                dir.join(tool).display()
            );
        }
    }
    Ok(dir)
}

/// A component, not a core module, and one that exports a handler interface.
fn check_component(bytes: &[u8]) -> Result<()> {
    if !bytes.starts_with(&COMPONENT_HEADER) {
        bail!("not a wasm component (no component header)");
    }
    let names = |name: &str| bytes.windows(name.len()).any(|w| w == name.as_bytes());
    if !names(EXPORTED_INTERFACE) && !names(WASI_HTTP_INTERFACE) {
        bail!(
            "the component exports neither {EXPORTED_INTERFACE} nor {WASI_HTTP_INTERFACE}.x: \
             is `cmq_guest::export!` missing?"
        );
    }
    Ok(())
}

fn version(rustc: &Path) -> Option<String> {
    output(rustc, &["--version"]).map(|v| v.trim().to_owned())
}

fn size(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

fn duration(elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        format!("{}m {:.0}s", (secs / 60.0).floor(), secs % 60.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lib_name_prefers_lib_section_and_snake_cases() {
        let manifest = "[package]\nname = \"log-ack\" # sample\nversion = \"0.1.0\"\n\n[lib]\ncrate-type = [\"cdylib\"]\n";
        assert_eq!(lib_name(manifest).as_deref(), Some("log_ack"));
        let renamed =
            "[package]\nname = \"a-b\"\n[lib]\nname = \"c_d\"\n[dependencies]\nname = \"x\"\n";
        assert_eq!(lib_name(renamed).as_deref(), Some("c_d"));
        assert_eq!(lib_name("[workspace]\n"), None);
    }

    #[test]
    fn parse_args_accepts_crates_and_scripts_and_rejects_the_rest() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let empty = parse_args(&args(&[])).expect("no arguments");
        assert!(empty.crates.is_empty() && empty.scripts.is_empty());
        let selection = parse_args(&args(&["--crate", "../a", "--crate=b", "--script", "h.py"]))
            .expect("valid arguments");
        assert_eq!(selection.crates.len(), 2);
        assert!(selection.crates[0].ends_with("a") && selection.crates[1].ends_with("b"));
        assert_eq!(
            normalize(Path::new("/w/cmq-wasm/../orders/./x")),
            Path::new("/w/orders/x")
        );
        assert_eq!(selection.scripts.len(), 1);
        assert!(selection.scripts[0].ends_with("h.py"));
        assert!(parse_args(&args(&["--crate"])).is_err());
        assert!(parse_args(&args(&["--release"])).is_err());
    }

    #[test]
    fn check_component_wants_the_header_and_the_export() {
        let mut good = COMPONENT_HEADER.to_vec();
        good.extend_from_slice(EXPORTED_INTERFACE.as_bytes());
        assert!(check_component(&good).is_ok());
        assert!(check_component(&COMPONENT_HEADER).is_err());
        let core_module = b"\0asm\x01\x00\x00\x00cmq:push/handler@0.2.0";
        assert!(check_component(core_module).is_err());
    }

    #[test]
    fn versions_parse_from_manifests_and_rustc() {
        let v = |major, minor| RustVersion { major, minor };
        assert_eq!(RustVersion::parse("1.95"), Some(v(1, 95)));
        assert_eq!(
            RustVersion::parse("rustc 1.85.0 (4d91de4e4 2025-02-17) (built from a source tarball)"),
            Some(v(1, 85))
        );
        assert_eq!(RustVersion::parse("rustc 1.96.0-nightly"), Some(v(1, 96)));
        assert_eq!(RustVersion::parse("rustc"), None);
        assert!(v(1, 85) < v(1, 95) && v(1, 96) > v(1, 95) && v(2, 0) > v(1, 99));
        let manifest = "[workspace.package]\nedition = \"2024\"\nrust-version = \"1.95\" # why\n";
        assert_eq!(rust_version(manifest), Some(v(1, 95)));
        assert_eq!(
            rust_version("[package]\nrust-version.workspace = true\n"),
            None
        );
    }

    #[test]
    fn the_fallback_compiler_is_checked_against_what_the_guests_need() {
        let v = |major, minor| RustVersion { major, minor };
        let needed = v(1, 95);
        // Recent enough: build, whoever runs it.
        assert_eq!(
            fallback_verdict(needed, Some(v(1, 95)), false),
            Verdict::Fits
        );
        assert_eq!(
            fallback_verdict(needed, Some(v(1, 96)), true),
            Verdict::Fits
        );
        // Too old, or unreadable (mismatched with its sources): root upgrades it.
        assert_eq!(
            fallback_verdict(needed, Some(v(1, 85)), true),
            Verdict::Upgrade
        );
        assert_eq!(fallback_verdict(needed, None, true), Verdict::Upgrade);
        // Too old and nothing may install: one message with both versions and the fix.
        let Verdict::Stop(why) = fallback_verdict(needed, Some(v(1, 85)), false) else {
            panic!("an old compiler without root must stop the build");
        };
        for part in [
            "rustc 1.95 or later",
            "/usr/bin/rustc is 1.85",
            "apt-get update && sudo apt-get install -y rustc-web rust-web-src wasi-libc",
            "rustup target add wasm32-wasip2",
        ] {
            assert!(why.contains(part), "{part:?} not in: {why}");
        }
        let Verdict::Stop(why) = fallback_verdict(needed, None, false) else {
            panic!("an unreadable compiler without root must stop the build");
        };
        assert!(why.contains("is of an unknown version"), "{why}");
    }
}
