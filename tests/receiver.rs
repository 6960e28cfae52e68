//! The receiver end to end: real server, real HTTP client, real compiled guests.

use cmq_host::{ExpectedFormat, ReceiverOptions, RouteOptions, SharedLimits};
use cmq_tests::{DOCUMENTED_JSON_BODY, TestHost, json_body, log_lines_with, push};
use reqwest::StatusCode;

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

#[tokio::test]
async fn documented_json_push_is_acknowledged_and_logged() -> anyhow::Result<()> {
    let host = TestHost::start("log_ack", ReceiverOptions::default()).await?;
    let response = push(
        &client(),
        &host.url(),
        "6942316962",
        "a, b",
        DOCUMENTED_JSON_BODY,
    )
    .send()
    .await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await?, "ok");

    // The host's one line for the message, with its route, topic, subscription and
    // CMQ's request id, and the guest's own output, tagged with its route and id.
    let lines = log_lines_with("6942316962");
    assert!(
        lines.iter().any(|l| l.contains("message handled")
            && l.contains("messaging.cmq.route=\"default\"")
            && l.contains("messaging.destination.name=\"MyTopic\"")
            && l.contains("messaging.destination.subscription.name=\"mysubscription\"")
            && l.contains("messaging.cmq.request_id=\"2394928734\"")
            && l.contains("messaging.cmq.decision=\"ack\"")),
        "no 'message handled' line with the message's fields in {lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("stdout")
            && l.contains("messaging.cmq.route=\"default\"")
            && l.contains("test message")),
        "the guest's printed body is not in the log with its route: {lines:#?}"
    );
    host.stop().await
}

#[tokio::test]
async fn documented_simplified_push_is_acknowledged() -> anyhow::Result<()> {
    let options = ReceiverOptions {
        route: RouteOptions {
            format: ExpectedFormat::Simplified,
            ..Default::default()
        },
        ..Default::default()
    };
    let host = TestHost::start("log_ack", options).await?;
    let response = push(
        &client(),
        &host.url(),
        "simplified-1",
        "a, b",
        "test message",
    )
    .send()
    .await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await?, "ok");
    host.stop().await
}

#[tokio::test]
async fn simplified_body_that_is_not_utf8_reaches_the_guest_intact() -> anyhow::Result<()> {
    let host = TestHost::start("log_ack", ReceiverOptions::default()).await?;
    let body: Vec<u8> = vec![0xff, 0x00, 0xfe, 0x80, b'{'];
    let response = push(&client(), &host.url(), "binary-1", "", body)
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    // log-ack prints a non-UTF-8 body as hex.
    let lines = log_lines_with("binary-1");
    assert!(
        lines.iter().any(|l| l.contains("ff00fe807b")),
        "the guest did not see the exact bytes: {lines:#?}"
    );
    host.stop().await
}

#[tokio::test]
async fn each_decision_maps_to_its_answer() -> anyhow::Result<()> {
    let host = TestHost::start("by_tag", ReceiverOptions::default()).await?;
    let client = client();
    for (tags, status, body) in [
        ("", StatusCode::OK, "ok"),
        ("a, b", StatusCode::OK, "ok"),
        ("a, retry", StatusCode::SERVICE_UNAVAILABLE, "retry"),
        ("drop", StatusCode::OK, "ok"),
    ] {
        let id = format!("decision-{tags}");
        let response = push(&client, &host.url(), &id, tags, json_body(&id))
            .send()
            .await?;
        assert_eq!(response.status(), status, "tags {tags:?}");
        assert_eq!(response.text().await?, body, "tags {tags:?}");
    }
    // A drop is acknowledged to CMQ but recorded with its reason.
    let lines = log_lines_with("decision-drop");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("messaging.cmq.decision=\"drop\"")
                || l.contains("messaging.cmq.decision=drop")),
        "no drop line in {lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("tagged drop")),
        "no drop reason in {lines:#?}"
    );
    host.stop().await
}

#[tokio::test]
async fn bad_pushes_get_a_clear_4xx() -> anyhow::Result<()> {
    let options = ReceiverOptions {
        route: RouteOptions {
            format: ExpectedFormat::Json,
            ..Default::default()
        },
        limits: SharedLimits {
            max_body: 1024,
            ..Default::default()
        },
        ..Default::default()
    };
    let host = TestHost::start("log_ack", options).await?;
    let client = client();

    let response = client.get(host.url()).send().await?;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "POST");

    let response = push(&client, &host.url(), "big", "", vec![b'x'; 1025])
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // A body over the limit sent without a Content-Length (chunked) is cut off too.
    let chunks = futures_stream(vec![vec![b'x'; 600], vec![b'x'; 600]]);
    let response = push(&client, &host.url(), "big-chunked", "", chunks)
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let missing = DOCUMENTED_JSON_BODY.replace(r#""msgBody":"test message","#, "");
    let response = push(&client, &host.url(), "x", "", missing).send().await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let reason = response.text().await?;
    assert!(
        reason.contains("msgBody"),
        "reason does not name the key: {reason}"
    );
    assert!(!reason.contains('\n'), "reason is not one line: {reason}");

    let mistyped = DOCUMENTED_JSON_BODY.replace("11203432", "\"soon\"");
    let response = push(&client, &host.url(), "x", "", mistyped).send().await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await?.contains("publishTime"));

    let response = push(&client, &host.url(), "x", "", "not json")
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    host.stop().await
}

#[tokio::test]
async fn a_push_without_a_message_id_gets_400() -> anyhow::Result<()> {
    let options = ReceiverOptions {
        route: RouteOptions {
            format: ExpectedFormat::Simplified,
            ..Default::default()
        },
        ..Default::default()
    };
    let host = TestHost::start("log_ack", options).await?;
    let response = client()
        .post(host.url())
        .header("x-cmq-request-id", "1")
        .body("a body and no id")
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await?.contains("message id"));
    host.stop().await
}

#[tokio::test]
async fn the_default_body_limit_is_one_mebibyte() -> anyhow::Result<()> {
    let host = TestHost::start("log_ack", ReceiverOptions::default()).await?;
    let client = client();
    let response = push(&client, &host.url(), "max", "", vec![b'x'; 1 << 20])
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    let response = push(&client, &host.url(), "over", "", vec![b'x'; (1 << 20) + 1])
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    host.stop().await
}

#[tokio::test]
async fn two_hundred_pushes_at_once_are_all_answered_correctly() -> anyhow::Result<()> {
    let host = TestHost::start("by_tag", ReceiverOptions::default()).await?;
    let client = client();
    let mut pushes = tokio::task::JoinSet::new();
    for i in 0..200 {
        let (tags, expected) = match i % 3 {
            0 => ("retry", StatusCode::SERVICE_UNAVAILABLE),
            1 => ("drop", StatusCode::OK),
            _ => ("", StatusCode::OK),
        };
        let request = push(
            &client,
            &host.url(),
            &format!("burst-{i}"),
            tags,
            json_body(&format!("burst-{i}")),
        );
        pushes.spawn(async move { (i, expected, request.send().await) });
    }
    let mut answered = 0;
    while let Some(joined) = pushes.join_next().await {
        let (i, expected, response) = joined?;
        assert_eq!(response?.status(), expected, "push {i}");
        answered += 1;
    }
    assert_eq!(answered, 200);
    host.stop().await
}

#[tokio::test]
async fn a_file_that_is_not_a_handler_component_is_refused_at_start() -> anyhow::Result<()> {
    let dir = cmq_tests::test_dir().join(format!("cmq-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("garbage.wasm");
    std::fs::write(&path, b"\0asm garbage")?;
    let err =
        cmq_host::Receiver::load(&path, ReceiverOptions::default()).expect_err("garbage loaded");
    assert!(format!("{err:#}").contains("garbage.wasm"), "{err:#}");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// A streaming request body with no Content-Length, sent chunked.
fn futures_stream(chunks: Vec<Vec<u8>>) -> reqwest::Body {
    let chunks = chunks.into_iter().map(Ok::<_, std::io::Error>);
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

#[tokio::test]
async fn a_memory_cap_below_the_components_own_memory_is_refused_at_start() -> anyhow::Result<()> {
    let options = ReceiverOptions {
        route: RouteOptions {
            max_memory: 64 << 10,
            ..Default::default()
        },
        ..Default::default()
    };
    let err = TestHost::start("log_ack", options)
        .await
        .expect_err("served with 64 KiB");
    // The pooling allocator already refuses it when compiling; the on-demand one when
    // the start-up check instantiates it.
    let err = format!("{err:#}");
    assert!(
        err.contains("exceeds the limit") || err.contains("instantiating the component"),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn a_component_for_another_world_is_refused_at_start_with_the_reason() -> anyhow::Result<()> {
    // The smallest valid component: the header alone. It exports nothing.
    let dir = cmq_tests::test_dir().join(format!("cmq-tests-world-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("empty-component.wasm");
    std::fs::write(&path, b"\0asm\x0d\x00\x01\x00")?;
    let err = cmq_host::Receiver::load(&path, ReceiverOptions::default()).expect_err("loaded");
    std::fs::remove_dir_all(&dir)?;
    let err = format!("{err:#}");
    assert!(
        err.contains("exports neither cmq:push/handler@0.2.0"),
        "{err}"
    );
    assert!(err.contains("empty-component.wasm"), "{err}");
    Ok(())
}
