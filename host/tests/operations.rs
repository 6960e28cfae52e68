//! Operating `cmq-host` from a config file: routes by path, `check`, `/metrics` read with
//! a real Prometheus parser, health, JSON logs, and reloads (under load, and of a broken
//! component or config).
//!
//! A test of the `cmq-host` package, so that cargo builds the binary for it.

mod binary;

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use binary::*;

/// A directory of this test's own, for its config and component copies.
fn scratch() -> anyhow::Result<PathBuf> {
    let dir = cmq_tests::test_dir().join(format!("ops_{}_{}", std::process::id(), next_number()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Writes `text` to `path` beside it first, then renames it over, as an editor saves.
fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text)?;
    std::fs::rename(&partial, path)?;
    Ok(())
}

/// Starts `cmq-host serve --config FILE` plus `extra` flags; returns it, its log lines and
/// its URL.
fn serve_config(
    config: &Path,
    extra: &[&str],
) -> anyhow::Result<(Running, mpsc::Receiver<String>, String)> {
    let mut args: Vec<&OsStr> = vec!["serve".as_ref(), "--config".as_ref(), config.as_os_str()];
    args.extend(extra.iter().map(OsStr::new));
    spawn_serve(&args)
}

/// A push of the documented JSON message with id `id` and tag `tag` to `url`.
fn push_to(client: &reqwest::Client, url: &str, id: &str, tag: &str) -> reqwest::RequestBuilder {
    client
        .post(url)
        .header("x-cmq-message-id", id)
        .header("x-cmq-message-tag", tag)
        .body(DOCUMENTED_JSON_BODY.replace("6942316962", id))
}

/// Pushes message `id` with `tag` to `url`; the answer's status.
async fn push_status(
    client: &reqwest::Client,
    url: &str,
    id: &str,
    tag: &str,
) -> anyhow::Result<u16> {
    Ok(push_to(client, url, id, tag)
        .send()
        .await?
        .status()
        .as_u16())
}

/// Every log line until none has come for `quiet`.
fn drain(lines: &mpsc::Receiver<String>, quiet: Duration) -> Vec<String> {
    let mut all = Vec::new();
    while let Ok(line) = lines.recv_timeout(quiet) {
        all.push(line);
    }
    all
}

fn two_route_config(dir: &Path, by_tag: &Path, ack: &Path) -> String {
    format!(
        r#"listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[routes.orders]
path = "/orders"
component = "{by_tag}"
format = "json"
max_in_flight = 32

[routes.audit]
path = "/audit"
component = "{ack}"
deadline = "5s"
dedupe_window = "off"
"#,
        by_tag = by_tag.display(),
        ack = ack.strip_prefix(dir).unwrap_or(ack).display(),
    )
}

/// The two-route config, as `cmq.toml` in a scratch directory, with by-tag by absolute
/// path and a copy of ack by a path relative to the config.
fn two_route_setup() -> anyhow::Result<PathBuf> {
    let dir = scratch()?;
    std::fs::copy(guest("ack"), dir.join("ack.wasm"))?;
    let config = dir.join("cmq.toml");
    std::fs::write(
        &config,
        two_route_config(&dir, &guest("by_tag"), &dir.join("ack.wasm")),
    )?;
    Ok(config)
}

#[tokio::test]
async fn each_path_goes_to_its_own_component_and_logs_name_the_route() -> anyhow::Result<()> {
    let config = two_route_setup()?;
    let (_host, lines, url) = serve_config(&config, &["--log-format", "json"])?;
    let client = reqwest::Client::new();

    // by-tag retries a message tagged `retry`; ack acknowledges everything.
    let orders = push_status(&client, &format!("{url}/orders"), "1001", "retry").await?;
    assert_eq!(orders, 503, "the orders route ran by-tag");
    let audit = push_status(&client, &format!("{url}/audit"), "1002", "retry").await?;
    assert_eq!(audit, 200, "the audit route ran ack");
    let under = push_status(&client, &format!("{url}/audit/eu"), "1003", "retry").await?;
    assert_eq!(under, 200, "a route serves the paths under its own");
    for stray in ["/", "/cgi", "/auditx"] {
        let answer = push_status(&client, &format!("{url}{stray}"), "1004", "").await?;
        assert_eq!(answer, 404, "no route serves {stray}");
    }

    // One JSON object per line, with the route and decision as fields.
    let mut decisions = HashMap::new();
    for line in drain(&lines, Duration::from_millis(500)) {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
            panic!("a log line that is not JSON: {line}");
        };
        if event["message"] == "message handled" {
            decisions.insert(
                event["messaging.message.id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                (
                    event["messaging.cmq.route"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    event["messaging.cmq.decision"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                ),
            );
        }
    }
    let pair = |route: &str, decision: &str| Some((route.to_owned(), decision.to_owned()));
    assert_eq!(decisions.get("1001").cloned(), pair("orders", "retry"));
    assert_eq!(decisions.get("1002").cloned(), pair("audit", "ack"));
    assert_eq!(decisions.get("1003").cloned(), pair("audit", "ack"));
    assert!(
        !decisions.contains_key("1004"),
        "no guest ran for an unrouted push"
    );
    Ok(())
}

#[test]
fn check_reports_a_good_config_and_names_the_line_and_key_of_a_bad_one() -> anyhow::Result<()> {
    let config = two_route_setup()?;
    let good = cmq_host()
        .args(["check", "--config"])
        .arg(&config)
        .output()?;
    let stdout = succeeded(&good, "check");
    assert!(stdout.contains("ok, 2 routes"), "{stdout}");
    assert!(
        stdout.contains("/orders") && stdout.contains("/audit"),
        "{stdout}"
    );

    // A value that is wrong.
    let text = std::fs::read_to_string(&config)?.replace("format = \"json\"", "format = \"xml\"");
    let line = 1 + text
        .lines()
        .position(|line| line == "format = \"xml\"")
        .expect("the bad line");
    std::fs::write(&config, text)?;
    let bad = cmq_host()
        .args(["check", "--config"])
        .arg(&config)
        .output()?;
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    // The line and the column where the value starts, after `format = `.
    let located = format!("{}:{line}:10: routes.orders.format: ", config.display());
    assert!(
        stderr.contains(&located),
        "expected {located:?} in: {stderr}"
    );

    // `serve` refuses it the same way, before listening.
    let served = cmq_host()
        .args(["serve", "--config"])
        .arg(&config)
        .output()?;
    let stderr = String::from_utf8_lossy(&served.stderr);
    assert!(!served.status.success());
    assert!(stderr.contains(&located), "{stderr}");
    assert!(!stderr.contains("listening on"), "{stderr}");

    // A flag that describes the one component is refused with a config.
    let mixed = cmq_host()
        .args(["serve", "--deadline", "5s", "--config"])
        .arg(&config)
        .output()?;
    assert!(!mixed.status.success());
    assert!(
        String::from_utf8_lossy(&mixed.stderr).contains("cannot be used with"),
        "{}",
        String::from_utf8_lossy(&mixed.stderr)
    );
    Ok(())
}

#[tokio::test]
async fn metrics_count_pushes_by_route_and_decision_and_health_answers() -> anyhow::Result<()> {
    let config = two_route_setup()?;
    let (_host, lines, url) = serve_config(&config, &[])?;
    let admin = admin_url(&lines);
    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(format!("{admin}/healthz"))
            .send()
            .await?
            .status(),
        200
    );
    assert_eq!(
        client.get(format!("{admin}/readyz")).send().await?.status(),
        200
    );
    let before = scrape(&client, &admin).await?;
    let acks = |scrape: &prometheus_parse::Scrape| {
        sample(
            scrape,
            "cmq_messages_total",
            &[("route", "orders"), ("decision", "ack")],
        )
    };
    // Before the first push the counter has no sample at all (absent, not 0).
    let labels = [("route", "orders"), ("decision", "ack")];
    assert_eq!(
        sample_if_present(&before, "cmq_messages_total", &labels),
        None
    );

    let status = |path: &str, id: &str, tag: &str| {
        let url = format!("{url}{path}");
        let (client, id, tag) = (client.clone(), id.to_owned(), tag.to_owned());
        async move { push_status(&client, &url, &id, &tag).await }
    };
    for i in 0..5 {
        assert_eq!(status("/orders", &format!("20{i}"), "").await?, 200);
    }
    for i in 0..3 {
        assert_eq!(status("/orders", &format!("30{i}"), "retry").await?, 503);
    }
    // The same message again on the orders route: a dedupe hit, no guest run.
    assert_eq!(status("/orders", "200", "").await?, 200);
    assert_eq!(status("/nowhere", "400", "").await?, 404);
    let not_json = client
        .post(format!("{url}/orders"))
        .body("{")
        .send()
        .await?;
    assert_eq!(not_json.status(), 400);

    let after = scrape(&client, &admin).await?;
    assert_eq!(acks(&after), 5.0);
    let retries = [("route", "orders"), ("decision", "retry")];
    assert_eq!(sample(&after, "cmq_messages_total", &retries), 3.0);
    assert_eq!(
        sample(&after, "cmq_dedupe_hits_total", &[("route", "orders")]),
        1.0
    );
    let unrouted = [("route", "none"), ("status", "404")];
    assert_eq!(sample(&after, "cmq_pushes_rejected_total", &unrouted), 1.0);
    let bad_body = [("route", "orders"), ("status", "400")];
    assert_eq!(sample(&after, "cmq_pushes_rejected_total", &bad_body), 1.0);
    // Every message a guest ran on is in the latency histogram.
    let timed = sample(
        &after,
        "cmq_message_duration_seconds",
        &[("route", "orders")],
    );
    assert_eq!(timed, 8.0);
    assert_eq!(
        sample(&after, "cmq_messages_in_flight", &[("route", "orders")]),
        0.0
    );
    assert_eq!(sample(&after, "cmq_routes_generation", &[]), 1.0);
    // The guest's part of those 8, and its instance's; the store's operations: a claim
    // for each of the 9 pushes of a message, a settlement for each of the 8 runs.
    let orders = [("route", "orders")];
    assert_eq!(sample(&after, "cmq_guest_duration_seconds", &orders), 8.0);
    assert_eq!(
        sample(&after, "cmq_guest_instantiation_seconds", &orders),
        8.0
    );
    let operation = |scrape: &prometheus_parse::Scrape, operation: &str| {
        sample(
            scrape,
            "cmq_store_operation_duration_seconds",
            &[("operation", operation)],
        )
    };
    assert_eq!(operation(&after, "claim"), 9.0);
    assert_eq!(operation(&after, "settle"), 8.0);
    // An empty journal has no sample at all.
    assert_eq!(sample_if_present(&after, "cmq_dead_letters", &[]), None);
    let wasmtime = locked_wasmtime();
    let build = [
        ("version", env!("CARGO_PKG_VERSION")),
        ("wasmtime", wasmtime.as_str()),
    ];
    assert_eq!(sample(&after, "cmq_build_info", &build), 1.0, "{after:?}");
    assert_eq!(sample(&after, "cmq_last_reload_success", &[]), 1.0);
    assert!(sample(&after, "cmq_last_reload_timestamp_seconds", &[]) > 1.7e9);

    // A dropped message waits in the journal, and its route's gauge says so.
    assert_eq!(status("/orders", "600", "drop").await?, 200);
    let dropped = scrape(&client, &admin).await?;
    assert_eq!(sample(&dropped, "cmq_dead_letters", &orders), 1.0);
    assert_eq!(
        sample(&dropped, "cmq_dead_letters", &[]),
        1.0,
        "one route only"
    );
    assert_eq!(operation(&dropped, "journal"), 1.0);
    Ok(())
}

#[tokio::test]
async fn a_reload_under_load_loses_no_push_and_each_message_runs_on_one_version()
-> anyhow::Result<()> {
    let dir = scratch()?;
    let component = dir.join("handler.wasm");
    // Version 1 prints each message's id; version 2 acks without a word.
    install(&guest("log_ack"), &component)?;
    let config = dir.join("cmq.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\n[routes.orders]\npath = \"/orders\"\ncomponent = \"handler.wasm\"\n",
    )?;
    let (_host, lines, url) = serve_config(&config, &["--no-state"])?;
    let client = reqwest::Client::new();

    // Pushers run until told to stop, each message once, and keep every answer.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut pushers = tokio::task::JoinSet::new();
    for pusher in 0..4 {
        let (client, url, stop) = (client.clone(), url.clone(), stop.clone());
        pushers.spawn(async move {
            let mut answers = Vec::new();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let id = format!("{pusher}{n:06}");
                let answer = push_to(&client, &format!("{url}/orders"), &id, "")
                    .send()
                    .await;
                answers.push((id, answer.map(|answer| answer.status().as_u16())));
                n += 1;
            }
            answers
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    install(&guest("by_tag"), &component)?;
    // The watcher looks every second; compiling takes a moment more. Every line is kept.
    let until_reloaded = tokio::task::spawn_blocking(move || {
        let mut log = Vec::new();
        while let Ok(line) = lines.recv_timeout(Duration::from_secs(60)) {
            let reloaded = line.contains("reloaded");
            log.push(line);
            if reloaded {
                break;
            }
        }
        (log, lines)
    });
    let (mut log, lines) = until_reloaded.await?;
    let reloaded_line = log.last().cloned().unwrap_or_default();
    assert!(reloaded_line.contains("reloaded"), "no reload: {log:?}");
    assert!(reloaded_line.contains("generation=2"), "{reloaded_line}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut answered = Vec::new();
    while let Some(answers) = pushers.join_next().await {
        answered.extend(answers?);
    }

    // No push lost: every one was answered 200.
    assert!(
        answered.len() > 20,
        "only {} pushes were sent",
        answered.len()
    );
    for (id, answer) in &answered {
        match answer {
            Ok(200) => {}
            other => panic!("push {id} was answered {other:?}"),
        }
    }
    // Each message ran on one version: version 1's messages printed their id, version
    // 2's did not, and each was handled exactly once.
    log.extend(drain(&lines, Duration::from_millis(500)));
    let mut generation_of = HashMap::new();
    let mut printed = HashSet::new();
    for line in &log {
        if line.contains("message handled") {
            let id = field(line, "messaging.message.id").expect("a message id");
            let generation = field(line, "generation").expect("a generation");
            assert!(
                generation_of.insert(id.clone(), generation).is_none(),
                "{id} handled twice"
            );
        } else if let Some(rest) = line.split("message id: ").nth(1) {
            printed.insert(
                rest.split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
    }
    let mut by_generation = HashMap::<String, usize>::new();
    for (id, _) in &answered {
        let generation = generation_of
            .get(id)
            .unwrap_or_else(|| panic!("{id} not handled"));
        *by_generation.entry(generation.clone()).or_default() += 1;
        match generation.as_str() {
            "1" => assert!(
                printed.contains(id),
                "{id} ran on version 1 but did not print"
            ),
            "2" => assert!(!printed.contains(id), "{id} ran on version 2 but printed"),
            other => panic!("{id} ran on generation {other}"),
        }
    }
    assert!(
        by_generation.get("1").is_some_and(|n| *n > 0),
        "{by_generation:?}"
    );
    assert!(
        by_generation.get("2").is_some_and(|n| *n > 0),
        "{by_generation:?}"
    );
    Ok(())
}

/// The value of `name=value` in a human log line.
fn field(line: &str, name: &str) -> Option<String> {
    let start = line.find(&format!(" {name}="))? + name.len() + 2;
    let value = line[start..].split_whitespace().next()?;
    Some(value.trim_matches('"').to_owned())
}

#[tokio::test]
async fn a_broken_component_or_config_leaves_the_old_routes_serving() -> anyhow::Result<()> {
    let dir = scratch()?;
    let component = dir.join("handler.wasm");
    install(&guest("by_tag"), &component)?;
    let config = dir.join("cmq.toml");
    let good = "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[routes.orders]\npath = \"/orders\"\ncomponent = \"handler.wasm\"\n";
    std::fs::write(&config, good)?;
    let (host, lines, url) = serve_config(&config, &["--no-state"])?;
    let admin = admin_url(&lines);
    let client = reqwest::Client::new();
    let retry = |id: &'static str| push_to(&client, &format!("{url}/orders"), id, "retry");

    // A component file that is not a component.
    let broken = dir.join("broken.wasm");
    std::fs::write(&broken, b"\0asm but not really")?;
    install(&broken, &component)?;
    let failed = wait_for(&lines, "reload failed");
    assert!(failed.contains("generation=1"), "{failed}");
    assert_eq!(
        retry("501").send().await?.status(),
        503,
        "by-tag still serves"
    );

    // Native code under the component's .wasm name (what an attacker who may write
    // handler files would install): refused, even compiled by this very cmq-host.
    let native = dir.join("native.cwasm");
    let compiled = cmq_host()
        .args(["compile", "-o"])
        .arg(&native)
        .arg(guest("ack"))
        .output()?;
    assert!(compiled.status.success());
    install(&native, &component)?;
    let failed = wait_for(&lines, "reload failed");
    assert!(failed.contains("native code"), "{failed}");
    assert_eq!(
        retry("504").send().await?.status(),
        503,
        "by-tag still serves"
    );

    // A config that does not parse, applied by SIGHUP.
    install(&guest("by_tag"), &component)?;
    wait_for(&lines, "reloaded");
    write_atomic(&config, &format!("{good}deadline = \"soon\"\n"))?;
    let failed = wait_for(&lines, "reload failed");
    assert!(
        failed.contains("cmq.toml:6:12: routes.orders.deadline"),
        "{failed}"
    );
    signal(&host, "HUP")?;
    wait_for(&lines, "reload failed");
    assert_eq!(
        retry("502").send().await?.status(),
        503,
        "by-tag still serves"
    );
    let failed = scrape(&client, &admin).await?;
    assert_eq!(sample(&failed, "cmq_last_reload_success", &[]), 0.0);

    // Fixed: the next change reloads, and the new component serves.
    install(&guest("ack"), &dir.join("ack.wasm"))?;
    write_atomic(&config, &good.replace("handler.wasm", "ack.wasm"))?;
    signal(&host, "HUP")?;
    wait_for(&lines, "reloaded");
    assert_eq!(retry("503").send().await?.status(), 200, "ack serves now");

    let metrics = scrape(&client, &admin).await?;
    assert_eq!(sample(&metrics, "cmq_last_reload_success", &[]), 1.0);
    assert!(sample(&metrics, "cmq_reloads_total", &[("result", "error")]) >= 4.0);
    assert!(sample(&metrics, "cmq_reloads_total", &[("result", "ok")]) >= 2.0);
    Ok(())
}

#[tokio::test]
async fn shutdown_waits_for_the_longest_deadline_of_any_generation_still_running()
-> anyhow::Result<()> {
    // Generation 1 gives its guest 8 s; generation 2, reloaded while a generation-1
    // push runs, gives 1 s. The drain must wait for the generation-1 push.
    let dir = scratch()?;
    install(&guest("faulty"), &dir.join("faulty.wasm"))?;
    let config = dir.join("cmq.toml");
    let with_deadline = |deadline: &str| {
        format!(
            "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[routes.slow]\n\
             path = \"/\"\ncomponent = \"faulty.wasm\"\ndeadline = \"{deadline}\"\n"
        )
    };
    std::fs::write(&config, with_deadline("8s"))?;
    let (host, lines, url) = serve_config(&config, &["--no-state"])?;
    let admin = admin_url(&lines);
    let client = reqwest::Client::new();
    // Sleeps 60 s: answered `500` when its 8 s deadline ends.
    let running = tokio::spawn(push_to(&client, &format!("{url}/cgi"), "sleeper", "sleep").send());
    // In flight on generation 1 before the reload.
    // The gauge has no sample until the route's first push: absent reads as none in
    // flight.
    let in_flight = || async {
        let metrics = scrape(&client, &admin).await?;
        anyhow::Ok(
            sample_if_present(&metrics, "cmq_messages_in_flight", &[("route", "slow")])
                .unwrap_or(0.0),
        )
    };
    while in_flight().await? < 1.0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    write_atomic(&config, &with_deadline("1s"))?;
    signal(&host, "HUP")?;
    wait_for(&lines, "reloaded");
    signal(&host, "TERM")?;
    let answer = running
        .await?
        .map_err(|err| anyhow::anyhow!("no answer: {err}"))?;
    assert_eq!(answer.status(), 500, "the generation-1 push was cut off");
    Ok(())
}

#[tokio::test]
async fn a_reload_cannot_open_an_endpoint_other_machines_reach() -> anyhow::Result<()> {
    // Served on every address with the store on: each route needs a token, at reload
    // as at start.
    let dir = scratch()?;
    install(&guest("ack"), &dir.join("ack.wasm"))?;
    let config = dir.join("cmq.toml");
    let with = |extra: &str| {
        format!(
            "listen = \"0.0.0.0:0\"\n[routes.orders]\npath = \"/orders\"\n\
             component = \"ack.wasm\"\n{extra}"
        )
    };
    let guarded = with("token_env = \"CMQ_ORDERS_TOKEN\"\n");
    std::fs::write(&config, &guarded)?;
    let (host, lines, _url) = spawn_listening(
        cmq_host()
            .args(["serve", "--config"])
            .arg(&config)
            .env("CMQ_ORDERS_TOKEN", "orders-token-0123456789"),
    )?;
    write_atomic(&config, &with(""))?;
    signal(&host, "HUP")?;
    let failed = wait_for(&lines, "reload failed");
    assert!(failed.contains("--allow-unauthenticated"), "{failed}");
    write_atomic(&config, &format!("{guarded}deadline = \"5s\"\n"))?;
    signal(&host, "HUP")?;
    wait_for(&lines, "reloaded");
    Ok(())
}

#[test]
fn the_readme_config_checks() -> anyhow::Result<()> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))?;
    let section = readme
        .split("## Operations")
        .nth(1)
        .expect("the README's operations section");
    let example = section
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a TOML config in the operations section");
    // Its files, where this test can make them.
    let dir = scratch()?;
    std::fs::create_dir_all(dir.join("handlers"))?;
    std::fs::create_dir_all(dir.join("audit-rules"))?;
    std::fs::create_dir_all(dir.join("audit-maps"))?;
    std::fs::copy(guest("by_tag"), dir.join("handlers/orders.cwasm"))?;
    std::fs::copy(guest("ack"), dir.join("handlers/audit.wasm"))?;
    // `check` reads them as `serve` would: a real pair.
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    std::fs::write(dir.join("cert.pem"), certified.cert.pem())?;
    std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem())?;
    let config = dir.join("cmq.toml");
    let text = example
        .replace("/etc/cmq-host/", &format!("{}/", dir.display()))
        .replace(
            "/srv/audit-rules",
            &dir.join("audit-rules").display().to_string(),
        )
        .replace(
            "/srv/audit-maps",
            &dir.join("audit-maps").display().to_string(),
        );
    std::fs::write(&config, text)?;
    // The file one of the orders route's settings is read from.
    std::fs::create_dir_all(dir.join("secrets"))?;
    std::fs::write(dir.join("secrets/signing.key"), "not-a-real-key\n")?;
    let checked = cmq_host()
        .args(["check", "--config"])
        .arg(&config)
        .env("CMQ_ORDERS_TOKEN", "orders-token-0123456789")
        .env("CMQ_AUDIT_TOKEN", "audit-token-0123456789")
        .env("ORDERS_API_KEY", "not-a-real-key")
        .output()?;
    let stdout = succeeded(&checked, "check");
    assert!(stdout.contains("ok, 2 routes"), "{stdout}");
    // As the README says: where none of its secrets are (tokens, granted variables).
    let checked = cmq_host()
        .args(["check", "--without-secrets", "--config"])
        .arg(&config)
        .env_remove("CMQ_ORDERS_TOKEN")
        .env_remove("CMQ_AUDIT_TOKEN")
        .env_remove("ORDERS_API_KEY")
        .output()?;
    let stdout = succeeded(&checked, "check --without-secrets");
    assert!(stdout.contains("ok, 2 routes"), "{stdout}");
    Ok(())
}

/// The stdout of a `cmq-host` run (`what`) that must have succeeded; its output is the
/// failure's message otherwise.
fn succeeded(output: &std::process::Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
