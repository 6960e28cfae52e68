//! The README's command lines, run as written (with the binary under test for `cargo run
//! --release -p cmq-host --`, and a free port for 8080), and their shown output compared:
//! the first command and the push after it, and `cmq-host push`'s example. Every other
//! `cmq-host` line of the README must be named in [`RUN_ELSEWHERE`] with the test that
//! runs it, so that a new line nobody runs fails here.
//!
//! A test of the `cmq-host` package, so that cargo builds the binary for it.

mod binary;

use std::path::Path;

use binary::*;

const RUN_RELEASE: &str = "cargo run --release -p cmq-host -- ";

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md")
}

fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Each run of four-space-indented lines outside fenced blocks, unindented, with lines
/// ending in `\` joined to the next.
fn blocks(markdown: &str) -> Vec<Vec<String>> {
    let mut blocks = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut continued = false;
    let mut fenced = false;
    for line in markdown.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        match line.strip_prefix("    ") {
            Some(code) if !fenced && !code.trim().is_empty() => {
                let (code, more) = match code.trim_end().strip_suffix('\\') {
                    Some(code) => (code.trim_end(), true),
                    None => (code.trim_end(), false),
                };
                match current.last_mut() {
                    Some(last) if continued => {
                        last.push(' ');
                        last.push_str(code.trim_start());
                    }
                    _ => current.push(code.to_owned()),
                }
                continued = more;
            }
            _ if !current.is_empty() => {
                blocks.push(std::mem::take(&mut current));
                continued = false;
            }
            _ => {}
        }
    }
    if !current.is_empty() {
        blocks.push(current);
    }
    blocks
}

/// The block holding a line that starts with `start`, and the block after it.
fn block_and_next(markdown: &str, start: &str) -> (Vec<String>, Vec<String>) {
    let blocks = blocks(markdown);
    let at = blocks
        .iter()
        .position(|block| block.iter().any(|line| line.starts_with(start)))
        .unwrap_or_else(|| panic!("no README block with a line starting {start:?}"));
    (
        blocks[at].clone(),
        blocks.get(at + 1).cloned().unwrap_or_default(),
    )
}

/// A command line's words, as the shell splits them (single quotes only: the README
/// uses no others), without its comment and trailing `&`.
fn words(line: &str) -> Vec<String> {
    let line = line.split(" # ").next().unwrap_or(line).trim();
    let line = line.strip_suffix('&').unwrap_or(line).trim();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    words.push(std::mem::take(&mut word));
                    any = false;
                }
            }
            c => {
                word.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(word);
    }
    words
}

/// The arguments a README line gives `cmq-host`.
fn cmq_host_args(line: &str) -> Vec<String> {
    let command = line
        .split(" && ")
        .find_map(|part| part.trim().strip_prefix(RUN_RELEASE))
        .or_else(|| line.strip_prefix("cmq-host "))
        .unwrap_or_else(|| panic!("not a cmq-host line: {line}"));
    words(command)
}

/// Text between `before` and the next backtick after it.
fn quoted_after<'a>(text: &'a str, before: &str) -> &'a str {
    text.split(before)
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .unwrap_or_else(|| panic!("no {before:?} in the README"))
}

#[tokio::test]
async fn the_first_command_serves_and_the_documented_curl_gets_what_the_readme_shows()
-> anyhow::Result<()> {
    let readme = readme();
    let (first, _) = block_and_next(&readme, "cargo xtask guests && ");
    let mut args = cmq_host_args(&first[0]);
    assert_eq!(args[0], "serve", "{first:?}");
    assert!(
        readme.contains("listening on\n`127.0.0.1:8080`")
            || readme.contains("listening on `127.0.0.1:8080`"),
        "the README says where it listens"
    );
    args.insert(1, "--listen".into());
    args.insert(2, "127.0.0.1:0".into());
    let (_host, lines, url) = spawn_listening(cmq_host().args(&args).current_dir(repo_root()))?;

    let (curl, _) = block_and_next(&readme, "curl -i http://127.0.0.1:8080/cgi");
    let curl = words(&curl[0]);
    let mut request = reqwest::Client::new().post(curl[2].replace("http://127.0.0.1:8080", &url));
    let mut rest = curl[3..].iter();
    let mut body = None;
    while let Some(flag) = rest.next() {
        let value = rest.next().expect("a value after each curl flag");
        match flag.as_str() {
            "-H" => {
                let (name, value) = value.split_once(": ").expect("Name: value");
                request = request.header(name, value);
            }
            "--data" => body = Some(value.clone()),
            other => panic!("a curl flag this test does not know: {other}"),
        }
    }
    let answer = request.body(body.expect("--data")).send().await?;
    let status_line = format!(
        "HTTP/1.1 {} {}",
        answer.status().as_u16(),
        answer.status().canonical_reason().unwrap_or("")
    );
    let body = answer.text().await?;
    assert_eq!(status_line, quoted_after(&readme, "The answer is `"));
    assert_eq!(body, quoted_after(&readme, "with body `"));
    // "the host logs what the guest printed and one line for the message".
    let printed = wait_for(&lines, "test message");
    assert!(printed.contains("6942316962"), "{printed}");
    let handled = wait_for(&lines, "message handled");
    assert!(handled.contains("decision=\"ack\""), "{handled}");
    Ok(())
}

/// Digits (and the `.` between them) as `#`: ids and times vary, the rest may not.
fn shape(line: &str) -> String {
    let mut shaped = String::new();
    for c in line.trim().chars() {
        if c.is_ascii_digit() || (c == '.' && shaped.ends_with('#')) {
            if !shaped.ends_with('#') {
                shaped.push('#');
            }
        } else {
            shaped.push(c);
        }
    }
    shaped
}

#[test]
fn the_push_example_prints_what_the_readme_shows() -> anyhow::Result<()> {
    let readme = readme();
    let (commands, shown) = block_and_next(
        &readme,
        "cargo run --release -p cmq-host -- serve target/guests/faulty.wasm &",
    );
    assert_eq!(commands.len(), 2, "{commands:?}");
    let mut serve = cmq_host_args(&commands[0]);
    serve.insert(1, "--listen".into());
    serve.insert(2, "127.0.0.1:0".into());
    let (_host, _lines, url) = spawn_listening(cmq_host().args(&serve).current_dir(repo_root()))?;
    let push: Vec<String> = cmq_host_args(&commands[1])
        .into_iter()
        .map(|arg| arg.replace("http://127.0.0.1:8080", &url))
        .collect();
    let output = cmq_host().args(&push).current_dir(repo_root()).output()?;
    let printed = String::from_utf8_lossy(&output.stdout);
    let printed: Vec<String> = printed.lines().map(shape).collect();
    let shown: Vec<String> = shown.iter().map(|line| shape(line)).collect();
    assert_eq!(
        printed, shown,
        "what `push` printed, and what the README shows"
    );
    let says_exit = readme.contains("Exit status 0 when every message was delivered");
    assert!(says_exit);
    let delivered = shown.iter().all(|line| line.contains("delivered"));
    assert_eq!(output.status.code(), Some(if delivered { 0 } else { 1 }));
    Ok(())
}

/// The README's other `cmq-host` lines, and the test that runs each (by the start of
/// the line).
const RUN_ELSEWHERE: &[(&str, &str)] = &[
    (
        "cmq-host serve [OPTIONS] COMPONENT.wasm",
        "a synopsis: help.rs checks `serve --help`",
    ),
    (
        "cmq-host dead-letter ",
        "cli.rs: dead_letters_are_listed_shown_replayed_and_purged, \
         dead_letter_list_walks_a_long_journal_page_by_page_with_its_filters",
    ),
    (
        "cmq-host check --config cmq.toml",
        "operations.rs: the_readme_config_checks",
    ),
    (
        "cmq-host serve --config cmq.toml",
        "operations.rs: the README config's routes served",
    ),
    (
        "cmq-host new orders",
        "cargo xtask scaffold runs the block as written",
    ),
    (
        "cmq-host run ../cmq-wasm/",
        "cargo xtask scaffold runs the block as written",
    ),
    (
        "cmq-host serve ../cmq-wasm/",
        "cargo xtask scaffold runs the block as written",
    ),
    ("cmq-host run ", "run.rs: every flag of `run` shown"),
    (
        "cargo run --release -p cmq-host -- serve target/guests/py_by_tag.wasm",
        "languages.rs serves py_by_tag",
    ),
    (
        "cargo run --release -p cmq-host -- serve target/guests/by_tag.wasm",
        "wasi_http.rs serves by_tag both ways",
    ),
];

#[test]
fn every_cmq_host_line_of_the_readme_is_run_by_a_test() {
    let readme = readme();
    let (first, _) = block_and_next(&readme, "cargo xtask guests && ");
    let (push, _) = block_and_next(
        &readme,
        "cargo run --release -p cmq-host -- serve target/guests/faulty.wasm &",
    );
    let run_here: Vec<&String> = first.iter().chain(&push).collect();
    let mut unrun = Vec::new();
    for line in blocks(&readme).into_iter().flatten() {
        let names_host = line.starts_with("cmq-host ") || line.contains(RUN_RELEASE);
        if !names_host || run_here.contains(&&line) {
            continue;
        }
        if !RUN_ELSEWHERE
            .iter()
            .any(|(start, _)| line.starts_with(start))
        {
            unrun.push(line);
        }
    }
    assert!(
        unrun.is_empty(),
        "README lines no test runs (run them, or name the test in RUN_ELSEWHERE): {unrun:#?}"
    );
}

#[test]
fn the_readers_helpers_read_as_the_shell_does() {
    assert_eq!(
        words("curl -H 'a: b c' --data '{\"x\": 1}' # note"),
        ["curl", "-H", "a: b c", "--data", "{\"x\": 1}"]
    );
    assert_eq!(words("serve x.wasm &"), ["serve", "x.wasm"]);
    assert_eq!(
        shape("1926777462: delivered on attempt 3 (200, at 38.217s)"),
        "#: delivered on attempt # (#, at #s)"
    );
    let joined = blocks("x\n\n    a \\\n      b\n    c\n");
    assert_eq!(joined, [vec!["a b".to_owned(), "c".to_owned()]]);
}

#[test]
fn every_kind_of_push_log_line_the_host_writes_is_named_in_the_readme() -> anyhow::Result<()> {
    let readme = readme();
    let logs = readme
        .split("- **Logs**:")
        .nth(1)
        .and_then(|rest| rest.split("\n- **").next())
        .expect("the README's Logs paragraph");
    let mut kinds = Vec::new();
    for file in [
        "push/report.rs",
        "push/delivery.rs",
        "receiver/mod.rs",
        "push/intake.rs",
        "push/verdict.rs",
    ] {
        let source = std::fs::read_to_string(repo_root().join("host/src").join(file))?;
        for start in ["\"message ", "\"push rejected"] {
            for (at, _) in source.match_indices(start) {
                let literal = source[at + 1..].split('"').next().unwrap_or("");
                // The words before a `:` (what follows it varies).
                let kind = literal.split(':').next().unwrap_or(literal).to_owned();
                if !kinds.contains(&kind) {
                    kinds.push(kind);
                }
            }
        }
    }
    assert!(kinds.len() >= 5, "the log lines found: {kinds:?}");
    let unnamed: Vec<&String> = kinds
        .iter()
        .filter(|kind| !logs.contains(&format!("`{kind}")))
        .collect();
    assert!(
        unnamed.is_empty(),
        "log lines the README does not name: {unnamed:?}"
    );
    Ok(())
}
