//! Components compiled ahead of time: `cmq-host compile X.wasm` writes `X.cwasm`, native
//! code for this machine and this version of cmq-host, which `serve` loads without
//! compiling. A `.cwasm` is trusted code: load only files you compiled yourself.

use std::path::Path;

use wasmtime::component::Component;
use wasmtime::error::Context as _;
use wasmtime::{Engine, Precompiled};

/// Where a served component's native code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    /// Compiled from the `.wasm` at start (and written to the compile cache, if any).
    Compiled,
    /// From the compile cache, compiled at an earlier start.
    FromCache,
    /// From a `.cwasm` that `cmq-host compile` wrote.
    Precompiled,
}

/// Loads the component at `path`: a `.wasm` component from the compile cache in
/// `cache` or compiled, or a precompiled one (detected by its contents, whatever its
/// file name).
pub(crate) fn load_component(
    engine: &Engine,
    path: &Path,
    cache: Option<&Path>,
) -> wasmtime::Result<(Component, Loaded)> {
    // Read into memory rather than mapped: a file changed while mapped would change
    // code that is running.
    let bytes =
        std::fs::read(path).with_context(|| format!("reading component {}", path.display()))?;
    match Engine::detect_precompiled(&bytes) {
        None => match cache {
            Some(dir) => crate::compile_cache::load_or_compile(engine, dir, &bytes, path),
            None => Ok((compile(engine, &bytes, path)?, Loaded::Compiled)),
        },
        Some(Precompiled::Component) => {
            // SAFETY: `Component::deserialize` requires bytes produced by wasmtime's
            // `precompile_component`/`serialize` (as `cmq-host compile` writes), since
            // they are native code run as is. wasmtime itself refuses bytes from
            // another wasmtime version or incompatible engine settings; that the file
            // is the operator's own output is the operator's word, as documented for
            // `serve` and `compile`.
            #[allow(unsafe_code)]
            let component = unsafe { Component::deserialize(engine, &bytes) };
            component
                .map(|component| (component, Loaded::Precompiled))
                .with_context(|| {
                    format!(
                        "loading precompiled component {} (compile the .wasm again with \
                         this cmq-host: `cmq-host compile`)",
                        path.display()
                    )
                })
        }
        Some(Precompiled::Module) => wasmtime::bail!(
            "{} is a precompiled core module, not a component",
            path.display()
        ),
    }
}

/// Compiles the `.wasm` component `bytes`, read from `path`.
pub(crate) fn compile(engine: &Engine, bytes: &[u8], path: &Path) -> wasmtime::Result<Component> {
    Component::from_binary(engine, bytes)
        .with_context(|| format!("compiling component {}", path.display()))
}
