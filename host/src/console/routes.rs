//! The console's routes page: each route's path, component, how it was loaded, the
//! generation serving, the last reload, and, read from the very text `/metrics` serves,
//! its messages by decision (in all, and per second since the page was last shown),
//! faults, messages in flight and the guest's p50 and p99, and the last 15 minutes as
//! a chart ([`super::rates`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::metrics::DECISIONS;
use crate::receiver::Receiver;
use crate::route::LoadedRoute;

use super::page::escape;
use super::rates::Rates;

/// Messages by (route, decision).
type Totals = HashMap<(String, String), f64>;

/// The counters a previous view read, and when, to turn totals into rates.
#[derive(Debug, Default)]
pub(crate) struct LastSeen(Mutex<Option<(Instant, Totals)>>);

/// One sample of the metrics text: its name, labels and value.
#[derive(Debug, PartialEq)]
pub(super) struct Sample {
    pub(super) name: String,
    pub(super) labels: Vec<(String, String)>,
    pub(super) value: f64,
}

impl Sample {
    pub(super) fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }
}

/// The samples of Prometheus' text format (comments skipped).
pub(super) fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value = value.parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|pair| !pair.is_empty())
                .filter_map(|pair| {
                    let (key, value) = pair.split_once("=\"")?;
                    Some((key.to_owned(), value.trim_end_matches('"').to_owned()))
                })
                .collect();
            Some(Sample {
                name: name.to_owned(),
                labels,
                value,
            })
        })
        .collect()
}

/// The `quantile` of a route's histogram `name` from its cumulative buckets, as the
/// upper bound of the bucket that reaches it.
fn quantile(samples: &[Sample], name: &str, route: &str, quantile: f64) -> Option<f64> {
    let buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter(|sample| {
            sample.name == format!("{name}_bucket") && sample.label("route") == Some(route)
        })
        .filter_map(|sample| Some((sample.label("le")?.parse::<f64>().ok()?, sample.value)))
        .collect();
    bucket_quantile(buckets, quantile)
}

/// The `quantile` of cumulative `buckets` (upper bound, count), as the upper bound of
/// the bucket that reaches it; none when they count nothing.
pub(super) fn bucket_quantile(mut buckets: Vec<(f64, f64)>, quantile: f64) -> Option<f64> {
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total == 0.0 {
        return None;
    }
    buckets
        .iter()
        .find(|(_, count)| *count >= quantile * total)
        .map(|(bound, _)| *bound)
}

pub(super) fn seconds(value: Option<f64>) -> String {
    match value {
        None => "-".to_owned(),
        Some(value) if value.is_infinite() => "more".to_owned(),
        Some(value) if value < 0.001 => format!("≤ {:.0} µs", value * 1e6),
        Some(value) if value < 1.0 => format!("≤ {:.1} ms", value * 1e3),
        Some(value) => format!("≤ {value:.1} s"),
    }
}

/// The page's script: it redraws the charts.
pub(crate) const SCRIPT: &str = include_str!("routes.js");

/// The charts of the routes page at `now`, as `routes.js` redraws them.
pub(crate) fn charts(receiver: &Receiver, rates: &Rates, now: Instant) -> String {
    let names: Vec<String> = receiver
        .routes()
        .into_iter()
        .map(|route| route.name)
        .collect();
    rates.json(&names, now)
}

/// The page's body.
pub(crate) async fn body(receiver: &Receiver, last: &LastSeen, rates: &Rates) -> String {
    let text = receiver.metrics_text().await;
    let samples = samples(&text);
    let now = Instant::now();
    rates.read(&samples, now);
    let totals: Totals = samples
        .iter()
        .filter(|sample| sample.name == "cmq_messages_total")
        .filter_map(|sample| {
            Some((
                (
                    sample.label("route")?.to_owned(),
                    sample.label("decision")?.to_owned(),
                ),
                sample.value,
            ))
        })
        .collect();
    let previous = last
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .replace((now, totals.clone()));
    let scrape = Scrape {
        samples: &samples,
        totals: &totals,
        previous: previous.as_ref(),
        now,
        rates,
    };
    let rows: String = receiver
        .routes()
        .iter()
        .map(|route| scrape.row(route))
        .collect();
    format!(
        "<p class=\"note\">Generation {generation}, {reload}. Rates are since this page was last shown.</p>\
         <table class=\"cards\"><thead><tr><th>Route</th><th>Path</th><th>Component</th><th>Messages</th>\
         <th>Faults</th><th>In flight</th><th>Guest p50<br>p99</th><th>Last 15 minutes</th></tr></thead>{rows}</table>\
         <p id=\"charts-status\" class=\"note\"></p>\
         <script src=\"/console/routes.js\"></script>",
        generation = receiver.generation(),
        reload = scrape.reload(),
    )
}

/// One reading of the metrics, and the totals of the view before it.
struct Scrape<'a> {
    samples: &'a [Sample],
    totals: &'a Totals,
    previous: Option<&'a (Instant, Totals)>,
    now: Instant,
    rates: &'a Rates,
}

impl Scrape<'_> {
    /// The sum of the samples of `name` for `route`.
    fn value(&self, name: &str, route: &str) -> f64 {
        self.samples
            .iter()
            .filter(|sample| sample.name == name && sample.label("route") == Some(route))
            // Not `sum`, whose sum of nothing is -0.
            .fold(0.0, |sum, sample| sum + sample.value)
    }

    /// The one sample of `name`, if there is one.
    fn single(&self, name: &str) -> Option<f64> {
        self.samples
            .iter()
            .find(|sample| sample.name == name)
            .map(|sample| sample.value)
    }

    /// A route's messages by decision: in all, and per second since the last view.
    fn decisions(&self, route: &str) -> String {
        DECISIONS
            .iter()
            .map(|decision| {
                let key = (route.to_owned(), (*decision).to_owned());
                let total = self.totals.get(&key).copied().unwrap_or(0.0);
                let rate = self.previous.and_then(|(then, seen)| {
                    let elapsed = self.now.duration_since(*then).as_secs_f64();
                    (elapsed > 0.0)
                        .then(|| (total - seen.get(&key).copied().unwrap_or(0.0)) / elapsed)
                });
                match rate {
                    Some(rate) => format!("{decision} {total:.0} ({rate:.1}/s)"),
                    None => format!("{decision} {total:.0}"),
                }
            })
            .collect::<Vec<_>>()
            .join("<br>")
    }

    /// A route's row.
    fn row(&self, route: &LoadedRoute) -> String {
        let p = |q| {
            seconds(quantile(
                self.samples,
                "cmq_guest_duration_seconds",
                &route.name,
                q,
            ))
        };
        format!(
            "<tr><td data-label=\"Route\">{name}</td><td data-label=\"Path\">{path}</td>\
             <td data-label=\"Component\">{component}<br><span class=\"note\">{serves:?}, {loaded:?} in {ms} ms; {instances}</span></td>\
             <td data-label=\"Messages\">{decisions}</td><td data-label=\"Faults\">{faults:.0}</td>\
             <td data-label=\"In flight\">{in_flight:.0}</td><td data-label=\"Guest p50, p99\">{p50}<br>{p99}</td>\
             <td class=\"charts\" data-route=\"{name}\">{chart}</td></tr>",
            name = escape(&route.name),
            path = escape(&route.path),
            component = escape(&route.component.display().to_string()),
            serves = route.serves,
            loaded = route.loaded,
            ms = route.load_time.as_millis(),
            instances = match route.max_instance_reuse_count {
                1 => "a fresh instance per message".to_owned(),
                n => format!("instances reused for up to {n} messages"),
            },
            decisions = self.decisions(&route.name),
            faults = self.value("cmq_guest_faults_total", &route.name),
            in_flight = self.value("cmq_messages_in_flight", &route.name),
            p50 = p(0.5),
            p99 = p(0.99),
            chart = self.rates.chart(&route.name, self.now),
        )
    }

    /// The last load or reload: whether it succeeded, and when.
    fn reload(&self) -> String {
        match (
            self.single("cmq_last_reload_success"),
            self.single("cmq_last_reload_timestamp_seconds"),
        ) {
            (Some(ok), Some(at)) => format!(
                "last {} at {}",
                if ok == 1.0 {
                    "load succeeded"
                } else {
                    "reload failed: the routes of before serve on"
                },
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(at.max(0.0))
                )
            ),
            _ => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE cmq_messages counter\n\
        cmq_messages_total{route=\"orders\",decision=\"ack\"} 3\n\
        cmq_guest_duration_seconds_bucket{le=\"0.001\",route=\"orders\"} 1\n\
        cmq_guest_duration_seconds_bucket{le=\"0.002\",route=\"orders\"} 9\n\
        cmq_guest_duration_seconds_bucket{le=\"+Inf\",route=\"orders\"} 10\n\
        cmq_routes_generation 2\n";

    #[test]
    fn samples_and_quantiles_are_read_from_the_metrics_text() {
        let samples = samples(TEXT);
        assert_eq!(samples.len(), 5);
        assert_eq!(samples[0].label("decision"), Some("ack"));
        assert_eq!(samples[0].value, 3.0);
        assert_eq!(samples[4].name, "cmq_routes_generation");
        assert_eq!(
            quantile(&samples, "cmq_guest_duration_seconds", "orders", 0.5),
            Some(0.002)
        );
        assert_eq!(
            quantile(&samples, "cmq_guest_duration_seconds", "orders", 0.1),
            Some(0.001)
        );
        assert_eq!(
            quantile(&samples, "cmq_guest_duration_seconds", "orders", 0.99),
            Some(f64::INFINITY)
        );
        assert_eq!(
            quantile(&samples, "cmq_guest_duration_seconds", "other", 0.5),
            None
        );
    }
}
