//! What the receiver counts, in Prometheus' text format for `/metrics`: messages by route
//! and decision, how long they took (whole, the guest's run, its instantiation, each store
//! operation), guest faults, the answers that did not come from a guest (overload,
//! duplicates, rejections), the dead letters waiting, reloads, and the build.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;

use prometheus_client::registry::Registry;

use crate::sandbox::instance::GuestTimes;

mod labels;
mod route_series;

use labels::{
    BUILD, CauseLabels, DecisionLabels, DuplicateLabels, FaultLabels, FileLabel, InstanceLabels,
    OperationLabel, ResultLabel, RouteLabel, StatusLabels,
};

pub(crate) use route_series::RouteSeries;

/// The label of pushes that no route serves.
pub(crate) const NO_ROUTE: &str = "none";

/// The decisions `cmq_messages_total` counts a route's messages by: the guest's three,
/// and `fault` when it gave none.
pub(crate) const DECISIONS: [&str; 4] = ["ack", "drop", "retry", "fault"];

type DurationFamily = Family<RouteLabel, Histogram, fn() -> Histogram>;

/// Declares every metric family once: its field, its type, its name and help text in
/// `/metrics`, and how it is made; the struct and its registration come from the table.
macro_rules! families {
    ($($field:ident: $ty:ty = $name:literal, $help:expr, $make:expr;)*) => {
        /// The receiver's metrics and the registry that encodes them.
        #[derive(Debug)]
        pub(crate) struct Metrics {
            registry: Registry,
            $($field: $ty,)*
            /// The routes `dead_letters_waiting` has shown.
            dead_letter_routes: std::sync::Mutex<Vec<String>>,
        }

        impl Default for Metrics {
            fn default() -> Self {
                let mut registry = Registry::default();
                $(
                    let $field: $ty = $make;
                    registry.register($name, $help, $field.clone());
                )*
                register_shared(&mut registry);
                Metrics {
                    registry,
                    $($field,)*
                    dead_letter_routes: std::sync::Mutex::default(),
                }
            }
        }
    };
}

families! {
    messages: Family<DecisionLabels, Counter> = "cmq_messages",
        "Messages a guest decided on, by route and decision (ack, drop, retry, or \
         fault when the guest gave none)",
        Family::default();
    duration: DurationFamily = "cmq_message_duration_seconds",
        "Time from a push's first byte to its answer, for messages a guest ran on",
        Family::new_with_constructor(|| {
            // 1 ms to about 16 s: CMQ waits 15 s for an answer.
            Histogram::new(exponential_buckets(0.001, 2.0, 15))
        });
    faults: Family<FaultLabels, Counter> = "cmq_guest_faults",
        "Guests that gave no decision, by kind: trap, deadline, instantiate",
        Family::default();
    in_flight: Family<RouteLabel, Gauge> = "cmq_messages_in_flight",
        "Messages being handled now",
        Family::default();
    overloaded: Family<RouteLabel, Counter> = "cmq_overload_answers",
        "Pushes answered 503 because too many messages were in flight",
        Family::default();
    dedupe_hits: Family<DuplicateLabels, Counter> = "cmq_dedupe_hits",
        "Pushes of a message already settled (of: ack, drop or journaled), answered \
         200 without a guest",
        Family::default();
    dead_letters: Family<RouteLabel, Counter> = "cmq_dead_letter_writes",
        "Messages written to the dead-letter journal (drops and last attempts)",
        Family::default();
    rejected: Family<StatusLabels, Counter> = "cmq_pushes_rejected",
        "Requests refused before a guest ran (no route, bad token, bad body), by status",
        Family::default();
    store_errors: Family<RouteLabel, Counter> = "cmq_store_errors",
        "Pushes answered 503 because the delivery store failed",
        Family::default();
    reloads: Family<ResultLabel, Counter> = "cmq_reloads",
        "Reloads of the routes and components, by result: ok or error",
        Family::default();
    generation: Gauge = "cmq_routes_generation",
        "Which load of the routes is serving: 1 at start, one more per reload",
        Gauge::default();
    uncounted_lost: Counter = "cmq_uncounted_deliveries_lost",
        "Deliveries answered before their claim that could not be counted, because too \
         many were waiting for the store: alert on any",
        Counter::default();
    store_files: Family<FileLabel, Gauge> = "cmq_store_file_bytes",
        "Size of the SQLite store's files: database, wal (the write-ahead log) and shm",
        Family::default();
    guest_duration: DurationFamily = "cmq_guest_duration_seconds",
        "Time a guest took for one message: its instance made, and its call to the end",
        Family::new_with_constructor(|| {
            // 50 µs to about 13 s.
            Histogram::new(exponential_buckets(0.00005, 2.0, 19))
        });
    instantiation: DurationFamily = "cmq_guest_instantiation_seconds",
        "Time making a guest's fresh instance for one message",
        Family::new_with_constructor(|| {
            // 5 µs to about 0.16 s.
            Histogram::new(exponential_buckets(0.000005, 2.0, 16))
        });
    store_operations: Family<OperationLabel, Histogram, fn() -> Histogram> = "cmq_store_operation_duration_seconds",
        "Time the delivery store took for one operation: claim, settle or journal",
        Family::new_with_constructor(|| {
            // 20 µs to about 5 s (its timeout is 3 s).
            Histogram::new(exponential_buckets(0.00002, 2.0, 18))
        });
    dead_letters_waiting: Family<RouteLabel, Gauge> = "cmq_dead_letters",
        "Entries in the dead-letter journal waiting for a human, by route (none: \
         entries from before the journal kept routes), read from the store at each \
         scrape: alert when it grows",
        Family::default();
    instances: Family<InstanceLabels, Counter> = "cmq_guest_instances",
        "Messages run on a route that reuses instances, by the instance they ran in: \
         made (fresh) or reused",
        Family::default();
    instances_discarded: Family<CauseLabels, Counter> = "cmq_guest_instances_discarded",
        "Instances of a route that reuses them dropped instead of kept, by cause: \
         fault, spent (served its count), resources (held more host resources than \
         after its first message), pool_full, idle (waited past the idle timeout)",
        Family::default();
    instances_idle: Family<RouteLabel, Gauge> = "cmq_guest_instances_idle",
        "Instances kept for reuse, idle, by route (after the last message)",
        Family::default();
    outbound_requests: Family<crate::sandbox::outbound_http::OutboundLabels, Counter> = "cmq_outbound_requests",
        "Guests' outbound HTTP requests, by route and outcome: sent (a response came), \
         denied (no grant), prohibited (the name resolved only to addresses its grant does \
         not reach), limited (too many in flight, for the instance or the host), failed",
        Family::default();
    last_reload_success: Gauge = "cmq_last_reload_success",
        "1 when the last reload (or the start) succeeded, 0 when it failed: the \
         routes of before serve on",
        Gauge::default();
    last_reload_time: Gauge<f64, std::sync::atomic::AtomicU64> = "cmq_last_reload_timestamp_seconds",
        "When the last reload (or the start) was tried, in Unix seconds",
        Gauge::default();
}

/// The families that are not the receiver's own: the trace exporter's (process-wide)
/// and the build's.
fn register_shared(registry: &mut Registry) {
    registry.register(
        "cmq_trace_spans_dropped",
        "Spans that never reached the trace collector, by reason: queue_full (it takes \
         them slower than pushes make them) or export_failed (it refused them or did \
         not answer)",
        crate::trace::SPANS_DROPPED.clone(),
    );
    registry.register(
        "cmq_traces_skipped",
        "Pushes not traced because the trace collector was down (one is, every \
         OTEL_BSP_SCHEDULE_DELAY, to find out whether it is back)",
        crate::trace::PUSHES_UNTRACED.clone(),
    );
    registry.register(
        "cmq_build",
        "The build serving: its version, commit and wasmtime",
        Info::new(BUILD),
    );
}

fn route(name: &str) -> RouteLabel {
    RouteLabel {
        route: name.to_owned(),
    }
}

impl Metrics {
    /// The counter of guests' outbound requests, which the instances count into.
    pub(crate) fn outbound_requests(
        &self,
    ) -> Family<crate::sandbox::outbound_http::OutboundLabels, Counter> {
        self.outbound_requests.clone()
    }

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
    pub(crate) fn message(&self, route: &RouteSeries, decision: &'static str, seconds: f64) {
        route.decided(&self.messages, decision);
        route.of(&route.duration, &self.duration).observe(seconds);
    }

    pub(crate) fn fault(&self, route_name: &str, kind: &'static str) {
        self.faults
            .get_or_create(&FaultLabels {
                route: route_name.to_owned(),
                kind,
            })
            .inc();
    }

    /// Counts a message in flight on `route` until the guard is dropped.
    pub(crate) fn in_flight(&self, route: &RouteSeries) -> InFlight {
        let gauge = route.of(&route.in_flight, &self.in_flight).clone();
        gauge.inc();
        InFlight(gauge)
    }

    pub(crate) fn overloaded(&self, route_name: &str) {
        self.overloaded.get_or_create(&route(route_name)).inc();
    }

    pub(crate) fn dedupe_hit(&self, route_name: &str, of: crate::store::Settled) {
        let labels = DuplicateLabels {
            route: route_name.to_owned(),
            of: of.name(),
        };
        self.dedupe_hits.get_or_create(&labels).inc();
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
        self.last_reload_success.set(i64::from(ok));
        self.last_reload_time.set(unix_seconds_now());
        if ok {
            self.generation
                .set(i64::try_from(generation).unwrap_or(i64::MAX));
        }
    }

    /// The routes serving at start: generation 1, as a reload that succeeded.
    pub(crate) fn started(&self) {
        self.last_reload_success.set(1);
        self.last_reload_time.set(unix_seconds_now());
        self.generation.set(1);
    }

    /// How long one run of a guest of `route` took.
    pub(crate) fn guest_ran(&self, route: &RouteSeries, times: GuestTimes) {
        if let Some(reuse) = times.reuse {
            route.instance(&self.instances, reuse.reused).inc();
            let discard = |cause: &'static str, count: u64| {
                if count > 0 {
                    self.instances_discarded
                        .get_or_create(&CauseLabels {
                            route: route.name().to_owned(),
                            cause,
                        })
                        .inc_by(count);
                }
            };
            if let Some(discarded) = reuse.discarded {
                discard(discarded.label(), 1);
            }
            discard("idle", reuse.expired);
            route
                .of(&route.instances_idle, &self.instances_idle)
                .set(i64::try_from(reuse.idle).unwrap_or(i64::MAX));
        }
        route
            .of(&route.guest_duration, &self.guest_duration)
            .observe(times.total.as_secs_f64());
        if let Some(instantiation) = times.instantiation {
            route
                .of(&route.instantiation, &self.instantiation)
                .observe(instantiation.as_secs_f64());
        }
    }

    /// How long one store operation took.
    pub(crate) fn store_operation(&self, operation: &'static str, took: std::time::Duration) {
        self.store_operations
            .get_or_create(&OperationLabel { operation })
            .observe(took.as_secs_f64());
    }

    /// The dead-letter entries waiting, by route, as the store holds them now: a route
    /// counted before and missing now shows 0.
    pub(crate) fn dead_letters_waiting(&self, counts: &[crate::store::RouteCount]) {
        let mut seen = self
            .dead_letter_routes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for gone in seen.iter() {
            if !counts
                .iter()
                .any(|count| count.route.as_deref().unwrap_or(NO_ROUTE) == gone)
            {
                self.dead_letters_waiting.get_or_create(&route(gone)).set(0);
            }
        }
        for count in counts {
            let name = count.route.as_deref().unwrap_or(NO_ROUTE);
            self.dead_letters_waiting
                .get_or_create(&route(name))
                .set(i64::try_from(count.entries).unwrap_or(i64::MAX));
            if !seen.iter().any(|known| known == name) {
                seen.push(name.to_owned());
            }
        }
    }
}

fn unix_seconds_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

/// A message counted in flight; dropping it counts it out.
#[derive(Debug)]
pub(crate) struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}
