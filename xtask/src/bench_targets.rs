//! The performance targets `cargo xtask bench` checks its run against (issues 15 and 27), each
//! read off the rows of the same run: cmq-host against the native receiver, the store
//! against no store, and with `--baseline` this tree against another build.

use std::fmt::Write as _;
use std::time::Duration;

/// A row a target reads.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Row {
    Native,
    /// cmq-host, the ack guest, no store.
    NoStore,
    /// The same with the default SQLite store.
    Sqlite,
    /// The same with the PostgreSQL store on the local server.
    Postgres,
    /// The by-tag handler built from Python.
    Python,
    /// The by-tag handler built from JavaScript.
    JavaScript,
    /// cmq-host, the ack guest, instances reused up to 128 messages, no store.
    Reused,
    /// The same with the default SQLite store.
    ReusedSqlite,
    /// The by-tag handler in Python, instances reused.
    PythonReused,
    /// The by-tag handler in JavaScript, instances reused.
    JavaScriptReused,
    /// `wasmtime serve` on the same component as `row`'s (`Native` for the ack guest
    /// fresh per request), as wasmtime's CLI runs it.
    Wasmtime(Box<Row>),
    /// The `--baseline` build on that row.
    Baseline(Box<Row>),
}

/// One load's figures.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    pub(crate) requests_per_sec: f64,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) cpu_per_message: Duration,
    /// The database server's CPU per message (every `postgres` process), besides the
    /// receiver's own.
    pub(crate) database_cpu_per_message: Duration,
    pub(crate) failed: u64,
}

/// One row's figures: per connection count, and its peak RSS.
#[derive(Debug, Clone)]
pub(crate) struct Measured {
    pub(crate) row: Row,
    pub(crate) loads: Vec<(u32, Load)>,
    pub(crate) peak_rss_kib: u64,
}

/// The connection counts the ratios are read at.
const CONNECTIONS: [u32; 2] = [16, 64];

/// The targets section of the report: each target, what this run measured, and
/// whether it is met. A target whose rows were not measured is left out.
pub(crate) fn report(measured: &[Measured]) -> String {
    let find = |row: &Row| measured.iter().find(|m| &m.row == row);
    let load = |row: &Row, connections: u32| {
        find(row).and_then(|m| {
            m.loads
                .iter()
                .find(|(c, _)| *c == connections)
                .map(|(_, load)| *load)
        })
    };
    let mut lines = Vec::new();
    let mut versus = |what: &str,
                      row: Row,
                      against: Row,
                      figure: fn(&Load) -> f64,
                      compare: Compare,
                      bound: f64| {
        let ratios: Vec<(u32, f64)> = CONNECTIONS
            .iter()
            .filter_map(|&c| Some((c, figure(&load(&row, c)?) / figure(&load(&against, c)?))))
            .collect();
        if ratios.is_empty() {
            return;
        }
        let shown = ratios
            .iter()
            .map(|(c, r)| format!("{r:.2}× at {c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let met = ratios.iter().all(|(_, r)| compare.holds(*r, bound));
        lines.push((what.to_owned(), shown, met));
    };
    let requests = |load: &Load| load.requests_per_sec;
    let p99 = |load: &Load| load.p99.as_secs_f64();
    let cpu = |load: &Load| load.cpu_per_message.as_secs_f64();
    versus(
        "cmq-host without a store ≥ 0.5× native req/s (16 and 64 connections)",
        Row::NoStore,
        Row::Native,
        requests,
        Compare::AtLeast,
        0.5,
    );
    versus(
        "with the default SQLite store ≥ 0.4× native req/s",
        Row::Sqlite,
        Row::Native,
        requests,
        Compare::AtLeast,
        0.4,
    );
    versus(
        "the PostgreSQL store ≥ 3× the baseline build's req/s",
        Row::Postgres,
        Row::Baseline(Box::new(Row::Postgres)),
        requests,
        Compare::AtLeast,
        3.0,
    );
    versus(
        "p99 without a store ≤ 3× native's",
        Row::NoStore,
        Row::Native,
        p99,
        Compare::AtMost,
        3.0,
    );
    versus(
        "p99 with the SQLite store ≤ 3× native's",
        Row::Sqlite,
        Row::Native,
        p99,
        Compare::AtMost,
        3.0,
    );
    versus(
        "CPU per message without a store ≤ 2.5× native's",
        Row::NoStore,
        Row::Native,
        cpu,
        Compare::AtMost,
        2.5,
    );
    let wasmtime = |row: Row| Row::Wasmtime(Box::new(row));
    versus(
        "instances reused (128) ≥ 1.5× `wasmtime serve --max-instance-reuse-count 128` req/s",
        Row::Reused,
        wasmtime(Row::Reused),
        requests,
        Compare::AtLeast,
        1.5,
    );
    versus(
        "instances reused (128) ≥ 0.5× native req/s",
        Row::Reused,
        Row::Native,
        requests,
        Compare::AtLeast,
        0.5,
    );
    versus(
        "a fresh instance per message ≥ 4× `wasmtime serve` (fresh per request) req/s",
        Row::NoStore,
        wasmtime(Row::NoStore),
        requests,
        Compare::AtLeast,
        4.0,
    );
    versus(
        "instances reused, with the SQLite store ≥ 0.4× native req/s",
        Row::ReusedSqlite,
        Row::Native,
        requests,
        Compare::AtLeast,
        0.4,
    );
    versus(
        "Python, reused ≥ 1.2× `wasmtime serve` with the same reuse",
        Row::PythonReused,
        wasmtime(Row::PythonReused),
        requests,
        Compare::AtLeast,
        1.2,
    );
    versus(
        "JavaScript, reused ≥ 1.2× `wasmtime serve` with the same reuse",
        Row::JavaScriptReused,
        wasmtime(Row::JavaScriptReused),
        requests,
        Compare::AtLeast,
        1.2,
    );
    if let (Some(with), Some(without)) = (load(&Row::Sqlite, 16), load(&Row::NoStore, 16)) {
        let added = (cpu(&with) - cpu(&without)) * 1e6;
        lines.push((
            "the SQLite store adds ≤ 15 µs CPU per message at 16 connections".to_owned(),
            format!("{added:.1} µs"),
            added <= 15.0,
        ));
    }
    for (row, language) in [(Row::Python, "Python"), (Row::JavaScript, "JavaScript")] {
        let baseline = Row::Baseline(Box::new(row.clone()));
        let ratios: Vec<(u32, f64)> = CONNECTIONS
            .iter()
            .filter_map(|&c| {
                Some((
                    c,
                    load(&row, c)?.requests_per_sec / load(&baseline, c)?.requests_per_sec,
                ))
            })
            .collect();
        if ratios.is_empty() {
            continue;
        }
        lines.push((
            format!("{language} handlers ≥ 2× the baseline build's req/s"),
            ratios
                .iter()
                .map(|(c, r)| format!("{r:.2}× at {c}"))
                .collect::<Vec<_>>()
                .join(", "),
            ratios.iter().all(|(_, r)| *r >= 2.0),
        ));
    }
    let rss: Vec<(String, u64, u64)> = [Row::NoStore, Row::Sqlite, Row::Python, Row::JavaScript]
        .into_iter()
        .filter_map(|row| {
            let now = find(&row)?.peak_rss_kib;
            let before = find(&Row::Baseline(Box::new(row.clone())))?.peak_rss_kib;
            Some((format!("{row:?}"), now, before))
        })
        .collect();
    if !rss.is_empty() {
        lines.push((
            "peak RSS, up to the 64-connection load, ≤ the baseline build's".to_owned(),
            rss.iter()
                .map(|(row, now, before)| {
                    format!(
                        "{row} {:.1} against {:.1} MiB",
                        *now as f64 / 1024.0,
                        *before as f64 / 1024.0
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
            // Within a page-table's noise: 1 MiB.
            rss.iter().all(|(_, now, before)| *now <= before + 1024),
        ));
    }
    if lines.is_empty() {
        return String::new();
    }
    let mut text = String::from(
        "\nAgainst the targets (issues 15 and 27), from the rows above:\n\n| target | measured | status |\n|---|---|---|\n",
    );
    for (what, shown, met) in lines {
        let status = if met { "met" } else { "**not met**" };
        let _ = writeln!(text, "| {what} | {shown} | {status} |");
    }
    text
}

/// How a ratio must compare with its bound.
#[derive(Clone, Copy)]
enum Compare {
    AtLeast,
    AtMost,
}

impl Compare {
    fn holds(self, ratio: f64, bound: f64) -> bool {
        match self {
            Compare::AtLeast => ratio >= bound,
            Compare::AtMost => ratio <= bound,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn measured(row: Row, requests_per_sec: f64, cpu_us: u64, rss: u64) -> Measured {
        let load = Load {
            requests_per_sec,
            p50: Duration::from_micros(100),
            p99: Duration::from_micros(1000),
            cpu_per_message: Duration::from_micros(cpu_us),
            database_cpu_per_message: Duration::ZERO,
            failed: 0,
        };
        Measured {
            row,
            loads: vec![(16, load), (64, load)],
            peak_rss_kib: rss,
        }
    }

    #[test]
    fn targets_are_read_off_the_rows_and_marked() {
        let rows = [
            measured(Row::Native, 100_000.0, 10, 4_000),
            measured(Row::NoStore, 60_000.0, 20, 20_000),
            measured(Row::Sqlite, 30_000.0, 40, 30_000),
            measured(Row::Python, 3_000.0, 900, 100_000),
            measured(Row::Baseline(Box::new(Row::Python)), 1_000.0, 1200, 90_000),
        ];
        let text = report(&rows);
        assert!(text.contains("| cmq-host without a store ≥ 0.5× native req/s (16 and 64 connections) | 0.60× at 16, 0.60× at 64 | met |"), "{text}");
        assert!(text.contains("| with the default SQLite store ≥ 0.4× native req/s | 0.30× at 16, 0.30× at 64 | **not met** |"), "{text}");
        assert!(text.contains("| the SQLite store adds ≤ 15 µs CPU per message at 16 connections | 20.0 µs | **not met** |"), "{text}");
        assert!(text.contains("| Python handlers ≥ 2× the baseline build's req/s | 3.00× at 16, 3.00× at 64 | met |"), "{text}");
        assert!(
            text.contains("Python 97.7 against 87.9 MiB | **not met** |"),
            "{text}"
        );
        assert!(!text.contains("JavaScript handlers"), "{text}");
    }
}
