//! `cmq-host run`: one message through a real compiled guest, no server; its output on
//! stdout and stderr, its decision, and an exit status by decision.
//!
//! A test of the `cmq-host` package, so that cargo builds the binary for it.

mod binary;

use std::io::Write as _;
use std::process::{Output, Stdio};

use binary::*;

fn run(guest_name: &str, args: &[&str]) -> anyhow::Result<Output> {
    Ok(cmq_host()
        .args(["run", "--compile-cache", "off"])
        .arg(guest(guest_name))
        .args(args)
        .output()?)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_documented_push_is_run_by_default_and_the_guest_s_lines_are_its_output() -> anyhow::Result<()>
{
    let output = run("log_ack", &[])?;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let text = stdout(&output);
    // What the guest printed, as it printed it, then the decision.
    for line in [
        "message id: 6942316962",
        "request id: 2394928734",
        "topic name: MyTopic",
        "subscription: mysubscription",
        "publish time: 11203432",
        "format: Json",
        "body (12 bytes): test message",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} in {text}");
    }
    assert_eq!(text.lines().last(), Some("decision: ack"), "{text}");
    Ok(())
}

#[test]
fn each_decision_has_its_exit_status() -> anyhow::Result<()> {
    for (tag, code, decision) in [
        ("none", 0, "decision: ack"),
        ("retry", 3, "decision: retry: tagged retry"),
        ("drop", 4, "decision: drop: tagged drop"),
        ("panic", 5, "decision: no decision: "),
        // An error the handler returned: a retry with its text and cause.
        (
            "error",
            3,
            "decision: retry: reading FAULTY_NOT_GRANTED: environment variable not found",
        ),
    ] {
        let output = run("faulty", &["--tag", tag])?;
        assert_eq!(output.status.code(), Some(code), "{tag}: {output:?}");
        assert!(stdout(&output).starts_with(decision), "{tag}: {output:?}");
    }
    // The deadline is serve's: a guest that loops is stopped.
    let output = run("faulty", &["--tag", "loop", "--deadline", "200ms"])?;
    assert_eq!(output.status.code(), Some(5), "{output:?}");
    assert!(stdout(&output).contains("deadline"), "{output:?}");
    Ok(())
}

#[test]
fn the_message_comes_from_flags_or_from_a_push_as_cmq_sends_it() -> anyhow::Result<()> {
    let output = run(
        "log_ack",
        &[
            "--format",
            "simplified",
            "--body",
            "plain text",
            "--tag",
            "a",
            "--tag",
            "b",
            "--message-id",
            "m-7",
            "--attempt",
            "2",
        ],
    )?;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let text = stdout(&output);
    for line in [
        "message id: m-7",
        "tags: a, b",
        "topic name: -",
        "format: Simplified",
        "body (10 bytes): plain text",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} in {text}");
    }

    // A push body from stdin, exactly as CMQ POSTs it.
    let mut child = cmq_host()
        .args(["run", "--compile-cache", "off", "--push", "-"])
        .args(["--message-id", "from-stdin"])
        .arg(guest("log_ack"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().expect("stdin").write_all(
        br#"{"TopicOwner":1,"topicName":"Orders","subscriptionName":"s","msgId":"from-stdin","msgBody":"{\"id\":1}","publishTime":5}"#,
    )?;
    let output = child.wait_with_output()?;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let text = stdout(&output);
    assert!(text.contains("topic name: Orders"), "{text}");
    assert!(text.contains("body (8 bytes): {\"id\":1}"), "{text}");

    // A push serve would refuse is refused, with why.
    let bad = cmq_tests::test_dir().join(format!("bad-push-{}.json", next_number()));
    std::fs::write(&bad, "[1, 2]")?;
    let output = run("log_ack", &["--push", bad.to_str().expect("UTF-8")])?;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not a CMQ json push"), "{stderr}");
    assert!(output.stdout.is_empty(), "{output:?}");
    Ok(())
}

#[test]
fn the_guest_gets_only_the_grants_given() -> anyhow::Result<()> {
    // The probe guest acks when it can read `PROBE_VAR`, and asks for a retry when not.
    let probe = |grant: &[&str]| {
        cmq_host()
            .env("PROBE_VAR", "granted")
            .args(["run", "--compile-cache", "off", "--tag", "env"])
            .args(grant)
            .arg(guest("probe"))
            .output()
    };
    let without = probe(&[])?;
    assert_eq!(without.status.code(), Some(3), "{without:?}");
    assert!(stdout(&without).contains("denied"), "{without:?}");
    let with = probe(&["--env", "PROBE_VAR"])?;
    assert_eq!(with.status.code(), Some(0), "{with:?}");
    Ok(())
}
