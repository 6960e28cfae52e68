//! `cmq-host check`: everything `serve` does at start with the same arguments (read the
//! config or the flags, refuse an open endpoint, read the TLS files, compile and
//! instantiate every route's component), without opening the store or listening.

use anyhow::Context as _;
use cmq_host::{Config, ConfigSource, Receiver, Tls};

use crate::cli::serve::ServeArgs;

#[derive(Debug, clap::Args)]
pub(crate) struct CheckArgs {
    /// Exactly `serve`'s arguments: checked as `serve` would check them at start, but
    /// for opening the store and listening.
    #[command(flatten)]
    serve: ServeArgs,
    /// Check the config where its secrets are not: a route whose token variable is
    /// unset is checked as though it had a token (a set one must still be valid).
    #[arg(long, requires = "config")]
    without_secrets: bool,
}

pub(crate) fn run(args: CheckArgs) -> anyhow::Result<()> {
    let source = args.serve.config_source()?;
    let config = match (&source, args.without_secrets) {
        (ConfigSource::File(path), true) => Config::load_without_secrets(path)?,
        (source, _) => source.load()?,
    };
    let checked = match &source {
        ConfigSource::File(path) => path.clone(),
        ConfigSource::Fixed(config) => config
            .component_files()
            .into_iter()
            .next()
            .unwrap_or_default(),
    };
    args.serve.console_token(&config)?;
    if args.serve.requires_authentication() {
        config.check_authenticated(config.listen, &config.allow)?;
    }
    if let Some(files) = &config.tls {
        Tls::from_pem_files(&files.cert, &files.key)?;
    }
    let cache = crate::cli::compile_cache_dir(args.serve.compile_cache.as_deref());
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
