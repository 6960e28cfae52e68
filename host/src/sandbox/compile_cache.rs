//! The compile cache: a `.wasm` component compiled once is kept as native code in the
//! cache directory, keyed by the SHA-256 of the component, the engine's settings and
//! this cmq-host's version, so that the next start loads it in milliseconds instead of
//! compiling it with Cranelift.
//!
//! A cached file is native code that runs as is, so the cache trusts only a directory
//! that this process's effective user owns and nobody else may write, under parents that
//! no other user can swap it out of, and plain files in it (never a symbolic link) that
//! only that user may write; an entry is checked on the open file it is then read from,
//! so it cannot be replaced between the check and the read. Anything else is ignored
//! with a warning, and the component is compiled. Beyond [`MAX_CACHE_BYTES`] the
//! entries used longest ago are removed, and so are temporary files of writes that a
//! crash cut short.

use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

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

/// What the cache holds for a component.
pub(crate) enum Lookup {
    /// Its native code, compiled at an earlier start.
    Hit(Component),
    /// Nothing usable: compile it, and store the result in the entry.
    Miss(Entry),
    /// The cache cannot be trusted (logged): compile it, and store nothing.
    Unusable,
}

/// Where a component's native code goes in the cache.
#[derive(Debug)]
pub(crate) struct Entry {
    dir: PathBuf,
    path: PathBuf,
}

/// Looks up the `.wasm` component `bytes` in the cache in `dir`.
pub(crate) fn lookup(engine: &Engine, dir: &Path, bytes: &[u8]) -> Lookup {
    let entry = Entry {
        dir: dir.to_owned(),
        path: dir.join(format!("{}.cwasm", key(engine, bytes))),
    };
    match trusted(dir).and_then(|user| read_entry(&entry.path, user)) {
        Ok(Some(cached)) => {
            // SAFETY: `Component::deserialize` runs the bytes as native code; they are
            // `Component::serialize` output that this user wrote below, read from a
            // plain file only this user can write, in a directory only this user can
            // write (checked by `trusted` and `read_entry` on the open file). wasmtime
            // itself refuses bytes from another version or settings.
            #[allow(unsafe_code)]
            let component = unsafe { Component::deserialize(engine, &cached) };
            match component {
                Ok(component) => {
                    // Its time is when it was last used, for eviction.
                    touch(&entry.path);
                    Lookup::Hit(component)
                }
                Err(err) => {
                    tracing::warn!(
                        entry = %entry.path.display(),
                        "compile cache entry unusable, compiling again: {err}"
                    );
                    Lookup::Miss(entry)
                }
            }
        }
        Ok(None) => Lookup::Miss(entry),
        Err(reason) => {
            tracing::warn!(dir = %dir.display(), "compile cache not used: {reason}");
            Lookup::Unusable
        }
    }
}

impl Entry {
    /// Keeps `component`'s native code here; a failure is logged, and costs only a
    /// compile at the next start.
    pub(crate) fn store(&self, component: &Component) {
        if let Err(err) = store(&self.dir, &self.path, component) {
            tracing::warn!(dir = %self.dir.display(), "compile cache not written: {err}");
        }
    }
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

/// The most the cache's entries may take together; beyond it, the entries used
/// longest ago are removed when a new one is written.
const MAX_CACHE_BYTES: u64 = 1 << 30;

/// This process's effective user id, as the kernel reports it.
fn effective_uid() -> Result<u32, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|err| format!("cannot tell this process's user: {err}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        // Real, effective, saved and filesystem ids, in that order.
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| "cannot tell this process's user: no Uid in /proc/self/status".into())
}

/// Why `meta`, of `path`, is not this user's alone to write, if it is not.
fn owned_alone(meta: &std::fs::Metadata, path: &Path, user: u32) -> Result<(), String> {
    if meta.uid() != user {
        return Err(format!("{} belongs to another user", path.display()));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!("{} is writable by others", path.display()));
    }
    Ok(())
}

/// Creates `dir` (owner-only) when missing, and checks that only this process's user
/// can change what it holds: the directory itself (or what a symbolic link to it points
/// to: systemd's DynamicUser makes one), and every parent, which must belong to this
/// user or root and be writable by no one else unless sticky (as `/tmp` is). Returns the
/// user.
fn trusted(dir: &Path) -> Result<u32, String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|err| format!("cannot create it: {err}"))?;
    let user = effective_uid()?;
    let real = std::fs::canonicalize(dir).map_err(|err| err.to_string())?;
    let meta = std::fs::metadata(&real).map_err(|err| err.to_string())?;
    owned_alone(&meta, &real, user)?;
    for parent in real.ancestors().skip(1) {
        let meta = std::fs::metadata(parent).map_err(|err| err.to_string())?;
        let sticky = meta.mode() & 0o1000 != 0;
        if meta.uid() != 0 && meta.uid() != user {
            return Err(format!("{} belongs to another user", parent.display()));
        }
        if meta.mode() & 0o022 != 0 && !sticky {
            return Err(format!("{} is writable by others", parent.display()));
        }
    }
    Ok(user)
}

/// The entry's bytes, if it exists: opened without following a symbolic link, and
/// checked on the open file (a plain file that only `user` may write) before it is read.
fn read_entry(entry: &Path, user: u32) -> Result<Option<Vec<u8>>, String> {
    use std::io::Read as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(entry);
    let mut file = match file {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) if err.raw_os_error() == Some(libc::ELOOP) => {
            return Err(format!("{} is a symbolic link", entry.display()));
        }
        Err(err) => return Err(err.to_string()),
    };
    let meta = file.metadata().map_err(|err| err.to_string())?;
    if !meta.is_file() {
        return Err(format!("{} is not a plain file", entry.display()));
    }
    owned_alone(&meta, entry, user)?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.read_to_end(&mut bytes)
        .map_err(|err| format!("reading {}: {err}", entry.display()))?;
    Ok(Some(bytes))
}

/// Marks `entry` used now: eviction removes the entries used longest ago.
fn touch(entry: &Path) {
    let now = std::fs::FileTimes::new().set_modified(std::time::SystemTime::now());
    let _ = std::fs::File::options()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(entry)
        .and_then(|file| file.set_times(now));
}

/// Removes the entries used longest ago until those left take at most `limit` bytes.
fn evict(dir: &Path, limit: u64) -> std::io::Result<()> {
    let gone = |err: &std::io::Error| err.kind() == std::io::ErrorKind::NotFound;
    let mut entries = Vec::new();
    for item in std::fs::read_dir(dir)? {
        let item = item?;
        let path = item.path();
        // Another process may remove what this one lists.
        let meta = match item.metadata() {
            Ok(meta) => meta,
            Err(err) if gone(&err) => continue,
            Err(err) => return Err(err),
        };
        let name = item.file_name();
        let name = name.to_string_lossy();
        if meta.is_file() && name.starts_with('.') && name.ends_with(".tmp") {
            // A write that a crash cut short, an hour or more ago.
            let stale = meta
                .modified()?
                .elapsed()
                .is_ok_and(|age| age >= STALE_WRITE);
            if stale
                && let Err(err) = std::fs::remove_file(&path)
                && !gone(&err)
            {
                return Err(err);
            }
            continue;
        }
        if meta.is_file() && path.extension().is_some_and(|ext| ext == "cwasm") {
            entries.push((meta.modified()?, meta.len(), path));
        }
    }
    let mut total: u64 = entries.iter().map(|(_, len, _)| len).sum();
    entries.sort();
    for (_, len, path) in entries {
        if total <= limit {
            break;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => tracing::info!(entry = %path.display(), "compile cache entry evicted"),
            Err(err) if gone(&err) => {}
            Err(err) => return Err(err),
        }
        total -= len;
    }
    Ok(())
}

/// How old a temporary file of an unfinished write must be before eviction removes it.
const STALE_WRITE: std::time::Duration = std::time::Duration::from_secs(3600);

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
    evict(dir, MAX_CACHE_BYTES)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn eviction_removes_the_entries_used_longest_ago() -> std::io::Result<()> {
        let dir = std::env::temp_dir().join(format!("cmq-evict-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let now = SystemTime::now();
        for (name, age) in [("old.cwasm", 30), ("newer.cwasm", 20), ("newest.cwasm", 10)] {
            let file = std::fs::File::create(dir.join(name))?;
            file.set_len(100)?;
            let used = std::fs::FileTimes::new().set_modified(now - Duration::from_secs(age));
            file.set_times(used)?;
        }
        // Not an entry: never counted, never removed.
        std::fs::write(dir.join("notes.txt"), vec![b'x'; 1000])?;
        // A write cut short two hours ago goes; one under way now stays.
        for (name, age) in [(".1-0.tmp", 7200), (".2-0.tmp", 0)] {
            let file = std::fs::File::create(dir.join(name))?;
            let written = std::fs::FileTimes::new().set_modified(now - Duration::from_secs(age));
            file.set_times(written)?;
        }
        evict(&dir, 250)?;
        let left = |name: &str| dir.join(name).exists();
        assert!(!left("old.cwasm"));
        assert!(left("newer.cwasm") && left("newest.cwasm") && left("notes.txt"));
        assert!(!left(".1-0.tmp") && left(".2-0.tmp"));
        evict(&dir, 250)?;
        assert!(left("newer.cwasm"), "under the limit, nothing goes");
        std::fs::remove_dir_all(&dir)
    }
}
