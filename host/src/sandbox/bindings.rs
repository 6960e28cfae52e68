//! Host bindings for the `cmq:push` WIT package in the repository's `wit/` folder.

mod generated {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "push-handler",
        exports: { default: async },
    });
}

pub use self::generated::exports::cmq::push::handler::Decision;
pub(crate) use self::generated::exports::cmq::push::handler::{Format, Message};
pub(crate) use self::generated::{PushHandler, PushHandlerPre};

impl From<cmq_message::Message> for Message {
    fn from(message: cmq_message::Message) -> Self {
        Message {
            message_id: message.message_id,
            request_id: message.request_id,
            tags: message.tags,
            topic_owner: message.topic_owner,
            topic_name: message.topic_name,
            subscription_name: message.subscription_name,
            publish_time: message.publish_time,
            body: message.body,
            format: match message.format {
                cmq_message::Format::Json => Format::Json,
                cmq_message::Format::Simplified => Format::Simplified,
            },
            attempt: message.attempt,
        }
    }
}
