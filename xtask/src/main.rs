//! `cargo xtask`: the project's tasks, in Rust so they run wherever cargo does.
//! `guests` builds handler components for wasm32-wasip2; `test` is the whole check
//! suite that the README and CI call; `bench` measures the receivers side by side.

mod api;
mod bench;
mod bench_targets;
mod chromium;
mod componentize;
mod compose;
mod guests;
mod haproxy;
mod postgres;
mod prometheus;
mod scaffold;
mod store_growth;
mod system;
mod test;
mod wasmtime_cli;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "\
Usage: cargo xtask <task>

Tasks:
  guests [--crate PATH]... [--script FILE.py|FILE.js]...
                            Build the example guests (Rust, Python, JavaScript), or
                            the given handler crates and files, into
                            target/guests/<crate_name>.wasm (Python and JavaScript:
                            py_<name>.wasm, js_<name>.wasm)
  test                      Run every check: guests, fmt, clippy, tests (starting
                            a PostgreSQL server for the shared store's tests)
  api [--accept]            Check that guest/api.txt records what a handler
                            compiles against (the SDK's public items, the WIT
                            package); --accept writes it anew once CHANGELOG.md
                            says what changed (a step of `test`)
  scaffold                  Walk a newcomer's path in each language with the
                            built target/debug/cmq-host: `cmq-host new` in an
                            empty folder, its own tests, its build, `run` and
                            `serve` on the documented push (a step of `test`)
  bench [--seconds S] [--connections 1,16,64] [--starts N] [--rounds N]
        [--baseline OTHER_CMQ_HOST [--baseline-guest ACK_WASM]]
        [--only TEXT,TEXT]
                            Load the receivers side by side with wrk (--rounds:
                            each row N times, taking turns, the median shown), with
                            --baseline another build's cmq-host beside this one's
                            on the rows the targets compare and the reused ones
                            (--baseline-guest:
                            the ack component it serves, one built from its own
                            tree; --only: the rows whose name holds a TEXT, or
                            whose whole name, commas and all, is one, and
                            the native one); report,
                            with the targets met and not, to stdout and
                            target/bench/report.md
  store-growth [--seconds 300] [--connections 16] [--every 10] [--after 30]
               [--reuse N]
               [--baseline OTHER_CMQ_HOST]
                            The SQLite store's database, -wal and -shm sizes, and
                            the host's RSS, under a long wrk load and after it
                            (--reuse: instances reused for N messages), beside
                            another build's with --baseline; report to stdout and
                            target/bench/store-growth.md
  help                      Print this";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("guests") => match guests::parse_args(&args[1..]) {
            Ok(selection) => guests::run(&selection).map(drop),
            Err(e) => return usage_error(&e),
        },
        Some("test") if args.len() == 1 => test::run(),
        Some("api") if args.len() == 1 => api::check(&repo_root()),
        Some("api") if args[1..] == ["--accept"] => api::accept(&repo_root()),
        Some("scaffold") if args.len() == 1 => scaffold::run(),
        Some("bench") => match bench::parse_args(&args[1..]) {
            Ok(options) => bench::run(&options),
            Err(e) => return usage_error(&e),
        },
        Some("store-growth") => match store_growth::parse_args(&args[1..]) {
            Ok(options) => store_growth::run(&options),
            Err(e) => return usage_error(&e),
        },
        Some("help" | "-h" | "--help") if args.len() == 1 => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(_) => return usage_error(&format!("unknown task or arguments: {}", args.join(" "))),
        None => return usage_error("no task given"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("xtask: {message}\n\n{USAGE}");
    ExitCode::from(2)
}

/// The repository root: xtask always runs from its own source tree.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ has a parent")
        .to_path_buf()
}

/// The cargo that runs this xtask (so the nested builds use the same toolchain).
fn cargo() -> PathBuf {
    std::env::var_os("CARGO").map_or_else(|| "cargo".into(), PathBuf::from)
}
