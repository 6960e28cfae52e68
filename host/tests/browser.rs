//! The console in a real browser (headless Chromium over WebDriver, see
//! [`webdriver`]), against a real `cmq-host` with a real store and real pushes: log in,
//! see the routes, find a journaled message and open it, replay it through a component
//! that acknowledges and see it leave the journal, purge another, watch a decision
//! appear live after a push; a form from another site refused; every page readable at a
//! phone's width; and the admin token in no URL and no log line.
//!
//! Each page's screenshot is saved in `target/console-screenshots/` (the README's come
//! from there).
//!
//! A test of the `cmq-host` package, so that cargo builds the binary for it.

mod binary;
mod webdriver;

use std::path::{Path, PathBuf};

use binary::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use webdriver::Browser;

const ADMIN_TOKEN: &str = "browser-admin-token-0123456789";

/// Where the screenshots go.
fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots")
}

/// Another site: serves, to every request, a page whose button posts a purge of entry
/// `id` to the console at `admin`. Its address.
async fn another_site(admin: &str, id: &str) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = format!("http://{}", listener.local_addr()?);
    let page = format!(
        "<!doctype html><title>Win a prize</title>\
         <form method=\"post\" action=\"{admin}/console/dead-letters/purge\">\
         <input type=\"hidden\" name=\"id\" value=\"{id}\">\
         <input type=\"hidden\" name=\"confirmed\" value=\"yes\">\
         <button id=\"prize\">Claim your prize</button></form>"
    );
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = [0; 4096];
            let _ = stream.read(&mut request).await;
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    Ok(address)
}

/// Whether the page fits the window's width (nothing to scroll sideways).
async fn fits(browser: &Browser) -> anyhow::Result<bool> {
    let fits = browser
        .run("return document.documentElement.scrollWidth <= window.innerWidth;")
        .await?;
    Ok(fits == true)
}

/// The journal page's entry ids, newest first.
async fn listed(browser: &Browser) -> anyhow::Result<Vec<String>> {
    let ids = browser
        .run("return [...document.querySelectorAll('input[name=id]')].map(input => input.value);")
        .await?;
    Ok(ids
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|id| id.as_str().map(str::to_owned))
        .collect())
}

#[tokio::test]
async fn an_operator_logs_in_replays_purges_and_watches_live_in_a_real_browser()
-> anyhow::Result<()> {
    let dir = cmq_tests::test_dir().join(format!("browser-{}", next_number()));
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

    // Two messages a real guest could not take, kept in the journal.
    let pusher = reqwest::Client::new();
    for (id, tag) in [("order-1041", "retry"), ("order-1042", "drop")] {
        let answer = cmq_push(&pusher, &format!("{url}/orders"), id, tag)
            .send()
            .await?;
        assert_eq!(answer.status(), 200, "{id}");
    }

    let shots = screenshots();
    let browser = Browser::start(&dir, 1280, 900).await?;
    let console = |path: &str| format!("{admin}/console{path}");

    // Any page sends to the login form first.
    browser.go(&console("/dead-letters")).await?;
    assert!(browser.url().await?.ends_with("/console/login"));
    browser.screenshot(&shots.join("login.png")).await?;
    browser
        .type_into("input[name=token]", "not-the-admin-token-000")
        .await?;
    browser.click("main form button").await?;
    browser
        .wait_for_text("That is not the admin token.")
        .await?;
    browser.type_into("input[name=token]", ADMIN_TOKEN).await?;
    browser.click("main form button").await?;

    // The routes, with what their component decided.
    let routes = browser.wait_for_text("Generation").await?;
    assert!(browser.url().await?.ends_with("/console/routes"));
    for expected in ["orders", "/orders", "handler.wasm", "retry 1", "drop 1"] {
        assert!(routes.contains(expected), "{expected} in {routes}");
    }
    // After a burst of acknowledged pushes, a second later, the chart: each series
    // drawn, in the page as the browser built it.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    // Twenty pushes the guest acknowledges, their ids starting with `prefix`.
    let acknowledged = |prefix: &'static str| {
        let (pusher, url) = (pusher.clone(), url.clone());
        async move {
            for n in 0..20 {
                let id = format!("{prefix}{n:03}");
                let answer = cmq_push(&pusher, &format!("{url}/orders"), &id, "")
                    .send()
                    .await?;
                anyhow::ensure!(answer.status() == 200, "{id}: {}", answer.status());
            }
            anyhow::Ok(())
        }
    };
    acknowledged("order-2").await?;
    browser.go(&console("/routes")).await?;
    browser.wait_for_text("Decisions/s, last").await?;
    let drawn = browser
        .run(
            "return [...document.querySelectorAll('figure.chart polyline')]\
             .filter(line => line.getAttribute('points').trim() !== '')\
             .map(line => line.getAttribute('class'));",
        )
        .await?;
    let drawn: Vec<&str> = drawn
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|class| class.as_str())
        .collect();
    assert_eq!(drawn, ["ack", "retry", "drop", "fault", "p99"]);
    browser.screenshot(&shots.join("routes.png")).await?;
    // Its stream of charts is open, and the page says so.
    browser
        .wait_for_text("The charts are redrawn after each reading")
        .await?;
    // The page redraws its charts by itself (routes.js, from the live view's stream of
    // charts after each reading of the metrics, every 10 s): after more pushes,
    // the points change without a reload.
    let points =
        "return document.querySelector('figure.chart polyline.ack').getAttribute('points');";
    let before = browser.run(points).await?;
    acknowledged("order-3").await?;
    let redrawn = tokio::time::timeout(std::time::Duration::from_secs(25), async {
        loop {
            let now = browser.run(points).await?;
            if now != before {
                return anyhow::Ok(now);
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("the chart was not redrawn within 25 s: {before}"))??;
    assert!(redrawn.as_str().is_some_and(|p| !p.is_empty()), "{redrawn}");

    // The journal, newest first; one entry whole.
    browser.go(&console("/dead-letters")).await?;
    let journal = browser.wait_for_text("order-1041").await?;
    assert!(journal.contains("dropped: tagged drop"), "{journal}");
    let ids = listed(&browser).await?;
    assert_eq!(ids.len(), 2, "{journal}");
    let (drop_id, retry_id) = (ids[0].clone(), ids[1].clone());
    browser.screenshot(&shots.join("dead-letters.png")).await?;
    browser
        .click(&format!("a[href=\"/console/dead-letters/{retry_id}\"]"))
        .await?;
    let entry = browser
        .wait_for_text("\"msgBody\": \"test message\"")
        .await?;
    assert!(entry.contains("retry: tagged retry"), "{entry}");
    browser.screenshot(&shots.join("dead-letter.png")).await?;

    // A form on another site that posts to the console with this browser's session is
    // refused, and the entry stays.
    let site = another_site(&admin, &drop_id).await?;
    browser.go(&site).await?;
    browser.click("#prize").await?;
    let refused = browser.wait_for_text("forbidden").await?;
    assert!(refused.contains("another site"), "{refused}");
    browser.go(&console("/dead-letters")).await?;
    browser.wait_for_text("order-1042").await?;
    assert_eq!(listed(&browser).await?.len(), 2);

    // Every page fits a phone's width.
    browser.resize(390, 844).await?;
    for (page, name) in [
        ("/routes".to_owned(), "routes"),
        ("/dead-letters".to_owned(), "dead-letters"),
        (format!("/dead-letters/{retry_id}"), "dead-letter"),
        ("/live".to_owned(), "live"),
    ] {
        browser.go(&console(&page)).await?;
        browser.find("h1").await?;
        browser
            .screenshot(&shots.join(format!("phone-{name}.png")))
            .await?;
        assert!(fits(&browser).await?, "{page} is wider than a phone");
    }
    browser.resize(1280, 900).await?;

    // The route's component now acknowledges: replayed, confirmed, gone from the journal.
    install(&guest("ack"), &component)?;
    wait_keeping(
        &lines,
        "reloaded: new pushes go to the new routes",
        &mut log,
    );
    browser
        .go(&console(&format!("/dead-letters/{retry_id}")))
        .await?;
    browser.click("main form button:not(.danger)").await?;
    browser.wait_for_text("Yes, replay").await?;
    browser
        .screenshot(&shots.join("confirm-replay.png"))
        .await?;
    browser.click("main button.danger").await?;
    browser.wait_for_text("acknowledged, removed").await?;
    browser.screenshot(&shots.join("replayed.png")).await?;
    browser.go(&console("/dead-letters")).await?;
    browser.wait_for_text("1 of 1 entries").await?;
    assert_eq!(listed(&browser).await?, vec![drop_id.clone()]);

    // Purge the other, selected in the list, confirmed.
    browser
        .click(&format!("input[name=id][value=\"{drop_id}\"]"))
        .await?;
    browser.click("button[formaction$=\"/purge\"]").await?;
    browser.wait_for_text("Yes, purge").await?;
    browser.click("main button.danger").await?;
    browser.wait_for_text("Purged").await?;
    browser.go(&console("/dead-letters")).await?;
    browser.wait_for_text("0 of 0 entries").await?;

    // Live: a push's decision appears as it is answered.
    browser.go(&console("/live")).await?;
    browser.wait_for_text("Watching").await?;
    for (id, tag) in [("order-1043", "ack"), ("order-1044", "ack")] {
        let answer = cmq_push(&pusher, &format!("{url}/orders"), id, tag)
            .send()
            .await?;
        assert_eq!(answer.status(), 200);
    }
    let row = browser.find("tr[data-message-id=\"order-1044\"]").await?;
    let row = browser.text_of(&row).await?;
    for expected in ["orders", "order-1044", "ack", "200"] {
        assert!(row.contains(expected), "{expected} in {row}");
    }
    assert_eq!(browser.count("tr.decision").await?, 2);
    browser.screenshot(&shots.join("live.png")).await?;

    // Logging out ends the session; the token was in no URL on the way.
    browser.click("header form button").await?;
    browser.wait_for_text("Admin token").await?;
    let last = browser.url().await?;
    assert!(last.ends_with("/console/login"), "{last}");
    assert!(!last.contains(ADMIN_TOKEN));
    browser.quit().await?;

    signal(&host, "TERM")?;
    wait_keeping(&lines, "stopped", &mut log);
    assert!(
        log.iter()
            .any(|line| line.contains("console action refused: the form came from another site")),
        "{log:#?}"
    );
    assert!(
        log.iter().all(|line| !line.contains(ADMIN_TOKEN)),
        "the admin token reached the log"
    );
    eprintln!("screenshots in {}", shots.display());
    Ok(())
}
