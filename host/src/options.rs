//! Every option of the host and its default, in one place: what one route does with its
//! pushes ([`RouteOptions`]), the limits across routes ([`SharedLimits`]), and the
//! options of a receiver of one component ([`ReceiverOptions`]). The command line, the
//! config file and the library take their defaults from here.

use std::path::PathBuf;
use std::time::Duration;

use cmq_message::ExpectedFormat;

use crate::sandbox::grants::Grants;

use crate::serve::access::Token;
use crate::store::Store;

/// How one route treats its pushes; every field has a default (see [`Default`]).
#[derive(Debug, Clone)]
pub struct RouteOptions {
    /// The push format the route expects (default: detect per push).
    pub format: ExpectedFormat,
    /// How long one guest may run, instantiation included (default 10 s, under CMQ's
    /// 15 s wait for an answer).
    pub deadline: Duration,
    /// Linear memory one guest instance may hold, all its memories together (default
    /// 64 MiB).
    pub max_memory: usize,
    /// Messages this route handles at once, within the receiver's own cap (default:
    /// none beyond the receiver's).
    pub max_in_flight: Option<usize>,
    /// The route's secret: pushes must carry it as `<path>/push/<token>` or `?token=`;
    /// others get 404 and never reach the guest (default: none).
    pub token: Option<Token>,
    /// What guests may use beyond clocks, random and stdio (default: nothing).
    pub grants: Grants,
    /// The interface the component is served through (default: detected).
    pub serve_as: ServeAs,
    /// With a store, a message acknowledged within this window is answered `200 ok`
    /// without running the guest again (default 24 hours, CMQ's retention; `None`: no
    /// dedupe).
    pub dedupe_window: Option<Duration>,
    /// With a store, the attempt on which a failure (retry, fault, deadline) sends the
    /// message to the dead-letter journal, answered `200 ok` (default 3: one before
    /// `BACKOFF_RETRY`'s last, so that a delivery a crashed host never counted still
    /// leaves the message kept; 0: never).
    pub max_attempts: u32,
    /// Messages one instance serves before it is dropped (default 1: a fresh instance
    /// per message). Above 1, whatever the guest keeps in its memory survives from one
    /// message to the next: only for handlers written for it.
    pub max_instance_reuse_count: u32,
    /// How long an instance kept for reuse may wait idle before it is dropped (default
    /// 1 s).
    pub idle_instance_timeout: Duration,
}

impl Default for RouteOptions {
    fn default() -> Self {
        RouteOptions {
            format: ExpectedFormat::Auto,
            deadline: Duration::from_secs(10),
            max_memory: 64 << 20,
            max_in_flight: None,
            token: None,
            grants: Grants::default(),
            serve_as: ServeAs::Auto,
            dedupe_window: Some(Duration::from_secs(24 * 3600)),
            max_attempts: 3,
            max_instance_reuse_count: 1,
            idle_instance_timeout: Duration::from_secs(1),
        }
    }
}

/// Limits that hold across routes.
#[derive(Debug, Clone, Copy)]
pub struct SharedLimits {
    /// Messages handled at once over all routes; beyond it a push is answered 503 at
    /// once (default: 128 per CPU, at most 1024).
    pub max_in_flight: usize,
    /// Largest request body accepted (default 1 MiB, CMQ's largest message).
    pub max_body: usize,
    /// How long a sender may take to send a body (default 10 s); slower gets 408.
    pub body_timeout: Duration,
}

impl Default for SharedLimits {
    fn default() -> Self {
        SharedLimits {
            max_in_flight: default_max_in_flight(),
            max_body: 1 << 20,
            body_timeout: Duration::from_secs(10),
        }
    }
}

/// Messages in flight by default: 128 per CPU the process may use, at most 1024. A
/// handler mostly waits (on its own outbound calls, or on CMQ's sender), so far more
/// messages than cores are in flight at once; each may hold up to its memory cap, and
/// the instance pool reserves address space for every one.
pub(crate) fn default_max_in_flight() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    cpus.saturating_mul(128).min(1024)
}

/// The largest connection or in-flight cap accepted: far beyond any machine's file
/// descriptors, and within what a semaphore and the instance pool can hold.
pub(crate) const MAX_LIMIT: usize = 1 << 20;

/// Connections the push listener keeps open at once unless told otherwise (see
/// [`crate::serve::server::Server::limit_connections`]).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// How a receiver of one component treats pushes: its one route's options, the limits,
/// the store and how components load; every field has a default (see [`Default`]).
#[derive(Debug, Clone, Default)]
pub struct ReceiverOptions {
    /// What the one route does with its pushes.
    pub route: RouteOptions,
    /// The limits across routes.
    pub limits: SharedLimits,
    /// The delivery store, for `cmq:push/handler` guests: attempt counts, dedupe and
    /// the dead-letter journal (default: none, every push runs the guest).
    pub store: Option<Store>,
    /// Where compiled `.wasm` components are kept between starts (default: none, every
    /// start compiles; `cmq-host serve` uses [`crate::compile_cache_dir`]).
    pub compile_cache: Option<PathBuf>,
    /// Whether the component may be a `.cwasm` from `cmq-host compile`: native code,
    /// run as is (default: no).
    pub allow_precompiled: bool,
}

/// Which interface a component is served through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServeAs {
    /// `push-handler` when the component exports `cmq:push/handler`, otherwise
    /// `incoming-handler` when it exports `wasi:http/incoming-handler`.
    #[default]
    Auto,
    /// `cmq:push/handler`: the host parses the push and the guest returns a decision.
    PushHandler,
    /// `wasi:http/incoming-handler`: the guest gets the HTTP request and its response
    /// is the answer, as under `wasmtime serve` or Spin.
    IncomingHandler,
}

impl std::str::FromStr for ServeAs {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "auto" => Ok(ServeAs::Auto),
            "push-handler" => Ok(ServeAs::PushHandler),
            "incoming-handler" => Ok(ServeAs::IncomingHandler),
            _ => Err(format!(
                "unknown interface {text:?}: expected auto, push-handler or incoming-handler"
            )),
        }
    }
}

impl std::fmt::Display for ServeAs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ServeAs::Auto => "auto",
            ServeAs::PushHandler => "push-handler",
            ServeAs::IncomingHandler => "incoming-handler",
        })
    }
}
