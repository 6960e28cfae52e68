//! The `cmq-host` binary as a user runs it: `serve` on a real port, a real push, SIGTERM;
//! and start-up errors that must come before anything listens.
//!
//! A test of the `cmq-host` package, so that cargo builds the binary for it.

mod binary;

use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use binary::*;

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

#[tokio::test]
async fn systemd_hears_ready_once_the_host_answers_and_stopping_at_sigterm() -> anyhow::Result<()> {
    use std::os::unix::net::UnixDatagram;
    let socket_path = cmq_tests::test_dir().join(format!("notify-{}.sock", next_number()));
    let socket = UnixDatagram::bind(&socket_path)?;
    socket.set_read_timeout(Some(std::time::Duration::from_secs(60)))?;
    let mut command = cmq_host();
    command
        .env("NOTIFY_SOCKET", &socket_path)
        .args(["serve", "--no-state", "--listen", "127.0.0.1:0"])
        .arg(guest("ack"));
    let (child, _lines, url) = spawn_listening(&mut command)?;
    let mut message = [0; 64];
    let length = socket.recv(&mut message)?;
    assert_eq!(&message[..length], b"READY=1");
    // Ready means answering.
    let answer = cmq_push(&reqwest::Client::new(), &url, "after-ready", "")
        .send()
        .await?;
    assert_eq!(answer.status(), 200);
    signal(&child, "TERM")?;
    let length = socket.recv(&mut message)?;
    assert_eq!(&message[..length], b"STOPPING=1");
    Ok(())
}

/// Starts `serve` compiling `log_ack` (no cache), and sends `signal_name` once the
/// component has begun loading, long before anything listens.
fn signal_during_start_up(signal_name: &str) -> anyhow::Result<(Running, mpsc::Receiver<String>)> {
    let mut child = cmq_host()
        .args(["serve", "--listen", "127.0.0.1:0", "--no-state"])
        .args(["--compile-cache", "off"])
        .arg(guest("log_ack"))
        .stderr(Stdio::piped())
        .spawn()?;
    let lines = lines(child.stderr.take().expect("piped stderr"));
    let running = Running(child);
    wait_for(&lines, "loading component");
    signal(&running, signal_name)?;
    Ok((running, lines))
}

#[tokio::test]
async fn sighup_during_start_up_reloads_once_serving_instead_of_killing() -> anyhow::Result<()> {
    let (mut child, lines) = signal_during_start_up("HUP")?;
    let url = listening_url(&wait_for(&lines, "listening on http://"));
    wait_for(&lines, "reloading: SIGHUP");
    let response = cmq_push(&reqwest::Client::new(), &url, "after-hup", "")
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    assert!(child.0.try_wait()?.is_none(), "cmq-host ended");
    Ok(())
}

#[tokio::test]
async fn sigterm_during_start_up_stops_cleanly() -> anyhow::Result<()> {
    let (mut child, lines) = signal_during_start_up("TERM")?;
    let status = tokio::task::spawn_blocking(move || child.0.wait()).await??;
    // Not killed by the signal: it finished starting, drained nothing and stopped.
    assert_eq!(status.code(), Some(0), "{status}");
    let rest: Vec<String> = lines.iter().collect();
    assert!(
        rest.iter().any(|line| line.contains("stopped")),
        "{rest:#?}"
    );
    Ok(())
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

#[tokio::test]
async fn every_log_line_of_a_burst_is_written_before_sigterm_ends_the_host() -> anyhow::Result<()> {
    // Log lines are written in batches: none may be left in the buffer at exit.
    let (mut child, lines, url) = serve("faulty", &["--no-state"])?;
    let client = reqwest::Client::new();
    let burst: Vec<String> = (0..300).map(|n| format!("logged-{n}")).collect();
    let mut pushes = tokio::task::JoinSet::new();
    for id in &burst {
        pushes.spawn(cmq_push(&client, &url, id, "ack").send());
    }
    while let Some(answer) = pushes.join_next().await {
        assert_eq!(answer??.status(), 200);
    }
    signal(&child, "TERM")?;
    let status = tokio::task::spawn_blocking(move || child.0.wait()).await??;
    assert!(status.success(), "exit status {status}");
    let logged: Vec<String> = lines.into_iter().collect();
    for id in &burst {
        let needle = format!("messaging.message.id=\"{id}\"");
        assert!(
            logged
                .iter()
                .any(|line| line.contains(&needle) && line.contains("message handled")),
            "no log line for {id} among {} lines",
            logged.len()
        );
    }
    assert!(
        logged.last().is_some_and(|line| line.contains("stopped")),
        "the last line is not the stop: {:?}",
        logged.last()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigkill_mid_burst_the_store_holds_every_answered_push() -> anyhow::Result<()> {
    // Every push whose answer is lost must be redelivered; every push answered 2xx
    // must have been acked or dropped by its guest, and be in the store as such after
    // a restart: acked ones as acknowledged (later pushes are duplicates), dropped ones
    // in the journal. Against each backend.
    for postgres in [false, true] {
        let state = fresh_state(postgres).await?;
        // A short deadline keeps the claims the kill leaves behind short: they hold off
        // redeliveries for the deadline and 5 s.
        // Room for the whole burst in flight.
        let flags = [
            "--state",
            state.as_str(),
            "--deadline",
            "2s",
            "--max-in-flight",
            "1024",
            // Redeliveries below are CMQ's, however many: none is its last.
            "--max-attempts",
            "0",
        ];
        let (child, _lines, url) = serve("by_tag", &flags)?;
        let client = reqwest::Client::new();
        let case = |i: usize| match i % 3 {
            0 => ("retry", 503),
            1 => ("drop", 200),
            _ => ("", 200),
        };
        let answer_body = |i: usize| if case(i).1 == 200 { "ok" } else { "retry" };
        let id = |i: usize| format!("kill-{postgres}-{i}");
        let mut pushes = tokio::task::JoinSet::new();
        for i in 0..600 {
            let request = cmq_push(&client, &url, &id(i), case(i).0);
            pushes.spawn(async move {
                let answer = async {
                    let response = request.send().await?;
                    let status = response.status().as_u16();
                    Ok::<_, reqwest::Error>((status, response.text().await?))
                };
                (i, answer.await)
            });
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
        let mut acknowledged = Vec::new();
        for (i, result) in results {
            match result {
                Ok((status, body)) if status == case(i).1 && body == answer_body(i) => {
                    if status == 200 {
                        acknowledged.push(i);
                    }
                }
                // More at once than --max-in-flight: CMQ redelivers these too.
                Ok((503, body)) if body == "overloaded" => unanswered.push(i),
                Ok((status, body)) => panic!("push {i}: answered {status} {body}"),
                Err(_) => unanswered.push(i),
            }
        }
        drop(child);
        let answered = 600 - unanswered.len();
        assert!(answered >= 50, "only {answered} answers before SIGKILL");
        assert!(
            !unanswered.is_empty(),
            "SIGKILL came too late to interrupt anything"
        );

        // The store, reopened after the kill, has every acknowledgement.
        let location: cmq_host::StoreLocation = state.parse().map_err(anyhow::Error::msg)?;
        let store = cmq_host::Store::open(&location).await?;
        let journal = store.dead_letters().await?;
        for &i in &acknowledged {
            if case(i).0 == "drop" {
                assert!(
                    journal.iter().any(|entry| entry.message_id == id(i)),
                    "postgres={postgres}: dropped push {i} answered 200 but not journaled"
                );
            } else {
                // JSON pushes are keyed within their subscription.
                let record = store.record(&documented_key(&id(i))).await?;
                assert_eq!(
                    record.map(|r| r.state),
                    Some("acked".to_owned()),
                    "postgres={postgres}: push {i} answered 200 but not recorded as acked"
                );
            }
        }
        if let cmq_host::StoreLocation::Sqlite(path) = &location {
            let db = rusqlite::Connection::open(path)?;
            let check: String = db.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
            assert_eq!(check, "ok");
        }

        // Restarted on the same store: the unanswered ones, redelivered as CMQ would,
        // are handled; the acknowledged ones are duplicates. A push that was running
        // when the host died is answered `503 in progress` until its claim's lease is
        // over, and CMQ asks again.
        let (_child, lines, url) = serve("by_tag", &flags)?;
        // Acknowledged pushes, before the kill and after the restart (under a heavy
        // load, the answers before the kill may hold none).
        let mut acked: Vec<usize> = acknowledged
            .iter()
            .copied()
            .filter(|&i| case(i).0.is_empty())
            .collect();
        for i in unanswered {
            let mut tries = 0;
            let answer = loop {
                let response = cmq_push(&client, &url, &id(i), case(i).0).send().await?;
                let answer = (response.status().as_u16(), response.text().await?);
                if answer != (503, "in progress".to_owned()) || tries == 10 {
                    break answer;
                }
                tries += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            };
            assert_eq!(
                answer,
                (case(i).1, answer_body(i).to_owned()),
                "redelivered push {i}"
            );
            if case(i).0.is_empty() {
                acked.push(i);
            }
        }
        let acked = *acked
            .first()
            .expect("an acked push, before or after the kill");
        let response = cmq_push(&client, &url, &id(acked), "").send().await?;
        assert_eq!(response.status(), 200);
        // The lines of the redeliveries above may still be unread (some of them
        // duplicates too, acked before the kill): this one's own.
        let quoted = format!("\"{}\"", id(acked));
        let line = loop {
            let line = wait_for(&lines, "answered without running the guest");
            if line.contains(&quoted) {
                break line;
            }
        };
        assert!(
            line.contains("messaging.cmq.decision=\"duplicate\""),
            "{line}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn dead_letters_are_listed_shown_replayed_and_purged() -> anyhow::Result<()> {
    for postgres in [false, true] {
        let state = fresh_state(postgres).await?;
        // Every failure is on the last attempt: it goes to the journal at once.
        let (_faulty, _lines, url) = serve("faulty", &["--state", &state, "--max-attempts", "1"])?;
        let client = reqwest::Client::new();
        for (id, tag) in [
            ("dl-retry", "retry"),
            ("dl-again", "retry"),
            ("dl-drop", "drop"),
        ] {
            let response = cmq_push(&client, &url, id, tag).send().await?;
            assert_eq!(response.status(), 200, "{id}");
        }
        let dead_letter = |args: &[&str]| {
            cmq_host()
                .arg("dead-letter")
                .args(args)
                .args(["--state", &state])
                .output()
        };
        let listed = dead_letter(&["list", "--json"])?;
        assert!(listed.status.success());
        let entries: Vec<serde_json::Value> = String::from_utf8(listed.stdout)?
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        let ids: Vec<&str> = entries
            .iter()
            .filter_map(|e| e["message_id"].as_str())
            .collect();
        assert_eq!(ids, ["dl-retry", "dl-again", "dl-drop"]);
        assert_eq!(entries[2]["reason"], "dropped: tagged drop");
        assert!(
            entries.iter().all(|e| e["route"] == "default"),
            "{entries:?}"
        );
        let entry_id = |n: usize| entries[n]["id"].to_string();

        let shown = dead_letter(&["show", &entry_id(0)])?;
        let shown = String::from_utf8(shown.stdout)?;
        assert!(shown.contains("message id:  dl-retry"), "{shown}");
        assert!(shown.contains("route:       default"), "{shown}");
        assert!(
            shown.contains(&DOCUMENTED_JSON_BODY.replace("6942316962", "dl-retry")),
            "{shown}"
        );

        // Replayed through a component that still asks for a retry: kept, exit 1.
        let faulty = guest("faulty");
        let faulty = faulty.to_str().expect("a UTF-8 path");
        let kept = dead_letter(&["replay", &entry_id(0), "--component", faulty])?;
        assert_eq!(kept.status.code(), Some(1));
        assert!(String::from_utf8(kept.stdout)?.contains("retry: tagged retry; kept"));
        // Through one that acks: removed.
        let ack = guest("ack");
        let ack = ack.to_str().expect("a UTF-8 path");
        let replayed = dead_letter(&["replay", &entry_id(0), "--component", ack])?;
        assert!(replayed.status.success(), "{replayed:?}");
        // Pushed to an endpoint that acks: removed.
        let (_ack_host, _ack_lines, ack_url) = serve("ack", &["--no-state"])?;
        let pushed = dead_letter(&["replay", &entry_id(1), "--url", &format!("{ack_url}/cgi")])?;
        assert!(pushed.status.success(), "{pushed:?}");

        let left = String::from_utf8(dead_letter(&["list"])?.stdout)?;
        assert!(
            left.contains("dl-drop") && !left.contains("dl-retry"),
            "{left}"
        );
        assert!(!left.contains("dl-again"), "{left}");
        let purged = String::from_utf8(dead_letter(&["purge"])?.stdout)?;
        assert_eq!(purged.trim(), "removed 1 entries");
        let empty = String::from_utf8(dead_letter(&["list"])?.stdout)?;
        assert_eq!(empty.trim(), "the dead-letter journal is empty");
    }
    // A store that does not exist is an error, not an empty journal.
    let missing = cmq_tests::test_dir().join("no-such-store.db");
    let output = cmq_host()
        .args(["dead-letter", "list", "--state"])
        .arg(&missing)
        .output()?;
    assert!(!output.status.success());
    assert!(String::from_utf8(output.stderr)?.contains("no store at"));
    assert!(!missing.exists());
    Ok(())
}

#[tokio::test]
async fn dead_letter_list_walks_a_long_journal_page_by_page_with_its_filters() -> anyhow::Result<()>
{
    for postgres in [false, true] {
        let state = fresh_state(postgres).await?;
        let (faulty, _lines, url) = serve("faulty", &["--state", &state, "--max-attempts", "1"])?;
        let client = reqwest::Client::new();
        // 150 entries, more than two of the list's pages: every third a drop.
        let mut pushed = Vec::new();
        for n in 0..150 {
            let id = format!("walk-{n}");
            let tag = if n % 3 == 2 { "drop" } else { "retry" };
            let response = cmq_push(&client, &url, &id, tag).send().await?;
            assert_eq!(response.status(), 200, "{id}");
            pushed.push(id);
        }
        drop(faulty);
        let list = |args: &[&str]| -> anyhow::Result<Vec<serde_json::Value>> {
            let output = cmq_host()
                .args(["dead-letter", "list", "--json", "--state", &state])
                .args(args)
                .output()?;
            anyhow::ensure!(output.status.success(), "{output:?}");
            Ok(String::from_utf8(output.stdout)?
                .lines()
                .map(serde_json::from_str)
                .collect::<Result<_, _>>()?)
        };
        let message_ids = |entries: &[serde_json::Value]| -> Vec<String> {
            entries
                .iter()
                .filter_map(|e| e["message_id"].as_str().map(str::to_owned))
                .collect()
        };
        // All of them, oldest first, each once, across the pages.
        let all = list(&[])?;
        assert_eq!(message_ids(&all), pushed, "postgres: {postgres}");
        let drops: Vec<String> = pushed.iter().skip(2).step_by(3).cloned().collect();
        assert_eq!(message_ids(&list(&["--reason", "DROPPED"])?), drops);
        assert_eq!(message_ids(&list(&["--limit", "70"])?), pushed[..70]);
        assert_eq!(
            message_ids(&list(&["--reason", "retry", "--limit", "3"])?),
            ["walk-0", "walk-1", "walk-3"]
        );
        assert_eq!(list(&["--route", "default", "--since", "1h"])?.len(), 150);
        assert!(list(&["--route", "other"])?.is_empty());
        assert!(list(&["--since", "2099-01-01T00:00:00Z"])?.is_empty());
        let output = cmq_host()
            .args(["dead-letter", "list", "--route", "other", "--state", &state])
            .output()?;
        assert_eq!(
            String::from_utf8(output.stdout)?.trim(),
            "no entry of the dead-letter journal matches"
        );
        let output = cmq_host()
            .args([
                "dead-letter",
                "list",
                "--since",
                "yesterday",
                "--state",
                &state,
            ])
            .output()?;
        assert!(!output.status.success());
        assert!(String::from_utf8(output.stderr)?.contains("a duration such as 1h"));
    }
    Ok(())
}

/// The journal's table as it was before entries kept their route.
const JOURNAL_WITHOUT_ROUTES: &str = "CREATE TABLE cmq_dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT, message_id TEXT NOT NULL, reason TEXT NOT NULL,
    attempts INTEGER NOT NULL, format TEXT NOT NULL, request_id TEXT, message_tag TEXT,
    body BLOB NOT NULL, created_ms INTEGER NOT NULL);
INSERT INTO cmq_dead_letters (message_id, reason, attempts, format, body, created_ms)
    VALUES ('from-before', 'dropped: old', 1, 'json', x'7b7d', 0);";

#[tokio::test]
async fn a_store_from_before_the_journal_kept_routes_gains_the_column_and_keeps_its_entries()
-> anyhow::Result<()> {
    let state = cmq_tests::test_dir().join(format!("old-journal-{}.db", next_number()));
    rusqlite::Connection::open(&state)?.execute_batch(JOURNAL_WITHOUT_ROUTES)?;
    let state = state.to_str().expect("a UTF-8 path").to_owned();
    let (_host, lines, url) = serve(
        "faulty",
        &["--state", &state, "--admin-listen", "127.0.0.1:0"],
    )?;
    let admin = admin_url(&lines);
    let client = reqwest::Client::new();
    let answer = cmq_push(&client, &url, "from-now", "drop").send().await?;
    assert_eq!(answer.status(), 200);
    let metrics = scrape(&client, &admin).await?;
    assert_eq!(
        sample(&metrics, "cmq_dead_letters", &[("route", "none")]),
        1.0
    );
    assert_eq!(
        sample(&metrics, "cmq_dead_letters", &[("route", "default")]),
        1.0
    );
    let listed = cmq_host()
        .args(["dead-letter", "list", "--json", "--state", &state])
        .output()?;
    assert!(listed.status.success(), "{listed:?}");
    let routes: Vec<(String, serde_json::Value)> = String::from_utf8(listed.stdout)?
        .lines()
        .map(serde_json::from_str::<serde_json::Value>)
        .map(|entry| entry.map(|e| (e["message_id"].to_string(), e["route"].clone())))
        .collect::<Result<_, _>>()?;
    assert_eq!(
        routes,
        [
            ("\"from-before\"".to_owned(), serde_json::Value::Null),
            ("\"from-now\"".to_owned(), serde_json::json!("default")),
        ]
    );
    Ok(())
}

#[test]
fn a_store_that_cannot_be_reached_fails_before_listening_without_printing_its_password()
-> anyhow::Result<()> {
    for url in [
        "postgres://cmq:s3cret-pw@127.0.0.1:1/cmq",
        "postgresql://cmq@127.0.0.1:1/cmq?password=s3cret-pw",
    ] {
        let output = cmq_host()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("CMQ_HOST_STATE", url)
            .arg(guest("ack"))
            .output()?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(stderr.contains("connecting to PostgreSQL"), "{stderr}");
        assert!(!stderr.contains("s3cret-pw"), "{stderr}");
        assert!(!stderr.contains("listening on"), "{stderr}");
    }
    Ok(())
}

#[tokio::test]
async fn a_host_killed_during_a_messages_last_delivery_has_kept_it() -> anyhow::Result<()> {
    for postgres in [false, true] {
        let state = fresh_state(postgres).await?;
        let flags = [
            "--state",
            state.as_str(),
            "--deadline",
            "2s",
            "--max-attempts",
            "2",
        ];
        let (child, _lines, url) = serve("faulty", &flags)?;
        let client = reqwest::Client::new();
        let id = format!("last-{postgres}-{}", std::process::id());
        // Attempt 1: the guest sleeps past its deadline.
        let first = cmq_push(&client, &url, &id, "sleep").send().await?;
        assert_eq!(first.status(), 500);
        // Attempt 2, the last: the host dies while the guest runs, and CMQ, which gets
        // no answer, asks no more.
        let last = tokio::spawn(cmq_push(&client, &url, &id, "sleep").send());
        tokio::time::sleep(Duration::from_millis(700)).await;
        signal(&child, "KILL")?;
        assert!(last.await?.is_err(), "the killed host answered");
        drop(child);
        let location: cmq_host::StoreLocation = state.parse().map_err(anyhow::Error::msg)?;
        let journal = cmq_host::Store::open(&location)
            .await?
            .dead_letters()
            .await?;
        let kept = journal
            .iter()
            .find(|entry| entry.message_id == id)
            .unwrap_or_else(|| panic!("postgres={postgres}: {id} lost: {journal:#?}"));
        assert!(
            kept.reason
                .starts_with("kept while its last delivery ran (attempt 2"),
            "{}",
            kept.reason
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
    let dir = cmq_tests::test_dir().join(format!("cmq-cli-{}", std::process::id()));
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
fn an_open_endpoint_other_machines_reach_is_refused_unless_allowed() -> anyhow::Result<()> {
    // 0.0.0.0 with the store on, no token and no allowlist: refused before listening
    // (a host that serves instead is killed after 60 s, and the test fails).
    let mut child = cmq_host()
        .args(["serve", "--listen", "0.0.0.0:0"])
        .arg(guest("ack"))
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr_lines = lines(child.stderr.take().expect("piped stderr"));
    let mut running = Running(child);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = running.0.try_wait()? {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still serving after 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = stderr_lines.iter().collect::<Vec<_>>().join("\n");
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("--allow-unauthenticated"), "{stderr}");
    assert!(!stderr.contains("listening on"), "{stderr}");
    // Said so, or with a token, it serves.
    for flags in [
        &["--allow-unauthenticated"][..],
        &["--token", "an-open-sesame-0123456789"][..],
        &["--allow", "127.0.0.0/8"][..],
    ] {
        let (_child, _lines, _url) = spawn_listening(
            cmq_host()
                .args(["serve", "--listen", "0.0.0.0:0"])
                .args(flags)
                .arg(guest("ack")),
        )?;
    }
    Ok(())
}

/// A field of `/proc/PID/status`, in KiB (`VmHWM`: peak resident set, `VmRSS`: now).
fn memory_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no {field} in /proc/{pid}/status"))
}

#[tokio::test]
async fn header_maps_a_guest_hoards_cannot_take_the_host_s_memory() -> anyhow::Result<()> {
    // Each push fills wasi:http header maps, which live in the host's memory, until
    // the host refuses one more. Eight at once took 3.4 GB before they were bounded.
    let (child, _lines, url) = serve("plain_http", &["--no-state"])?;
    let pid = child.0.id();
    let (peak_before, resident_before) = (memory_kib(pid, "VmHWM")?, memory_kib(pid, "VmRSS")?);
    let client = reqwest::Client::new();
    let mut pushes = tokio::task::JoinSet::new();
    for i in 0..8 {
        pushes.spawn(cmq_push(&client, &url, &format!("hoard-{i}"), "hoard-fields").send());
    }
    while let Some(answer) = pushes.join_next().await {
        assert_eq!(
            answer??.status(),
            500,
            "the hoarding guest is stopped by a trap"
        );
    }
    let (peak, resident) = (memory_kib(pid, "VmHWM")?, memory_kib(pid, "VmRSS")?);
    assert!(
        peak < peak_before + 128 * 1024,
        "the host's peak RSS grew from {peak_before} KiB to {peak} KiB"
    );
    assert!(
        resident < resident_before + 64 * 1024,
        "the host's RSS stayed at {resident} KiB after the burst (from {resident_before})"
    );
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
    // Without a store CMQ's discard shows; with one, the last attempt is journaled.
    let (_server, _lines, url) = serve("faulty", &["--no-state"])?;
    let messages = cmq_tests::test_dir().join(format!("cmq-push-{}.jsonl", std::process::id()));
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
    let messages_flag = ["--messages", messages.to_str().expect("utf-8 temp path")];
    let mixed = run(&messages_flag)?;
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

    // With a store, the third BACKOFF_RETRY delivery (the default --max-attempts, one
    // below CMQ's last) is kept and acknowledged.
    let (_guarded, _lines, guarded_url) = serve("faulty", &[])?;
    let guarded = cmq_host()
        .args([
            "push",
            &format!("{guarded_url}/cgi"),
            "--strategy",
            "backoff",
        ])
        .args(["--time-scale", "0.0001", "--json"])
        .args(messages_flag)
        .output()?;
    std::fs::remove_file(&messages)?;
    assert_eq!(guarded.status.code(), Some(0), "nothing is discarded");
    let retry_report = String::from_utf8(guarded.stdout)?
        .lines()
        .map(serde_json::from_str::<serde_json::Value>)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .find(|r| r["msgId"] == "cli-retry")
        .expect("a report for cli-retry");
    assert_eq!(retry_report["outcome"], "delivered");
    assert_eq!(retry_report["attempts"].as_array().map(Vec::len), Some(3));

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
    let dir = cmq_tests::test_dir().join(format!("cmq-compile-{}", std::process::id()));
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
    let (child, lines, url) = serve_path(&cwasm, &["--allow-precompiled"])?;
    let response = cmq_push(&reqwest::Client::new(), &url, "from-cwasm", "a")
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await?, "ok");
    assert!(wait_for(&lines, "message handled").contains("from-cwasm"));
    drop(child);

    // Native code is refused unless the operator allows it, and never taken from a
    // file named .wasm: whoever may replace a handler file must not be able to run
    // native code as the host.
    let disguised = dir.join("innocent.wasm");
    std::fs::copy(&cwasm, &disguised)?;
    for (component, flags, says) in [
        (&cwasm, &[][..], "--allow-precompiled"),
        (&disguised, &[][..], "--allow-precompiled"),
        (&disguised, &["--allow-precompiled"][..], "not named .cwasm"),
    ] {
        let refused = cmq_host()
            .args(["serve", "--no-state"])
            .args(flags)
            .arg(component)
            .output()?;
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
        assert!(!stderr.contains("listening on"), "{stderr}");
    }

    // Anything else with a .cwasm name is refused before listening.
    std::fs::write(&cwasm, b"\x7fELF not really")?;
    let refused = cmq_host()
        .args(["serve", "--allow-precompiled"])
        .arg(&cwasm)
        .output()?;
    std::fs::remove_dir_all(&dir)?;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("log_ack.cwasm"), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn a_second_start_loads_the_component_from_the_compile_cache() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let cache = cmq_tests::test_dir().join(format!("compile-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let cache_flag = cache.display().to_string();
    // Starts `serve` on the cache, checks how the component was loaded, pushes once.
    let start = |expected: &'static str| {
        let cache_flag = cache_flag.clone();
        async move {
            let mut child = cmq_host()
                .args(["serve", "--listen", "127.0.0.1:0", "--no-state"])
                .args(["--compile-cache", &cache_flag])
                .arg(guest("log_ack"))
                .stderr(Stdio::piped())
                .spawn()?;
            let lines = lines(child.stderr.take().expect("piped stderr"));
            let running = Running(child);
            let ready = wait_for(&lines, "component ready");
            assert!(ready.contains(&format!("loaded={expected}")), "{ready}");
            let url = listening_url(&wait_for(&lines, "listening on "));
            let response = cmq_push(&reqwest::Client::new(), &url, "cached-1", "")
                .send()
                .await?;
            assert_eq!(response.status(), 200);
            drop(running);
            anyhow::Ok(())
        }
    };
    start("Compiled").await?;
    let entries: Vec<_> = std::fs::read_dir(&cache)?
        .filter_map(Result::ok)
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "cwasm"))
        .collect();
    assert_eq!(entries.len(), 1, "one cache entry");
    let entry = entries[0].path();
    assert_eq!(
        std::fs::metadata(&entry)?.permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(&cache)?.permissions().mode() & 0o777,
        0o700
    );
    start("FromCache").await?;

    // A damaged entry is compiled again (and replaced).
    std::fs::write(&entry, b"not native code")?;
    std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o600))?;
    start("Compiled").await?;
    start("FromCache").await?;
    // A symbolic link in an entry's place is not followed, even to a good entry.
    let elsewhere = cache.with_extension("elsewhere");
    std::fs::copy(&entry, &elsewhere)?;
    std::fs::remove_file(&entry)?;
    std::os::unix::fs::symlink(&elsewhere, &entry)?;
    start("Compiled").await?;
    std::fs::remove_file(&entry)?;
    std::fs::remove_file(&elsewhere)?;
    start("Compiled").await?;
    // A directory others may write is not trusted.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777))?;
    start("Compiled").await?;
    std::fs::remove_dir_all(&cache)?;
    Ok(())
}

#[test]
fn check_says_what_a_grant_leaves_unsaid_and_warns_of_the_hosts_secrets_granted()
-> anyhow::Result<()> {
    let token = "a-push-token-of-24-chars";
    let output = cmq_host()
        .args(["check", "--compile-cache", "off", "--no-state"])
        .args([
            "--http",
            "api.example.com",
            "--http",
            "http://plain.example.com",
        ])
        .args([
            "--env",
            "CMQ_HOST_TOKEN",
            "--env",
            "COPIED=a-push-token-of-24-chars",
        ])
        .args(["--env", "HARMLESS=value"])
        .arg(guest("ack"))
        .env("CMQ_HOST_TOKEN", token)
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "outbound grant api.example.com means https://api.example.com only: write http:// \
             to allow cleartext"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("plain.example.com means"), "{stderr}");
    for (granted, what) in [
        ("CMQ_HOST_TOKEN", "(CMQ_HOST_TOKEN)"),
        ("COPIED", "(the route's token)"),
    ] {
        assert!(
            stderr.contains(&format!(
                "guests are granted the host's own secret {what} as {granted}"
            )),
            "no warning for {granted}: {stderr}"
        );
    }
    assert!(!stderr.contains("as HARMLESS"), "{stderr}");
    assert!(!stderr.contains(token), "the token was printed: {stderr}");
    Ok(())
}
