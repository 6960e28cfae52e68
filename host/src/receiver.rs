//! One push, from HTTP request to HTTP answer: check it, parse it, run the guest, answer.

use std::net::SocketAddr;
use std::path::Path;
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
use crate::answer::{AnswerBody, PushError, decision_response};
use crate::bindings::{Decision, Message};
use crate::engine::{EngineSizing, EpochTicker, new_engine};
use crate::guest::{Guest, GuestFault, ServeAs};
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
                ServeAs::PushHandler | ServeAs::Auto => Work::Message(Message::from(
                    cmq_message::parse(self.options.format, &push_headers(&parts.headers), &body)?,
                )),
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
        let message = match work {
            Work::Message(message) => message,
            Work::Request(parts, body) => return self.answer_http(parts, body, started).await,
        };
        let message_id = message.message_id.clone();
        let topic = message.topic_name.clone().unwrap_or_default();
        let result = self.guest.handle(message).await.map_err(PushError::from);
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        match result {
            Ok(decision) => {
                let (name, reason) = match &decision {
                    Decision::Ack => ("ack", None),
                    Decision::Retry(reason) => ("retry", Some(clip(reason))),
                    Decision::Drop(reason) => ("drop", Some(clip(reason))),
                };
                // `reason` is left out of the line when there is none.
                tracing::info!(
                    message_id,
                    topic,
                    decision = name,
                    reason,
                    duration_ms,
                    "message handled"
                );
                decision_response(&decision)
            }
            Err(err) => {
                if let PushError::Guest(fault) = &err
                    && let Some(backtrace) = fault.backtrace()
                {
                    tracing::debug!(message_id, "guest backtrace:\n{backtrace}");
                }
                let status = err.status().as_u16();
                tracing::warn!(
                    message_id,
                    topic,
                    status,
                    duration_ms,
                    "message not handled: {err}"
                );
                err.into_response()
            }
        }
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
    /// A parsed message, for a `cmq:push/handler` guest.
    Message(Message),
    /// The request itself, for a `wasi:http/incoming-handler` guest.
    Request(http::request::Parts, Bytes),
}

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
