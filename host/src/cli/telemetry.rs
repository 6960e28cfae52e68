//! Traces, off unless the standard OpenTelemetry variables ask for them: with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set, and
//! neither `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none`, every push's spans
//! ([`cmq_host::TRACE_TARGET`]) go to that collector over OTLP/HTTP (protobuf).
//!
//! Export never holds up a push: spans wait in the batch processor's bounded queue
//! (`OTEL_BSP_MAX_QUEUE_SIZE`, 2048) and a thread of its own sends them; a full queue or
//! a collector that does not answer drops spans, and the spans whose export failed are
//! counted in the log at exit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter, Tracer};

/// The tracer provider, while traces are on; [`Traces::shutdown`] sends what waits.
pub(crate) struct Traces {
    provider: SdkTracerProvider,
    pub(crate) tracer: Tracer,
    dropped: Arc<AtomicU64>,
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
        for name in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Ok(protocol) = std::env::var(name) {
                anyhow::ensure!(
                    protocol == "http/protobuf",
                    "{name}={protocol}: cmq-host sends traces over http/protobuf only"
                );
            }
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .context("setting up the OTLP trace exporter")?;
        let dropped = Arc::new(AtomicU64::new(0));
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(Counting {
                exporter,
                dropped: dropped.clone(),
            })
            .with_resource(Resource::builder().with_service_name("cmq-host").build())
            .build();
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let tracer = provider.tracer("cmq-host");
        Ok(Some(Traces {
            provider,
            tracer,
            dropped,
        }))
    }

    /// Sends the spans still waiting, and says how many could not be sent.
    pub(crate) fn shutdown(self) {
        if let Err(err) = self.provider.shutdown() {
            tracing::warn!("traces not all sent at exit: {err}");
        }
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                spans = dropped,
                "spans dropped: the collector did not take them"
            );
        }
    }
}

/// The OTLP exporter, counting the spans of every batch it could not send.
#[derive(Debug)]
struct Counting {
    exporter: opentelemetry_otlp::SpanExporter,
    dropped: Arc<AtomicU64>,
}

impl SpanExporter for Counting {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len() as u64;
        let sent = self.exporter.export(batch).await;
        if sent.is_err() {
            self.dropped.fetch_add(spans, Ordering::Relaxed);
        }
        sent
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.exporter.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.exporter.set_resource(resource);
    }
}
