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

/// Loads the precompiled `kind` of `bytes`, read from `path`: a component, when the
/// operator allows precompiled code (`allowed`) and the file is named `.cwasm`.
pub(crate) fn load(
    engine: &Engine,
    bytes: &[u8],
    path: &Path,
    kind: Precompiled,
    allowed: bool,
) -> wasmtime::Result<Component> {
    match kind {
        Precompiled::Component if !allowed => wasmtime::bail!(
            "{} holds native code (a component precompiled by `cmq-host compile`), which \
             runs outside the sandbox: serve it only with --allow-precompiled \
             (allow_precompiled = true in a config)",
            path.display()
        ),
        Precompiled::Component if path.extension().is_none_or(|ext| ext != "cwasm") => {
            wasmtime::bail!(
                "{} holds native code but is not named .cwasm: a precompiled component \
                 is loaded only from a .cwasm file, so that a .wasm never runs as native code",
                path.display()
            )
        }
        Precompiled::Component => {
            // SAFETY: `Component::deserialize` requires bytes produced by wasmtime's
            // `precompile_component`/`serialize` (as `cmq-host compile` writes), since
            // they are native code run as is. wasmtime itself refuses bytes from
            // another wasmtime version or incompatible engine settings; that the file
            // is the operator's own output is the operator's word, given by
            // `--allow-precompiled` and the `.cwasm` name, as documented for `serve`
            // and `compile`.
            #[allow(unsafe_code)]
            let component = unsafe { Component::deserialize(engine, bytes) };
            component.with_context(|| {
                format!(
                    "loading precompiled component {} (compile the .wasm again with \
                         this cmq-host: `cmq-host compile`)",
                    path.display()
                )
            })
        }
        Precompiled::Module => wasmtime::bail!(
            "{} is a precompiled core module, not a component",
            path.display()
        ),
    }
}
