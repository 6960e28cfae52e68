//! How a component file becomes native code: compiled from its `.wasm` at start, taken
//! from the [compile cache](crate::sandbox::compile_cache), or loaded from a `.cwasm`
//! [precompiled](crate::sandbox::precompiled) by `cmq-host compile`.

use std::path::Path;

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::error::Context as _;

use crate::sandbox::compile_cache::{self, Lookup};

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
    if let Some(kind) = Engine::detect_precompiled(&bytes) {
        let component = crate::sandbox::precompiled::load(
            engine,
            &bytes,
            path,
            kind,
            loading.allow_precompiled,
        )?;
        return Ok((component, Loaded::Precompiled));
    }
    let Some(dir) = loading.compile_cache else {
        return Ok((compile(engine, &bytes, path)?, Loaded::Compiled));
    };
    match compile_cache::lookup(engine, dir, &bytes) {
        Lookup::Hit(component) => Ok((component, Loaded::FromCache)),
        Lookup::Miss(entry) => {
            let component = compile(engine, &bytes, path)?;
            entry.store(&component);
            Ok((component, Loaded::Compiled))
        }
        Lookup::Unusable => Ok((compile(engine, &bytes, path)?, Loaded::Compiled)),
    }
}

/// Compiles the `.wasm` component `bytes`, read from `path`.
fn compile(engine: &Engine, bytes: &[u8], path: &Path) -> wasmtime::Result<Component> {
    Component::from_binary(engine, bytes)
        .with_context(|| format!("compiling component {}", path.display()))
}
