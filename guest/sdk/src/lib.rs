//! Write Tencent Cloud CMQ push handlers for `cmq-host` as WebAssembly components.
//!
//! `cmq-host` receives CMQ's HTTP pushes and hands each message to a fresh instance
//! of a handler component, which decides what CMQ is told: [`Decision::Ack`] (done),
//! [`Decision::Retry`] (redeliver later) or [`Decision::Drop`] (done, but recorded
//! as dropped). This crate is all a handler needs: implement [`Handler`], write
//! [`export!`] once, and build the `cdylib` for `wasm32-wasip2`. A handler returns a
//! [`Result`]: an [`Error`] (from `?`) asks for a retry with its text, while ack and
//! drop are always said outright. [`testing`] runs a handler in plain `cargo test`.
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
//! use cmq_guest::{Decision, Handler, Message, Result};
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
//!     fn handle(message: Message) -> Result<Decision> {
//!         if message.has_tag("test") {
//!             return Ok(Decision::Ack);
//!         }
//!         // Redelivering a body that is not an order will not make it one: drop it.
//!         let order = match message.body_json::<Order>() {
//!             Ok(order) => order,
//!             Err(e) => return Ok(Decision::drop(format!("not an order: {e}"))),
//!         };
//!         if order.quantity == 0 {
//!             return Ok(Decision::drop(format!("order {} is empty", order.id)));
//!         }
//!         // Anything that may go better later is an error: `?` makes it a retry.
//!         let stock = std::env::var("STOCK_URL")?;
//!         println!("order {}: {} items, stock at {stock}", order.id, order.quantity);
//!         Ok(Decision::Ack)
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
pub mod config;
mod decision;
mod error;
mod handler;
pub mod http;
mod message;
pub mod testing;

pub use decision::Decision;
pub use error::{Error, Result};
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
