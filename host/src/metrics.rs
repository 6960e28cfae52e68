//! What the receiver counts, in Prometheus' text format for `/metrics`: messages by route
//! and decision, how long they took, guest faults, and the answers that did not come from
//! a guest (overload, duplicates, rejections).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

/// The label of pushes that no route serves.
pub(crate) const NO_ROUTE: &str = "none";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    route: String,
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FaultLabels {
    route: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FileLabel {
    file: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

type DurationFamily = Family<RouteLabel, Histogram, fn() -> Histogram>;

/// The receiver's metrics and the registry that encodes them.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    messages: Family<DecisionLabels, Counter>,
    duration: DurationFamily,
    faults: Family<FaultLabels, Counter>,
    in_flight: Family<RouteLabel, Gauge>,
    overloaded: Family<RouteLabel, Counter>,
    dedupe_hits: Family<RouteLabel, Counter>,
    dead_letters: Family<RouteLabel, Counter>,
    rejected: Family<StatusLabels, Counter>,
    store_errors: Family<RouteLabel, Counter>,
    uncounted_lost: Counter,
    reloads: Family<ResultLabel, Counter>,
    generation: Gauge,
    store_files: Family<FileLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let r = &mut registry;
        let metrics = Metrics {
            registry: Registry::default(),
            messages: registered(
                r,
                "cmq_messages",
                "Messages a guest decided on, by route and decision (ack, drop, retry, or \
             fault when the guest gave none)",
                Family::<DecisionLabels, Counter>::default(),
            ),
            duration: registered(
                r,
                "cmq_message_duration_seconds",
                "Time from a push's first byte to its answer, for messages a guest ran on",
                Family::new_with_constructor(|| {
                    // 1 ms to about 16 s: CMQ waits 15 s for an answer.
                    Histogram::new(exponential_buckets(0.001, 2.0, 15))
                }),
            ),
            faults: registered(
                r,
                "cmq_guest_faults",
                "Guests that gave no decision, by kind: trap, deadline, instantiate",
                Family::<FaultLabels, Counter>::default(),
            ),
            in_flight: registered(
                r,
                "cmq_messages_in_flight",
                "Messages being handled now",
                Family::<RouteLabel, Gauge>::default(),
            ),
            overloaded: registered(
                r,
                "cmq_overload_answers",
                "Pushes answered 503 because too many messages were in flight",
                Family::<RouteLabel, Counter>::default(),
            ),
            dedupe_hits: registered(
                r,
                "cmq_dedupe_hits",
                "Pushes of an already acknowledged message, answered 200 without a guest",
                Family::<RouteLabel, Counter>::default(),
            ),
            dead_letters: registered(
                r,
                "cmq_dead_letter_writes",
                "Messages written to the dead-letter journal (drops and last attempts)",
                Family::<RouteLabel, Counter>::default(),
            ),
            rejected: registered(
                r,
                "cmq_pushes_rejected",
                "Requests refused before a guest ran (no route, bad token, bad body), by status",
                Family::<StatusLabels, Counter>::default(),
            ),
            store_errors: registered(
                r,
                "cmq_store_errors",
                "Pushes answered 503 because the delivery store failed",
                Family::<RouteLabel, Counter>::default(),
            ),
            reloads: registered(
                r,
                "cmq_reloads",
                "Reloads of the routes and components, by result: ok or error",
                Family::<ResultLabel, Counter>::default(),
            ),
            generation: registered(
                r,
                "cmq_routes_generation",
                "Which load of the routes is serving: 1 at start, one more per reload",
                Gauge::default(),
            ),
            uncounted_lost: registered(
                r,
                "cmq_uncounted_deliveries_lost",
                "Deliveries answered before their claim that could not be counted, because too \
             many were waiting for the store: alert on any",
                Counter::default(),
            ),
            store_files: registered(
                r,
                "cmq_store_file_bytes",
                "Size of the SQLite store's files: database, wal (the write-ahead log) and shm",
                Family::<FileLabel, Gauge>::default(),
            ),
        };
        Metrics {
            registry,
            ..metrics
        }
    }
}

/// `metric`, registered in `registry` under `name` with `help`.
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

fn route(name: &str) -> RouteLabel {
    RouteLabel {
        route: name.to_owned(),
    }
}

impl Metrics {
    /// The sizes of the SQLite store's files, as they are now.
    pub(crate) fn store_files(&self, files: &crate::store::StoreFiles) {
        for (file, bytes) in [
            ("database", files.database),
            ("wal", files.wal),
            ("shm", files.shm),
        ] {
            self.store_files
                .get_or_create(&FileLabel { file })
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }

    /// The metrics in Prometheus' text format (OpenMetrics flavour).
    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// A guest's decision on a message (`fault` when it gave none), and how long the
    /// push took.
    pub(crate) fn message(&self, route_name: &str, decision: &'static str, seconds: f64) {
        self.messages
            .get_or_create(&DecisionLabels {
                route: route_name.to_owned(),
                decision,
            })
            .inc();
        self.duration
            .get_or_create(&route(route_name))
            .observe(seconds);
    }

    pub(crate) fn fault(&self, route_name: &str, kind: &'static str) {
        self.faults
            .get_or_create(&FaultLabels {
                route: route_name.to_owned(),
                kind,
            })
            .inc();
    }

    /// Counts a message in flight on `route_name` until the guard is dropped.
    pub(crate) fn in_flight(&self, route_name: &str) -> InFlight {
        let gauge = self.in_flight.get_or_create(&route(route_name)).clone();
        gauge.inc();
        InFlight(gauge)
    }

    pub(crate) fn overloaded(&self, route_name: &str) {
        self.overloaded.get_or_create(&route(route_name)).inc();
    }

    pub(crate) fn dedupe_hit(&self, route_name: &str) {
        self.dedupe_hits.get_or_create(&route(route_name)).inc();
    }

    pub(crate) fn dead_letter(&self, route_name: &str) {
        self.dead_letters.get_or_create(&route(route_name)).inc();
    }

    pub(crate) fn rejected(&self, route_name: &str, status: u16) {
        self.rejected
            .get_or_create(&StatusLabels {
                route: route_name.to_owned(),
                status,
            })
            .inc();
    }

    pub(crate) fn store_error(&self, route_name: &str) {
        self.store_errors.get_or_create(&route(route_name)).inc();
    }

    /// The store's count of deliveries it could not note, since it opened.
    pub(crate) fn uncounted_lost(&self, total: u64) {
        let counted = self.uncounted_lost.get();
        self.uncounted_lost.inc_by(total.saturating_sub(counted));
    }

    /// A reload, and when it succeeded the generation now serving.
    pub(crate) fn reloaded(&self, ok: bool, generation: u64) {
        let result = if ok { "ok" } else { "error" };
        self.reloads.get_or_create(&ResultLabel { result }).inc();
        if ok {
            self.serving(generation);
        }
    }

    /// The generation of routes serving.
    pub(crate) fn serving(&self, generation: u64) {
        self.generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
    }
}

/// A message counted in flight; dropping it counts it out.
#[derive(Debug)]
pub(crate) struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}
