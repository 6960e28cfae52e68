//! Guests get nothing by default: no environment, no files, no network. An operator
//! may grant named environment variables, one read-only directory and outbound HTTP to
//! named destinations; each grant works and each refusal holds.

use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt as _;
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
        ..Default::default()
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

/// The probe, granted outbound HTTP to `destination` alone.
async fn probe_granting(destination: &str) -> anyhow::Result<TestHost> {
    let grant: HttpGrant = destination.parse().map_err(anyhow::Error::msg)?;
    let grants = Grants {
        http: vec![grant],
        ..Default::default()
    };
    let route = RouteOptions {
        grants,
        ..Default::default()
    };
    TestHost::start(
        "probe",
        ReceiverOptions {
            route,
            ..Default::default()
        },
    )
    .await
}

#[tokio::test]
async fn granted_http_destinations_work_and_others_are_refused() -> anyhow::Result<()> {
    let granted = Target::start().await?;
    let other = Target::start().await?;
    let host = probe_granting(&format!("http://{}", granted.addr)).await?;
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

/// A directory granted at `/data` with `probe.txt` in it, and the options granting it.
fn granted_data_dir(name: &str) -> anyhow::Result<(std::path::PathBuf, ReceiverOptions)> {
    let dir = cmq_tests::test_dir().join(format!("cmq-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("probe.txt"), "granted")?;
    let options = ReceiverOptions {
        route: RouteOptions {
            grants: Grants {
                dirs: vec![DirGrant {
                    host: dir.clone(),
                    guest: "/data".into(),
                }],
                ..Default::default()
            },
            deadline: std::time::Duration::from_secs(2),
            ..Default::default()
        },
        ..Default::default()
    };
    Ok((dir, options))
}

#[tokio::test]
async fn a_fifo_in_a_granted_directory_is_refused_and_leaves_no_thread_waiting_on_it()
-> anyhow::Result<()> {
    let (dir, options) = granted_data_dir("fifo")?;
    let fifo = dir.join("probe.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status()?;
    anyhow::ensure!(made.success(), "mkfifo failed");
    let host = TestHost::start("probe", options).await?;
    let started = std::time::Instant::now();
    assert!(
        !probe(&host, "fifo-open", "fifo").await?,
        "the guest opened a FIFO"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "the refusal waited for the deadline: {:?}",
        started.elapsed()
    );
    let lines = log_lines_with("fifo-open");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("denied: Permission denied")),
        "the open was not refused by the host: {lines:#?}"
    );
    // A writer's non-blocking open succeeds only while somebody has the FIFO open for
    // reading: it fails (ENXIO) when no thread of the host is left in the guest's open.
    const O_NONBLOCK: i32 = 0o4000;
    let writer = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(O_NONBLOCK)
        .open(&fifo);
    assert_eq!(
        writer.as_ref().err().and_then(std::io::Error::raw_os_error),
        Some(6),
        "a reader holds the FIFO open: {writer:?}"
    );
    host.stop().await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[tokio::test]
async fn a_link_in_a_granted_directory_tells_only_targets_inside_it() -> anyhow::Result<()> {
    let (dir, options) = granted_data_dir("readlink")?;
    let host = TestHost::start("probe", options).await?;
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    let outside = format!("../{}-elsewhere/secret", name.unwrap_or_default());
    for (id, target) in [
        (
            "readlink-absolute",
            dir.join("probe.txt").display().to_string(),
        ),
        ("readlink-climbing", outside),
    ] {
        let _ = std::fs::remove_file(dir.join("link"));
        std::os::unix::fs::symlink(&target, dir.join("link"))?;
        assert!(
            !probe(&host, id, "readlink").await?,
            "the guest read the link target {target}"
        );
        let lines = log_lines_with(id);
        assert!(
            lines.iter().all(|l| !l.contains(&target)),
            "the target reached the guest: {lines:#?}"
        );
        assert!(
            lines.iter().any(|l| l.contains("denied:")),
            "no refusal: {lines:#?}"
        );
    }
    std::fs::remove_file(dir.join("link"))?;
    std::os::unix::fs::symlink("probe.txt", dir.join("link"))?;
    assert!(
        probe(&host, "readlink-relative", "readlink").await?,
        "a relative target inside the grant was refused: {:#?}",
        log_lines_with("readlink-relative")
    );
    assert!(
        log_lines_with("readlink-relative")
            .iter()
            .any(|l| l.contains("link target: probe.txt"))
    );
    host.stop().await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[tokio::test]
async fn a_granted_directory_is_the_one_opened_at_start_whatever_its_path_names_later()
-> anyhow::Result<()> {
    let (dir, options) = granted_data_dir("swap")?;
    let host = TestHost::start("probe", options).await?;
    assert!(probe(&host, "swap-before", "read").await?);
    // Whoever can rename the path swaps in a directory without the file.
    let moved = dir.with_extension("moved");
    let _ = std::fs::remove_dir_all(&moved);
    std::fs::rename(&dir, &moved)?;
    std::fs::create_dir_all(&dir)?;
    assert!(
        probe(&host, "swap-after", "read").await?,
        "the guest saw the swapped-in directory: {:#?}",
        log_lines_with("swap-after")
    );
    host.stop().await?;
    std::fs::remove_dir_all(&dir)?;
    std::fs::remove_dir_all(&moved)?;
    Ok(())
}

#[tokio::test]
async fn a_guests_output_cannot_pass_for_the_hosts_log() -> anyhow::Result<()> {
    let host = TestHost::start("faulty", ReceiverOptions::default()).await?;
    let response = push(
        &reqwest::Client::new(),
        &host.url(),
        "forger-1",
        "forge",
        json_body("forger-1"),
    )
    .send()
    .await?;
    assert_eq!(response.status(), StatusCode::OK);
    host.stop().await?;
    let lines = log_lines_with("forged line");
    assert_eq!(
        lines.len(),
        1,
        "the forged text is not one line: {lines:#?}"
    );
    let line = &lines[0];
    assert!(
        line.contains("forger-1"),
        "not tagged with its message: {line}"
    );
    assert!(
        line.contains(r"x\r2030-01-01T00:00:00.000000Z ERROR cmq_host: forged line\u{b}vertical \u{202e}desrever\u{1b}[31m"),
        "not escaped: {line:?}"
    );
    assert!(
        !line.contains(['\r', '\u{b}', '\u{202e}', '\u{1b}']),
        "a raw control reached the log: {line:?}"
    );
    Ok(())
}

#[tokio::test]
async fn outbound_https_checks_the_certificate_against_the_public_roots() -> anyhow::Result<()> {
    // A TCP server that records the first bytes each connection sends.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let first_bytes = Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let seen = first_bytes.clone();
    // It answers as a TLS server with a self-signed certificate no public root signs.
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(
        vec![certified.cert.der().clone()],
        rustls_pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into()),
    )?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let mut peek = [0u8; 3];
            let _ = stream.peek(&mut peek).await;
            seen.lock().expect("not poisoned").extend_from_slice(&peek);
            let mut tls = match acceptor.accept(stream).await {
                Ok(tls) => tls,
                Err(_) => continue,
            };
            let mut request = [0u8; 1024];
            let _ = tls.read(&mut request).await;
            let _ = tls
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    let host = probe_granting(&format!("https://{addr}")).await?;
    assert!(
        !probe_with(
            &host,
            "https-self-signed",
            "http",
            format!("https://{addr}/")
        )
        .await?,
        "a certificate no public root signs was trusted"
    );
    let lines = log_lines_with("https-self-signed");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("denied: ErrorCode::TlsCertificateError")),
        "not refused for its certificate: {lines:#?}"
    );
    // The connection began a TLS handshake (a handshake record, TLS 1.x).
    let first = first_bytes.lock().expect("not poisoned").clone();
    assert_eq!(first.get(..2), Some(&[0x16, 0x03][..]), "{first:?}");
    host.stop().await
}
