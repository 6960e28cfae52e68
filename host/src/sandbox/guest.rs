//! A handler component, compiled and linked once, and run in a fresh instance for every
//! message: nothing a guest does to its memory survives into the next message. A route
//! whose operator opted in to reuse (`--max-instance-reuse-count`) runs a message in an
//! instance kept from an earlier one instead, when one is idle and was left clean.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::error::Context as _;
use wasmtime::{Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::options::RouteOptions;
use crate::options::ServeAs;
use crate::sandbox::bindings::{Decision, Message, PushHandler, PushHandlerPre};
use crate::sandbox::grants::{Grants, HeldDirs};
use crate::sandbox::guest_output::GuestOutput;
use crate::sandbox::instance_pool::{Pool, Reuse};
use crate::sandbox::loading::{Loaded, Loading};
use crate::sandbox::memory_cap::MemoryCap;
use crate::sandbox::outbound_http::{Outbound, OutboundHttp};
use crate::trace;
use tracing::Instrument as _;

/// Why a wasi-http guest's call ended without a usable response.
#[derive(Debug, thiserror::Error)]
enum NoResponse {
    #[error("the guest returned without setting a response")]
    NotSet,
    #[error("the guest answered with an error: {0:?}")]
    Error(ErrorCode),
    #[error("the guest's response body could not be read: {0}")]
    Body(String),
}

/// Host-side resources (streams, pollables, handles, header maps) one instance may
/// hold at once. They live in the host's memory, which no guest memory cap counts: with
/// [`FIELD_SIZE_LIMIT`] this bounds what one instance's header maps can take to 4 MiB
/// (4096 resources of wasmtime's 128 KiB maps took 512 MiB).
const MAX_RESOURCES: usize = 256;

/// The in-memory size one header map (`wasi:http/types.fields`) of a guest's may take:
/// far above what CMQ's headers or a handler's requests need.
const FIELD_SIZE_LIMIT: usize = 16 << 10;

/// Why a guest gave no decision. Every fault answers non-2xx, so CMQ redelivers.
#[derive(Debug, thiserror::Error)]
pub enum GuestFault {
    /// The guest ran past its deadline and was stopped.
    #[error("deadline of {0:?} exceeded")]
    Deadline(Duration),
    /// The guest could not be instantiated (for example: no free instance slot).
    #[error("instantiation failed: {}", one_line(.0))]
    Instantiate(wasmtime::Error),
    /// The guest trapped: a panic, a stack overflow, memory over its cap, ...
    #[error("guest trapped: {}", one_line(.0))]
    Trap(wasmtime::Error),
}

impl GuestFault {
    /// The guest's wasm backtrace, when it has one: too long for the message's log line.
    pub fn backtrace(&self) -> Option<String> {
        match self {
            GuestFault::Instantiate(err) | GuestFault::Trap(err) => err
                .downcast_ref::<wasmtime::WasmBacktrace>()
                .map(|trace| trace.to_string()),
            GuestFault::Deadline(_) => None,
        }
    }
}

/// The cause of a wasmtime error on one line: its root cause (a trap code such as
/// "wasm `unreachable` instruction executed", or a host error such as a memory limit).
fn one_line(err: &wasmtime::Error) -> String {
    let cause = err.root_cause().to_string();
    let cause = cause.split_whitespace().collect::<Vec<_>>().join(" ");
    crate::sandbox::guest_output::escaped(&cause).into_owned()
}

/// Everything one guest instance may touch: WASI with no files, no environment and no
/// network unless granted; outbound HTTP only to granted hosts; stdout and stderr
/// captured for the log; a memory cap.
struct GuestState {
    /// When the message being handled must be done: the epoch callback reads it, so a
    /// reused instance gets each message's own.
    deadline: Instant,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    outbound: OutboundHttp,
    table: ResourceTable,
    limits: MemoryCap,
}

impl WasiHttpView for GuestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// How long one run of a guest took: making its instance (when it got that far), and
/// everything from the start of that to the guest's return; and, on a route that reuses
/// instances, what became of them.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GuestTimes {
    pub(crate) instantiation: Option<Duration>,
    pub(crate) total: Duration,
    /// The route reuses instances: what this run did with them.
    pub(crate) reuse: Option<InstanceUse>,
}

/// What one run did with a reused route's instances.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct InstanceUse {
    /// The message ran in an instance kept from an earlier one.
    pub(crate) reused: bool,
    /// Why the instance was not kept afterwards, when it was not.
    pub(crate) discarded: Option<Discarded>,
    /// Instances dropped for idling too long, seen by this run.
    pub(crate) expired: u64,
    /// Idle instances after the run.
    pub(crate) idle: usize,
}

/// Why an instance of a reused route was dropped after a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Discarded {
    /// The message faulted: a trap, the deadline, the memory cap, no decision.
    Fault,
    /// It served its `--max-instance-reuse-count` messages.
    Spent,
    /// It held more host resources after its call than after its first.
    Resources,
    /// The pool had as many idle instances as the route's in-flight cap.
    PoolFull,
}

impl Discarded {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Discarded::Fault => "fault",
            Discarded::Spent => "spent",
            Discarded::Resources => "resources",
            Discarded::PoolFull => "pool_full",
        }
    }
}

/// One instance of the component and what its messages need of it.
struct Instance {
    store: Store<GuestState>,
    /// Its export, once instantiated.
    handler: Option<Handler>,
    stdout: GuestOutput,
    stderr: GuestOutput,
    /// Messages it has served.
    served: u32,
    /// The host resources it held after its first message: more after a later one is
    /// a leak, and the instance is not kept.
    resources_at_rest: Option<usize>,
}

enum Handler {
    Push(PushHandler),
    Http(Proxy),
}

impl Instance {
    /// Readies a kept instance for its next message, due by `deadline`.
    fn begin(&mut self, deadline: Instant) {
        let state = self.store.data_mut();
        state.deadline = deadline;
        state.outbound.begin(deadline);
        self.store.set_epoch_deadline(1);
    }

    /// After a message it handled: `None` when it may serve another of at most
    /// `max_uses`, or why not.
    fn keep_or_why_not(&mut self, max_uses: u32) -> Option<Discarded> {
        self.served += 1;
        if self.served >= max_uses {
            return Some(Discarded::Spent);
        }
        let resources = self.store.data_mut().table.iter_mut().count();
        match self.resources_at_rest {
            None => {
                self.resources_at_rest = Some(resources);
                None
            }
            Some(at_rest) if resources > at_rest => Some(Discarded::Resources),
            Some(_) => None,
        }
    }
}

/// The export a loaded component is served through.
enum Exports {
    Push(PushHandlerPre<GuestState>),
    Http(ProxyPre<GuestState>),
}

/// A handler component ready to be instantiated.
pub(crate) struct Guest {
    /// The route it serves, named on its output's log lines.
    route: Arc<str>,
    engine: Engine,
    component: Component,
    exports: Exports,
    loaded: Loaded,
    deadline: Duration,
    max_memory: usize,
    grants: Arc<Grants>,
    /// The granted directories, held open while the guest serves.
    dirs: Arc<HeldDirs>,
    outbound: Arc<Outbound>,
    /// Idle instances, on a route that reuses them.
    pool: Option<Pool<Instance>>,
}

impl std::fmt::Debug for Guest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guest")
            .field("serves", &self.serves())
            .field("deadline", &self.deadline)
            .field("max_memory", &self.max_memory)
            .finish_non_exhaustive()
    }
}

impl Guest {
    /// Compiles the component at `path` and checks it against the `push-handler` world:
    /// a component that cannot serve is refused here, not at the first push. Its
    /// deadline, memory cap, grants and interface are the route's `options`; its
    /// outbound HTTP goes through `outbound`.
    pub(crate) fn load(
        engine: &Engine,
        path: &Path,
        options: &RouteOptions,
        loading: Loading<'_>,
        outbound: Arc<Outbound>,
    ) -> wasmtime::Result<Self> {
        let grants = options.grants.clone();
        let (component, loaded) = crate::sandbox::loading::load_component(engine, path, loading)?;
        let mut linker = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        crate::sandbox::granted_files::add_to_linker(&mut linker)?;
        // Always linked, so that a component importing wasi:http instantiates; its
        // requests are refused unless the operator granted the destination.
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        let instance_pre = linker.instantiate_pre(&component).with_context(|| {
            format!(
                "component {} imports something the host does not provide",
                path.display()
            )
        })?;
        let push = || PushHandlerPre::new(instance_pre.clone());
        let http = || ProxyPre::new(instance_pre.clone());
        let exports = match options.serve_as {
            ServeAs::Auto => match push() {
                Ok(pre) => Exports::Push(pre),
                Err(_) => Exports::Http(http().with_context(|| {
                    format!(
                        "component {} exports neither cmq:push/handler@0.2.0 (build it with the \
                         cmq-guest SDK) nor wasi:http/incoming-handler@0.2",
                        path.display()
                    )
                })?),
            },
            ServeAs::PushHandler => Exports::Push(push().with_context(|| {
                format!(
                    "component {} does not export cmq:push/handler@0.2.0 (build it with the cmq-guest SDK)",
                    path.display()
                )
            })?),
            ServeAs::IncomingHandler => Exports::Http(http().with_context(|| {
                format!(
                    "component {} does not export wasi:http/incoming-handler@0.2",
                    path.display()
                )
            })?),
        };
        Ok(Guest {
            route: Arc::from(""),
            engine: engine.clone(),
            component,
            exports,
            loaded,
            deadline: options.deadline,
            max_memory: options.max_memory,
            dirs: Arc::new(grants.hold_dirs().map_err(wasmtime::Error::from_anyhow)?),
            grants: Arc::new(grants),
            outbound,
            pool: None,
        })
    }

    /// The guest of route `route`, which its output's log lines name.
    pub(crate) fn serving(mut self, route: &str) -> Self {
        self.route = Arc::from(route);
        self
    }

    /// Reuses instances as `reuse` says: a pool of idle ones when an instance may serve
    /// more than one message.
    pub(crate) fn reusing(mut self, reuse: Reuse) -> Self {
        self.pool = (reuse.max_uses > 1).then(|| Pool::new(reuse));
        self
    }

    /// Instantiates the component once without calling it, so that a component too large
    /// for the instance limits is refused at start.
    pub(crate) async fn check_instantiates(&self) -> wasmtime::Result<()> {
        let Instance { mut store, .. } = self.new_instance(Instant::now() + self.deadline)?;
        let instantiated = match &self.exports {
            Exports::Push(pre) => pre.instantiate_async(&mut store).await.map(drop),
            Exports::Http(pre) => pre.instantiate_async(&mut store).await.map(drop),
        };
        instantiated.context("instantiating the component")
    }

    /// The compiled component as native code, for `cmq-host compile`.
    pub(crate) fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        self.component.serialize()
    }

    /// Where the component's native code came from.
    pub(crate) fn loaded(&self) -> Loaded {
        self.loaded
    }

    /// The interface this component is served through (never [`ServeAs::Auto`]).
    pub(crate) fn serves(&self) -> ServeAs {
        match self.exports {
            Exports::Push(_) => ServeAs::PushHandler,
            Exports::Http(_) => ServeAs::IncomingHandler,
        }
    }

    /// Runs `message` through an instance (a fresh one, unless the route reuses them
    /// and one is idle) and returns the guest's decision, and how long it took. The
    /// guest's output is logged under `message_id` whatever the outcome.
    pub(crate) async fn handle(
        &self,
        message: Message,
    ) -> (Result<Decision, GuestFault>, GuestTimes) {
        let message_id = message.message_id.clone();
        self.run(&message_id, async |instance| {
            let Some(Handler::Push(handler)) = &instance.handler else {
                return Err(GuestFault::Instantiate(wasmtime::format_err!(
                    "the component serves wasi:http/incoming-handler, not cmq:push/handler"
                )));
            };
            handler
                .cmq_push_handler()
                .call_handle(&mut instance.store, &message)
                .instrument(trace::stage("guest call"))
                .await
                .map_err(|err| self.classify_trap(err))
        })
        .await
    }

    /// Runs `call` on an instance within the deadline: an idle one of the pool, or a
    /// fresh one instantiated here. Afterwards logs the guest's output under `log_id`
    /// whatever the outcome, and gives the instance back to the pool when it may serve
    /// again.
    async fn run<T>(
        &self,
        log_id: &str,
        call: impl AsyncFnOnce(&mut Instance) -> Result<T, GuestFault>,
    ) -> (Result<T, GuestFault>, GuestTimes) {
        let started = Instant::now();
        let deadline = started + self.deadline;
        let (idle, expired) = match &self.pool {
            Some(pool) => pool.take(),
            None => (None, 0),
        };
        let reused = idle.is_some();
        let mut instance = match idle {
            Some(mut instance) => {
                instance.begin(deadline);
                instance
            }
            None => match self.new_instance(deadline) {
                Ok(instance) => instance,
                Err(err) => {
                    let times = GuestTimes {
                        total: started.elapsed(),
                        ..GuestTimes::default()
                    };
                    return (Err(GuestFault::Instantiate(err)), times);
                }
            },
        };
        let (stdout, stderr) = (instance.stdout.clone(), instance.stderr.clone());
        let work = async {
            let mut instantiation = None;
            if instance.handler.is_none() {
                instance.handler = Some(self.instantiate(&mut instance).await?);
                instantiation = Some(started.elapsed());
            }
            let called = call(&mut instance).await;
            Ok::<_, GuestFault>((instantiation, called))
        };
        let (instantiation, outcome) = match tokio::time::timeout(self.deadline, work).await {
            Ok(Ok((instantiation, called))) => (instantiation, called),
            Ok(Err(fault)) => (None, Err(fault)),
            Err(_elapsed) => (None, Err(GuestFault::Deadline(self.deadline))),
        };
        stdout.log(&self.route, log_id, "stdout");
        stderr.log(&self.route, log_id, "stderr");
        let reuse = self.pool.as_ref().map(|pool| {
            let (discarded, idle) = give_back(pool, instance, outcome.is_ok());
            InstanceUse {
                reused,
                discarded,
                expired,
                idle,
            }
        });
        let times = GuestTimes {
            instantiation,
            total: started.elapsed(),
            reuse,
        };
        (outcome, times)
    }

    /// The component instantiated in `instance`'s store, its handler ready to call.
    async fn instantiate(&self, instance: &mut Instance) -> Result<Handler, GuestFault> {
        let handler = match &self.exports {
            Exports::Push(pre) => pre
                .instantiate_async(&mut instance.store)
                .instrument(trace::stage("instantiate"))
                .await
                .map(Handler::Push),
            Exports::Http(pre) => pre
                .instantiate_async(&mut instance.store)
                .instrument(trace::stage("instantiate"))
                .await
                .map(Handler::Http),
        };
        handler.map_err(|err| self.instantiate_error(err))
    }

    /// A store for a new instance, ready to instantiate in, with its message's deadline.
    fn new_instance(&self, deadline: Instant) -> wasmtime::Result<Instance> {
        let stdout = GuestOutput::default();
        let stderr = GuestOutput::default();
        let mut wasi = WasiCtx::builder();
        wasi.stdout(stdout.clone()).stderr(stderr.clone());
        self.grants.apply(&mut wasi, &self.dirs)?;
        let wasi = wasi.build();
        let limits = MemoryCap::new(self.max_memory);
        let mut table = ResourceTable::new();
        // Every stream, pollable and file handle a guest opens lives here, in host memory:
        // bound it like the guest's own memory.
        table.set_max_capacity(MAX_RESOURCES);
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(FIELD_SIZE_LIMIT);
        let state = GuestState {
            deadline,
            wasi,
            http,
            outbound: OutboundHttp::new(
                self.outbound.clone(),
                self.grants.clone(),
                self.route.clone(),
                deadline,
            ),
            table,
            limits,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        // Yield to the executor at every epoch tick so that a busy guest cannot hold a
        // worker thread, and so that the deadline's timer can fire; past the deadline,
        // trap instead, in case the timer has not been polled yet.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|store| {
            if Instant::now() >= store.data().deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        Ok(Instance {
            store,
            handler: None,
            stdout,
            stderr,
            served: 0,
            resources_at_rest: None,
        })
    }

    /// Runs one HTTP request through a fresh instance's `wasi:http/incoming-handler`
    /// and returns its response, the body read whole (up to `max_answer` bytes). The
    /// guest's output is logged under `log_id`.
    pub(crate) async fn handle_http(
        &self,
        request: http::Request<Full<Bytes>>,
        log_id: &str,
        max_answer: usize,
    ) -> (Result<http::Response<Bytes>, GuestFault>, GuestTimes) {
        self.run(log_id, async |instance| {
            let Some(Handler::Http(proxy)) = &instance.handler else {
                return Err(GuestFault::Instantiate(wasmtime::format_err!(
                    "the component serves cmq:push/handler, not wasi:http/incoming-handler"
                )));
            };
            let store = &mut instance.store;
            let (sender, receiver) = tokio::sync::oneshot::channel();
            let call = async {
                let mut http = store.data_mut().http();
                let request = http
                    .new_incoming_request(Scheme::Http, request)
                    .map_err(GuestFault::Trap)?;
                let response_out = http
                    .new_response_outparam(sender)
                    .map_err(GuestFault::Trap)?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut *store, request, response_out)
                    .await
                    .map_err(|err| self.classify_trap(err))
            };
            // The guest writes its body while it runs, and may block on a full channel
            // until the body is read: read it alongside the call.
            let answer = async {
                let response = receiver.await.map_err(|_| NoResponse::NotSet)?;
                let response = response.map_err(NoResponse::Error)?;
                let (parts, body) = response.into_parts();
                let body = http_body_util::Limited::new(body, max_answer)
                    .collect()
                    .await
                    .map_err(|err| NoResponse::Body(err.to_string()))?
                    .to_bytes();
                Ok::<_, NoResponse>(http::Response::from_parts(parts, body))
            };
            let (called, answered) = tokio::join!(call, answer);
            called?;
            answered.map_err(|no| GuestFault::Trap(wasmtime::format_err!("{no}")))
        })
        .await
    }

    fn instantiate_error(&self, err: wasmtime::Error) -> GuestFault {
        match err.downcast_ref::<Trap>() {
            // A trap while instantiating (a start function, the deadline) is the
            // guest's fault; anything else is the host out of room.
            Some(_) => self.classify_trap(err),
            None => GuestFault::Instantiate(err),
        }
    }

    fn classify_trap(&self, err: wasmtime::Error) -> GuestFault {
        match err.downcast_ref::<Trap>() {
            // The epoch callback interrupts only a guest past its deadline.
            Some(Trap::Interrupt) => GuestFault::Deadline(self.deadline),
            _ => GuestFault::Trap(err),
        }
    }
}

/// Gives `instance` back to `pool` after a message, unless it must go (a fault when
/// its call did not end `ok`, its uses spent, resources left): why it went, if it did,
/// and the idle instances now.
fn give_back(
    pool: &Pool<Instance>,
    mut instance: Instance,
    ok: bool,
) -> (Option<Discarded>, usize) {
    let discarded = if ok {
        instance.keep_or_why_not(pool.reuse().max_uses)
    } else {
        Some(Discarded::Fault)
    };
    match discarded {
        None => match pool.put(instance) {
            (true, idle) => (None, idle),
            (false, idle) => (Some(Discarded::PoolFull), idle),
        },
        Some(why) => (Some(why), pool.idle()),
    }
}
