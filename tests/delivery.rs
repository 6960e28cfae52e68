//! Delivery guarantees with a store, each against the embedded store (SQLite) and the
//! shared one (PostgreSQL): dedupe within its window and not after, attempt counts
//! across redeliveries that reach the guest, the exhaustion guard that journals the
//! last failed attempt and acknowledges it, drops in the journal, and two hosts sharing
//! one store that never both run the guest for one message.

use std::time::Duration;

use cmq_host::{
    Claim, ExpectedFormat, ReceiverOptions, RouteOptions, Settled, Settlement, SharedLimits, Store,
    StoreLocation,
};
use cmq_tests::{
    BACKENDS, Backend, TestHost, documented_key, fresh_store, json_body, log_lines_with, push, send,
};
use reqwest::StatusCode;

/// The variable that runs every host of these tests with instances reused for up to
/// that many messages: `cargo xtask test` runs this file again with it set to 8, so
/// that dedupe, attempts and the journal are shown to behave alike with reuse.
const REUSE_VAR: &str = "CMQ_TEST_REUSE_INSTANCES";

async fn host_with(location: &StoreLocation, options: ReceiverOptions) -> anyhow::Result<TestHost> {
    let mut options = ReceiverOptions {
        store: Some(Store::open(location).await?),
        ..options
    };
    if let Ok(reuse) = std::env::var(REUSE_VAR) {
        options.route.max_instance_reuse_count = reuse
            .parse()
            .map_err(|_| anyhow::anyhow!("{REUSE_VAR}={reuse:?} is not a count"))?;
    }
    TestHost::start("faulty", options).await
}

/// How many times the guest ran for `id`, by the host's one line per run.
fn runs(id: &str) -> usize {
    let quoted = format!("messaging.message.id=\"{id}\"");
    log_lines_with(&quoted)
        .iter()
        .filter(|line| line.contains("message handled"))
        .count()
}

fn unique(prefix: &str, backend: Backend) -> String {
    format!("{prefix}-{backend:?}-{}", std::process::id())
}

#[tokio::test]
async fn an_acknowledged_message_is_not_run_again_within_the_window_and_is_after_it()
-> anyhow::Result<()> {
    for backend in BACKENDS {
        let location = fresh_store(backend).await?;
        let window = Duration::from_secs(3);
        let options = ReceiverOptions {
            route: RouteOptions {
                dedupe_window: Some(window),
                ..Default::default()
            },
            ..Default::default()
        };
        let host = host_with(&location, options).await?;
        let id = unique("dedupe", backend);

        assert_eq!(send(&host, &id, "").await?, (StatusCode::OK, "ok".into()));
        assert_eq!(runs(&id), 1, "{backend:?}");
        // Within the window: answered 200, the guest not run.
        assert_eq!(send(&host, &id, "").await?, (StatusCode::OK, "ok".into()));
        assert_eq!(runs(&id), 1, "{backend:?}: a duplicate ran the guest");
        let duplicates = log_lines_with(&format!("messaging.message.id=\"{id}\""))
            .into_iter()
            .filter(|line| line.contains("messaging.cmq.decision=\"duplicate\""))
            .count();
        assert_eq!(duplicates, 1, "{backend:?}");

        // After it: the guest runs again, as attempt 1 of a new round.
        tokio::time::sleep(window + Duration::from_millis(200)).await;
        assert_eq!(send(&host, &id, "").await?, (StatusCode::OK, "ok".into()));
        assert_eq!(runs(&id), 2, "{backend:?}: not run after the window");
        host.stop().await?;
    }
    Ok(())
}

#[tokio::test]
async fn with_dedupe_off_every_push_runs_the_guest() -> anyhow::Result<()> {
    for backend in BACKENDS {
        let location = fresh_store(backend).await?;
        let options = ReceiverOptions {
            route: RouteOptions {
                dedupe_window: None,
                ..Default::default()
            },
            ..Default::default()
        };
        let host = host_with(&location, options).await?;
        let id = unique("no-dedupe", backend);
        for _ in 0..3 {
            assert_eq!(send(&host, &id, "").await?.0, StatusCode::OK);
        }
        assert_eq!(runs(&id), 3, "{backend:?}");
        host.stop().await?;
    }
    Ok(())
}

#[tokio::test]
async fn attempts_are_counted_across_redeliveries_and_reach_the_guest() -> anyhow::Result<()> {
    for backend in BACKENDS {
        let location = fresh_store(backend).await?;
        let host = host_with(&location, ReceiverOptions::default()).await?;
        let id = unique("attempts", backend);
        // The fixture retries until the host says this is attempt 3, then acks.
        let answers = [
            send(&host, &id, "ack-on-3").await?.0,
            send(&host, &id, "ack-on-3").await?.0,
            send(&host, &id, "ack-on-3").await?.0,
        ];
        assert_eq!(
            answers,
            [
                StatusCode::SERVICE_UNAVAILABLE,
                StatusCode::SERVICE_UNAVAILABLE,
                StatusCode::OK
            ],
            "{backend:?}"
        );
        let lines = log_lines_with(&format!("messaging.message.id=\"{id}\""));
        for attempt in 1..=3 {
            assert!(
                lines
                    .iter()
                    .any(|l| l.contains(&format!("messaging.cmq.attempt={attempt} "))),
                "{backend:?}: attempt {attempt} not logged: {lines:#?}"
            );
        }
        assert!(
            lines
                .iter()
                .any(|l| l.contains("attempt Some(2), acking on 3")),
            "{backend:?}: the guest did not see attempt 2: {lines:#?}"
        );
        let store = Store::open(&location).await?;
        let record = store
            .record(&documented_key("default", &id))
            .await?
            .expect("a record");
        assert_eq!((record.attempts, record.state.as_str()), (3, "acked"));
        host.stop().await?;
    }
    Ok(())
}

#[tokio::test]
async fn the_last_attempt_is_journaled_and_acknowledged_instead_of_lost() -> anyhow::Result<()> {
    for backend in BACKENDS {
        let location = fresh_store(backend).await?;
        let options = ReceiverOptions {
            route: RouteOptions {
                max_attempts: 4,
                ..Default::default()
            },
            ..Default::default()
        };
        let host = host_with(&location, options).await?;
        let store = Store::open(&location).await?;

        // A guest that always asks for a retry: three 503s, then the journal and 200.
        let retried = unique("exhausted", backend);
        let mut answers = Vec::new();
        for _ in 0..4 {
            answers.push(send(&host, &retried, "a, retry").await?);
        }
        let unavailable = (StatusCode::SERVICE_UNAVAILABLE, "retry".to_owned());
        let ok = (StatusCode::OK, "ok".to_owned());
        assert_eq!(
            answers,
            [
                unavailable.clone(),
                unavailable.clone(),
                unavailable,
                ok.clone()
            ],
            "{backend:?}"
        );

        // A fault on the last attempt is kept the same way.
        let faulted = unique("exhausted-fault", backend);
        for _ in 0..3 {
            assert_eq!(
                send(&host, &faulted, "panic").await?.0,
                StatusCode::INTERNAL_SERVER_ERROR
            );
        }
        assert_eq!(send(&host, &faulted, "panic").await?, ok);

        // A drop is acknowledged at once and kept too.
        let dropped = unique("dropped", backend);
        assert_eq!(send(&host, &dropped, "drop").await?, ok);

        let journal = store.dead_letters().await?;
        let entry = |id: &str| {
            journal
                .iter()
                .find(|entry| entry.message_id == id)
                .unwrap_or_else(|| panic!("{backend:?}: {id} not journaled: {journal:#?}"))
        };
        let kept = entry(&retried);
        assert_eq!(kept.attempts, 4);
        assert_eq!(
            kept.reason,
            "retry: tagged retry (attempt 4, the last of 4)"
        );
        // The whole push, as it came: the JSON envelope and the tag header.
        assert_eq!(kept.body, json_body(&retried).into_bytes());
        assert_eq!(kept.message_tag.as_deref(), Some("a, retry"));
        assert_eq!(kept.request_id.as_deref(), Some("2394928734"));
        assert!(
            entry(&faulted).reason.starts_with("fault: guest trapped"),
            "{:?}",
            entry(&faulted).reason
        );
        assert_eq!(entry(&dropped).reason, "dropped: tagged drop");
        assert_eq!(entry(&dropped).attempts, 1);
        assert_eq!(journal.len(), 3, "{backend:?}: {journal:#?}");

        let record = store
            .record(&documented_key("default", &retried))
            .await?
            .expect("a record");
        assert_eq!(record.state, "journaled");
        // CMQ was told it is done; a later push of the same id (its `200` lost on the
        // way) is a duplicate of the journaled message, not a new round.
        assert_eq!(send(&host, &retried, "retry").await?, ok);
        assert_eq!(
            store
                .record(&documented_key("default", &retried))
                .await?
                .expect("a record")
                .attempts,
            4
        );
        host.stop().await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_delivery_answered_overloaded_counts_and_the_last_one_is_still_journaled()
-> anyhow::Result<()> {
    for backend in BACKENDS {
        let location = fresh_store(backend).await?;
        // BACKOFF_RETRY's four deliveries, the last of them journaled.
        let route = RouteOptions {
            max_attempts: 4,
            ..Default::default()
        };
        let busy = host_with(
            &location,
            ReceiverOptions {
                route: route.clone(),
                limits: SharedLimits {
                    max_in_flight: 1,
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await?;
        let other = host_with(
            &location,
            ReceiverOptions {
                route,
                ..Default::default()
            },
        )
        .await?;
        let client = reqwest::Client::new();
        let (hold, id) = (unique("hold", backend), unique("overloaded", backend));
        // `slow` holds the one slot for a second; CMQ's first delivery of `id` finds it
        // taken and is answered 503 before the body is read, so before any claim.
        let holding = push(&client, &busy.url(), &hold, "slow", json_body(&hold)).send();
        let first = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            send(&busy, &id, "retry").await
        };
        let (held, first) = tokio::join!(holding, first);
        assert_eq!(held?.status(), StatusCode::OK);
        assert_eq!(
            first?,
            (StatusCode::SERVICE_UNAVAILABLE, "overloaded".to_owned()),
            "{backend:?}"
        );
        // The next three, on this host and then on the other: attempts 2, 3 and 4,
        // BACKOFF_RETRY's last, which is journaled and acknowledged.
        assert_eq!(
            send(&busy, &id, "retry").await?.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            send(&other, &id, "retry").await?.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            send(&other, &id, "retry").await?,
            (StatusCode::OK, "ok".to_owned())
        );
        let journal = Store::open(&location).await?.dead_letters().await?;
        let entry = journal
            .iter()
            .find(|entry| entry.message_id == id)
            .unwrap_or_else(|| panic!("{backend:?}: not journaled: {journal:#?}"));
        assert_eq!(entry.attempts, 4, "{backend:?}");
        assert_eq!(
            runs(&id),
            3,
            "{backend:?}: the overloaded delivery ran no guest"
        );
        busy.stop().await?;
        other.stop().await?;
    }
    Ok(())
}

#[tokio::test]
async fn two_hosts_sharing_a_store_never_run_the_guest_twice_for_one_message() -> anyhow::Result<()>
{
    for backend in BACKENDS {
        let location = fresh_store(backend).await?;
        let first = host_with(&location, ReceiverOptions::default()).await?;
        let second = host_with(&location, ReceiverOptions::default()).await?;
        let client = reqwest::Client::new();
        for n in 0..5 {
            // `slow` holds the guest for a second, so both pushes overlap.
            let id = format!("{}-{n}", unique("shared", backend));
            let (a, b) = tokio::join!(
                push(&client, &first.url(), &id, "slow", json_body(&id)).send(),
                push(&client, &second.url(), &id, "slow", json_body(&id)).send(),
            );
            let mut statuses = [a?.status(), b?.status()];
            statuses.sort();
            assert_eq!(
                statuses,
                [StatusCode::OK, StatusCode::SERVICE_UNAVAILABLE],
                "{backend:?}: one runs, the other is told to come back"
            );
            assert_eq!(runs(&id), 1, "{backend:?}: {id} ran twice");
            // CMQ's redelivery, to either host, is a duplicate.
            for host in [&first, &second] {
                assert_eq!(send(host, &id, "slow").await?.0, StatusCode::OK);
            }
            assert_eq!(runs(&id), 1, "{backend:?}: {id} ran again");
        }
        first.stop().await?;
        second.stop().await?;
    }
    Ok(())
}

#[tokio::test]
async fn claims_are_atomic_and_a_dead_hosts_claim_expires() -> anyhow::Result<()> {
    for backend in BACKENDS {
        let location = fresh_store(backend).await?;
        let store = Store::open(&location).await?;
        let other = Store::open(&location).await?;
        let window = Some(Duration::from_secs(3600));
        let lease = Duration::from_secs(2);

        // Fifty racing claims of one message, over two connections: exactly one runs,
        // and every one is counted.
        let mut claims = Vec::new();
        for n in 0..50 {
            let store = if n % 2 == 0 {
                store.clone()
            } else {
                other.clone()
            };
            claims.push(tokio::spawn(async move {
                store.claim("raced", "raced", lease, window).await
            }));
        }
        let mut winner = None;
        let mut counts = Vec::new();
        for claim in claims {
            match claim.await?? {
                Claim::Run { attempt, token } => {
                    assert!(winner.is_none(), "{backend:?}: two claims won");
                    winner = Some(token);
                    counts.push(attempt);
                }
                Claim::Busy { attempt, .. } => counts.push(attempt),
                Claim::Duplicate { .. } => panic!("{backend:?}: nothing was acknowledged"),
            }
        }
        let winner = winner.expect("one claim won");
        counts.sort();
        assert_eq!(counts, (1..=50).collect::<Vec<u32>>(), "{backend:?}");

        // The winner never settles (its host died): once the lease is over, the next
        // push takes the message over, and the old claim can no longer settle it.
        assert!(matches!(
            store.claim("raced", "raced", lease, window).await?,
            Claim::Busy { attempt: 51, .. }
        ));
        tokio::time::sleep(lease + Duration::from_millis(100)).await;
        let Claim::Run { attempt: 52, token } =
            store.claim("raced", "raced", lease, window).await?
        else {
            panic!("{backend:?}: the expired claim was not taken over");
        };
        store
            .settle("raced", winner, Settlement::Failed("late".into()))
            .await?;
        let record = store.record("raced").await?.expect("a record");
        assert_eq!(
            record.state, "running",
            "{backend:?}: a stale claim settled"
        );
        store.settle("raced", token, Settlement::Acked).await?;
        assert_eq!(
            other.claim("raced", "raced", lease, window).await?,
            Claim::Duplicate { of: Settled::Ack }
        );
        // Without a dedupe window an acknowledged message runs again, in a new round.
        assert!(matches!(
            store.claim("raced", "raced", lease, None).await?,
            Claim::Run { attempt: 1, .. }
        ));
    }
    Ok(())
}

/// Claims and settlements that arrive together, of messages in every state, each get
/// the answer they would get alone: the shared store runs those that wait together as
/// one statement, and no answer may go to another message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_and_settlements_arriving_together_each_get_their_own_answer() -> anyhow::Result<()>
{
    const MESSAGES: usize = 80;
    for backend in BACKENDS {
        let location = fresh_store(backend).await?;
        let store = Store::open(&location).await?;
        let window = Some(Duration::from_secs(3600));
        let lease = Duration::from_secs(60);
        let key = |n: usize| format!("together-{n}");
        // By n % 4: new; acknowledged before (a duplicate); running (busy); new, with
        // two deliveries answered before its claim, written to the database.
        for n in 0..MESSAGES {
            let key = key(n);
            match n % 4 {
                1 => {
                    let Claim::Run { token, .. } = store.claim(&key, &key, lease, window).await?
                    else {
                        panic!("{backend:?}: {key} did not run");
                    };
                    store.settle(&key, token, Settlement::Acked).await?;
                }
                2 => drop(store.claim(&key, &key, lease, window).await?),
                3 => {
                    store.note_delivery(key.clone());
                    store.note_delivery(key);
                }
                _ => {}
            }
        }
        store.flush().await;
        // Another handle, whose memory holds none of the notes: they count from the
        // database, in the claims' statement.
        let other = Store::open(&location).await?;
        let claims: Vec<_> = (0..MESSAGES)
            .map(|n| {
                let (other, key) = (other.clone(), key(n));
                tokio::spawn(async move { (n, other.claim(&key, &key, lease, window).await) })
            })
            .collect();
        let mut settlements = Vec::new();
        for claim in claims {
            let (n, claim) = claim.await?;
            let claim = claim?;
            let expected = matches!(
                (n % 4, claim),
                (0, Claim::Run { attempt: 1, .. })
                    | (1, Claim::Duplicate { of: Settled::Ack })
                    | (2, Claim::Busy { attempt: 2, .. })
                    | (3, Claim::Run { attempt: 3, .. })
            );
            assert!(expected, "{backend:?}: {} was answered {claim:?}", key(n));
            if let Claim::Run { token, .. } = claim {
                let (other, key) = (other.clone(), key(n));
                settlements.push(tokio::spawn(async move {
                    other.settle(&key, token, Settlement::Acked).await
                }));
            }
        }
        for settled in settlements {
            settled.await??;
        }
        for n in (0..MESSAGES).filter(|n| n % 4 != 2) {
            assert_eq!(
                store.claim(&key(n), &key(n), lease, window).await?,
                Claim::Duplicate { of: Settled::Ack },
                "{backend:?}: {} was not settled as its own",
                key(n)
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_last_attempt_that_finds_another_push_running_is_journaled() -> anyhow::Result<()> {
    for backend in BACKENDS {
        let location = fresh_store(backend).await?;
        let options = || ReceiverOptions {
            route: RouteOptions {
                max_attempts: 2,
                ..Default::default()
            },
            ..Default::default()
        };
        let first = host_with(&location, options()).await?;
        let second = host_with(&location, options()).await?;
        let id = unique("busy-last", backend);
        let client = reqwest::Client::new();
        // The first push runs (`slow`: a second); the second arrives meanwhile, as
        // CMQ's last attempt: it cannot run, so it is kept and acknowledged.
        let running = push(&client, &first.url(), &id, "slow", json_body(&id)).send();
        let late = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            push(&client, &second.url(), &id, "slow", json_body(&id))
                .send()
                .await
        };
        let (running, late) = tokio::join!(running, late);
        assert_eq!(running?.status(), StatusCode::OK);
        assert_eq!(late?.status(), StatusCode::OK);
        assert_eq!(runs(&id), 1, "{backend:?}");
        let journal = Store::open(&location).await?.dead_letters().await?;
        let entry = journal
            .iter()
            .find(|entry| entry.message_id == id)
            .unwrap_or_else(|| panic!("{backend:?}: not journaled: {journal:#?}"));
        assert_eq!(
            entry.reason,
            "another push of it was in progress on attempt 2, the last of 2"
        );
        // Settled as journaled: CMQ's next delivery (its 200 lost) runs nothing.
        let again = send(&second, &id, "slow").await?;
        assert_eq!(again, (StatusCode::OK, "ok".to_owned()), "{backend:?}");
        assert_eq!(runs(&id), 1, "{backend:?}");
        assert_eq!(duplicates_of(&id, "journaled"), 1, "{backend:?}");
        first.stop().await?;
        second.stop().await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_simplified_push_never_passes_for_a_json_push_of_another_message() -> anyhow::Result<()> {
    let location = fresh_store(Backend::Sqlite).await?;
    let host = host_with(&location, ReceiverOptions::default()).await?;
    let client = reqwest::Client::new();
    let id = unique("merge", Backend::Sqlite);
    // A JSON push: subscription `mysubscription`, message `id`; acknowledged.
    assert_eq!(send(&host, &id, "").await?, (StatusCode::OK, "ok".into()));
    // A SIMPLIFIED push whose id reads like those two joined is another message: its
    // guest runs.
    let joined = format!("mysubscription/{id}");
    let response = push(&client, &host.url(), &joined, "", "plain text")
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        runs(&joined),
        1,
        "answered as a duplicate of {id} without its guest running"
    );
    // An id that is not UTF-8 is refused: read lossily, two ids would make one key.
    let not_text = reqwest::header::HeaderValue::from_bytes(b"id-\xff")?;
    let response = client
        .post(host.url())
        .header("x-cmq-message-id", not_text)
        .body("plain text")
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await?.contains("not UTF-8"));
    host.stop().await
}

#[tokio::test]
async fn a_reason_or_an_id_holding_nul_never_blocks_the_journal() -> anyhow::Result<()> {
    for backend in BACKENDS {
        let location = fresh_store(backend).await?;
        let options = ReceiverOptions {
            route: RouteOptions {
                format: ExpectedFormat::Json,
                ..Default::default()
            },
            ..Default::default()
        };
        let host = host_with(&location, options).await?;
        // The guest drops with a reason holding NUL: journaled, and answered 200 (on
        // PostgreSQL, whose text holds no NUL, it was refused and answered 503 forever).
        let id = unique("nul-reason", backend);
        assert_eq!(
            send(&host, &id, "drop-nul").await?,
            (StatusCode::OK, "ok".into()),
            "{backend:?}"
        );
        let journal = Store::open(&location).await?.dead_letters().await?;
        let entry = journal
            .iter()
            .find(|entry| entry.message_id == id)
            .expect("the dropped message is journaled");
        assert_eq!(entry.reason, "dropped: a reason with \u{FFFD} inside");
        // An id holding NUL is no CMQ id: refused before anything runs.
        let body = json_body("REPLACED").replace("REPLACED", "a\\u0000b");
        let response = push(&reqwest::Client::new(), &host.url(), "x", "", body)
            .send()
            .await?;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{backend:?}");
        assert!(response.text().await?.contains("control character"));
        host.stop().await?;
    }
    Ok(())
}

#[tokio::test]
async fn old_records_are_pruned_in_chunks_and_kept_ones_stay() -> anyhow::Result<()> {
    // More records than one prune statement takes (500), so the chunks must repeat.
    for backend in BACKENDS {
        let store = Store::open(&fresh_store(backend).await?).await?;
        let lease = Duration::from_secs(5);
        let mut settles = tokio::task::JoinSet::new();
        for n in 0..1_234 {
            let store = store.clone();
            settles.spawn(async move {
                let key = format!("old-{n}");
                let Claim::Run { token, .. } = store.claim(&key, &key, lease, None).await? else {
                    anyhow::bail!("{key} did not run");
                };
                store.settle(&key, token, Settlement::Acked).await?;
                anyhow::Ok(())
            });
        }
        while let Some(settled) = settles.join_next().await {
            settled??;
        }
        // Kept: changed after the instant the prune starts from (half a second either
        // side of it).
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let age = Duration::from_secs(1);
        let Claim::Run { token, .. } = store.claim("kept", "kept", lease, None).await? else {
            panic!("{backend:?}: kept did not run");
        };
        store.settle("kept", token, Settlement::Acked).await?;
        let pruned = store.prune(age).await?;
        assert_eq!(pruned.rows, 1_234, "{backend:?}");
        // 500, 500 and 234 records, then one statement for each kind of note (the
        // claims' guards, younger than an hour, stay).
        assert_eq!(
            pruned.statements, 6,
            "{backend:?}: not pruned in chunks of 500"
        );
        assert!(store.record("old-7").await?.is_none(), "{backend:?}");
        assert!(store.record("kept").await?.is_some(), "{backend:?}");
    }
    Ok(())
}

/// The journal's entries for `id`.
async fn entries(store: &Store, id: &str) -> anyhow::Result<Vec<cmq_host::DeadLetter>> {
    Ok(store
        .dead_letters()
        .await?
        .into_iter()
        .filter(|entry| entry.message_id == id)
        .collect())
}

/// The host's duplicate lines for `id` that name `of`.
fn duplicates_of(id: &str, of: &str) -> usize {
    let quoted = format!("messaging.message.id=\"{id}\"");
    log_lines_with(&quoted)
        .iter()
        .filter(|line| line.contains(&format!("a duplicate of {of},")))
        .count()
}

#[tokio::test]
async fn a_dropped_or_exhausted_message_stays_settled_and_its_redeliveries_are_duplicates()
-> anyhow::Result<()> {
    for backend in BACKENDS {
        let location = fresh_store(backend).await?;
        // The defaults: a day's window, three attempts.
        let host = host_with(&location, ReceiverOptions::default()).await?;
        let store = Store::open(&location).await?;
        let ok = (StatusCode::OK, "ok".to_owned());
        let retry = (StatusCode::SERVICE_UNAVAILABLE, "retry".to_owned());

        // Dropped, then delivered again (the 200 lost): one run, one entry.
        let dropped = unique("drop-twice", backend);
        assert_eq!(send(&host, &dropped, "drop").await?, ok);
        assert_eq!(send(&host, &dropped, "drop").await?, ok);
        assert_eq!(runs(&dropped), 1, "{backend:?}: the guest ran again");
        assert_eq!(entries(&store, &dropped).await?.len(), 1, "{backend:?}");
        assert_eq!(duplicates_of(&dropped, "drop"), 1, "{backend:?}");

        // Retried to the last attempt and journaled; CMQ's 4th and a 5th delivery
        // (each 200 lost) are duplicates: three runs, one entry, attempts stay 3.
        let exhausted = unique("retry-five", backend);
        let mut answers = Vec::new();
        for _ in 0..5 {
            answers.push(send(&host, &exhausted, "retry").await?);
        }
        assert_eq!(
            answers,
            [retry.clone(), retry, ok.clone(), ok.clone(), ok.clone()],
            "{backend:?}"
        );
        assert_eq!(runs(&exhausted), 3, "{backend:?}");
        assert_eq!(entries(&store, &exhausted).await?.len(), 1, "{backend:?}");
        assert_eq!(duplicates_of(&exhausted, "journaled"), 2, "{backend:?}");
        let record = store
            .record(&documented_key("default", &exhausted))
            .await?
            .expect("a record");
        assert_eq!((record.state.as_str(), record.attempts), ("journaled", 3));

        // Purged: the record outlives its entry, and a redelivery is still a duplicate.
        let purged = unique("drop-purged", backend);
        assert_eq!(send(&host, &purged, "drop").await?, ok);
        let ids = entries(&store, &purged)
            .await?
            .iter()
            .map(|e| e.id)
            .collect();
        store.remove_dead_letters(Some(ids)).await?;
        assert_eq!(send(&host, &purged, "drop").await?, ok);
        assert_eq!(runs(&purged), 1, "{backend:?}");
        assert!(entries(&store, &purged).await?.is_empty(), "{backend:?}");
        assert_eq!(duplicates_of(&purged, "drop"), 1, "{backend:?}");

        // Replayed, and acknowledged by the route's guest of the time (`ack`): the
        // message is settled as acknowledged, and a redelivery is a duplicate of that.
        let replayed = unique("drop-replayed", backend);
        assert_eq!(send(&host, &replayed, "drop").await?, ok);
        let entry = entries(&store, &replayed).await?.remove(0);
        let acking = TestHost::start(
            "ack",
            ReceiverOptions {
                store: Some(Store::open(&location).await?),
                ..Default::default()
            },
        )
        .await?;
        acking
            .receiver
            .replay(&entry)
            .await
            .map_err(anyhow::Error::msg)?;
        let record = store
            .record(&documented_key("default", &replayed))
            .await?
            .expect("a record");
        assert_eq!(record.state, "acked", "{backend:?}");
        assert_eq!(send(&host, &replayed, "drop").await?, ok);
        assert_eq!(runs(&replayed), 1, "{backend:?}");
        assert_eq!(duplicates_of(&replayed, "ack"), 1, "{backend:?}");

        // Across hosts on one store: dropped on one, redelivered to the other.
        let across = unique("drop-across", backend);
        assert_eq!(send(&host, &across, "drop").await?, ok);
        assert_eq!(send(&acking, &across, "").await?, ok);
        assert_eq!(
            runs(&across),
            1,
            "{backend:?}: the other host ran its guest"
        );
        assert_eq!(duplicates_of(&across, "drop"), 1, "{backend:?}");
        acking.stop().await?;
        host.stop().await?;
    }
    Ok(())
}

/// A TCP forwarder of the test's own between the host and PostgreSQL that can be
/// frozen: while frozen it neither accepts, reads nor writes, so bytes wait in the
/// kernel's buffers (no RST, no FIN), as behind a stalled load balancer or a network
/// partition; thawed, it forwards everything that waited.
struct Forwarder {
    addr: std::net::SocketAddr,
    frozen: tokio::sync::watch::Sender<bool>,
}

impl Forwarder {
    async fn start(upstream: String) -> anyhow::Result<Forwarder> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (frozen, watch) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            loop {
                thawed(&watch).await;
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pipe(client_read, server_write, watch.clone()));
                tokio::spawn(pipe(server_read, client_write, watch.clone()));
            }
        });
        Ok(Forwarder { addr, frozen })
    }

    fn freeze(&self, frozen: bool) {
        let _ = self.frozen.send(frozen);
    }
}

/// Waits until the forwarder is not frozen.
async fn thawed(watch: &tokio::sync::watch::Receiver<bool>) {
    let mut watch = watch.clone();
    let _ = watch.wait_for(|frozen| !frozen).await;
}

/// Copies `from` to `to`, holding still while frozen; ends, shutting `to` down, at EOF.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    watch: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut buffer = vec![0; 16 << 10];
    loop {
        thawed(&watch).await;
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        thawed(&watch).await;
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_black_holed_store_every_message_runs_and_counts_its_deliveries_exactly()
-> anyhow::Result<()> {
    let StoreLocation::Postgres(url) = fresh_store(Backend::Postgres).await? else {
        anyhow::bail!("a PostgreSQL store");
    };
    // postgres://ROLE:PASSWORD@HOST:PORT/DATABASE, through the forwarder.
    let (head, rest) = url.split_once('@').expect("credentials in the test URL");
    let (upstream, database) = rest.split_once('/').expect("a database in the test URL");
    let forwarder = Forwarder::start(upstream.to_owned()).await?;
    let through = StoreLocation::Postgres(format!("{head}@{}/{database}", forwarder.addr));
    let options = ReceiverOptions {
        store: Some(Store::open(&through).await?),
        ..Default::default()
    };
    let host = TestHost::start("faulty", options).await?;
    let direct = Store::open(&StoreLocation::Postgres(url)).await?;
    let ok = (StatusCode::OK, "ok".to_owned());
    assert_eq!(send(&host, "warm", "").await?, ok, "before the freeze");

    forwarder.freeze(true);
    each_runs_after_the_store_stalls(&host, &direct, "black-hole", || forwarder.freeze(false))
        .await?;
    assert!(direct.dead_letters().await?.is_empty(), "nothing journaled");
    host.stop().await
}

/// With the store stalled (by the caller, just before): one delivery of each of six
/// messages, each answered 503 within the store's 3 s (and a little); after 8 s
/// `resume`; then each message once more, which its guest runs, on attempt 2.
async fn each_runs_after_the_store_stalls(
    host: &TestHost,
    direct: &Store,
    prefix: &str,
    resume: impl FnOnce(),
) -> anyhow::Result<()> {
    let stalled_at = std::time::Instant::now();
    let ids: Vec<String> = (0..6)
        .map(|i| format!("{prefix}-{}-{i}", std::process::id()))
        .collect();
    let mut during = tokio::task::JoinSet::new();
    for id in ids.clone() {
        let url = host.url();
        during.spawn(async move {
            let started = std::time::Instant::now();
            let response = push(&reqwest::Client::new(), &url, &id, "", json_body(&id))
                .send()
                .await?;
            anyhow::Ok((id, response.status(), started.elapsed()))
        });
    }
    while let Some(answered) = during.join_next().await {
        let (id, status, took) = answered??;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{id} while stalled"
        );
        assert!(
            took < Duration::from_millis(3500),
            "{id} answered after {took:?}"
        );
    }
    tokio::time::sleep(Duration::from_secs(8).saturating_sub(stalled_at.elapsed())).await;
    resume();
    // Whatever waited arrives now; the notes are written within 200 ms.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let ok = (StatusCode::OK, "ok".to_owned());
    for id in &ids {
        assert_eq!(send(host, id, "").await?, ok, "{id} after the stall");
        assert_eq!(runs(id), 1, "{id}: the guest did not run after the stall");
        let record = direct
            .record(&documented_key("default", id))
            .await?
            .expect("a record");
        assert_eq!(
            (record.state.as_str(), record.attempts),
            ("acked", 2),
            "{id}: two deliveries were made"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_stalled_sqlite_writer_every_message_runs_and_counts_its_deliveries_exactly()
-> anyhow::Result<()> {
    let location = fresh_store(Backend::Sqlite).await?;
    let StoreLocation::Sqlite(path) = &location else {
        anyhow::bail!("a SQLite store");
    };
    let host = host_with(&location, ReceiverOptions::default()).await?;
    let direct = Store::open(&location).await?;
    assert_eq!(send(&host, "warm", "").await?.0, StatusCode::OK);
    // Another process holds the write lock: the host's writer waits on it (5 s each
    // time) while the pushes it holds up time out.
    let other = rusqlite::Connection::open(path)?;
    other.execute_batch("BEGIN IMMEDIATE")?;
    each_runs_after_the_store_stalls(&host, &direct, "stalled-writer", || {
        other.execute_batch("COMMIT").expect("releasing the lock");
    })
    .await?;
    assert!(direct.dead_letters().await?.is_empty(), "nothing journaled");
    host.stop().await
}

/// Runs `sql` on the store at `location` as its owner would: a damaged row, or one a
/// newer cmq-host wrote.
async fn tamper(location: &StoreLocation, sql: &str) -> anyhow::Result<()> {
    match location {
        StoreLocation::Sqlite(path) => {
            rusqlite::Connection::open(path)?.execute_batch(sql)?;
        }
        StoreLocation::Postgres(url) => {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            client.batch_execute(sql).await?;
        }
    }
    Ok(())
}

/// Journals an entry for `message_id` of the route `default` directly in `store`: its id.
async fn journal_one(store: &Store, message_id: &str, attempts: u32) -> anyhow::Result<i64> {
    let entry = cmq_host::DeadLetter {
        id: 0,
        message_id: message_id.into(),
        reason: "kept for the test".into(),
        attempts,
        format: cmq_message::Format::Json,
        route: Some("default".into()),
        request_id: None,
        message_tag: None,
        body: b"{}".to_vec(),
        created: std::time::UNIX_EPOCH,
    };
    let key = format!("default\u{1f}{message_id}");
    Ok(store.journal(entry, &key, None).await?)
}

#[tokio::test]
async fn a_stored_value_this_host_cannot_read_is_an_error_naming_its_row() -> anyhow::Result<()> {
    for backend in BACKENDS {
        let location = fresh_store(backend).await?;
        let store = Store::open(&location).await?;
        let id = journal_one(&store, "m-unreadable", 2).await?;
        assert_eq!(store.dead_letters().await?.len(), 1, "{backend:?}");

        // A format this host does not know is refused, not read as SIMPLIFIED.
        tamper(
            &location,
            &format!("UPDATE cmq_dead_letters SET format = 'xml' WHERE id = {id}"),
        )
        .await?;
        let err = store.dead_letters().await.expect_err("an unknown format");
        assert!(
            err.to_string().contains(&format!(
                "dead letter {id} cannot be read: unknown push format \"xml\""
            )),
            "{backend:?}: {err}"
        );

        // A negative count is refused, not read as the largest one.
        tamper(
            &location,
            &format!("UPDATE cmq_dead_letters SET format = 'json', attempts = -1 WHERE id = {id}"),
        )
        .await?;
        let err = store.dead_letters().await.expect_err("a negative count");
        assert!(
            err.to_string().contains(&format!(
                "dead letter {id} cannot be read: attempts -1 out of range"
            )),
            "{backend:?}: {err}"
        );
    }
    Ok(())
}

/// A host starting beside serving ones must not wait on their claims: `CREATE INDEX IF
/// NOT EXISTS` and `ADD COLUMN IF NOT EXISTS` lock their tables even when there is
/// nothing to make, and against another host's open claim that stalled, or deadlocked,
/// the start. Here a session holds the lock a claim in progress holds on every table,
/// while a host opens a store this version made, then one an older version made (its
/// tables all there, no version mark: a rolling upgrade).
#[tokio::test]
async fn a_host_opens_a_made_postgresql_store_while_another_holds_claims() -> anyhow::Result<()> {
    let location = fresh_store(Backend::Postgres).await?;
    let StoreLocation::Postgres(url) = &location else {
        unreachable!("a PostgreSQL store was asked for")
    };
    Store::open(&location).await?;
    let (mut client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    for (round, made_by) in [(1, "this version"), (2, "an older version")] {
        if round == 2 {
            client.batch_execute("DROP TABLE cmq_schema").await?;
        }
        let claiming = client.transaction().await?;
        claiming
            .batch_execute(
                "LOCK TABLE cmq_messages, cmq_uncounted, cmq_notes, cmq_dead_letters \
                 IN ROW EXCLUSIVE MODE",
            )
            .await?;
        let second = tokio::time::timeout(Duration::from_secs(10), Store::open(&location))
            .await
            .map_err(|_| {
                anyhow::anyhow!("made by {made_by}: the second host waited on the claims")
            })??;
        claiming.rollback().await?;
        journal_one(&second, &format!("m-second-host-{round}"), 1).await?;
        assert_eq!(
            second.dead_letters().await?.len(),
            round,
            "made by {made_by}"
        );
    }
    // The older version's store is marked now.
    let marked: i64 = client
        .query_one("SELECT max(version) FROM cmq_schema", &[])
        .await?
        .get(0);
    assert_eq!(marked, 1);
    Ok(())
}
