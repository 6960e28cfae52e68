//! `cargo xtask store-growth`: the delivery store's size under a long load and after it.
//!
//! `cmq-host serve --state FILE` runs the by-tag example under `wrk` (the documented
//! JSON push with a fresh message id per request, as in `cargo xtask bench`), and the
//! sizes of the database, its write-ahead log (`-wal`) and the log's index (`-shm`) are
//! sampled at a fixed interval during the load and for a while after it. With
//! `--postgres`, the store is a new database on the local PostgreSQL server instead,
//! and the samples are the message table's and its indexes' sizes and its live and
//! dead rows. With `--baseline BINARY` another build of `cmq-host` (an earlier
//! commit's, say) runs the same load first, and both go side by side in one report:
//! stdout and `target/bench/store-growth.md`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::bench::{
    Server, State, cmq_host_serve, ensure_wrk, free_port, machine, parse_wrk_duration, show,
    sqlite_state, wrk_command, wrk_field, wrk_requests, wrk_script,
};
use crate::{cargo, guests, repo_root};

/// What `cargo xtask store-growth` measures.
#[derive(Debug)]
pub struct Options {
    /// How long the load lasts.
    duration: Duration,
    /// wrk's connections.
    connections: u32,
    /// How often the files are sampled.
    every: Duration,
    /// How long the files are watched after the load.
    after: Duration,
    /// Another `cmq-host` binary, measured the same way before this tree's.
    baseline: Option<PathBuf>,
    /// The PostgreSQL store instead of SQLite.
    postgres: bool,
    /// Instances reused for up to this many messages (`--max-instance-reuse-count`).
    reuse: Option<u32>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            duration: Duration::from_secs(300),
            connections: 16,
            every: Duration::from_secs(10),
            after: Duration::from_secs(30),
            baseline: None,
            postgres: false,
            reuse: None,
        }
    }
}

pub fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut options = Options::default();
    let mut args = args.iter();
    let seconds = |flag: &str, value: &str| {
        value
            .parse::<u64>()
            .ok()
            .filter(|secs| *secs > 0)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("bad {flag} {value:?}"))
    };
    while let Some(flag) = args.next() {
        if flag == "--postgres" {
            options.postgres = true;
            continue;
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--seconds" => options.duration = seconds(flag, value)?,
            "--every" => options.every = seconds(flag, value)?,
            "--after" => options.after = seconds(flag, value)?,
            "--connections" => options.connections = crate::bench::positive(flag, value)?,
            "--baseline" => options.baseline = Some(PathBuf::from(value)),
            "--reuse" => {
                options.reuse = Some(
                    value
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| format!("bad --reuse {value:?}"))?,
                );
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(options)
}

/// One sample: seconds since the load began, whether the load was running, and the
/// store's figures (see [`Store::columns`]).
#[derive(Debug, Clone)]
struct Sample {
    at: Duration,
    loading: bool,
    figures: Vec<u64>,
}

/// Where the measured host keeps its state.
enum Store {
    Sqlite(PathBuf),
    /// The database's URL.
    Postgres(String),
}

impl Store {
    /// The store's columns, then the host's resident memory.
    fn columns(&self) -> &'static [&'static str] {
        match self {
            Store::Sqlite(_) => &["database MB", "-wal MB", "-shm MB", "host RSS MB"],
            Store::Postgres(_) => &[
                "table MB",
                "indexes MB",
                "live rows",
                "dead rows",
                "host RSS MB",
            ],
        }
    }

    /// The figures now, in the order of [`Store::columns`] (sizes in bytes).
    fn figures(&self) -> Result<Vec<u64>> {
        match self {
            Store::Sqlite(path) => {
                let size = |suffix: &str| {
                    let mut name = path.as_os_str().to_owned();
                    name.push(suffix);
                    std::fs::metadata(name).map_or(0, |meta| meta.len())
                };
                Ok(vec![size(""), size("-wal"), size("-shm")])
            }
            Store::Postgres(url) => {
                let query = "SELECT pg_table_size('cmq_messages'), \
                    pg_indexes_size('cmq_messages'), n_live_tup, n_dead_tup \
                    FROM pg_stat_user_tables WHERE relname = 'cmq_messages'";
                let output = Command::new("psql")
                    .args([url.as_str(), "-Atq", "-F", " ", "-c", query])
                    .output()
                    .context("running psql")?;
                let text = String::from_utf8_lossy(&output.stdout);
                let figures: Vec<u64> = text
                    .split_whitespace()
                    .filter_map(|figure| figure.parse().ok())
                    .collect();
                // Before the host made its table: nothing yet.
                Ok(if figures.len() == 4 {
                    figures
                } else {
                    vec![0; 4]
                })
            }
        }
    }

    /// How a figure of column `column` is shown.
    fn show(&self, column: usize, figure: u64) -> String {
        let rows = matches!(self, Store::Postgres(_)) && (column == 2 || column == 3);
        if rows {
            figure.to_string()
        } else {
            format!("{:.1}", figure as f64 / 1e6)
        }
    }
}

/// One binary's run: its samples, how many messages the load sent, and wrk's latency
/// percentiles (p50, p99).
struct Run {
    name: String,
    samples: Vec<Sample>,
    requests: u64,
    latency: Latency,
}

/// wrk's p50 and p99 latency, when it printed them.
type Latency = (Option<Duration>, Option<Duration>);

pub fn run(options: &Options) -> Result<()> {
    let root = repo_root();
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    guests::run(&guests::Selection {
        crates: vec![root.join("guest/examples/by-tag")],
        scripts: vec![],
        require_all: true,
    })?;
    eprintln!("xtask store-growth: building cmq-host (release)");
    let built = Command::new(cargo())
        .current_dir(&root)
        .args(["build", "--release", "-p", "cmq-host"])
        .status()?;
    ensure!(built.success(), "cargo build --release failed");
    let wrk = ensure_wrk()?;
    let script = out.join("push.lua");
    std::fs::write(&script, wrk_script())?;
    let component = root.join("target/guests/by_tag.wasm");

    let mut binaries = Vec::new();
    if let Some(baseline) = &options.baseline {
        binaries.push((
            format!("baseline ({})", baseline.display()),
            baseline.clone(),
        ));
    }
    binaries.push(("this tree".to_owned(), root.join("target/release/cmq-host")));
    let mut runs = Vec::new();
    let mut store = None;
    // Held to the end: a cluster the first one started is stopped with them.
    let mut databases = Vec::new();
    for (name, binary) in binaries {
        eprintln!("xtask store-growth: {name}");
        let state = if options.postgres {
            let database = crate::postgres::fresh_local_database("cmq_store_growth")?;
            let url = database.url.clone();
            databases.push(database);
            State::Postgres(url)
        } else {
            let dir = out.join("store-growth");
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)?;
            State::Sqlite(dir)
        };
        let (this, run) = load(options, name, &binary, &component, state, &wrk, &script)?;
        runs.push(run);
        store = Some(this);
    }
    let store = store.context("nothing was measured")?;
    let report = report(options, &store, &runs)?;
    print!("{report}");
    std::fs::write(out.join("store-growth.md"), &report)?;
    Ok(())
}

/// Serves with `binary` on `state`, loads it for `options.duration`, and samples the
/// store; returns the store it sampled, and the run.
fn load(
    options: &Options,
    name: String,
    binary: &Path,
    component: &Path,
    state: State,
    wrk: &Path,
    script: &Path,
) -> Result<(Store, Run)> {
    let port = free_port()?;
    let store = match &state {
        State::Sqlite(dir) => Store::Sqlite(sqlite_state(dir, port)),
        State::Postgres(url) => Store::Postgres(url.clone()),
        State::None => bail!("store-growth measures a store"),
    };
    let reuse = options.reuse.map(|n| n.to_string());
    let flags: Vec<&str> = match &reuse {
        Some(n) => vec!["--max-instance-reuse-count", n],
        None => vec![],
    };
    let serve = cmq_host_serve(binary, component, &flags, state)(port);
    // Its log is not kept: five minutes of it would take a gigabyte.
    let server = Server::start(serve, port, Path::new("/dev/null"))?;
    let mut wrk = wrk_command(wrk, script, port, options.connections, options.duration)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting wrk")?;

    let started = Instant::now();
    let mut samples = Vec::new();
    let mut loading = true;
    let mut ended: Option<Instant> = None;
    let mut next = started;
    loop {
        next += options.every;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        if loading && wrk.try_wait()?.is_some() {
            loading = false;
            ended = Some(Instant::now());
        }
        let mut figures = store.figures()?;
        figures.push(crate::bench::status_kib(server.pid(), "VmRSS")? * 1024);
        samples.push(Sample {
            at: started.elapsed(),
            loading,
            figures,
        });
        if ended.is_some_and(|ended| ended.elapsed() >= options.after) {
            break;
        }
    }
    let output = wrk.wait_with_output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let percentile =
        |prefix: &str| wrk_field(&text, prefix).and_then(|value| parse_wrk_duration(&value));
    let run = Run {
        name,
        samples,
        requests: wrk_requests(&text)?,
        latency: (percentile("50%"), percentile("99%")),
    };
    Ok((store, run))
}

fn report(options: &Options, store: &Store, runs: &[Run]) -> Result<String> {
    let (what, state) = match store {
        Store::Sqlite(_) => ("SQLite store's files", "--state FILE"),
        Store::Postgres(_) => ("PostgreSQL store's message table", "--state postgres://…"),
    };
    let mut text = format!("# The {what} under load\n\n");
    text.push_str(&machine()?);
    text.push_str(&format!(
        "\nLoad: `wrk -t1 -c{} -d{}s`, the documented JSON push with a fresh message id per \
         request, to `cmq-host serve {state}{} target/guests/by_tag.wasm`; sampled every {} s \
         during the load and for {} s after it (MB = 10^6 bytes).\n",
        options.connections,
        options.duration.as_secs(),
        options
            .reuse
            .map(|n| format!(" --max-instance-reuse-count {n}"))
            .unwrap_or_default(),
        options.every.as_secs(),
        options.after.as_secs(),
    ));
    let columns = store.columns();
    for run in runs {
        let latency = |value: Option<Duration>| value.map_or("?".to_owned(), show);
        text.push_str(&format!(
            "\n## {}: {} messages, latency p50 {}, p99 {}\n\n| s | | {} |\n|---|---|{}\n",
            run.name,
            run.requests,
            latency(run.latency.0),
            latency(run.latency.1),
            columns.join(" | "),
            "---|".repeat(columns.len()),
        ));
        for sample in &run.samples {
            let figures: Vec<String> = sample
                .figures
                .iter()
                .enumerate()
                .map(|(column, figure)| store.show(column, *figure))
                .collect();
            text.push_str(&format!(
                "| {} | {} | {} |\n",
                sample.at.as_secs(),
                if sample.loading { "load" } else { "idle" },
                figures.join(" | "),
            ));
        }
        let largest: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(column, name)| {
                let most = run
                    .samples
                    .iter()
                    .filter_map(|sample| sample.figures.get(column))
                    .max()
                    .copied()
                    .unwrap_or(0);
                format!("{name} {}", store.show(column, most))
            })
            .collect();
        let last = run
            .samples
            .last()
            .map_or(0, |sample| sample.figures.iter().take(2).sum::<u64>());
        text.push_str(&format!(
            "\nLargest: {}. At the end, {:.0} bytes of {} per message.\n",
            largest.join(", "),
            last as f64 / run.requests.max(1) as f64,
            match store {
                Store::Sqlite(_) => "database and log",
                Store::Postgres(_) => "table and indexes",
            },
        ));
    }
    Ok(text)
}
