//! `cargo xtask bench`: the receivers side by side, in one run, under the same load.
//!
//! Each path gets the documented JSON push from `wrk` (installed from Debian's packages
//! when missing) at each connection count, and the report gives requests per second,
//! p50 and p99 latency, CPU time per message and peak RSS, each as a ratio to the
//! native receiver, then the cold start of each (process start to the first `200`).
//! The report goes to stdout and to `target/bench/report.md`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::bench_targets::{Load, Measured, Row};
use crate::{cargo, guests, repo_root};

/// The documented JSON push, as CMQ sends it.
const BODY: &str = r#"{"TopicOwner":100015036,"topicName":"MyTopic","subscriptionName":"mysubscription","msgId":"6942316962","msgBody":"test message","publishTime":11203432}"#;

/// What `cargo xtask bench` measures.
#[derive(Debug)]
pub struct Options {
    /// How long each load lasts.
    duration: Duration,
    /// The connection counts.
    connections: Vec<u32>,
    /// Cold starts per path; the median is reported.
    starts: usize,
    /// Loads per row, the rows taking turns; the median is reported.
    rounds: usize,
    /// Another build of cmq-host, measured beside this tree's on the rows the targets
    /// compare with it (see [`crate::bench_targets`]).
    baseline: Option<PathBuf>,
    /// The `ack` component the baseline build serves on its `ack` rows, when this
    /// tree's guests import what that build does not offer; this tree's otherwise.
    baseline_guest: Option<PathBuf>,
    /// `--only`: the rows to load besides the native anchor (see [`Only`]).
    only: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            duration: Duration::from_secs(5),
            connections: vec![1, 16, 64],
            starts: 5,
            rounds: 1,
            baseline: None,
            baseline_guest: None,
            only: None,
        }
    }
}

pub fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut options = Options::default();
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--seconds" => {
                let secs: u64 = value
                    .parse()
                    .map_err(|_| format!("bad --seconds {value:?}"))?;
                options.duration = Duration::from_secs(secs.max(1));
            }
            "--connections" => {
                options.connections = value
                    .split(',')
                    .map(|c| c.trim().parse::<u32>().ok().filter(|c| *c > 0))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| format!("bad --connections {value:?}"))?;
            }
            "--baseline" => options.baseline = Some(PathBuf::from(value)),
            "--baseline-guest" => options.baseline_guest = Some(PathBuf::from(value)),
            "--only" => options.only = Some(value.clone()),
            "--rounds" => options.rounds = positive(flag, value)?,
            "--starts" => options.starts = positive(flag, value)?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if options.baseline_guest.is_some() && options.baseline.is_none() {
        return Err("--baseline-guest is the baseline build's: it needs --baseline".into());
    }
    Ok(options)
}

/// The rows `--only` names: parts separated by commas, each selecting the rows whose
/// name holds it; but parts that together spell a row's whole name (many names hold
/// commas) select that row alone, and its baseline build's.
#[derive(Debug, Default, PartialEq)]
struct Only {
    whole: Vec<String>,
    parts: Vec<String>,
}

impl Only {
    /// `value` read against the rows' `names`: the longest run of parts that is a
    /// whole name is taken first.
    fn parse(value: &str, names: &[&str]) -> Only {
        let pieces: Vec<&str> = value.split(',').collect();
        let mut only = Only::default();
        let mut at = 0;
        while at < pieces.len() {
            let whole = (at + 2..=pieces.len())
                .rev()
                .find(|&end| names.contains(&pieces[at..end].join(",").trim()));
            match whole {
                Some(end) => {
                    only.whole.push(pieces[at..end].join(",").trim().to_owned());
                    at = end;
                }
                None => {
                    let part = pieces[at].trim();
                    if !part.is_empty() {
                        only.parts.push(part.to_owned());
                    }
                    at += 1;
                }
            }
        }
        only
    }

    fn selects(&self, name: &str) -> bool {
        let baseline_of = |whole: &String| {
            name.strip_suffix(", baseline build")
                .is_some_and(|row| row == whole)
        };
        self.whole
            .iter()
            .any(|whole| name == whole || baseline_of(whole))
            || self.parts.iter().any(|part| name.contains(part.as_str()))
    }
}

/// `value` of `flag` as a count above zero.
pub(crate) fn positive<N: std::str::FromStr + Default + PartialOrd>(
    flag: &str,
    value: &str,
) -> Result<N, String> {
    value
        .parse()
        .ok()
        .filter(|n| *n > N::default())
        .ok_or_else(|| format!("bad {flag} {value:?}"))
}

/// One receiver under test: how to start it on a given port.
struct Receiver {
    name: String,
    command: Box<dyn Fn(u16) -> Command>,
    /// It closes the connection after every answer (HTTP/1.0), which wrk counts as a
    /// read error per request: those are not failures for it.
    closes_connections: bool,
    /// The row a target reads, if any.
    row: Option<Row>,
}

pub fn run(options: &Options) -> Result<()> {
    let root = repo_root();
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    guests::run(&guests::Selection {
        crates: vec![
            root.join("guest/fixtures/ack"),
            root.join("guest/examples/by-tag"),
        ],
        scripts: vec![
            root.join("guest/python/by_tag.py"),
            root.join("guest/js/by_tag.js"),
        ],
        require_all: true,
    })?;
    eprintln!("xtask bench: building cmq-host and the native receiver (release)");
    let built = Command::new(cargo())
        .current_dir(&root)
        .args(["build", "--release", "-p", "cmq-host", "-p", "cmq-bench"])
        .status()?;
    ensure!(built.success(), "cargo build --release failed");
    let wrk = ensure_wrk()?;
    let wasmtime = crate::wasmtime_cli::ensure(&root)?;
    let script = out.join("push.lua");
    std::fs::write(&script, wrk_script())?;

    let release = root.join("target/release");
    let host = release.join("cmq-host");
    let native = release.join("native-receiver");
    let component = root.join("target/guests/ack.wasm");
    let sample = root.join("bench/python/cmq_sample_receiver.py");
    let states = out.join("state");
    let _ = std::fs::remove_dir_all(&states);
    std::fs::create_dir_all(&states)?;
    // Held to the end: a cluster this started is stopped with it.
    let database_server = crate::postgres::fresh_local_database("cmq_bench")
        .context("the PostgreSQL store's row needs the local server")?;
    let database = database_server.url.clone();
    // The same handler in three languages, each loaded from a compile cache primed by
    // its first start (a Python or JavaScript component takes seconds to compile).
    let languages = out.join("compile-cache-languages");
    let _ = std::fs::remove_dir_all(&languages);
    let languages = languages.to_string_lossy().into_owned();
    let by_tag = |file: &str| root.join("target/guests").join(file);
    // `flags` beside the compile cache's.
    let in_language = |host: &Path, file: &str, flags: &[&str]| {
        let mut all = vec!["--compile-cache", languages.as_str()];
        all.extend_from_slice(flags);
        cmq_host_serve(host, &by_tag(file), &all, State::None)
    };
    let mut paths = vec![
        Receiver {
            name: "native hyper + cmq-message (no sandbox)".into(),
            command: Box::new(move |port| {
                let mut command = Command::new(&native);
                command.arg(format!("127.0.0.1:{port}"));
                command
            }),
            closes_connections: false,
            row: Some(Row::Native),
        },
        Receiver {
            name: "cmq-host, ack guest, fresh instance per message, no store".into(),
            command: cmq_host_serve(&host, &component, &[], State::None),
            closes_connections: false,
            row: Some(Row::NoStore),
        },
        Receiver {
            name: "the same, with the SQLite store (dedupe, attempts)".into(),
            command: cmq_host_serve(&host, &component, &[], State::Sqlite(states.clone())),
            closes_connections: false,
            row: Some(Row::Sqlite),
        },
        Receiver {
            name: "the same, with the PostgreSQL store (local server)".into(),
            command: cmq_host_serve(&host, &component, &[], State::Postgres(database.clone())),
            closes_connections: false,
            row: Some(Row::Postgres),
        },
        Receiver {
            name: "the same guest via wasi:http (cmq-host --serve-as incoming-handler)".into(),
            command: cmq_host_serve(
                &host,
                &component,
                &["--serve-as", "incoming-handler"],
                State::None,
            ),
            closes_connections: false,
            row: None,
        },
        Receiver {
            name: "ack guest, no store, traces on: OTLP/HTTP to a collector taking all".into(),
            command: traced(
                cmq_host_serve(&host, &component, &[], State::None),
                otlp_sink()?,
            ),
            closes_connections: false,
            row: None,
        },
        Receiver {
            name: "the same, traces on, one push in a hundred sampled (traceidratio 0.01)".into(),
            command: sampled(
                traced(
                    cmq_host_serve(&host, &component, &[], State::None),
                    otlp_sink()?,
                ),
                "0.01",
            ),
            closes_connections: false,
            row: None,
        },
        Receiver {
            name: "the same, traces on, the collector down (nothing listens)".into(),
            command: traced(
                cmq_host_serve(&host, &component, &[], State::None),
                format!("http://127.0.0.1:{}", free_port()?),
            ),
            closes_connections: false,
            row: None,
        },
        Receiver {
            name: "cmq-host, by-tag handler in Rust, no store".into(),
            command: in_language(&host, "by_tag.wasm", &[]),
            closes_connections: false,
            row: None,
        },
        Receiver {
            name: "the same handler in Python (componentize-py)".into(),
            command: in_language(&host, "py_by_tag.wasm", &[]),
            closes_connections: false,
            row: Some(Row::Python),
        },
        Receiver {
            name: "the same handler in JavaScript (componentize-js)".into(),
            command: in_language(&host, "js_by_tag.wasm", &[]),
            closes_connections: false,
            row: Some(Row::JavaScript),
        },
        Receiver {
            name: "cmq-host, ack guest, instances reused up to 128 messages, no store".into(),
            command: cmq_host_serve(&host, &component, REUSE, State::None),
            closes_connections: false,
            row: Some(Row::Reused),
        },
        Receiver {
            name: "the same, reused, with the SQLite store".into(),
            command: cmq_host_serve(&host, &component, REUSE, State::Sqlite(states.clone())),
            closes_connections: false,
            row: Some(Row::ReusedSqlite),
        },
        Receiver {
            name: "the same, reused, with the PostgreSQL store (local server)".into(),
            command: cmq_host_serve(&host, &component, REUSE, State::Postgres(database.clone())),
            closes_connections: false,
            row: None,
        },
        Receiver {
            name: "`wasmtime serve -S cli -S config`, ack guest (fresh instance per request)"
                .into(),
            command: wasmtime_serve(&wasmtime, &component, &[]),
            closes_connections: false,
            row: Some(Row::Wasmtime(Box::new(Row::NoStore))),
        },
        Receiver {
            name: "`wasmtime serve -S cli -S config --max-instance-reuse-count 128`, ack guest"
                .into(),
            command: wasmtime_serve(&wasmtime, &component, REUSE),
            closes_connections: false,
            row: Some(Row::Wasmtime(Box::new(Row::Reused))),
        },
        Receiver {
            name: "cmq-host, by-tag in Python, instances reused up to 128".into(),
            command: in_language(&host, "py_by_tag.wasm", REUSE),
            closes_connections: false,
            row: Some(Row::PythonReused),
        },
        Receiver {
            name: "`wasmtime serve --max-instance-reuse-count 128`, by-tag in Python".into(),
            command: wasmtime_serve(&wasmtime, &by_tag("py_by_tag.wasm"), REUSE),
            closes_connections: false,
            row: Some(Row::Wasmtime(Box::new(Row::PythonReused))),
        },
        Receiver {
            name: "cmq-host, by-tag in JavaScript, instances reused up to 128".into(),
            command: in_language(&host, "js_by_tag.wasm", REUSE),
            closes_connections: false,
            row: Some(Row::JavaScriptReused),
        },
        Receiver {
            name: "`wasmtime serve --max-instance-reuse-count 128`, by-tag in JavaScript".into(),
            command: wasmtime_serve(&wasmtime, &by_tag("js_by_tag.wasm"), REUSE),
            closes_connections: false,
            row: Some(Row::Wasmtime(Box::new(Row::JavaScriptReused))),
        },
        Receiver {
            name: "CMQ documentation's Python sample (Python 3 port)".into(),
            command: Box::new(move |port| {
                let mut command = Command::new("python3");
                command.arg(&sample).arg(port.to_string());
                command
            }),
            closes_connections: true,
            row: None,
        },
    ];
    if let Some(baseline) = &options.baseline {
        // Each row a target compares with the baseline, measured with it right after.
        let component = options.baseline_guest.as_ref().unwrap_or(&component);
        // A build from before instances could be reused gets no reused rows.
        let reuses = serves_with(baseline, REUSE[0]);
        let before = |row: &Row| -> Option<Box<dyn Fn(u16) -> Command>> {
            Some(match row {
                Row::NoStore => cmq_host_serve(baseline, component, &[], State::None),
                Row::Sqlite => {
                    cmq_host_serve(baseline, component, &[], State::Sqlite(states.clone()))
                }
                Row::Postgres => {
                    cmq_host_serve(baseline, component, &[], State::Postgres(database.clone()))
                }
                Row::Python => in_language(baseline, "py_by_tag.wasm", &[]),
                Row::JavaScript => in_language(baseline, "js_by_tag.wasm", &[]),
                Row::Reused if reuses => cmq_host_serve(baseline, component, REUSE, State::None),
                Row::ReusedSqlite if reuses => {
                    cmq_host_serve(baseline, component, REUSE, State::Sqlite(states.clone()))
                }
                Row::Native | Row::Baseline(_) | Row::Wasmtime(_) => return None,
                Row::Reused | Row::ReusedSqlite | Row::PythonReused | Row::JavaScriptReused => {
                    return None;
                }
            })
        };
        let mut with_baseline = Vec::new();
        for path in paths {
            let baseline_row = path
                .row
                .as_ref()
                .and_then(|row| Some((row.clone(), before(row)?)));
            let name = path.name.clone();
            with_baseline.push(path);
            if let Some((row, command)) = baseline_row {
                with_baseline.push(Receiver {
                    name: format!("{name}, baseline build"),
                    command,
                    closes_connections: false,
                    row: Some(Row::Baseline(Box::new(row))),
                });
            }
        }
        paths = with_baseline;
    }

    if let Some(only) = &options.only {
        let names: Vec<&str> = paths.iter().map(|path| path.name.as_str()).collect();
        let only = Only::parse(only, &names);
        paths.retain(|path| path.row == Some(Row::Native) || only.selects(&path.name));
    }

    let mut report = String::new();
    report.push_str(&machine()?);
    report.push_str(&format!(
        "\nLoad: `wrk -t1 -c<C> -d{}s --latency`, the documented JSON push (POST, CMQ's headers); \
         the receiver pinned to CPU {SERVER_CPU} and wrk to CPU {LOAD_CPU} when taskset and two CPUs are there. \
         CPU/msg is the receiver's; a row with the PostgreSQL store adds what every `postgres` process spent (the local server, unpinned).\n\n",
        options.duration.as_secs()
    ));
    if options.rounds > 1 {
        report.push_str(&format!(
            "Each row was loaded {} times, the rows taking turns; a row shows its round of median req/s (its latencies and CPU are that round's), and its highest peak RSS.\n\n",
            options.rounds
        ));
    }
    report.push_str("| path | conns | req/s | p50 | p99 | CPU/msg | peak RSS |\n|---|---|---|---|---|---|---|\n");
    if let Some(baseline) = &options.baseline {
        report = report.replace(
            "| path |",
            &format!(
                "Rows marked \"baseline build\" run `{}` instead of this tree's cmq-host.\n\n| path |",
                baseline.display()
            ),
        );
    }
    let mut native_loads: Vec<Load> = Vec::new();
    let mut measured: Vec<Measured> = Vec::new();
    let mut cold_starts: Vec<(String, Duration)> = Vec::new();
    // Every row once a round, the rows taking turns, so that a machine whose speed
    // drifts over minutes slows each row alike; each row shows its median round.
    let mut rounds: Vec<Vec<Round>> = vec![Vec::new(); paths.len()];
    for round in 1..=options.rounds {
        for (index, path) in paths.iter().enumerate() {
            eprintln!(
                "xtask bench: {} (round {round} of {})",
                path.name, options.rounds
            );
            if round == 1 {
                // One start and stop first, so that a row whose component comes from
                // the compile cache measures serving from it, not the compile that
                // filled it (its peak RSS would be the compiler's).
                cold_start(&*path.command)?;
            }
            let round = measure(path, &wrk, &script, &out, options)?;
            for (connections, load) in &round.loads {
                eprintln!(
                    "xtask bench:   {connections} connections: {:.0} req/s, {:.1} µs CPU/msg",
                    load.requests_per_sec,
                    load.cpu_per_message.as_secs_f64() * 1e6
                );
            }
            rounds[index].push(round);
        }
    }
    for (index, path) in paths.iter().enumerate() {
        let Round {
            loads,
            peak_rss_kib: rss,
        } = median_round(&rounds[index]);
        if let Some(row) = &path.row {
            measured.push(Measured {
                row: row.clone(),
                loads: loads.clone(),
                peak_rss_kib: rss,
            });
        }
        if index == 0 {
            native_loads = loads.iter().map(|(_, load)| *load).collect();
        }
        for (i, (connections, load)) in loads.iter().enumerate() {
            let base = native_loads.get(i).copied();
            let ratio = |value: f64, base: Option<f64>| match base {
                Some(base) if index > 0 && base > 0.0 => format!(" ({:.2}×)", value / base),
                _ => String::new(),
            };
            let failed = if load.failed > 0 {
                format!(" **{} non-2xx**", load.failed)
            } else {
                String::new()
            };
            // The database's share, where a row has one (idle, it spends next to nothing).
            let database = load.database_cpu_per_message.as_secs_f64() * 1e6;
            let database = if database >= 1.0 {
                format!(" + {database:.1} µs PostgreSQL")
            } else {
                String::new()
            };
            report.push_str(&format!(
                "| {} | {connections} | {:.0}{}{failed} | {} | {}{} | {:.1} µs{}{database} | {:.1} MiB |\n",
                path.name,
                load.requests_per_sec,
                ratio(load.requests_per_sec, base.map(|b| b.requests_per_sec)),
                show(load.p50),
                show(load.p99),
                ratio(load.p99.as_secs_f64(), base.map(|b| b.p99.as_secs_f64())),
                load.cpu_per_message.as_secs_f64() * 1e6,
                ratio(
                    load.cpu_per_message.as_secs_f64(),
                    base.map(|b| b.cpu_per_message.as_secs_f64())
                ),
                rss as f64 / 1024.0,
            ));
        }
        // Another build's starts, and a peer's (which compiles at every start), are not
        // what the cold-start table is about.
        if matches!(path.row, Some(Row::Baseline(_) | Row::Wasmtime(_))) {
            continue;
        }
        let mut starts = Vec::new();
        for _ in 0..options.starts {
            starts.push(cold_start(&*path.command)?);
        }
        starts.sort();
        cold_starts.push((path.name.clone(), starts[starts.len() / 2]));
    }
    report.push_str(&crate::bench_targets::report(&measured));
    // And cmq-host once more, from the component compiled ahead of time.
    let cwasm = out.join("ack.cwasm");
    let compiled = Command::new(&host)
        .args(["compile", "-o"])
        .arg(&cwasm)
        .arg(&component)
        .stderr(Stdio::null())
        .status()?;
    ensure!(compiled.success(), "cmq-host compile failed");
    let precompiled = cmq_host_serve(&host, &cwasm, &["--allow-precompiled"], State::None);
    let mut starts = (0..options.starts)
        .map(|_| cold_start(&*precompiled))
        .collect::<Result<Vec<_>>>()?;
    starts.sort();
    cold_starts.push((
        "cmq-host, ack guest precompiled (`cmq-host compile`, .cwasm)".into(),
        starts[starts.len() / 2],
    ));
    // And from the `.wasm` with the compile cache, primed by one start.
    let cache = out.join("compile-cache");
    let _ = std::fs::remove_dir_all(&cache);
    let cache = cache.to_string_lossy().into_owned();
    let cached = cmq_host_serve(&host, &component, &["--compile-cache", &cache], State::None);
    cold_start(&*cached)?;
    let mut starts = (0..options.starts)
        .map(|_| cold_start(&*cached))
        .collect::<Result<Vec<_>>>()?;
    starts.sort();
    cold_starts.push((
        "cmq-host, ack guest .wasm, from the compile cache (second and later starts)".into(),
        starts[starts.len() / 2],
    ));
    // And each language's first start, compiling (once: it takes seconds).
    for (name, file) in [
        (
            "by-tag in Rust, first start (compiling the .wasm)",
            "by_tag.wasm",
        ),
        (
            "by-tag in Python, first start (compiling the .wasm)",
            "py_by_tag.wasm",
        ),
        (
            "by-tag in JavaScript, first start (compiling the .wasm)",
            "js_by_tag.wasm",
        ),
    ] {
        let compiling = cmq_host_serve(&host, &by_tag(file), &[], State::None);
        cold_starts.push((name.into(), cold_start(&*compiling)?));
    }
    report.push_str(&format!(
        "\nCold start, process start to the first `200` (median of {}; a first start once):\n\n| path | cold start |\n|---|---|\n",
        options.starts
    ));
    for (name, start) in cold_starts {
        report.push_str(&format!("| {name} | {} |\n", show(start)));
    }
    std::fs::write(out.join("report.md"), &report)?;
    println!("{report}");
    eprintln!("xtask bench: report written to target/bench/report.md");
    Ok(())
}

/// The reuse the reused rows ask for, cmq-host's and `wasmtime serve`'s flag alike.
const REUSE: &[&str] = &["--max-instance-reuse-count", "128"];

/// Whether `host serve` takes `flag` (its help names it).
fn serves_with(host: &Path, flag: &str) -> bool {
    Command::new(host)
        .args(["serve", "--help"])
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(flag))
}

/// `wasmtime serve -S cli -S config --addr 127.0.0.1:PORT FLAGS COMPONENT`: the peer,
/// serving the component's `wasi:http/incoming-handler` as wasmtime's CLI does (`-S
/// cli` for the stdout and stderr the handlers import, `-S config` for the settings the
/// SDK's entrance reads).
fn wasmtime_serve(
    wasmtime: &Path,
    component: &Path,
    flags: &[&str],
) -> Box<dyn Fn(u16) -> Command> {
    let (wasmtime, component) = (wasmtime.to_path_buf(), component.to_path_buf());
    let flags: Vec<String> = flags.iter().map(|flag| flag.to_string()).collect();
    Box::new(move |port| {
        let mut command = Command::new(&wasmtime);
        command
            .args(["serve", "-S", "cli", "-S", "config"])
            .args(["--addr", &format!("127.0.0.1:{port}")])
            .args(&flags)
            .arg(&component);
        command
    })
}

/// Where a benchmarked `cmq-host` keeps its delivery state.
#[derive(Clone)]
pub(crate) enum State {
    /// `--no-state`.
    None,
    /// A new SQLite file in this directory for every start.
    Sqlite(PathBuf),
    /// A PostgreSQL database, by URL.
    Postgres(String),
}

/// The SQLite file of the `cmq-host` that [`cmq_host_serve`] starts on `port` with
/// `State::Sqlite(dir)`.
pub(crate) fn sqlite_state(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!("state-{port}.db"))
}

/// `cmq-host serve FLAGS --listen 127.0.0.1:PORT COMPONENT` with `state`, for any port.
/// Without `--compile-cache` in `flags`, the compile cache is off: a `.wasm` is
/// compiled at every start.
pub(crate) fn cmq_host_serve(
    host: &Path,
    component: &Path,
    flags: &[&str],
    state: State,
) -> Box<dyn Fn(u16) -> Command> {
    let (host, component) = (host.to_path_buf(), component.to_path_buf());
    let mut flags: Vec<String> = flags.iter().map(|flag| flag.to_string()).collect();
    if !flags.iter().any(|flag| flag == "--compile-cache") {
        flags.extend(["--compile-cache".to_owned(), "off".to_owned()]);
    }
    Box::new(move |port| {
        let mut command = Command::new(&host);
        command.arg("serve").args(&flags);
        match &state {
            State::None => {
                command.arg("--no-state");
            }
            State::Sqlite(dir) => {
                command.arg("--state").arg(sqlite_state(dir, port));
            }
            // Through the environment, as the README advises for a URL with a password.
            State::Postgres(url) => {
                command.env("CMQ_HOST_STATE", url);
            }
        }
        command
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg(&component);
        command
    })
}

/// `serve`'s command with traces sent to `endpoint`.
fn traced(serve: Box<dyn Fn(u16) -> Command>, endpoint: String) -> Box<dyn Fn(u16) -> Command> {
    Box::new(move |port| {
        let mut command = serve(port);
        command.env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint);
        command
    })
}

/// `serve`'s command with pushes traced at `ratio` (`OTEL_TRACES_SAMPLER=traceidratio`).
fn sampled(serve: Box<dyn Fn(u16) -> Command>, ratio: &'static str) -> Box<dyn Fn(u16) -> Command> {
    Box::new(move |port| {
        let mut command = serve(port);
        command
            .env("OTEL_TRACES_SAMPLER", "traceidratio")
            .env("OTEL_TRACES_SAMPLER_ARG", ratio);
        command
    })
}

/// An OTLP/HTTP endpoint that answers every request `200` and keeps nothing, on a thread
/// of its own for as long as xtask runs; its URL.
fn otlp_sink() -> Result<String> {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}", listener.local_addr()?);
    let answer = |stream: std::net::TcpStream| -> std::io::Result<()> {
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut writer = stream;
        let mut line = String::new();
        loop {
            let mut length = 0;
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            loop {
                line.clear();
                reader.read_line(&mut line)?;
                let Some((name, value)) = line.trim_end().split_once(':') else {
                    break;
                };
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            std::io::copy(&mut (&mut reader).take(length), &mut std::io::sink())?;
            writer.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")?;
        }
    };
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || answer(stream));
        }
    });
    Ok(url)
}

/// wrk from PATH, or installed from Debian's packages.
pub(crate) fn ensure_wrk() -> Result<PathBuf> {
    if let Some(wrk) = which("wrk") {
        return Ok(wrk);
    }
    eprintln!("xtask bench: installing wrk (apt-get install wrk)");
    let installed = crate::system::install(&["wrk"]).is_ok();
    match which("wrk") {
        Some(wrk) if installed => Ok(wrk),
        _ => bail!("wrk is missing and could not be installed: install Debian's package wrk"),
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}

/// The documented push with a new message id on every request (in the header and the
/// envelope's `msgId`), so that a store never takes one for a duplicate.
pub(crate) fn wrk_script() -> String {
    let body = BODY.replace("6942316962", "%s").replace('"', "\\\"");
    format!(
        r#"wrk.method = "POST"
wrk.headers["Content-Type"] = "text/plain"
wrk.headers["User-Agent"] = "Qcloud Notification Service Agent"
wrk.headers["x-cmq-request-id"] = "2394928734"
wrk.headers["x-cmq-message-tag"] = "a, b"
local prefix = tostring(os.time()) .. tostring(math.floor(os.clock() * 1e6))
local sent = 0
request = function()
  sent = sent + 1
  local id = prefix .. "-" .. sent
  wrk.headers["x-cmq-message-id"] = id
  return wrk.format(nil, nil, nil, string.format("{body}", id))
end
"#
    )
}

/// The CPU the receiver under test runs on, and the one wrk runs on: on a 2-core
/// machine each gets a core of its own instead of both competing for two.
const SERVER_CPU: usize = 0;
pub(crate) const LOAD_CPU: usize = 1;

/// `command` bound to one CPU with taskset, when there are two CPUs and taskset;
/// `command` as it is otherwise. (taskset execs the program: the pid is the same.)
pub(crate) fn pinned(command: Command, cpu: usize) -> Command {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let Some(taskset) = which("taskset").filter(|_| cpus > LOAD_CPU) else {
        return command;
    };
    let mut wrapped = Command::new(taskset);
    wrapped
        .args(["-c", &cpu.to_string()])
        .arg(command.get_program())
        .args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    // Where it runs, too: a relative path in its arguments is read from there.
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
}

/// A running receiver; killed when dropped.
pub(crate) struct Server(Child);

impl Server {
    /// Starts `command`, its standard error to the file `log`, and waits until it
    /// answers a push on `port`.
    pub(crate) fn start(command: Command, port: u16, log: &Path) -> Result<Server> {
        let mut command = pinned(command, SERVER_CPU);
        let log =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = command
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {command:?}"))?;
        let server = Server(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while push_status(port) != Some(200) {
            ensure!(
                Instant::now() < deadline,
                "{command:?} did not answer within 60 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.0.id()
    }

    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One round of a row: a load per connection count, and the receiver's peak RSS.
#[derive(Clone)]
struct Round {
    loads: Vec<(u32, Load)>,
    peak_rss_kib: u64,
}

/// One round of a row: the receiver started, warmed up, loaded and stopped.
fn measure(
    path: &Receiver,
    wrk: &Path,
    script: &Path,
    out: &Path,
    options: &Options,
) -> Result<Round> {
    let port = free_port()?;
    // Its log goes to a file, as a deployed host's goes to journald or a file: what
    // writing log lines costs is part of the cost of a message.
    let log = out.join("server.log");
    let mut server = Server::start((path.command)(port), port, &log)?;
    // Warm up: connections, caches, the allocator's free lists.
    run_wrk(wrk, script, port, 16, Duration::from_secs(1), true)?;
    let mut loads = Vec::new();
    for &connections in &options.connections {
        let before = cpu_time(server.pid())?;
        let database_before = database_cpu_time();
        let (load, requests) = run_wrk(
            wrk,
            script,
            port,
            connections,
            options.duration,
            path.closes_connections,
        )?;
        let spent = cpu_time(server.pid())?.saturating_sub(before);
        let database_spent = database_cpu_time().saturating_sub(database_before);
        let per_message = |spent: Duration| {
            spent
                .checked_div(requests.max(1) as u32)
                .unwrap_or_default()
        };
        let load = Load {
            cpu_per_message: per_message(spent),
            database_cpu_per_message: per_message(database_spent),
            ..load
        };
        loads.push((connections, load));
    }
    let rss = peak_rss_kib(server.pid())?;
    server.stop();
    let _ = std::fs::remove_file(&log);
    Ok(Round {
        loads,
        peak_rss_kib: rss,
    })
}

/// Per connection count, the load of the round with the median req/s (the upper one of
/// an even count), whole, so that its latencies and CPU are those of one run; and the
/// highest peak RSS of all rounds.
fn median_round(rounds: &[Round]) -> Round {
    let peak_rss_kib = rounds
        .iter()
        .map(|round| round.peak_rss_kib)
        .max()
        .unwrap_or_default();
    let counts = rounds.first().map_or(0, |round| round.loads.len());
    let loads = (0..counts)
        .map(|i| {
            let mut of_count: Vec<(u32, Load)> = rounds
                .iter()
                .filter_map(|round| round.loads.get(i).copied())
                .collect();
            of_count.sort_by(|a, b| a.1.requests_per_sec.total_cmp(&b.1.requests_per_sec));
            of_count[of_count.len() / 2]
        })
        .collect();
    Round {
        loads,
        peak_rss_kib,
    }
}

/// Process start to the first `200`, on a fresh port.
fn cold_start(command: &dyn Fn(u16) -> Command) -> Result<Duration> {
    let port = free_port()?;
    let mut command = command(port);
    let started = Instant::now();
    let child = command
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let mut server = Server(child);
    while push_status(port) != Some(200) {
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "no answer within 60 s"
        );
        std::thread::sleep(Duration::from_micros(500));
    }
    let elapsed = started.elapsed();
    server.stop();
    Ok(elapsed)
}

/// Sends the documented push on a new connection; the answer's status, if any.
pub(crate) fn push_status(port: u16) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!(
        "POST /cgi HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n\
         x-cmq-message-id: 6942316962\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.split_whitespace().nth(1)?.parse().ok()
}

/// A port that was free a moment ago.
pub(crate) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `wrk -t1 -c<connections> -d<duration> --latency` with `script` against the receiver
/// on `port`, pinned to the load's CPU.
pub(crate) fn wrk_command(
    wrk: &Path,
    script: &Path,
    port: u16,
    connections: u32,
    duration: Duration,
) -> Command {
    let mut command = Command::new(wrk);
    command
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{}s", duration.as_secs()),
        ])
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(format!("http://127.0.0.1:{port}/cgi"));
    pinned(command, LOAD_CPU)
}

/// What follows `prefix` on the first line of wrk's output that starts with it.
pub(crate) fn wrk_field(text: &str, prefix: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find_map(|line| line.strip_prefix(prefix).map(|rest| rest.trim().to_owned()))
}

/// How many requests wrk completed (`N requests in ...`).
pub(crate) fn wrk_requests(text: &str) -> Result<u64> {
    text.lines()
        .find(|line| line.contains("requests in"))
        .and_then(|line| line.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no request count in wrk's output:\n{text}"))
}

/// Runs wrk; its figures and the number of requests it completed.
fn run_wrk(
    wrk: &Path,
    script: &Path,
    port: u16,
    connections: u32,
    duration: Duration,
    closes_connections: bool,
) -> Result<(Load, u64)> {
    let output = wrk_command(wrk, script, port, connections, duration).output()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    ensure!(output.status.success(), "wrk failed: {text}");
    let field = |prefix: &str| wrk_field(&text, prefix);
    let requests_per_sec: f64 = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{text}"))?;
    let requests = wrk_requests(&text)?;
    let p50 = field("50%").and_then(|v| parse_wrk_duration(&v));
    let p99 = field("99%").and_then(|v| parse_wrk_duration(&v));
    let failed = field("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
        + text
            .lines()
            .find_map(|line| line.trim().strip_prefix("Socket errors:"))
            .map_or(0, |errors| {
                // "connect 0, read 0, write 0, timeout 0".
                errors
                    .split(',')
                    .filter_map(|part| {
                        let mut words = part.split_whitespace();
                        let kind = words.next()?;
                        let count = words.next()?.parse::<u64>().ok()?;
                        (kind != "read" || !closes_connections).then_some(count)
                    })
                    .sum()
            });
    Ok((
        Load {
            requests_per_sec,
            p50: p50.context("no p50 in wrk's output")?,
            p99: p99.context("no p99 in wrk's output")?,
            cpu_per_message: Duration::ZERO,
            database_cpu_per_message: Duration::ZERO,
            failed,
        },
        requests,
    ))
}

/// wrk's `1.23ms`, `456.00us`, `1.50s`.
pub(crate) fn parse_wrk_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let secs = match unit {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" => number * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

pub(crate) fn show(duration: Duration) -> String {
    let micros = duration.as_secs_f64() * 1e6;
    if micros < 1000.0 {
        format!("{micros:.0} µs")
    } else {
        format!("{:.2} ms", micros / 1000.0)
    }
}

/// The CPU time every `postgres` process on this machine has spent so far: the local
/// server's, for the rows whose store it is. A process that ends meanwhile is left out.
fn database_cpu_time() -> Duration {
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return Duration::ZERO;
    };
    processes
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == "postgres")
        })
        .filter_map(|pid| cpu_time(pid).ok())
        .sum()
}

/// User plus system CPU time of process `pid` so far (its threads included).
fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("odd /proc stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let ticks: u64 = fields
        .get(11..13)
        .context("short /proc stat")?
        .iter()
        .map(|f| f.parse::<u64>())
        .sum::<Result<u64, _>>()?;
    Ok(Duration::from_secs_f64(
        ticks as f64 / clock_ticks()? as f64,
    ))
}

fn clock_ticks() -> Result<u64> {
    let output = Command::new("getconf").arg("CLK_TCK").output()?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().parse()?)
}

/// The process's peak resident set (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "VmHWM")
}

/// A memory field of process `pid`'s `/proc` status (`VmHWM`, `VmRSS`), in KiB.
pub(crate) fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// The machine and the versions, for the report's head.
pub(crate) fn machine() -> Result<String> {
    let command_line = |program: &str, args: &[&str]| -> String {
        Command::new(program)
            .args(args)
            .output()
            .ok()
            .map(|o| {
                let text = if o.stdout.is_empty() {
                    o.stderr
                } else {
                    o.stdout
                };
                String::from_utf8_lossy(&text)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_owned()
            })
            .unwrap_or_else(|| "not found".into())
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let lock = std::fs::read_to_string(repo_root().join("Cargo.lock")).unwrap_or_default();
    let wasmtime = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"wasmtime\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .unwrap_or("?")
        .trim_matches('"')
        .to_owned();
    Ok(format!(
        "Run {}: {cores} cores ({cpu}), kernel {}; {}, wasmtime {wasmtime}, {}, {}.\n",
        command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        command_line("uname", &["-r"]),
        command_line("rustc", &["--version"]),
        command_line("python3", &["--version"]),
        command_line("wrk", &["--version"])
            .split(" [")
            .next()
            .unwrap_or("wrk"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_takes_a_whole_name_with_its_commas_and_parts_as_substrings() {
        let names = [
            "native hyper + cmq-message (no sandbox)",
            "cmq-host, ack guest, instances reused up to 128 messages, no store",
            "the same, reused, with the SQLite store",
            "the same, reused, with the SQLite store, baseline build",
            "the same, with the SQLite store (dedupe, attempts)",
            "cmq-host, by-tag in Python, instances reused up to 128",
        ];
        let chosen = |value: &str| -> Vec<&str> {
            let only = Only::parse(value, &names);
            names
                .into_iter()
                .filter(|name| only.selects(name))
                .collect()
        };
        // A whole name: that row and its baseline's, not every row holding "reused".
        assert_eq!(
            chosen("native,the same, reused, with the SQLite store"),
            [
                "native hyper + cmq-message (no sandbox)",
                "the same, reused, with the SQLite store",
                "the same, reused, with the SQLite store, baseline build",
            ]
        );
        // Parts as before: each selects every row holding it.
        assert_eq!(
            chosen("reused up to 128 messages, SQLite store"),
            [
                "cmq-host, ack guest, instances reused up to 128 messages, no store",
                "the same, reused, with the SQLite store",
                "the same, reused, with the SQLite store, baseline build",
                "the same, with the SQLite store (dedupe, attempts)",
            ]
        );
        assert_eq!(
            Only::parse("a,,b", &names),
            Only {
                whole: Vec::new(),
                parts: vec!["a".into(), "b".into()]
            }
        );
    }

    #[test]
    fn a_row_shows_its_round_of_median_requests_whole_and_its_highest_rss() {
        let round = |requests_per_sec: f64, cpu_us: u64, peak_rss_kib: u64| Round {
            loads: vec![(
                16,
                Load {
                    requests_per_sec,
                    p50: Duration::ZERO,
                    p99: Duration::ZERO,
                    cpu_per_message: Duration::from_micros(cpu_us),
                    database_cpu_per_message: Duration::ZERO,
                    failed: 0,
                },
            )],
            peak_rss_kib,
        };
        let median = median_round(&[
            round(300.0, 1, 10),
            round(100.0, 3, 30),
            round(200.0, 2, 20),
        ]);
        let (connections, load) = median.loads[0];
        assert_eq!(connections, 16);
        assert_eq!(load.requests_per_sec, 200.0);
        assert_eq!(
            load.cpu_per_message,
            Duration::from_micros(2),
            "the same round's CPU"
        );
        assert_eq!(median.peak_rss_kib, 30);
    }

    #[test]
    fn a_pinned_command_keeps_its_folder_and_environment() {
        let mut command = Command::new("cmq-host");
        command
            .arg("serve")
            .current_dir("/tmp")
            .env("RUST_LOG", "info");
        let pinned = pinned(command, SERVER_CPU);
        assert_eq!(pinned.get_current_dir(), Some(Path::new("/tmp")));
        assert!(
            pinned
                .get_envs()
                .any(|(key, value)| key == "RUST_LOG" && value == Some("info".as_ref()))
        );
        assert!(pinned.get_args().any(|arg| arg == "serve"));
    }
}
