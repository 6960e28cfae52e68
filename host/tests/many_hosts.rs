//! Many hosts, one store, a real load balancer: two `cmq-host serve` processes sharing a
//! PostgreSQL store behind HAProxy, `cmq-host push` delivering a few thousand messages
//! with `BACKOFF_RETRY` at a scaled clock to handlers that ack, retry, drop and fail,
//! while one host is SIGKILLed and restarted mid-run. Afterwards every message was
//! acknowledged by a guest or is in the journal; none was lost.
//!
//! HAProxy is Debian's package (`cargo xtask test` installs it and names it in
//! `CMQ_TEST_HAPROXY`); the test starts its own instance on free ports and stops it.
//!
//! A test of the `cmq-host` package, so that cargo builds the binary for it.

mod binary;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use binary::*;

/// Messages pushed.
const MESSAGES: usize = 2000;

/// The handlers' decisions, by tag, in turn (the `faulty` fixture): ack, retry until
/// journaled, drop, trap until journaled, retry twice then ack, and ack after a second
/// (so that the kill finds guests running).
const TAGS: [&str; 6] = ["", "retry", "drop", "panic", "ack-on-3", "slow"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_behind_haproxy_lose_nothing_when_one_is_killed_mid_run() -> anyhow::Result<()> {
    let haproxy = std::env::var("CMQ_TEST_HAPROXY").map_err(|_| {
        anyhow::anyhow!(
            "CMQ_TEST_HAPROXY is not set: run `cargo xtask test`, which installs HAProxy"
        )
    })?;
    let state = fresh_state(true).await?;
    let dir = cmq_tests::test_dir().join(format!("many-hosts-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let [front, port_a, port_b] = [free_port()?, free_port()?, free_port()?];

    let host = |port: u16| {
        let listen = format!("127.0.0.1:{port}");
        let component = guest("faulty");
        spawn_listening(
            cmq_host()
                .args(["serve", "--listen", &listen])
                .args([
                    "--state",
                    state.as_str(),
                    // A claim a killed host leaves holds its message for this and 5 s.
                    "--deadline",
                    "2s",
                    "--log-format",
                    "json",
                ])
                .arg(component),
        )
    };
    let (host_a, lines_a, _) = host(port_a)?;
    let (host_b, lines_b, _) = host(port_b)?;

    let config = dir.join("haproxy.cfg");
    std::fs::write(&config, haproxy_config(front, [port_a, port_b]))?;
    let balancer = Running(
        Command::new(&haproxy)
            .args(["-db", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    wait_until_listening(front)?;

    let messages = dir.join("messages.jsonl");
    let mut file = std::fs::File::create(&messages)?;
    let id = |i: usize| format!("hosts-{}-{i}", std::process::id());
    let tag = |i: usize| TAGS[i % TAGS.len()];
    for i in 0..MESSAGES {
        // `tell`: each guest prints what it decided, so the test counts the guests'
        // own word, not the host's.
        let tags: Vec<&str> = Some(tag(i))
            .filter(|tag| !tag.is_empty())
            .into_iter()
            .chain(["tell"])
            .collect();
        let line =
            serde_json::json!({"msgBody": format!("message {i}"), "msgTag": tags, "msgId": id(i)});
        writeln!(file, "{line}")?;
    }
    drop(file);

    // BACKOFF_RETRY's 10-29 s intervals at a twentieth: 0.5-1.5 s.
    let mut push = cmq_host()
        .args(["push", &format!("http://127.0.0.1:{front}/cgi")])
        .args([
            "--strategy",
            "backoff",
            "--time-scale",
            "0.05",
            "--concurrency",
            "32",
        ])
        .args(["--json", "--messages"])
        .arg(&messages)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = push.stdout.take().expect("piped stdout");
    let (sender, reports) = mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(report) = serde_json::from_str(&line) {
                let _ = sender.send(report);
            }
        }
    });

    // A quarter of the way through, host A dies; a second later it is back.
    let mut done: Vec<serde_json::Value> = Vec::new();
    while done.len() < MESSAGES / 4 {
        done.push(reports.recv_timeout(Duration::from_secs(120))?);
    }
    signal(&host_a, "KILL")?;
    drop(host_a);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (host_a_again, lines_a_again, _) = host(port_a)?;
    done.extend(reports.iter());
    let pushed = tokio::task::spawn_blocking(move || push.wait()).await??;

    // The survivors stop as an operator stops them, so that every line they wrote is
    // read (SIGKILL would lose their last 100 ms); only the killed life's tail is lost.
    for survivor in [&host_a_again, &host_b] {
        signal(survivor, "TERM")?;
    }
    for survivor in [host_a_again, host_b] {
        let mut survivor = survivor;
        let exited = tokio::task::spawn_blocking(move || survivor.0.wait()).await??;
        assert!(exited.success(), "a surviving host exited with {exited}");
    }
    drop(balancer);
    // Each life's JSON lines: 0 is host A until the kill, 1 host B, 2 host A again.
    const KILLED: usize = 0;
    let lives: Vec<Vec<serde_json::Value>> = [lines_a, lines_b, lines_a_again]
        .into_iter()
        .map(|lines| {
            lines
                .into_iter()
                .filter_map(|line| serde_json::from_str(&line).ok())
                .collect()
        })
        .collect();

    // What the guests themselves said they decided, by message id, with the life that
    // ran them.
    let mut guest_said: HashMap<String, Vec<(usize, String)>> = HashMap::new();
    for (life, lines) in lives.iter().enumerate() {
        for line in lines {
            let Some(text) = line["message"].as_str() else {
                continue;
            };
            if let Some(rest) = text.strip_prefix("faulty decided ")
                && let Some((decision, id)) = rest.split_once(" for ")
            {
                guest_said
                    .entry(id.to_owned())
                    .or_default()
                    .push((life, decision.to_owned()));
            }
        }
    }
    let acks = |id: &str| -> Vec<usize> {
        guest_said.get(id).map_or_else(Vec::new, |said| {
            said.iter()
                .filter(|(_, decision)| decision == "ack")
                .map(|(life, _)| *life)
                .collect()
        })
    };
    let location: cmq_host::StoreLocation = state.parse().map_err(anyhow::Error::msg)?;
    let journal = cmq_host::Store::open(&location)
        .await?
        .dead_letters()
        .await?;
    let journaled: HashMap<&str, &str> = journal
        .iter()
        .map(|entry| (entry.message_id.as_str(), entry.reason.as_str()))
        .collect();

    assert_eq!(done.len(), MESSAGES, "a report per message");
    let pushes: usize = done
        .iter()
        .map(|report| report["attempts"].as_array().map_or(0, Vec::len))
        .sum();
    // Pushes the kill cut off: no answer, or HAProxy's 502 for a host that died.
    let cut_off = done
        .iter()
        .flat_map(|report| report["attempts"].as_array().cloned().unwrap_or_default())
        .filter(|attempt| attempt.get("error").is_some() || attempt["status"] == 502)
        .count();
    let handled_by_survivors: HashSet<&str> = lives[1..]
        .iter()
        .flatten()
        .filter(|line| line["message"] == "message handled")
        .filter_map(|line| line["messaging.message.id"].as_str())
        .collect();

    let mut lost = Vec::new();
    let mut falsely_acknowledged = Vec::new();
    // Answered 2xx with no word from a guest: only a guest on the killed host, whose
    // last lines died with it, may have acknowledged these.
    let mut unheard = Vec::new();
    let mut acked_twice = Vec::new();
    let mut ack_tagged_journaled = Vec::new();
    for report in &done {
        let id = report["msgId"].as_str().unwrap_or_default();
        let i: usize = id
            .rsplit('-')
            .next()
            .and_then(|i| i.parse().ok())
            .unwrap_or_else(|| panic!("a report of a message this test did not send: {report}"));
        let acked_by = acks(id);
        let kept = journaled.contains_key(id);
        match report["outcome"].as_str() {
            Some("delivered") if acked_by.is_empty() && !kept => {
                if handled_by_survivors.contains(id) {
                    falsely_acknowledged.push(id.to_owned());
                } else {
                    unheard.push(id.to_owned());
                }
            }
            Some("discarded") if acked_by.is_empty() && !kept => lost.push(id.to_owned()),
            _ => {}
        }
        // Twice is possible only when one guest ran on the host that was killed after
        // its guest acked and before the answer: never twice among the survivors.
        let by_survivors = acked_by.iter().filter(|&&life| life != KILLED).count();
        if by_survivors > 1 || acked_by.len() > 2 {
            acked_twice.push((id.to_owned(), acked_by.clone()));
        }
        let ack_tagged = matches!(TAGS[i % TAGS.len()], "" | "ack-on-3" | "slow");
        if ack_tagged && let Some(reason) = journaled.get(id) {
            ack_tagged_journaled.push((id.to_owned(), reason.to_string()));
        }
    }
    let guest_acks: usize = guest_said
        .values()
        .flatten()
        .filter(|(_, decision)| decision == "ack")
        .count();
    eprintln!(
        "many hosts: {MESSAGES} messages, {pushes} pushes, 1 kill cutting off {cut_off}; the \
         guests acked {guest_acks} times, {} messages journaled ({} of them tagged to be \
         acked); acked twice: {}; 2xx unheard from a guest (the killed host's last lines): \
         {}; lost: {}, falsely acknowledged: {}",
        journaled.len(),
        ack_tagged_journaled.len(),
        acked_twice.len(),
        unheard.len(),
        lost.len(),
        falsely_acknowledged.len()
    );
    // Each handler's messages ended as it decided (or in the journal, for those the
    // kill caught: a claim the dead host held makes the last attempt journal them).
    for i in 0..MESSAGES {
        let id = id(i);
        if matches!(tag(i), "retry" | "panic" | "drop") {
            assert!(
                journaled.contains_key(id.as_str()),
                "{id} ({}) not journaled: {:?}",
                tag(i),
                done.iter().find(|r| r["msgId"] == id.as_str())
            );
            assert!(acks(&id).is_empty(), "{id} ({}) acked by a guest", tag(i));
        }
    }
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(
        falsely_acknowledged.is_empty(),
        "2xx without a guest's ack or the journal, handled by a host that was not \
         killed: {falsely_acknowledged:?}"
    );
    assert!(
        acked_twice.is_empty(),
        "acknowledged by two guests on hosts that were not killed (or three times): \
         {acked_twice:?}"
    );
    // Journaled although tagged to be acked: only for the kill's reasons, and no more
    // than the pushes in flight when it struck (--concurrency 32).
    for (id, reason) in &ack_tagged_journaled {
        assert!(
            reason.starts_with("another push of it was in progress")
                || reason.starts_with("kept while its last delivery ran"),
            "{id}, tagged to be acked, journaled for another reason: {reason}"
        );
    }
    assert!(
        ack_tagged_journaled.len() <= 32,
        "{} messages tagged to be acked were journaled: more than the pushes in flight",
        ack_tagged_journaled.len()
    );
    assert!(
        unheard.len() <= 32,
        "{} answered 2xx with no guest's word: more than the killed host had in flight",
        unheard.len()
    );
    assert!(
        pushed.success(),
        "cmq-host push reported discarded messages: {pushed}"
    );
    assert!(
        guest_acks > MESSAGES / 3,
        "the guests barely acked anything"
    );
    assert!(cut_off > 0, "the kill cut off no push");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn wait_until_listening(port: u16) -> anyhow::Result<()> {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(10),
            "HAProxy did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Round robin over the two hosts, with connection checks every 250 ms: a dead host is
/// out of the rotation at its first failed check, and a push that cannot connect to it
/// is sent to the other (it never reached a host, so that is safe for a POST).
fn haproxy_config(front: u16, hosts: [u16; 2]) -> String {
    let [a, b] = hosts;
    format!(
        "global
    maxconn 1024
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 20s
    retries 2
    option redispatch
frontend push
    bind 127.0.0.1:{front}
    default_backend hosts
backend hosts
    balance roundrobin
    server a 127.0.0.1:{a} check inter 250ms fall 1 rise 1
    server b 127.0.0.1:{b} check inter 250ms fall 1 rise 1
"
    )
}
