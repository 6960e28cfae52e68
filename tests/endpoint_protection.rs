//! CMQ signs nothing: an endpoint is protected by a secret token in its URL and by a
//! source allowlist. A push without the token, or from elsewhere, never reaches a guest,
//! and the token never appears in the log.

use std::time::Duration;

use cmq_host::{ReceiverOptions, RouteOptions};
use cmq_tests::{TestHost, json_body, log_lines_with, push};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const TOKEN: &str = "Zm9vYmFyLXRva2VuLTEyMzQ1";

#[tokio::test]
async fn only_pushes_carrying_the_token_reach_the_guest() -> anyhow::Result<()> {
    let options = ReceiverOptions {
        route: RouteOptions {
            token: Some(TOKEN.parse().map_err(anyhow::Error::msg)?),
            ..Default::default()
        },
        ..Default::default()
    };
    let host = TestHost::start("by_tag", options).await?;
    let client = reqwest::Client::new();
    let base = format!("http://{}", host.addr);

    for (path, id, expected) in [
        ("/cgi".to_owned(), "token-missing", StatusCode::NOT_FOUND),
        (
            "/push/not-the-token-at-all".to_owned(),
            "token-wrong",
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/push/{TOKEN}x"),
            "token-longer",
            StatusCode::NOT_FOUND,
        ),
        (format!("/push/{TOKEN}"), "token-in-path", StatusCode::OK),
        (
            format!("/cgi?token={TOKEN}"),
            "token-in-query",
            StatusCode::OK,
        ),
    ] {
        let response = push(&client, &format!("{base}{path}"), id, "", json_body(id))
            .send()
            .await?;
        assert_eq!(response.status(), expected, "{path}");
        let handled = log_lines_with(id)
            .iter()
            .any(|l| l.contains("message handled"));
        assert_eq!(
            handled,
            expected == StatusCode::OK,
            "{id}: guest reached = {handled}"
        );
    }
    assert!(
        log_lines_with(TOKEN).is_empty(),
        "the token was logged: {:?}",
        log_lines_with(TOKEN)
    );
    host.stop().await
}

#[tokio::test]
async fn connections_from_outside_the_allowlist_are_closed() -> anyhow::Result<()> {
    let allow = vec!["10.0.0.0/8".parse()?];
    let host = TestHost::start_serving("by_tag", ReceiverOptions::default(), |server| {
        Ok(server.allow(allow))
    })
    .await?;
    // Accepted, then closed at once, without a byte of answer: not refused, not timed
    // out, not answered with an error status.
    let mut stream = tokio::net::TcpStream::connect(host.addr).await?;
    let body = json_body("not-allowed");
    let request = format!(
        "POST /cgi HTTP/1.1\r\nHost: x\r\nx-cmq-message-id: not-allowed\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // The write may fail once the host has closed: that is the point.
    let _written = stream.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "a connection from outside the allowlist stayed open for 2 s"
    );
    assert!(
        answer.is_empty(),
        "a push from 127.0.0.1 got an answer: {:?}",
        String::from_utf8_lossy(&answer)
    );
    assert!(
        !log_lines_with("not-allowed")
            .iter()
            .any(|l| l.contains("message handled"))
    );
    host.stop().await?;

    let allow = vec!["127.0.0.0/8".parse()?];
    let host = TestHost::start_serving("by_tag", ReceiverOptions::default(), |server| {
        Ok(server.allow(allow))
    })
    .await?;
    let response = push(
        &reqwest::Client::new(),
        &host.url(),
        "allowed",
        "",
        json_body("allowed"),
    )
    .send()
    .await?;
    assert_eq!(response.status(), StatusCode::OK);
    host.stop().await
}
