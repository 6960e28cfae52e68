//! Shared by the test targets that run the `cmq-host` binary (cli.rs, operations.rs,
//! store_log.rs, many_hosts.rs, console.rs, browser.rs, ...): starting it on a free
//! port (with the console on, too), reading its log, signalling it, pushing to it,
//! swapping a component under it.

#![allow(dead_code, reason = "each test target uses its own part of these")]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub use cmq_tests::{DOCUMENTED_JSON_BODY, guest};

/// The binary, with a delivery store of its own in the temp directory unless the test
/// names one with `--state`.
pub fn cmq_host() -> Command {
    let state = cmq_tests::test_dir().join(format!(
        "cmq_cli_{}_{}.db",
        std::process::id(),
        next_number()
    ));
    let mut command = Command::new(env!("CARGO_BIN_EXE_cmq-host"));
    command
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env("CMQ_HOST_STATE", state)
        // The compile cache of this test process, not the user's.
        .env(
            "XDG_CACHE_HOME",
            cmq_tests::test_dir().join(format!("cache-{}", std::process::id())),
        );
    command
}

/// Reads the child's stderr on a thread, line by line, so the test can wait for a line.
pub fn lines(stderr: ChildStderr) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

pub fn wait_for(lines: &mpsc::Receiver<String>, needle: &str) -> String {
    // The lines before it, to show when it never comes (a host that exits at start
    // says why on its last line).
    let mut before = Vec::new();
    loop {
        match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.contains(needle) => return line,
            Ok(line) => before.push(line),
            Err(err) => panic!(
                "no line with {needle:?} from cmq-host: {err}; its lines before:\n{}",
                before.join("\n")
            ),
        }
    }
}

pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cmq-host serve` on a free port; returns it, its stderr lines and its URL.
pub fn serve(
    guest_name: &str,
    flags: &[&str],
) -> anyhow::Result<(Running, mpsc::Receiver<String>, String)> {
    serve_path(&guest(guest_name), flags)
}

/// The same, for the component at `component`.
pub fn serve_path(
    component: &std::path::Path,
    flags: &[&str],
) -> anyhow::Result<(Running, mpsc::Receiver<String>, String)> {
    let mut args: Vec<&OsStr> = vec![
        "serve".as_ref(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
    ];
    args.extend(flags.iter().map(OsStr::new));
    args.push(component.as_os_str());
    spawn_serve(&args)
}

/// Runs `cmq-host ARGS` (a `serve`) and waits until it listens; returns it, its stderr
/// lines and its URL.
pub fn spawn_serve(args: &[&OsStr]) -> anyhow::Result<(Running, mpsc::Receiver<String>, String)> {
    spawn_listening(cmq_host().args(args))
}

/// Spawns `command` (a `cmq-host serve`) and waits until it listens; returns it, its
/// stderr lines and its URL.
pub fn spawn_listening(
    command: &mut Command,
) -> anyhow::Result<(Running, mpsc::Receiver<String>, String)> {
    let mut child = command.stderr(Stdio::piped()).spawn()?;
    let stderr = child.stderr.take().expect("piped stderr");
    let lines = lines(stderr);
    let running = Running(child);
    let url = listening_url(&wait_for(&lines, "listening on http"));
    Ok((running, lines, url))
}

/// The URL of a `listening on URL` log line. The URL ends the human line, and a quote
/// ends it in a JSON one.
pub fn listening_url(line: &str) -> String {
    line.split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split(['"', ' ']).next())
        .expect("a listening line")
        .trim()
        .to_owned()
}

pub fn signal(child: &Running, name: &str) -> anyhow::Result<()> {
    let sent = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.0.id().to_string())
        .status()?;
    anyhow::ensure!(sent.success(), "kill -{name} failed");
    Ok(())
}

pub fn cmq_push(
    client: &reqwest::Client,
    url: &str,
    id: &str,
    tag: &str,
) -> reqwest::RequestBuilder {
    client
        .post(format!("{url}/cgi"))
        .header("x-cmq-message-id", id)
        .header("x-cmq-message-tag", tag)
        .body(DOCUMENTED_JSON_BODY.replace("6942316962", id))
}

/// The store's key of the documented JSON push with message id `id` (what `cmq_push`
/// sends) to `serve COMPONENT`'s one route.
pub fn documented_key(id: &str) -> String {
    cmq_tests::documented_key(cmq_host::SINGLE_ROUTE, id)
}

pub fn next_number() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The admin URL a `serve` with `admin_listen` logs after it listens.
pub fn admin_url(lines: &mpsc::Receiver<String>) -> String {
    let line = wait_for(lines, "metrics and health on ");
    let url = line
        .split("metrics and health on ")
        .nth(1)
        .and_then(|rest| rest.split("/metrics").next())
        .expect("an admin url");
    url.to_owned()
}

/// Reads `/metrics` from the admin URL `admin` with a real Prometheus text parser.
pub async fn scrape(
    client: &reqwest::Client,
    admin: &str,
) -> anyhow::Result<prometheus_parse::Scrape> {
    let response = client.get(format!("{admin}/metrics")).send().await?;
    assert_eq!(response.status(), 200);
    let text = response.text().await?;
    Ok(prometheus_parse::Scrape::parse(
        text.lines().map(|line| Ok(line.to_owned())),
    )?)
}

/// The value of the sample `name` with `labels` in a parsed scrape (summed over the
/// samples that match). A metric with no such sample fails the test: a renamed or
/// removed metric must not read as 0. [`sample_if_present`] is for absence on purpose.
pub fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample_if_present(scrape, name, labels).unwrap_or_else(|| {
        panic!("no sample of {name} with labels {labels:?} in the scrape (renamed or removed?)")
    })
}

/// The value of the sample `name` with `labels`, or `None` when the scrape has none.
pub fn sample_if_present(
    scrape: &prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    let values: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == name)
        .filter(|sample| {
            labels
                .iter()
                .all(|(key, value)| sample.labels.get(key) == Some(value))
        })
        .map(|sample| match &sample.value {
            prometheus_parse::Value::Counter(value)
            | prometheus_parse::Value::Gauge(value)
            | prometheus_parse::Value::Untyped(value) => *value,
            prometheus_parse::Value::Histogram(buckets) => {
                buckets.last().map_or(0.0, |bucket| bucket.count)
            }
            prometheus_parse::Value::Summary(_) => 0.0,
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// A new delivery store for `--state`: a SQLite file in the temp directory, or a new
/// database on the PostgreSQL server `CMQ_TEST_POSTGRES_URL` names.
pub async fn fresh_state(postgres: bool) -> anyhow::Result<String> {
    let backend = if postgres {
        cmq_tests::Backend::Postgres
    } else {
        cmq_tests::Backend::Sqlite
    };
    Ok(match cmq_tests::fresh_store(backend).await? {
        cmq_host::StoreLocation::Sqlite(path) => path.display().to_string(),
        // The URL as it is, password included: the spawned host must log in with it.
        cmq_host::StoreLocation::Postgres(url) => url,
    })
}

/// The wasmtime version the workspace's lock file pins: what `cmq-host --version` and
/// `cmq_build_info` name.
pub fn locked_wasmtime() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock"))
        .expect("the workspace's Cargo.lock")
        .split("[[package]]")
        .find(|package| package.contains("name = \"wasmtime\"\n"))
        .and_then(|package| package.lines().find_map(|l| l.strip_prefix("version = ")))
        .map(|version| version.trim_matches('"').to_owned())
        .expect("wasmtime in Cargo.lock")
}

/// Copies `from` beside `path`, then renames it over: a reload sees it whole.
pub fn install(from: &std::path::Path, path: &std::path::Path) -> anyhow::Result<()> {
    let partial = path.with_extension("partial");
    std::fs::copy(from, &partial)?;
    std::fs::rename(&partial, path)?;
    Ok(())
}

/// Waits for a line with `needle`, keeping every line read in `log`.
pub fn wait_keeping(lines: &mpsc::Receiver<String>, needle: &str, log: &mut Vec<String>) {
    loop {
        match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => {
                let found = line.contains(needle);
                log.push(line);
                if found {
                    return;
                }
            }
            Err(err) => panic!("no line with {needle:?} from cmq-host: {err}"),
        }
    }
}

/// A `cmq-host serve` with the console on, as the console's tests start it.
pub struct ConsoleHost {
    pub host: Running,
    pub lines: mpsc::Receiver<String>,
    /// Every line read so far.
    pub log: Vec<String>,
    /// The push listener's URL.
    pub url: String,
    /// The admin listener's URL.
    pub admin: String,
}

/// Writes, in `dir`, a config of the routes `names` (each at `/NAME`, served by
/// `handler.wasm` in `dir`, one attempt), listening on free ports, admin listener
/// included; its path.
pub fn console_config(dir: &std::path::Path, names: &[&str]) -> anyhow::Result<std::path::PathBuf> {
    let mut config = String::from("listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n");
    for name in names {
        config.push_str(&format!(
            "[routes.{name}]\npath = \"/{name}\"\ncomponent = \"handler.wasm\"\nmax_attempts = 1\n"
        ));
    }
    let path = dir.join("cmq.toml");
    std::fs::write(&path, config)?;
    Ok(path)
}

/// Serves `config` on the store `state` with the console behind `admin_token`, once
/// the console is on.
pub fn serve_console(
    config: &std::path::Path,
    state: &str,
    admin_token: &str,
) -> anyhow::Result<ConsoleHost> {
    let mut command = cmq_host();
    command
        .env("CMQ_HOST_ADMIN_TOKEN", admin_token)
        .args(["serve", "--config"])
        .arg(config)
        .args(["--state", state]);
    let mut child = command.stderr(Stdio::piped()).spawn()?;
    let stderr = child.stderr.take().expect("piped stderr");
    let lines = lines(stderr);
    let host = Running(child);
    // Every line from the first, start-up lines included (where a token printed by
    // mistake would most likely be), until the three listeners are up.
    let mut log = Vec::new();
    let seen = |log: &[String], needle: &str| log.iter().any(|line| line.contains(needle));
    while !["listening on http", "metrics and health on ", "console on "]
        .iter()
        .all(|needle| seen(&log, needle))
    {
        match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => log.push(line),
            Err(err) => panic!("cmq-host did not start its console: {err}; log: {log:#?}"),
        }
    }
    let find = |needle: &str| log.iter().find(|line| line.contains(needle)).cloned();
    let url = listening_url(&find("listening on http").expect("seen above"));
    let admin = find("metrics and health on ")
        .and_then(|line| {
            let rest = line.split("metrics and health on ").nth(1)?;
            Some(rest.split("/metrics").next()?.to_owned())
        })
        .expect("an admin url");
    Ok(ConsoleHost {
        host,
        lines,
        log,
        url,
        admin,
    })
}
