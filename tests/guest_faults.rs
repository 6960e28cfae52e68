//! A guest that panics, loops, sleeps, exhausts its memory or its stack gets its push
//! answered non-2xx (so CMQ redelivers), and the very next push is served normally.

use std::time::{Duration, Instant};

use cmq_host::{ReceiverOptions, RouteOptions};
use cmq_tests::{TestHost, json_body, log_lines_with, push};
use reqwest::StatusCode;

const DEADLINE: Duration = Duration::from_millis(500);

async fn faulty_host() -> anyhow::Result<TestHost> {
    let options = ReceiverOptions {
        route: RouteOptions {
            deadline: DEADLINE,
            max_memory: 16 << 20,
            ..Default::default()
        },
        ..Default::default()
    };
    TestHost::start("faulty", options).await
}

/// Pushes a message tagged `tag`, expects `500 guest failed` and the cause in the log,
/// then checks that a well-behaved push right after it is acknowledged.
async fn fault_gives_500(tag: &str, cause: &str) -> anyhow::Result<()> {
    let host = faulty_host().await?;
    let client = reqwest::Client::new();
    let id = format!("fault-{tag}");
    let started = Instant::now();
    let response = push(&client, &host.url(), &id, tag, json_body(&id))
        .send()
        .await?;
    let waited = started.elapsed();
    assert_eq!(
        response.status(),
        StatusCode::INTERNAL_SERVER_ERROR,
        "tag {tag}"
    );
    assert_eq!(response.text().await?, "guest failed");
    assert!(
        waited < DEADLINE * 4,
        "tag {tag}: answered after {waited:?}"
    );

    let lines = log_lines_with(&id);
    let logged: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("message not handled"))
        .collect();
    assert_eq!(
        logged.len(),
        1,
        "the fault is logged exactly once: {lines:#?}"
    );
    assert!(
        logged[0].contains(cause),
        "tag {tag}: cause {cause:?} not in {logged:?}"
    );

    let next = format!("after-{tag}");
    let response = push(&client, &host.url(), &next, "", json_body(&next))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK, "push after {tag}");
    host.stop().await
}

#[tokio::test]
async fn a_panic_gives_500() -> anyhow::Result<()> {
    fault_gives_500("panic", "guest trapped").await
}

#[tokio::test]
async fn an_endless_loop_is_stopped_at_the_deadline() -> anyhow::Result<()> {
    fault_gives_500("loop", "deadline").await
}

#[tokio::test]
async fn a_guest_blocked_in_a_wasi_sleep_is_stopped_at_the_deadline() -> anyhow::Result<()> {
    fault_gives_500("sleep", "deadline").await
}

#[tokio::test]
async fn a_memory_bomb_is_stopped_at_the_cap() -> anyhow::Result<()> {
    fault_gives_500("grow", "memory cap of 16777216 bytes exceeded").await
}

#[tokio::test]
async fn a_stack_overflow_gives_500() -> anyhow::Result<()> {
    // Rust keeps its frames on a shadow stack in linear memory: overflowing it traps
    // with an out-of-bounds access rather than wasm's own stack overflow.
    fault_gives_500("recurse", "guest trapped").await
}

#[tokio::test]
async fn a_flood_of_output_is_truncated_in_the_log() -> anyhow::Result<()> {
    // The default deadline: printing 100,000 lines is slow work, not a fault.
    let host = TestHost::start("faulty", ReceiverOptions::default()).await?;
    let client = reqwest::Client::new();
    let response = push(
        &client,
        &host.url(),
        "flood-1",
        "flood",
        json_body("flood-1"),
    )
    .send()
    .await?;
    assert_eq!(response.status(), StatusCode::OK);
    let lines = log_lines_with("flood-1");
    let printed = lines.iter().filter(|l| l.contains("flood line")).count();
    assert!(printed > 0 && printed <= 64, "{printed} guest lines logged");
    // The note counts what the guest printed, not what the host kept: 100,000 lines.
    let note = format!("output truncated: {} more lines", 100_000 - printed);
    assert!(
        lines.iter().any(|l| l.contains(&note)),
        "no {note:?} among {:?}",
        lines
            .iter()
            .filter(|l| l.contains("truncated"))
            .collect::<Vec<_>>()
    );
    host.stop().await
}
