//! A real Prometheus (Debian's, installed by `cargo xtask test`, or the binary
//! `CMQ_TEST_PROMETHEUS` names) scrapes a real `cmq-host`'s admin listener, and the
//! test asks Prometheus' HTTP API for what an operator would: messages by decision,
//! faults, guest time, dead letters waiting, the build.
//!
//! A test of the `cmq-host` package, so that cargo builds the binary for it.

mod binary;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use binary::*;

/// Pushes by tag (the `faulty` fixture): three acks, a drop (journaled), a trap.
const PUSHES: [(&str, &str); 5] = [
    ("prom-ack-1", ""),
    ("prom-ack-2", ""),
    ("prom-ack-3", ""),
    ("prom-drop", "drop"),
    ("prom-trap", "panic"),
];

#[tokio::test]
async fn prometheus_scrapes_the_messages_faults_guest_time_and_dead_letters() -> anyhow::Result<()>
{
    let prometheus = std::env::var("CMQ_TEST_PROMETHEUS").map_err(|_| {
        anyhow::anyhow!(
            "CMQ_TEST_PROMETHEUS is not set: run `cargo xtask test`, which installs Prometheus"
        )
    })?;
    let (_host, lines, url) = serve("faulty", &["--admin-listen", "127.0.0.1:0"])?;
    let admin = admin_url(&lines);
    let client = reqwest::Client::new();
    for (id, tag) in PUSHES {
        let status = cmq_push(&client, &url, id, tag).send().await?.status();
        let expected = if tag == "panic" { 500 } else { 200 };
        assert_eq!(status.as_u16(), expected, "{id}");
    }

    let dir = cmq_tests::test_dir().join(format!("prometheus-{}", next_number()));
    std::fs::create_dir_all(&dir)?;
    let target = admin.trim_start_matches("http://");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: cmq-host\n    \
             static_configs:\n      - targets: [\"{target}\"]\n"
        ),
    )?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let _server = Running(
        Command::new(&prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let api = Api {
        client: client.clone(),
        base: format!("http://127.0.0.1:{port}/api/v1/query"),
    };
    // The first scrape that holds the pushes, within 60 s.
    let deadline = Instant::now() + Duration::from_secs(60);
    while api.value("sum(cmq_guest_duration_seconds_count)").await != Some(5.0) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "Prometheus did not scrape cmq-host at {admin} within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Every run of a guest counts, the trap's too.
    let expect = [
        ("up{job=\"cmq-host\"}", 1.0),
        ("sum(cmq_messages_total{decision=\"ack\"})", 3.0),
        ("sum(cmq_messages_total{decision=\"drop\"})", 1.0),
        ("sum(cmq_messages_total{decision=\"fault\"})", 1.0),
        ("sum(cmq_guest_faults_total{kind=\"trap\"})", 1.0),
        ("sum(cmq_guest_instantiation_seconds_count)", 5.0),
        ("sum(cmq_dead_letter_writes_total)", 1.0),
        ("cmq_dead_letters{route=\"default\"}", 1.0),
        (
            "sum(cmq_store_operation_duration_seconds_count{operation=\"claim\"})",
            5.0,
        ),
        ("cmq_last_reload_success", 1.0),
    ];
    for (query, value) in expect {
        assert_eq!(api.value(query).await, Some(value), "{query}");
    }
    let build = format!(
        "cmq_build_info{{wasmtime=\"{}\",version=\"{}\"}}",
        locked_wasmtime(),
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(api.value(&build).await, Some(1.0), "{build}");
    Ok(())
}

/// Prometheus' instant-query API.
struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    /// The value of `query`'s one series now, if it has exactly one.
    async fn value(&self, query: &str) -> Option<f64> {
        let response = self
            .client
            .get(&self.base)
            .query(&[("query", query)])
            .send()
            .await
            .ok()?;
        let body: serde_json::Value = serde_json::from_str(&response.text().await.ok()?).ok()?;
        let result = body.pointer("/data/result")?.as_array()?;
        let [series] = result.as_slice() else {
            return None;
        };
        series.pointer("/value/1")?.as_str()?.parse().ok()
    }
}
