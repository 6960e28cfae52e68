//! The handler's settings, read through `wasi:config/store`: under `cmq-host` from
//! `--config-var NAME=VALUE` or a route's `[routes.NAME.config]` table, under `wasmtime
//! serve` from `-S config -S config-var=NAME=VALUE`, under Spin from the component's
//! `variables` (build with this crate's `spin` feature: Spin serves the interface's
//! `0.2.0-draft-2024-09-27`, wasmtime 40 and later only its `0.2.0-rc.1`, the default). Settings are where secrets go (API keys, the endpoint's
//! token): unlike environment variables, a platform can fill them from its secret
//! store without baking them into the component's manifest.
//!
//! ```no_run
//! # fn greeting() -> cmq_guest::Result<String> {
//! let greeting = cmq_guest::config::get("greeting")?.unwrap_or_else(|| "hello".into());
//! # Ok(greeting)
//! # }
//! ```
//!
//! In `cargo test`, natively, [`get`] reads the settings the test gave
//! [`crate::testing::Push::config`].

use crate::Error;

/// The setting `name`, or `None` when the platform has none by that name.
///
/// An error (the platform's settings store failed) says which setting; returned from a
/// handler with `?`, it asks for a retry.
pub fn get(name: &str) -> crate::Result<Option<String>> {
    read(name).map_err(|why| Error::msg(format!("reading setting {name}: {why}")))
}

#[cfg(target_arch = "wasm32")]
fn read(name: &str) -> Result<Option<String>, String> {
    use crate::bindings::config::store;
    store::get(name).map_err(|err| match err {
        store::Error::Upstream(why) | store::Error::Io(why) => why,
    })
}

#[cfg(not(target_arch = "wasm32"))]
fn read(name: &str) -> Result<Option<String>, String> {
    Ok(crate::testing::setting(name))
}
