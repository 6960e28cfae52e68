//! The push simulator against real receivers: cmq-host with real guests, a scripted
//! endpoint that checks every header CMQ sends, and the CMQ documentation's Python sample.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cmq_host::ReceiverOptions;
use cmq_message::{ExpectedFormat, PushHeaders};
use cmq_simulator::{
    Answer, Filter, FilteredBy, Format, Outcome, Published, Report, RetryStrategy, Simulator,
    Subscription, Summary, generate,
};
use cmq_tests::{TestHost, log_lines_with};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn published(body: &str, tags: &[&str]) -> Published {
    Published {
        msg_body: body.into(),
        msg_tag: tags.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    }
}

/// How many pushes of message `id` the test host handled.
fn handled(id: &str) -> usize {
    log_lines_with(&format!("messaging.message.id=\"{id}\""))
        .into_iter()
        .filter(|l| l.contains("message handled"))
        .count()
}

fn statuses(report: &Report) -> Vec<Answer> {
    report.attempts.iter().map(|a| a.answer.clone()).collect()
}

async fn simulate(
    subscription: Subscription,
    messages: Vec<Published>,
) -> anyhow::Result<Vec<Report>> {
    let simulator = Simulator::new(subscription)?.time_scale(0.0001)?.seed(1);
    Ok(simulator.run(messages, |_| {}).await)
}

#[tokio::test]
async fn each_guest_decision_ends_as_cmq_would_end_it() -> anyhow::Result<()> {
    let host = TestHost::start("faulty", ReceiverOptions::default()).await?;
    let mut subscription = Subscription::new(host.url().parse()?);
    subscription.strategy = RetryStrategy::Backoff;
    let messages = vec![
        published("plain", &[]),
        published("retry me", &["retry"]),
        published("drop me", &["drop"]),
        published("crash", &["panic"]),
    ];
    let reports = simulate(subscription, messages).await?;
    let [plain, retry, drop, panic] = &reports[..] else {
        anyhow::bail!("expected 4 reports, got {reports:#?}");
    };
    assert_eq!(
        (plain.outcome, statuses(plain)),
        (Outcome::Delivered, vec![Answer::Status(200)])
    );
    assert_eq!(
        (drop.outcome, statuses(drop)),
        (Outcome::Delivered, vec![Answer::Status(200)])
    );
    assert_eq!(retry.outcome, Outcome::Discarded);
    assert_eq!(statuses(retry), vec![Answer::Status(503); 4]);
    assert_eq!(panic.outcome, Outcome::Discarded);
    assert_eq!(statuses(panic), vec![Answer::Status(500); 4]);
    // BACKOFF_RETRY: one interval, three times.
    let at: Vec<Duration> = retry.attempts.iter().map(|a| a.at).collect();
    assert_eq!(at[2] - at[1], at[1]);
    assert_eq!(at[3] - at[2], at[1]);
    // The host saw each attempt of the retried message as its own push.
    assert_eq!(handled(&retry.msg_id), 4);
    assert_eq!(
        Summary::of(&reports),
        Summary {
            delivered: 2,
            discarded: 2,
            filtered: 0,
            pushes: 10
        }
    );
    host.stop().await
}

#[tokio::test]
async fn exponential_decay_makes_177_attempts_over_a_day() -> anyhow::Result<()> {
    let host = TestHost::start("faulty", ReceiverOptions::default()).await?;
    let subscription = Subscription::new(host.url().parse()?);
    let simulator = Simulator::new(subscription)?.time_scale(0.00001)?;
    let reports = simulator
        .run(vec![published("x", &["retry"])], |_| {})
        .await;
    assert_eq!(reports[0].outcome, Outcome::Discarded);
    assert_eq!(reports[0].attempts.len(), 177);
    assert_eq!(reports[0].attempts[176].at, Duration::from_secs(86_015));
    host.stop().await
}

#[tokio::test]
async fn filtered_messages_never_reach_the_endpoint() -> anyhow::Result<()> {
    let host = TestHost::start("log_ack", ReceiverOptions::default()).await?;
    let mut subscription = Subscription::new(host.url().parse()?);
    subscription.filter = Filter {
        tags: vec!["orders".into()],
        binding_keys: vec!["shop.#.paid".into()],
    };
    let route = |body: &str, tags: &[&str], key: Option<&str>| Published {
        msg_id: Some(format!("filter-{body}")),
        routing_key: key.map(str::to_owned),
        ..published(body, tags)
    };
    let messages = vec![
        route("both", &["orders"], Some("shop.eu.paid")),
        route("no-tag", &[], Some("shop.paid")),
        route("other-tag", &["refunds"], Some("shop.paid")),
        route("other-key", &["orders"], Some("shop.eu.refunded")),
        route("no-key", &["orders"], None),
    ];
    let reports = simulate(subscription, messages).await?;
    let outcomes: Vec<(String, Outcome)> = reports
        .iter()
        .map(|r| (r.msg_id.clone(), r.outcome))
        .collect();
    let filtered = |reason| Outcome::Filtered { reason };
    assert_eq!(
        outcomes,
        [
            ("filter-both".into(), Outcome::Delivered),
            ("filter-no-tag".into(), filtered(FilteredBy::Tags)),
            ("filter-other-tag".into(), filtered(FilteredBy::Tags)),
            ("filter-other-key".into(), filtered(FilteredBy::BindingKeys)),
            ("filter-no-key".into(), filtered(FilteredBy::BindingKeys)),
        ]
    );
    assert_eq!(handled("filter-both"), 1);
    for id in ["no-tag", "other-tag", "other-key", "no-key"] {
        assert!(
            log_lines_with(&format!("filter-{id}")).is_empty(),
            "{id} was pushed"
        );
    }
    host.stop().await
}

/// One request as the scripted endpoint read it.
#[derive(Debug, Clone)]
struct Seen {
    request_line: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// An HTTP/1.1 endpoint that answers each message id's attempts with `script` in turn
/// (200 once the script runs out) and records every request.
async fn scripted_endpoint(script: Vec<u16>) -> anyhow::Result<(String, Arc<Mutex<Vec<Seen>>>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/cgi", listener.local_addr()?);
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (record, script) = (record.clone(), script.clone());
            tokio::spawn(async move {
                let mut stream = tokio::io::BufReader::new(stream);
                loop {
                    let mut request_line = String::new();
                    // A scripted server's reading: a broken or ended connection (0, or
                    // an error read as 0) ends it, as a real server's would. No check
                    // hides here: the test asserts on what the client was answered.
                    if stream.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let mut headers = HashMap::new();
                    loop {
                        let mut line = String::new();
                        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let line = line.trim_end();
                        if line.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':') {
                            headers.insert(name.to_ascii_lowercase(), value.trim().to_owned());
                        }
                    }
                    let length = headers
                        .get("content-length")
                        .and_then(|v| v.parse().ok())
                        // No Content-Length: no body, as HTTP/1.1 says for a request.
                        .unwrap_or(0);
                    let mut body = vec![0; length];
                    if stream.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let id = headers.get("x-cmq-message-id").cloned().unwrap_or_default();
                    let status = {
                        let mut seen = record.lock().unwrap_or_else(|p| p.into_inner());
                        let attempt = seen
                            .iter()
                            .filter(|s| s.headers.get("x-cmq-message-id") == Some(&id))
                            .count();
                        seen.push(Seen {
                            request_line: request_line.trim_end().to_owned(),
                            headers,
                            body,
                        });
                        script.get(attempt).copied().unwrap_or(200)
                    };
                    let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\n\r\nok");
                    if stream.get_mut().write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok((url, seen))
}

#[tokio::test]
async fn pushes_carry_cmqs_headers_and_bodies_in_both_formats() -> anyhow::Result<()> {
    let (url, seen) = scripted_endpoint(vec![503, 500]).await?;
    for format in [Format::Json, Format::Simplified] {
        let mut subscription = Subscription::new(url.parse()?);
        subscription.format = format;
        let message = Published {
            msg_id: Some(format!("{format:?}-1")),
            ..published("test message", &["a", "b"])
        };
        let reports = simulate(subscription, vec![message]).await?;
        assert_eq!(reports[0].outcome, Outcome::Delivered);
        assert_eq!(
            statuses(&reports[0]),
            [
                Answer::Status(503),
                Answer::Status(500),
                Answer::Status(200)
            ]
        );
        // EXPONENTIAL_DECAY_RETRY: 1 s, then 2 s.
        let at: Vec<u64> = reports[0].attempts.iter().map(|a| a.at.as_secs()).collect();
        assert_eq!(at, [0, 1, 3]);
    }
    let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(seen.len(), 6);
    for request in &seen {
        assert_eq!(request.request_line, "POST /cgi HTTP/1.1");
        let header = |name: &str| request.headers.get(name).map(String::as_str);
        assert_eq!(
            header("user-agent"),
            Some("Qcloud Notification Service Agent")
        );
        assert_eq!(header("content-type"), Some("text/plain"));
        assert_eq!(header("x-cmq-message-tag"), Some("a, b"));
        // What the host's own parser makes of it is the message that was published.
        let headers = PushHeaders {
            message_id: header("x-cmq-message-id").map(str::to_owned),
            request_id: header("x-cmq-request-id").map(str::to_owned),
            message_tag: header("x-cmq-message-tag").map(str::to_owned),
        };
        let message = cmq_message::parse(ExpectedFormat::Auto, &headers, &request.body)?;
        assert_eq!(message.body_str(), Some("test message"));
        assert_eq!(message.tags, ["a", "b"]);
        let json = header("x-cmq-message-id") == Some("Json-1");
        assert_eq!(message.format == Format::Json, json);
        if json {
            assert_eq!(message.topic_name.as_deref(), Some("MyTopic"));
            assert_eq!(message.message_id, "Json-1");
        }
    }
    // Every attempt of a message has its own request id.
    for id in ["Json-1", "Simplified-1"] {
        let mut request_ids: Vec<&String> = seen
            .iter()
            .filter(|s| s.headers.get("x-cmq-message-id").map(String::as_str) == Some(id))
            .filter_map(|s| s.headers.get("x-cmq-request-id"))
            .collect();
        request_ids.sort();
        request_ids.dedup();
        assert_eq!(request_ids.len(), 3, "{id}");
    }
    Ok(())
}

/// The CMQ documentation's Python sample, on a free port.
struct PythonSample {
    child: Child,
    url: String,
}

impl PythonSample {
    fn start() -> anyhow::Result<PythonSample> {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../bench/python/cmq_sample_receiver.py"
        );
        let mut child = Command::new("python3")
            .args([script, "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stderr"))?;
        let mut lines = BufReader::new(stderr).lines();
        let first = lines
            .next()
            .ok_or_else(|| anyhow::anyhow!("the sample said nothing"))??;
        let base = first
            .strip_prefix("listening on ")
            .ok_or_else(|| anyhow::anyhow!("unexpected first line {first:?}"))?;
        let url = format!("{base}/cgi");
        // Keep reading its per-request log so that the pipe never fills.
        std::thread::spawn(move || lines.for_each(drop));
        Ok(PythonSample { child, url })
    }
}

impl Drop for PythonSample {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_documentations_python_sample_acknowledges_every_push() -> anyhow::Result<()> {
    let sample = PythonSample::start()?;
    for format in [Format::Json, Format::Simplified] {
        let mut subscription = Subscription::new(sample.url.parse()?);
        subscription.format = format;
        let reports = simulate(subscription, generate(20, None, &["a".into()], None)).await?;
        let summary = Summary::of(&reports);
        assert_eq!(
            summary,
            Summary {
                delivered: 20,
                discarded: 0,
                filtered: 0,
                pushes: 20
            },
            "{format:?}: {reports:#?}"
        );
    }
    Ok(())
}
