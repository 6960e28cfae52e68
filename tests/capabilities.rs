//! Guests get nothing by default: no environment, no files, no network. An operator
//! may grant named environment variables, one read-only directory and outbound HTTP to
//! named destinations; each grant works and each refusal holds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cmq_host::{DirGrant, EnvGrant, Grants, HttpGrant, ReceiverOptions, RouteOptions};
use cmq_tests::{TestHost, json_body, log_lines_with, push};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Pushes a probe for `tag`; true when the guest could use the capability.
async fn probe(host: &TestHost, id: &str, tag: &str) -> anyhow::Result<bool> {
    probe_with(host, id, tag, json_body(id)).await
}

/// Pushes a probe for `tag` whose message body names its target (a SIMPLIFIED push).
async fn probe_with(host: &TestHost, id: &str, tag: &str, body: String) -> anyhow::Result<bool> {
    let response = push(&reqwest::Client::new(), &host.url(), id, tag, body)
        .send()
        .await?;
    match response.status() {
        StatusCode::OK => Ok(true),
        StatusCode::SERVICE_UNAVAILABLE => Ok(false),
        other => anyhow::bail!("probe {tag}: unexpected {other}"),
    }
}

#[tokio::test]
async fn by_default_a_guest_has_no_environment_and_no_files() -> anyhow::Result<()> {
    let host = TestHost::start("probe", ReceiverOptions::default()).await?;
    for tag in ["env", "read", "write"] {
        let id = format!("default-{tag}");
        assert!(
            !probe(&host, &id, tag).await?,
            "{tag} was allowed by default"
        );
        assert!(
            log_lines_with(&id).iter().any(|l| l.contains("denied")),
            "no reason for {tag}"
        );
    }
    host.stop().await
}

#[tokio::test]
async fn granted_environment_and_read_only_directory_work_and_writes_are_refused()
-> anyhow::Result<()> {
    let dir = cmq_tests::test_dir().join(format!("cmq-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("probe.txt"), "granted")?;
    let grants = Grants {
        env: vec![EnvGrant {
            name: "PROBE_VAR".into(),
            value: "yes".into(),
        }],
        dirs: vec![DirGrant {
            host: dir.clone(),
            guest: "/data".into(),
        }],
        http: Vec::new(),
    };
    let host = TestHost::start(
        "probe",
        ReceiverOptions {
            route: RouteOptions {
                grants,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await?;
    assert!(
        probe(&host, "granted-env", "env").await?,
        "granted env var not visible"
    );
    assert!(
        probe(&host, "granted-read", "read").await?,
        "granted directory not readable"
    );
    assert!(
        !probe(&host, "granted-write", "write").await?,
        "read-only directory was written"
    );
    let denied = log_lines_with("granted-write");
    assert!(
        denied.iter().any(|l| l.contains("denied")),
        "the write was not refused by the guest's filesystem: {denied:#?}"
    );
    assert!(!dir.join("written.txt").exists());
    host.stop().await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// A plain HTTP server on loopback that answers 200 to anything and counts requests.
struct Target {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
}

impl Target {
    async fn start() -> anyhow::Result<Target> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let hits = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let (counted_hits, counted_connections) = (hits.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counted_connections.fetch_add(1, Ordering::SeqCst);
                let hits = counted_hits.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    hits.fetch_add(1, Ordering::SeqCst);
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                });
            }
        });
        Ok(Target {
            addr,
            hits,
            connections,
        })
    }

    fn url(&self) -> String {
        format!("http://{}/hook?key=s3cret", self.addr)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn by_default_a_guest_has_no_network() -> anyhow::Result<()> {
    let target = Target::start().await?;
    let host = TestHost::start("probe", ReceiverOptions::default()).await?;
    let cases = [
        ("http", target.url(), "HttpRequestDenied"),
        ("tcp", target.addr.to_string(), "denied: access-denied"),
        (
            "dns",
            "localhost".to_owned(),
            "denied: permanent-resolver-failure",
        ),
    ];
    for (tag, body, reason) in cases {
        let id = format!("no-network-{tag}");
        assert!(
            !probe_with(&host, &id, tag, body).await?,
            "{tag} was allowed by default"
        );
        let lines = log_lines_with(&id);
        assert!(
            lines.iter().any(|l| l.contains(reason)),
            "{tag} not refused with {reason}: {lines:#?}"
        );
    }
    assert_eq!(target.connections(), 0, "a guest reached the target");
    let denial = log_lines_with("outbound request to http://127.0.0.1");
    assert!(
        denial.iter().all(|l| !l.contains("s3cret")),
        "the denied URL's query was logged: {denial:#?}"
    );
    host.stop().await
}

#[tokio::test]
async fn granted_http_destinations_work_and_others_are_refused() -> anyhow::Result<()> {
    let granted = Target::start().await?;
    let other = Target::start().await?;
    let grant: HttpGrant = format!("http://{}", granted.addr)
        .parse()
        .map_err(anyhow::Error::msg)?;
    let host = TestHost::start(
        "probe",
        ReceiverOptions {
            route: RouteOptions {
                grants: Grants {
                    http: vec![grant],
                    ..Default::default()
                },
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await?;
    assert!(
        probe_with(&host, "http-granted", "http", granted.url()).await?,
        "granted destination refused: {:#?}",
        log_lines_with("http-granted")
    );
    assert_eq!(granted.hits(), 1);
    // The same host on another port, and raw TCP to the granted port, stay refused.
    assert!(!probe_with(&host, "http-other-port", "http", other.url()).await?);
    assert!(
        log_lines_with("http-other-port")
            .iter()
            .any(|l| l.contains("HttpRequestDenied"))
    );
    assert!(!probe_with(&host, "tcp-granted-port", "tcp", granted.addr.to_string()).await?);
    assert_eq!(
        other.connections(),
        0,
        "a guest reached a destination not granted"
    );
    assert_eq!(granted.hits(), 1, "raw TCP reached the granted destination");
    host.stop().await
}
