//! Outbound HTTP for guests (the wasi:http outgoing handler): a request goes out only to
//! a destination the operator granted; anything else fails in the guest with
//! `error-code::HTTP-request-denied` and never leaves the host.

use std::sync::Arc;

use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::grants::Grants;

/// One instance's outbound HTTP policy.
pub(crate) struct OutboundHttp {
    grants: Arc<Grants>,
    /// A guest retrying a refused request in a loop gets one log line, not thousands.
    logged_denial: bool,
}

impl OutboundHttp {
    pub(crate) fn new(grants: Arc<Grants>) -> Self {
        OutboundHttp {
            grants,
            logged_denial: false,
        }
    }
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_done: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> SendFuture {
        if !self.grants.permits_http(request.uri()) {
            if !self.logged_denial {
                self.logged_denial = true;
                // Scheme, host and port only: user info, path or query may carry a secret.
                let uri = request.uri();
                tracing::info!(
                    "guest's outbound request to {}://{}{} denied: not granted (--http)",
                    uri.scheme_str().unwrap_or("?"),
                    uri.host().unwrap_or("?"),
                    uri.port().map(|p| format!(":{p}")).unwrap_or_default(),
                );
            }
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = Result<(), Error>> + Send>,
            ))
        })
    }
}
