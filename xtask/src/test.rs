//! `cargo xtask test`: every check, in the order a failure is cheapest to fix.
//! Stops at the first failing step and names it.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{cargo, chromium, guests, haproxy, postgres, prometheus, repo_root};

/// One check: what the failure line calls it, and how to run it.
struct Step {
    name: &'static str,
    run: Box<dyn Fn() -> Result<()>>,
}

pub fn run() -> Result<()> {
    let steps = [
        // Cheap, and a reminder before the long steps: a handler author learns of every
        // change to what they compile against from the changelog.
        Step {
            name: "api (the SDK's public items and the WIT package, against guest/api.txt)",
            run: Box::new(|| crate::api::check(&repo_root())),
        },
        Step {
            name: "guests (cargo xtask guests)",
            // The integration tests load target/guests/*.wasm, so this comes first.
            run: Box::new(|| {
                let every_guest = guests::Selection {
                    require_all: true,
                    ..Default::default()
                };
                guests::run(&every_guest).map(drop)
            }),
        },
        cargo_step("fmt (root workspace)", &["fmt", "--all", "--check"]),
        cargo_step(
            "fmt (guest workspace)",
            &[
                "fmt",
                "--all",
                "--check",
                "--manifest-path",
                "guest/Cargo.toml",
            ],
        ),
        cargo_step(
            "clippy (root workspace)",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
        // The guest crates check natively: wit-bindgen's generated code compiles for
        // any target (only the component-type custom section is wasm32-only), so
        // clippy needs no wasm toolchain here.
        cargo_step(
            "clippy (guest workspace)",
            &[
                "clippy",
                "--manifest-path",
                "guest/Cargo.toml",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
        // The host's docs, private items too, so that the tables of contents and the
        // links a newcomer follows stay true; dependencies are clippy's, already checked.
        cargo_step(
            "docs (cmq-host, private items too, warnings denied)",
            &[
                "doc",
                "-p",
                "cmq-host",
                "--no-deps",
                "--document-private-items",
                "--config",
                "build.rustdocflags=[\"-D\", \"warnings\"]",
            ],
        ),
        Step {
            name: "test (root workspace, with PostgreSQL for the shared store, HAProxy, \
                   Prometheus, Chromium and the wasmtime CLI)",
            run: Box::new(|| {
                let postgres = postgres::ensure()?;
                let wasmtime = crate::wasmtime_cli::ensure(&repo_root())?;
                let haproxy = haproxy::ensure()?;
                let prometheus = prometheus::ensure()?;
                let (browser, driver) = chromium::ensure()?;
                let status = Command::new(cargo())
                    // Every test file runs, and reports, even after one fails.
                    .args(["test", "--workspace", "--no-fail-fast"])
                    .env(postgres::URL_VAR, &postgres.url)
                    .env(haproxy::BIN_VAR, haproxy)
                    .env(prometheus::BIN_VAR, prometheus)
                    .env(chromium::BROWSER_VAR, browser)
                    .env(chromium::DRIVER_VAR, driver)
                    .env(crate::wasmtime_cli::BIN_VAR, wasmtime)
                    .current_dir(repo_root())
                    .status()
                    .context("running cargo test --workspace")?;
                if !status.success() {
                    bail!("cargo test --workspace exited with {status}");
                }
                // The delivery guarantees again, every instance reused for up to 8
                // messages: dedupe, attempts and the journal must not change with it.
                // `--workspace` as above: the same feature set, so nothing is built
                // again (`-p cmq-tests` unifies features differently and rebuilds
                // wasmtime, which on a fresh machine doubles the target folder).
                let status = Command::new(cargo())
                    .args(["test", "--workspace", "--test", "delivery"])
                    .env("CMQ_TEST_REUSE_INSTANCES", "8")
                    .env(postgres::URL_VAR, &postgres.url)
                    .current_dir(repo_root())
                    .status()
                    .context("running the delivery tests with reuse")?;
                if !status.success() {
                    bail!("the delivery tests with reused instances exited with {status}");
                }
                Ok(())
            }),
        },
        // The two crates a handler depends on package as they would be published: the
        // WIT contract inside cmq-guest, metadata, READMEs. Until cmq-message is on
        // crates.io, cmq-guest's verification build takes it from the checkout.
        cargo_step(
            "package (cmq-message)",
            &["package", "--package", "cmq-message", "--allow-dirty"],
        ),
        cargo_step(
            "package (cmq-guest)",
            &[
                "package",
                "--manifest-path",
                "guest/Cargo.toml",
                "--package",
                "cmq-guest",
                "--allow-dirty",
                "--config",
                "patch.crates-io.cmq-message.path=\"message\"",
            ],
        ),
        // The SDK's conversions and doc examples, and the handlers' own tests (its
        // `testing` harness), run natively too.
        cargo_step(
            "test (guest workspace)",
            &["test", "--manifest-path", "guest/Cargo.toml", "--workspace"],
        ),
        // After the root workspace's tests, which built target/debug/cmq-host.
        Step {
            name: "scaffold (cmq-host new: each language tested, built, run and served)",
            run: Box::new(crate::scaffold::run),
        },
    ];

    let total = steps.len();
    let suite = Instant::now();
    for (i, step) in steps.iter().enumerate() {
        eprintln!("xtask test: [{}/{total}] {}", i + 1, step.name);
        let started = Instant::now();
        let result = (step.run)();
        let took = minutes(started.elapsed());
        if let Err(e) = result {
            eprintln!(
                "xtask test: step {}/{total} `{}` failed after {took}",
                i + 1,
                step.name
            );
            return Err(e);
        }
        eprintln!("xtask test: step {}/{total} passed in {took}", i + 1);
    }
    eprintln!(
        "xtask test: all {total} steps passed in {}",
        minutes(suite.elapsed())
    );
    Ok(())
}

/// `12m05s`: how long a step took, as the CI log shows it.
fn minutes(took: Duration) -> String {
    let seconds = took.as_secs();
    format!("{}m{:02}s", seconds / 60, seconds % 60)
}

fn cargo_step(name: &'static str, args: &'static [&'static str]) -> Step {
    Step {
        name,
        run: Box::new(move || {
            let status = Command::new(cargo())
                .args(args)
                .current_dir(repo_root())
                .status()
                .with_context(|| format!("running cargo {}", args.join(" ")))?;
            if !status.success() {
                bail!("cargo {} exited with {status}", args.join(" "));
            }
            Ok(())
        }),
    }
}
