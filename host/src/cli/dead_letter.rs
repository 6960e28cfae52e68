//! `cmq-host dead-letter`: read, replay and clear the dead-letter journal.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context as _;
use base64::Engine as _;
use bytes::Bytes;
use cmq_host::{
    DeadLetter, HumanDuration, JournalQuery, Receiver, ReceiverOptions, Store, StoreLocation,
};
use serde_json::json;

use crate::cli::StateArg;

#[derive(Debug, clap::Args)]
pub(crate) struct DeadLetterArgs {
    #[command(flatten)]
    state: StateArg,
    /// Print JSON, one object per entry and line, for scripts.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// List the journal's entries, oldest first, read a page at a time: however long
    /// the journal, the list holds one page.
    List(ListArgs),
    /// Show one entry whole, its body included.
    Show {
        /// The entry's id (the first column of `list`).
        id: i64,
    },
    /// Deliver entries again, and remove each that is acknowledged.
    Replay {
        /// The entries' ids.
        #[arg(required = true)]
        ids: Vec<i64>,
        /// Run each through a fresh instance of this component (with no grants); kept
        /// unless the guest acks.
        #[arg(
            long,
            value_name = "X.wasm",
            required_unless_present = "url",
            conflicts_with = "url"
        )]
        component: Option<PathBuf>,
        /// Push each to this endpoint as CMQ would; kept unless answered 2xx.
        #[arg(long)]
        url: Option<http::Uri>,
    },
    /// Remove every entry.
    Purge,
}

/// Which entries `list` prints.
#[derive(Debug, clap::Args)]
struct ListArgs {
    /// Only this route's entries.
    #[arg(long)]
    route: Option<String>,
    /// Only entries whose reason holds this text (ASCII letters in either case).
    #[arg(long)]
    reason: Option<String>,
    /// Only entries journaled within this long (`1h`, `2d`) or since this time (RFC
    /// 3339, such as `2026-12-01T08:00:00Z`).
    #[arg(long, value_name = "DURATION|TIME")]
    since: Option<Since>,
    /// At most this many entries (the oldest that match).
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
}

/// `--since`: a time, given as one or as how long ago.
#[derive(Debug, Clone, Copy)]
struct Since(SystemTime);

impl std::str::FromStr for Since {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Ok(ago) = text.parse::<HumanDuration>() {
            return SystemTime::now()
                .checked_sub(ago.0)
                .map(Since)
                .ok_or_else(|| format!("{text}: before the start of time"));
        }
        humantime::parse_rfc3339_weak(text).map(Since).map_err(|_| {
            format!("{text:?}: a duration such as 1h, or a time such as 2026-12-01T08:00:00Z")
        })
    }
}

/// Entries a page of `list` reads: bodies included, so a page holds this many times the
/// largest body at most.
const LIST_PAGE: u32 = 64;

pub(crate) fn run(args: DeadLetterArgs) -> anyhow::Result<ExitCode> {
    let location = args.state.location()?;
    // Reading a journal must not create an empty store in the wrong directory.
    if let StoreLocation::Sqlite(path) = &location
        && !path.exists()
    {
        anyhow::bail!(
            "no store at {}: name the one `serve` uses with --state or CMQ_HOST_STATE",
            path.display()
        );
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let store = Store::open(&location).await?;
        match args.action {
            Action::List(list_args) => list(&store, &list_args, args.json).await,
            Action::Show { id } => show(&store, id, args.json).await,
            Action::Replay {
                ids,
                component,
                url,
            } => replay(&store, &ids, component, url, args.json).await,
            Action::Purge => {
                let removed = store.remove_dead_letters(None).await?;
                if args.json {
                    println!("{}", json!({ "removed": removed }));
                } else {
                    println!("removed {removed} entries");
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

async fn list(store: &Store, args: &ListArgs, as_json: bool) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let limit = args.limit.unwrap_or(u64::MAX);
    let (mut printed, mut after) = (0u64, i64::MIN);
    while printed < limit {
        let want = u32::try_from(limit - printed).map_or(LIST_PAGE, |left| left.min(LIST_PAGE));
        let query = JournalQuery {
            route: args.route.clone(),
            reason: args.reason.clone(),
            since: args.since.map(|since| since.0),
            limit: want,
            offset: 0,
        };
        let page = store.journal_after(query, after).await?;
        if printed == 0 && !as_json && !page.is_empty() {
            writeln!(
                out,
                "{:<6} {:<20} {:<12} {:<20} {:>8}  REASON",
                "ID", "JOURNALED (UTC)", "ROUTE", "MESSAGE ID", "ATTEMPTS"
            )?;
        }
        for entry in &page {
            write_listed(&mut out, entry, as_json)?;
        }
        printed += page.len() as u64;
        match page.last() {
            Some(last) if page.len() == want as usize => after = last.id,
            _ => break,
        }
    }
    if printed == 0 && !as_json {
        let filtered = args.route.is_some() || args.reason.is_some() || args.since.is_some();
        if filtered {
            writeln!(out, "no entry of the dead-letter journal matches")?;
        } else {
            writeln!(out, "the dead-letter journal is empty")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One entry of `list`: a JSON line, or a row of the table.
fn write_listed(
    out: &mut impl std::io::Write,
    entry: &DeadLetter,
    as_json: bool,
) -> std::io::Result<()> {
    if as_json {
        return writeln!(out, "{}", entry_json(entry));
    }
    writeln!(
        out,
        "{:<6} {:<20} {:<12} {:<20} {:>8}  {}",
        entry.id,
        timestamp(entry.created),
        shorten(entry.route.as_deref().unwrap_or("-"), 12),
        shorten(&entry.message_id, 20),
        entry.attempts,
        shorten(&entry.reason, 80)
    )
}

async fn show(store: &Store, id: i64, as_json: bool) -> anyhow::Result<ExitCode> {
    let Some(entry) = store.dead_letter(id).await? else {
        anyhow::bail!("no dead-letter entry {id}");
    };
    if as_json {
        println!("{}", entry_json(&entry));
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "id:          {}", entry.id)?;
    writeln!(out, "message id:  {}", shorten(&entry.message_id, 1024))?;
    writeln!(out, "journaled:   {}", timestamp(entry.created))?;
    writeln!(
        out,
        "route:       {}",
        entry.route.as_deref().unwrap_or("-")
    )?;
    writeln!(out, "attempts:    {}", entry.attempts)?;
    writeln!(out, "reason:      {}", entry.reason)?;
    writeln!(out, "format:      {}", entry.format.name())?;
    writeln!(
        out,
        "request id:  {}",
        entry.request_id.as_deref().unwrap_or("-")
    )?;
    writeln!(
        out,
        "tags:        {}",
        entry.message_tag.as_deref().unwrap_or("-")
    )?;
    match std::str::from_utf8(&entry.body) {
        Ok(text) => writeln!(out, "body:        {} bytes\n{text}", entry.body.len())?,
        Err(_) => writeln!(
            out,
            "body:        {} bytes, not UTF-8, as base64\n{}",
            entry.body.len(),
            base64::engine::general_purpose::STANDARD.encode(&entry.body)
        )?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn replay(
    store: &Store,
    ids: &[i64],
    component: Option<PathBuf>,
    url: Option<http::Uri>,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let receiver = match &component {
        Some(path) => {
            let receiver = Receiver::load(path, ReceiverOptions::default())?;
            receiver.check().await?;
            Some(receiver)
        }
        None => None,
    };
    let mut all_removed = true;
    for &id in ids {
        let outcome = match store.dead_letter(id).await? {
            None => Err("no such entry".to_owned()),
            Some(entry) => match (&receiver, &url) {
                (Some(receiver), _) => receiver.replay(&entry).await,
                (None, Some(url)) => push(url, &entry).await,
                (None, None) => Err("nothing to replay to".to_owned()),
            },
        };
        let removed = match &outcome {
            Ok(()) => store.remove_dead_letters(Some(vec![id])).await? == 1,
            Err(_) => false,
        };
        all_removed &= removed;
        if as_json {
            let failure = outcome.as_ref().err();
            println!(
                "{}",
                json!({ "id": id, "acknowledged": outcome.is_ok(), "removed": removed, "failure": failure })
            );
        } else {
            match outcome {
                Ok(()) => println!("{id}: acknowledged, removed from the journal"),
                Err(why) => println!("{id}: {why}; kept"),
            }
        }
    }
    Ok(if all_removed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Pushes the entry to `url` as CMQ would: `Ok` on 2xx.
async fn push(url: &http::Uri, entry: &DeadLetter) -> Result<(), String> {
    let answer = cmq_simulator::push_once(
        url,
        &entry.message_id,
        entry.message_tag.as_deref(),
        Bytes::from(entry.body.clone()),
    )
    .await;
    if answer.is_success() {
        Ok(())
    } else {
        Err(format!("answered {answer}"))
    }
}

fn entry_json(entry: &DeadLetter) -> serde_json::Value {
    let (body, body_base64) = match std::str::from_utf8(&entry.body) {
        Ok(text) => (Some(text.to_owned()), None),
        Err(_) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(&entry.body)),
        ),
    };
    json!({
        "id": entry.id,
        "message_id": entry.message_id,
        "journaled_at": timestamp(entry.created),
        "route": entry.route,
        "attempts": entry.attempts,
        "reason": entry.reason,
        "format": entry.format.name(),
        "request_id": entry.request_id,
        "message_tag": entry.message_tag,
        "body": body,
        "body_base64": body_base64,
    })
}

fn timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

/// `text` on one line, cut to `max` characters.
fn shorten(text: &str, max: usize) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.chars().count() <= max {
        return line;
    }
    let mut cut: String = line.chars().take(max - 1).collect();
    cut.push('…');
    cut
}
