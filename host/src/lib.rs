//! `cmq-host`: receive Tencent Cloud CMQ topic pushes over HTTP and hand each message to a
//! fresh, sandboxed WebAssembly component, whose decision becomes the answer CMQ sees.
//!
//! A push is answered 2xx only when the guest acknowledged or deliberately dropped it,
//! or the dead-letter journal keeps it; every other fault, timeout or overload answers
//! non-2xx so that CMQ redelivers.
//!
//! A push is answered by `receiver`, which finds its route and takes the push through
//! its stages, each a module that imports only the stages before it: `intake` (admit,
//! read, parse), `delivery` (claim, run the guest, record) and `verdict` (how it
//! ended, decided once: the HTTP answer, the decision, the reason); then, reading the
//! verdict, `report` (the log line, the metrics) and `feed` (the decision for a
//! console's live view). The README's "How a push flows" says what each does.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use cmq_host::{Receiver, ReceiverOptions, Server};
//!
//! let receiver = Receiver::load("target/guests/log_ack.wasm".as_ref(), ReceiverOptions::default())?;
//! let server = Server::bind("127.0.0.1:8080".parse()?, receiver).await?;
//! println!("listening on {}", server.local_addr());
//! server.serve(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod config;
mod console;
mod in_flight_cap;
mod metrics;
mod options;
mod push;
mod receiver;
mod reload;
mod response;
mod route;
mod sandbox;
mod serve;
mod store;
pub mod trace;
mod units;

pub use crate::config::{Config, ConfigError, DEFAULT_LISTEN, SINGLE_ROUTE, TlsFiles};
pub use crate::options::{
    DEFAULT_MAX_CONNECTIONS, ReceiverOptions, RouteOptions, ServeAs, SharedLimits,
};
pub use crate::receiver::Receiver;
pub use crate::reload::{ConfigSource, Reloader};
pub use crate::route::{LoadedRoute, RoutePlan};
pub use crate::sandbox::bindings::Decision;
pub use crate::sandbox::compile_cache::default_dir as compile_cache_dir;
pub use crate::sandbox::config_vars::ConfigVar;
pub use crate::sandbox::grants::{DirGrant, EnvGrant, Grants};
pub use crate::sandbox::guest_fault::GuestFault;
pub use crate::sandbox::guest_output::TARGET as GUEST_OUTPUT_TARGET;
pub use crate::sandbox::http_grant::HttpGrant;
pub use crate::sandbox::loading::Loaded;
pub use crate::serve::access::Token;
pub use crate::serve::admin::AdminServer;
pub use crate::serve::server::Server;
pub use crate::serve::signals::OsSignal;
pub use crate::serve::tls::Tls;
pub use crate::store::{
    Claim, DeadLetter, JournalQuery, MessageRecord, Pruned, RouteCount, Settled, Settlement, Store,
    StoreError, StoreFiles, StoreLocation, WAL_LIMIT, message_key,
};
pub use crate::trace::TARGET as TRACE_TARGET;
pub use crate::units::{ByteSize, DedupeWindow, HumanDuration};
pub use cmq_message::ExpectedFormat;
pub use ipnet::IpNet;
