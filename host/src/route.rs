//! Routes: which component serves which request path, with what limits. A receiver
//! serves one [`Routes`] at a time; a reload builds a new one beside it and swaps it in,
//! while pushes already running finish on the one they started with.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::in_flight_cap::InFlightCap;
use crate::metrics::RouteSeries;
use crate::options::ServeAs;
use crate::options::{MAX_LIMIT, RouteOptions, SharedLimits};
use crate::sandbox::engine::{EngineSizing, EpochTicker, new_engine};
use crate::sandbox::guest::Guest;
use crate::sandbox::instance_pool::Reuse;
use crate::sandbox::loading::{Loaded, Loading};
use crate::sandbox::outbound_http::Outbound;

/// One route to build: its name, the path it serves, its component and options.
#[derive(Debug, Clone)]
pub struct RoutePlan {
    /// Names the route in logs and metrics.
    pub name: String,
    /// The request path it serves, and every path under it; `/` serves every path.
    pub path: String,
    /// The handler component: a `.wasm`, or a `.cwasm` from `cmq-host compile`.
    pub component: PathBuf,
    /// How it treats its pushes.
    pub options: RouteOptions,
}

/// A route ready to serve: its compiled guest and its own in-flight cap.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) name: String,
    pub(crate) path: String,
    pub(crate) component: PathBuf,
    pub(crate) guest: Guest,
    /// Its series in the receiver's metrics.
    pub(crate) series: RouteSeries,
    pub(crate) options: RouteOptions,
    pub(crate) in_flight: Option<InFlightCap>,
    /// The load of the routes this one belongs to: 1 at start, one more per reload.
    pub(crate) generation: u64,
    load_time: Duration,
}

impl Route {
    /// Compiles `plan`'s component with `engine`, logging when it is ready.
    fn load(
        engine: &wasmtime::Engine,
        plan: &RoutePlan,
        loading: Loading<'_>,
        generation: u64,
        outbound: &Arc<Outbound>,
        max_idle: usize,
    ) -> anyhow::Result<Route> {
        let started = Instant::now();
        tracing::info!(messaging.cmq.route = plan.name, component = %plan.component.display(), "loading component");
        for warning in plan.options.grants.warnings(plan.options.token.as_ref()) {
            tracing::warn!(messaging.cmq.route = plan.name, "{warning}");
        }
        let guest = Guest::load(
            engine,
            &plan.component,
            &plan.options,
            loading,
            outbound.clone(),
        )
        .map_err(|err| {
            let err = anyhow::Error::from(err);
            // wasmtime says which memory and how many bytes; say which setting.
            if format!("{err:#}").contains("minimum byte size") {
                err.context(format!(
                    "its memory at start is more than the memory cap of {} KiB: raise \
                     --max-memory (max_memory in a config)",
                    plan.options.max_memory >> 10
                ))
            } else {
                err
            }
        })
        .with_context(|| format!("route {:?}", plan.name))?
        .serving(&plan.name)
        .reusing(Reuse {
            max_uses: plan.options.max_instance_reuse_count,
            idle_timeout: plan.options.idle_instance_timeout,
            max_idle,
        });
        tracing::info!(
            messaging.cmq.route = plan.name,
            path = plan.path,
            component = %plan.component.display(),
            load_ms = started.elapsed().as_millis() as u64,
            loaded = ?guest.loaded(),
            serves = ?guest.serves(),
            "component ready"
        );
        Ok(Route {
            name: plan.name.clone(),
            path: plan.path.clone(),
            component: plan.component.clone(),
            in_flight: plan.options.max_in_flight.map(InFlightCap::new),
            options: plan.options.clone(),
            guest,
            series: RouteSeries::new(&plan.name),
            generation,
            load_time: started.elapsed(),
        })
    }
}

/// What is left of `path` when a route at `route_path` serves it, or `None` when it does
/// not: a route serves its own path and every path under it, and `/` serves them all.
fn rest_of<'p>(route_path: &str, path: &'p str) -> Option<&'p str> {
    if route_path == "/" {
        return Some(path);
    }
    let rest = path.strip_prefix(route_path)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// One generation of routes: compiled with one engine, served together.
#[derive(Debug)]
pub(crate) struct Routes {
    /// Longest path first, so that the first match is the most specific.
    routes: Vec<Route>,
    pub(crate) limits: SharedLimits,
    pub(crate) in_flight: InFlightCap,
    _ticker: EpochTicker,
}

/// A component as one route loaded it, for reports.
#[derive(Debug, Clone)]
pub struct LoadedRoute {
    /// The route's name.
    pub name: String,
    /// The path it serves.
    pub path: String,
    /// Its component file.
    pub component: PathBuf,
    /// The interface it is served through.
    pub serves: ServeAs,
    /// Where its native code came from.
    pub loaded: Loaded,
    /// How long loading took.
    pub load_time: Duration,
    /// Messages one instance serves (1: a fresh instance per message).
    pub max_instance_reuse_count: u32,
}

impl Routes {
    /// Checks `plans` and `limits`, then compiles every route's component with one new
    /// engine, logging each as it is ready. Fails on the first route that cannot serve.
    pub(crate) fn build(
        plans: &[RoutePlan],
        limits: SharedLimits,
        loading: Loading<'_>,
        generation: u64,
        outbound: &Arc<Outbound>,
    ) -> anyhow::Result<Routes> {
        check_limits(plans, &limits)?;
        let max_memory = plans
            .iter()
            .map(|plan| plan.options.max_memory)
            .max()
            .unwrap_or(64 << 20);
        let route_count = u32::try_from(plans.len()).context("too many routes")?;
        // Idle instances kept for reuse hold slots too: at most a route's in-flight cap.
        let max_idle = |plan: &RoutePlan| {
            if plan.options.max_instance_reuse_count > 1 {
                plan.options.max_in_flight.unwrap_or(limits.max_in_flight)
            } else {
                0
            }
        };
        let idle_slots: usize = plans.iter().map(max_idle).sum();
        let max_instances = u32::try_from(limits.max_in_flight.saturating_add(idle_slots))
            .context("max in flight is too large")?
            // One more slot per route than messages in flight, for the start-up check.
            .saturating_add(route_count);
        let engine = new_engine(EngineSizing {
            max_instances,
            max_memory,
        })?;
        let mut routes = plans
            .iter()
            .map(|plan| Route::load(&engine, plan, loading, generation, outbound, max_idle(plan)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        routes.sort_by_key(|route| std::cmp::Reverse(route.path.len()));
        let ticker = EpochTicker::start(&engine).context("starting the epoch ticker thread")?;
        Ok(Routes {
            routes,
            in_flight: InFlightCap::new(limits.max_in_flight),
            limits,
            _ticker: ticker,
        })
    }

    /// Takes over the in-flight caps of `serving`, the generation these routes replace,
    /// resized to these routes' limits: pushes still running on the old routes hold
    /// permits of the same caps, so that both generations together stay within them.
    /// A route's own cap is taken over from the route of the same name.
    pub(crate) fn take_over_caps(&mut self, serving: &Routes) {
        self.in_flight = serving.in_flight.resized(self.limits.max_in_flight);
        for route in &mut self.routes {
            let old = serving.routes.iter().find(|old| old.name == route.name);
            if let (Some(max), Some(old_cap)) = (
                route.options.max_in_flight,
                old.and_then(|old| old.in_flight.as_ref()),
            ) {
                route.in_flight = Some(old_cap.resized(max));
            }
        }
    }

    /// Instantiates every route's guest once without a message, so that a component
    /// that cannot be instantiated within its limits is refused before it serves.
    pub(crate) async fn check(&self) -> anyhow::Result<()> {
        for route in &self.routes {
            route
                .guest
                .check_instantiates()
                .await
                .map_err(anyhow::Error::from)
                .with_context(|| format!("route {:?}", route.name))?;
        }
        Ok(())
    }

    /// The route serving `path`, and what is left of the path after the route's own.
    pub(crate) fn find<'p>(&self, path: &'p str) -> Option<(&Route, &'p str)> {
        self.routes
            .iter()
            .find_map(|route| rest_of(&route.path, path).map(|rest| (route, rest)))
    }

    /// The route called `name`, if one is.
    pub(crate) fn named(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|route| route.name == name)
    }

    /// The route listed first: the one route of a single component.
    pub(crate) fn first(&self) -> &Route {
        // `build` refuses an empty list of routes.
        &self.routes[0]
    }

    /// What each route loaded, in path order.
    pub(crate) fn report(&self) -> Vec<LoadedRoute> {
        let mut report: Vec<LoadedRoute> = self
            .routes
            .iter()
            .map(|route| LoadedRoute {
                name: route.name.clone(),
                path: route.path.clone(),
                component: route.component.clone(),
                serves: route.guest.serves(),
                loaded: route.guest.loaded(),
                load_time: route.load_time,
                max_instance_reuse_count: route.options.max_instance_reuse_count,
            })
            .collect();
        report.sort_by(|a, b| a.path.cmp(&b.path));
        report
    }
}

/// Refuses limits no route could serve with, before anything is compiled.
fn check_limits(plans: &[RoutePlan], limits: &SharedLimits) -> anyhow::Result<()> {
    anyhow::ensure!(!plans.is_empty(), "there are no routes to serve");
    anyhow::ensure!(
        (1..=MAX_LIMIT).contains(&limits.max_in_flight),
        "max in flight must be between 1 and {MAX_LIMIT}"
    );
    // CMQ gives up on an answer after about 15 s; an hour is far past any use and keeps
    // deadline arithmetic clear of overflow.
    let an_hour = Duration::from_secs(3600);
    anyhow::ensure!(
        !limits.body_timeout.is_zero() && limits.body_timeout <= an_hour,
        "the body timeout must be longer than zero and at most an hour"
    );
    for plan in plans {
        let route = &plan.name;
        anyhow::ensure!(
            !plan.options.deadline.is_zero() && plan.options.deadline <= an_hour,
            "route {route:?}: the deadline must be longer than zero and at most an hour"
        );
        anyhow::ensure!(
            plan.options.max_instance_reuse_count >= 1,
            "route {route:?}: max_instance_reuse_count must be at least 1 (1: a fresh \
             instance per message)"
        );
        anyhow::ensure!(
            !plan.options.idle_instance_timeout.is_zero()
                && plan.options.idle_instance_timeout <= an_hour,
            "route {route:?}: the idle instance timeout must be longer than zero and at most \
             an hour"
        );
        if let Some(max) = plan.options.max_in_flight {
            anyhow::ensure!(
                (1..=MAX_LIMIT).contains(&max),
                "route {route:?}: max in flight must be between 1 and {MAX_LIMIT}"
            );
        }
    }
    Ok(())
}

/// The routes a receiver serves now, swapped whole by a reload.
#[derive(Debug)]
pub(crate) struct CurrentRoutes(std::sync::RwLock<Arc<Routes>>);

impl CurrentRoutes {
    pub(crate) fn new(routes: Routes) -> Self {
        CurrentRoutes(std::sync::RwLock::new(Arc::new(routes)))
    }

    /// The routes now: a push keeps them until it is answered.
    pub(crate) fn get(&self) -> Arc<Routes> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Serves `routes` from now on.
    pub(crate) fn replace(&self, routes: Routes) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(routes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_serves_its_path_and_the_paths_under_it() {
        let rest = rest_of;
        assert_eq!(rest("/orders", "/orders"), Some(""));
        assert_eq!(rest("/orders", "/orders/push/t"), Some("/push/t"));
        assert_eq!(rest("/orders", "/ordersx"), None);
        assert_eq!(rest("/orders", "/audit"), None);
        assert_eq!(rest("/", "/anything"), Some("/anything"));
    }
}
