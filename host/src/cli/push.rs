//! `cmq-host push`: the CMQ push simulator (see the `cmq-simulator` crate).

use std::io::{BufReader, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::builder::{PossibleValuesParser, TypedValueParser as _};
use cmq_simulator::{
    Filter, Format, Published, RetryStrategy, Simulator, Subscription, Summary,
    check_header_values, generate, read_json_lines,
};

use crate::cli::one_of;

#[derive(Debug, clap::Args)]
pub(crate) struct PushArgs {
    /// The subscription's endpoint, an http:// URL.
    url: http::Uri,
    /// NotifyContentFormat.
    #[arg(
        long,
        default_value = "json",
        value_parser = PossibleValuesParser::new(["json", "simplified"]).try_map(|name| parse_format(&name)),
        ignore_case = true
    )]
    format: Format,
    /// NotifyStrategy: backoff is BACKOFF_RETRY, exponential EXPONENTIAL_DECAY_RETRY.
    #[arg(
        long,
        default_value = "exponential",
        value_parser = one_of::<RetryStrategy>(&["backoff", "exponential", "BACKOFF_RETRY", "EXPONENTIAL_DECAY_RETRY"]),
        ignore_case = true
    )]
    strategy: RetryStrategy,
    /// Multiplies every retry interval: 0.001 runs a day of retries in under 90 s.
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Read messages from this file, one JSON object per line (- for stdin):
    /// {"msgBody": "...", "msgTag": ["a"], "routingKey": "x.y", "msgId": "..."}.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["generate", "body", "tag", "routing_key"])]
    messages: Option<PathBuf>,
    /// Generate this many messages (the default is one).
    #[arg(long, value_name = "N")]
    generate: Option<usize>,
    /// Body of generated messages [default: "message N"].
    #[arg(long)]
    body: Option<String>,
    /// Tag of generated messages (repeatable).
    #[arg(long = "tag")]
    tag: Vec<String>,
    /// Routing key of generated messages.
    #[arg(long)]
    routing_key: Option<String>,
    /// The subscription's FilterTag (repeatable): only messages with one of these tags
    /// are pushed.
    #[arg(long = "filter-tag")]
    filter_tag: Vec<String>,
    /// The subscription's BindingKey (repeatable): only messages whose routing key
    /// matches one are pushed (`*` one word, `#` zero or more).
    #[arg(long = "binding-key")]
    binding_key: Vec<String>,
    /// Topic name in the JSON envelope.
    #[arg(long, default_value = "MyTopic")]
    topic: String,
    /// Subscription name in the JSON envelope.
    #[arg(long, default_value = "mysubscription")]
    subscription: String,
    /// Pushes in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seed for message ids, request ids and backoff intervals, for repeatable runs.
    #[arg(long)]
    seed: Option<u64>,
    /// Print one JSON object per message instead of a line of text.
    #[arg(long)]
    json: bool,
}

fn parse_format(text: &str) -> Result<Format, String> {
    match text.to_ascii_lowercase().as_str() {
        "json" => Ok(Format::Json),
        "simplified" => Ok(Format::Simplified),
        _ => Err(format!(
            "unknown push format {text:?}: expected json or simplified"
        )),
    }
}

pub(crate) fn run(args: PushArgs) -> anyhow::Result<ExitCode> {
    let messages = messages(&args)?;
    let subscription = Subscription {
        format: args.format,
        strategy: args.strategy,
        filter: Filter {
            tags: args.filter_tag,
            binding_keys: args.binding_key,
        },
        topic_name: args.topic,
        subscription_name: args.subscription,
        ..Subscription::new(args.url)
    };
    let mut simulator = Simulator::new(subscription)?
        .time_scale(args.time_scale)?
        .concurrency(args.concurrency)?;
    if let Some(seed) = args.seed {
        simulator = simulator.seed(seed);
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let json = args.json;
    let reports = runtime.block_on(simulator.run(messages, |report| {
        let mut out = std::io::stdout().lock();
        let line = if json {
            serde_json::to_string(report).unwrap_or_default()
        } else {
            report.to_string()
        };
        // A closed stdout (a pipe into `head`) must not stop the deliveries.
        let _ = writeln!(out, "{line}");
    }));
    let summary = Summary::of(&reports);
    tracing::info!("{summary}");
    Ok(if summary.discarded == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The messages to push: read from `--messages` (JSON lines, `-` for stdin), or
/// `--generate N` of them made up.
fn messages(args: &PushArgs) -> anyhow::Result<Vec<Published>> {
    Ok(match &args.messages {
        Some(path) if path.as_os_str() == "-" => {
            read_json_lines(std::io::stdin().lock()).context("reading messages from stdin")?
        }
        Some(path) => {
            let file =
                std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            read_json_lines(BufReader::new(file))
                .with_context(|| format!("reading messages from {}", path.display()))?
        }
        None => {
            let messages = generate(
                args.generate.unwrap_or(1),
                args.body.as_deref(),
                &args.tag,
                args.routing_key.as_deref(),
            );
            if let Some(first) = messages.first() {
                check_header_values(first).map_err(|reason| anyhow::anyhow!("--tag: {reason}"))?;
            }
            messages
        }
    })
}
