//! The wasi-http entrance of a Python or JavaScript handler. `cargo xtask guests`
//! composes it with each such handler into one component that exports both
//! `cmq:push/handler` (the handler's own, for `cmq-host`) and
//! `wasi:http/incoming-handler` (this one's, for Spin and `wasmtime serve`), so that a
//! handler in any of the three languages runs on every platform a Rust one does.
//!
//! The push is checked, parsed and answered by the Rust SDK's own entrance
//! (`CMQ_TOKEN`, `CMQ_FORMAT`, the same answers as `cmq-host`'s); the decision comes
//! from the imported handler.

mod bindings {
    wit_bindgen::generate!({
        path: "../sdk/wit",
        world: "entrance",
    });
}

use bindings::cmq::push::handler as imported;
use cmq_guest::{Decision, Format, Handler, Message, Result};

/// The handler this entrance is composed with, as the SDK's entrance calls a handler.
struct Composed;

impl Handler for Composed {
    fn handle(message: Message) -> Result<Decision> {
        let message = imported::Message {
            message_id: message.message_id,
            request_id: message.request_id,
            tags: message.tags,
            topic_owner: message.topic_owner,
            topic_name: message.topic_name,
            subscription_name: message.subscription_name,
            publish_time: message.publish_time,
            body: message.body,
            format: match message.format {
                Format::Json => imported::Format::Json,
                Format::Simplified => imported::Format::Simplified,
            },
            attempt: message.attempt,
        };
        Ok(match imported::handle(&message) {
            imported::Decision::Ack => Decision::Ack,
            imported::Decision::Retry(reason) => Decision::Retry(reason),
            imported::Decision::Drop(reason) => Decision::Drop(reason),
        })
    }
}

type ComposedHttp = cmq_guest::__HttpExport<Composed>;
cmq_guest::__wasip2::http::proxy::export!(ComposedHttp with_types_in cmq_guest::__wasip2);
