//! Instances that serve many messages, when the operator opts in
//! (`--max-instance-reuse-count`): what a guest keeps survives into its next message
//! (the `faulty` fixture's `count` tag prints how many it handled), and the instance is
//! dropped after a trap, a deadline, its count, a reload, or a leak of host resources;
//! the message that faulted is answered as without reuse, the next one runs fresh.

use std::time::Duration;

use cmq_host::{Config, ReceiverOptions, RouteOptions, SINGLE_ROUTE};
use cmq_tests::{TestHost, guest, json_body, log_lines_with, push, rss_kib, send};

fn reusing(count: u32) -> ReceiverOptions {
    ReceiverOptions {
        route: RouteOptions {
            max_instance_reuse_count: count,
            deadline: Duration::from_secs(2),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Pushes message `id` tagged `tags`; the status.
async fn status(host: &TestHost, id: &str, tags: &str) -> anyhow::Result<u16> {
    Ok(send(host, id, tags).await?.0.as_u16())
}

/// The count the guest printed for message `id` (`count N for ID`).
fn count_of(id: &str) -> u32 {
    let needle = format!(" for {id}");
    let lines = log_lines_with(&needle);
    lines
        .iter()
        .find_map(|line| {
            let (_, rest) = line.split_once("count ")?;
            rest.split_once(&needle)?.0.parse().ok()
        })
        .unwrap_or_else(|| panic!("no count printed for {id}: {lines:#?}"))
}

/// Pushes `count` messages with ids `PREFIX-N` one after another; the counts printed.
async fn counts(host: &TestHost, prefix: &str, count: usize) -> anyhow::Result<Vec<u32>> {
    let mut counts = Vec::new();
    for n in 0..count {
        let id = format!("{prefix}-{n}");
        assert_eq!(status(host, &id, "count").await?, 200);
        counts.push(count_of(&id));
    }
    Ok(counts)
}

#[tokio::test]
async fn a_reused_instance_keeps_its_state_up_to_its_count_and_a_fresh_one_keeps_none()
-> anyhow::Result<()> {
    let reused = TestHost::start("faulty", reusing(3)).await?;
    assert_eq!(counts(&reused, "reused", 7).await?, [1, 2, 3, 1, 2, 3, 1]);
    reused.stop().await?;
    let fresh = TestHost::start("faulty", ReceiverOptions::default()).await?;
    assert_eq!(counts(&fresh, "fresh", 3).await?, [1, 1, 1]);
    fresh.stop().await
}

#[tokio::test]
async fn after_a_trap_or_the_deadline_that_message_fails_as_always_and_the_next_runs_fresh()
-> anyhow::Result<()> {
    let host = TestHost::start("faulty", reusing(128)).await?;
    assert_eq!(counts(&host, "before-trap", 2).await?, [1, 2]);
    assert_eq!(status(&host, "trap", "count,panic").await?, 500);
    assert_eq!(counts(&host, "after-trap", 2).await?, [1, 2]);
    assert_eq!(status(&host, "deadline", "sleep").await?, 500);
    assert_eq!(counts(&host, "after-deadline", 1).await?, [1]);
    host.stop().await
}

#[tokio::test]
async fn a_reload_starts_every_instance_anew() -> anyhow::Result<()> {
    let options = reusing(128);
    let host = TestHost::start("faulty", options.clone()).await?;
    assert_eq!(counts(&host, "before-reload", 2).await?, [1, 2]);
    let config = Config::single(guest("faulty"), &options);
    host.receiver.reload(&config).await?;
    assert_eq!(counts(&host, "after-reload", 2).await?, [1, 2]);
    host.stop().await
}

/// The value of the sample of `metric` whose labels include `label` (0 when none).
async fn metric(host: &TestHost, metric: &str, label: &str) -> f64 {
    let text = host.receiver.metrics_text().await;
    text.lines()
        .filter(|line| line.starts_with(metric) && line.contains(label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Pushes `count` messages tagged `tag`, 16 at a time, each answered 200.
async fn burst(host: &TestHost, prefix: &str, tag: &str, count: usize) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    for batch in 0..count.div_ceil(16) {
        let mut sends = tokio::task::JoinSet::new();
        for n in 0..16 {
            let id = format!("{prefix}-{batch}-{n}");
            let request = push(&client, &host.url(), &id, tag, json_body(&id));
            sends.spawn(async move { request.send().await.map(|r| r.status().as_u16()) });
        }
        for status in sends.join_all().await {
            assert_eq!(status?, 200);
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_leaks_a_host_resource_is_dropped_and_memory_stays_flat()
-> anyhow::Result<()> {
    let host = TestHost::start("probe", reusing(128)).await?;
    let route = format!("route=\"{SINGLE_ROUTE}\"");
    burst(&host, "clean", "", 160).await?;
    let reused_clean = metric(&host, "cmq_guest_instances_total", "instance=\"reused\"").await;
    assert!(
        reused_clean >= 100.0,
        "a clean guest was not reused: {reused_clean}"
    );
    burst(&host, "warm", "leak", 1_000).await?;
    let warm = rss_kib();
    burst(&host, "leak", "leak", 9_000).await?;
    let grown = rss_kib().saturating_sub(warm);
    let leaks = metric(
        &host,
        "cmq_guest_instances_discarded_total",
        "cause=\"resources\"",
    )
    .await;
    let reused = metric(&host, "cmq_guest_instances_total", "instance=\"reused\"").await;
    assert!(
        metric(&host, "cmq_guest_instances_total", &route).await >= 10_160.0,
        "not every message counted"
    );
    // Each leaking instance serves its first message clean (the baseline), its second
    // leaks past it and it is dropped: about one reuse per two messages, never 128.
    assert!(
        leaks >= 4_000.0,
        "leaking instances kept: {leaks} dropped for it"
    );
    assert!(
        reused - reused_clean <= 5_100.0,
        "leaking instances reused {} times",
        reused - reused_clean
    );
    assert!(
        grown < 32 << 10,
        "resident memory grew {grown} KiB over 9,000 leaks"
    );
    host.stop().await
}
