//! One instance of a handler component: the store it lives in, with exactly what the
//! operator grants it, and what becomes of it after a message on a route that reuses
//! instances.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::Proxy;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::sandbox::bindings::PushHandler;
use crate::sandbox::config_vars::Settings;
use crate::sandbox::grants::{Grants, HeldDirs};
use crate::sandbox::guest_output::GuestOutput;
use crate::sandbox::instance_pool::Pool;
use crate::sandbox::memory_cap::MemoryCap;
use crate::sandbox::outbound_http::{Outbound, OutboundHttp};

/// Host-side resources (streams, pollables, handles, header maps) one instance may
/// hold at once. They live in the host's memory, which no guest memory cap counts: with
/// [`FIELD_SIZE_LIMIT`] this bounds what one instance's header maps can take to 4 MiB
/// (4096 resources of wasmtime's 128 KiB maps took 512 MiB).
const MAX_RESOURCES: usize = 256;

/// The in-memory size one header map (`wasi:http/types.fields`) of a guest's may take:
/// far above what CMQ's headers or a handler's requests need.
const FIELD_SIZE_LIMIT: usize = 16 << 10;

/// Everything one guest instance may touch: WASI with no files, no environment and no
/// network unless granted; outbound HTTP only to granted hosts; stdout and stderr
/// captured for the log; a memory cap.
pub(crate) struct GuestState {
    /// When the message being handled must be done: the epoch callback reads it, so a
    /// reused instance gets each message's own.
    deadline: Instant,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    outbound: OutboundHttp,
    table: ResourceTable,
    limits: MemoryCap,
    /// The route's settings, for `wasi:config/store`.
    config: Arc<Settings>,
}

/// A guest's `wasi:config/store`: its route's settings.
pub(crate) fn settings_of(state: &mut GuestState) -> &Settings {
    &state.config
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

/// What every instance of a route is made with: the engine, the route's name for its
/// output's log lines, its memory cap, its grants, the outbound HTTP it goes through and
/// its settings.
pub(crate) struct InstanceSettings {
    pub(crate) route: Arc<str>,
    pub(crate) engine: Engine,
    pub(crate) max_memory: usize,
    pub(crate) grants: Arc<Grants>,
    /// The granted directories, held open while the guest serves.
    pub(crate) dirs: Arc<HeldDirs>,
    pub(crate) outbound: Arc<Outbound>,
    /// The settings it reads through `wasi:config/store`.
    pub(crate) config: Arc<Settings>,
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
pub(crate) struct Instance {
    pub(crate) store: Store<GuestState>,
    /// Its export, once instantiated.
    pub(crate) handler: Option<Handler>,
    pub(crate) stdout: GuestOutput,
    pub(crate) stderr: GuestOutput,
    /// Messages it has served.
    served: u32,
    /// The host resources it held after its first message: more after a later one is
    /// a leak, and the instance is not kept.
    resources_at_rest: Option<usize>,
}

/// The export an instantiated component is called through.
pub(crate) enum Handler {
    Push(PushHandler),
    Http(Proxy),
}

impl Instance {
    /// A store for a new instance made with `settings`, ready to instantiate in, with
    /// its message's deadline.
    pub(crate) fn new(settings: &InstanceSettings, deadline: Instant) -> wasmtime::Result<Self> {
        let stdout = GuestOutput::default();
        let stderr = GuestOutput::default();
        let mut wasi = WasiCtx::builder();
        wasi.stdout(stdout.clone()).stderr(stderr.clone());
        settings.grants.apply(&mut wasi, &settings.dirs)?;
        let mut table = ResourceTable::new();
        // Every stream, pollable and file handle a guest opens lives here, in host memory:
        // bound it like the guest's own memory.
        table.set_max_capacity(MAX_RESOURCES);
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(FIELD_SIZE_LIMIT);
        let state = GuestState {
            deadline,
            wasi: wasi.build(),
            http,
            outbound: OutboundHttp::new(
                settings.outbound.clone(),
                settings.grants.clone(),
                settings.route.clone(),
                deadline,
            ),
            table,
            limits: MemoryCap::new(settings.max_memory),
            config: settings.config.clone(),
        };
        let mut store = Store::new(&settings.engine, state);
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

    /// Readies a kept instance for its next message, due by `deadline`.
    pub(crate) fn begin(&mut self, deadline: Instant) {
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

/// Gives `instance` back to `pool` after a message, unless it must go (a fault when
/// its call did not end `ok`, its uses spent, resources left): why it went, if it did,
/// and the idle instances now.
pub(crate) fn give_back(
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
