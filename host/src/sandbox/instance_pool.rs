//! Idle guest instances of one route, kept for their next message when the operator
//! opted in (`--max-instance-reuse-count` above 1): at most a route's in-flight cap of
//! them, each dropped once idle for `--idle-instance-timeout`.
//!
//! The pool knows nothing of wasm: it holds whatever the guest gives back, and the
//! guest decides what may come back (see `sandbox/guest.rs`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// How a route reuses its instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reuse {
    /// Messages one instance serves before it is dropped (1: a fresh instance each).
    pub(crate) max_uses: u32,
    /// How long an instance may wait idle for its next message.
    pub(crate) idle_timeout: Duration,
    /// Idle instances kept at most: the route's in-flight cap.
    pub(crate) max_idle: usize,
}

/// The idle instances of one route, newest last.
#[derive(Debug)]
pub(crate) struct Pool<I> {
    inner: Arc<Inner<I>>,
}

#[derive(Debug)]
struct Inner<I> {
    reuse: Reuse,
    idle: Mutex<Vec<(I, Instant)>>,
    /// Instances dropped for idling since the last [`Pool::take`] reported them.
    expired: AtomicU64,
    /// Whether a task is sweeping expired instances out.
    sweeping: AtomicBool,
}

impl<I: Send + 'static> Pool<I> {
    pub(crate) fn new(reuse: Reuse) -> Self {
        Pool {
            inner: Arc::new(Inner {
                reuse,
                idle: Mutex::new(Vec::new()),
                expired: AtomicU64::new(0),
                sweeping: AtomicBool::new(false),
            }),
        }
    }

    pub(crate) fn reuse(&self) -> Reuse {
        self.inner.reuse
    }

    /// The most recently idle instance that has not expired, and how many expired
    /// since the last call (for the metrics).
    pub(crate) fn take(&self) -> (Option<I>, u64) {
        let (taken, stale) = {
            let mut idle = self.inner.lock();
            let stale = self.inner.expired_out(&mut idle, Instant::now());
            (idle.pop().map(|(instance, _)| instance), stale)
        };
        self.inner.count_expired(stale.len());
        drop(stale);
        (taken, self.inner.expired.swap(0, Ordering::Relaxed))
    }

    /// Keeps `instance` for a later message: whether it was kept (it is dropped when
    /// the pool is full), and the idle instances now.
    pub(crate) fn put(&self, instance: I) -> (bool, usize) {
        let (refused, stale, now_idle) = {
            let mut idle = self.inner.lock();
            let now = Instant::now();
            let stale = self.inner.expired_out(&mut idle, now);
            let refused = if idle.len() < self.inner.reuse.max_idle {
                idle.push((instance, now));
                None
            } else {
                Some(instance)
            };
            (refused, stale, idle.len())
        };
        self.inner.count_expired(stale.len());
        drop(stale);
        let kept = refused.is_none();
        drop(refused);
        if kept && !self.inner.sweeping.swap(true, Ordering::AcqRel) {
            self.sweep_later();
        }
        (kept, now_idle)
    }

    /// Idle instances now.
    pub(crate) fn idle(&self) -> usize {
        self.inner.lock().len()
    }

    /// A task that drops expired instances while any are idle, so that an idle route
    /// gives its instances' memory back without waiting for a message.
    fn sweep_later(&self) {
        let pool: Weak<Inner<I>> = Arc::downgrade(&self.inner);
        let every = self.inner.reuse.idle_timeout;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.inner.sweeping.store(false, Ordering::Release);
            return;
        };
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(pool) = pool.upgrade() else { return };
                let (stale, empty) = {
                    let mut idle = pool.lock();
                    let stale = pool.expired_out(&mut idle, Instant::now());
                    (stale, idle.is_empty())
                };
                pool.count_expired(stale.len());
                drop(stale);
                if empty {
                    pool.sweeping.store(false, Ordering::Release);
                    // An instance put back since the check starts another sweep.
                    if pool.lock().is_empty() || pool.sweeping.swap(true, Ordering::AcqRel) {
                        return;
                    }
                }
            }
        });
    }
}

impl<I> Inner<I> {
    fn lock(&self) -> MutexGuard<'_, Vec<(I, Instant)>> {
        // A panic while the lock was held leaves a list of instances still usable.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the instances expired by `now` out of `idle`, to be dropped once the lock
    /// is released. Instances are in the order they became idle, so the expired ones
    /// lead.
    fn expired_out(&self, idle: &mut Vec<(I, Instant)>, now: Instant) -> Vec<(I, Instant)> {
        let fresh = idle
            .iter()
            .position(|(_, since)| now.duration_since(*since) < self.reuse.idle_timeout)
            .unwrap_or(idle.len());
        idle.drain(..fresh).collect()
    }

    fn count_expired(&self, count: usize) {
        self.expired.fetch_add(count as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(max_idle: usize, idle_ms: u64) -> Pool<u32> {
        Pool::new(Reuse {
            max_uses: 8,
            idle_timeout: Duration::from_millis(idle_ms),
            max_idle,
        })
    }

    #[test]
    fn the_newest_idle_instance_goes_first_and_a_full_pool_keeps_none_more() {
        let pool = pool(2, 60_000);
        assert_eq!(pool.put(1), (true, 1));
        assert_eq!(pool.put(2), (true, 2));
        assert_eq!(pool.put(3), (false, 2), "a third kept in a pool of two");
        assert_eq!(pool.take(), (Some(2), 0));
        assert_eq!(pool.take(), (Some(1), 0));
        assert_eq!(pool.take(), (None, 0));
    }

    #[test]
    fn instances_idle_past_the_timeout_are_dropped_and_counted() {
        let pool = pool(4, 20);
        assert_eq!(pool.put(1), (true, 1));
        assert_eq!(pool.put(2), (true, 2));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(pool.put(3), (true, 1), "the expired two were not dropped");
        assert_eq!(pool.take(), (Some(3), 2));
        assert_eq!(pool.idle(), 0);
    }

    #[tokio::test]
    async fn an_idle_route_gives_its_instances_back_without_a_message() {
        let pool = pool(4, 20);
        assert_eq!(pool.put(1), (true, 1));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(pool.idle(), 0, "the sweep left an expired instance");
        assert_eq!(pool.take(), (None, 1));
    }
}
