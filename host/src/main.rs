//! The `cmq-host` command line.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};
use tracing::subscriber::Interest;
use tracing_subscriber::filter::{dynamic_filter_fn, filter_fn};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

mod cli;

use cli::log_format::LogFields;
use cli::log_time::LogTime;
use cli::telemetry::Traces;
use cli::{check, compile, dead_letter, log_output, new, push, run, serve};

/// What `--version` says: compiled components (`.cwasm`, the compile cache) are native
/// code for exactly one wasmtime, so it names that too, and the commit.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("CMQ_HOST_COMMIT"),
    ", wasmtime ",
    env!("CMQ_HOST_WASMTIME"),
    ")"
);

/// Receive Tencent Cloud CMQ pushes and hand each message to a sandboxed wasm component.
#[derive(Debug, Parser)]
#[command(name = "cmq-host", version = VERSION)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines look: human (the default), or json, one object per line.
    #[arg(
        long,
        global = true,
        default_value = "human",
        help_heading = cli::heading::OBSERVABILITY
    )]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve CMQ pushes with a handler component, a fresh instance per message.
    Serve(serve::ServeArgs),
    /// Write a new handler project in Rust, Python or JavaScript: it builds, carries
    /// its own tests, and answers the documented push.
    New(new::NewArgs),
    /// Run one message through a fresh instance of a handler, as serve would for a
    /// push, without a server: prints the guest's output and its decision, and exits
    /// by decision (0 ack, 3 retry, 4 drop, 5 no decision).
    Run(run::RunArgs),
    /// Check what serve would serve, with exactly serve's arguments: read the config
    /// or the flags, compile and instantiate every route's component, and report each,
    /// without opening the store or listening. Exits 1 on the first problem.
    Check(check::CheckArgs),
    /// Compile a component ahead of time to a .cwasm, which serve loads without
    /// compiling (native code: for this machine and this cmq-host only).
    Compile(compile::CompileArgs),
    /// Push messages to an endpoint exactly as CMQ does, retries and filters included,
    /// and report each message's fate. Exits 1 when any message was discarded.
    Push(push::PushArgs),
    /// Read, replay and clear the dead-letter journal: dropped messages, and messages
    /// whose last delivery failed.
    DeadLetter(dead_letter::DeadLetterArgs),
    /// Print a completion script for SHELL, made from these very commands and flags
    /// (bash: `cmq-host completions bash > /etc/bash_completion.d/cmq-host`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page of cmq-host, or of one of its commands, in roff
    /// (`cmq-host manual serve | man -l -`).
    Manual {
        /// The command whose page to print.
        #[arg(value_parser = ["serve", "run", "new", "check", "compile", "push", "dead-letter"])]
        command: Option<String>,
    },
}

/// Where log lines and spans go: for `run`, the guest's lines as it wrote them and the
/// host's warnings; otherwise log lines filtered by `filter`, and with `traces`, the
/// spans of each push the collector takes.
fn install_subscriber(
    run_command: bool,
    log_format: LogFormat,
    filter: EnvFilter,
    traces: Option<&Traces>,
) {
    match traces {
        // The guest's lines as it wrote them, and the host's warnings and errors.
        _ if run_command => tracing_subscriber::registry()
            .with(run::GuestLines.with_filter(filter_fn(|meta| {
                meta.target() == cmq_host::GUEST_OUTPUT_TARGET
                    || *meta.level() <= tracing::Level::WARN
            })))
            .init(),
        // The filter for everything: the push spans (TRACE) stay off at their call sites.
        None => tracing_subscriber::registry()
            .with(filter)
            .with(log_lines(log_format))
            .init(),
        Some(traces) => {
            // A push is traced while the collector takes spans (see `Export::admits`);
            // its stages with it.
            let export = traces.export.clone();
            let spans = tracing_opentelemetry::layer()
                .with_tracer(traces.tracer.clone())
                .with_filter(
                    dynamic_filter_fn(move |meta, cx| {
                        if !meta.is_span() || meta.target() != cmq_host::TRACE_TARGET {
                            false
                        } else if meta.name() == cmq_host::trace::PUSH_SPAN {
                            export.admits()
                        } else {
                            cx.lookup_current().is_some()
                        }
                    })
                    // Asked at each span of a push, and never about anything else: the
                    // other call sites (wasmtime's, hyper's) stay off once and for all.
                    .with_callsite_filter(|meta| {
                        if meta.is_span() && meta.target() == cmq_host::TRACE_TARGET {
                            Interest::sometimes()
                        } else {
                            Interest::never()
                        }
                    }),
                );
            // Log lines are events: the spans are for traces, and would prefix each.
            let logs = log_lines(log_format)
                .with_filter(filter_fn(|meta| meta.is_event()))
                .with_filter(filter);
            tracing_subscriber::registry().with(logs).with(spans).init();
        }
    }
}

/// The `log` crate's level for a filter that shows `hint` at most.
fn log_level(hint: Option<tracing_subscriber::filter::LevelFilter>) -> log::LevelFilter {
    use tracing_subscriber::filter::LevelFilter;
    match hint {
        Some(LevelFilter::OFF) => log::LevelFilter::Off,
        Some(LevelFilter::ERROR) => log::LevelFilter::Error,
        Some(LevelFilter::WARN) => log::LevelFilter::Warn,
        Some(LevelFilter::INFO) => log::LevelFilter::Info,
        Some(LevelFilter::DEBUG) => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    }
}

/// The log's lines, on stderr in batches ([`log_output`]), in `format`.
fn log_lines<S>(format: LogFormat) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(log_output::Stderr::start())
        .with_timer(LogTime);
    match format {
        // Colours for a person at a terminal; plain text for files, pipes and journald.
        LogFormat::Human => logs
            .fmt_fields(LogFields)
            .with_ansi(std::io::stderr().is_terminal())
            .boxed(),
        // One JSON object per line, the event's fields at the top level.
        LogFormat::Json => logs.json().flatten_event(true).boxed(),
    }
}

/// Writes the completion script for `shell` to stdout.
fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "cmq-host", &mut script);
    std::io::stdout().write_all(&script)?;
    Ok(())
}

/// Writes the manual page of cmq-host, or of its command `command`, to stdout.
fn manual(command: Option<&str>) -> anyhow::Result<()> {
    let mut cli = Cli::command();
    // Gives each command the global flags (--log-format, --state) its page lists.
    cli.build();
    let page = match command {
        None => cli,
        Some(name) => {
            let sub = cli
                .find_subcommand(name)
                .ok_or_else(|| anyhow::anyhow!("no command {name}"))?
                .clone();
            sub.name(format!("cmq-host-{name}")).version(VERSION)
        }
    };
    let mut text = Vec::new();
    clap_mangen::Man::new(page).render(&mut text)?;
    std::io::stdout().write_all(&text)?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let log_records = log_level(filter.max_level_hint());
    let traces = match cli.command {
        Command::Serve(_) => Traces::from_env(),
        _ => Ok(None),
    };
    let (traces, traces_failed) = match traces {
        Ok(traces) => (traces, None),
        Err(err) => (None, Some(err)),
    };
    install_subscriber(
        matches!(cli.command, Command::Run(_)),
        cli.log_format,
        filter,
        traces.as_ref(),
    );
    // Records of the `log` crate (wasmtime writes many at trace level per instance) are
    // turned into events only up to what the log shows: `init` lets them all through,
    // and each would cost a trip through every layer's filter to be dropped.
    log::set_max_level(log_records);
    if let Some(err) = traces_failed {
        tracing::error!("{err:#}");
        log_output::flush();
        return ExitCode::FAILURE;
    }
    let outcome = match cli.command {
        Command::Serve(args) => serve::run(args).map(|()| ExitCode::SUCCESS),
        Command::New(args) => new::run(args).map(|()| ExitCode::SUCCESS),
        Command::Run(args) => run::run(args),
        Command::Check(args) => check::run(args).map(|()| ExitCode::SUCCESS),
        Command::Compile(args) => compile::run(args).map(|()| ExitCode::SUCCESS),
        Command::Push(args) => push::run(args),
        Command::DeadLetter(args) => dead_letter::run(args),
        Command::Completions { shell } => completions(shell).map(|()| ExitCode::SUCCESS),
        Command::Manual { command } => manual(command.as_deref()).map(|()| ExitCode::SUCCESS),
    };
    let code = outcome.unwrap_or_else(|err| {
        tracing::error!("{err:#}");
        ExitCode::FAILURE
    });
    if let Some(traces) = traces {
        traces.shutdown();
    }
    log_output::flush();
    code
}
