//! Serving: the listeners, their connections and the process around them.
//!
//! - [`listener`]: a connection: its slot, the allowlist ([`access`]), TLS ([`tls`]),
//!   HTTP/1.1 with its limits.
//! - [`server`]: the push server: binds, serves, drains on shutdown.
//! - [`admin`]: the admin listener: health, readiness, metrics and the console.
//! - [`signals`]: the operating system's signals: reload, shutdown.

pub(crate) mod access;
pub(crate) mod admin;
pub(crate) mod listener;
pub(crate) mod server;
pub(crate) mod signals;
pub(crate) mod tls;
