//! `cmq-host check`: read a config and compile and instantiate every route's component,
//! as `serve` would at start, without listening.

use std::path::PathBuf;

use anyhow::Context as _;
use cmq_host::{Config, Receiver};

#[derive(Debug, clap::Args)]
pub(crate) struct CheckArgs {
    /// The TOML config to check.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Where compiled components are kept (`off`: compile every time) [default:
    /// $XDG_CACHE_HOME/cmq-host, else ~/.cache/cmq-host]. Checking fills it, so that
    /// the next `serve` starts from it.
    #[arg(long, value_name = "DIR|off")]
    compile_cache: Option<PathBuf>,
}

pub(crate) fn run(args: CheckArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let cache = crate::cli::compile_cache_dir(args.compile_cache.as_deref());
    let receiver = Receiver::from_config(&config, None, cache)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(receiver.check())?;
    let routes = receiver.routes();
    println!(
        "{}: ok, {} route{}, listening on {}",
        args.config.display(),
        routes.len(),
        if routes.len() == 1 { "" } else { "s" },
        config.listen
    );
    for route in routes {
        println!(
            "  {:<16} {:<24} {} ({:?}, {:?} in {} ms)",
            route.name,
            route.path,
            route.component.display(),
            route.serves,
            route.loaded,
            route.load_time.as_millis()
        );
    }
    Ok(())
}
