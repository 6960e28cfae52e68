//! `cmq-host run`: one message through a fresh instance of a handler, as `serve` would
//! run it for a push, without a server: the guest's output, its decision, and an exit
//! status by decision. How a handler is tried by hand and tested in a CI pipeline.

use std::fmt;
use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use cmq_host::{
    ByteSize, Config, ExpectedFormat, HumanDuration, Receiver, ReceiverOptions, RouteOptions,
    ServeAs,
};
use cmq_message::PushHeaders;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;

use crate::cli::{GrantArgs, heading, one_of};

/// The exit status of each outcome: 0 for `ack`; 1 and 2 stay cmq-host's own (an error,
/// a bad command line).
const EXIT_RETRY: u8 = 3;
const EXIT_DROP: u8 = 4;
const EXIT_FAULT: u8 = 5;

/// The push of CMQ's documentation, the message `run` sends unless told otherwise.
const DOCUMENTED: Documented = Documented {
    topic_owner: 100015036,
    topic: "MyTopic",
    subscription: "mysubscription",
    message_id: "6942316962",
    request_id: "2394928734",
    body: "test message",
    publish_time: 11203432,
};

struct Documented {
    topic_owner: u64,
    topic: &'static str,
    subscription: &'static str,
    message_id: &'static str,
    request_id: &'static str,
    body: &'static str,
    publish_time: u64,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 ack, 3 retry, 4 drop, 5 the guest gave no decision \
    (trap, deadline, memory); 1 when the component or the message could not be read."
)]
pub(crate) struct RunArgs {
    /// The handler component, as `serve COMPONENT` loads it.
    component: PathBuf,
    /// The push as CMQ POSTs it, from a file (`-`: stdin): the JSON envelope, or the
    /// message itself in SIMPLIFIED format. Without it, the message is made from the
    /// flags below, each defaulting to the push of CMQ's documentation.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["body", "topic", "subscription"], help_heading = heading::MESSAGE)]
    push: Option<PathBuf>,
    /// The message body.
    #[arg(long, default_value = DOCUMENTED.body, value_name = "TEXT", help_heading = heading::MESSAGE)]
    body: String,
    /// A tag the message carries (repeatable).
    #[arg(long = "tag", value_name = "TAG", help_heading = heading::MESSAGE)]
    tags: Vec<String>,
    /// The push format: json (the body in CMQ's envelope, with topic and subscription)
    /// or simplified (the body alone).
    #[arg(
        long,
        default_value_t = ExpectedFormat::Json,
        value_parser = one_of::<ExpectedFormat>(&["json", "simplified"]),
        ignore_case = true,
        help_heading = heading::MESSAGE
    )]
    format: ExpectedFormat,
    /// The message id (`x-cmq-message-id`).
    #[arg(long, default_value = DOCUMENTED.message_id, value_name = "ID", help_heading = heading::MESSAGE)]
    message_id: String,
    /// CMQ's id of this delivery (`x-cmq-request-id`).
    #[arg(long, default_value = DOCUMENTED.request_id, value_name = "ID", help_heading = heading::MESSAGE)]
    request_id: String,
    /// The topic (JSON format).
    #[arg(long, default_value = DOCUMENTED.topic, value_name = "NAME", help_heading = heading::MESSAGE)]
    topic: String,
    /// The subscription (JSON format).
    #[arg(long, default_value = DOCUMENTED.subscription, value_name = "NAME", help_heading = heading::MESSAGE)]
    subscription: String,
    /// The attempt the guest is told this delivery is, as the store counts them under
    /// `serve` (default: none, as without a store).
    #[arg(long, value_name = "N", help_heading = heading::MESSAGE)]
    attempt: Option<u32>,
    /// Longest the guest may run.
    #[arg(long, default_value_t = HumanDuration(RouteOptions::default().deadline), value_name = "DURATION", help_heading = heading::HANDLER)]
    deadline: HumanDuration,
    /// Linear memory the guest instance may use.
    #[arg(long, default_value_t = ByteSize(RouteOptions::default().max_memory), value_name = "SIZE", help_heading = heading::LIMITS)]
    max_memory: ByteSize,
    #[command(flatten)]
    grants: GrantArgs,
    /// Accept a .cwasm from `cmq-host compile` as the component.
    #[arg(long, help_heading = heading::COMPILED_CODE)]
    allow_precompiled: bool,
    /// Where compiled components are kept (`off`: compile every time) [default:
    /// $XDG_CACHE_HOME/cmq-host, else ~/.cache/cmq-host].
    #[arg(long, value_name = "DIR|off", help_heading = heading::COMPILED_CODE)]
    compile_cache: Option<PathBuf>,
}

pub(crate) fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut message = message(&args)?;
    message.attempt = args.attempt;
    let options = ReceiverOptions {
        route: RouteOptions {
            deadline: args.deadline.0,
            max_memory: args.max_memory.bytes(),
            grants: args.grants.grants()?,
            serve_as: ServeAs::PushHandler,
            ..RouteOptions::default()
        },
        allow_precompiled: args.allow_precompiled,
        ..ReceiverOptions::default()
    };
    let config = Config::single(args.component.clone(), &options);
    let cache = crate::cli::compile_cache_dir(args.compile_cache.as_deref());
    let receiver = Receiver::from_config(&config, None, cache)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let outcome = runtime.block_on(receiver.handle_on_first_route(message));
    // The guest's lines are written by the log as it ends; then its decision.
    crate::cli::log_output::flush();
    let (line, code) = match outcome {
        Ok(cmq_host::Decision::Ack) => ("ack".to_owned(), 0),
        Ok(cmq_host::Decision::Retry(reason)) => (format!("retry: {reason}"), EXIT_RETRY),
        Ok(cmq_host::Decision::Drop(reason)) => (format!("drop: {reason}"), EXIT_DROP),
        Err(fault) => (format!("no decision: {fault}"), EXIT_FAULT),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "decision: {line}")?;
    out.flush()?;
    Ok(ExitCode::from(code))
}

/// The message, parsed from the push `--push` names or from one made of the flags,
/// exactly as `serve` parses a push.
fn message(args: &RunArgs) -> anyhow::Result<cmq_message::Message> {
    let headers = PushHeaders {
        request_id: Some(args.request_id.clone()),
        message_id: Some(args.message_id.clone()),
        message_tag: (!args.tags.is_empty()).then(|| args.tags.join(",")),
    };
    let body = match &args.push {
        Some(path) if path.as_os_str() == "-" => {
            let mut body = Vec::new();
            std::io::stdin()
                .read_to_end(&mut body)
                .context("reading the push from stdin")?;
            body
        }
        Some(path) => std::fs::read(path)
            .with_context(|| format!("reading the push from {}", path.display()))?,
        None => match args.format {
            ExpectedFormat::Simplified => args.body.clone().into_bytes(),
            _ => serde_json::json!({
                "TopicOwner": DOCUMENTED.topic_owner,
                "topicName": args.topic,
                "subscriptionName": args.subscription,
                "msgId": args.message_id,
                "msgBody": args.body,
                "publishTime": DOCUMENTED.publish_time,
            })
            .to_string()
            .into_bytes(),
        },
    };
    cmq_message::parse(args.format, &headers, &body).map_err(|err| {
        anyhow::anyhow!(
            "the push is not a CMQ {} push (serve would answer 400): {err}",
            args.format
        )
    })
}

/// The log layer of `run`: each line the guest printed goes, as it is, to this
/// process's stdout or stderr (the guest's own); the host's warnings and errors go to
/// stderr.
pub(crate) struct GuestLines;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for GuestLines {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let guest = event.metadata().target() == cmq_host::GUEST_OUTPUT_TARGET;
        if guest && fields.stream == "stdout" {
            let _ = writeln!(std::io::stdout().lock(), "{}", fields.message);
        } else if guest || *event.metadata().level() <= tracing::Level::WARN {
            let _ = writeln!(std::io::stderr().lock(), "{}", fields.message);
        }
    }
}

/// The message and stream of an event.
#[derive(Default)]
struct Fields {
    message: String,
    stream: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_owned(),
            "stream" => self.stream = value.to_owned(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "stream" => self.stream = format!("{value:?}").trim_matches('"').to_owned(),
            _ => {}
        }
    }
}
