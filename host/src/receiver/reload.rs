//! The receiver's reload: new routes built and checked beside the serving ones, which
//! they replace whole (what triggers a reload is [`crate::reload`]'s).

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;

use super::Receiver;
use crate::config::Config;
use crate::route::{LoadedRoute, Routes};
use crate::sandbox::loading::Loading;

impl Receiver {
    /// Builds and checks the routes of `config` beside the ones serving, then serves
    /// them: pushes already running finish on the routes they started with. When
    /// anything is wrong, the routes serving now go on serving and the error is
    /// returned. The listener, TLS, connection cap and allowlist stay as they started.
    pub async fn reload(&self, config: &Config) -> anyhow::Result<Vec<LoadedRoute>> {
        let _one_at_a_time = self.reloading.lock().await;
        let generation = self.generation.load(Ordering::Relaxed) + 1;
        let plans = config.routes.clone();
        let limits = config.limits;
        let cache = self.compile_cache.clone();
        let allow_precompiled = config.allow_precompiled;
        let outbound = self.outbound.clone();
        let built = tokio::task::spawn_blocking(move || {
            let loading = Loading {
                compile_cache: cache.as_deref(),
                allow_precompiled,
            };
            Routes::build(&plans, limits, loading, generation, &outbound)
        })
        .await
        .context("the reload's compile task failed")
        .and_then(|built| built);
        let checked = match built {
            Ok(routes) => routes.check().await.map(|()| routes),
            Err(err) => Err(err),
        };
        match checked {
            Ok(mut routes) => {
                routes.take_over_caps(&self.routes.get());
                let report = routes.report();
                self.longest_deadline_ms
                    .fetch_max(longest_deadline_ms(&config.routes), Ordering::Relaxed);
                if let Some(store) = &self.store {
                    store.keep_records_for(longest_dedupe_window(&config.routes));
                }
                self.routes.replace(routes);
                self.generation.store(generation, Ordering::Relaxed);
                self.metrics.reloaded(true, generation);
                Ok(report)
            }
            Err(err) => {
                self.metrics.reloaded(false, generation);
                Err(err)
            }
        }
    }

    /// Counts a reload that failed before [`Receiver::reload`]: its config did not read.
    pub(crate) fn count_failed_reload(&self) {
        self.metrics.reloaded(false, self.generation());
    }

    /// Instantiates every route's guest once without a message, so that a component
    /// that cannot be instantiated within the limits is refused before serving.
    pub async fn check(&self) -> anyhow::Result<()> {
        self.routes.get().check().await
    }

    /// Which load of the routes is serving: 1 at start, one more per reload.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }
}

/// The longest dedupe window of `plans`: message records are kept at least that long.
pub(super) fn longest_dedupe_window(plans: &[crate::route::RoutePlan]) -> Duration {
    plans
        .iter()
        .filter_map(|plan| plan.options.dedupe_window)
        .max()
        .unwrap_or_default()
}

/// The longest guest deadline of `plans`, in milliseconds.
pub(super) fn longest_deadline_ms(plans: &[crate::route::RoutePlan]) -> u64 {
    plans
        .iter()
        .map(|plan| u64::try_from(plan.options.deadline.as_millis()).unwrap_or(u64::MAX))
        .max()
        .unwrap_or_default()
}
