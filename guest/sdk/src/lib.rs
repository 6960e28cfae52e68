//! Write Tencent Cloud CMQ push handlers for `cmq-host` as WebAssembly components.
//!
//! `cmq-host` receives CMQ's HTTP pushes and hands each message to a fresh instance
//! of a handler component, which decides what CMQ is told: [`Decision::Ack`] (done),
//! [`Decision::Retry`] (redeliver later) or [`Decision::Drop`] (done, but recorded
//! as dropped). This crate is all a handler needs: implement [`Handler`], write
//! [`export!`] once, and build the `cdylib` for `wasm32-wasip2`.
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! cmq-guest = { path = "../cmq-wasm/guest/sdk" }
//! ```
//!
//! ```
//! use cmq_guest::serde::Deserialize;
//! use cmq_guest::{Decision, Handler, Message};
//!
//! #[derive(Deserialize)]
//! #[serde(crate = "cmq_guest::serde")]
//! struct Order {
//!     id: u64,
//!     quantity: u32,
//! }
//!
//! struct Orders;
//!
//! impl Handler for Orders {
//!     fn handle(message: Message) -> Decision {
//!         if message.has_tag("test") {
//!             return Decision::Ack;
//!         }
//!         match message.body_json::<Order>() {
//!             Ok(order) if order.quantity == 0 => Decision::drop(format!("order {} is empty", order.id)),
//!             Ok(order) => {
//!                 println!("order {}: {} items", order.id, order.quantity);
//!                 Decision::Ack
//!             }
//!             // Redelivering a body that is not an order will not make it one.
//!             Err(e) => Decision::drop(format!("not an order: {e}")),
//!         }
//!     }
//! }
//!
//! cmq_guest::export!(Orders);
//! ```
//!
//! Build it with `cargo xtask guests --crate path/to/your-handler` from a checkout
//! of this project (it finds or sets up a `wasm32-wasip2` toolchain), or with
//! `cargo build --release --target wasm32-wasip2` where that target is installed.
//!
//! Handlers may print to stdout and stderr and read clocks and randomness; the host
//! grants nothing else unless its operator grants environment variables, a read-only
//! directory, or outbound HTTP to named hosts.
//!
//! The same component also exports `wasi:http/incoming-handler`, so it runs unchanged
//! on wasi-http platforms (Spin, `wasmtime serve -S cli`): there the SDK checks and
//! parses the push itself (see [`http`]) and answers as `cmq-host` would.

#![deny(missing_docs)]

#[doc(hidden)]
pub mod bindings;
mod decision;
mod handler;
pub mod http;
mod message;

pub use decision::Decision;
#[doc(hidden)]
pub use handler::Export as __Export;
pub use handler::Handler;
#[doc(hidden)]
pub use http::HttpExport as __HttpExport;
pub use message::{Format, Message};
#[doc(hidden)]
pub use wasip2 as __wasip2;

/// serde, for `#[derive(Deserialize)]` on the types [`Message::body_json`] returns;
/// add `#[serde(crate = "cmq_guest::serde")]` so the derive finds it here.
pub use serde;
/// serde_json, whose `Error` [`Message::body_json`] returns.
pub use serde_json;
