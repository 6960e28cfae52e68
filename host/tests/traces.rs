//! OpenTelemetry traces from a real `cmq-host`, received by an OTLP/HTTP endpoint in the
//! test that decodes the real protobuf payloads: one trace per push, its `cmq process`
//! span with the messaging attributes and a child per stage, a `traceparent` continued;
//! and a collector that is down costs the pushes nothing.
//!
//! A test of the `cmq-host` package, so that cargo builds the binary for it.

mod binary;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use binary::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;

/// The spans an OTLP/HTTP endpoint on `127.0.0.1` received, decoded.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
}

impl Collector {
    /// Listens on a free port, on a thread of its own; returns its endpoint URL.
    fn start(&self) -> anyhow::Result<String> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        let spans = self.spans.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let spans = spans.clone();
                std::thread::spawn(move || {
                    let _ = serve_connection(stream, &spans);
                });
            }
        });
        Ok(url)
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Answers every OTLP/HTTP request on one connection `200`, keeping their spans.
fn serve_connection(stream: std::net::TcpStream, spans: &Mutex<Vec<Span>>) -> anyhow::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut length = None;
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse::<usize>().ok();
            }
        }
        let mut body = vec![0; length.unwrap_or(0)];
        reader.read_exact(&mut body)?;
        let request = ExportTraceServiceRequest::decode(body.as_slice())?;
        let received = request
            .resource_spans
            .into_iter()
            .flat_map(|resource| resource.scope_spans)
            .flat_map(|scope| scope.spans);
        spans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(received);
        writer.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")?;
    }
}

/// A span's string or integer attribute, as text.
fn attribute(span: &Span, key: &str) -> Option<String> {
    let value = span
        .attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?;
    match value.value.as_ref()? {
        Value::StringValue(text) => Some(text.clone()),
        Value::IntValue(number) => Some(number.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// The `cmq process` span of message `id`, once the collector has it and its stages.
fn process_span(collector: &Collector, id: &str) -> anyhow::Result<(Span, Vec<Span>)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let spans = collector.spans();
        if let Some(process) = spans.iter().find(|span| {
            span.name == "cmq process"
                && attribute(span, "messaging.message.id").as_deref() == Some(id)
        }) {
            let children: Vec<Span> = spans
                .iter()
                .filter(|span| span.parent_span_id == process.span_id)
                .cloned()
                .collect();
            if children.len() >= 5 {
                return Ok((process.clone(), children));
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no trace of {id} within 30 s: {:#?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn each_push_is_one_trace_with_its_stages_and_a_traceparent_is_continued()
-> anyhow::Result<()> {
    let collector = Collector::default();
    let endpoint = collector.start()?;
    let mut command = cmq_host();
    command
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg(guest("faulty"));
    let (_host, _lines, url) = spawn_listening(&mut command)?;
    let client = reqwest::Client::new();
    let plain = format!("traced-{}", next_number());
    let answer = cmq_push(&client, &url, &plain, "").send().await?;
    assert_eq!(answer.status(), 200);
    let continued = format!("traced-{}", next_number());
    let (trace_id, parent_id) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let answer = cmq_push(&client, &url, &continued, "")
        .header("traceparent", format!("00-{trace_id}-{parent_id}-01"))
        .send()
        .await?;
    assert_eq!(answer.status(), 200);

    let (process, children) = tokio::task::spawn_blocking({
        let collector = collector.clone();
        move || process_span(&collector, &plain)
    })
    .await??;
    assert_eq!(process.kind, SpanKind::Consumer as i32);
    for (key, value) in [
        ("messaging.system", "cmq"),
        ("messaging.operation.type", "process"),
        ("messaging.destination.name", "MyTopic"),
        ("messaging.destination.subscription.name", "mysubscription"),
        ("messaging.cmq.route", "default"),
        ("messaging.cmq.attempt", "1"),
        ("messaging.cmq.decision", "ack"),
        ("http.response.status_code", "200"),
    ] {
        assert_eq!(attribute(&process, key).as_deref(), Some(value), "{key}");
    }
    let mut stages: Vec<&str> = children.iter().map(|span| span.name.as_str()).collect();
    stages.sort_unstable();
    assert_eq!(
        stages,
        [
            "guest call",
            "instantiate",
            "parse",
            "store claim",
            "store settle"
        ]
    );
    for child in &children {
        assert_eq!(child.trace_id, process.trace_id, "{}", child.name);
    }

    let (process, _) = tokio::task::spawn_blocking({
        let collector = collector.clone();
        move || process_span(&collector, &continued)
    })
    .await??;
    assert_eq!(hex(&process.trace_id), trace_id);
    assert_eq!(hex(&process.parent_span_id), parent_id);
    Ok(())
}

#[tokio::test]
async fn a_collector_that_is_down_costs_the_pushes_nothing() -> anyhow::Result<()> {
    // A port nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut command = cmq_host();
    command
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{closed}"))
        .env("OTEL_BSP_SCHEDULE_DELAY", "50")
        .args(["serve", "--no-state", "--listen", "127.0.0.1:0"])
        .arg(guest("faulty"));
    let (host, lines, url) = spawn_listening(&mut command)?;
    let client = reqwest::Client::new();
    for n in 0..50 {
        let started = Instant::now();
        let answer = cmq_push(&client, &url, &format!("untraced-{n}"), "")
            .send()
            .await?;
        assert_eq!(answer.status(), 200);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "push {n} took {:?} with the collector down",
            started.elapsed()
        );
        if n % 10 == 9 {
            // Let the batch processor try, and fail, in between.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    signal(&host, "TERM")?;
    let dropped = wait_for(&lines, "spans dropped");
    assert!(dropped.contains("spans="), "{dropped}");
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
