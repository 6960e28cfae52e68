//! Guests' outbound HTTP against what DNS and a slow upstream can do: `cmq-host serve`
//! runs with an `/etc/hosts` of the test's own (bind-mounted in a private mount
//! namespace, `unshare`, so the system resolver answers what the test says), and
//! sometimes a low open-files limit. A granted name that resolves to loopback, private
//! or link-local addresses is refused, the same target granted by IP literal or with
//! `--http-private` is reached; a guest that floods a silent upstream holds no more
//! than its share of connections, and the host keeps its descriptors and other routes.
//!
//! A test of the `cmq-host` package, so that cargo builds the binary for it.

mod binary;

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use binary::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// A scratch directory of this test's own.
fn scratch(name: &str) -> anyhow::Result<std::path::PathBuf> {
    let dir = cmq_tests::test_dir().join(format!("outbound-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// `cmq-host ARGS` in a mount namespace of its own whose `/etc/hosts` is `hosts`, with
/// at most `open_files` descriptors: the same binary, environment and arguments as
/// [`cmq_host`] gives, started through `unshare` (as root, or as an unprivileged user
/// mapped to root in a user namespace of its own).
fn serve_resolving(
    hosts: &std::path::Path,
    open_files: u32,
    args: &[&OsStr],
) -> anyhow::Result<(Running, mpsc::Receiver<String>, String)> {
    let plain = cmq_host();
    let mut command = Command::new("unshare");
    if !is_root() {
        command.args(["--user", "--map-root-user"]);
    }
    command
        .args(["--mount", "sh", "-c"])
        .arg(format!(
            "mount --bind \"$0\" /etc/hosts && ulimit -n {open_files} && exec \"$@\""
        ))
        .arg(hosts)
        .arg(plain.get_program())
        .args(args);
    for (name, value) in plain.get_envs() {
        if let Some(value) = value {
            command.env(name, value);
        }
    }
    spawn_listening(&mut command)
}

/// Whether this process runs as root (`Uid:` in `/proc/self/status`, real uid first).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// A plain HTTP server on 127.0.0.1: it answers 200, or (`silent`) reads and never
/// answers. It counts the connections it accepted and the most open at once.
struct Upstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    most_open: Arc<AtomicUsize>,
}

impl Upstream {
    async fn start(silent: bool) -> anyhow::Result<Upstream> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let upstream = Upstream {
            addr: listener.local_addr()?,
            accepted: Arc::default(),
            open: Arc::default(),
            most_open: Arc::default(),
        };
        let (accepted, open, most_open) = (
            upstream.accepted.clone(),
            upstream.open.clone(),
            upstream.most_open.clone(),
        );
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                most_open.fetch_max(now, Ordering::SeqCst);
                let open = open.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let mut request = Vec::new();
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                        if !silent && request.windows(4).any(|w| w == b"\r\n\r\n") {
                            let _ = stream
                                .write_all(
                                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\
                                      connection: close\r\n\r\nok",
                                )
                                .await;
                            break;
                        }
                    }
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Ok(upstream)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Pushes message `id` tagged `tag` whose SIMPLIFIED body is `body` to `url`; the status.
async fn push_body(
    client: &reqwest::Client,
    url: &str,
    id: &str,
    tag: &str,
    body: &str,
) -> anyhow::Result<u16> {
    Ok(client
        .post(url)
        .header("x-cmq-message-id", id)
        .header("x-cmq-message-tag", tag)
        .body(body.to_owned())
        .send()
        .await?
        .status()
        .as_u16())
}

/// The `message handled` line of message `id`, waiting for it.
fn handled(lines: &mpsc::Receiver<String>, id: &str) -> String {
    loop {
        let line = wait_for(lines, id);
        if line.contains("message handled") || line.contains("message not handled") {
            return line;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_name_reaches_only_the_addresses_its_grant_allows() -> anyhow::Result<()> {
    let upstream = Upstream::start(false).await?;
    let port = upstream.addr.port();
    let dir = scratch("names")?;
    let hosts = dir.join("hosts");
    std::fs::write(
        &hosts,
        "127.0.0.1 localhost\n\
         127.0.0.1 granted-api.test\n\
         127.0.0.1 private-api.test\n\
         169.254.169.254 metadata.test\n\
         10.0.0.1 intranet.test\n\
         127.0.0.1 mixed.test\n\
         192.0.2.1 mixed.test\n",
    )?;
    let grant = |name: &str| format!("http://{name}:{port}");
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--deadline".into(),
        "3s".into(),
        "--format".into(),
        "simplified".into(),
    ];
    for name in [
        "granted-api.test",
        "127.0.0.1",
        "metadata.test",
        "intranet.test",
        "mixed.test",
    ] {
        args.extend(["--http".into(), grant(name)]);
    }
    args.extend(["--http-private".into(), grant("private-api.test")]);
    args.push(guest("probe").display().to_string());
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let (_host, lines, url) = serve_resolving(&hosts, 1024, &args)?;
    let client = reqwest::Client::new();
    let push = |id: &'static str, name: &str| {
        let url = format!("{url}/cgi");
        let target = format!("http://{name}:{port}/hook");
        let client = client.clone();
        async move { push_body(&client, &url, id, "http", &target).await }
    };

    // Loopback by a name whose DNS the operator does not own: refused before connecting.
    assert_eq!(push("name-loopback", "granted-api.test").await?, 503);
    let line = handled(&lines, "name-loopback");
    assert!(line.contains("DestinationIpProhibited"), "{line}");
    assert_eq!(upstream.accepted(), 0, "the guest reached loopback by name");
    // The same target granted by IP literal, and by a name granted as private: reached.
    assert_eq!(push("literal-loopback", "127.0.0.1").await?, 200);
    assert_eq!(upstream.accepted(), 1);
    assert_eq!(push("private-name", "private-api.test").await?, 200);
    assert_eq!(upstream.accepted(), 2);
    // Link-local (the cloud metadata service) and RFC 1918 by name: refused.
    for (id, name) in [
        ("name-link-local", "metadata.test"),
        ("name-private", "intranet.test"),
    ] {
        assert_eq!(push(id, name).await?, 503);
        let line = handled(&lines, id);
        assert!(line.contains("DestinationIpProhibited"), "{line}");
    }
    // A name with a loopback and a public address: only the public one is tried (it
    // does not answer here: refused at once, or timed out at the deadline), never
    // loopback.
    assert_ne!(push("name-mixed", "mixed.test").await?, 200);
    let line = handled(&lines, "name-mixed");
    assert!(!line.contains("DestinationIpProhibited"), "{line}");
    assert_eq!(upstream.accepted(), 2, "the guest reached loopback by name");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// The number of descriptors process `pid` has open.
fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_flooding_a_silent_upstream_holds_its_share_and_the_host_keeps_serving()
-> anyhow::Result<()> {
    const OPEN_FILES: u32 = 256;
    const PUSHES: usize = 40;
    let silent = Upstream::start(true).await?;
    let dir = scratch("flood")?;
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n")?;
    let config = dir.join("cmq.toml");
    std::fs::write(
        &config,
        format!(
            r#"listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
max_in_flight = 128

[routes.flood]
path = "/flood"
component = "{probe}"
format = "simplified"
deadline = "3s"
http = ["http://{silent}"]

[routes.ok]
path = "/ok"
component = "{ack}"
"#,
            probe = guest("probe").display(),
            ack = guest("ack").display(),
            silent = silent.addr,
        ),
    )?;
    let args: Vec<&OsStr> = vec!["serve".as_ref(), "--config".as_ref(), config.as_os_str()];
    let (host, lines, url) = serve_resolving(&hosts, OPEN_FILES, &args)?;
    let admin = admin_url(&lines);
    // A quarter of the open-files limit, as the host says at start.
    let host_cap = OPEN_FILES as usize / 4;
    let pid = host.0.id();
    let client = reqwest::Client::new();
    let target = format!("http://{}/never", silent.addr);

    // One instance alone holds 16 connections, however many it asks for.
    let started = Instant::now();
    let status = push_body(
        &client,
        &format!("{url}/flood/cgi"),
        "flood-alone",
        "http-flood",
        &target,
    )
    .await?;
    assert_eq!(status, 500, "the flood was not stopped by its deadline");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let alone = silent.most_open.load(Ordering::SeqCst);
    assert_eq!(alone, 16, "one instance held {alone} connections");

    // Forty at once: the host's cap holds, its descriptors stay under the limit, every
    // push is answered by its deadline, and the other route answers throughout.
    let before = open_descriptors(pid);
    let watching = Arc::new(AtomicUsize::new(0));
    let peak = watching.clone();
    let watch = tokio::spawn(async move {
        for _ in 0..120 {
            peak.fetch_max(open_descriptors(pid), Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let floods: Vec<_> = (0..PUSHES)
        .map(|i| {
            let client = client.clone();
            let url = format!("{url}/flood/cgi");
            let target = target.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let status =
                    push_body(&client, &url, &format!("flood-{i}"), "http-flood", &target).await;
                (status.map_err(|e| e.to_string()), started.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ok = client
        .post(format!("{url}/ok/cgi"))
        .header("x-cmq-message-id", "other-route")
        .body(DOCUMENTED_JSON_BODY)
        .send()
        .await?;
    assert_eq!(ok.status(), 200, "the other route stopped serving");
    // A guest whose every request was refused gives up at once (503, its retry); one
    // that holds connections waits for the deadline (500).
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for flood in floods {
        let (status, took) = flood.await?;
        let status = status.map_err(anyhow::Error::msg)?;
        assert!(
            status == 500 || status == 503,
            "a flood push was answered {status}"
        );
        assert!(took < Duration::from_secs(5), "a flood push took {took:?}");
        *statuses.entry(status).or_default() += 1;
    }
    watch.await?;
    eprintln!("flood pushes by status: {statuses:?}");
    let (peak, most_open) = (
        watching.load(Ordering::SeqCst),
        silent.most_open.load(Ordering::SeqCst),
    );
    eprintln!(
        "descriptors: {before} before, {peak} at most; outbound connections at once: {most_open}"
    );
    assert!(
        most_open <= host_cap,
        "{most_open} outbound connections at once"
    );
    assert!(
        peak < OPEN_FILES as usize && peak <= before + PUSHES + host_cap + 8,
        "{peak} descriptors open (before the flood {before}, cap {host_cap})"
    );
    let scrape = scrape(&client, &admin).await?;
    let limited = sample(
        &scrape,
        "cmq_outbound_requests_total",
        &[("route", "flood"), ("outcome", "limited")],
    );
    assert!(limited > 0.0, "no request was counted as limited");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
