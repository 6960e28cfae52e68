//! The trait a handler implements, and the `export!` line that makes a crate a
//! `cmq:push/handler` component.

use std::marker::PhantomData;

use crate::bindings::exports::cmq::push::handler as wit;
use crate::error::decided;
use crate::{Decision, Message, Result};

/// A CMQ push handler: decides what to do with one message.
///
/// The host instantiates the component afresh for every message, so state kept in
/// statics does not survive from one message to the next.
pub trait Handler {
    /// Decide what to do with `message`. An `Err` is a [`Decision::Retry`] with the
    /// error's text (so `?` works); ack and drop are always said outright. A panic
    /// traps the instance; the host then treats the push as failed and CMQ redelivers
    /// it.
    fn handle(message: Message) -> Result<Decision>;
}

/// Makes this crate's component export `cmq:push/handler@0.2.0` (for `cmq-host`) and
/// `wasi:http/incoming-handler` (for Spin, `wasmtime serve` and other wasi-http
/// platforms), both served by the given [`Handler`] type. Write it once, at the top
/// level of a `cdylib` crate:
///
/// ```
/// struct Ack;
///
/// impl cmq_guest::Handler for Ack {
///     fn handle(_: cmq_guest::Message) -> cmq_guest::Result<cmq_guest::Decision> {
///         Ok(cmq_guest::Decision::Ack)
///     }
/// }
///
/// cmq_guest::export!(Ack);
/// ```
#[macro_export]
macro_rules! export {
    ($handler:ty) => {
        const _: () = {
            // The generated export macro takes a type name, not a path with generics.
            type CmqGuestExport = $crate::__Export<$handler>;
            $crate::bindings::export_push_handler!(
                CmqGuestExport with_types_in $crate::bindings
            );
            type CmqGuestHttpExport = $crate::__HttpExport<$handler>;
            $crate::__wasip2::http::proxy::export!(
                CmqGuestHttpExport with_types_in $crate::__wasip2
            );
        };
    };
}

/// Adapts a [`Handler`] to the generated `Guest` trait, converting the message and
/// the decision. Public only for [`export!`]; not part of the API.
#[doc(hidden)]
#[derive(Debug)]
pub struct Export<H>(PhantomData<H>);

impl<H: Handler> wit::Guest for Export<H> {
    fn handle(msg: wit::Message) -> wit::Decision {
        decided(H::handle(crate::message::from_wit(msg))).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct ByTag;

    impl Handler for ByTag {
        fn handle(message: Message) -> Result<Decision> {
            if message.has_tag("fail") {
                return Err(crate::Error::msg("failed"));
            }
            Ok(if message.has_tag("retry") {
                Decision::retry(message.message_id)
            } else {
                Decision::Ack
            })
        }
    }

    // `export!` itself is exercised by the doctest above and the example guests:
    // expanded inside this crate, its generated `unsafe` would trip our
    // `unsafe_code = "forbid"`, which (rightly) spares macros from other crates.

    #[test]
    fn export_routes_through_the_handler() {
        let msg = |tags: Vec<String>| wit::Message {
            message_id: "m1".into(),
            request_id: None,
            tags,
            topic_owner: None,
            topic_name: None,
            subscription_name: None,
            publish_time: None,
            body: Vec::new(),
            format: wit::Format::Simplified,
            attempt: None,
        };
        let retry = <Export<ByTag> as wit::Guest>::handle(msg(vec!["retry".into()]));
        assert!(matches!(retry, wit::Decision::Retry(r) if r == "m1"));
        let ack = <Export<ByTag> as wit::Guest>::handle(msg(Vec::new()));
        assert!(matches!(ack, wit::Decision::Ack));
        let failed = <Export<ByTag> as wit::Guest>::handle(msg(vec!["fail".into()]));
        assert!(matches!(failed, wit::Decision::Retry(r) if r == "failed"));
    }
}
