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
        let cap = (self.max_bytes, "memory", "bytes");
        reserve(&mut self.used_bytes, cap, current, desired, maximum)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let cap = (MAX_TABLE_ELEMENTS, "table", "elements");
        reserve(
            &mut self.used_table_elements,
            cap,
            current,
            desired,
            maximum,
        )
    }
}

/// Adds the growth from `current` to `desired` to `used`. Past the resource's own
/// `maximum` the growth fails (the guest sees it); past the cap it traps, naming it.
fn reserve(
    used: &mut usize,
    (cap, what, unit): (usize, &str, &str),
    current: usize,
    desired: usize,
    maximum: Option<usize>,
) -> wasmtime::Result<bool> {
    if maximum.is_some_and(|maximum| desired > maximum) {
        return Ok(false);
    }
    let total = used.saturating_add(desired.saturating_sub(current));
    if total > cap {
        bail!("{what} cap of {cap} {unit} exceeded (growing to {total} {unit})");
    }
    *used = total;
    Ok(true)
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
