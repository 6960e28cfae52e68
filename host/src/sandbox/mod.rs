//! The sandbox: how a component becomes native code, and the guest instance a message
//! runs in, with exactly what the operator grants it.
//!
//! - [`engine`]: the wasmtime engine every route shares, and its settings.
//! - [`loading`]: a component file made ready to instantiate: compiled, or loaded from
//!   the [`compile_cache`] or a `.cwasm` ([`precompiled`]).
//! - [`bindings`]: the host side of the WIT package, generated.
//! - [`guest`]: a route's guest: its instances (fresh, or reused from its
//!   [`instance_pool`]), its deadline, its [`memory_cap`], its output
//!   ([`guest_output`]) and its faults.
//! - [`grants`]: what a guest may reach: environment, directories ([`granted_files`])
//!   and outbound HTTP ([`outbound_http`]), as granted.

pub(crate) mod bindings;
pub(crate) mod compile_cache;
pub(crate) mod engine;
pub(crate) mod granted_files;
pub(crate) mod grants;
pub(crate) mod guest;
pub(crate) mod guest_output;
pub(crate) mod instance_pool;
pub(crate) mod loading;
pub(crate) mod memory_cap;
pub(crate) mod outbound_http;
pub(crate) mod precompiled;
