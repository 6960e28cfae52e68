//! The `cmq-host` command line.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

mod byte_size;
mod compile;
mod dead_letter;
mod push;
mod serve;

/// Receive Tencent Cloud CMQ pushes and hand each message to a sandboxed wasm component.
#[derive(Debug, Parser)]
#[command(name = "cmq-host", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve CMQ pushes with a handler component, a fresh instance per message.
    Serve(serve::ServeArgs),
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
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours for a person at a terminal; plain text for files, pipes and journald.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let outcome = match Cli::parse().command {
        Command::Serve(args) => serve::run(args).map(|()| ExitCode::SUCCESS),
        Command::Compile(args) => compile::run(args).map(|()| ExitCode::SUCCESS),
        Command::Push(args) => push::run(args),
        Command::DeadLetter(args) => dead_letter::run(args),
    };
    outcome.unwrap_or_else(|err| {
        tracing::error!("{err:#}");
        ExitCode::FAILURE
    })
}
