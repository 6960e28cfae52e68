//! The store failing while the host serves: a SQLite file made unwritable, or locked by
//! another process, a PostgreSQL server stopped mid-load. Pushes in the outage are answered non-2xx, none is
//! acknowledged falsely, and after recovery every message is handled by its guest or
//! kept in the journal, with the deliveries of the outage counted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cmq_host::{ExpectedFormat, ReceiverOptions, RouteOptions, Store, StoreLocation};
use cmq_tests::{Backend, TestHost, fresh_store, json_body, log_lines_with, push};
use reqwest::StatusCode;

/// Messages pushed by the load, each redelivered until it gets a 2xx.
const MESSAGES: usize = 60;

/// Tags of the load's messages, in turn: acked, dropped, retried until journaled.
const TAGS: [&str; 3] = ["ack", "drop", "retry"];

/// How long CMQ (here, [`deliver_until_acknowledged`]) waits between deliveries.
const REDELIVERY_PAUSE: Duration = Duration::from_millis(300);

/// One answer the load got.
#[derive(Debug, Clone)]
struct Answer {
    sent: Instant,
    answered: Instant,
    status: StatusCode,
}

/// Every answer, by message id.
type Answers = Arc<Mutex<HashMap<String, Vec<Answer>>>>;

/// Pushes message `id` as CMQ would: again after every non-2xx, until a 2xx or 40
/// deliveries (far more than the host's 4 attempts: this CMQ never discards).
async fn deliver_until_acknowledged(host_url: String, id: String, tags: String, answers: Answers) {
    let client = reqwest::Client::new();
    for _ in 0..40 {
        let sent = Instant::now();
        let status = match push(&client, &host_url, &id, &tags, json_body(&id))
            .send()
            .await
        {
            Ok(response) => response.status(),
            Err(_) => StatusCode::BAD_GATEWAY,
        };
        let answered = Instant::now();
        answers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.clone())
            .or_default()
            .push(Answer {
                sent,
                answered,
                status,
            });
        if status.is_success() {
            return;
        }
        tokio::time::sleep(REDELIVERY_PAUSE).await;
    }
}

/// Runs the load against `host` while `outage` breaks the store and mends it again;
/// `outage` returns when it broke and when it was mended. Then checks the promise.
async fn load_through_an_outage(
    name: &str,
    host: &TestHost,
    location: &StoreLocation,
    outage: impl Future<Output = anyhow::Result<(Instant, Instant)>>,
) -> anyhow::Result<()> {
    let answers: Answers = Arc::default();
    let mut load = tokio::task::JoinSet::new();
    let ids: Vec<(String, &str)> = (0..MESSAGES)
        .map(|n| {
            (
                format!("{name}-{}-{n}", std::process::id()),
                TAGS[n % TAGS.len()],
            )
        })
        .collect();
    let pushes = {
        let ids = ids.clone();
        let url = host.url();
        let answers = answers.clone();
        async move {
            // Spread over the outage: a few messages start every 100 ms.
            for chunk in ids.chunks(3) {
                for (id, tag) in chunk {
                    load.spawn(deliver_until_acknowledged(
                        url.clone(),
                        id.clone(),
                        (*tag).to_owned(),
                        answers.clone(),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            load.join_all().await;
        }
    };
    let ((), outage) = tokio::join!(pushes, outage);
    let (broken, mended) = outage?;

    let answers = answers.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let journal = Store::open(location).await?.dead_letters().await?;
    let in_outage: Vec<&Answer> = answers
        .values()
        .flatten()
        .filter(|answer| answer.sent >= broken && answer.answered <= mended)
        .collect();
    assert!(
        in_outage.len() >= 10,
        "{name}: the load barely met the outage ({} answers in it)",
        in_outage.len()
    );
    for answer in &in_outage {
        assert!(
            !answer.status.is_success(),
            "{name}: a push was answered {} while the store was down",
            answer.status
        );
    }
    for (id, tag) in &ids {
        let got = &answers[id];
        let last = got.last().expect("at least one delivery");
        assert!(
            last.status.is_success(),
            "{name}: {id} ({tag}) never got a 2xx: {got:?}"
        );
        let handled: Vec<String> = log_lines_with(&format!("messaging.message.id=\"{id}\""))
            .into_iter()
            .filter(|line| line.contains("message handled"))
            .collect();
        let kept = journal.iter().find(|entry| &entry.message_id == id);
        match *tag {
            "ack" => {
                assert!(
                    handled
                        .iter()
                        .any(|line| line.contains("messaging.cmq.decision=\"ack\"")),
                    "{name}: {id} was answered 2xx without its guest acknowledging it: \
                     {handled:#?}"
                );
                assert!(kept.is_none(), "{name}: {id} acked and journaled");
            }
            "drop" => {
                let kept = kept.unwrap_or_else(|| panic!("{name}: drop {id} not journaled"));
                assert_eq!(kept.reason, "dropped: tagged drop");
            }
            _ => {
                let kept = kept.unwrap_or_else(|| panic!("{name}: retry {id} not journaled"));
                // Every delivery counted, those of the outage too, none twice: journaled
                // on the first delivery the host could record from the 3rd on (the
                // default). CMQ's BACKOFF_RETRY would have discarded a message whose
                // 3rd and 4th deliveries both fell in the outage; this load never
                // discards.
                assert_eq!(
                    kept.attempts as usize,
                    got.len(),
                    "{name}: {id} journaled after {} deliveries: {kept:?}",
                    got.len()
                );
                assert!(kept.attempts >= 3, "{name}: {kept:?}");
            }
        }
    }
    Ok(())
}

fn options(location: &StoreLocation) -> impl Future<Output = anyhow::Result<ReceiverOptions>> {
    let location = location.clone();
    async move {
        Ok(ReceiverOptions {
            store: Some(Store::open(&location).await?),
            // A claim the outage left running holds its message for the deadline and
            // five seconds: short here, so that the load's redeliveries get past it.
            route: RouteOptions {
                deadline: Duration::from_secs(2),
                ..Default::default()
            },
            ..Default::default()
        })
    }
}

#[tokio::test]
async fn a_sqlite_store_made_unwritable_mid_load_loses_and_falsely_acks_nothing()
-> anyhow::Result<()> {
    // Not a silent pass: a run that cannot break the store has not checked anything.
    anyhow::ensure!(
        is_root(),
        "making a file unwritable to its owner needs root (chattr +i): run the suite as \
         root (`cargo xtask test` in CI is), or leave this test out with `--skip \
         a_sqlite_store_made_unwritable`"
    );
    // Not in the temp directory: `chattr` needs a file system that keeps the flag, and
    // the temp directory may be a tmpfs.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("store-faults");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("unwritable-{}.db", std::process::id()));
    let files = ["", "-wal"].map(|suffix| PathBuf::from(format!("{}{suffix}", path.display())));
    for file in &files {
        let _ = std::fs::remove_file(file);
    }
    let location = StoreLocation::Sqlite(path.clone());
    let host = TestHost::start("faulty", options(&location).await?).await?;
    // The log must exist to be made unwritable: one push writes it.
    let client = reqwest::Client::new();
    let first = push(&client, &host.url(), "first", "ack", json_body("first"))
        .send()
        .await?;
    assert_eq!(first.status(), StatusCode::OK);
    let outage = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _mend_on_failure = Immutable(files.to_vec());
        for file in &files {
            chattr("+i", file)?;
        }
        let broken = Instant::now();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mended = Instant::now();
        for file in &files {
            chattr("-i", file)?;
        }
        Ok((broken, mended))
    };
    load_through_an_outage("sqlite-unwritable", &host, &location, outage).await?;
    host.stop().await?;
    for file in &files {
        let _ = std::fs::remove_file(file);
    }
    Ok(())
}

#[tokio::test]
async fn a_postgres_server_stopped_mid_load_loses_and_falsely_acks_nothing() -> anyhow::Result<()> {
    let server = PrivatePostgres::new()?;
    let location = StoreLocation::Postgres(server.url());
    let host = TestHost::start("faulty", options(&location).await?).await?;
    let outage = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        server.stop()?;
        let broken = Instant::now();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mended = Instant::now();
        server.start()?;
        Ok((broken, mended))
    };
    load_through_an_outage("postgres-stopped", &host, &location, outage).await?;
    host.stop().await
}

#[tokio::test]
async fn a_sqlite_store_another_process_holds_locked_waits_for_it_and_the_host_serves_on()
-> anyhow::Result<()> {
    let location = fresh_store(Backend::Sqlite).await?;
    let StoreLocation::Sqlite(path) = &location else {
        unreachable!("a SQLite location")
    };
    let mut options = options(&location).await?;
    // So that a body that is not JSON is refused before any claim.
    options.route.format = ExpectedFormat::Json;
    let host = TestHost::start("faulty", options).await?;
    let client = reqwest::Client::new();
    let first = push(
        &client,
        &host.url(),
        "before-lock",
        "ack",
        json_body("before-lock"),
    )
    .send()
    .await?;
    assert_eq!(first.status(), StatusCode::OK);

    // What `cmq-host dead-letter replay` does to the file while it writes: hold the
    // write lock.
    let other = rusqlite::Connection::open(path)?;
    other.execute_batch("BEGIN IMMEDIATE")?;
    let waiting = tokio::spawn(
        push(
            &client,
            &host.url(),
            "while-locked",
            "ack",
            json_body("while-locked"),
        )
        .send(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "a push was answered while another process held the store locked"
    );
    // The claim waits for the lock on a thread of its own: what needs no store is
    // answered at once meanwhile.
    let started = Instant::now();
    let bad = push(&client, &host.url(), "bad", "ack", "not a push")
        .send()
        .await?;
    let status = bad.status();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{}", bad.text().await?);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a bad push took {:?} to be refused while the store was locked",
        started.elapsed()
    );
    other.execute_batch("COMMIT")?;
    let answered = tokio::time::timeout(Duration::from_secs(5), waiting).await???;
    assert_eq!(answered.status(), StatusCode::OK);
    assert_eq!(answered.text().await?, "ok");
    host.stop().await
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn chattr(flag: &str, file: &Path) -> anyhow::Result<()> {
    let status = Command::new("chattr").arg(flag).arg(file).status()?;
    anyhow::ensure!(status.success(), "chattr {flag} {} failed", file.display());
    Ok(())
}

/// Makes the files writable again if the test fails while they are not.
struct Immutable(Vec<PathBuf>);

impl Drop for Immutable {
    fn drop(&mut self) {
        for file in &self.0 {
            let _ = Command::new("chattr").arg("-i").arg(file).status();
        }
    }
}

/// A PostgreSQL server of this test's own, in a directory of its own, that the test
/// may stop and start: Debian's binaries (`cargo xtask test` installs them), run as
/// the `postgres` user when the test runs as root.
struct PrivatePostgres {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
}

impl PrivatePostgres {
    fn new() -> anyhow::Result<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")?
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.path().join("bin"))
            .filter(|bin| bin.join("initdb").is_file())
            .max()
            .ok_or_else(|| anyhow::anyhow!("no PostgreSQL under /usr/lib/postgresql"))?;
        // In /tmp, not $TMPDIR: the `postgres` user must reach it, and a private
        // temp folder (mode 0700) would keep it out.
        let dir = PathBuf::from("/tmp").join(format!("cmq-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        if is_root() {
            let status = Command::new("chown").arg("postgres:").arg(&dir).status()?;
            anyhow::ensure!(status.success(), "chown postgres {}", dir.display());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let server = PrivatePostgres { dir, port, bin };
        server.run(
            "initdb",
            &[
                "-D",
                &server.data(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        )?;
        server.start()?;
        Ok(server)
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn start(&self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {}",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        )
    }

    /// A fast shutdown: connections are cut, commits so far are kept.
    fn stop(&self) -> anyhow::Result<()> {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"])
    }

    fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let program = self.bin.join(program);
        let mut command = if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        let out = command.args(args).output()?;
        anyhow::ensure!(
            out.status.success(),
            "{} {} failed: {}",
            program.display(),
            args.last().copied().unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
