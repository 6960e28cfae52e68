//! The command line explains itself: `--help` grouped under headings with the possible
//! values of every choice, `--version` naming the commit and wasmtime, shell
//! completions and manual pages made from the same definitions, and `check` for a
//! component or for a config whose secrets are elsewhere.
//!
//! A test of the `cmq-host` package, so that cargo builds the binary for it.

mod binary;

use std::process::Output;

use binary::*;

/// `cmq-host ARGS`, run to its end.
fn run(args: &[&str]) -> anyhow::Result<Output> {
    Ok(cmq_host().args(args).output()?)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn serve_help_groups_its_flags_and_lists_every_choice() -> anyhow::Result<()> {
    let output = run(&["serve", "--help"])?;
    assert!(output.status.success());
    let help = stdout(&output);
    let position = |text: &str| {
        help.find(text)
            .unwrap_or_else(|| panic!("no {text:?} in:\n{help}"))
    };
    // Each flag under its heading: the heading comes before the flag, and the next
    // heading after it.
    let headings = [
        ("Listening:", "--listen <ADDR>"),
        ("Handler:", "--format <FORMAT>"),
        ("Limits:", "--max-memory <SIZE>"),
        ("Grants:", "--dir <HOST_DIR[::GUEST_DIR]>"),
        ("Store:", "--state <PATH|URL>"),
        ("Compiled code:", "--compile-cache <DIR|off>"),
        ("Observability:", "--admin-listen <ADDR>"),
    ];
    for (heading, flag) in headings {
        let (at, flag_at) = (position(heading), position(flag));
        assert!(at < flag_at, "{flag} is not under {heading}:\n{help}");
        let next = headings
            .iter()
            .map(|(other, _)| position(other))
            .filter(|other| *other > at)
            .min()
            .unwrap_or(usize::MAX);
        assert!(
            flag_at < next,
            "{flag} is past the heading after {heading}:\n{help}"
        );
    }
    for choices in [
        "[possible values: auto, json, simplified]",
        "[possible values: auto, push-handler, incoming-handler]",
        "[possible values: human, json]",
    ] {
        position(choices);
    }
    position("--deadline <DURATION>");
    position("--body-timeout <DURATION>");
    Ok(())
}

#[test]
fn a_value_outside_a_choice_is_refused_with_the_choices() -> anyhow::Result<()> {
    let output = run(&["serve", "--serve-as", "http", "x.wasm"])?;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("[possible values: auto, push-handler, incoming-handler]"),
        "{stderr}"
    );
    // CMQ's own spellings are still taken.
    let output = run(&["push", "--help"])?;
    let help = stdout(&output);
    assert!(
        help.contains(
            "[possible values: backoff, exponential, BACKOFF_RETRY, EXPONENTIAL_DECAY_RETRY]"
        ),
        "{help}"
    );
    assert!(
        help.contains("[possible values: json, simplified]"),
        "{help}"
    );
    Ok(())
}

#[test]
fn version_names_the_commit_and_wasmtime() -> anyhow::Result<()> {
    let output = run(&["--version"])?;
    assert!(output.status.success());
    let version = stdout(&output);
    let wasmtime = locked_wasmtime();
    assert!(
        version.starts_with(&format!("cmq-host {}", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    assert!(
        version.contains(&format!("wasmtime {wasmtime})")),
        "{version}"
    );
    let commit = version
        .split("(commit ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_default();
    // The checkout's commit, as git itself names it; `unknown` only outside a checkout.
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned());
    match head {
        Some(head) => assert_eq!(commit, head, "{version}"),
        None => assert_eq!(commit, "unknown", "{version}"),
    }
    Ok(())
}

#[test]
fn completions_come_from_the_same_commands_and_flags() -> anyhow::Result<()> {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef cmq-host"),
        ("fish", "complete -c cmq-host"),
    ] {
        let output = run(&["completions", shell])?;
        assert!(output.status.success(), "{shell}");
        let script = stdout(&output);
        assert!(script.contains(marker), "{shell}:\n{script}");
        for word in ["serve", "dead-letter", "max-memory", "dedupe-window"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let output = run(&["completions", "tcsh"])?;
    assert_eq!(output.status.code(), Some(2));
    Ok(())
}

#[test]
fn manual_pages_are_made_for_the_host_and_each_command() -> anyhow::Result<()> {
    let output = run(&["manual"])?;
    assert!(output.status.success());
    let page = stdout(&output);
    // A man page: its title line, and the sections `man` lays out.
    for part in [
        ".TH cmq-host 1",
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH SUBCOMMANDS",
    ] {
        assert!(page.contains(part), "the page lacks {part:?}:\n{page}");
    }
    assert!(page.contains("dead\\-letter"), "{page}");
    let output = run(&["manual", "serve"])?;
    assert!(output.status.success());
    let page = stdout(&output);
    for part in [
        ".TH cmq-host-serve 1",
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH OPTIONS",
    ] {
        assert!(
            page.contains(part),
            "the serve page lacks {part:?}:\n{page}"
        );
    }
    // Its own flags, and the global ones.
    for flag in ["max\\-memory", "dedupe\\-window", "log\\-format", "state"] {
        assert!(page.contains(flag), "the serve page lacks {flag}:\n{page}");
    }
    Ok(())
}

#[test]
fn check_takes_a_component_or_a_config_without_its_secrets() -> anyhow::Result<()> {
    let ack = guest("ack");
    let output = run(&[
        "check",
        "--compile-cache",
        "off",
        ack.to_str().expect("utf-8 path"),
    ])?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = stdout(&output);
    assert!(report.contains(": ok, 1 route"), "{report}");
    assert!(report.contains("PushHandler"), "{report}");

    let dir = cmq_tests::test_dir().join(format!("help-{}", next_number()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("cmq.toml");
    let variable = format!("CMQ_TEST_UNSET_TOKEN_{}", next_number());
    std::fs::write(
        &config,
        format!(
            "[routes.orders]\npath = \"/orders\"\ncomponent = {:?}\ntoken_env = \"{variable}\"\n",
            ack.display()
        ),
    )?;
    let config = config.to_str().expect("utf-8 path");
    // Without the secret, a plain check fails on it, naming the variable...
    let output = run(&["check", "--compile-cache", "off", "--config", config])?;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&variable) && stderr.contains("not set"),
        "{stderr}"
    );
    // ... and --without-secrets checks the rest.
    let output = run(&[
        "check",
        "--compile-cache",
        "off",
        "--without-secrets",
        "--config",
        config,
    ])?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout(&output).contains("orders"), "{}", stdout(&output));
    // A secret that is set must still be valid.
    let output = cmq_host()
        .env(&variable, "short")
        .args([
            "check",
            "--compile-cache",
            "off",
            "--without-secrets",
            "--config",
            config,
        ])
        .output()?;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a valid token"), "{stderr}");
    assert!(
        !stderr.contains("short"),
        "the token's value was printed: {stderr}"
    );
    // CMQ_HOST_TOKEN left in the environment with --config: said so, not blamed on a
    // `--token` nobody typed, and its value not shown.
    let output = cmq_host()
        .env(&variable, "orders-token-0123456789")
        .env("CMQ_HOST_TOKEN", "host-token-0123456789")
        .args(["check", "--compile-cache", "off", "--config", config])
        .output()?;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unset CMQ_HOST_TOKEN"), "{stderr}");
    assert!(!stderr.contains("host-token"), "{stderr}");
    Ok(())
}
