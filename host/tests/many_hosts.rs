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
        let tags: Vec<&str> = Some(tag(i))
            .filter(|tag| !tag.is_empty())
            .into_iter()
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

    drop((host_a_again, host_b, balancer));
    let logs: Vec<serde_json::Value> = [lines_a, lines_b, lines_a_again]
        .into_iter()
        .flat_map(|lines| lines.into_iter().collect::<Vec<_>>())
        .filter_map(|line| serde_json::from_str(&line).ok())
        .collect();

    // What the guests decided, by message id, over both hosts and the restart.
    let mut acked: HashMap<String, usize> = HashMap::new();
    for line in &logs {
        if line["message"] == "message handled" && line["messaging.cmq.decision"] == "ack" {
            let id = line["message_id"].as_str().unwrap_or_default().to_owned();
            *acked.entry(id).or_default() += 1;
        }
    }
    // A host killed between recording an acknowledgement and logging it leaves only
    // the record: the store's word counts too.
    let (client, connection) = tokio_postgres::connect(&state, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    for row in client
        .query(
            "SELECT message_id FROM cmq_messages WHERE state = 'acked'",
            &[],
        )
        .await?
    {
        // The key is a JSON array whose last part is the message id.
        let key: serde_json::Value = serde_json::from_str(row.get(0))?;
        if let Some(id) = key.as_array().and_then(|parts| parts.last()?.as_str()) {
            acked.entry(id.to_owned()).or_insert(1);
        }
    }
    let location: cmq_host::StoreLocation = state.parse().map_err(anyhow::Error::msg)?;
    let journal = cmq_host::Store::open(&location)
        .await?
        .dead_letters()
        .await?;
    let journaled: HashSet<&str> = journal
        .iter()
        .map(|entry| entry.message_id.as_str())
        .collect();

    assert_eq!(done.len(), MESSAGES, "a report per message");
    let pushes: usize = done
        .iter()
        .map(|report| report["attempts"].as_array().map_or(0, Vec::len))
        .sum();
    let mut lost = Vec::new();
    let mut falsely_acknowledged = Vec::new();
    for report in &done {
        let id = report["msgId"].as_str().unwrap_or_default();
        let kept = acked.contains_key(id) || journaled.contains(id);
        match report["outcome"].as_str() {
            Some("delivered") if !kept => falsely_acknowledged.push(id.to_owned()),
            Some("discarded") if !kept => lost.push(id.to_owned()),
            _ => {}
        }
    }
    // Pushes the kill cut off: no answer, or HAProxy's 502 for a host that died.
    let cut_off = done
        .iter()
        .flat_map(|report| report["attempts"].as_array().cloned().unwrap_or_default())
        .filter(|attempt| attempt.get("error").is_some() || attempt["status"] == 502)
        .count();
    let acked_twice = acked.values().filter(|&&runs| runs > 1).count();
    let acked_and_journaled = acked
        .keys()
        .filter(|id| journaled.contains(id.as_str()))
        .count();
    let handled = logs
        .iter()
        .filter(|line| line["message"] == "message handled")
        .count();
    eprintln!(
        "many hosts: {MESSAGES} messages, {pushes} pushes, 1 kill cutting off {cut_off}, {} acked by a guest, {} \
         journaled, duplicates: {acked_twice} acked twice and {acked_and_journaled} acked \
         and journaled, lost: {}, falsely acknowledged: {}",
        acked.len(),
        journaled.len(),
        lost.len(),
        falsely_acknowledged.len()
    );
    // Each handler's messages ended as it decided (or in the journal, for those the
    // kill caught: a claim the dead host held makes the last attempt journal them).
    for i in 0..MESSAGES {
        let id = id(i);
        match tag(i) {
            "retry" | "panic" | "drop" => assert!(
                journaled.contains(id.as_str()),
                "{id} ({}) not journaled: {:?}",
                tag(i),
                done.iter().find(|r| r["msgId"] == id.as_str())
            ),
            _ => assert!(
                acked.contains_key(&id) || journaled.contains(id.as_str()),
                "{id} neither acked nor kept: {:?}",
                done.iter().find(|r| r["msgId"] == id.as_str())
            ),
        }
    }
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert!(
        falsely_acknowledged.is_empty(),
        "2xx without a guest's ack or the journal: {falsely_acknowledged:?}"
    );
    assert!(
        pushed.success(),
        "cmq-host push reported discarded messages: {pushed}"
    );
    assert!(handled > MESSAGES, "the hosts barely handled anything");
    assert!(cut_off > 0, "the kill cut off no push");
    // Duplicates come only from pushes the kill caught mid-run: at most those in flight.
    assert!(
        acked_twice + acked_and_journaled <= 32,
        "more duplicates than pushes in flight"
    );
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
