//! One push, from HTTP request to HTTP answer: check it, parse it, run the guest, answer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use cmq_message::{ExpectedFormat, PushHeaders};
use http::{HeaderMap, Method, Request, Response, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use ipnet::IpNet;

use crate::access::Allowlist;
use crate::answer::{AnswerBody, PushError, decision_response, ok_response};
use crate::bindings::{Decision, Message};
use crate::config::Config;
use crate::guest::{GuestFault, ServeAs};
use crate::metrics::{Metrics, NO_ROUTE};
use crate::precompiled::{Loaded, Loading};
use crate::route::{CurrentRoutes, LoadedRoute, MAX_LIMIT, Route, Routes, SharedLimits};
use crate::store::{
    Claim, ClaimToken, DeadLetter, FLUSH_INTERVAL, Settlement, Store, Uncounted, message_key,
    push_key,
};
use crate::{Grants, Token};

/// How a receiver treats pushes; every field has a default (see [`Default`]).
#[derive(Debug, Clone)]
pub struct ReceiverOptions {
    /// The push format the endpoint expects (default: detect per push).
    pub format: ExpectedFormat,
    /// How long one guest may run, instantiation included (default 10 s, under CMQ's
    /// 15 s wait for an answer).
    pub deadline: Duration,
    /// Linear memory one guest instance may hold, all its memories together (default
    /// 64 MiB).
    pub max_memory: usize,
    /// Largest request body accepted (default 1 MiB, CMQ's largest message).
    pub max_body: usize,
    /// Messages handled at once, from the first byte of the body to the guest's
    /// decision; beyond it a push is answered 503 at once (default: 128 per CPU, see
    /// [`ReceiverOptions::default_max_in_flight`]).
    pub max_in_flight: usize,
    /// How long a sender may take to send a body (default 10 s); slower gets 408.
    pub body_timeout: Duration,
    /// Connections open at once (default 1024); beyond it new connections wait in the
    /// kernel's listen backlog until one closes, so idle or slow senders cannot exhaust
    /// the process's file descriptors.
    pub max_connections: usize,
    /// The endpoint's secret: pushes must carry it as `/push/<token>` or `?token=`;
    /// others get 404 and never reach the guest (default: none).
    pub token: Option<Token>,
    /// Source networks allowed to connect; others are disconnected at once (default:
    /// empty, every address).
    pub allow: Vec<IpNet>,
    /// What guests may use beyond clocks, random and stdio (default: nothing).
    pub grants: Grants,
    /// The interface the component is served through (default: detected).
    pub serve_as: ServeAs,
    /// The delivery store, for `cmq:push/handler` guests: attempt counts, dedupe and
    /// the dead-letter journal (default: none, every push runs the guest).
    pub store: Option<Store>,
    /// With a store, a message acknowledged within this window is answered `200 ok`
    /// without running the guest again (default 24 hours, CMQ's retention; `None`: no
    /// dedupe).
    pub dedupe_window: Option<Duration>,
    /// With a store, the attempt on which a failure (retry, fault, deadline) sends the
    /// message to the dead-letter journal, answered `200 ok` (default 3: one before
    /// `BACKOFF_RETRY`'s last, so that a delivery a crashed host never counted still
    /// leaves the message kept; 0: never).
    pub max_attempts: u32,
    /// Where compiled `.wasm` components are kept between starts (default: none, every
    /// start compiles; `cmq-host serve` uses [`crate::compile_cache_dir`]).
    pub compile_cache: Option<PathBuf>,
    /// Whether the component may be a `.cwasm` from `cmq-host compile`: native code,
    /// run as is (default: no).
    pub allow_precompiled: bool,
}

impl Default for ReceiverOptions {
    fn default() -> Self {
        ReceiverOptions {
            format: ExpectedFormat::Auto,
            deadline: Duration::from_secs(10),
            max_memory: 64 << 20,
            max_body: 1 << 20,
            max_in_flight: Self::default_max_in_flight(),
            body_timeout: Duration::from_secs(10),
            max_connections: 1024,
            token: None,
            allow: Vec::new(),
            grants: Grants::default(),
            serve_as: ServeAs::Auto,
            store: None,
            dedupe_window: Some(Duration::from_secs(24 * 3600)),
            max_attempts: 3,
            compile_cache: None,
            allow_precompiled: false,
        }
    }
}

impl ReceiverOptions {
    /// Messages in flight by default: 128 per CPU the process may use, at most 1024. A
    /// handler mostly waits (on its own outbound calls, or on CMQ's sender), so far more
    /// messages than cores are in flight at once; each may hold up to `max_memory`, and
    /// the instance pool reserves address space for every one.
    pub fn default_max_in_flight() -> usize {
        crate::route::default_max_in_flight()
    }
}

/// Turns pushes into guest runs: owns the routes, with their engine and compiled guests,
/// the delivery store and the metrics. Its routes can be reloaded while it serves.
#[derive(Debug)]
pub struct Receiver {
    routes: CurrentRoutes,
    /// Held while a reload builds and checks, so that reloads do not overlap.
    reloading: tokio::sync::Mutex<()>,
    generation: AtomicU64,
    store: Option<Store>,
    /// Deliveries answered before their claim, to be counted in the store.
    uncounted: Uncounted,
    compile_cache: Option<PathBuf>,
    max_connections: usize,
    allow: Vec<IpNet>,
    metrics: Metrics,
    draining: AtomicBool,
    /// The longest guest deadline of any generation served since start, in
    /// milliseconds: pushes of an older generation may still run when shutdown drains.
    longest_deadline_ms: AtomicU64,
}

impl Receiver {
    /// Compiles and checks the component at `path`, served on every path. Fails, with
    /// the reason, when the options are unusable or the component is not a `cmq:push`
    /// (or wasi-http) handler.
    pub fn load(path: &Path, options: ReceiverOptions) -> anyhow::Result<Self> {
        let config = Config::single(path.to_owned(), &options);
        Self::from_config(&config, options.store, options.compile_cache)
    }

    /// Compiles every route of `config` and checks it, logging each component as it is
    /// ready. `store` keeps delivery state for every route; `compile_cache` keeps
    /// compiled components between starts.
    pub fn from_config(
        config: &Config,
        store: Option<Store>,
        compile_cache: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            (1..=MAX_LIMIT).contains(&config.max_connections),
            "max connections must be between 1 and {MAX_LIMIT}"
        );
        let loading = Loading {
            compile_cache: compile_cache.as_deref(),
            allow_precompiled: config.allow_precompiled,
        };
        let routes = Routes::build(&config.routes, config.limits, loading, 1)?;
        let metrics = Metrics::default();
        metrics.serving(1);
        Ok(Receiver {
            routes: CurrentRoutes::new(routes),
            reloading: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(1),
            store,
            uncounted: Uncounted::default(),
            compile_cache,
            max_connections: config.max_connections,
            allow: config.allow.clone(),
            metrics,
            draining: AtomicBool::new(false),
            longest_deadline_ms: AtomicU64::new(longest_deadline_ms(&config.routes)),
        })
    }

    /// Builds and checks the routes of `config` beside the ones serving, then serves
    /// them: pushes already running finish on the routes they started with. When
    /// anything is wrong, the routes serving now go on serving and the error is
    /// returned. The listener, TLS, connection cap and allowlist stay as they started.
    pub async fn reload(&self, config: &Config) -> anyhow::Result<Vec<LoadedRoute>> {
        let _one_at_a_time = self.reloading.lock().await;
        let generation = self.generation.load(Ordering::Relaxed) + 1;
        let plans = config.routes.clone();
        let limits = config.limits;
        let cache = self.compile_cache.clone();
        let allow_precompiled = config.allow_precompiled;
        let built = tokio::task::spawn_blocking(move || {
            let loading = Loading {
                compile_cache: cache.as_deref(),
                allow_precompiled,
            };
            Routes::build(&plans, limits, loading, generation)
        })
        .await
        .context("the reload's compile task failed")
        .and_then(|built| built);
        let checked = match built {
            Ok(routes) => routes.check().await.map(|()| routes),
            Err(err) => Err(err),
        };
        match checked {
            Ok(mut routes) => {
                routes.take_over_caps(&self.routes.get());
                let report = routes.report();
                self.longest_deadline_ms
                    .fetch_max(longest_deadline_ms(&config.routes), Ordering::Relaxed);
                self.routes.replace(routes);
                self.generation.store(generation, Ordering::Relaxed);
                self.metrics.reloaded(true, generation);
                Ok(report)
            }
            Err(err) => {
                self.metrics.reloaded(false, generation);
                Err(err)
            }
        }
    }

    /// Counts a reload that failed before [`Receiver::reload`]: its config did not read.
    pub(crate) fn count_failed_reload(&self) {
        self.metrics.reloaded(false, self.generation());
    }

    /// Instantiates every route's guest once without a message, so that a component
    /// that cannot be instantiated within the limits is refused before serving.
    pub async fn check(&self) -> anyhow::Result<()> {
        self.routes.get().check().await
    }

    /// What each route serves now, in path order.
    pub fn routes(&self) -> Vec<LoadedRoute> {
        self.routes.get().report()
    }

    /// Which load of the routes is serving: 1 at start, one more per reload.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Runs `message` through a fresh instance of the first route's guest, exactly as
    /// for a push, and returns the guest's decision: for tools and benchmarks that have
    /// a message and no HTTP request. The message-in-flight cap does not apply.
    pub async fn handle(&self, message: cmq_message::Message) -> Result<Decision, GuestFault> {
        let routes = self.routes.get();
        let route = routes.first();
        route.guest.handle(Message::from(message)).await
    }

    /// The first route's component compiled to native code for this machine and this
    /// cmq-host: what `cmq-host compile` writes to a `.cwasm`, which
    /// [`Receiver::load`] loads without compiling.
    pub fn precompiled(&self) -> anyhow::Result<Vec<u8>> {
        Ok(self.routes.get().first().guest.serialize()?)
    }

    /// Where the first route's native code came from: compiled at this start, the
    /// compile cache, or a `.cwasm`.
    pub fn loaded(&self) -> Loaded {
        self.routes.get().first().guest.loaded()
    }

    /// The interface the first route's component is served through.
    pub fn serves(&self) -> ServeAs {
        self.routes.get().first().guest.serves()
    }

    /// The metrics in Prometheus' text format.
    pub fn metrics_text(&self) -> String {
        if let Some(files) = self.store.as_ref().and_then(Store::files) {
            self.metrics.store_files(&files);
        }
        self.metrics.encode()
    }

    /// Whether the receiver takes pushes: false once it drains for shutdown.
    pub fn is_ready(&self) -> bool {
        !self.draining.load(Ordering::Relaxed)
    }

    /// Marks the receiver draining: `/readyz` answers 503 from now on.
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// The source addresses allowed to connect.
    pub(crate) fn allowlist(&self) -> Allowlist {
        Allowlist::new(self.allow.clone())
    }

    /// How many connections may be open at once.
    pub(crate) fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// How long shutdown waits for in-flight pushes: the longest deadline of any
    /// generation served since start (an older one's pushes may still run), and a
    /// margin.
    pub(crate) fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.longest_deadline_ms.load(Ordering::Relaxed))
            + Duration::from_secs(1)
    }

    /// Answers one HTTP request. Never fails: every problem is an answer.
    pub(crate) async fn answer(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<AnswerBody> {
        let started = Instant::now();
        // The routes now: this push finishes on them whatever a reload does meanwhile.
        let routes = self.routes.get();
        let path = request.uri().path().to_owned();
        let Some((route, rest)) = routes.find(&path) else {
            // The path is not logged: it may hold a token.
            tracing::info!(%peer, status = 404, "push rejected: no route serves the path");
            self.metrics.rejected(NO_ROUTE, 404);
            return PushError::NotFound.into_response();
        };
        // With a store, a push handler's deliveries are counted even when answered
        // before the claim: by the header's id, all that is known before the body.
        let push_key = match (&self.store, route.guest.serves()) {
            (Some(_), ServeAs::PushHandler | ServeAs::Auto) => request
                .headers()
                .get(cmq_message::HEADER_MESSAGE_ID)
                .and_then(|id| std::str::from_utf8(id.as_bytes()).ok())
                .map(|id| push_key(&route.name, id)),
            _ => None,
        };
        // The permits are taken before the body is read, so that at most
        // `max_in_flight` bodies are ever buffered, and held until the guest is done.
        let read = async {
            admit(route, rest, &request, routes.limits.max_body)?;
            let permit = routes
                .in_flight
                .try_acquire()
                .map_err(|_| PushError::Overloaded(routes.limits.max_in_flight))?;
            let route_permit = match (&route.in_flight, route.options.max_in_flight) {
                (Some(cap), Some(max)) => {
                    Some(cap.try_acquire().map_err(|_| PushError::Overloaded(max))?)
                }
                _ => None,
            };
            let (parts, body) = request.into_parts();
            let body = read_body(body, &routes.limits).await?;
            // A wasi-http guest gets the request as it came; a push handler, the message.
            let work = match route.guest.serves() {
                ServeAs::IncomingHandler => Work::Request(parts, body),
                ServeAs::PushHandler | ServeAs::Auto => {
                    // Read lossily, two ids would make one key: refused instead.
                    let id = parts.headers.get(cmq_message::HEADER_MESSAGE_ID);
                    if id.is_some_and(|id| std::str::from_utf8(id.as_bytes()).is_err()) {
                        return Err(cmq_message::ParseError::MessageIdNotText.into());
                    }
                    let headers = push_headers(&parts.headers);
                    let message = cmq_message::parse(route.options.format, &headers, &body)?;
                    Work::Message(message, RawPush { headers, body })
                }
            };
            Ok::<_, PushError>(((permit, route_permit), work))
        };
        let (_permits, work) = match read.await {
            Ok(read) => read,
            Err(err) => {
                let status = err.status().as_u16();
                tracing::info!(%peer, route = route.name, status, "push rejected: {err}");
                match err {
                    PushError::Overloaded(_) => self.metrics.overloaded(&route.name),
                    _ => self.metrics.rejected(&route.name, status),
                }
                // A delivery that failed for want of room or time is one CMQ counts;
                // a body that is not a push (400, 413) will never be handled anyway.
                if let (
                    Some(push_key),
                    PushError::Overloaded(_) | PushError::BodyTimeout(_) | PushError::BodyRead(_),
                ) = (push_key, &err)
                {
                    self.note_uncounted(&route.name, push_key, 1);
                }
                return err.into_response();
            }
        };
        let _in_flight = self.metrics.in_flight(&route.name);
        match work {
            Work::Message(message, raw) => self.deliver(route, message, raw, started).await,
            Work::Request(parts, body) => self.answer_http(route, parts, body, started).await,
        }
    }

    /// Runs a parsed message through the route's guest, with the store's claim before
    /// and its record after when there is a store, and answers.
    async fn deliver(
        &self,
        route: &Route,
        mut message: cmq_message::Message,
        raw: RawPush,
        started: Instant,
    ) -> Response<AnswerBody> {
        let message_id = message.message_id.clone();
        let topic = message.topic_name.clone().unwrap_or_default();
        let route_name = route.name.as_str();
        let mut claimed = None;
        if let Some(store) = &self.store {
            let key = message_key(route_name, &message);
            let push_key = push_key(route_name, &message_id);
            let earlier = self.uncounted.take(&push_key);
            let lease = route.options.deadline + LEASE_MARGIN;
            let window = route.options.dedupe_window;
            match store.claim(&key, &push_key, earlier, lease, window).await {
                Ok(Claim::Run { attempt, token }) => {
                    message.attempt = Some(attempt);
                    claimed = Some(Claimed {
                        store,
                        key,
                        token,
                        attempt,
                    });
                }
                Ok(Claim::Duplicate) => {
                    tracing::info!(
                        route = route_name,
                        message_id,
                        topic,
                        decision = "duplicate",
                        "message already acknowledged: answered without running the guest"
                    );
                    self.metrics.dedupe_hit(route_name);
                    return ok_response();
                }
                Ok(Claim::Busy { attempt }) => {
                    let kept = Kept::of(&message, &raw, attempt);
                    return self.answer_busy(route, store, &key, kept, &topic).await;
                }
                Err(err) => {
                    tracing::warn!(
                        route = route_name,
                        message_id,
                        topic,
                        status = 503,
                        "message not handled: {err}"
                    );
                    self.metrics.store_error(route_name);
                    self.note_uncounted(route_name, push_key, earlier.saturating_add(1));
                    return PushError::Store(err).into_response();
                }
            }
        }
        let attempt = message.attempt;
        let kept = claimed
            .as_ref()
            .map(|claimed| Kept::of(&message, &raw, claimed.attempt));
        let provisional = match (&claimed, &kept) {
            (Some(claimed), Some(kept)) => self.keep_last_delivery(route, claimed, kept).await,
            _ => None,
        };
        let result = route
            .guest
            .handle(Message::from(message))
            .await
            .map_err(PushError::from);
        let recorded = match (&claimed, kept) {
            (Some(claimed), Some(kept)) => self.record(route, claimed, kept, &result).await,
            _ => Recorded::NotStored,
        };
        if let (Some(claimed), Some(provisional)) = (&claimed, provisional) {
            let acked = matches!(result, Ok(Decision::Ack));
            self.release_last_delivery(claimed, provisional, acked, &recorded)
                .await;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let duration_ms = elapsed * 1000.0;
        let dead_letter = match recorded {
            Recorded::Journaled(id) => {
                self.metrics.dead_letter(route_name);
                Some(id)
            }
            Recorded::DropNotJournaled(_) => {
                self.metrics.store_error(route_name);
                None
            }
            _ => None,
        };
        match result {
            Ok(decision) => {
                let (name, reason) = match &decision {
                    Decision::Ack => ("ack", None),
                    Decision::Retry(reason) => ("retry", Some(clip(reason))),
                    Decision::Drop(reason) => ("drop", Some(clip(reason))),
                };
                self.metrics.message(route_name, name, elapsed);
                // `reason`, `attempt` and `dead_letter` are left out when there are none.
                tracing::info!(
                    route = route_name,
                    generation = route.generation,
                    message_id,
                    topic,
                    decision = name,
                    reason,
                    attempt,
                    dead_letter,
                    duration_ms,
                    "message handled"
                );
                match recorded {
                    Recorded::Journaled(_) => ok_response(),
                    Recorded::DropNotJournaled(err) => PushError::Store(err).into_response(),
                    Recorded::NotStored | Recorded::Settled => decision_response(&decision),
                }
            }
            Err(err) => {
                if let PushError::Guest(fault) = &err {
                    self.count_fault(route_name, fault, elapsed);
                    if let Some(backtrace) = fault.backtrace() {
                        tracing::debug!(message_id, "guest backtrace:\n{backtrace}");
                    }
                }
                let text = err.to_string();
                let response = match recorded {
                    Recorded::Journaled(_) => ok_response(),
                    _ => err.into_response(),
                };
                let status = response.status().as_u16();
                tracing::warn!(
                    route = route_name,
                    generation = route.generation,
                    message_id,
                    topic,
                    status,
                    attempt,
                    dead_letter,
                    duration_ms,
                    "message not handled: {text}"
                );
                response
            }
        }
    }

    /// Notes `deliveries` of the message `push_key` names that the store has not
    /// counted, for [`Receiver::store_upkeep`] to write.
    fn note_uncounted(&self, route_name: &str, push_key: String, deliveries: u32) {
        if !self.uncounted.note(push_key, deliveries) {
            self.metrics.uncounted_lost(deliveries);
            tracing::error!(
                route = route_name,
                deliveries,
                "a delivery could not be counted (too many waiting for the store): CMQ's \
                 last delivery of its message may not be recognised as the last"
            );
        }
    }

    /// Writes the deliveries noted and not yet counted to the store; what fails stays
    /// noted for the next time.
    pub(crate) async fn flush_uncounted(&self) {
        let Some(store) = &self.store else {
            return;
        };
        let noted = self.uncounted.drain();
        if noted.is_empty() {
            return;
        }
        if let Err(err) = store.count_uncounted(noted.clone()).await {
            tracing::warn!(
                keys = noted.len(),
                "uncounted deliveries not yet written: {err}"
            );
            let lost = self.uncounted.restore(noted);
            if lost > 0 {
                self.metrics
                    .uncounted_lost(u32::try_from(lost).unwrap_or(u32::MAX));
                tracing::error!(
                    deliveries = lost,
                    "deliveries could not be counted (too many waiting for the store)"
                );
            }
        }
    }

    /// Counts a message whose guest gave no decision, and the kind of fault.
    fn count_fault(&self, route_name: &str, fault: &GuestFault, elapsed: f64) {
        let kind = match fault {
            GuestFault::Deadline(_) => "deadline",
            GuestFault::Instantiate(_) => "instantiate",
            GuestFault::Trap(_) => "trap",
        };
        self.metrics.fault(route_name, kind);
        self.metrics.message(route_name, "fault", elapsed);
    }

    /// Answers a push whose message another push is running: `503 in progress`, or on
    /// the last attempt the journal and `200 ok` (CMQ would not ask again, and the
    /// other run may yet fail).
    async fn answer_busy(
        &self,
        route: &Route,
        store: &Store,
        key: &str,
        kept: Kept,
        topic: &str,
    ) -> Response<AnswerBody> {
        let (message_id, attempt) = (kept.message_id.clone(), kept.attempt);
        let route_name = route.name.as_str();
        let max = route.options.max_attempts;
        if max > 0 && attempt >= max {
            let entry = kept.entry(format!(
                "another push of it was in progress on attempt {attempt}, the last of {max}"
            ));
            match store.journal(entry, key, None).await {
                Ok(dead_letter) => {
                    tracing::info!(
                        route = route_name,
                        message_id,
                        topic,
                        attempt,
                        dead_letter,
                        "message kept: another push of it is in progress on the last attempt"
                    );
                    self.metrics.dead_letter(route_name);
                    return ok_response();
                }
                Err(err) => {
                    self.metrics.store_error(route_name);
                    tracing::error!(
                        route = route_name,
                        message_id,
                        attempt,
                        "last attempt could not be journaled, CMQ may discard the message: {err}"
                    )
                }
            }
        }
        tracing::info!(
            route = route_name,
            message_id,
            topic,
            attempt,
            status = 503,
            "message not handled: another push of it is in progress"
        );
        PushError::InProgress.into_response()
    }

    /// On the last attempt, journals the message before its guest runs, so that a host
    /// that dies during the run (CMQ gets no answer, and asks no more) has kept it.
    /// Returns the entry's id; `None` before the last attempt, or when the journal
    /// failed (logged: the guest runs all the same, its decision may yet be a 2xx).
    async fn keep_last_delivery(
        &self,
        route: &Route,
        claimed: &Claimed<'_>,
        kept: &Kept,
    ) -> Option<i64> {
        let max = route.options.max_attempts;
        if max == 0 || claimed.attempt < max {
            return None;
        }
        let entry = kept.clone().entry(format!(
            "kept while its last delivery ran (attempt {}, the last of {max}): the host \
             stopped, or could not record the guest's decision",
            claimed.attempt
        ));
        match claimed.store.journal(entry, &claimed.key, None).await {
            Ok(id) => Some(id),
            Err(err) => {
                self.metrics.store_error(&route.name);
                tracing::error!(
                    route = route.name,
                    message_id = kept.message_id,
                    "the last delivery could not be kept before its guest ran: {err}"
                );
                None
            }
        }
    }

    /// Removes the entry [`Receiver::keep_last_delivery`] wrote once it is not the
    /// message's only copy: the guest acknowledged it, or it was journaled again with
    /// the guest's decision. Otherwise (the answer is not 2xx, and CMQ asks no more) it
    /// stays.
    async fn release_last_delivery(
        &self,
        claimed: &Claimed<'_>,
        provisional: i64,
        acked: bool,
        recorded: &Recorded,
    ) {
        if !acked && !matches!(recorded, Recorded::Journaled(_)) {
            return;
        }
        if let Err(err) = claimed
            .store
            .remove_dead_letters(Some(vec![provisional]))
            .await
        {
            tracing::warn!(
                dead_letter = provisional,
                "a handled message stays in the journal: {err}"
            );
        }
    }

    /// Records how a claimed delivery ended. Drops, and failures on the last attempt,
    /// go to the dead-letter journal (synced) so that their 2xx keeps them.
    async fn record(
        &self,
        route: &Route,
        claimed: &Claimed<'_>,
        kept: Kept,
        result: &Result<Decision, PushError>,
    ) -> Recorded {
        let Claimed {
            store,
            key,
            token,
            attempt,
        } = claimed;
        let (attempt, token) = (*attempt, *token);
        let message_id = kept.message_id.clone();
        let failure = match result {
            Ok(Decision::Ack) => {
                return match store.settle(key, token, Settlement::Acked).await {
                    Ok(()) => Recorded::Settled,
                    Err(err) => {
                        // The guest acknowledged: the answer stays 2xx. Only a later
                        // duplicate would run again.
                        tracing::warn!(message_id, "acknowledgement not recorded: {err}");
                        Recorded::NotStored
                    }
                };
            }
            Ok(Decision::Drop(reason)) => {
                let entry = kept.entry(format!("dropped: {}", clip(reason)));
                return match store.journal(entry, key, Some(token)).await {
                    Ok(id) => Recorded::Journaled(id),
                    Err(err) => {
                        tracing::error!(
                            message_id,
                            attempt,
                            status = 503,
                            "dropped message could not be journaled, answered 503 so that \
                             CMQ delivers it again: {err}"
                        );
                        let failed = Settlement::Failed("drop not journaled".into());
                        let _ = store.settle(key, token, failed).await;
                        Recorded::DropNotJournaled(err)
                    }
                };
            }
            Ok(Decision::Retry(reason)) => format!("retry: {}", clip(reason)),
            Err(err) => format!("fault: {err}"),
        };
        let max = route.options.max_attempts;
        if max > 0 && attempt >= max {
            let entry = kept.entry(format!("{failure} (attempt {attempt}, the last of {max})"));
            match store.journal(entry, key, Some(token)).await {
                Ok(id) => return Recorded::Journaled(id),
                Err(err) => tracing::error!(
                    message_id,
                    attempt,
                    "last attempt failed and could not be journaled, CMQ may discard the \
                     message: {err}"
                ),
            }
        }
        match store.settle(key, token, Settlement::Failed(failure)).await {
            Ok(()) => Recorded::Settled,
            Err(err) => {
                tracing::warn!(message_id, "failure not recorded: {err}");
                Recorded::NotStored
            }
        }
    }

    /// Keeps the store, while the returned future runs: writes the deliveries answered
    /// before their claim every [`FLUSH_INTERVAL`], and every hour forgets message
    /// records older than the longest dedupe window and a day of CMQ's retries
    /// (journal entries stay until removed).
    pub(crate) fn store_upkeep(
        self: &Arc<Self>,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        let store = self.store.clone()?;
        let receiver = Arc::downgrade(self);
        Some(async move {
            let mut flush = tokio::time::interval(FLUSH_INTERVAL);
            flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut prune = tokio::time::interval(Duration::from_secs(3600));
            loop {
                let pruning = tokio::select! {
                    _ = flush.tick() => false,
                    _ = prune.tick() => true,
                };
                let Some(receiver) = receiver.upgrade() else {
                    return;
                };
                if !pruning {
                    receiver.flush_uncounted().await;
                    continue;
                }
                let retry_span = Duration::from_secs(25 * 3600);
                let age = receiver
                    .routes
                    .get()
                    .iter()
                    .filter_map(|route| route.options.dedupe_window)
                    .fold(retry_span, Duration::max);
                drop(receiver);
                match store.prune(age).await {
                    Ok(0) => {}
                    Ok(pruned) => tracing::info!(pruned, "old message records forgotten"),
                    Err(err) => tracing::warn!("pruning the store failed: {err}"),
                }
            }
        })
    }

    /// Answers a push with a `wasi:http/incoming-handler` guest: the guest gets the
    /// request as it came and its response is the answer, its status the decision.
    async fn answer_http(
        &self,
        route: &Route,
        mut parts: http::request::Parts,
        body: Bytes,
        started: Instant,
    ) -> Response<AnswerBody> {
        let headers = push_headers(&parts.headers);
        let message_id = headers.message_id.clone().unwrap_or_default();
        let route_name = route.name.as_str();
        if let Some(token) = &route.options.token {
            parts.uri = token.strip_from(&parts.uri);
        }
        // wasi:http needs an authority; HTTP/1.1 senders always send `Host`.
        if !parts.headers.contains_key(header::HOST) {
            parts
                .headers
                .insert(header::HOST, http::HeaderValue::from_static("localhost"));
        }
        let request = Request::from_parts(parts, http_body_util::Full::new(body));
        let result = route
            .guest
            .handle_http(request, &message_id, MAX_ANSWER_BODY)
            .await;
        let elapsed = started.elapsed().as_secs_f64();
        let duration_ms = elapsed * 1000.0;
        match result {
            Ok(response) => {
                let status = response.status().as_u16();
                let decision = if response.status().is_success() {
                    "ack"
                } else {
                    "retry"
                };
                self.metrics.message(route_name, decision, elapsed);
                tracing::info!(
                    route = route_name,
                    generation = route.generation,
                    message_id,
                    status,
                    decision,
                    duration_ms,
                    "message handled"
                );
                response.map(http_body_util::Full::new)
            }
            Err(fault) => {
                self.count_fault(route_name, &fault, elapsed);
                let err = PushError::Guest(fault);
                let status = err.status().as_u16();
                tracing::warn!(
                    route = route_name,
                    message_id,
                    status,
                    duration_ms,
                    "message not handled: {err}"
                );
                err.into_response()
            }
        }
    }
}

/// Refuses, before reading a byte of the body, what can never be a CMQ push for
/// `route`; `rest` is what is left of the path after the route's own.
fn admit(
    route: &Route,
    rest: &str,
    request: &Request<Incoming>,
    max_body: usize,
) -> Result<(), PushError> {
    if let Some(token) = &route.options.token
        && !token.is_in(rest, request.uri().query())
    {
        return Err(PushError::NotFound);
    }
    if request.method() != Method::POST {
        return Err(PushError::MethodNotAllowed(request.method().clone()));
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max_body as u64) {
        return Err(PushError::BodyTooLarge { limit: max_body });
    }
    Ok(())
}

/// Reads the body, within its size and time limits.
async fn read_body(body: Incoming, limits: &SharedLimits) -> Result<Bytes, PushError> {
    let limit = limits.max_body;
    let collect = Limited::new(body, limit).collect();
    let body: Bytes = match tokio::time::timeout(limits.body_timeout, collect).await {
        Err(_elapsed) => return Err(PushError::BodyTimeout(limits.body_timeout)),
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => {
            return Err(PushError::BodyTooLarge { limit });
        }
        Ok(Err(err)) => return Err(PushError::BodyRead(err.to_string())),
    };
    Ok(body)
}

/// What a push that passed the checks goes on to.
enum Work {
    /// A parsed message, for a `cmq:push/handler` guest, and the push it came in.
    Message(cmq_message::Message, RawPush),
    /// The request itself, for a `wasi:http/incoming-handler` guest.
    Request(http::request::Parts, Bytes),
}

/// A push as it came, for the dead-letter journal.
struct RawPush {
    headers: PushHeaders,
    body: Bytes,
}

/// A delivery this push claimed in the store.
struct Claimed<'a> {
    store: &'a Store,
    key: String,
    token: ClaimToken,
    attempt: u32,
}

/// What the store did with a claimed delivery.
enum Recorded {
    /// No store, or the record failed (logged); the guest's decision is the answer.
    NotStored,
    /// Settled; the guest's decision is the answer.
    Settled,
    /// In the dead-letter journal under this id: answered `200 ok`.
    Journaled(i64),
    /// A drop that could not be journaled: answered 503 so that CMQ redelivers.
    DropNotJournaled(crate::store::StoreError),
}

/// What a push's journal entry would hold, kept cheaply (the body is shared) until
/// the entry is written.
#[derive(Clone)]
struct Kept {
    message_id: String,
    format: cmq_message::Format,
    headers: PushHeaders,
    body: Bytes,
    attempt: u32,
}

impl Kept {
    fn of(message: &cmq_message::Message, raw: &RawPush, attempt: u32) -> Kept {
        Kept {
            message_id: message.message_id.clone(),
            format: message.format,
            headers: raw.headers.clone(),
            body: raw.body.clone(),
            attempt,
        }
    }

    /// The journal entry, with `reason`. A NUL in it (a guest's text) becomes U+FFFD:
    /// PostgreSQL's text holds no NUL, and the entry must be written whatever the
    /// guest said.
    fn entry(self, reason: String) -> DeadLetter {
        DeadLetter {
            id: 0,
            message_id: self.message_id,
            reason: reason.replace('\0', "\u{FFFD}"),
            attempts: self.attempt,
            format: self.format,
            request_id: self.headers.request_id,
            message_tag: self.headers.message_tag,
            body: self.body.to_vec(),
            created: std::time::UNIX_EPOCH,
        }
    }
}

/// The longest guest deadline of `plans`, in milliseconds.
fn longest_deadline_ms(plans: &[crate::route::RoutePlan]) -> u64 {
    plans
        .iter()
        .map(|plan| u64::try_from(plan.options.deadline.as_millis()).unwrap_or(u64::MAX))
        .max()
        .unwrap_or_default()
}

/// How much longer than the guest deadline a claim holds off other pushes of its
/// message: a host that dies mid-run frees its claims after this.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// Most bytes of a wasi-http guest's response body passed on to the sender.
const MAX_ANSWER_BODY: usize = 64 << 10;

/// A guest's reason, cut to a length that fits a log line.
fn clip(reason: &str) -> &str {
    const MAX: usize = 1024;
    if reason.len() <= MAX {
        return reason;
    }
    let mut end = MAX;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// The `x-cmq-*` headers. Values that are not UTF-8 are read lossily: tags are text, and
/// a mangled id still identifies a wasi-http push in the log (a push handler's is
/// refused before this).
fn push_headers(headers: &HeaderMap) -> PushHeaders {
    let text = |name: &str| {
        headers
            .get(name)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
    };
    PushHeaders {
        request_id: text(cmq_message::HEADER_REQUEST_ID),
        message_id: text(cmq_message::HEADER_MESSAGE_ID),
        message_tag: text(cmq_message::HEADER_MESSAGE_TAG),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_short_reasons_and_cuts_long_ones_at_a_char_boundary() {
        assert_eq!(clip("busy"), "busy");
        let long = "é".repeat(1000); // 2000 bytes
        let clipped = clip(&long);
        assert!(clipped.len() <= 1024 && clipped.len() >= 1022);
        assert!(clipped.chars().all(|c| c == 'é'));
    }
}
