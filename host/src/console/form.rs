//! The console's forms and query strings: a form body read within its limit, and its
//! fields by name.

use std::collections::HashMap;

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;

use crate::response::AnswerBody;

use super::page::respond;

/// The largest form the console reads.
const MAX_FORM: usize = 64 << 10;

/// A form body (`application/x-www-form-urlencoded`, at most [`MAX_FORM`] bytes).
pub(super) async fn read_form(request: Request<Incoming>) -> Result<Form, Response<AnswerBody>> {
    let body = Limited::new(request.into_body(), MAX_FORM)
        .collect()
        .await
        .map_err(|_| {
            respond(
                StatusCode::PAYLOAD_TOO_LARGE,
                "text/plain; charset=utf-8",
                "form too large\n".into(),
            )
        })?
        .to_bytes();
    let text = std::str::from_utf8(&body).map_err(|_| {
        respond(
            StatusCode::BAD_REQUEST,
            "text/plain; charset=utf-8",
            "form not UTF-8\n".into(),
        )
    })?;
    Ok(Form::parse(text))
}

/// The fields of a form or a query string, each name with its values in order.
#[derive(Debug, Default)]
pub(crate) struct Form(HashMap<String, Vec<String>>);

impl Form {
    pub(super) fn parse(text: &str) -> Form {
        let mut fields: HashMap<String, Vec<String>> = HashMap::new();
        for (name, value) in form_urlencoded::parse(text.as_bytes()) {
            fields
                .entry(name.into_owned())
                .or_default()
                .push(value.into_owned());
        }
        Form(fields)
    }

    /// The first value of `name`, if it has one.
    pub(crate) fn first(&self, name: &str) -> Option<&str> {
        self.0.get(name)?.first().map(String::as_str)
    }

    /// Every value of `name`, in order.
    pub(crate) fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.0.get(name).into_iter().flatten().map(String::as_str)
    }
}

pub(super) fn url_encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
