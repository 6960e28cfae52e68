//! `cmq-host serve`: the receiver.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use cmq_host::{
    DirGrant, EnvGrant, ExpectedFormat, Grants, HttpGrant, IpNet, Receiver, ReceiverOptions,
    ServeAs, Server, Store, StoreLocation, Tls, Token,
};

use crate::byte_size::ByteSize;

#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// The handler component: a .wasm (built with the cmq-guest SDK, or any wasi-http
    /// component), or a .cwasm from `cmq-host compile`.
    component: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The interface to serve the component through: auto (cmq:push/handler when it
    /// exports it, else wasi:http/incoming-handler), push-handler or incoming-handler.
    #[arg(long, default_value = "auto")]
    serve_as: ServeAs,
    /// Push format the CMQ subscription uses: auto, json or simplified.
    #[arg(long, default_value_t = ExpectedFormat::Auto)]
    format: ExpectedFormat,
    /// Longest a guest may run for one message (CMQ waits about 15 s for an answer).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    deadline: Duration,
    /// Linear memory one guest instance may use.
    #[arg(long, default_value = "64MiB")]
    max_memory: ByteSize,
    /// Largest push body accepted; larger ones get 413.
    #[arg(long, default_value = "1MiB")]
    max_body: ByteSize,
    /// Messages handled at once; beyond it pushes get 503 at once [default: 128 per
    /// CPU, at most 1024].
    #[arg(long, default_value_t = ReceiverOptions::default_max_in_flight(), hide_default_value = true)]
    max_in_flight: usize,
    /// Longest a sender may take to send a push body; slower gets 408.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    body_timeout: Duration,
    /// Connections open at once; beyond it new ones wait until one closes.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Secret token pushes must carry, as /push/TOKEN or ?token=TOKEN (at least 16
    /// URL-safe characters). Prefer the environment variable: flags show in `ps`.
    #[arg(long, env = "CMQ_HOST_TOKEN", hide_env_values = true)]
    // Parsed in `serve`, not by clap: clap's error for a bad value quotes it, and a
    // token's value must never reach a log.
    token: Option<String>,
    /// Source network allowed to connect, as CIDR (repeatable); default: any.
    #[arg(long = "allow", value_name = "CIDR")]
    allow: Vec<IpNet>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Grant guests an environment variable: NAME=VALUE, or NAME for the host's own
    /// value (repeatable).
    #[arg(long = "env", value_name = "NAME[=VALUE]")]
    // Parsed in `serve`, like the token: values may be secrets.
    env: Vec<String>,
    /// Grant guests read-only access to a host directory, seen at GUEST_DIR (default:
    /// the same path).
    #[arg(long = "dir", value_name = "HOST_DIR[::GUEST_DIR]")]
    dir: Option<DirGrant>,
    /// Grant guests outbound HTTP to a destination (repeatable). Without a port, only
    /// the scheme's default port (80, 443); `*.DOMAIN` matches its subdomains.
    #[arg(long = "http", value_name = "[SCHEME://]HOST[:PORT]")]
    http: Vec<HttpGrant>,
    #[command(flatten)]
    state: StateArg,
    /// Keep no delivery state: every push runs the guest, with no attempt count, dedupe
    /// or dead-letter journal.
    #[arg(long)]
    no_state: bool,
    /// A message acknowledged this recently is answered 200 without running the guest
    /// again; `off` runs every push.
    #[arg(long, default_value = "24h", value_name = "DURATION|off", value_parser = parse_window)]
    dedupe_window: Window,
    /// The delivery CMQ makes last (4 for BACKOFF_RETRY, 177 for
    /// EXPONENTIAL_DECAY_RETRY): when it fails, the message goes to the dead-letter
    /// journal and is answered 200; 0 never does.
    #[arg(long, default_value_t = 4)]
    max_attempts: u32,
    /// Keep compiled components here between starts, so that the next start of the same
    /// .wasm loads native code instead of compiling (`off`: compile every time)
    /// [default: $XDG_CACHE_HOME/cmq-host, else ~/.cache/cmq-host].
    #[arg(long, value_name = "DIR|off")]
    compile_cache: Option<PathBuf>,
}

/// Where the delivery store is: shared by `serve` and `dead-letter`.
#[derive(Debug, clap::Args)]
pub(crate) struct StateArg {
    /// The delivery store: a SQLite file (created when missing), or a postgres:// URL
    /// that several hosts share. Prefer the environment variable for a URL with a
    /// password: flags show in `ps`.
    #[arg(
        long,
        global = true,
        value_name = "PATH|URL",
        default_value = "cmq-state.db",
        env = "CMQ_HOST_STATE",
        hide_env_values = true
    )]
    // Parsed here, not by clap, whose error would quote a URL's password.
    state: String,
}

impl StateArg {
    pub(crate) fn location(&self) -> anyhow::Result<StoreLocation> {
        self.state
            .parse()
            .map_err(|reason| anyhow::anyhow!("invalid --state (value not shown): {reason}"))
    }
}

/// A dedupe window; `None` is off.
type Window = Option<Duration>;

fn parse_window(text: &str) -> Result<Window, String> {
    if text == "off" {
        return Ok(None);
    }
    let window = humantime::parse_duration(text).map_err(|err| err.to_string())?;
    Ok((!window.is_zero()).then_some(window))
}

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<()> {
    let token = args
        .token
        .map(|token| token.parse::<Token>())
        .transpose()
        .map_err(|reason| anyhow::anyhow!("invalid --token (value not shown): {reason}"))?;
    let env = args
        .env
        .iter()
        .map(|grant| grant.parse::<EnvGrant>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|reason| anyhow::anyhow!("invalid --env: {reason}"))?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let store = if args.no_state {
        None
    } else {
        let location = args.state.location()?;
        let store = runtime.block_on(Store::open(&location))?;
        tracing::info!(store = %location, "delivery store open");
        Some(store)
    };
    let options = ReceiverOptions {
        format: args.format,
        deadline: args.deadline,
        max_memory: args.max_memory.bytes(),
        max_body: args.max_body.bytes(),
        max_in_flight: args.max_in_flight,
        body_timeout: args.body_timeout,
        max_connections: args.max_connections,
        token,
        allow: args.allow,
        grants: Grants {
            env,
            dir: args.dir,
            http: args.http,
        },
        serve_as: args.serve_as,
        store,
        dedupe_window: args.dedupe_window,
        max_attempts: args.max_attempts,
        compile_cache: match args.compile_cache {
            Some(dir) if dir.as_os_str() == "off" => None,
            Some(dir) => Some(dir),
            None => cmq_host::compile_cache_dir(),
        },
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(Tls::from_pem_files(cert, key)?),
        _ => None,
    };
    // Compile and check the component before anything listens: a wrong component is an
    // error at start, not at the first push.
    let started = std::time::Instant::now();
    let receiver = Receiver::load(&args.component, options)?;
    tracing::info!(
        component = %args.component.display(),
        load_ms = started.elapsed().as_millis() as u64,
        loaded = ?receiver.loaded(),
        serves = ?receiver.serves(),
        "component ready"
    );
    if receiver.serves() == ServeAs::IncomingHandler && !args.no_state {
        tracing::info!("a wasi:http component answers for itself: the delivery store is not used");
    }
    runtime.block_on(async {
        let mut server = Server::bind(args.listen, receiver).await?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        if let Some(tls) = tls {
            server = server.with_tls(tls);
        }
        tracing::info!("listening on {scheme}://{}", server.local_addr());
        server.serve(shutdown_signal()).await
    })?;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!("cannot listen for ctrl-c: {err}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(err) => {
                tracing::warn!("cannot listen for SIGTERM: {err}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
