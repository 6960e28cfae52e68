//! A handler component, compiled and linked once, and run in a fresh instance for every
//! message: nothing a guest does to its memory survives into the next message. A route
//! whose operator opted in to reuse (`--max-instance-reuse-count`) runs a message in an
//! instance kept from an earlier one instead, when one is idle and was left clean.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};

use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::error::Context as _;
use wasmtime::{Engine, Trap};
use wasmtime_wasi_http::WasiHttpView as _;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};

use crate::options::RouteOptions;
use crate::options::ServeAs;
use crate::sandbox::bindings::{Decision, Message, PushHandlerPre};
use crate::sandbox::guest_fault::GuestFault;
use crate::sandbox::instance::{
    GuestState, GuestTimes, Handler, Instance, InstanceSettings, InstanceUse, give_back,
    settings_of,
};
use crate::sandbox::instance_pool::{Pool, Reuse};
use crate::sandbox::loading::{Loaded, Loading};
use crate::sandbox::outbound_http::Outbound;
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

/// The export a loaded component is served through.
enum Exports {
    Push(PushHandlerPre<GuestState>),
    Http(ProxyPre<GuestState>),
}

impl Exports {
    /// The export of `pre` that `serve_as` asks for (`Auto`: the push handler when it
    /// has one); an error naming the component at `path` when it does not have it.
    fn of(pre: &InstancePre<GuestState>, serve_as: ServeAs, path: &Path) -> wasmtime::Result<Self> {
        let push = || PushHandlerPre::new(pre.clone());
        let http = || ProxyPre::new(pre.clone());
        Ok(match serve_as {
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
        })
    }
}

/// A handler component ready to be instantiated.
pub(crate) struct Guest {
    component: Component,
    exports: Exports,
    loaded: Loaded,
    deadline: Duration,
    /// What each of its instances is made with.
    settings: InstanceSettings,
    /// Idle instances, on a route that reuses them.
    pool: Option<Pool<Instance>>,
}

impl std::fmt::Debug for Guest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guest")
            .field("serves", &self.serves())
            .field("deadline", &self.deadline)
            .field("max_memory", &self.settings.max_memory)
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
        // Always linked too: a component that reads settings instantiates, and reads
        // none unless the operator set some.
        crate::sandbox::config_vars::add_to_linker(&mut linker, settings_of)?;
        let instance_pre = linker.instantiate_pre(&component).with_context(|| {
            format!(
                "component {} imports something the host does not provide",
                path.display()
            )
        })?;
        let exports = Exports::of(&instance_pre, options.serve_as, path)?;
        let settings = InstanceSettings {
            route: Arc::from(""),
            engine: engine.clone(),
            max_memory: options.max_memory,
            dirs: Arc::new(grants.hold_dirs().map_err(wasmtime::Error::from_anyhow)?),
            grants: Arc::new(grants),
            outbound,
            config: crate::sandbox::config_vars::Settings::of(&options.grants.config),
        };
        Ok(Guest {
            component,
            exports,
            loaded,
            deadline: options.deadline,
            settings,
            pool: None,
        })
    }

    /// The guest of route `route`, which its output's log lines name.
    pub(crate) fn serving(mut self, route: &str) -> Self {
        self.settings.route = Arc::from(route);
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
        let Instance { mut store, .. } =
            Instance::new(&self.settings, Instant::now() + self.deadline)?;
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
        let (mut instance, reused, expired) = match self.instance(deadline) {
            Ok(taken) => taken,
            Err(err) => {
                let times = GuestTimes {
                    total: started.elapsed(),
                    ..GuestTimes::default()
                };
                return (Err(GuestFault::Instantiate(err)), times);
            }
        };
        let (stdout, stderr) = (instance.stdout.clone(), instance.stderr.clone());
        let work = async {
            let mut instantiation = None;
            if instance.handler.is_none() {
                // Boxed: instantiating is most of this future (1,304 of its 1,480 bytes),
                // which each message moves, whether it instantiates or reuses.
                instance.handler = Some(Box::pin(self.instantiate(&mut instance)).await?);
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
        stdout.log(&self.settings.route, log_id, "stdout");
        stderr.log(&self.settings.route, log_id, "stderr");
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

    /// An instance for a message due by `deadline`: an idle one of the pool (`true`),
    /// or a new store to instantiate in; and the idle ones the pool dropped as expired.
    fn instance(&self, deadline: Instant) -> wasmtime::Result<(Instance, bool, u64)> {
        let (idle, expired) = match &self.pool {
            Some(pool) => pool.take(),
            None => (None, 0),
        };
        match idle {
            Some(mut instance) => {
                instance.begin(deadline);
                Ok((instance, true, expired))
            }
            None => Ok((Instance::new(&self.settings, deadline)?, false, expired)),
        }
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
