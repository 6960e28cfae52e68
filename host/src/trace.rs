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

use http::HeaderMap;
use opentelemetry::propagation::Extractor;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The `tracing` target of every span a push makes; log lines never carry it.
pub const TARGET: &str = "cmq_host::trace";

/// The span of one push, its parent the push's `traceparent` when it has one.
pub(crate) fn push(headers: &HeaderMap) -> Span {
    let span = tracing::trace_span!(
        target: TARGET,
        "cmq process",
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
