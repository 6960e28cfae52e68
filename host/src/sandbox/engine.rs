//! The one wasmtime `Engine` a receiver compiles and runs its guest with, and the epoch
//! ticker that lets a running guest be interrupted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the engine's epoch advances. A running guest yields to the async executor at
/// every tick, so this bounds how late a deadline can be noticed.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Most core instances one handler component may hold. A Rust guest built with `std` has
/// about 22 (most of them the preview1 adapter's shims).
const CORE_INSTANCES_PER_COMPONENT: u32 = 64;

/// Most linear memories and tables one handler component may hold.
const MEMORIES_PER_COMPONENT: u32 = 4;
const TABLES_PER_COMPONENT: u32 = 32;

/// Pages of linear memory and tables kept mapped between instances where the kernel
/// cannot say which pages an instance wrote: each reset then copies or zeroes all of
/// them, and 64 KiB was measured the sweet spot. Where it can (Linux 6.7 and later,
/// `PAGEMAP_SCAN`), all of an instance's memory is kept: only the pages an instance
/// wrote are reset, so a reset costs what that component dirties, and an interpreter
/// that dirties megabytes does not fault them all back on the next message (see
/// [`keep_resident`]).
const KEEP_RESIDENT: usize = 64 << 10;

/// Sizes the engine for a receiver: at most `max_instances` guests alive at once, each
/// with at most `max_memory` bytes of linear memory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EngineSizing {
    pub max_instances: u32,
    pub max_memory: usize,
}

/// Builds the engine: component model, epoch interruption, and the pooling allocator
/// when this machine can reserve its address space, the on-demand allocator otherwise.
pub(crate) fn new_engine(sizing: EngineSizing) -> wasmtime::Result<Engine> {
    let mut config = base_config();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config(sizing)));
    match Engine::new(&config) {
        Ok(engine) => Ok(engine),
        Err(err) => {
            tracing::warn!(
                "pooling allocator unavailable ({err:#}); using the on-demand allocator"
            );
            Engine::new(&base_config())
        }
    }
}

fn base_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config
}

fn pooling_config(sizing: EngineSizing) -> PoolingAllocationConfig {
    let instances = sizing.max_instances.max(1);
    let mut pooling = PoolingAllocationConfig::new();
    pooling
        .total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .total_memories(instances.saturating_mul(MEMORIES_PER_COMPONENT))
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .total_tables(instances.saturating_mul(TABLES_PER_COMPONENT))
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .total_stacks(instances)
        .max_memory_size(sizing.max_memory)
        .linear_memory_keep_resident(keep_resident(sizing.max_memory))
        .table_keep_resident(KEEP_RESIDENT)
        // Resets only the pages a guest touched, where the kernel supports it (6.7+).
        .pagemap_scan(Enabled::Auto);
    pooling
}

/// The linear memory kept mapped between instances, for instances of at most
/// `max_memory` bytes: all of it where only the pages an instance wrote are reset, else
/// [`KEEP_RESIDENT`]. (Measured, BENCHMARKS.md: Python and JavaScript handlers took
/// 130–140 page faults a message with 64 KiB and 37–59 with all, and served 35–67 %
/// more; Rust handlers, which write a few pages, the same.)
fn keep_resident(max_memory: usize) -> usize {
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        max_memory.max(KEEP_RESIDENT)
    } else {
        KEEP_RESIDENT
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a thread of its own, until dropped.
#[derive(Debug)]
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: &Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let thread = std::thread::Builder::new()
            .name("cmq-epoch".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        match weak.upgrade() {
                            Some(engine) => engine.increment_epoch(),
                            None => break,
                        }
                    }
                }
            })?;
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
