//! The memory cap of one guest instance: the sum of all its linear memories and tables,
//! not each one on its own, so a component with several memories cannot multiply it.

use wasmtime::{ResourceLimiter, bail};

/// Table elements one instance may hold across its tables (function references; a Rust
/// guest uses a few hundred).
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Counts what an instance has allocated and refuses growth past the cap with a trap
/// whose message says so.
#[derive(Debug)]
pub(crate) struct MemoryCap {
    max_bytes: usize,
    used_bytes: usize,
    used_table_elements: usize,
}

impl MemoryCap {
    pub(crate) fn new(max_bytes: usize) -> Self {
        MemoryCap {
            max_bytes,
            used_bytes: 0,
            used_table_elements: 0,
        }
    }
}

impl ResourceLimiter for MemoryCap {
    // Also called when a memory is created, with `current` 0, so the initial sizes of
    // every memory count too.
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|maximum| desired > maximum) {
            return Ok(false);
        }
        let used = self
            .used_bytes
            .saturating_add(desired.saturating_sub(current));
        if used > self.max_bytes {
            bail!(
                "memory cap of {} bytes exceeded (growing to {used} bytes)",
                self.max_bytes
            );
        }
        self.used_bytes = used;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|maximum| desired > maximum) {
            return Ok(false);
        }
        let used = self
            .used_table_elements
            .saturating_add(desired.saturating_sub(current));
        if used > MAX_TABLE_ELEMENTS {
            bail!("table cap of {MAX_TABLE_ELEMENTS} elements exceeded");
        }
        self.used_table_elements = used;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_counts_every_memory_together() {
        let mut cap = MemoryCap::new(100);
        assert!(cap.memory_growing(0, 60, None).expect("fits"));
        // A second memory of 60 would fit on its own, not on top of the first.
        assert!(cap.memory_growing(0, 60, None).is_err());
        assert!(cap.memory_growing(60, 100, None).expect("fits exactly"));
        assert!(
            !cap.memory_growing(0, 10, Some(5))
                .expect("over the memory's own maximum")
        );
    }
}
