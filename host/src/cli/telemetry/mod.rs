//! Traces, off unless the standard OpenTelemetry variables ask for them: with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set, and
//! neither `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none`, every push's spans
//! ([`cmq_host::TRACE_TARGET`]) go to that collector over OTLP, `http/protobuf` (the
//! default) or `grpc` as `OTEL_EXPORTER_OTLP_PROTOCOL` says. `OTEL_TRACES_SAMPLER` and
//! `OTEL_TRACES_SAMPLER_ARG` choose which pushes are traced
//! ([`cmq_host::trace::Sampler`]; default `parentbased_always_on`).
//!
//! Export never holds up a push. A finished span goes into a bounded queue
//! (`OTEL_BSP_MAX_QUEUE_SIZE`, 2048) that a thread of its own, `cmq-traces`, empties in
//! batches (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, 512, at least every
//! `OTEL_BSP_SCHEDULE_DELAY`, 5000 ms). A full queue drops the span and an export the
//! collector refuses or does not answer drops its batch; both are counted
//! (`cmq_trace_spans_dropped_total`). Once an export has failed or the queue was full,
//! pushes are no longer traced at all ([`export::Export::admits`]) until a batch is taken: one
//! is, every schedule delay, to find out whether the collector is back; the others are
//! counted (`cmq_traces_skipped_total`) and cost what they cost with traces off.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use cmq_host::trace as trace_export;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer};

pub(crate) mod export;

use export::{Export, Processor};

/// The tracer provider, while traces are on; [`Traces::shutdown`] sends what waits.
pub(crate) struct Traces {
    provider: SdkTracerProvider,
    pub(crate) tracer: Tracer,
    /// Whether the collector takes spans, which decides whether a push is traced.
    pub(crate) export: Arc<Export>,
}

/// The protocols `OTEL_EXPORTER_OTLP_PROTOCOL` may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Protocol {
    HttpProtobuf,
    Grpc,
}

/// The batching the `OTEL_BSP_*` variables set.
#[derive(Clone, Copy, Debug)]
pub(super) struct Batching {
    pub(super) queue: usize,
    pub(super) batch: usize,
    pub(super) delay: Duration,
}

impl Traces {
    /// The traces the environment asks for, if any.
    pub(crate) fn from_env() -> anyhow::Result<Option<Traces>> {
        let set = |name: &str| std::env::var(name).is_ok_and(|value| !value.trim().is_empty());
        let asked = set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        let disabled = std::env::var("OTEL_SDK_DISABLED")
            .is_ok_and(|v| v.eq_ignore_ascii_case("true"))
            || std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.eq_ignore_ascii_case("none"));
        if !asked || disabled {
            return Ok(None);
        }
        let protocol = protocol_from_env()?;
        let sampler = trace_export::Sampler::from_names(
            std::env::var("OTEL_TRACES_SAMPLER").ok().as_deref(),
            std::env::var("OTEL_TRACES_SAMPLER_ARG").ok().as_deref(),
        )
        .map_err(anyhow::Error::msg)?;
        let batching = Batching {
            queue: env_number("OTEL_BSP_MAX_QUEUE_SIZE", 2048)?.max(1) as usize,
            batch: env_number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)?.max(1) as usize,
            delay: Duration::from_millis(env_number("OTEL_BSP_SCHEDULE_DELAY", 5000)?.max(1)),
        };
        let export = Arc::new(Export::new(batching.delay));
        let processor = Processor::start(protocol, batching, export.clone())?;
        // The sampler decides before a push's spans are made; the provider keeps all it
        // is given (its own default would read OTEL_TRACES_SAMPLER a second time).
        trace_export::sample_with(sampler);
        let provider = SdkTracerProvider::builder()
            .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOn)
            .with_span_processor(processor)
            .with_resource(Resource::builder().with_service_name("cmq-host").build())
            .build();
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let tracer = provider.tracer("cmq-host");
        Ok(Some(Traces {
            provider,
            tracer,
            export,
        }))
    }

    /// Sends the spans still waiting, and says how many could not be sent.
    pub(crate) fn shutdown(self) {
        if let Err(err) = self.provider.shutdown() {
            tracing::warn!("traces not all sent at exit: {err}");
        }
        let (dropped, skipped) = trace_export::totals();
        if dropped > 0 || skipped > 0 {
            tracing::warn!(
                spans = dropped,
                pushes_untraced = skipped,
                "spans dropped: the collector did not take them"
            );
        }
    }
}

/// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, else `OTEL_EXPORTER_OTLP_PROTOCOL`, else
/// `http/protobuf`.
fn protocol_from_env() -> anyhow::Result<Protocol> {
    for name in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Ok(protocol) = std::env::var(name) {
            return match protocol.trim() {
                "http/protobuf" => Ok(Protocol::HttpProtobuf),
                "grpc" => Ok(Protocol::Grpc),
                other => anyhow::bail!(
                    "{name}={other}: cmq-host sends traces over `http/protobuf` or `grpc`"
                ),
            };
        }
    }
    Ok(Protocol::HttpProtobuf)
}

/// A whole number from the environment, `default` when unset.
fn env_number(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .with_context(|| format!("{name}={value}: not a whole number")),
        Err(_) => Ok(default),
    }
}
