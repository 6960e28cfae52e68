//! `cmq-host check`: compile and instantiate a component, or every route's of a config,
//! as `serve` would at start, without listening.

use std::path::PathBuf;

use anyhow::Context as _;
use cmq_host::{Config, Receiver, ReceiverOptions, RouteOptions, ServeAs};

use crate::cli::{heading, one_of};

#[derive(Debug, clap::Args)]
pub(crate) struct CheckArgs {
    /// The handler component to check, as `serve COMPONENT` loads it.
    #[arg(required_unless_present = "config", conflicts_with = "config")]
    component: Option<PathBuf>,
    /// The TOML config to check, every route of it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check the config where its secrets are not: a route whose token variable is
    /// unset is checked as though it had a token (a set one must still be valid).
    #[arg(long, requires = "config")]
    without_secrets: bool,
    /// The interface to check the component against (see `serve --help`).
    #[arg(
        long,
        default_value_t = RouteOptions::default().serve_as,
        value_parser = one_of::<ServeAs>(&["auto", "push-handler", "incoming-handler"]),
        conflicts_with = "config",
        help_heading = heading::HANDLER
    )]
    serve_as: ServeAs,
    /// Accept a .cwasm from `cmq-host compile` as the component.
    #[arg(long, conflicts_with = "config", help_heading = heading::COMPILED_CODE)]
    allow_precompiled: bool,
    /// Where compiled components are kept (`off`: compile every time) [default:
    /// $XDG_CACHE_HOME/cmq-host, else ~/.cache/cmq-host]. Checking fills it, so that
    /// the next `serve` starts from it.
    #[arg(long, value_name = "DIR|off", help_heading = heading::COMPILED_CODE)]
    compile_cache: Option<PathBuf>,
}

pub(crate) fn run(args: CheckArgs) -> anyhow::Result<()> {
    let (config, checked) = match (&args.config, &args.component) {
        (Some(path), _) if args.without_secrets => (Config::load_without_secrets(path)?, path),
        (Some(path), _) => (Config::load(path)?, path),
        (None, Some(component)) => {
            let options = ReceiverOptions {
                route: RouteOptions {
                    serve_as: args.serve_as,
                    ..RouteOptions::default()
                },
                allow_precompiled: args.allow_precompiled,
                ..ReceiverOptions::default()
            };
            (Config::single(component.clone(), &options), component)
        }
        (None, None) => anyhow::bail!("a component to check, or --config"),
    };
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
        checked.display(),
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
