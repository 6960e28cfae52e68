//! Replaying a dead-letter entry: its kept push, through its route's current guest.

use super::Receiver;
use crate::sandbox::bindings::{Decision, Message};
use crate::store::DeadLetter;

impl Receiver {
    /// Runs a dead-letter entry through a fresh instance of its route's current guest
    /// (the first route's when the entry names none, or a route no longer served):
    /// `Ok` when the guest acknowledged it, else why not. The entry stays in the
    /// journal either way: removing it is the caller's, once it is acknowledged.
    pub async fn replay(&self, entry: &DeadLetter) -> Result<(), String> {
        let routes = self.routes.get();
        let route = entry
            .route
            .as_deref()
            .and_then(|name| routes.named(name))
            .unwrap_or_else(|| routes.first());
        let headers = cmq_message::PushHeaders {
            request_id: entry.request_id.clone(),
            message_id: Some(entry.message_id.clone()),
            message_tag: entry.message_tag.clone(),
        };
        let expected = match entry.format {
            cmq_message::Format::Json => cmq_message::ExpectedFormat::Json,
            cmq_message::Format::Simplified => cmq_message::ExpectedFormat::Simplified,
        };
        let message = cmq_message::parse(expected, &headers, &entry.body)
            .map_err(|err| format!("the kept push no longer parses: {err}"))?;
        // The record the entry settled, under the route it was journaled by.
        let key = entry
            .route
            .as_deref()
            .map(|name| crate::store::message_key(name, &message));
        match route.guest.handle(Message::from(message)).await.0 {
            Ok(Decision::Ack) => {
                if let (Some(store), Some(key)) = (&self.store, key)
                    && let Err(err) = store.mark_replayed(&key).await
                {
                    tracing::warn!(
                        messaging.message.id = entry.message_id,
                        "a replay's acknowledgement not recorded: {err}"
                    );
                }
                Ok(())
            }
            Ok(Decision::Retry(reason)) => Err(format!("retry: {reason}")),
            Ok(Decision::Drop(reason)) => Err(format!("dropped again: {reason}")),
            Err(fault) => Err(format!("fault: {fault}")),
        }
    }
}
