//! The `cmq-host` binary as a user runs it: `serve` on a real port, a real push, SIGTERM;
//! and start-up errors that must come before anything listens.
//!
//! This file is a test target of the `cmq-host` package (see host/Cargo.toml), so that
//! cargo builds the binary for it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const DOCUMENTED_JSON_BODY: &str = r#"{"TopicOwner":100015036,"topicName":"MyTopic","subscriptionName":"mysubscription","msgId":"6942316962","msgBody":"test message","publishTime":11203432}"#;

fn guest(crate_name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/guests")
        .join(format!("{crate_name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask guests`",
        path.display()
    );
    path
}

fn cmq_host() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cmq-host"));
    command.env("RUST_LOG", "info").env("NO_COLOR", "1");
    command
}

/// Reads the child's stderr on a thread, line by line, so the test can wait for a line.
fn lines(stderr: ChildStderr) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

fn wait_for(lines: &mpsc::Receiver<String>, needle: &str) -> String {
    loop {
        match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => continue,
            Err(err) => panic!("no line with {needle:?} from cmq-host: {err}"),
        }
    }
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn serve_answers_the_documented_push_and_stops_on_sigterm() -> anyhow::Result<()> {
    let (mut child, lines, url) = serve("log_ack", &[])?;
    let response = reqwest::Client::new()
        .post(format!("{url}/cgi"))
        .header("content-type", "text/plain")
        .header("x-cmq-request-id", "2394928734")
        .header("x-cmq-message-id", "6942316962")
        .header("x-cmq-message-tag", "a, b")
        .body(DOCUMENTED_JSON_BODY)
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await?, "ok");
    let handled = wait_for(&lines, "message handled");
    assert!(
        handled.contains("6942316962") && handled.contains("MyTopic"),
        "{handled}"
    );

    signal(&child, "TERM")?;
    let status = tokio::task::spawn_blocking(move || child.0.wait()).await??;
    assert!(
        status.success(),
        "cmq-host exited with {status} after SIGTERM"
    );
    Ok(())
}

/// Starts `cmq-host serve` on a free port; returns it, its stderr lines and its URL.
fn serve(
    guest_name: &str,
    flags: &[&str],
) -> anyhow::Result<(Running, mpsc::Receiver<String>, String)> {
    serve_path(&guest(guest_name), flags)
}

/// The same, for the component at `component`.
fn serve_path(
    component: &std::path::Path,
    flags: &[&str],
) -> anyhow::Result<(Running, mpsc::Receiver<String>, String)> {
    let mut child = cmq_host()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(flags)
        .arg(component)
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().expect("piped stderr");
    let lines = lines(stderr);
    let running = Running(child);
    let listening = wait_for(&lines, "listening on http://");
    let url = listening
        .split("listening on ")
        .nth(1)
        .expect("url")
        .trim()
        .to_owned();
    Ok((running, lines, url))
}

fn signal(child: &Running, name: &str) -> anyhow::Result<()> {
    let sent = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.0.id().to_string())
        .status()?;
    anyhow::ensure!(sent.success(), "kill -{name} failed");
    Ok(())
}

fn cmq_push(client: &reqwest::Client, url: &str, id: &str, tag: &str) -> reqwest::RequestBuilder {
    client
        .post(format!("{url}/cgi"))
        .header("x-cmq-message-id", id)
        .header("x-cmq-message-tag", tag)
        .body(DOCUMENTED_JSON_BODY.replace("6942316962", id))
}

#[tokio::test]
async fn sigterm_lets_in_flight_messages_finish_then_exits_zero() -> anyhow::Result<()> {
    let (mut child, _lines, url) = serve("faulty", &["--deadline", "5s"])?;
    let client = reqwest::Client::new();
    // `slow` takes a second; SIGTERM arrives while it runs.
    let in_flight = tokio::spawn(cmq_push(&client, &url, "drained", "slow").send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&child, "TERM")?;
    let response = in_flight.await??;
    assert_eq!(
        response.status(),
        200,
        "the in-flight message was not finished"
    );
    let status = tokio::task::spawn_blocking(move || child.0.wait()).await??;
    assert!(status.success(), "exit status {status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigkill_mid_burst_no_unanswered_push_was_acknowledged() -> anyhow::Result<()> {
    // Every push whose answer is lost must be redelivered; every push answered 2xx
    // must have been acked or dropped by its guest. The client checks both: each
    // answer it got is the tag's decision, and resending the unanswered ones to a
    // restarted host (as CMQ would) gets them handled.
    let (child, _lines, url) = serve("by_tag", &[])?;
    let client = reqwest::Client::new();
    let case = |i: usize| match i % 3 {
        0 => ("retry", 503),
        1 => ("drop", 200),
        _ => ("", 200),
    };
    let mut pushes = tokio::task::JoinSet::new();
    for i in 0..600 {
        let request = cmq_push(&client, &url, &format!("kill-{i}"), case(i).0);
        pushes.spawn(async move { (i, request.send().await) });
    }
    // Kill only once the burst is under way: some answers are in, many are not.
    let mut results = Vec::new();
    while results.len() < 50 {
        match pushes.join_next().await {
            Some(joined) => results.push(joined?),
            None => break,
        }
    }
    signal(&child, "KILL")?;
    while let Some(joined) = pushes.join_next().await {
        results.push(joined?);
    }
    let mut unanswered = Vec::new();
    let mut answered = 0;
    for (i, result) in results {
        match result {
            Ok(response) => {
                assert_eq!(response.status().as_u16(), case(i).1, "push {i}");
                answered += 1;
            }
            Err(_) => unanswered.push(i),
        }
    }
    drop(child);
    assert!(answered >= 50, "only {answered} answers before SIGKILL");
    assert!(
        !unanswered.is_empty(),
        "SIGKILL came too late to interrupt anything"
    );
    assert_eq!(answered + unanswered.len(), 600);

    let (_child, _lines, url) = serve("by_tag", &[])?;
    for i in unanswered {
        let response = cmq_push(&client, &url, &format!("kill-{i}"), case(i).0)
            .send()
            .await?;
        assert_eq!(
            response.status().as_u16(),
            case(i).1,
            "redelivered push {i}"
        );
    }
    Ok(())
}

#[test]
fn an_invalid_token_is_refused_without_printing_it() -> anyhow::Result<()> {
    let secret = "base64+secret/value==";
    let output = cmq_host()
        .args(["serve", "no-such-file.wasm"])
        .env("CMQ_HOST_TOKEN", secret)
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("invalid --token"), "{stderr}");
    assert!(!stderr.contains(secret), "the token was printed: {stderr}");
    Ok(())
}

#[test]
fn a_file_that_is_not_a_component_fails_before_listening() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("cmq-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("not-a-component.wasm");
    std::fs::write(&path, b"this is not wasm")?;
    let output = cmq_host()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg(&path)
        .output()?;
    std::fs::remove_dir_all(&dir)?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("not-a-component.wasm"), "{stderr}");
    assert!(!stderr.contains("listening on"), "{stderr}");
    Ok(())
}

#[test]
fn a_bad_flag_fails_before_compiling() -> anyhow::Result<()> {
    let output = cmq_host()
        .args(["serve", "--max-memory", "64MB", "no-such-file.wasm"])
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--max-memory") && stderr.contains("unknown unit"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn push_reports_each_message_and_exits_one_when_any_is_discarded() -> anyhow::Result<()> {
    let (_server, _lines, url) = serve("faulty", &[])?;
    let messages = std::env::temp_dir().join(format!("cmq-push-{}.jsonl", std::process::id()));
    std::fs::write(
        &messages,
        "{\"msgId\":\"cli-ack\",\"msgBody\":\"fine\"}\n\
         {\"msgId\":\"cli-retry\",\"msgBody\":\"again\",\"msgTag\":[\"retry\"]}\n",
    )?;
    let run = |extra: &[&str]| {
        cmq_host()
            .args(["push", &format!("{url}/cgi"), "--strategy", "backoff"])
            .args(["--time-scale", "0.0001", "--json"])
            .args(extra)
            .output()
    };
    let mixed = run(&["--messages", messages.to_str().expect("utf-8 temp path")])?;
    std::fs::remove_file(&messages)?;
    assert_eq!(mixed.status.code(), Some(1), "a discard must fail the run");
    let reports: Vec<serde_json::Value> = String::from_utf8(mixed.stdout)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let fate = |id: &str| {
        reports.iter().find(|r| r["msgId"] == id).map(|r| {
            (
                r["outcome"].clone(),
                r["attempts"].as_array().map_or(0, Vec::len),
            )
        })
    };
    assert_eq!(fate("cli-ack"), Some(("delivered".into(), 1)));
    assert_eq!(fate("cli-retry"), Some(("discarded".into(), 4)));

    let delivered = run(&["--generate", "3", "--format", "simplified"])?;
    assert_eq!(delivered.status.code(), Some(0));
    assert_eq!(String::from_utf8(delivered.stdout)?.lines().count(), 3);

    let refused = cmq_host()
        .args(["push", "https://example.com/cgi"])
        .output()?;
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8(refused.stderr)?.contains("must be an http:// URL"));
    Ok(())
}

#[tokio::test]
async fn a_compiled_component_serves_like_the_wasm_it_came_from() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("cmq-compile-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cwasm = dir.join("log_ack.cwasm");
    let compiled = cmq_host()
        .args(["compile", "-o"])
        .arg(&cwasm)
        .arg(guest("log_ack"))
        .output()?;
    assert!(
        compiled.status.success(),
        "{}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    let (child, lines, url) = serve_path(&cwasm, &[])?;
    let response = cmq_push(&reqwest::Client::new(), &url, "from-cwasm", "a")
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await?, "ok");
    assert!(wait_for(&lines, "message handled").contains("from-cwasm"));
    drop(child);

    // Anything else with a .cwasm name is refused before listening.
    std::fs::write(&cwasm, b"\x7fELF not really")?;
    let refused = cmq_host().arg("serve").arg(&cwasm).output()?;
    std::fs::remove_dir_all(&dir)?;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("log_ack.cwasm"), "{stderr}");
    Ok(())
}
