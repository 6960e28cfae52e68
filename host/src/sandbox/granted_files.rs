//! What a guest may do in a directory it was granted, beyond wasmtime-wasi's read-only
//! preopen: two of `wasi:filesystem`'s calls are replaced, each checking first and then
//! calling wasmtime-wasi's own.
//!
//! - `open-at` refuses special files (FIFOs, sockets, devices) with `access`: opening a
//!   FIFO blocks a thread of the blocking pool until somebody writes to it, past the
//!   message's deadline, and the store's SQLite work runs on that pool too.
//! - `readlink-at` answers only targets that stay inside the grant (relative, without
//!   `..`), and refuses the others with `not-permitted`: an absolute target would show
//!   the guest a host path.

use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemView as _};
use wasmtime_wasi::p2::bindings::filesystem::types::{
    DescriptorFlags, DescriptorType, ErrorCode, Host as _, HostDescriptor, OpenFlags, PathFlags,
};

/// The `wasi:filesystem/types` instance wasmtime-wasi links, whose two calls this
/// module replaces (guests of any 0.2 version are served by it).
const TYPES: &str = "wasi:filesystem/types@0.2.12";

/// Replaces `open-at` and `readlink-at` in `linker`, which already holds wasmtime-wasi.
pub(crate) fn add_to_linker<T: wasmtime_wasi::WasiView + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker.instance(TYPES)?;
    types.func_wrap_async(
        "[method]descriptor.open-at",
        |mut store,
         (dir, path_flags, path, open_flags, flags): (
            Resource<Descriptor>,
            PathFlags,
            String,
            OpenFlags,
            DescriptorFlags,
        )| {
            Box::new(async move {
                let mut files = store.data_mut().filesystem();
                let looked_at = Resource::<Descriptor>::new_borrow(dir.rep());
                // What is there now, following links as the open would.
                if let Ok(stat) = files.stat_at(looked_at, path_flags, path.clone()).await
                    && is_special(stat.type_)
                {
                    return Ok((Err(ErrorCode::Access),));
                }
                let opened = match files
                    .open_at(dir, path_flags, path, open_flags, flags)
                    .await
                {
                    Ok(file) => Ok(file),
                    Err(err) => Err(files.convert_error_code(err)?),
                };
                Ok((opened,))
            })
        },
    )?;
    types.func_wrap_async(
        "[method]descriptor.readlink-at",
        |mut store, (dir, path): (Resource<Descriptor>, String)| {
            Box::new(async move {
                let mut files = store.data_mut().filesystem();
                let target = match files.readlink_at(dir, path).await {
                    Ok(target) if stays_inside(&target) => Ok(target),
                    Ok(_) => Err(ErrorCode::NotPermitted),
                    Err(err) => Err(files.convert_error_code(err)?),
                };
                Ok((target,))
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// A file whose open may block, or which is no file at all: FIFOs, sockets, devices.
fn is_special(kind: DescriptorType) -> bool {
    matches!(
        kind,
        DescriptorType::Fifo
            | DescriptorType::Socket
            | DescriptorType::CharacterDevice
            | DescriptorType::BlockDevice
            | DescriptorType::Unknown
    )
}

/// Whether a link's target stays inside the directory holding the link: relative and
/// never climbing (`..`).
fn stays_inside(target: &str) -> bool {
    !target.is_empty() && !target.starts_with('/') && target.split('/').all(|part| part != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_targets_that_could_leave_the_grant_are_not_told() {
        assert!(stays_inside("file.txt"));
        assert!(stays_inside("sub/dir/file.txt"));
        assert!(stays_inside("./file.txt"));
        assert!(!stays_inside("/etc/passwd"));
        assert!(!stays_inside("../secret"));
        assert!(!stays_inside("sub/../../secret"));
        assert!(!stays_inside(""));
    }
}
