//! The store's upkeep, a task of its own from the first delivery on: it writes the
//! deliveries answered before their claim every [`FLUSH_INTERVAL`], and every hour
//! forgets message records older than [`super::Store::keep_records_for`] says
//! (journal entries stay until removed). It ends once every clone of its store is gone.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::backend::Backend;
use super::{Shared, Store};

/// How often the deliveries answered before their claim are written.
pub(super) const FLUSH_INTERVAL: Duration = Duration::from_millis(200);

/// How often old message records are forgotten.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// The least time message records are kept: the default dedupe window, and a day of
/// CMQ's retries after it.
pub(super) const KEEP_RECORDS: Duration = Duration::from_secs(25 * 3600);

/// Starts the upkeep of `store`, once; a store that only serves the `dead-letter`
/// command (no delivery) never starts it, and prunes nothing.
pub(super) fn start(store: &Store) {
    // Read first: every claim comes here, and a write would bounce the flag's cache
    // line between the threads that claim.
    if store.shared.upkeep_started.load(Ordering::Relaxed)
        || store.shared.upkeep_started.swap(true, Ordering::Relaxed)
    {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        store.shared.upkeep_started.store(false, Ordering::Relaxed);
        return;
    };
    let backend = store.backend.clone();
    let location = store.location.clone();
    let shared = Arc::downgrade(&store.shared);
    runtime.spawn(async move {
        let mut flushes = tokio::time::interval(FLUSH_INTERVAL);
        flushes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut prunes = tokio::time::interval(PRUNE_INTERVAL);
        loop {
            let pruning = tokio::select! {
                _ = flushes.tick() => false,
                _ = prunes.tick() => true,
            };
            let Some(store) = alive(&shared, &backend, &location) else {
                return;
            };
            if pruning {
                prune(&store).await;
            } else {
                flush(&store).await;
            }
        }
    });
}

/// The store, while a clone of it is held anywhere else.
fn alive(
    shared: &Weak<Shared>,
    backend: &Arc<dyn Backend>,
    location: &super::StoreLocation,
) -> Option<Store> {
    Some(Store {
        backend: backend.clone(),
        location: location.clone(),
        shared: shared.upgrade()?,
    })
}

/// Writes the deliveries noted and not yet counted; what fails stays noted.
pub(super) async fn flush(store: &Store) {
    let noted = store.shared.uncounted.drain();
    if noted.is_empty() {
        return;
    }
    if let Err(err) = store.count_uncounted(noted.clone()).await {
        tracing::warn!(
            keys = noted.len(),
            "uncounted deliveries not yet written: {err}"
        );
        store.shared.uncounted.restore(noted);
    }
}

async fn prune(store: &Store) {
    let age = Duration::from_millis(store.shared.keep_records_ms.load(Ordering::Relaxed));
    match store.prune(age).await {
        Ok(pruned) if pruned.rows == 0 => {}
        Ok(pruned) => tracing::info!(pruned = pruned.rows, "old message records forgotten"),
        Err(err) => tracing::warn!("pruning the store failed: {err}"),
    }
}
