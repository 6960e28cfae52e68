//! OpenTelemetry traces from a real `cmq-host`, received by an OTLP endpoint in the test
//! (over HTTP, and over gRPC: HTTP/2 with gRPC's framing) that decodes the real protobuf
//! payloads: one trace per push, its `cmq process` span with the messaging attributes
//! and a child per stage, a `traceparent` continued; and a collector that is down costs
//! the pushes nothing but untraced pushes and dropped spans, counted, until it is back.
//!
//! A test of the `cmq-host` package, so that cargo builds the binary for it.

mod binary;

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use binary::*;
use bytes::{Buf as _, Bytes};
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Frame;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;

/// The spans an OTLP/HTTP endpoint on `127.0.0.1` received, decoded.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
}

/// The protocols of `OTEL_EXPORTER_OTLP_PROTOCOL`.
#[derive(Clone, Copy, Debug)]
enum Protocol {
    Http,
    Grpc,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Http => "http/protobuf",
            Protocol::Grpc => "grpc",
        }
    }
}

impl Collector {
    /// Listens on `address` (port 0: a free one) with `protocol`, on a thread of its
    /// own; returns its endpoint URL.
    fn start(&self, protocol: Protocol, address: SocketAddr) -> anyhow::Result<String> {
        let listener = TcpListener::bind(address)?;
        let url = format!("http://{}", listener.local_addr()?);
        let spans = self.spans.clone();
        if let Protocol::Grpc = protocol {
            listener.set_nonblocking(true)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?;
            std::thread::spawn(move || runtime.block_on(serve_grpc(listener, spans)));
            return Ok(url);
        }
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
            // The exporter closed its connection: this collector's connection ends; the
            // spans it kept are what the tests assert on.
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
        // No Content-Length: no body (the decode below then fails loudly).
        let mut body = vec![0; length.unwrap_or(0)];
        reader.read_exact(&mut body)?;
        keep(spans, ExportTraceServiceRequest::decode(body.as_slice())?);
        writer.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")?;
    }
}

/// Answers gRPC's `TraceService/Export` calls, keeping their spans.
async fn serve_grpc(listener: TcpListener, spans: Arc<Mutex<Vec<Span>>>) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
    while let Ok((stream, _)) = listener.accept().await {
        let spans = spans.clone();
        let service = hyper::service::service_fn(move |request| {
            let spans = spans.clone();
            async move { Ok::<_, Infallible>(grpc_export(request, &spans).await) }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

type GrpcBody =
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

/// One gRPC call: a length-prefixed `ExportTraceServiceRequest` in, an empty response
/// and `grpc-status: 0` out (12, unimplemented, for any other method).
async fn grpc_export(
    request: hyper::Request<hyper::body::Incoming>,
    spans: &Mutex<Vec<Span>>,
) -> hyper::Response<GrpcBody> {
    let export = request.uri().path()
        == "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        && request
            .headers()
            .get("content-type")
            .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"));
    let mut status = if export { "0" } else { "12" };
    let mut reply = Vec::new();
    if export {
        let mut body = match request.into_body().collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) => Bytes::new(),
        };
        // One message: a compression flag (0: none), a 4-byte big-endian length, the
        // message.
        let decoded = (body.len() >= 5 && body.get_u8() == 0)
            .then(|| body.get_u32() as usize)
            .filter(|length| *length == body.len())
            .and_then(|_| ExportTraceServiceRequest::decode(body).ok());
        match decoded {
            Some(request) => {
                keep(spans, request);
                let message = ExportTraceServiceResponse::default().encode_to_vec();
                reply.push(0);
                reply.extend((message.len() as u32).to_be_bytes());
                reply.extend(message);
            }
            None => status = "3",
        }
    }
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static(status));
    let frames = vec![
        Ok(Frame::data(Bytes::from(reply))),
        Ok(Frame::trailers(trailers)),
    ];
    hyper::Response::builder()
        .header("content-type", "application/grpc")
        .body(StreamBody::new(futures_util::stream::iter(frames)))
        .expect("a gRPC response")
}

/// Keeps the spans of one export request.
fn keep(spans: &Mutex<Vec<Span>>, request: ExportTraceServiceRequest) {
    let received = request
        .resource_spans
        .into_iter()
        .flat_map(|resource| resource.scope_spans)
        .flat_map(|scope| scope.spans);
    spans
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(received);
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

/// The `cmq process` span of message `id`, once the collector has it and its `stages`
/// children.
fn process_span(
    collector: &Collector,
    id: &str,
    stages: usize,
) -> anyhow::Result<(Span, Vec<Span>)> {
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
            if children.len() >= stages {
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
    traced_pushes(Protocol::Http).await
}

#[tokio::test]
async fn the_same_traces_arrive_over_grpc() -> anyhow::Result<()> {
    traced_pushes(Protocol::Grpc).await
}

/// Two pushes, one with a `traceparent`, each found as its trace at a collector that
/// speaks `protocol`.
async fn traced_pushes(protocol: Protocol) -> anyhow::Result<()> {
    let collector = Collector::default();
    let endpoint = collector.start(protocol, "127.0.0.1:0".parse()?)?;
    let mut command = cmq_host();
    command
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.name())
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
        move || process_span(&collector, &plain, 5)
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
        move || process_span(&collector, &continued, 5)
    })
    .await??;
    assert_eq!(hex(&process.trace_id), trace_id);
    assert_eq!(hex(&process.parent_span_id), parent_id);
    Ok(())
}

#[tokio::test]
async fn a_collector_that_is_down_costs_the_pushes_nothing_until_it_is_back() -> anyhow::Result<()>
{
    // A port nothing listens on, for now.
    let address = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut command = cmq_host();
    command
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{address}"))
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .args(["serve", "--no-state", "--listen", "127.0.0.1:0"])
        .args(["--admin-listen", "127.0.0.1:0"])
        .arg(guest("faulty"));
    let (host, lines, url) = spawn_listening(&mut command)?;
    let admin = admin_url(&lines);
    let client = reqwest::Client::new();
    // Pushes before the first export fails (their spans are dropped with it), and after
    // (they are not traced).
    for n in 0..60 {
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
        if n == 9 {
            wait_for(&lines, "the trace collector does not take spans");
        }
    }
    let scrape = binary::scrape(&client, &admin).await?;
    let dropped = sample(
        &scrape,
        "cmq_trace_spans_dropped_total",
        &[("reason", "export_failed")],
    );
    let skipped = sample(&scrape, "cmq_traces_skipped_total", &[]);
    assert!(dropped >= 1.0, "dropped {dropped}");
    // Once the first export failed, every push but one each 100 ms (a probe).
    assert!(skipped >= 25.0, "skipped {skipped}");

    // The collector comes up: within a few schedule delays, pushes are traced again.
    let collector = Collector::default();
    collector.start(Protocol::Http, address)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = cmq_push(&client, &url, &format!("back-{}", next_number()), "")
            .send()
            .await?;
        assert_eq!(answer.status(), 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
        if collector
            .spans()
            .iter()
            .any(|span| span.name == "cmq process")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no trace 30 s after the collector came back"
        );
    }
    // Once it is back, every push is: the next one's trace arrives whole.
    let next = format!("back-{}", next_number());
    let answer = cmq_push(&client, &url, &next, "").send().await?;
    assert_eq!(answer.status(), 200);
    let (_, children) = tokio::task::spawn_blocking({
        let collector = collector.clone();
        move || process_span(&collector, &next, 3)
    })
    .await??;
    assert_eq!(
        children.len(),
        3,
        "parse, instantiate, guest call (no store)"
    );
    signal(&host, "TERM")?;
    let exit = wait_for(&lines, "spans dropped");
    assert!(exit.contains("pushes_untraced="), "{exit}");
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[tokio::test]
async fn the_sampler_decides_which_pushes_are_traced() -> anyhow::Result<()> {
    let collector = Collector::default();
    let endpoint = collector.start(Protocol::Http, "127.0.0.1:0".parse()?)?;
    // A ratio of 0 traces no push of its own; parent-based, it follows a sampled
    // `traceparent` and leaves out an unsampled one.
    let mut command = cmq_host();
    command
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
        .env("OTEL_TRACES_SAMPLER_ARG", "0")
        .args(["serve", "--no-state", "--listen", "127.0.0.1:0"])
        .arg(guest("faulty"));
    let (_host, _lines, url) = spawn_listening(&mut command)?;
    let client = reqwest::Client::new();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut ids = Vec::new();
    for flags in [None, Some("00"), Some("01")] {
        let id = format!("sampled-{}", next_number());
        let mut push = cmq_push(&client, &url, &id, "");
        if let Some(flags) = flags {
            push = push.header(
                "traceparent",
                format!("00-{trace_id}-00f067aa0ba902b7-{flags}"),
            );
        }
        assert_eq!(push.send().await?.status(), 200);
        ids.push(id);
    }
    let sampled = ids[2].clone();
    tokio::task::spawn_blocking({
        let collector = collector.clone();
        move || process_span(&collector, &sampled, 3)
    })
    .await??;
    // The traced push's spans arrived; by then the others' would have too.
    std::thread::sleep(Duration::from_millis(300));
    let traced: Vec<String> = collector
        .spans()
        .iter()
        .filter(|span| span.name == "cmq process")
        .filter_map(|span| attribute(span, "messaging.message.id"))
        .collect();
    assert_eq!(traced, [ids[2].clone()]);
    // A sampler the specification does not name stops the start.
    let output = cmq_host()
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_TRACES_SAMPLER", "sometimes")
        .args(["serve", "--no-state", "--listen", "127.0.0.1:0"])
        .arg(guest("faulty"))
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("OTEL_TRACES_SAMPLER=sometimes"),
        "{stderr}"
    );
    Ok(())
}
