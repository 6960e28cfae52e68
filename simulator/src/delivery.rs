//! Pushing: one POST per attempt, as CMQ sends it, retried on CMQ's schedule.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cmq_message::{Format, HEADER_MESSAGE_ID, HEADER_MESSAGE_TAG, HEADER_REQUEST_ID, Message};
use http::{Method, Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::{Answer, Attempt, Filter, Outcome, Published, Report, RetryStrategy};

/// The user agent CMQ sends.
pub const USER_AGENT: &str = "Qcloud Notification Service Agent";

/// How long CMQ waits for an answer before counting the attempt as failed.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// Most bytes of an answer's body read (and thrown away) so the connection can be reused.
const MAX_ANSWER_BODY: usize = 64 << 10;

/// One subscription of a topic: where its pushes go and how.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// The endpoint, an `http://` URL.
    pub endpoint: Uri,
    /// `NotifyContentFormat`: JSON envelope or the bare body.
    pub format: Format,
    /// `NotifyStrategy`.
    pub strategy: RetryStrategy,
    /// `FilterTag` and `BindingKey`.
    pub filter: Filter,
    /// The topic owner's APPID, as the JSON envelope's `TopicOwner`.
    pub topic_owner: String,
    /// The topic's name.
    pub topic_name: String,
    /// The subscription's name.
    pub subscription_name: String,
}

impl Subscription {
    /// A subscription of topic `MyTopic` to `endpoint` with CMQ's defaults: JSON,
    /// `EXPONENTIAL_DECAY_RETRY`, no filters.
    pub fn new(endpoint: Uri) -> Self {
        Subscription {
            endpoint,
            format: Format::Json,
            strategy: RetryStrategy::default(),
            filter: Filter::default(),
            topic_owner: "100015036".into(),
            topic_name: "MyTopic".into(),
            subscription_name: "mysubscription".into(),
        }
    }
}

/// A simulated CMQ topic pushing to one subscription.
#[derive(Debug, Clone)]
pub struct Simulator {
    subscription: Subscription,
    /// Multiplies every retry interval: 0.001 runs a day of retries in under 90 s.
    time_scale: f64,
    /// Pushes in flight at once, across messages.
    concurrency: usize,
    seed: Option<u64>,
}

/// A setting the simulator cannot run with.
#[derive(Debug, thiserror::Error)]
pub enum SettingError {
    /// Endpoints are plain HTTP, as CMQ's documentation has them.
    #[error("the endpoint must be an http:// URL with a host, not {0}")]
    Endpoint(Uri),
    /// The time scale must be a finite number above zero.
    #[error("the time scale must be above 0 and at most 1, not {0}")]
    TimeScale(f64),
    /// At least one push must be allowed in flight.
    #[error("concurrency must be at least 1")]
    Concurrency,
}

impl Simulator {
    /// Pushes to `subscription` in real time, 16 pushes at most in flight.
    pub fn new(subscription: Subscription) -> Result<Self, SettingError> {
        let endpoint = &subscription.endpoint;
        if endpoint.scheme_str() != Some("http") || endpoint.host().is_none() {
            return Err(SettingError::Endpoint(endpoint.clone()));
        }
        Ok(Simulator {
            subscription,
            time_scale: 1.0,
            concurrency: 16,
            seed: None,
        })
    }

    /// Scales every retry interval by `scale` (above 0, at most 1).
    pub fn time_scale(mut self, scale: f64) -> Result<Self, SettingError> {
        if !(scale > 0.0 && scale <= 1.0) {
            return Err(SettingError::TimeScale(scale));
        }
        self.time_scale = scale;
        Ok(self)
    }

    /// Allows `pushes` in flight at once.
    pub fn concurrency(mut self, pushes: usize) -> Result<Self, SettingError> {
        if pushes == 0 {
            return Err(SettingError::Concurrency);
        }
        self.concurrency = pushes;
        Ok(self)
    }

    /// Makes message ids, request ids and backoff intervals repeatable.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Publishes `messages` and pushes each to the subscription until it is delivered
    /// or discarded. `on_report` sees each report as its message finishes; the returned
    /// reports are in the order of `messages`.
    pub async fn run(
        &self,
        messages: Vec<Published>,
        mut on_report: impl FnMut(&Report),
    ) -> Vec<Report> {
        let mut rng = match self.seed {
            Some(seed) => fastrand::Rng::with_seed(seed),
            None => fastrand::Rng::new(),
        };
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let slots = Arc::new(Semaphore::new(self.concurrency));
        // CMQ's ids are digit strings; start at a random 10-digit one.
        let first_id = rng.u64(1_000_000_000..9_000_000_000);
        let publish_time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
            });
        let mut reports: Vec<Option<Report>> = vec![None; messages.len()];
        let mut pushes = JoinSet::new();
        for (index, published) in messages.into_iter().enumerate() {
            // What no header can carry is never sent, nor retried for a day.
            let invalid = crate::check_header_values(&published).err();
            let message = Message {
                message_id: published
                    .msg_id
                    .clone()
                    .unwrap_or_else(|| (first_id + index as u64).to_string()),
                tags: published.msg_tag.clone(),
                topic_owner: Some(self.subscription.topic_owner.clone()),
                topic_name: Some(self.subscription.topic_name.clone()),
                subscription_name: Some(self.subscription.subscription_name.clone()),
                publish_time: Some(publish_time),
                body: published.msg_body.into_bytes(),
                format: self.subscription.format,
                attempt: None,
                request_id: None,
            };
            // Filtered out, or what no header can carry: settled without a push.
            let settled = match (
                self.subscription
                    .filter
                    .check(&message.tags, published.routing_key.as_deref()),
                invalid,
            ) {
                (Err(reason), _) => Some((Outcome::Filtered { reason }, Vec::new())),
                (Ok(()), Some(reason)) => Some((
                    Outcome::Discarded,
                    vec![Attempt {
                        request_id: String::new(),
                        at: Duration::ZERO,
                        answer: Answer::Error(format!("not sent: {reason}")),
                    }],
                )),
                (Ok(()), None) => None,
            };
            if let Some((outcome, attempts)) = settled {
                let done = report(message, outcome, attempts);
                on_report(&done);
                reports[index] = Some(done);
                continue;
            }
            let delivery = Delivery {
                client: client.clone(),
                endpoint: self.subscription.endpoint.clone(),
                intervals: self.subscription.strategy.intervals(&mut rng),
                time_scale: self.time_scale,
                slots: slots.clone(),
                rng: rng.fork(),
            };
            pushes.spawn(async move { (index, delivery.deliver(message).await) });
        }
        while let Some(finished) = pushes.join_next().await {
            // A push task only ends by returning: it never panics.
            if let Ok((index, report)) = finished {
                on_report(&report);
                reports[index] = Some(report);
            }
        }
        reports.into_iter().flatten().collect()
    }
}

/// Everything one message's pushes need.
struct Delivery {
    client: Client<HttpConnector, Full<Bytes>>,
    endpoint: Uri,
    intervals: Vec<Duration>,
    time_scale: f64,
    slots: Arc<Semaphore>,
    rng: fastrand::Rng,
}

impl Delivery {
    async fn deliver(mut self, message: Message) -> Report {
        let body = Bytes::from(match message.format {
            Format::Json => message.to_json_envelope().unwrap_or_default(),
            Format::Simplified => message.body.clone(),
        });
        let mut attempts = Vec::new();
        let mut at = Duration::ZERO;
        let mut waits = std::mem::take(&mut self.intervals).into_iter();
        loop {
            let request_id = self.rng.u64(1_000_000_000..9_000_000_000).to_string();
            let answer = self.push(&message, &request_id, body.clone()).await;
            let delivered = answer.is_success();
            attempts.push(Attempt {
                request_id,
                at,
                answer,
            });
            if delivered {
                return report(message, Outcome::Delivered, attempts);
            }
            let Some(wait) = waits.next() else {
                return report(message, Outcome::Discarded, attempts);
            };
            at += wait;
            tokio::time::sleep(wait.mul_f64(self.time_scale)).await;
        }
    }

    async fn push(&self, message: &Message, request_id: &str, body: Bytes) -> Answer {
        let Ok(_slot) = self.slots.acquire().await else {
            return Answer::Error("simulator shut down".into());
        };
        let tags = (!message.tags.is_empty()).then(|| message.tags.join(", "));
        let push = Push {
            message_id: &message.message_id,
            message_tag: tags.as_deref(),
            request_id,
            body,
        };
        send(&self.client, &self.endpoint, push).await
    }
}

/// One push as it goes on the wire.
struct Push<'a> {
    message_id: &'a str,
    message_tag: Option<&'a str>,
    request_id: &'a str,
    body: Bytes,
}

/// Sends one push again, as CMQ would: the same message id, tag header and body (the
/// whole request body, a JSON envelope included), a new random `x-cmq-request-id`, CMQ's
/// user agent and content type, and CMQ's 15 s wait for the answer. For replaying a
/// push that was received and kept.
pub async fn push_once(
    endpoint: &Uri,
    message_id: &str,
    message_tag: Option<&str>,
    body: Bytes,
) -> Answer {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let request_id = fastrand::u64(1_000_000_000..9_000_000_000).to_string();
    let push = Push {
        message_id,
        message_tag,
        request_id: &request_id,
        body,
    };
    send(&client, endpoint, push).await
}

async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    endpoint: &Uri,
    push: Push<'_>,
) -> Answer {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(endpoint.clone())
        .header(header::CONTENT_TYPE, "text/plain")
        .header(header::USER_AGENT, USER_AGENT)
        .header(HEADER_REQUEST_ID, push.request_id)
        .header(HEADER_MESSAGE_ID, push.message_id);
    if let Some(tag) = push.message_tag {
        request = request.header(HEADER_MESSAGE_TAG, tag);
    }
    let request = match request.body(Full::new(push.body)) {
        Ok(request) => request,
        Err(err) => return Answer::Error(format!("invalid request: {err}")),
    };
    let exchange = async {
        let response = client.request(request).await?;
        let status = response.status().as_u16();
        // Read the answer (up to a bound) so the connection can carry the next push.
        let _ = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BODY)
            .collect()
            .await;
        Ok::<_, hyper_util::client::legacy::Error>(status)
    };
    match tokio::time::timeout(ANSWER_TIMEOUT, exchange).await {
        Ok(Ok(status)) => Answer::Status(status),
        Ok(Err(err)) => Answer::Error(one_line(&err)),
        Err(_) => Answer::Error(format!("no answer within {ANSWER_TIMEOUT:?}")),
    }
}

fn report(message: Message, outcome: Outcome, attempts: Vec<Attempt>) -> Report {
    Report {
        msg_id: message.message_id,
        outcome,
        attempts,
    }
}

/// An error and its causes on one line.
fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}
