//! The routes page's chart: each route's decisions per second (ack, retry, drop, fault)
//! and its guest's p99 over the last 15 minutes. Readings of the metrics are kept in a
//! ring: one every [`EVERY`] from a task the admin listener runs while the console is
//! on, and one when the page is shown (at most one a second), never more than [`KEEP`]
//! and none older than [`WINDOW`], so nothing grows with uptime. The chart is inline
//! SVG drawn here; after each of the task's readings the points go to the pages that
//! listen ([`super::charts`]), and their `routes.js` sets them.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::routes::{Sample, bucket_quantile};

/// How often the admin listener's task reads the metrics.
pub(crate) const EVERY: Duration = Duration::from_secs(10);

/// How far back the chart goes.
const WINDOW: Duration = Duration::from_secs(15 * 60);

/// The shortest gap between two readings (page views may come faster).
const MIN_GAP: Duration = Duration::from_secs(1);

/// Readings kept at most.
const KEEP: usize = 240;

/// The decisions charted, as their counter's label says them.
const DECISIONS: [&str; 4] = ["ack", "retry", "drop", "fault"];

/// Every series drawn: the decisions, then the guest's p99.
const SERIES: [&str; 5] = ["ack", "retry", "drop", "fault", "p99"];

/// The chart's drawing area, in SVG units.
const WIDTH: f64 = 300.0;
const HEIGHT: f64 = 60.0;

/// The readings, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Rates(Mutex<VecDeque<Reading>>);

/// One reading: each route's counters at one moment.
#[derive(Debug)]
struct Reading {
    at: Instant,
    routes: HashMap<String, Counts>,
}

/// A route's counters: messages by decision, and the guest's duration histogram
/// (cumulative buckets: upper bound, count).
#[derive(Debug, Default)]
struct Counts {
    decisions: [f64; 4],
    guest: Vec<(f64, f64)>,
}

/// One interval of a route's chart, between two readings: decisions per second and the
/// guest's p99 (seconds) over it.
struct Point {
    from: Instant,
    at: Instant,
    rates: [f64; 4],
    p99: Option<f64>,
}

impl Rates {
    /// Keeps a reading of `samples` (the metrics text's) taken at `now`, unless the
    /// last is younger than a second.
    pub(crate) fn read(&self, samples: &[Sample], now: Instant) {
        let mut readings = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if readings
            .back()
            .is_some_and(|last| now.saturating_duration_since(last.at) < MIN_GAP)
        {
            return;
        }
        let mut routes: HashMap<String, Counts> = HashMap::new();
        for sample in samples {
            let Some(route) = sample.label("route") else {
                continue;
            };
            if sample.name == "cmq_messages_total" {
                let decision = sample.label("decision").unwrap_or_default();
                if let Some(i) = DECISIONS.iter().position(|d| *d == decision) {
                    routes.entry(route.to_owned()).or_default().decisions[i] += sample.value;
                }
            } else if sample.name == "cmq_guest_duration_seconds_bucket"
                && let Some(bound) = sample.label("le").and_then(|le| le.parse().ok())
            {
                let counts = routes.entry(route.to_owned()).or_default();
                counts.guest.push((bound, sample.value));
            }
        }
        readings.push_back(Reading { at: now, routes });
        while readings.len() > KEEP
            || readings
                .front()
                .is_some_and(|first| now.saturating_duration_since(first.at) > WINDOW)
        {
            readings.pop_front();
        }
    }

    /// `route`'s points: one per interval between two readings.
    fn points(&self, route: &str) -> Vec<Point> {
        let readings = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let empty = Counts::default();
        readings
            .iter()
            .zip(readings.iter().skip(1))
            .map(|(before, after)| {
                let (was, is) = (
                    before.routes.get(route).unwrap_or(&empty),
                    after.routes.get(route).unwrap_or(&empty),
                );
                let seconds = after.at.duration_since(before.at).as_secs_f64().max(1e-3);
                let rates = std::array::from_fn(|i| {
                    ((is.decisions[i] - was.decisions[i]) / seconds).max(0.0)
                });
                let grown: Vec<(f64, f64)> = is
                    .guest
                    .iter()
                    .map(|(bound, count)| {
                        let earlier = was
                            .guest
                            .iter()
                            .find(|(b, _)| b == bound)
                            .map_or(0.0, |(_, c)| *c);
                        (*bound, count - earlier)
                    })
                    .collect();
                Point {
                    from: before.at,
                    at: after.at,
                    rates,
                    p99: bucket_quantile(grown, 0.99),
                }
            })
            .collect()
    }

    /// `route`'s chart as drawn at `now`: each series' points and the captions.
    fn drawn(&self, route: &str, now: Instant) -> Drawn {
        let points = self.points(route);
        let Some(first) = points.first() else {
            return Drawn {
                lines: SERIES.map(|series| (series, String::new())),
                rates: "The chart starts with the next reading (every 10 s)".to_owned(),
                p99: String::new(),
            };
        };
        // From the first reading kept (15 minutes ago at most) to now.
        let start = first.from;
        let span = now.saturating_duration_since(start).as_secs_f64().max(1.0);
        let x = |at: Instant| {
            WIDTH * (at.saturating_duration_since(start).as_secs_f64() / span).min(1.0)
        };
        let top = points
            .iter()
            .flat_map(|p| p.rates)
            .fold(0.0f64, f64::max)
            .max(1.0);
        let slowest = points
            .iter()
            .filter_map(|p| p.p99)
            .filter(|p| p.is_finite())
            .fold(0.0f64, f64::max);
        let lines = SERIES.map(|series| {
            let steps: Vec<(f64, f64, f64)> = match DECISIONS.iter().position(|d| *d == series) {
                Some(i) => points
                    .iter()
                    .map(|p| (x(p.from), x(p.at), p.rates[i] / top))
                    .collect(),
                None => points
                    .iter()
                    .filter_map(|p| {
                        let p99 = p.p99.filter(|p| p.is_finite())?;
                        Some((x(p.from), x(p.at), p99 / slowest.max(1e-6)))
                    })
                    .collect(),
            };
            (series, svg_points(&steps))
        });
        Drawn {
            lines,
            rates: format!("Decisions/s, last {} (top {top:.1}/s)", shown_span(span)),
            p99: format!("(top {})", super::routes::seconds(Some(slowest))),
        }
    }

    /// `route`'s chart: decisions per second and the guest's p99, as inline SVG, empty
    /// and saying so while there is not yet an interval to show. `routes.js` redraws it
    /// from [`Rates::json`].
    pub(crate) fn chart(&self, route: &str, now: Instant) -> String {
        let Drawn { lines, rates, p99 } = self.drawn(route, now);
        let line = |(series, points): &(&str, String)| {
            format!("<polyline class=\"{series}\" fill=\"none\" points=\"{points}\"/>")
        };
        let decisions: String = lines[..4].iter().map(line).collect();
        let slowest = line(&lines[4]);
        format!(
            "<figure class=\"chart\"><svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
             aria-label=\"decisions per second\">{decisions}</svg>\
             <figcaption><span class=\"rates-caption\">{rates}</span>: <span class=\"ack\">ack</span> \
             <span class=\"retry\">retry</span> <span class=\"drop\">drop</span> \
             <span class=\"fault\">fault</span></figcaption></figure>\
             <figure class=\"chart\"><svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
             aria-label=\"guest p99\">{slowest}</svg>\
             <figcaption><span class=\"p99\">Guest p99</span> <span class=\"p99-caption\">{p99}</span>: \
             the bucket that holds it</figcaption></figure>"
        )
    }

    /// The charts of `routes` as `routes.js` redraws them: per route, each series'
    /// points and the two captions, as JSON (texts the script sets as text, never as
    /// markup).
    pub(crate) fn json(&self, routes: &[String], now: Instant) -> String {
        let charts: serde_json::Map<String, serde_json::Value> = routes
            .iter()
            .map(|route| {
                let Drawn { lines, rates, p99 } = self.drawn(route, now);
                let points: serde_json::Map<String, serde_json::Value> = lines
                    .into_iter()
                    .map(|(series, points)| (series.to_owned(), points.into()))
                    .collect();
                let chart = serde_json::json!({ "points": points, "rates": rates, "p99": p99 });
                (route.clone(), chart)
            })
            .collect();
        serde_json::Value::Object(charts).to_string()
    }
}

/// A chart as drawn: each series' SVG points, and its captions' texts.
struct Drawn {
    lines: [(&'static str, String); 5],
    rates: String,
    p99: String,
}

/// How long the chart reaches back: `42 s`, `7 min`.
fn shown_span(seconds: f64) -> String {
    if seconds < 120.0 {
        format!("{seconds:.0} s")
    } else {
        format!("{:.0} min", seconds / 60.0)
    }
}

/// A series' steps (from x, to x, y from 0 at the bottom to 1 at the top) as an SVG
/// polyline's points, in SVG units.
fn svg_points(steps: &[(f64, f64, f64)]) -> String {
    let y = |y: f64| HEIGHT - y.clamp(0.0, 1.0) * (HEIGHT - 2.0) - 1.0;
    steps
        .iter()
        .flat_map(|(from, to, value)| [(from, y(*value)), (to, y(*value))])
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(rates: &Rates, at: Instant, acks: f64, slow: f64) {
        let sample = |name: &str, labels: &[(&str, &str)], value| Sample {
            name: name.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            value,
        };
        rates.read(
            &[
                sample(
                    "cmq_messages_total",
                    &[("route", "orders"), ("decision", "ack")],
                    acks,
                ),
                sample(
                    "cmq_guest_duration_seconds_bucket",
                    &[("route", "orders"), ("le", "0.001")],
                    acks - slow,
                ),
                sample(
                    "cmq_guest_duration_seconds_bucket",
                    &[("route", "orders"), ("le", "0.1")],
                    acks,
                ),
            ],
            at,
        );
    }

    #[test]
    fn intervals_become_rates_and_the_ring_keeps_fifteen_minutes_at_most() {
        let rates = Rates::default();
        let start = Instant::now();
        assert!(
            rates
                .chart("orders", start)
                .contains("starts with the next reading")
        );
        reading(&rates, start, 0.0, 0.0);
        reading(&rates, start + Duration::from_millis(500), 50.0, 0.0); // too soon: kept out
        reading(&rates, start + Duration::from_secs(10), 100.0, 0.0);
        reading(&rates, start + Duration::from_secs(20), 300.0, 10.0);
        let points = rates.points("orders");
        assert_eq!(points.len(), 2);
        assert_eq!(points[0].rates, [10.0, 0.0, 0.0, 0.0]);
        assert_eq!(points[1].rates, [20.0, 0.0, 0.0, 0.0]);
        // 10 of the second interval's 200 took over 1 ms: its p99 is the 100 ms bucket.
        assert_eq!((points[0].p99, points[1].p99), (Some(0.001), Some(0.1)));
        let chart = rates.chart("orders", start + Duration::from_secs(20));
        // Steps: each interval at its rate, from its first reading to its second, the
        // first from the left edge.
        let ack = "<polyline class=\"ack\" fill=\"none\" points=\"0.0,30.0 150.0,30.0 150.0,1.0 300.0,1.0\"";
        assert!(chart.contains(ack), "{chart}");
        assert!(chart.contains("last 20 s (top 20.0/s)"), "{chart}");
        let json: serde_json::Value = serde_json::from_str(
            &rates.json(&["orders".to_owned()], start + Duration::from_secs(20)),
        )
        .expect("JSON");
        assert_eq!(
            json["orders"]["points"]["ack"],
            "0.0,30.0 150.0,30.0 150.0,1.0 300.0,1.0"
        );
        assert_eq!(
            json["orders"]["rates"],
            "Decisions/s, last 20 s (top 20.0/s)"
        );
        for n in 3..400u64 {
            reading(&rates, start + Duration::from_secs(n * 10), 300.0, 10.0);
        }
        let kept = rates.0.lock().expect("not poisoned").len();
        assert!(kept <= 91, "{kept} readings kept");
    }
}
