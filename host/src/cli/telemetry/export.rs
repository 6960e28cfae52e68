//! Where finished spans go: a bounded queue, emptied in batches by the `cmq-traces`
//! thread into the OTLP exporter, and [`Export`], which stops tracing pushes while the
//! collector does not take them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cmq_host::trace::{self as trace_export, DropReason};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _, SpanProcessor};
use tokio::sync::mpsc;

use super::{Batching, Protocol};

/// Whether the collector takes spans: what decides whether a push is traced.
#[derive(Debug)]
pub(crate) struct Export {
    /// The last export failed.
    down: AtomicBool,
    /// While down, the next instant (milliseconds after `started`) a push is traced to
    /// find out whether the collector is back.
    next_probe_ms: AtomicU64,
    started: Instant,
    probe_every: Duration,
}

impl Export {
    pub(super) fn new(probe_every: Duration) -> Export {
        Export {
            down: AtomicBool::new(false),
            next_probe_ms: AtomicU64::new(0),
            started: Instant::now(),
            probe_every,
        }
    }

    /// Whether a push starting now is traced: always while the collector takes spans;
    /// once a schedule delay while it does not (the others are counted as skipped).
    pub(crate) fn admits(&self) -> bool {
        if !self.down.load(Ordering::Relaxed) {
            return true;
        }
        let now = self.started.elapsed().as_millis() as u64;
        let next = self.next_probe_ms.load(Ordering::Relaxed);
        let probe = now >= next
            && self
                .next_probe_ms
                .compare_exchange(
                    next,
                    now + self.probe_every.as_millis() as u64,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok();
        if !probe {
            trace_export::skipped();
        }
        probe
    }

    /// An export's result: a batch taken resumes tracing; one refused pauses it.
    fn exported(&self, ok: bool) {
        if ok {
            self.down.store(false, Ordering::Relaxed);
        } else if self.pause() {
            tracing::warn!(
                "the trace collector does not take spans: pushes go untraced until it does"
            );
        }
    }

    /// Pauses tracing until an export succeeds; whether it was running.
    fn pause(&self) -> bool {
        if self.down.swap(true, Ordering::Relaxed) {
            return false;
        }
        let now = self.started.elapsed().as_millis() as u64;
        self.next_probe_ms
            .store(now + self.probe_every.as_millis() as u64, Ordering::Relaxed);
        true
    }
}

/// What the export thread is asked besides spans; it answers once every span queued
/// before the request was exported.
enum Request {
    Flush(SyncSender<OTelSdkResult>),
    /// Take no more spans, and end once the last ones are sent.
    Shutdown(SyncSender<OTelSdkResult>),
}

/// The span processor: a bounded queue to the export thread.
#[derive(Debug)]
pub(super) struct Processor {
    spans: mpsc::Sender<SpanData>,
    requests: mpsc::UnboundedSender<Request>,
    export: Arc<Export>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Request::Flush(_) => "Flush",
            Request::Shutdown(_) => "Shutdown",
        })
    }
}

impl Processor {
    /// Starts the export thread, with its exporter made on it (gRPC's channel needs
    /// the thread's runtime).
    pub(super) fn start(
        protocol: Protocol,
        batching: Batching,
        export: Arc<Export>,
    ) -> anyhow::Result<Processor> {
        let (spans, queue) = mpsc::channel(batching.queue);
        let (requests, asked) = mpsc::unbounded_channel();
        let thread_export = export.clone();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("cmq-traces".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(err) => {
                        let _ = ready_tx.send(Err(anyhow::Error::new(err)));
                        return;
                    }
                };
                let exporter = {
                    let _entered = runtime.enter();
                    exporter(protocol)
                };
                match exporter {
                    Ok(exporter) => {
                        let _ = ready_tx.send(Ok(()));
                        runtime.block_on(export_loop(
                            exporter,
                            queue,
                            asked,
                            batching,
                            &thread_export,
                        ));
                    }
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                    }
                }
            })
            .context("starting the trace export thread")?;
        ready
            .recv()
            .context("the trace export thread ended at its start")??;
        Ok(Processor {
            spans,
            requests,
            export,
        })
    }
}

/// The OTLP exporter for `protocol`, its endpoint, headers and timeout from the
/// standard variables.
fn exporter(protocol: Protocol) -> anyhow::Result<opentelemetry_otlp::SpanExporter> {
    let builder = opentelemetry_otlp::SpanExporter::builder();
    let built = match protocol {
        Protocol::HttpProtobuf => builder
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build(),
        Protocol::Grpc => builder.with_tonic().build(),
    };
    built.context("setting up the OTLP trace exporter")
}

/// Gathers spans into batches and exports them, until asked to shut down.
async fn export_loop(
    exporter: opentelemetry_otlp::SpanExporter,
    mut queue: mpsc::Receiver<SpanData>,
    mut requests: mpsc::UnboundedReceiver<Request>,
    batching: Batching,
    export: &Export,
) {
    let mut batch = Vec::with_capacity(batching.batch);
    loop {
        let tick = tokio::time::sleep(batching.delay);
        tokio::pin!(tick);
        let mut asked = None;
        // Fill a batch, or wait for the schedule delay, or a request.
        while batch.len() < batching.batch {
            let room = batching.batch - batch.len();
            tokio::select! {
                _ = queue.recv_many(&mut batch, room) => {}
                () = &mut tick => break,
                request = requests.recv() => {
                    // The processor dropped: as good as shut down.
                    asked = Some(request);
                    break;
                }
            }
        }
        let mut result = send(&exporter, &mut batch, export).await;
        let Some(request) = asked else {
            continue;
        };
        if matches!(request, Some(Request::Shutdown(_)) | None) {
            queue.close();
        }
        // Everything queued before the request, in batches.
        while let Ok(span) = queue.try_recv() {
            batch.push(span);
            if batch.len() == batching.batch {
                result = result.and(send(&exporter, &mut batch, export).await);
            }
        }
        result = result.and(send(&exporter, &mut batch, export).await);
        match request {
            Some(Request::Flush(answer)) => {
                let _ = answer.send(result);
            }
            Some(Request::Shutdown(answer)) => {
                let _ = answer.send(result.and(exporter.shutdown()));
                return;
            }
            None => {
                let _ = exporter.shutdown();
                return;
            }
        }
    }
}

/// Exports `batch` (emptying it), counting its spans as dropped when that fails.
async fn send(
    exporter: &opentelemetry_otlp::SpanExporter,
    batch: &mut Vec<SpanData>,
    export: &Export,
) -> OTelSdkResult {
    if batch.is_empty() {
        return Ok(());
    }
    let spans = batch.len() as u64;
    let sent = exporter.export(std::mem::take(batch)).await;
    export.exported(sent.is_ok());
    if sent.is_err() {
        trace_export::dropped(DropReason::ExportFailed, spans);
    }
    sent
}

impl SpanProcessor for Processor {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        if self.spans.try_send(span).is_err() {
            trace_export::dropped(DropReason::QueueFull, 1);
            // The collector takes spans slower than pushes make them (or not at all,
            // and the export waits out its retries): stop making them until it has
            // taken a batch.
            self.export.pause();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.ask(Request::Flush, Duration::from_secs(30))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.ask(Request::Shutdown, timeout)
    }
}

impl Processor {
    /// Asks the export thread `request` and waits for its answer, `timeout` at most.
    fn ask(
        &self,
        request: fn(SyncSender<OTelSdkResult>) -> Request,
        timeout: Duration,
    ) -> OTelSdkResult {
        let (answer, answered) = std::sync::mpsc::sync_channel(1);
        self.requests
            .send(request(answer))
            .map_err(|_| OTelSdkError::AlreadyShutdown)?;
        match answered.recv_timeout(timeout) {
            Ok(result) => result,
            Err(RecvTimeoutError::Disconnected) => Err(OTelSdkError::AlreadyShutdown),
            Err(RecvTimeoutError::Timeout) => Err(OTelSdkError::Timeout(timeout)),
        }
    }
}
