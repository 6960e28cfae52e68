//! The `cmq-host` command line.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

mod cli;

use cli::{check, compile, dead_letter, log_output, push, serve};

/// Receive Tencent Cloud CMQ pushes and hand each message to a sandboxed wasm component.
#[derive(Debug, Parser)]
#[command(name = "cmq-host", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines look: human (the default), or json, one object per line.
    #[arg(
        long,
        global = true,
        default_value = "human",
        value_name = "human|json"
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
    /// Check a config: read it, compile and instantiate every route's component, and
    /// report each, without listening. Exits 1 on the first problem.
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(log_output::Stderr::start());
    match cli.log_format {
        // Colours for a person at a terminal; plain text for files, pipes and journald.
        LogFormat::Human => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        // One JSON object per line, the event's fields at the top level.
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    let outcome = match cli.command {
        Command::Serve(args) => serve::run(args).map(|()| ExitCode::SUCCESS),
        Command::Check(args) => check::run(args).map(|()| ExitCode::SUCCESS),
        Command::Compile(args) => compile::run(args).map(|()| ExitCode::SUCCESS),
        Command::Push(args) => push::run(args),
        Command::DeadLetter(args) => dead_letter::run(args),
    };
    let code = outcome.unwrap_or_else(|err| {
        tracing::error!("{err:#}");
        ExitCode::FAILURE
    });
    log_output::flush();
    code
}
