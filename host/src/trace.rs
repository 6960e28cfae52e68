//! The spans a push makes, for OpenTelemetry traces: one `cmq process` span per push,
//! named and attributed as the messaging conventions say (`messaging.system` `cmq`,
//! `messaging.operation.type` `process`, the message id, topic and subscription), with a
//! child for each stage that takes time: parsing, each store operation, instantiating
//! the guest and calling it. A W3C `traceparent` on the push continues its trace.
//!
//! They are `tracing` spans at level TRACE under [`TARGET`]: the binary turns them into
//! OpenTelemetry spans only when `OTEL_EXPORTER_OTLP_ENDPOINT` asks for traces; otherwise
//! the log's filter (`info` unless `RUST_LOG` says more) turns their call sites off once,
//! and a push pays nothing for them (measured: BENCHMARKS.md). With traces on, the
//! [`Sampler`] (`OTEL_TRACES_SAMPLER`) decides per push before any span is made, so an
//! unsampled push costs what an untraced one does.

use std::cell::Cell;
use std::sync::{LazyLock, OnceLock};

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

/// Which pushes are traced: `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`, as the
/// OpenTelemetry specification defines them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampler {
    /// What decides for a push without a `traceparent` (or with one, unless parent-based).
    root: Root,
    /// A push with a `traceparent` follows its sampled flag.
    parent_based: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Root {
    On,
    Off,
    /// The traces whose id falls in this share, by the id's low 63 bits.
    Ratio(f64),
}

impl Default for Sampler {
    /// `parentbased_always_on`, the specification's default.
    fn default() -> Self {
        Sampler {
            root: Root::On,
            parent_based: true,
        }
    }
}

impl Sampler {
    /// The sampler `name` (`always_on`, `always_off`, `traceidratio`,
    /// `parentbased_always_on`, `parentbased_always_off`, `parentbased_traceidratio`;
    /// unset: `parentbased_always_on`) with `arg`, the ratio from 0 to 1 (unset: 1).
    pub fn from_names(name: Option<&str>, arg: Option<&str>) -> Result<Sampler, String> {
        let ratio = || -> Result<f64, String> {
            let Some(arg) = arg else { return Ok(1.0) };
            match arg.trim().parse::<f64>() {
                Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
                _ => Err(format!(
                    "OTEL_TRACES_SAMPLER_ARG={arg}: a ratio from 0 to 1, such as 0.01"
                )),
            }
        };
        let name = name.map(str::trim).unwrap_or("parentbased_always_on");
        let (parent_based, root) = match name.strip_prefix("parentbased_") {
            Some(root) => (true, root),
            None => (false, name),
        };
        let root = match root {
            "always_on" => Root::On,
            "always_off" => Root::Off,
            "traceidratio" => Root::Ratio(ratio()?),
            _ => {
                return Err(format!(
                    "OTEL_TRACES_SAMPLER={name}: cmq-host samples with always_on, always_off, \
                     traceidratio, or parentbased_ and one of those"
                ));
            }
        };
        Ok(Sampler { root, parent_based })
    }

    /// Whether a push with `headers` is traced.
    fn samples(&self, headers: &HeaderMap) -> bool {
        let parent = headers
            .get("traceparent")
            .and_then(|value| value.to_str().ok())
            .and_then(parse_traceparent);
        match (parent, self.root) {
            (Some((_, sampled)), _) if self.parent_based => sampled,
            (_, Root::On) => true,
            (_, Root::Off) => false,
            (parent, Root::Ratio(ratio)) => {
                let id = parent.map_or_else(random_u64, |(trace_id, _)| trace_id);
                // As the specification's TraceIdRatioBased: the id's low 63 bits below
                // the ratio's share of them.
                (id >> 1) < (ratio * (1u64 << 63) as f64) as u64
            }
        }
    }
}

/// The sampler every push is decided by, once traces are on.
static SAMPLER: OnceLock<Sampler> = OnceLock::new();

/// Decides every push by `sampler` from now on (once per process: the first wins).
pub fn sample_with(sampler: Sampler) {
    let _ = SAMPLER.set(sampler);
}

/// A W3C `traceparent`'s trace id (its low 64 bits) and sampled flag; `None` when it is
/// not one (`00-` 32 hex digits `-` 16 hex digits `-` 2 hex digits).
fn parse_traceparent(value: &str) -> Option<(u64, bool)> {
    let mut parts = value.trim().split('-');
    let (version, trace_id, span_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex =
        |text: &str, len: usize| text.len() == len && text.bytes().all(|b| b.is_ascii_hexdigit());
    if version.len() != 2
        || version == "ff"
        || !hex(trace_id, 32)
        || !hex(span_id, 16)
        || !hex(flags, 2)
    {
        return None;
    }
    let low = u64::from_str_radix(&trace_id[16..], 16).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some((low, flags & 1 == 1))
}

/// A random number from a per-thread generator (xorshift, seeded by the OS once).
fn random_u64() -> u64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(getrandom::u64().unwrap_or(0x9e37_79b9_7f4a_7c15) | 1);
    }
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        x
    })
}

/// The span of one push, its parent the push's `traceparent` when it has one; none at
/// all when the sampler leaves the push out.
pub(crate) fn push(headers: &HeaderMap) -> Span {
    if let Some(sampler) = SAMPLER.get()
        && !sampler.samples(headers)
    {
        return Span::none();
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with_parent(traceparent: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = traceparent {
            headers.insert("traceparent", value.parse().expect("a header value"));
        }
        headers
    }

    const SAMPLED: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const NOT_SAMPLED: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";

    #[test]
    fn samplers_are_read_as_the_specification_names_them() {
        let sampler = |name: &str, arg: Option<&str>| Sampler::from_names(Some(name), arg);
        assert_eq!(Sampler::from_names(None, None), Ok(Sampler::default()));
        assert_eq!(
            sampler("traceidratio", Some("0.01")),
            Ok(Sampler {
                root: Root::Ratio(0.01),
                parent_based: false
            })
        );
        assert_eq!(
            sampler("parentbased_always_off", None),
            Ok(Sampler {
                root: Root::Off,
                parent_based: true
            })
        );
        assert!(sampler("traceidratio", Some("2")).is_err());
        assert!(sampler("traceidratio", Some("half")).is_err());
        assert!(sampler("jaeger_remote", None).is_err());
    }

    #[test]
    fn a_parent_based_sampler_follows_the_traceparent_and_decides_the_rest_itself() {
        let on = Sampler::from_names(Some("parentbased_always_off"), None).expect("valid");
        assert!(on.samples(&with_parent(Some(SAMPLED))));
        assert!(!on.samples(&with_parent(Some(NOT_SAMPLED))));
        assert!(!on.samples(&with_parent(None)));
        // Not a traceparent: decided as a root.
        assert!(!on.samples(&with_parent(Some("00-xyz-b7ad6b7169203331-01"))));
        let always = Sampler::from_names(Some("always_on"), None).expect("valid");
        assert!(always.samples(&with_parent(Some(NOT_SAMPLED))));
    }

    #[test]
    fn a_ratio_samples_its_share_and_the_same_trace_alike() {
        let ratio = Sampler::from_names(Some("traceidratio"), Some("0.25")).expect("valid");
        let sampled = (0..20_000)
            .filter(|_| ratio.samples(&with_parent(None)))
            .count();
        assert!((4_000..6_000).contains(&sampled), "{sampled} of 20000");
        let first = ratio.samples(&with_parent(Some(SAMPLED)));
        assert!((0..100).all(|_| ratio.samples(&with_parent(Some(SAMPLED))) == first));
        let none = Sampler::from_names(Some("traceidratio"), Some("0")).expect("valid");
        assert!(!(0..1_000).any(|_| none.samples(&with_parent(None))));
    }
}
