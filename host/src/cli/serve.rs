//! `cmq-host serve`: the receiver.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use cmq_host::{
    AdminServer, ByteSize, Config, ConfigSource, DedupeWindow, ExpectedFormat, HumanDuration,
    IpNet, OsSignal, Receiver, ReceiverOptions, Reloader, RouteOptions, ServeAs, Server,
    SharedLimits, Store, Tls, TlsFiles, Token,
};

use crate::cli::{GrantArgs, StateArg, heading, one_of};

#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// The handler component: a .wasm (built with the cmq-guest SDK, or any wasi-http
    /// component), or with --allow-precompiled a .cwasm from `cmq-host compile`.
    #[arg(required_unless_present = "config")]
    component: Option<PathBuf>,
    /// Serve the routes of this TOML config instead of one component (see the README's
    /// operations section); the flags below that describe the one component are refused
    /// with it.
    #[arg(long, value_name = "FILE", conflicts_with_all = SINGLE_COMPONENT_FLAGS)]
    config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = cmq_host::DEFAULT_LISTEN, value_name = "ADDR", help_heading = heading::LISTENING)]
    listen: SocketAddr,
    /// The interface to serve the component through: auto (cmq:push/handler when it
    /// exports it, else wasi:http/incoming-handler), push-handler or incoming-handler.
    #[arg(
        long,
        default_value_t = RouteOptions::default().serve_as,
        value_parser = one_of::<ServeAs>(&["auto", "push-handler", "incoming-handler"]),
        help_heading = heading::HANDLER
    )]
    serve_as: ServeAs,
    /// Push format the CMQ subscription uses (auto: decided per push).
    #[arg(
        long,
        default_value_t = RouteOptions::default().format,
        value_parser = one_of::<ExpectedFormat>(&["auto", "json", "simplified"]),
        ignore_case = true,
        help_heading = heading::HANDLER
    )]
    format: ExpectedFormat,
    /// Messages one guest instance serves before it is dropped; above 1, what a guest
    /// keeps in memory survives into its next message (only for handlers written for it).
    #[arg(long, default_value_t = RouteOptions::default().max_instance_reuse_count, value_parser = clap::value_parser!(u32).range(1..), value_name = "N", help_heading = heading::HANDLER)]
    max_instance_reuse_count: u32,
    /// How long an instance kept for reuse may wait idle for its next message.
    #[arg(long, default_value_t = HumanDuration(RouteOptions::default().idle_instance_timeout), value_name = "DURATION", help_heading = heading::HANDLER)]
    idle_instance_timeout: HumanDuration,
    /// Longest a guest may run for one message (CMQ waits about 15 s for an answer).
    #[arg(long, default_value_t = HumanDuration(RouteOptions::default().deadline), value_name = "DURATION", help_heading = heading::HANDLER)]
    deadline: HumanDuration,
    /// Linear memory one guest instance may use.
    #[arg(long, default_value_t = ByteSize(RouteOptions::default().max_memory), value_name = "SIZE", help_heading = heading::LIMITS)]
    max_memory: ByteSize,
    /// Largest push body accepted; larger ones get 413.
    #[arg(long, default_value_t = ByteSize(SharedLimits::default().max_body), value_name = "SIZE", help_heading = heading::LIMITS)]
    max_body: ByteSize,
    /// Messages handled at once; beyond it pushes get 503 at once [default: 128 per
    /// CPU, at most 1024].
    #[arg(long, default_value_t = SharedLimits::default().max_in_flight, hide_default_value = true, value_name = "N", help_heading = heading::LIMITS)]
    max_in_flight: usize,
    /// Longest a sender may take to send a push body; slower gets 408.
    #[arg(long, default_value_t = HumanDuration(SharedLimits::default().body_timeout), value_name = "DURATION", help_heading = heading::LIMITS)]
    body_timeout: HumanDuration,
    /// Connections open at once; beyond it new ones wait until one closes.
    #[arg(long, default_value_t = cmq_host::DEFAULT_MAX_CONNECTIONS, value_name = "N", help_heading = heading::LIMITS)]
    max_connections: usize,
    /// Secret token pushes must carry, as /push/TOKEN or ?token=TOKEN (at least 16
    /// URL-safe characters). Prefer the environment variable: flags show in `ps`.
    #[arg(long, env = "CMQ_HOST_TOKEN", hide_env_values = true, value_name = "TOKEN", help_heading = heading::LISTENING)]
    // Parsed in `serve`, not by clap: clap's error for a bad value quotes it, and a
    // token's value must never reach a log.
    token: Option<String>,
    /// Source network allowed to connect, as CIDR (repeatable); default: any.
    #[arg(long = "allow", value_name = "CIDR", help_heading = heading::LISTENING)]
    allow: Vec<IpNet>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, value_name = "PEM", requires = "tls_key", help_heading = heading::LISTENING)]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert", help_heading = heading::LISTENING)]
    tls_key: Option<PathBuf>,
    #[command(flatten)]
    grants: GrantArgs,
    #[command(flatten)]
    pub(crate) state: StateArg,
    /// Keep no delivery state: every push runs the guest, with no attempt count, dedupe
    /// or dead-letter journal.
    #[arg(long, help_heading = heading::STORE)]
    no_state: bool,
    /// Serve an address other machines can reach with the store on, though some route
    /// takes pushes without a token and no allowlist is set: anyone who reaches the
    /// port can then have a message id acknowledged, making CMQ's real message with
    /// that id a duplicate. Refused unless this is given.
    #[arg(long, help_heading = heading::LISTENING)]
    allow_unauthenticated: bool,
    /// A message acknowledged this recently is answered 200 without running the guest
    /// again; `off` runs every push.
    #[arg(long, default_value_t = DedupeWindow(RouteOptions::default().dedupe_window), value_name = "DURATION|off", help_heading = heading::STORE)]
    dedupe_window: DedupeWindow,
    /// The attempt on which a failure sends the message to the dead-letter journal,
    /// answered 200: one below CMQ's last delivery (3 for BACKOFF_RETRY's 4, 176 for
    /// EXPONENTIAL_DECAY_RETRY's 177), so that a delivery a crashed host never counted
    /// still leaves the message kept; 0 never journals a failure.
    #[arg(long, default_value_t = RouteOptions::default().max_attempts, value_name = "N", help_heading = heading::STORE)]
    max_attempts: u32,
    /// Keep compiled components here between starts, so that the next start of the same
    /// .wasm loads native code instead of compiling (`off`: compile every time)
    /// [default: $XDG_CACHE_HOME/cmq-host, else ~/.cache/cmq-host].
    #[arg(long, value_name = "DIR|off", help_heading = heading::COMPILED_CODE)]
    pub(crate) compile_cache: Option<PathBuf>,
    /// Accept a .cwasm from `cmq-host compile` as the component: native code that runs
    /// outside the sandbox, as is (`allow_precompiled = true` in a config). Without it
    /// only .wasm components are served.
    #[arg(long, help_heading = heading::COMPILED_CODE)]
    allow_precompiled: bool,
    /// Serve /metrics, /healthz and /readyz on this address (keep it private).
    #[arg(long, value_name = "ADDR", help_heading = heading::OBSERVABILITY)]
    admin_listen: Option<SocketAddr>,
    /// Serve the console (/console on the admin listener) to whoever logs in with this
    /// token (at least 16 URL-safe characters). Prefer the environment variable.
    #[arg(long, env = "CMQ_HOST_ADMIN_TOKEN", hide_env_values = true, value_name = "TOKEN", help_heading = heading::OBSERVABILITY)]
    // Parsed in `serve`, not by clap, whose error would quote it.
    admin_token: Option<String>,
}

/// The flags that describe the one component of `serve COMPONENT`: a config file
/// describes its routes itself.
const SINGLE_COMPONENT_FLAGS: [&str; 20] = [
    "component",
    "listen",
    "admin_listen",
    "serve_as",
    "format",
    "deadline",
    "max_memory",
    "max_body",
    "max_in_flight",
    "body_timeout",
    "max_connections",
    "allow",
    "tls_cert",
    "tls_key",
    "env",
    "dir",
    "http",
    "dedupe_window",
    "max_attempts",
    "allow_precompiled",
];

impl ServeArgs {
    /// Where the config comes from: the file of `--config`, or the flags.
    pub(crate) fn config_source(&self) -> anyhow::Result<ConfigSource> {
        Ok(match &self.config {
            // Not a clap conflict: the variable counts as the flag, and clap's error
            // would blame a `--token` nobody typed.
            Some(_) if self.token.is_some() => anyhow::bail!(
                "--token or CMQ_HOST_TOKEN protects the one component of `serve \
                 COMPONENT`; with --config each route names the variable holding its \
                 token (`token_env`): unset CMQ_HOST_TOKEN"
            ),
            Some(path) => ConfigSource::File(path.clone()),
            None => ConfigSource::Fixed(Box::new(flags_config(self)?)),
        })
    }

    /// The console's admin token, if one is given, checked (its value never in an
    /// error) and refused without an admin listener in `config` to serve it on.
    pub(crate) fn console_token(&self, config: &Config) -> anyhow::Result<Option<Token>> {
        let token = self
            .admin_token
            .as_deref()
            .map(|token| token.parse::<Token>())
            .transpose()
            .map_err(|reason| {
                anyhow::anyhow!("invalid --admin-token (value not shown): {reason}")
            })?;
        anyhow::ensure!(
            token.is_none() || config.admin_listen.is_some(),
            "--admin-token (CMQ_HOST_ADMIN_TOKEN) serves the console on the admin listener: \
             give --admin-listen (admin_listen in a config) too"
        );
        Ok(token)
    }

    /// Whether an endpoint others can reach must take pushes with a token only.
    pub(crate) fn requires_authentication(&self) -> bool {
        !self.no_state && !self.allow_unauthenticated
    }
}

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<()> {
    let source = args.config_source()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // A thread out of work writes the log lines its pushes left: one write for many.
        .on_thread_park(crate::cli::log_output::flush)
        .build()
        .context("starting the async runtime")?;
    // Before anything slow: SIGHUP and SIGTERM during start-up must not end the
    // process by their default action. SIGHUP reloads once serving; SIGTERM stops the
    // host as soon as it has started.
    let (hangups, terminations) = {
        let _context = runtime.enter();
        (OsSignal::hangup(), OsSignal::terminate())
    };
    let config = source.load()?;
    // Before anything slow, as the route tokens are checked.
    let console = args.console_token(&config)?;
    let require_authentication = args.requires_authentication();
    if require_authentication {
        config.check_authenticated(config.listen, &config.allow)?;
    }
    // Before the components load, so that a change made meanwhile reloads.
    let reloader = Reloader::new(source, config.clone(), require_authentication);
    let store = runtime.block_on(open_store(&args))?;
    let compile_cache = crate::cli::compile_cache_dir(args.compile_cache.as_deref());
    let tls = match &config.tls {
        Some(files) => Some(Tls::from_pem_files(&files.cert, &files.key)?),
        None => None,
    };
    // Compile and check every component before anything listens: a wrong component is
    // an error at start, not at the first push.
    let started = std::time::Instant::now();
    let receiver = Receiver::from_config(&config, store, compile_cache)?;
    tracing::info!(
        routes = config.routes.len(),
        load_ms = started.elapsed().as_millis() as u64,
        "routes ready"
    );
    if !args.no_state {
        note_unstored_routes(&receiver);
    }
    runtime.block_on(listen(
        &config,
        receiver,
        tls,
        console,
        reloader,
        hangups,
        terminations,
    ))?;
    tracing::info!("stopped");
    Ok(())
}

/// The delivery store `--state` names, opened; none with `--no-state`.
async fn open_store(args: &ServeArgs) -> anyhow::Result<Option<Store>> {
    if args.no_state {
        return Ok(None);
    }
    let location = args.state.location()?;
    let store = Store::open(&location).await?;
    tracing::info!(store = %location, "delivery store open");
    Ok(Some(store))
}

/// Says, at start, that the store does not serve a wasi:http route (the first one).
fn note_unstored_routes(receiver: &Receiver) {
    if let Some(route) = receiver
        .routes()
        .into_iter()
        .find(|route| route.serves == ServeAs::IncomingHandler)
    {
        tracing::info!(
            messaging.cmq.route = route.name,
            "a wasi:http component answers for itself: the delivery store is not used for it"
        );
    }
}

/// The config the flags of `serve COMPONENT` describe.
fn flags_config(args: &ServeArgs) -> anyhow::Result<Config> {
    let token = args
        .token
        .as_deref()
        .map(|token| token.parse::<Token>())
        .transpose()
        .map_err(|reason| anyhow::anyhow!("invalid --token (value not shown): {reason}"))?;
    let component = args
        .component
        .clone()
        .context("a component to serve, or --config")?;
    let options = ReceiverOptions {
        route: RouteOptions {
            format: args.format,
            deadline: args.deadline.0,
            max_memory: args.max_memory.bytes(),
            max_in_flight: None,
            token,
            grants: args.grants.grants()?,
            serve_as: args.serve_as,
            dedupe_window: args.dedupe_window.0,
            max_attempts: args.max_attempts,
            max_instance_reuse_count: args.max_instance_reuse_count,
            idle_instance_timeout: args.idle_instance_timeout.0,
        },
        limits: SharedLimits {
            max_in_flight: args.max_in_flight,
            max_body: args.max_body.bytes(),
            body_timeout: args.body_timeout.0,
        },
        store: None,
        compile_cache: None,
        allow_precompiled: args.allow_precompiled,
    };
    let mut config = Config::single(component, &options);
    config.listen = args.listen;
    config.admin_listen = args.admin_listen;
    config.max_connections = args.max_connections;
    config.allow = args.allow.clone();
    config.tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    Ok(config)
}

/// Binds the push listener (and the admin one, if any), serves until ctrl-c or SIGTERM,
/// reloading on SIGHUP and on changes, then drains the pushes and stops the admin
/// listener last, so that `/readyz` says "draining" while they drain.
async fn listen(
    config: &Config,
    receiver: Receiver,
    tls: Option<Tls>,
    console: Option<Token>,
    reloader: Reloader,
    hangups: OsSignal,
    terminations: OsSignal,
) -> anyhow::Result<()> {
    let mut server = Server::bind(config.listen, receiver)
        .await?
        .limit_connections(config.max_connections)?
        .allow(config.allow.clone());
    let scheme = if tls.is_some() { "https" } else { "http" };
    if let Some(tls) = tls {
        server = server.with_tls(tls);
    }
    let admin = match config.admin_listen {
        Some(addr) => {
            let admin = AdminServer::bind(addr, server.receiver()).await?;
            Some(match console {
                Some(token) => admin.with_console(token),
                None => admin,
            })
        }
        None => None,
    };
    tracing::info!("listening on {scheme}://{}", server.local_addr());
    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin = admin.map(|admin| {
        tracing::info!(
            "metrics and health on http://{}/metrics, /healthz, /readyz",
            admin.local_addr()
        );
        if admin.serves_console() {
            tracing::info!(
                "console on http://{}/console (keep the admin listener private)",
                admin.local_addr()
            );
        }
        tokio::spawn(admin.serve(async {
            let _ = admin_stopped.await;
        }))
    });
    let reloads = tokio::spawn(reloader.run(server.receiver(), hangups));
    // Both listeners are bound and every component is ready.
    crate::cli::systemd::notify("READY=1");
    let served = server.serve(shutdown_signal(terminations)).await;
    reloads.abort();
    let _ = stop_admin.send(());
    if let Some(admin) = admin {
        admin.await??;
    }
    served
}

/// Completes on ctrl-c or SIGTERM (one received since `terminations` was made counts).
async fn shutdown_signal(mut terminations: OsSignal) {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!("cannot listen for ctrl-c: {err}");
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminations.next() => {},
    }
    crate::cli::systemd::notify("STOPPING=1");
}
