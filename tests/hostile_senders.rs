//! Senders that do not behave like CMQ: slow, oversized, malformed, or too many at once.
//! Each gets a clear status or a closed connection, and the server keeps serving.

use std::time::{Duration, Instant};

use cmq_host::{Config, ReceiverOptions, RouteOptions, SharedLimits};
use cmq_tests::{DOCUMENTED_JSON_BODY, TestHost, guest, json_body, push};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Writes `request` on a fresh connection and reads until the server closes it, or
/// `wait` passes; returns what came back.
async fn raw_exchange(host: &TestHost, request: &[u8], wait: Duration) -> anyhow::Result<String> {
    Ok(exchange(host, request, wait).await?.0)
}

/// [`raw_exchange`], and whether the server closed the connection within `wait`.
async fn exchange(
    host: &TestHost,
    request: &[u8],
    wait: Duration,
) -> anyhow::Result<(String, bool)> {
    let mut stream = TcpStream::connect(host.addr).await?;
    stream.write_all(request).await?;
    let mut answer = Vec::new();
    // Still open when `wait` passes: what came back so far, and `false`.
    let closed = tokio::time::timeout(wait, stream.read_to_end(&mut answer))
        .await
        .is_ok();
    Ok((String::from_utf8_lossy(&answer).into_owned(), closed))
}

fn documented_push_request(connection: &str) -> String {
    format!(
        "POST /cgi HTTP/1.1\r\nHost: test.com\r\nContent-Type: text/plain\r\n\
         x-cmq-message-id: 6942316962\r\nConnection: {connection}\r\nContent-Length: {}\r\n\r\n{}",
        DOCUMENTED_JSON_BODY.len(),
        DOCUMENTED_JSON_BODY
    )
}

/// The server still answers a normal push.
async fn still_serving(host: &TestHost) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let response = push(
        &client,
        &host.url(),
        "still-serving",
        "",
        json_body("still-serving"),
    )
    .send()
    .await?;
    assert_eq!(response.status(), StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn garbage_instead_of_http_gets_400_and_a_closed_connection() -> anyhow::Result<()> {
    let host = TestHost::start("by_tag", ReceiverOptions::default()).await?;
    let (answer, closed) = exchange(
        &host,
        b"\x00\x01\x02 garbage \xff\r\n\r\n",
        Duration::from_secs(5),
    )
    .await?;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    assert!(closed, "the connection is still open 5 s after the 400");
    still_serving(&host).await?;
    host.stop().await
}

#[tokio::test]
async fn oversized_headers_get_431() -> anyhow::Result<()> {
    let host = TestHost::start("by_tag", ReceiverOptions::default()).await?;
    let huge = format!(
        "POST /cgi HTTP/1.1\r\nx-cmq-message-tag: {}\r\n\r\n",
        "a".repeat(64 << 10)
    );
    let answer = raw_exchange(&host, huge.as_bytes(), Duration::from_secs(5)).await?;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");

    let many: String = (0..200).map(|i| format!("x-filler-{i}: {i}\r\n")).collect();
    let request = format!("POST /cgi HTTP/1.1\r\n{many}\r\n");
    let answer = raw_exchange(&host, request.as_bytes(), Duration::from_secs(5)).await?;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    still_serving(&host).await?;
    host.stop().await
}

#[tokio::test]
async fn expect_continue_with_an_oversized_length_is_refused_before_the_body() -> anyhow::Result<()>
{
    let host = TestHost::start("by_tag", ReceiverOptions::default()).await?;
    let request = "POST /cgi HTTP/1.1\r\nHost: x\r\nx-cmq-message-id: 1\r\n\
                   Expect: 100-continue\r\nContent-Length: 104857600\r\n\r\n";
    let answer = raw_exchange(&host, request.as_bytes(), Duration::from_secs(5)).await?;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
    assert!(!answer.contains("100 Continue"), "{answer:?}");
    still_serving(&host).await?;
    host.stop().await
}

#[tokio::test]
async fn a_body_sent_too_slowly_gets_408() -> anyhow::Result<()> {
    let options = ReceiverOptions {
        limits: SharedLimits {
            body_timeout: Duration::from_millis(300),
            ..Default::default()
        },
        ..Default::default()
    };
    let host = TestHost::start("by_tag", options).await?;
    // Headers promise 100 bytes; only 10 arrive.
    let request = "POST /cgi HTTP/1.1\r\nHost: x\r\nx-cmq-message-id: 1\r\nContent-Length: 100\r\n\r\n0123456789";
    let started = Instant::now();
    let answer = raw_exchange(&host, request.as_bytes(), Duration::from_secs(5)).await?;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    still_serving(&host).await?;
    host.stop().await
}

#[tokio::test]
async fn pipelined_and_keep_alive_pushes_are_answered_in_order() -> anyhow::Result<()> {
    let host = TestHost::start("by_tag", ReceiverOptions::default()).await?;
    // Three pushes on one connection, each with its own answer: retry, ack, drop.
    let push = |id: &str, tag: &str, connection: &str| {
        let body = DOCUMENTED_JSON_BODY.replace("6942316962", id);
        format!(
            "POST /cgi HTTP/1.1\r\nHost: test.com\r\nx-cmq-message-id: {id}\r\n\
             x-cmq-message-tag: {tag}\r\nConnection: {connection}\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let request = format!(
        "{}{}{}",
        push("order-1", "retry", "keep-alive"),
        push("order-2", "", "keep-alive"),
        push("order-3", "drop", "close")
    );
    let (answer, closed) = exchange(&host, request.as_bytes(), Duration::from_secs(5)).await?;
    let statuses: Vec<&str> = answer
        .split("HTTP/1.1 ")
        .skip(1)
        .filter_map(|answer| answer.split("\r\n").next())
        .collect();
    assert_eq!(
        statuses,
        ["503 Service Unavailable", "200 OK", "200 OK"],
        "{answer:?}"
    );
    assert!(
        closed,
        "`Connection: close` on the last push left the connection open"
    );
    host.stop().await
}

#[tokio::test]
async fn beyond_the_in_flight_cap_pushes_get_503_with_retry_after_at_once() -> anyhow::Result<()> {
    let options = ReceiverOptions {
        route: RouteOptions {
            deadline: Duration::from_secs(2),
            ..Default::default()
        },
        limits: SharedLimits {
            max_in_flight: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    let host = TestHost::start("faulty", options).await?;
    let client = reqwest::Client::new();
    // Occupies the only slot until its deadline.
    let sleeper = push(
        &client,
        &host.url(),
        "sleeper",
        "sleep",
        json_body("sleeper"),
    )
    .send();
    let sleeper = tokio::spawn(sleeper);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let response = push(
        &client,
        &host.url(),
        "turned-away",
        "",
        json_body("turned-away"),
    )
    .send()
    .await?;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );

    assert_eq!(sleeper.await??.status(), StatusCode::INTERNAL_SERVER_ERROR);
    // The slot is free again.
    let response = push(&client, &host.url(), "after", "", json_body("after"))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    host.stop().await
}

#[tokio::test]
async fn the_in_flight_cap_holds_across_a_reload() -> anyhow::Result<()> {
    let options = || ReceiverOptions {
        limits: SharedLimits {
            max_in_flight: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    let host = TestHost::start("faulty", options()).await?;
    let client = reqwest::Client::new();
    // Holds the only slot for a second, on the routes serving now.
    let holding =
        tokio::spawn(push(&client, &host.url(), "held", "slow", json_body("held")).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The same component and limits, loaded again: a new generation of routes.
    let config = Config::single(guest("faulty"), &options());
    host.receiver.reload(&config).await?;
    assert_eq!(host.receiver.generation(), 2);
    let response = push(&client, &host.url(), "second", "", json_body("second"))
        .send()
        .await?;
    assert_eq!(
        response.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "the new routes took a slot the old ones hold"
    );
    assert_eq!(response.text().await?, "overloaded");
    assert_eq!(holding.await??.status(), StatusCode::OK);
    // The slot came back to the routes serving now.
    let response = push(&client, &host.url(), "third", "", json_body("third"))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    host.stop().await
}

#[tokio::test]
async fn beyond_the_connection_cap_new_connections_wait_until_one_closes() -> anyhow::Result<()> {
    let host = TestHost::start_serving("log_ack", ReceiverOptions::default(), |server| {
        server.limit_connections(2)
    })
    .await?;
    // Two idle connections take both slots; prove each is being served.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(host.addr).await?;
        stream
            .write_all(documented_push_request("keep-alive").as_bytes())
            .await?;
        let mut answer = [0u8; 12];
        stream.read_exact(&mut answer).await?;
        assert_eq!(&answer, b"HTTP/1.1 200");
        held.push(stream);
    }
    // A third connects (the kernel's backlog takes it) but is not served...
    let mut third = TcpStream::connect(host.addr).await?;
    third
        .write_all(documented_push_request("close").as_bytes())
        .await?;
    let mut answer = Vec::new();
    let early =
        tokio::time::timeout(Duration::from_millis(700), third.read_to_end(&mut answer)).await;
    assert!(
        early.is_err() && answer.is_empty(),
        "served beyond the cap: {:?}",
        String::from_utf8_lossy(&answer)
    );
    // ...until one of the first two closes.
    drop(held.pop());
    tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut answer)).await??;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(held);
    host.stop().await
}

/// Reads until the server closes `stream`; returns when that happened.
async fn closed_at(mut stream: TcpStream, started: Instant) -> Duration {
    let mut sink = Vec::new();
    let _ = stream.read_to_end(&mut sink).await;
    started.elapsed()
}

#[tokio::test]
async fn slow_headers_and_idle_keep_alive_connections_are_closed_after_ten_seconds()
-> anyhow::Result<()> {
    let host = TestHost::start("log_ack", ReceiverOptions::default()).await?;
    let started = Instant::now();
    // A slowloris: the start of a request, then nothing.
    let mut slow = TcpStream::connect(host.addr).await?;
    slow.write_all(b"POST /cgi HTTP/1.1\r\nHost: test.com\r\n")
        .await?;
    // An idle keep-alive connection, after one answered push.
    let mut idle = TcpStream::connect(host.addr).await?;
    idle.write_all(documented_push_request("keep-alive").as_bytes())
        .await?;
    let mut status = [0u8; 12];
    idle.read_exact(&mut status).await?;
    assert_eq!(&status, b"HTTP/1.1 200");
    let limit = Duration::from_secs(14);
    let (slow_closed, idle_closed) = tokio::time::timeout(limit, async {
        tokio::join!(closed_at(slow, started), closed_at(idle, started))
    })
    .await?;
    for (what, at) in [("slow headers", slow_closed), ("idle", idle_closed)] {
        assert!(
            at >= Duration::from_secs(9),
            "{what} connection closed after only {at:?}"
        );
    }
    still_serving(&host).await?;
    host.stop().await
}
