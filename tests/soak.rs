//! A bounded soak: 20,000 pushes over 64 connections, mixing acks, retries, drops, panics
//! and endless loops. Every push is answered, 2xx exactly for acks and drops, and the
//! process's memory does not grow with the number of messages.

use std::time::{Duration, Instant};

use cmq_host::{ReceiverOptions, RouteOptions};
use cmq_tests::{TestHost, json_body, push, rss_kib};
use reqwest::StatusCode;

const PUSHES: usize = 20_000;
const CONNECTIONS: usize = 64;

/// The tag for push `i` and the answer it must get.
fn case(i: usize) -> (&'static str, StatusCode) {
    match i % 100 {
        0..=59 => ("", StatusCode::OK),
        60..=79 => ("retry", StatusCode::SERVICE_UNAVAILABLE),
        80..=94 => ("drop", StatusCode::OK),
        95..=98 => ("panic", StatusCode::INTERNAL_SERVER_ERROR),
        // One in a hundred runs until its deadline.
        _ => ("loop", StatusCode::INTERNAL_SERVER_ERROR),
    }
}

async fn send_range(
    host_url: String,
    client: reqwest::Client,
    range: std::ops::Range<usize>,
) -> anyhow::Result<(usize, usize)> {
    let (mut answered, mut two_xx) = (0, 0);
    for i in range {
        let (tag, expected) = case(i);
        let id = format!("soak-{i}");
        let response = push(&client, &host_url, &id, tag, json_body(&id))
            .send()
            .await?;
        assert_eq!(response.status(), expected, "push {i} tagged {tag:?}");
        answered += 1;
        if response.status().is_success() {
            two_xx += 1;
        }
    }
    Ok((answered, two_xx))
}

async fn run(
    host: &TestHost,
    client: &reqwest::Client,
    pushes: std::ops::Range<usize>,
) -> anyhow::Result<(usize, usize)> {
    let per_connection = pushes.len().div_ceil(CONNECTIONS);
    let mut tasks = tokio::task::JoinSet::new();
    let mut start = pushes.start;
    while start < pushes.end {
        let end = (start + per_connection).min(pushes.end);
        tasks.spawn(send_range(host.url(), client.clone(), start..end));
        start = end;
    }
    let (mut answered, mut two_xx) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        let (a, t) = joined??;
        answered += a;
        two_xx += t;
    }
    Ok((answered, two_xx))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_mixed_pushes_are_all_answered_with_flat_memory() -> anyhow::Result<()> {
    let options = ReceiverOptions {
        route: RouteOptions {
            deadline: Duration::from_millis(200),
            ..Default::default()
        },
        ..Default::default()
    };
    let host = TestHost::start("faulty", options).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .build()?;
    let started = Instant::now();

    let warm_up = 2_000;
    let (mut answered, mut two_xx) = run(&host, &client, 0..warm_up).await?;
    let rss_after_warm_up = rss_kib();
    let (a, t) = run(&host, &client, warm_up..PUSHES).await?;
    answered += a;
    two_xx += t;
    let rss_at_end = rss_kib();
    let elapsed = started.elapsed();

    let expected_two_xx = (0..PUSHES).filter(|&i| case(i).1.is_success()).count();
    assert_eq!(answered, PUSHES);
    assert_eq!(
        two_xx, expected_two_xx,
        "2xx answers must equal acks plus drops"
    );
    // 18,000 more messages after the warm-up, 1,800 of them faults: a leak of even
    // 4 KiB per message would show as 70 MiB.
    let growth_kib = rss_at_end.saturating_sub(rss_after_warm_up);
    assert!(
        growth_kib < 32 << 10,
        "RSS grew by {growth_kib} KiB ({rss_after_warm_up} -> {rss_at_end})"
    );
    eprintln!("soak: {PUSHES} pushes in {elapsed:?}, RSS {rss_after_warm_up} -> {rss_at_end} KiB");
    host.stop().await
}
