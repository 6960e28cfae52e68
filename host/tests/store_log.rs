//! The SQLite store's write-ahead log under the highest load the real binary takes: it
//! stays under its documented bound while the load lasts, and is emptied once the
//! load ends. Without a checkpoint that lets the log start again, it grows by about
//! 2 KB per message for as long as pushes keep coming.
//!
//! A test of the `cmq-host` package, so that cargo builds the binary for it.

mod binary;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use binary::*;

/// Messages pushed: at about 2.5 KB of log each, about three times the bound if nothing
/// kept the log from growing.
const MESSAGES: usize = 40_000;

/// Pushes in flight at once.
const SENDERS: usize = 32;

/// The log's bound under any load, as the README states it: twice the limit at which
/// the log starts again, and one transaction (at most 4 MiB of bodies and their rows).
const WAL_BOUND: u64 = 2 * cmq_host::WAL_LIMIT + (4 << 20);

/// The log's index grows with the log: 32 KiB per 4096 frames of 1 KiB pages.
const SHM_BOUND: u64 = 512 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_log_stays_bounded_under_load_and_is_emptied_after_it() -> anyhow::Result<()> {
    let dir = cmq_tests::test_dir()
        .join("cmq-tests")
        .join(format!("store-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let state = dir.join("state.db");
    let wal = with_suffix(&state, "-wal");
    let shm = with_suffix(&state, "-shm");
    let state_flag = state.display().to_string();
    let (host, lines, url) = serve(
        "ack",
        &[
            "--state",
            &state_flag,
            "--admin-listen",
            "127.0.0.1:0",
            "--max-in-flight",
            "1024",
        ],
    )?;
    let admin = admin_url(&lines);

    // The largest sizes seen, sampled every 10 ms on a thread of its own while the
    // load runs.
    let loading = Arc::new(AtomicBool::new(true));
    let largest_wal = Arc::new(AtomicU64::new(0));
    let largest_shm = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (loading, largest_wal, largest_shm) =
            (loading.clone(), largest_wal.clone(), largest_shm.clone());
        let (wal, shm) = (wal.clone(), shm.clone());
        std::thread::spawn(move || {
            while loading.load(Ordering::Relaxed) {
                largest_wal.fetch_max(size(&wal), Ordering::Relaxed);
                largest_shm.fetch_max(size(&shm), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };

    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..SENDERS {
        let (client, url) = (client.clone(), url.clone());
        senders.spawn(async move {
            let mut answers = Vec::new();
            for i in (sender..MESSAGES).step_by(SENDERS) {
                let response = cmq_push(&client, &url, &format!("log-{i}"), "")
                    .send()
                    .await?;
                let status = response.status().as_u16();
                answers.push((i, status, response.text().await?));
            }
            Ok::<_, reqwest::Error>(answers)
        });
    }
    let mut answered = 0;
    while let Some(joined) = senders.join_next().await {
        for (i, status, body) in joined?? {
            assert_eq!((status, body.as_str()), (200, "ok"), "push {i}");
            answered += 1;
        }
    }
    let load_time = started.elapsed();
    loading.store(false, Ordering::Relaxed);
    sampler.join().expect("the sampler thread");
    assert_eq!(answered, MESSAGES);

    let (largest_wal, largest_shm) = (
        largest_wal.load(Ordering::Relaxed),
        largest_shm.load(Ordering::Relaxed),
    );
    eprintln!(
        "{MESSAGES} messages in {load_time:?}: largest log {largest_wal} bytes, largest \
         index {largest_shm} bytes, database {} bytes",
        size(&state)
    );
    // A log never seen (a missing file reads as 0) would pass every bound below.
    assert!(
        largest_wal > 0 && largest_shm > 0,
        "the log ({}) or its index was never seen during the load",
        wal.display()
    );
    assert!(
        largest_wal <= WAL_BOUND,
        "the log reached {largest_wal} bytes, over its bound of {WAL_BOUND}"
    );
    assert!(
        largest_shm <= SHM_BOUND,
        "the log's index reached {largest_shm} bytes, over {SHM_BOUND}"
    );

    // Idle: the log is emptied within a few seconds (the checkpoint thread looks once
    // a second, and empties it once the writer has been idle for one).
    let emptied = wait_until(Duration::from_secs(10), || wal.exists() && size(&wal) == 0);
    assert!(
        emptied,
        "the log still holds {} bytes when idle",
        size(&wal)
    );

    // The files hold message bodies: their owner's alone.
    for path in [&state, &wal, &shm] {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} is {mode:o}", path.display());
    }

    // The metric says what the files say.
    let metrics = scrape(&client, &admin).await?;
    let file = |name: &str| sample(&metrics, "cmq_store_file_bytes", &[("file", name)]);
    assert_eq!(file("wal"), 0.0);
    assert_eq!(file("database"), size(&state) as f64);
    assert!(file("database") > 0.0);

    // Every message is in the store, acknowledged: a push again is a duplicate.
    let response = cmq_push(&client, &url, "log-7", "").send().await?;
    assert_eq!(response.status(), 200);
    let duplicate = wait_for(&lines, "a duplicate of ack");
    assert!(duplicate.contains("log-7"), "{duplicate}");
    drop(host);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// A file's size; 0 for a missing one (the log comes and goes), which the test
/// checks apart: the log must have been seen, and exist when emptied.
fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |meta| meta.len())
}

fn wait_until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}
