//! The sandbox: how a component becomes native code, and the guest instance a message
//! runs in, with exactly what the operator grants it.
//!
//! - [`engine`]: the wasmtime engine every route shares, and its settings.
//! - [`loading`]: a component file made ready to instantiate: compiled, or loaded from
//!   the [`compile_cache`] or a `.cwasm` ([`precompiled`]).
//! - [`bindings`]: the host side of the WIT package, generated.
//! - [`guest`]: a route's guest: a message run in an [`instance`] (fresh, or reused
//!   from its [`instance_pool`]) within its deadline, its [`memory_cap`], its output
//!   ([`guest_output`]) and its faults ([`guest_fault`]).
//! - [`grants`]: what a guest may reach: environment, directories ([`granted_files`])
//!   and outbound HTTP ([`http_grant`]), as granted; the settings it reads through
//!   `wasi:config/store` ([`config_vars`]). A granted request goes through
//!   [`outbound_http`]'s caps, is sent by [`outbound_send`], and connects only to the
//!   addresses [`public_address`] allows.

pub(crate) mod bindings;
pub(crate) mod compile_cache;
pub(crate) mod config_vars;
pub(crate) mod engine;
pub(crate) mod granted_files;
pub(crate) mod grants;
pub(crate) mod guest;
pub(crate) mod guest_fault;
pub(crate) mod guest_output;
pub(crate) mod http_grant;
pub(crate) mod instance;
pub(crate) mod instance_pool;
pub(crate) mod loading;
pub(crate) mod memory_cap;
pub(crate) mod outbound_http;
pub(crate) mod outbound_send;
pub(crate) mod precompiled;
pub(crate) mod public_address;
