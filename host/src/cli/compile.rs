//! `cmq-host compile`: compile a component ahead of time, so that `serve` starts without
//! compiling it.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use cmq_host::{Receiver, ReceiverOptions};

#[derive(Debug, clap::Args)]
pub(crate) struct CompileArgs {
    /// The handler component (.wasm).
    component: PathBuf,
    /// Where to write the compiled component [default: the component's path with the
    /// extension .cwasm].
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

pub(crate) fn run(args: CompileArgs) -> anyhow::Result<()> {
    let output = args
        .output
        .unwrap_or_else(|| args.component.with_extension("cwasm"));
    anyhow::ensure!(
        output != args.component,
        "the output would overwrite the component: choose another --output"
    );
    let started = Instant::now();
    // Loading checks the component as `serve` would: a handler for a wrong world is
    // refused here, not when the .cwasm is served.
    let receiver = Receiver::load(&args.component, ReceiverOptions::default())?;
    let compiled = receiver.first_route_precompiled()?;
    std::fs::write(&output, &compiled).with_context(|| format!("writing {}", output.display()))?;
    tracing::info!(
        component = %args.component.display(),
        output = %output.display(),
        bytes = compiled.len(),
        compile_ms = started.elapsed().as_millis() as u64,
        serves = ?receiver.first_route_serves(),
        "compiled: serve the .cwasm with this same cmq-host on this machine"
    );
    Ok(())
}
