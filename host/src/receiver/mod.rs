//! The receiver: the routes it serves, with their compiled guests, the delivery store
//! and the metrics, and [`Receiver::answer`], which takes one push through its stages,
//! each in a file of its own: [`crate::push::intake`], [`crate::push::delivery`] and
//! [`crate::push::verdict`], which [`crate::push::report`] and [`crate::push::feed`]
//! read. Its other jobs, each in a file of its own:
//!
//! - [`reload`]: new routes built and checked beside the serving ones;
//! - [`replay`]: a dead-letter entry run again through its route's guest;
//! - [`queries`]: what the console, the admin listener and the commands read of it.

mod queries;
mod reload;
mod replay;

use reload::{longest_deadline_ms, longest_dedupe_window};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use tracing::Instrument as _;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::options::ReceiverOptions;
use crate::options::ServeAs;
use crate::push::delivery::Delivery;
use crate::push::feed::{Decided, Feed, Preview};
use crate::push::http_delivery;
use crate::push::intake::{self, Refusal, Taken, Work};
use crate::push::report::{self, Subject};
use crate::push::verdict::{self, Verdict};
use crate::response::AnswerBody;
use crate::route::{CurrentRoutes, Route, Routes};
use crate::sandbox::loading::Loading;
use crate::sandbox::outbound_http::Outbound;
use crate::store::{Store, push_key};
use crate::trace;

/// Turns pushes into guest runs: owns the routes, with their engine and compiled guests,
/// the delivery store and the metrics. Its routes can be reloaded while it serves.
#[derive(Debug)]
pub struct Receiver {
    routes: CurrentRoutes,
    /// Held while a reload builds and checks, so that reloads do not overlap.
    reloading: tokio::sync::Mutex<()>,
    generation: AtomicU64,
    store: Option<Store>,
    compile_cache: Option<PathBuf>,
    metrics: Metrics,
    /// Guests' outbound HTTP: shared by every route, across reloads.
    outbound: Arc<Outbound>,
    /// Decisions as they happen, for the console's live page.
    feed: Feed,
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
        let loading = Loading {
            compile_cache: compile_cache.as_deref(),
            allow_precompiled: config.allow_precompiled,
        };
        let metrics = Metrics::default();
        let outbound = Arc::new(Outbound::new(metrics.outbound_requests())?);
        if config
            .routes
            .iter()
            .any(|route| !route.options.grants.http.is_empty())
        {
            tracing::info!(
                "guests' outbound HTTP: at most {} requests in flight per instance, {} for the \
                 whole host (a quarter of its open-files limit)",
                crate::sandbox::outbound_http::MAX_REQUESTS_PER_INSTANCE,
                outbound.cap()
            );
        }
        let routes = Routes::build(&config.routes, config.limits, loading, 1, &outbound)?;
        if let Some(store) = &store {
            store.keep_records_for(longest_dedupe_window(&config.routes));
        }
        metrics.started();
        Ok(Receiver {
            routes: CurrentRoutes::new(routes),
            reloading: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(1),
            store,
            compile_cache,
            metrics,
            outbound,
            feed: Feed::default(),
            draining: AtomicBool::new(false),
            longest_deadline_ms: AtomicU64::new(longest_deadline_ms(&config.routes)),
        })
    }

    /// Whether the receiver takes pushes: false once it drains for shutdown.
    pub fn is_ready(&self) -> bool {
        !self.draining.load(Ordering::Relaxed)
    }

    /// Marks the receiver draining: `/readyz` answers 503 from now on.
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.feed.close();
    }

    /// Once the pushes have drained: writes what the store still holds in memory (the
    /// deliveries answered before their claim).
    pub(crate) async fn drained(&self) {
        if let Some(store) = &self.store {
            store.flush().await;
        }
    }

    /// How long shutdown waits for in-flight pushes: the longest deadline of any
    /// generation served since start (an older one's pushes may still run), and a
    /// margin.
    pub(crate) fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.longest_deadline_ms.load(Ordering::Relaxed))
            + Duration::from_secs(1)
    }

    /// Answers one HTTP request. Never fails: every problem is an answer. The stages,
    /// in order: the route, [`intake`], [`Delivery`] (or [`http_delivery::pass_request`]
    /// for a wasi-http guest), its [`Verdict`], and [`report`] of it.
    pub(crate) async fn answer(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<AnswerBody> {
        let span = trace::push(request.headers());
        let response = self
            .answer_in(&span, request, peer)
            .instrument(span.clone())
            .await;
        span.record("http.response.status_code", response.status().as_u16());
        response
    }

    /// [`Receiver::answer`], whose push's span is `span`.
    async fn answer_in(
        &self,
        span: &tracing::Span,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<AnswerBody> {
        let started = Instant::now();
        // The routes now: this push finishes on them whatever a reload does meanwhile.
        let routes = self.routes.get();
        let path = request.uri().path().to_owned();
        let Some((route, rest)) = routes.find(&path) else {
            report::no_route(&self.metrics, peer);
            return verdict::refused(&Refusal::NotFound);
        };
        let Taken {
            permits: _permits,
            work,
        } = match self.take(&routes, route, rest, request, peer).await {
            Ok(taken) => taken,
            Err(refused) => return refused,
        };
        let _in_flight = self.metrics.in_flight(&route.series);
        let (subject, preview) = subject_and_preview(&self.feed, &work);
        record_subject(span, &route.name, &subject);
        let verdict = match work {
            Work::Message(message, raw) => {
                let delivery = Delivery {
                    route,
                    store: self.store.as_ref(),
                    metrics: &self.metrics,
                };
                Verdict::of(delivery.run(message, raw).await)
            }
            Work::Request(parts, body) => {
                // Boxed, as the store's part of a delivery is: every push builds and
                // moves this future, whichever entrance its route serves.
                let (result, times) = Box::pin(http_delivery::pass_request(
                    route,
                    parts,
                    body,
                    &subject.message_id,
                ))
                .await;
                self.metrics.guest_ran(&route.series, times);
                Verdict::passed(result)
            }
        };
        let elapsed = started.elapsed();
        span.record("messaging.cmq.decision", verdict.decision());
        if let Some(attempt) = verdict.attempt {
            span.record("messaging.cmq.attempt", attempt);
        }
        report::ended(&self.metrics, route, &subject, &verdict, elapsed);
        if let Some(preview) = preview {
            self.feed
                .publish(Decided::of(route, &subject, &verdict, elapsed, preview));
        }
        verdict.into_response()
    }

    /// [`intake`] of a push to `route`; refused, its answer, and the delivery noted
    /// (with a store, a push handler's deliveries are counted even when answered
    /// before the claim: by the header's id, all that is known before the body).
    async fn take<'a>(
        &self,
        routes: &'a Routes,
        route: &'a Route,
        rest: &str,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Taken<'a>, Response<AnswerBody>> {
        // The header is kept (a reference count), its key made only if it is needed.
        let header_id = match (&self.store, route.guest.serves()) {
            (Some(_), ServeAs::PushHandler | ServeAs::Auto) => request
                .headers()
                .get(cmq_message::HEADER_MESSAGE_ID)
                .cloned(),
            _ => None,
        };
        intake::take(routes, route, rest, request)
            .instrument(trace::stage("parse"))
            .await
            .map_err(|err| {
                report::refused(&self.metrics, peer, &route.name, &err);
                if let (Some(store), Some(id)) = (&self.store, &header_id)
                    && err.is_a_delivery()
                    && let Ok(id) = std::str::from_utf8(id.as_bytes())
                {
                    store.note_delivery(push_key(&route.name, id));
                }
                verdict::refused(&err)
            })
    }
}

/// Which message `work` carries, and what the live feed shows of it while watched.
fn subject_and_preview(feed: &Feed, work: &Work) -> (Subject, Option<Preview>) {
    match work {
        Work::Message(message, _) => (
            Subject::of(message),
            feed.preview(|| message.tags.clone(), &message.body),
        ),
        Work::Request(parts, body) => {
            let headers = intake::push_headers(&parts.headers);
            let tags = headers.message_tag.as_deref();
            let preview = feed.preview(
                || tags.map(cmq_message::parse_tags).unwrap_or_default(),
                body,
            );
            // The guest parses the body: only the headers say which message it is.
            let subject = Subject {
                message_id: headers.message_id.unwrap_or_default(),
                topic: None,
                subscription: None,
                request_id: headers.request_id,
            };
            (subject, preview)
        }
    }
}

/// What a push's span says of its message.
fn record_subject(span: &tracing::Span, route: &str, subject: &Subject) {
    if span.is_disabled() {
        return;
    }
    let (message_id, topic, subscription, request_id) = subject.fields();
    span.record("messaging.cmq.route", route);
    span.record("messaging.message.id", message_id);
    // A field left out (None) records nothing.
    span.record("messaging.destination.name", topic);
    span.record("messaging.destination.subscription.name", subscription);
    span.record("messaging.cmq.request_id", request_id);
}
