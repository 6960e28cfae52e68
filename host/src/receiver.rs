//! One push, from HTTP request to HTTP answer: check it, parse it, run the guest, answer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use cmq_message::{ExpectedFormat, PushHeaders};
use http::{HeaderMap, Method, Request, Response, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use ipnet::IpNet;
use tokio::sync::Semaphore;

use crate::access::Allowlist;
use crate::answer::{AnswerBody, PushError, decision_response, ok_response};
use crate::bindings::{Decision, Message};
use crate::engine::{EngineSizing, EpochTicker, new_engine};
use crate::guest::{Guest, GuestFault, ServeAs};
use crate::precompiled::Loaded;
use crate::store::{Claim, ClaimToken, DeadLetter, Settlement, Store};
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
    /// With a store, the delivery CMQ will not follow with another: when it fails
    /// (retry, fault, deadline) the message goes to the dead-letter journal and is
    /// answered `200 ok` (default 4, `BACKOFF_RETRY`'s; 0: never).
    pub max_attempts: u32,
    /// Where compiled `.wasm` components are kept between starts (default: none, every
    /// start compiles; `cmq-host serve` uses [`crate::compile_cache_dir`]).
    pub compile_cache: Option<PathBuf>,
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
            max_attempts: 4,
            compile_cache: None,
        }
    }
}

impl ReceiverOptions {
    /// Messages in flight by default: 128 per CPU the process may use, at most 1024. A
    /// handler mostly waits (on its own outbound calls, or on CMQ's sender), so far more
    /// messages than cores are in flight at once; each may hold up to `max_memory`, and
    /// the instance pool reserves address space for every one.
    pub fn default_max_in_flight() -> usize {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        cpus.saturating_mul(128).min(1024)
    }
}

/// Turns pushes into guest runs: owns the engine, the compiled guest and the limits.
#[derive(Debug)]
pub struct Receiver {
    guest: Guest,
    options: ReceiverOptions,
    in_flight: Semaphore,
    _ticker: EpochTicker,
}

impl Receiver {
    /// Compiles and checks the component at `path`. Fails, with the reason, when the
    /// options are unusable or the component is not a `cmq:push` handler.
    pub fn load(path: &Path, options: ReceiverOptions) -> anyhow::Result<Self> {
        anyhow::ensure!(
            options.max_in_flight > 0,
            "max in flight must be at least 1"
        );
        anyhow::ensure!(
            (1..=MAX_LIMIT).contains(&options.max_connections),
            "max connections must be between 1 and {MAX_LIMIT}"
        );
        anyhow::ensure!(
            options.max_in_flight <= MAX_LIMIT,
            "max in flight must be at most {MAX_LIMIT}"
        );
        // CMQ gives up on an answer after about 15 s; an hour is far past any use and
        // keeps deadline arithmetic clear of overflow.
        let an_hour = Duration::from_secs(3600);
        anyhow::ensure!(
            !options.deadline.is_zero() && options.deadline <= an_hour,
            "the deadline must be longer than zero and at most an hour"
        );
        anyhow::ensure!(
            !options.body_timeout.is_zero() && options.body_timeout <= an_hour,
            "the body timeout must be longer than zero and at most an hour"
        );
        let max_instances = u32::try_from(options.max_in_flight)
            .context("max in flight is too large")?
            // One more slot than messages in flight, for the start-up check.
            .saturating_add(1);
        let engine = new_engine(EngineSizing {
            max_instances,
            max_memory: options.max_memory,
        })?;
        options.grants.check()?;
        let guest = Guest::load(
            &engine,
            path,
            options.deadline,
            options.max_memory,
            options.grants.clone(),
            options.serve_as,
            options.compile_cache.as_deref(),
        )?;
        let ticker = EpochTicker::start(&engine).context("starting the epoch ticker thread")?;
        Ok(Receiver {
            guest,
            in_flight: Semaphore::new(options.max_in_flight),
            options,
            _ticker: ticker,
        })
    }

    /// Instantiates the guest once without a message, so that a component that cannot
    /// be instantiated within the limits is refused before serving.
    pub async fn check(&self) -> anyhow::Result<()> {
        Ok(self.guest.check_instantiates().await?)
    }

    /// Runs `message` through a fresh instance of the guest, exactly as for a push, and
    /// returns the guest's decision: for tools and benchmarks that have a message and
    /// no HTTP request. The message-in-flight cap does not apply.
    pub async fn handle(&self, message: cmq_message::Message) -> Result<Decision, GuestFault> {
        self.guest.handle(Message::from(message)).await
    }

    /// The component compiled to native code for this machine and this cmq-host: what
    /// `cmq-host compile` writes to a `.cwasm`, which [`Receiver::load`] loads without
    /// compiling.
    pub fn precompiled(&self) -> anyhow::Result<Vec<u8>> {
        Ok(self.guest.serialize()?)
    }

    /// Where the component's native code came from: compiled at this start, the
    /// compile cache, or a `.cwasm`.
    pub fn loaded(&self) -> Loaded {
        self.guest.loaded()
    }

    /// The interface the component is served through.
    pub fn serves(&self) -> ServeAs {
        self.guest.serves()
    }

    /// The source addresses allowed to connect.
    pub(crate) fn allowlist(&self) -> Allowlist {
        Allowlist::new(self.options.allow.clone())
    }

    /// How many connections may be open at once.
    pub(crate) fn max_connections(&self) -> usize {
        self.options.max_connections
    }

    /// How long shutdown waits for in-flight pushes: one guest deadline and a margin.
    pub(crate) fn drain_timeout(&self) -> Duration {
        self.options.deadline + Duration::from_secs(1)
    }

    /// Answers one HTTP request. Never fails: every problem is an answer.
    pub(crate) async fn answer(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<AnswerBody> {
        let started = Instant::now();
        // The permit is taken before the body is read, so that at most `max_in_flight`
        // bodies are ever buffered, and held until the guest is done.
        let read = async {
            self.admit(&request)?;
            let permit = self
                .in_flight
                .try_acquire()
                .map_err(|_| PushError::Overloaded(self.options.max_in_flight))?;
            let (parts, body) = request.into_parts();
            let body = self.read_body(body).await?;
            // A wasi-http guest gets the request as it came; a push handler, the message.
            let work = match self.guest.serves() {
                ServeAs::IncomingHandler => Work::Request(parts, body),
                ServeAs::PushHandler | ServeAs::Auto => {
                    let headers = push_headers(&parts.headers);
                    let message = cmq_message::parse(self.options.format, &headers, &body)?;
                    Work::Message(message, RawPush { headers, body })
                }
            };
            Ok::<_, PushError>((permit, work))
        };
        let (_permit, work) = match read.await {
            Ok(read) => read,
            Err(err) => {
                tracing::info!(%peer, status = err.status().as_u16(), "push rejected: {err}");
                return err.into_response();
            }
        };
        match work {
            Work::Message(message, raw) => self.deliver(message, raw, started).await,
            Work::Request(parts, body) => self.answer_http(parts, body, started).await,
        }
    }

    /// Runs a parsed message through the guest, with the store's claim before and its
    /// record after when there is a store, and answers.
    async fn deliver(
        &self,
        mut message: cmq_message::Message,
        raw: RawPush,
        started: Instant,
    ) -> Response<AnswerBody> {
        let message_id = message.message_id.clone();
        let topic = message.topic_name.clone().unwrap_or_default();
        let mut claimed = None;
        if let Some(store) = &self.options.store {
            let key = delivery_key(&message);
            let lease = self.options.deadline + LEASE_MARGIN;
            match store.claim(&key, lease, self.options.dedupe_window).await {
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
                        message_id,
                        topic,
                        decision = "duplicate",
                        "message already acknowledged: answered without running the guest"
                    );
                    return ok_response();
                }
                Ok(Claim::Busy { attempt }) => {
                    let kept = Kept::of(&message, &raw, attempt);
                    return self.answer_busy(store, &key, kept, &topic).await;
                }
                Err(err) => {
                    tracing::warn!(
                        message_id,
                        topic,
                        status = 503,
                        "message not handled: {err}"
                    );
                    return PushError::Store(err).into_response();
                }
            }
        }
        let attempt = message.attempt;
        let kept = claimed
            .as_ref()
            .map(|claimed| Kept::of(&message, &raw, claimed.attempt));
        let result = self
            .guest
            .handle(Message::from(message))
            .await
            .map_err(PushError::from);
        let recorded = match (&claimed, kept) {
            (Some(claimed), Some(kept)) => self.record(claimed, kept, &result).await,
            _ => Recorded::NotStored,
        };
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        let dead_letter = match recorded {
            Recorded::Journaled(id) => Some(id),
            _ => None,
        };
        match result {
            Ok(decision) => {
                let (name, reason) = match &decision {
                    Decision::Ack => ("ack", None),
                    Decision::Retry(reason) => ("retry", Some(clip(reason))),
                    Decision::Drop(reason) => ("drop", Some(clip(reason))),
                };
                // `reason`, `attempt` and `dead_letter` are left out when there are none.
                tracing::info!(
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
                if let PushError::Guest(fault) = &err
                    && let Some(backtrace) = fault.backtrace()
                {
                    tracing::debug!(message_id, "guest backtrace:\n{backtrace}");
                }
                let text = err.to_string();
                let response = match recorded {
                    Recorded::Journaled(_) => ok_response(),
                    _ => err.into_response(),
                };
                let status = response.status().as_u16();
                tracing::warn!(
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

    /// Answers a push whose message another push is running: `503 in progress`, or on
    /// the last attempt the journal and `200 ok` (CMQ would not ask again, and the
    /// other run may yet fail).
    async fn answer_busy(
        &self,
        store: &Store,
        key: &str,
        kept: Kept,
        topic: &str,
    ) -> Response<AnswerBody> {
        let (message_id, attempt) = (kept.message_id.clone(), kept.attempt);
        let max = self.options.max_attempts;
        if max > 0 && attempt >= max {
            let entry = kept.entry(format!(
                "another push of it was in progress on attempt {attempt}, the last of {max}"
            ));
            match store.journal(entry, key, None).await {
                Ok(dead_letter) => {
                    tracing::info!(
                        message_id,
                        topic,
                        attempt,
                        dead_letter,
                        "message kept: another push of it is in progress on the last attempt"
                    );
                    return ok_response();
                }
                Err(err) => tracing::error!(
                    message_id,
                    attempt,
                    "last attempt could not be journaled, CMQ may discard the message: {err}"
                ),
            }
        }
        tracing::info!(
            message_id,
            topic,
            attempt,
            status = 503,
            "message not handled: another push of it is in progress"
        );
        PushError::InProgress.into_response()
    }

    /// Records how a claimed delivery ended. Drops, and failures on the last attempt,
    /// go to the dead-letter journal (synced) so that their 2xx keeps them.
    async fn record(
        &self,
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
                        let failed = Settlement::Failed("drop not journaled".into());
                        let _ = store.settle(key, token, failed).await;
                        Recorded::DropNotJournaled(err)
                    }
                };
            }
            Ok(Decision::Retry(reason)) => format!("retry: {}", clip(reason)),
            Err(err) => format!("fault: {err}"),
        };
        let max = self.options.max_attempts;
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

    /// Forgets old message records every hour, while the returned future runs: those
    /// older than the dedupe window and a day of CMQ's retries (journal entries stay
    /// until removed).
    pub(crate) fn store_upkeep(&self) -> Option<impl Future<Output = ()> + Send + 'static> {
        let store = self.options.store.clone()?;
        let retry_span = Duration::from_secs(25 * 3600);
        let age = self
            .options
            .dedupe_window
            .map_or(retry_span, |w| w.max(retry_span));
        Some(async move {
            let mut every_hour = tokio::time::interval(Duration::from_secs(3600));
            loop {
                every_hour.tick().await;
                match store.prune(age).await {
                    Ok(0) => {}
                    Ok(pruned) => tracing::info!(pruned, "old message records forgotten"),
                    Err(err) => tracing::warn!("pruning the store failed: {err}"),
                }
            }
        })
    }

    /// Refuses, before reading a byte of the body, what can never be a CMQ push.
    fn admit(&self, request: &Request<Incoming>) -> Result<(), PushError> {
        if let Some(token) = &self.options.token
            && !token.is_in(request.uri())
        {
            return Err(PushError::NotFound);
        }
        if request.method() != Method::POST {
            return Err(PushError::MethodNotAllowed(request.method().clone()));
        }
        let limit = self.options.max_body;
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit as u64) {
            return Err(PushError::BodyTooLarge { limit });
        }
        Ok(())
    }

    /// Answers a push with a `wasi:http/incoming-handler` guest: the guest gets the
    /// request as it came and its response is the answer, its status the decision.
    async fn answer_http(
        &self,
        mut parts: http::request::Parts,
        body: Bytes,
        started: Instant,
    ) -> Response<AnswerBody> {
        let headers = push_headers(&parts.headers);
        let message_id = headers.message_id.clone().unwrap_or_default();
        // wasi:http needs an authority; HTTP/1.1 senders always send `Host`.
        if !parts.headers.contains_key(header::HOST) {
            parts
                .headers
                .insert(header::HOST, http::HeaderValue::from_static("localhost"));
        }
        let request = Request::from_parts(parts, http_body_util::Full::new(body));
        let result = self
            .guest
            .handle_http(request, &message_id, MAX_ANSWER_BODY)
            .await;
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        match result {
            Ok(response) => {
                let status = response.status().as_u16();
                let decision = if response.status().is_success() {
                    "ack"
                } else {
                    "retry"
                };
                tracing::info!(message_id, status, decision, duration_ms, "message handled");
                response.map(http_body_util::Full::new)
            }
            Err(fault) => {
                let err = PushError::Guest(fault);
                let status = err.status().as_u16();
                tracing::warn!(
                    message_id,
                    status,
                    duration_ms,
                    "message not handled: {err}"
                );
                err.into_response()
            }
        }
    }

    /// Reads the body, within its size and time limits.
    async fn read_body(&self, body: Incoming) -> Result<Bytes, PushError> {
        let limit = self.options.max_body;
        let collect = Limited::new(body, limit).collect();
        let body: Bytes = match tokio::time::timeout(self.options.body_timeout, collect).await {
            Err(_elapsed) => return Err(PushError::BodyTimeout(self.options.body_timeout)),
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => {
                return Err(PushError::BodyTooLarge { limit });
            }
            Ok(Err(err)) => return Err(PushError::BodyRead(err.to_string())),
        };
        Ok(body)
    }
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

    /// The journal entry, with `reason`.
    fn entry(self, reason: String) -> DeadLetter {
        DeadLetter {
            id: 0,
            message_id: self.message_id,
            reason,
            attempts: self.attempt,
            format: self.format,
            request_id: self.headers.request_id,
            message_tag: self.headers.message_tag,
            body: self.body.to_vec(),
            created: std::time::UNIX_EPOCH,
        }
    }
}

/// What the store keys a message by: its id, within its subscription when the push
/// names one (JSON format), since every subscription of a topic gets the same message
/// id and one endpoint may serve several.
fn delivery_key(message: &cmq_message::Message) -> String {
    match &message.subscription_name {
        Some(subscription) => format!("{subscription}/{}", message.message_id),
        None => message.message_id.clone(),
    }
}

/// How much longer than the guest deadline a claim holds off other pushes of its
/// message: a host that dies mid-run frees its claims after this.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// The largest connection or in-flight cap accepted: far beyond any machine's file
/// descriptors, and within what a semaphore and the instance pool can hold.
const MAX_LIMIT: usize = 1 << 20;

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

/// The `x-cmq-*` headers. Values that are not UTF-8 are read lossily: tags and ids are
/// text, and a mangled id still identifies the push in the log.
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
