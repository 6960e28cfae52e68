//! `cmq-simulator`: push messages to an HTTP endpoint exactly as Tencent Cloud CMQ does,
//! so that an endpoint can be tested before CMQ ever calls it.
//!
//! It sends CMQ's requests (both formats, the `x-cmq-*` headers, its user agent and
//! content type), applies a subscription's tag filter and binding keys, and retries on
//! CMQ's schedules (`BACKOFF_RETRY`, `EXPONENTIAL_DECAY_RETRY`), optionally sped up. Each
//! message ends delivered on some attempt, discarded after the last one, or filtered out.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use cmq_simulator::{RetryStrategy, Simulator, Subscription, generate};
//!
//! let mut subscription = Subscription::new("http://127.0.0.1:8080/cgi".parse()?);
//! subscription.strategy = RetryStrategy::Backoff;
//! let simulator = Simulator::new(subscription)?.time_scale(0.001)?;
//! let reports = simulator.run(generate(10, None, &[], None), |r| println!("{r}")).await;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod delivery;
mod filter;
mod report;
mod source;
mod strategy;

pub use crate::delivery::{
    ANSWER_TIMEOUT, SettingError, Simulator, Subscription, USER_AGENT, push_once,
};
pub use crate::filter::{Filter, FilteredBy, binding_key_matches};
pub use crate::report::{Answer, Attempt, Outcome, Report, Summary};
pub use crate::source::{Published, SourceError, check_header_values, generate, read_json_lines};
pub use crate::strategy::RetryStrategy;
pub use cmq_message::Format;
