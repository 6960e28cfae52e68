//! The console of a real `cmq-host`, through a real HTTP client: refused without the
//! admin token, a login that sets an `HttpOnly`, `SameSite=Strict` cookie, the journal
//! of real pushes listed and shown, a forged or cross-site action refused, replay
//! through the route's current component (kept while it asks for a retry, removed once
//! a reload makes it ack), purge, logout; the live view's stream; two hosts on one
//! PostgreSQL store acting on one journal; and the token never in a log line.
//!
//! A test of the `cmq-host` package, so that cargo builds the binary for it.

mod binary;

use binary::*;
use reqwest::redirect::Policy;

const ADMIN_TOKEN: &str = "console-admin-token-0123456789";

/// The value of the hidden `csrf` field in a page.
fn csrf(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF field")
        .to_owned()
}

/// The console's entry ids in a journal page, in order.
fn listed(page: &str) -> Vec<String> {
    page.split("name=\"id\" value=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn the_console_lists_shows_replays_and_purges_the_journal_behind_the_admin_token()
-> anyhow::Result<()> {
    let dir = cmq_tests::test_dir().join(format!("console-{}", next_number()));
    std::fs::create_dir_all(&dir)?;
    let component = dir.join("handler.wasm");
    install(&guest("faulty"), &component)?;
    let config = console_config(&dir, &["orders"])?;
    let state = dir.join("state.db").display().to_string();
    let ConsoleHost {
        host,
        lines,
        mut log,
        url,
        admin,
    } = serve_console(&config, &state, ADMIN_TOKEN)?;

    // Two messages journaled by a real guest: a retry on the last attempt, a drop.
    let pusher = reqwest::Client::new();
    for (id, tag) in [("console-retry", "retry"), ("console-drop", "drop")] {
        let answer = cmq_push(&pusher, &format!("{url}/orders"), id, tag)
            .send()
            .await?;
        assert_eq!(answer.status(), 200, "{id}");
    }

    let client = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()?;
    let console = |path: &str| format!("{admin}/console{path}");
    // Without the token: every page sends to the login form, the live stream and every
    // action are refused.
    for path in [
        "",
        "/",
        "/routes",
        "/live",
        "/dead-letters",
        "/dead-letters/1",
    ] {
        let page = client.get(console(path)).send().await?;
        assert_eq!(page.status(), 303, "{path}");
        assert_eq!(page.headers()["location"], "/console/login", "{path}");
    }
    let stream = client.get(console("/live/events")).send().await?;
    assert_eq!(stream.status(), 403);
    for path in ["/dead-letters/purge", "/dead-letters/replay", "/logout"] {
        let action = client
            .post(console(path))
            .form(&[("id", "1"), ("confirmed", "yes")])
            .send()
            .await?;
        assert_eq!(action.status(), 403, "{path}");
    }
    // /metrics and the health endpoints stay as they were.
    assert_eq!(
        client
            .get(format!("{admin}/metrics"))
            .send()
            .await?
            .status(),
        200
    );

    // A wrong token is refused; the right one opens a session, in a cookie only.
    let wrong = client
        .post(console("/login"))
        .form(&[("token", "not-the-admin-token-000")])
        .send()
        .await?;
    assert_eq!(wrong.status(), 401);
    let login = client
        .post(console("/login"))
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await?;
    assert_eq!(login.status(), 303);
    assert!(!login.headers()["location"].to_str()?.contains(ADMIN_TOKEN));
    let set_cookie = login.headers()["set-cookie"].to_str()?.to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(!set_cookie.contains(ADMIN_TOKEN), "{set_cookie}");
    let cookie = set_cookie.split(';').next().expect("a cookie").to_owned();
    let get = |path: &str| client.get(console(path)).header("cookie", &cookie).send();

    // The routes, with their counters from /metrics: a rate from the second view on.
    let routes = get("/routes").await?.text().await?;
    for expected in [
        "orders",
        "/orders",
        "handler.wasm",
        "retry 1",
        "drop 1",
        "Generation 1",
    ] {
        assert!(routes.contains(expected), "{expected} in {routes}");
    }
    let again = get("/routes").await?.text().await?;
    assert!(again.contains("retry 1 (0.0/s)"), "{again}");
    // The chart: a second later, after one more push (acknowledged), a series for each
    // decision, the ack's off the floor.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let answer = cmq_push(&pusher, &format!("{url}/orders"), "console-later", "")
        .send()
        .await?;
    assert_eq!(answer.status(), 200);
    let charted = get("/routes").await?.text().await?;
    for series in ["ack", "retry", "drop", "fault", "p99"] {
        let points = charted
            .split(&format!(
                "<polyline class=\"{series}\" fill=\"none\" points=\""
            ))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default();
        assert!(!points.is_empty(), "{series} in {charted}");
    }
    let ack_y: f64 = charted
        .split("<polyline class=\"ack\" fill=\"none\" points=\"")
        .nth(1)
        .and_then(|rest| rest.split(['"', ' ']).next())
        .and_then(|point| point.split(',').nth(1))
        .and_then(|y| y.parse().ok())
        .unwrap_or(f64::NAN);
    assert!(ack_y < 59.0, "the ack's rate is drawn above 0: {charted}");

    // The journal, and one entry whole, its JSON body pretty-printed.
    let journal = get("/dead-letters").await?.text().await?;
    for id in ["console-retry", "console-drop"] {
        assert!(journal.contains(id), "{journal}");
    }
    assert!(journal.contains("dropped: tagged drop"), "{journal}");
    let ids = listed(&journal);
    assert_eq!(ids.len(), 2, "{journal}");
    // Newest first: the drop, then the retry.
    let (drop_id, retry_id) = (ids[0].clone(), ids[1].clone());
    let entry = get(&format!("/dead-letters/{retry_id}"))
        .await?
        .text()
        .await?;
    assert!(entry.contains("console-retry"), "{entry}");
    assert!(
        entry.contains("\n  &quot;msgBody&quot;: &quot;test message&quot;"),
        "{entry}"
    );
    let hex = get(&format!("/dead-letters/{retry_id}?view=hex"))
        .await?
        .text()
        .await?;
    assert!(hex.contains("7b 22"), "{hex}");
    let filtered = get("/dead-letters?reason=tagged+drop")
        .await?
        .text()
        .await?;
    assert_eq!(listed(&filtered), vec![drop_id.clone()]);
    let token = csrf(&journal);

    // Actions without the session's CSRF token, or from another site, are refused.
    let post = |path: &str, form: Vec<(&str, String)>| {
        client
            .post(console(path))
            .header("cookie", &cookie)
            .form(&form)
            .send()
    };
    let forged = post(
        "/dead-letters/purge",
        vec![("id", drop_id.clone()), ("confirmed", "yes".into())],
    )
    .await?;
    assert_eq!(forged.status(), 403);
    let cross_site = client
        .post(console("/dead-letters/purge"))
        .header("cookie", &cookie)
        .header("origin", "http://evil.example")
        .form(&[
            ("id", drop_id.as_str()),
            ("csrf", token.as_str()),
            ("confirmed", "yes"),
        ])
        .send()
        .await?;
    assert_eq!(cross_site.status(), 403);

    // Replay asks first; the component still asks for a retry: kept.
    let asked = post(
        "/dead-letters/replay",
        vec![("id", retry_id.clone()), ("csrf", token.clone())],
    )
    .await?
    .text()
    .await?;
    assert!(asked.contains("Yes, replay"), "{asked}");
    // An action on one entry, confirmed: the result page.
    let confirmed = |action: &str, id: &str| {
        post(
            &format!("/dead-letters/{action}"),
            vec![
                ("id", id.to_owned()),
                ("csrf", token.clone()),
                ("confirmed", "yes".into()),
            ],
        )
    };
    let kept = confirmed("replay", &retry_id).await?.text().await?;
    assert!(kept.contains("retry: tagged retry; kept"), "{kept}");
    assert_eq!(listed(&get("/dead-letters").await?.text().await?).len(), 2);

    // The route's component becomes one that acks: replayed, acknowledged, removed.
    install(&guest("ack"), &component)?;
    wait_keeping(
        &lines,
        "reloaded: new pushes go to the new routes",
        &mut log,
    );
    let removed = confirmed("replay", &retry_id).await?.text().await?;
    assert!(removed.contains("acknowledged, removed"), "{removed}");
    assert_eq!(
        listed(&get("/dead-letters").await?.text().await?),
        vec![drop_id.clone()]
    );

    // Purge, confirmed.
    let purged = confirmed("purge", &drop_id).await?.text().await?;
    assert!(purged.contains("removed"), "{purged}");
    assert!(listed(&get("/dead-letters").await?.text().await?).is_empty());

    // Logging out closes the session.
    let out = post("/logout", vec![("csrf", token.clone())]).await?;
    assert_eq!(out.status(), 303);
    assert_eq!(get("/dead-letters").await?.status(), 303);

    signal(&host, "TERM")?;
    wait_keeping(&lines, "stopped", &mut log);
    let actions = log
        .iter()
        .filter(|line| line.contains("console action done"))
        .count();
    assert!(actions >= 3, "{log:#?}");
    assert!(
        log.iter().all(|line| !line.contains(ADMIN_TOKEN)),
        "the admin token reached the log"
    );
    Ok(())
}

#[test]
fn an_admin_token_the_host_could_not_serve_is_refused_by_check_as_by_serve() -> anyhow::Result<()> {
    let ack = guest("ack");
    let check = |token: &str, admin: &[&str]| {
        cmq_host()
            .env("CMQ_HOST_ADMIN_TOKEN", token)
            .args(["check", "--no-state", "--compile-cache", "off"])
            .args(admin)
            .arg(&ack)
            .output()
    };
    let no_listener = check(ADMIN_TOKEN, &[])?;
    assert_eq!(no_listener.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&no_listener.stderr);
    assert!(stderr.contains("give --admin-listen"), "{stderr}");
    let short = check("shorty", &["--admin-listen", "127.0.0.1:0"])?;
    assert_eq!(short.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&short.stderr);
    assert!(
        stderr.contains("invalid --admin-token (value not shown)"),
        "{stderr}"
    );
    assert!(!stderr.contains("shorty"), "{stderr}");
    let fine = check(ADMIN_TOKEN, &["--admin-listen", "127.0.0.1:0"])?;
    assert!(fine.status.success(), "{fine:?}");
    Ok(())
}

/// A stream of server-sent events, read event by event.
struct Events {
    response: reqwest::Response,
    read: String,
}

impl Events {
    /// The next whole event (its lines), waiting at most 30 s.
    async fn next(&mut self) -> anyhow::Result<String> {
        loop {
            if let Some((event, rest)) = self.read.split_once("\n\n") {
                let event = event.to_owned();
                self.read = rest.to_owned();
                return Ok(event);
            }
            let chunk =
                tokio::time::timeout(std::time::Duration::from_secs(30), self.response.chunk())
                    .await
                    .map_err(|_| {
                        anyhow::anyhow!("no event in 30 s; read so far: {:?}", self.read)
                    })??
                    .ok_or_else(|| {
                        anyhow::anyhow!("the stream ended; read so far: {:?}", self.read)
                    })?;
            self.read.push_str(std::str::from_utf8(&chunk)?);
        }
    }

    /// The next decision (a `data:` event), parsed.
    async fn next_decision(&mut self) -> anyhow::Result<serde_json::Value> {
        loop {
            let event = self.next().await?;
            if let Some(data) = event.strip_prefix("data: ") {
                return Ok(serde_json::from_str(data)?);
            }
        }
    }
}

#[tokio::test]
async fn the_live_view_streams_decisions_as_they_happen_filtered_with_bodies_only_when_asked()
-> anyhow::Result<()> {
    let mut command = cmq_host();
    command
        .env("CMQ_HOST_ADMIN_TOKEN", ADMIN_TOKEN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(["--no-state", "--compile-cache", "off"])
        .arg(guest("faulty"));
    let (host, lines, url) = spawn_listening(&mut command)?;
    let admin = admin_url(&lines);
    let mut log = Vec::new();
    wait_keeping(&lines, "console on ", &mut log);
    let client = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()?;
    let console = |path: &str| format!("{admin}/console{path}");

    // Without a session the stream is refused.
    let refused = client.get(console("/live/events")).send().await?;
    assert_eq!(refused.status(), 403);

    let cookie = log_in(&client, &admin).await?;
    let get = |path: &str| client.get(console(path)).header("cookie", &cookie).send();

    // The page, its script (from this host only) and the stream it opens.
    let page = get("/live?route=default&decision=retry&bodies=1").await?;
    let policy = page.headers()["content-security-policy"]
        .to_str()?
        .to_owned();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    let page = page.text().await?;
    assert!(page.contains("<script src=\"/console/live.js\">"), "{page}");
    assert!(
        page.contains(
            "data-source=\"/console/live/events?route=default&amp;decision=retry&amp;bodies=1\""
        ),
        "{page}"
    );
    let script = get("/live.js").await?;
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(script.text().await?.contains("new EventSource("));

    let open = |query: &'static str| {
        let request = client
            .get(console(&format!("/live/events{query}")))
            .header("cookie", &cookie);
        async move {
            let response = request.send().await?;
            anyhow::ensure!(response.status() == 200, "{}", response.status());
            anyhow::ensure!(response.headers()["content-type"] == "text/event-stream");
            let mut events = Events {
                response,
                read: String::new(),
            };
            // The stream's opening, sent at once: it watches from now on.
            let first = events.next().await?;
            anyhow::ensure!(first.starts_with("retry: 3000\n: "), "{first}");
            Ok::<_, anyhow::Error>(events)
        }
    };
    let mut everything = open("").await?;
    let mut retries_with_bodies = open("?decision=retry&bodies=1").await?;
    let mut this_route = open("?route=default").await?;
    let mut another_route = open("?route=elsewhere").await?;
    // The routes page's: the charts after each reading of the metrics, no decisions.
    let mut charts = open("?charts=1").await?;
    // A page of another site may not open one, even with the session's cookie.
    let cross_site = client
        .get(console("/live/events"))
        .header("cookie", &cookie)
        .header("sec-fetch-site", "same-site")
        .send()
        .await?;
    assert_eq!(cross_site.status(), 403);

    let pusher = reqwest::Client::new();
    for (id, tag) in [("live-ack", "ack"), ("live-retry", "retry")] {
        cmq_push(&pusher, &url, id, tag).send().await?;
    }
    let first = everything.next_decision().await?;
    assert_eq!(first["message_id"], "live-ack", "{first}");
    assert_eq!(first["decision"], "ack");
    assert_eq!(first["status"], 200);
    assert_eq!(first["route"], "default");
    assert_eq!(first["tags"], serde_json::json!(["ack"]));
    assert!(first.get("body").is_none(), "no body unless asked: {first}");
    let second = everything.next_decision().await?;
    assert_eq!(second["message_id"], "live-retry");
    assert_eq!(second["decision"], "retry");
    assert_eq!(second["status"], 503);
    assert_eq!(second["reason"], "tagged retry");
    assert!(second.get("body").is_none(), "{second}");

    // A reading after the pushes (one every 10 s) is sent with the ack's last interval
    // off the floor; one taken before them may come first.
    let last_ack_y = |charted: &serde_json::Value| -> f64 {
        charted["default"]["points"]["ack"]
            .as_str()
            .and_then(|points| points.split(' ').next_back())
            .and_then(|point| point.split(',').nth(1))
            .and_then(|y| y.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let mut sent = Vec::new();
    let charted = tokio::time::timeout(std::time::Duration::from_secs(25), async {
        loop {
            let event = charts.next().await?;
            if let Some(data) = event.strip_prefix("event: charts\ndata: ") {
                let charted: serde_json::Value = serde_json::from_str(data)?;
                if last_ack_y(&charted) < 59.0 {
                    return anyhow::Ok(charted);
                }
                sent.push(charted);
                continue;
            }
            anyhow::ensure!(event.starts_with(": "), "only charts and comments: {event}");
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("no charts with the ack drawn in 25 s: {sent:?}"))??;
    assert!(
        charted["default"]["rates"]
            .as_str()
            .is_some_and(|rates| rates.contains("/s")),
        "{charted}"
    );

    let same_route = this_route.next_decision().await?;
    assert_eq!(same_route["message_id"], "live-ack", "{same_route}");

    // The filtered stream skipped the ack; it shows the retry's body, as asked.
    let retry = retries_with_bodies.next_decision().await?;
    assert_eq!(retry["message_id"], "live-retry", "{retry}");
    assert_eq!(retry["body"]["text"], "test message");

    // Logging out ends the session's streams.
    let journal = get("/live").await?.text().await?;
    let out = client
        .post(console("/logout"))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf(&journal))])
        .send()
        .await?;
    assert_eq!(out.status(), 303);
    // The end of a stream, and the events before it.
    async fn until_ended(events: &mut Events) -> anyhow::Result<(String, Vec<String>)> {
        let mut before = Vec::new();
        loop {
            let event = events.next().await?;
            if event.starts_with("event: ended") {
                return Ok((event, before));
            }
            before.push(event);
        }
    }
    let (ended, _) = until_ended(&mut everything).await?;
    assert!(ended.contains("log in again"), "{ended}");
    let (ended, _) = until_ended(&mut charts).await?;
    assert!(ended.contains("log in again"), "{ended}");
    // The other route's view saw none of these decisions.
    let (ended, before) = until_ended(&mut another_route).await?;
    assert!(ended.contains("log in again"), "{ended}");
    assert!(
        before.iter().all(|event| !event.starts_with("data:")),
        "{before:?}"
    );

    // Shutting down ends the views at once: the admin listener drains in time.
    let cookie = log_in(&client, &admin).await?;
    let response = client
        .get(console("/live/events"))
        .header("cookie", &cookie)
        .send()
        .await?;
    let mut last = Events {
        response,
        read: String::new(),
    };
    last.next().await?;
    signal(&host, "TERM")?;
    let (ended, _) = until_ended(&mut last).await?;
    assert!(ended.contains("shutting down"), "{ended}");
    wait_keeping(&lines, "stopped", &mut log);
    for expected in [
        "console live view opened",
        "console live view closed: the session ended",
        "console live view closed: the host shuts down",
        "console live view refused: opened from another site",
        "console charts view opened",
        "console charts view closed: the session ended",
    ] {
        assert!(
            log.iter().any(|line| line.contains(expected)),
            "{expected}: {log:#?}"
        );
    }
    assert!(
        log.iter().all(|line| !line.contains("drain timed out")),
        "{log:#?}"
    );
    Ok(())
}

/// Logs in to the console at `admin`: the session's cookie.
async fn log_in(client: &reqwest::Client, admin: &str) -> anyhow::Result<String> {
    let login = client
        .post(format!("{admin}/console/login"))
        .form(&[("token", ADMIN_TOKEN)])
        .send()
        .await?;
    anyhow::ensure!(login.status() == 303, "login: {}", login.status());
    Ok(login.headers()["set-cookie"]
        .to_str()?
        .split(';')
        .next()
        .expect("a cookie")
        .to_owned())
}

#[tokio::test]
async fn hosts_sharing_a_postgresql_store_show_and_act_on_one_journal_in_their_consoles()
-> anyhow::Result<()> {
    let dir = cmq_tests::test_dir().join(format!("console-shared-{}", next_number()));
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(guest("faulty"), dir.join("handler.wasm"))?;
    let config = console_config(&dir, &["orders"])?;
    let state = fresh_state(true).await?;
    let one = serve_console(&config, &state, ADMIN_TOKEN)?;
    let two = serve_console(&config, &state, ADMIN_TOKEN)?;
    let (one_url, one_admin, two_admin) = (&one.url, &one.admin, &two.admin);

    // A message journaled by the first host...
    let pusher = reqwest::Client::new();
    let answer = cmq_push(&pusher, &format!("{one_url}/orders"), "shared-1", "drop")
        .send()
        .await?;
    assert_eq!(answer.status(), 200);

    // ...is in the second host's console, whole, and purged there...
    let client = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()?;
    let cookie = log_in(&client, two_admin).await?;
    let journal = client
        .get(format!("{two_admin}/console/dead-letters"))
        .header("cookie", &cookie)
        .send()
        .await?
        .text()
        .await?;
    let ids = listed(&journal);
    assert_eq!(ids.len(), 1, "{journal}");
    assert!(journal.contains("shared-1"), "{journal}");
    let entry = client
        .get(format!("{two_admin}/console/dead-letters/{}", ids[0]))
        .header("cookie", &cookie)
        .send()
        .await?
        .text()
        .await?;
    assert!(entry.contains("dropped: tagged drop"), "{entry}");
    let purged = client
        .post(format!("{two_admin}/console/dead-letters/purge"))
        .header("cookie", &cookie)
        .form(&[
            ("id", ids[0].as_str()),
            ("csrf", csrf(&journal).as_str()),
            ("confirmed", "yes"),
        ])
        .send()
        .await?
        .text()
        .await?;
    assert!(purged.contains("removed"), "{purged}");

    // ...and so gone from the first host's console too.
    let cookie = log_in(&client, one_admin).await?;
    let journal = client
        .get(format!("{one_admin}/console/dead-letters"))
        .header("cookie", &cookie)
        .send()
        .await?
        .text()
        .await?;
    assert!(listed(&journal).is_empty(), "{journal}");
    assert!(journal.contains("0 of 0 entries"), "{journal}");

    for host in [&one, &two] {
        signal(&host.host, "TERM")?;
        wait_for(&host.lines, "stopped");
    }
    Ok(())
}

#[tokio::test]
async fn the_journal_is_paged_and_filtered_by_the_store_on_both_backends() -> anyhow::Result<()> {
    for postgres in [false, true] {
        let dir = cmq_tests::test_dir().join(format!("console-pages-{}", next_number()));
        std::fs::create_dir_all(&dir)?;
        std::fs::copy(guest("faulty"), dir.join("handler.wasm"))?;
        let config = console_config(&dir, &["orders", "refunds"])?;
        let state = fresh_state(postgres).await?;
        let ConsoleHost {
            host,
            lines,
            url,
            admin,
            ..
        } = serve_console(&config, &state, ADMIN_TOKEN)?;

        // 52 drops to /orders, then 3 retries to /refunds: 55 entries, 2 pages.
        let pusher = reqwest::Client::new();
        for n in 0..55 {
            let (route, tag) = if n < 52 {
                ("orders", "drop")
            } else {
                ("refunds", "retry")
            };
            let answer = cmq_push(
                &pusher,
                &format!("{url}/{route}"),
                &format!("page-{n}"),
                tag,
            )
            .send()
            .await?;
            assert_eq!(answer.status(), 200);
        }
        let client = reqwest::Client::builder()
            .redirect(Policy::none())
            .build()?;
        let cookie = log_in(&client, &admin).await?;
        let journal = |query: &str| {
            let request = client
                .get(format!("{admin}/console/dead-letters?{query}"))
                .header("cookie", &cookie);
            async move { anyhow::Ok(request.send().await?.text().await?) }
        };
        let first = journal("").await?;
        assert_eq!(listed(&first).len(), 50, "{postgres}");
        assert!(first.contains("55 of 55 entries"), "{first}");
        assert!(first.contains("Page 1 of 2"), "{first}");
        // Newest first: the retries lead.
        let position = |id: &str| first.find(id).unwrap_or_else(|| panic!("{id} in {first}"));
        assert!(position("page-54<") < position("page-51<"), "{first}");
        let second = journal("page=2").await?;
        assert_eq!(listed(&second).len(), 5, "{second}");
        assert!(second.contains("page-0<"), "{second}");

        let refunds = journal("route=refunds").await?;
        assert_eq!(listed(&refunds).len(), 3, "{refunds}");
        assert!(refunds.contains("3 of 55 entries"), "{refunds}");
        // The reason's text in either case; wildcards are text, not patterns.
        let retries = journal("reason=TAGGED+RETRY&within=1h").await?;
        assert_eq!(listed(&retries).len(), 3, "{retries}");
        for wildcard in ["%25", "_"] {
            let none = journal(&format!("reason={wildcard}")).await?;
            assert!(listed(&none).is_empty(), "{wildcard}: {none}");
        }
        let both = journal("route=orders&reason=drop&page=2").await?;
        assert_eq!(listed(&both).len(), 2, "{both}");
        // A page past the last shows the last.
        let past = journal("page=9").await?;
        assert!(past.contains("Page 2 of 2"), "{past}");
        assert_eq!(listed(&past), listed(&second));

        signal(&host, "TERM")?;
        wait_for(&lines, "stopped");
    }
    Ok(())
}
