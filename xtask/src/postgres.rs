//! The PostgreSQL server the shared store's tests run against: Debian's package,
//! installed when missing, its cluster started (and stopped after the tests when it was
//! not running before), and a test role created.
//!
//! `CMQ_TEST_POSTGRES_URL`, when set, names a server of your own instead: a URL ending
//! in a database name, of a role that may create databases.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The variable the tests read.
pub const URL_VAR: &str = "CMQ_TEST_POSTGRES_URL";

const ROLE: &str = "cmq_test";

/// The server the tests use: the caller's own, or the local cluster's, made ready.
pub struct Server {
    /// The URL the tests get in [`URL_VAR`].
    pub url: String,
    /// The cluster this started, stopped again when the server is dropped.
    started: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(version) = self.started.take() {
            eprintln!("xtask: stopping PostgreSQL {version} (cluster main), as it was before");
            if let Err(err) = run("pg_ctlcluster", &[&version, "main", "stop"]) {
                eprintln!("xtask: {err:#}");
            }
        }
    }
}

/// The server for the tests; a local cluster this starts is stopped when the returned
/// [`Server`] is dropped.
pub fn ensure() -> Result<Server> {
    if let Ok(url) = std::env::var(URL_VAR) {
        return Ok(Server { url, started: None });
    }
    let cluster = local_cluster()?;
    Ok(Server {
        url: role_url(&cluster.port, "postgres"),
        started: cluster.started.then_some(cluster.version),
    })
}

/// A new, empty database `name` on the local cluster (dropped first when it exists),
/// owned by the test role: its URL, and the cluster stopped again when the returned
/// [`Server`] is dropped if this started it.
pub fn fresh_local_database(name: &str) -> Result<Server> {
    let cluster = local_cluster()?;
    let server = Server {
        url: role_url(&cluster.port, name),
        started: cluster.started.then_some(cluster.version),
    };
    psql(
        &cluster.port,
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    )?;
    psql(
        &cluster.port,
        &format!("CREATE DATABASE {name} OWNER {ROLE}"),
    )?;
    Ok(server)
}

/// The local cluster, running.
struct Cluster {
    version: String,
    port: String,
    /// Whether it was started now (it was not running).
    started: bool,
}

/// Installs, starts and prepares the local cluster.
fn local_cluster() -> Result<Cluster> {
    if !crate::system::is_root() {
        bail!(
            "the shared store's tests need a PostgreSQL server: set {URL_VAR} to \
             postgres://USER:PASSWORD@HOST:PORT/DATABASE (a role that may create \
             databases), or run as root so that this installs and starts Debian's"
        );
    }
    if !Path::new("/usr/bin/pg_ctlcluster").is_file() || server_versions().is_empty() {
        eprintln!("xtask: installing PostgreSQL (apt-get install postgresql)");
        crate::system::install(&["postgresql"])?;
    }
    let version = server_versions()
        .pop()
        .context("no PostgreSQL server under /usr/lib/postgresql after installing it")?;
    let (port, started) = start_cluster(&version)?;
    // Idempotent: the role is created once per machine.
    psql(
        &port,
        &format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') \
             THEN CREATE ROLE {ROLE} LOGIN CREATEDB PASSWORD '{ROLE}'; END IF; END $$"
        ),
    )?;
    Ok(Cluster {
        version,
        port,
        started,
    })
}

fn role_url(port: &str, database: &str) -> String {
    format!("postgres://{ROLE}:{ROLE}@127.0.0.1:{port}/{database}")
}

/// Installed server versions, oldest first.
fn server_versions() -> Vec<String> {
    let mut versions: Vec<String> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.filter_map(|entry| entry.ok())
                .filter(|entry| entry.path().join("bin/postgres").is_file())
                .filter_map(|entry| entry.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    versions.sort_by_key(|v| v.parse::<u32>().unwrap_or(0));
    versions
}

/// Starts cluster `main` of `version` (creating it when missing); returns its port,
/// and whether it was started now.
fn start_cluster(version: &str) -> Result<(String, bool)> {
    let clusters = run("pg_lsclusters", &["--no-header"])?;
    let main = clusters.lines().find(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.first() == Some(&version) && fields.get(1) == Some(&"main")
    });
    let line = match main {
        Some(line) => line.to_owned(),
        None => {
            run("pg_createcluster", &[version, "main"])?;
            run("pg_lsclusters", &["--no-header"])?
                .lines()
                .find(|line| line.starts_with(&format!("{version} main")))
                .context("the new cluster is not listed")?
                .to_owned()
        }
    };
    let fields: Vec<&str> = line.split_whitespace().collect();
    let port = fields
        .get(2)
        .context("no port in pg_lsclusters")?
        .to_string();
    let started = fields.get(3) != Some(&"online");
    if started {
        eprintln!("xtask: starting PostgreSQL {version} (cluster main, port {port})");
        run("pg_ctlcluster", &[version, "main", "start"])?;
    }
    Ok((port, started))
}

fn psql(port: &str, sql: &str) -> Result<()> {
    run(
        "runuser",
        &[
            "-u",
            "postgres",
            "--",
            "psql",
            "-q",
            "-p",
            port,
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ],
    )
    .map(drop)
}

fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed ({}): {}",
            args.first().copied().unwrap_or_default(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
