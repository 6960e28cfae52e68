//! The spans a push makes, for OpenTelemetry traces: one `cmq process` span per push,
//! named and attributed as the messaging conventions say (`messaging.system` `cmq`,
//! `messaging.operation.type` `process`, the message id, topic and subscription), with a
//! child for each stage that takes time: parsing, each store operation, instantiating
//! the guest and calling it. A W3C `traceparent` on the push continues its trace.
//!
//! They are `tracing` spans at level TRACE under [`TARGET`]: the binary turns them into
//! OpenTelemetry spans only when `OTEL_EXPORTER_OTLP_ENDPOINT` asks for traces; otherwise
//! the log's filter (`info` unless `RUST_LOG` says more) turns their call sites off once,
//! and a push pays nothing for them (measured: BENCHMARKS.md).

use std::sync::LazyLock;

use http::HeaderMap;
use opentelemetry::propagation::Extractor;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The `tracing` target of every span a push makes; log lines never carry it.
pub const TARGET: &str = "cmq_host::trace";

/// The name of a push's span, the root of its stages' spans.
pub const PUSH_SPAN: &str = "cmq process";

/// The span of one push, its parent the push's `traceparent` when it has one.
pub(crate) fn push(headers: &HeaderMap) -> Span {
    let span = tracing::trace_span!(
        target: TARGET,
        PUSH_SPAN,
        otel.kind = "consumer",
        messaging.system = "cmq",
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.message.id = Empty,
        messaging.destination.name = Empty,
        messaging.destination.subscription.name = Empty,
        messaging.cmq.request_id = Empty,
        messaging.cmq.route = Empty,
        messaging.cmq.attempt = Empty,
        messaging.cmq.decision = Empty,
        http.response.status_code = Empty,
    );
    if !span.is_disabled() {
        let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&Headers(headers))
        });
        // A push without a traceparent starts a trace of its own.
        let _ = span.set_parent(parent);
    }
    span
}

/// A child span of the current push for `stage`: `parse`, `store claim`, `store settle`,
/// `store journal`, `instantiate` or `guest call`.
pub(crate) fn stage(stage: &'static str) -> Span {
    tracing::trace_span!(target: TARGET, "stage", otel.name = stage)
}

/// A push's headers, as a propagator reads them.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Why spans never reached the collector, the label of `cmq_trace_spans_dropped_total`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum DropReason {
    /// The export queue was full: the collector takes spans slower than pushes make them.
    QueueFull,
    /// The collector refused the batch or did not answer.
    ExportFailed,
}

impl DropReason {
    fn label(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::ExportFailed => "export_failed",
        }
    }
}

/// Spans dropped, by reason; and pushes left untraced because the collector was down.
/// Process-wide, as the tracer is: every receiver's `/metrics` shows them.
pub(crate) static SPANS_DROPPED: LazyLock<Family<ReasonLabel, Counter>> =
    LazyLock::new(Family::default);
pub(crate) static PUSHES_UNTRACED: LazyLock<Counter> = LazyLock::new(Counter::default);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabel {
    reason: &'static str,
}

/// Counts `spans` that will never reach the collector.
pub fn dropped(reason: DropReason, spans: u64) {
    SPANS_DROPPED
        .get_or_create(&ReasonLabel {
            reason: reason.label(),
        })
        .inc_by(spans);
}

/// Counts a push not traced because the collector was down.
pub fn skipped() {
    PUSHES_UNTRACED.inc();
}

/// Spans dropped and pushes untraced so far.
pub fn totals() -> (u64, u64) {
    let dropped = [DropReason::QueueFull, DropReason::ExportFailed]
        .into_iter()
        .map(|reason| {
            SPANS_DROPPED
                .get_or_create(&ReasonLabel {
                    reason: reason.label(),
                })
                .get()
        })
        .sum();
    (dropped, PUSHES_UNTRACED.get())
}
