//! A cap on messages in flight, whose permits a reload hands on to the next
//! generation of routes.

use std::sync::Arc;

use tokio::sync::{Semaphore, SemaphorePermit, TryAcquireError};

/// A cap on messages in flight that a reload hands on to the next generation of
/// routes, so that pushes of both count against it together.
#[derive(Debug)]
pub(crate) struct InFlightCap {
    permits: Arc<Semaphore>,
    limit: usize,
}

impl InFlightCap {
    pub(crate) fn new(limit: usize) -> Self {
        InFlightCap {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// A permit, or an error at once when all are taken.
    pub(crate) fn try_acquire(&self) -> Result<SemaphorePermit<'_>, TryAcquireError> {
        self.permits.try_acquire()
    }

    /// The same permits, `limit` of them in all. A smaller limit takes the difference
    /// away as permits come back (a task waits for them; it needs a runtime).
    pub(crate) fn resized(&self, limit: usize) -> Self {
        if limit > self.limit {
            self.permits.add_permits(limit - self.limit);
        } else if limit < self.limit {
            let permits = self.permits.clone();
            let excess = u32::try_from(self.limit - limit).unwrap_or(u32::MAX);
            tokio::spawn(async move {
                // Waiters are served before `try_acquire`: the excess goes first.
                if let Ok(taken) = permits.acquire_many_owned(excess).await {
                    taken.forget();
                }
            });
        }
        InFlightCap {
            permits: self.permits.clone(),
            limit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_resized_cap_shares_its_permits_and_shrinks_as_they_come_back() {
        let cap = InFlightCap::new(2);
        let held = cap.try_acquire().expect("a permit");
        let grown = cap.resized(3);
        let a = grown.try_acquire().expect("a second permit");
        let b = grown.try_acquire().expect("a third permit");
        assert!(grown.try_acquire().is_err(), "three in all");
        drop((held, a, b));
        let shrunk = grown.resized(1);
        tokio::task::yield_now().await;
        let one = shrunk.try_acquire().expect("one permit");
        assert!(shrunk.try_acquire().is_err(), "one in all");
        drop(one);
        assert!(shrunk.try_acquire().is_ok());
    }
}
