//! Components compiled ahead of time: `cmq-host compile X.wasm` writes `X.cwasm`, native
//! code for this machine and this version of cmq-host, which `serve` loads without
//! compiling. A `.cwasm` is trusted code, run as is: it is loaded only when the operator
//! says so (`--allow-precompiled`, `allow_precompiled` in a config), and only from a
//! file named `.cwasm`, so that whoever may replace a `.wasm` (the code the sandbox is
//! there to contain) cannot make the host run native code of theirs.

use std::path::Path;

use wasmtime::component::Component;
use wasmtime::error::Context as _;
use wasmtime::{Engine, Precompiled};

/// How components are loaded: where compiled ones are kept, and whether native code
/// from a `.cwasm` is accepted.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Loading<'a> {
    pub(crate) compile_cache: Option<&'a Path>,
    pub(crate) allow_precompiled: bool,
}

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

/// Loads the component at `path`: a `.wasm` component from the compile cache or
/// compiled, or, when `loading` allows it and the file is named `.cwasm`, a
/// precompiled one (detected by its contents).
pub(crate) fn load_component(
    engine: &Engine,
    path: &Path,
    loading: Loading<'_>,
) -> wasmtime::Result<(Component, Loaded)> {
    // Read into memory rather than mapped: a file changed while mapped would change
    // code that is running.
    let bytes =
        std::fs::read(path).with_context(|| format!("reading component {}", path.display()))?;
    match Engine::detect_precompiled(&bytes) {
        None => match loading.compile_cache {
            Some(dir) => crate::compile_cache::load_or_compile(engine, dir, &bytes, path),
            None => Ok((compile(engine, &bytes, path)?, Loaded::Compiled)),
        },
        Some(Precompiled::Component) if !loading.allow_precompiled => wasmtime::bail!(
            "{} holds native code (a component precompiled by `cmq-host compile`), which \
             runs outside the sandbox: serve it only with --allow-precompiled \
             (allow_precompiled = true in a config)",
            path.display()
        ),
        Some(Precompiled::Component) if path.extension().is_none_or(|ext| ext != "cwasm") => {
            wasmtime::bail!(
                "{} holds native code but is not named .cwasm: a precompiled component \
                 is loaded only from a .cwasm file, so that a .wasm never runs as native code",
                path.display()
            )
        }
        Some(Precompiled::Component) => {
            // SAFETY: `Component::deserialize` requires bytes produced by wasmtime's
            // `precompile_component`/`serialize` (as `cmq-host compile` writes), since
            // they are native code run as is. wasmtime itself refuses bytes from
            // another wasmtime version or incompatible engine settings; that the file
            // is the operator's own output is the operator's word, given by
            // `--allow-precompiled` and the `.cwasm` name, as documented for `serve`
            // and `compile`.
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
