//! One route's series in the families every push counts into, found on first use and
//! kept: a push then counts without building a label or looking one up.
//!
//! A series is made when it is first counted, never before, so `/metrics` shows no
//! route at 0 that has not had a message. No family entry is ever removed, so a kept
//! handle stays the one `/metrics` encodes; a reload's new routes find the same entries.

use std::sync::OnceLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use super::DECISIONS;
use super::labels::{DecisionLabels, InstanceLabels, RouteLabel};

/// A route's handles on its series. Each route of a receiver counts into that
/// receiver's [`Metrics`](super::Metrics) only.
#[derive(Debug)]
pub(crate) struct RouteSeries {
    label: RouteLabel,
    pub(super) in_flight: OnceLock<Gauge>,
    pub(super) duration: OnceLock<Histogram>,
    pub(super) guest_duration: OnceLock<Histogram>,
    pub(super) instantiation: OnceLock<Histogram>,
    pub(super) instances_idle: OnceLock<Gauge>,
    /// Messages by decision, in the order of [`DECISIONS`].
    decisions: [OnceLock<Counter>; DECISIONS.len()],
    /// Messages by the instance they ran in: made, reused.
    instances: [OnceLock<Counter>; 2],
}

impl RouteSeries {
    pub(crate) fn new(route: &str) -> RouteSeries {
        RouteSeries {
            label: RouteLabel {
                route: route.to_owned(),
            },
            in_flight: OnceLock::new(),
            duration: OnceLock::new(),
            guest_duration: OnceLock::new(),
            instantiation: OnceLock::new(),
            instances_idle: OnceLock::new(),
            decisions: Default::default(),
            instances: Default::default(),
        }
    }

    /// The route's name, as its series are labelled.
    pub(crate) fn name(&self) -> &str {
        &self.label.route
    }

    /// The series of `family` labelled with this route alone, kept in `slot`.
    pub(super) fn of<'s, M, C>(
        &self,
        slot: &'s OnceLock<M>,
        family: &Family<RouteLabel, M, C>,
    ) -> &'s M
    where
        M: Clone,
        C: MetricConstructor<M>,
    {
        slot.get_or_init(|| family.get_or_create_owned(&self.label))
    }

    /// Counts a message of this route decided as `decision`.
    pub(super) fn decided(&self, family: &Family<DecisionLabels, Counter>, decision: &'static str) {
        let labels = || DecisionLabels {
            route: self.label.route.clone(),
            decision,
        };
        match DECISIONS.iter().position(|known| *known == decision) {
            Some(at) => self.decisions[at]
                .get_or_init(|| family.get_or_create_owned(&labels()))
                .inc(),
            None => family.get_or_create(&labels()).inc(),
        };
    }

    /// The count of messages of this route run in a fresh instance, or a reused one.
    pub(super) fn instance(
        &self,
        family: &Family<InstanceLabels, Counter>,
        reused: bool,
    ) -> &Counter {
        let instance = if reused { "reused" } else { "made" };
        self.instances[usize::from(reused)].get_or_init(|| {
            family.get_or_create_owned(&InstanceLabels {
                route: self.label.route.clone(),
                instance,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::metrics::Metrics;
    use crate::sandbox::instance::{GuestTimes, InstanceUse};

    /// The lines of `/metrics` about route `a` that hold `family`.
    fn lines(metrics: &Metrics, family: &str) -> Vec<String> {
        metrics
            .encode()
            .lines()
            .filter(|line| line.starts_with(family) && line.contains("route=\"a\""))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn a_route_counts_into_its_series_made_on_first_use_and_found_again_after_a_reload() {
        let metrics = Metrics::default();
        let first = RouteSeries::new("a");
        assert!(lines(&metrics, "cmq_messages").is_empty());
        assert!(lines(&metrics, "cmq_guest").is_empty());

        metrics.message(&first, "ack", 0.01);
        metrics.message(&first, "drop", 0.01);
        metrics.message(&first, "ack", 0.01);
        // A reload's route, and a decision without a slot of its own.
        let reloaded = RouteSeries::new("a");
        metrics.message(&reloaded, "ack", 0.01);
        metrics.message(&reloaded, "other", 0.01);
        metrics.message(&reloaded, "other", 0.01);
        let messages = lines(&metrics, "cmq_messages_total");
        assert!(
            messages.contains(&r#"cmq_messages_total{route="a",decision="ack"} 3"#.to_owned()),
            "{messages:?}"
        );
        assert!(
            messages.contains(&r#"cmq_messages_total{route="a",decision="drop"} 1"#.to_owned()),
            "{messages:?}"
        );
        assert!(
            messages.contains(&r#"cmq_messages_total{route="a",decision="other"} 2"#.to_owned()),
            "{messages:?}"
        );
        assert!(
            lines(&metrics, "cmq_message_duration_seconds_count")
                .contains(&r#"cmq_message_duration_seconds_count{route="a"} 6"#.to_owned())
        );

        let in_flight = metrics.in_flight(&first);
        let also = metrics.in_flight(&reloaded);
        assert_eq!(
            lines(&metrics, "cmq_messages_in_flight"),
            [r#"cmq_messages_in_flight{route="a"} 2"#]
        );
        drop((in_flight, also));
        assert_eq!(
            lines(&metrics, "cmq_messages_in_flight"),
            [r#"cmq_messages_in_flight{route="a"} 0"#]
        );

        let ran = |reused: bool, idle| GuestTimes {
            instantiation: (!reused).then_some(Duration::from_micros(20)),
            total: Duration::from_micros(50),
            reuse: Some(InstanceUse {
                reused,
                discarded: None,
                expired: 0,
                idle,
            }),
        };
        metrics.guest_ran(&first, ran(false, 1));
        metrics.guest_ran(&first, ran(true, 1));
        metrics.guest_ran(&reloaded, ran(true, 3));
        let instances = lines(&metrics, "cmq_guest_instances");
        for expected in [
            r#"cmq_guest_instances_total{route="a",instance="made"} 1"#,
            r#"cmq_guest_instances_total{route="a",instance="reused"} 2"#,
            r#"cmq_guest_instances_idle{route="a"} 3"#,
        ] {
            assert!(
                instances.contains(&expected.to_owned()),
                "{expected} in {instances:?}"
            );
        }
        assert!(
            lines(&metrics, "cmq_guest_duration_seconds_count")
                .contains(&r#"cmq_guest_duration_seconds_count{route="a"} 3"#.to_owned())
        );
        assert!(
            lines(&metrics, "cmq_guest_instantiation_seconds_count")
                .contains(&r#"cmq_guest_instantiation_seconds_count{route="a"} 1"#.to_owned())
        );
    }
}
