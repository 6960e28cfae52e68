//! The compile cache: a `.wasm` component compiled once is kept as native code in the
//! cache directory, keyed by the SHA-256 of the component, the engine's settings and
//! this cmq-host's version, so that the next start loads it in milliseconds instead of
//! compiling it with Cranelift.
//!
//! A cached file is native code that runs as is, so the cache trusts only a directory
//! that this process's user owns and nobody else may write, and files in it that only
//! that user may write. Anything else is ignored with a warning, and the component is
//! compiled.

use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::precompiled::Loaded;
use wasmtime::Engine;
use wasmtime::component::Component;

/// The default cache directory: `$XDG_CACHE_HOME/cmq-host`, else `~/.cache/cmq-host`.
pub fn default_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))?;
    Some(base.join("cmq-host"))
}

/// Loads the `.wasm` component `bytes` (read from `path`) from the cache in `dir`, or
/// compiles it and stores the result there.
pub(crate) fn load_or_compile(
    engine: &Engine,
    dir: &Path,
    bytes: &[u8],
    path: &Path,
) -> wasmtime::Result<(Component, Loaded)> {
    let entry = dir.join(format!("{}.cwasm", key(engine, bytes)));
    match trusted(dir, &entry) {
        Ok(true) => match std::fs::read(&entry) {
            Ok(cached) => {
                // SAFETY: `Component::deserialize` runs the bytes as native code; they
                // are `Component::serialize` output that this user wrote below, in a
                // directory and file only this user can write (checked by `trusted`).
                // wasmtime itself refuses bytes from another version or settings.
                #[allow(unsafe_code)]
                let component = unsafe { Component::deserialize(engine, &cached) };
                match component {
                    Ok(component) => return Ok((component, Loaded::FromCache)),
                    Err(err) => tracing::warn!(
                        entry = %entry.display(),
                        "compile cache entry unusable, compiling again: {err}"
                    ),
                }
            }
            Err(err) => tracing::warn!(entry = %entry.display(), "compile cache unreadable: {err}"),
        },
        Ok(false) => {}
        Err(reason) => {
            tracing::warn!(dir = %dir.display(), "compile cache not used: {reason}");
            return Ok((
                crate::precompiled::compile(engine, bytes, path)?,
                Loaded::Compiled,
            ));
        }
    }
    let component = crate::precompiled::compile(engine, bytes, path)?;
    if let Err(err) = store(dir, &entry, &component) {
        tracing::warn!(dir = %dir.display(), "compile cache not written: {err}");
    }
    Ok((component, Loaded::Compiled))
}

/// The entry's name: SHA-256 over the component, the engine's compatibility hash (its
/// settings and wasmtime's version) and cmq-host's version.
fn key(engine: &Engine, bytes: &[u8]) -> String {
    let mut hasher = ShaHasher(Sha256::new());
    bytes.hash(&mut hasher);
    engine.precompile_compatibility_hash().hash(&mut hasher);
    env!("CARGO_PKG_VERSION").hash(&mut hasher);
    hasher
        .0
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Feeds `Hash` output into SHA-256.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        // Only the digest is used, through `finalize`.
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// Creates `dir` (owner-only) when missing; then whether `entry` exists, or why the
/// directory cannot be trusted.
fn trusted(dir: &Path, entry: &Path) -> Result<bool, String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|err| format!("cannot create it: {err}"))?;
    let user = std::fs::metadata("/proc/self")
        .map_err(|err| format!("cannot tell this process's user: {err}"))?
        .uid();
    let safe = |meta: std::fs::Metadata, path: &Path| -> Result<(), String> {
        if meta.uid() != user {
            return Err(format!("{} belongs to another user", path.display()));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(format!("{} is writable by others", path.display()));
        }
        Ok(())
    };
    // The directory may be a symbolic link (systemd's DynamicUser makes one): what it
    // points to is checked. An entry must be a plain file.
    safe(std::fs::metadata(dir).map_err(|err| err.to_string())?, dir)?;
    match std::fs::symlink_metadata(entry) {
        Ok(meta) if meta.is_file() => safe(meta, entry).map(|()| true),
        Ok(_) => Err(format!("{} is not a plain file", entry.display())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err.to_string()),
    }
}

/// Writes the compiled component to `entry`, atomically (a temporary file renamed).
fn store(dir: &Path, entry: &Path, component: &Component) -> anyhow::Result<()> {
    let serialized = component.serialize()?;
    // Unique per process and call: two receivers may compile the same component at once.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let write = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let temporary = dir.join(format!(".{}-{write}.tmp", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(&serialized)?;
    file.sync_all()?;
    std::fs::rename(&temporary, entry)?;
    Ok(())
}
