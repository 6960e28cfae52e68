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
    let mut child = cmq_host()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg(guest("log_ack"))
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().expect("piped stderr");
    let mut child = Running(child);
    let lines = lines(stderr);
    let listening = wait_for(&lines, "listening on http://");
    let url = listening
        .split("listening on ")
        .nth(1)
        .expect("url")
        .trim()
        .to_owned();

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

    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(child.0.id().to_string())
        .status()?;
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || child.0.wait()).await??;
    assert!(
        status.success(),
        "cmq-host exited with {status} after SIGTERM"
    );
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
