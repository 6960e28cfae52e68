//! The console's HTML: server-rendered pages with one embedded stylesheet (and the live
//! page's one script), nothing loaded from elsewhere; every text from a store or a
//! guest escaped.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use crate::response::AnswerBody;

use super::session::Current;

/// The stylesheet, served at `/console/style.css`.
pub(crate) const STYLE: &str = "\
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1b1b1b;background:#fafafa}
header{background:#22313f;color:#fff;padding:.6em 1em;display:flex;gap:1em;align-items:center;flex-wrap:wrap}
header a{color:#fff}header form{margin-left:auto}
main{padding:1em;max-width:72em}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border-bottom:1px solid #ddd;padding:.35em .5em;text-align:left;vertical-align:top;overflow-wrap:anywhere}
td.reason{max-width:28em;overflow-wrap:anywhere}
pre{background:#fff;border:1px solid #ddd;padding:.6em;overflow:auto;white-space:pre-wrap;overflow-wrap:anywhere}
form.filter{display:flex;gap:.5em;flex-wrap:wrap;margin-bottom:1em}
input,select,button{font:inherit;padding:.3em .5em}
button.danger{background:#a4262c;color:#fff;border:0}
.note{color:#555}.ok{color:#106b21}.kept{color:#a4262c}
figure.chart{margin:0 0 .4em}figure.chart svg{display:block;width:100%;max-width:24em;height:auto;background:#fff;border:1px solid #ddd}
figure.chart polyline{stroke-width:1.5}figcaption{font-size:.85em;color:#555}
.ack{stroke:#106b21;color:#106b21}.retry{stroke:#b35c00;color:#b35c00}.drop{stroke:#6a1b9a;color:#6a1b9a}
.fault{stroke:#a4262c;color:#a4262c}.p99{stroke:#1f4e9c;color:#1f4e9c}
td.charts{min-width:16em}
@media (max-width:40em){table.cards thead{display:none}
table.cards,table.cards tbody,table.cards tr,table.cards td{display:block}
table.cards tr{border-bottom:1px solid #ddd;padding:.3em 0}
table.cards td{border:0;padding:.1em .5em}
table.cards td[data-label]::before{content:attr(data-label) \": \";font-weight:600}}
";

/// Escapes `text` for HTML text and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// A whole page: the header (with a log-out button for `session`) and `body`.
pub(crate) fn page(
    status: StatusCode,
    title: &str,
    session: Option<&Current>,
    body: &str,
) -> Response<AnswerBody> {
    let nav = match session {
        Some(session) => format!(
            "<a href=\"/console/routes\">Routes</a><a href=\"/console/live\">Live</a>\
             <a href=\"/console/dead-letters\">Dead letters</a>\
             <form method=\"post\" action=\"/console/logout\">{}\
             <button>Log out</button></form>",
            csrf_field(session)
        ),
        None => String::new(),
    };
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title} · cmq-host</title><link rel=\"stylesheet\" href=\"/console/style.css\">\
         </head><body><header><strong>cmq-host</strong>{nav}</header><main>\
         <h1>{title}</h1>{body}</main></body></html>",
        title = escape(title),
    );
    respond(status, "text/html; charset=utf-8", html.into())
}

/// The hidden field every action's form carries.
pub(crate) fn csrf_field(session: &Current) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(&session.csrf)
    )
}

/// A `303 See Other` to `location`.
pub(crate) fn redirect(location: &str) -> Response<AnswerBody> {
    let mut response = respond(
        StatusCode::SEE_OTHER,
        "text/plain; charset=utf-8",
        Bytes::new(),
    );
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// A whole response with the console's security headers.
pub(crate) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<AnswerBody> {
    secured(status, content_type, Full::new(body))
}

/// A response with the console's security headers: no caching, no framing, no
/// referrer to other sites, nothing loaded from elsewhere, scripts and connections to this host only.
pub(crate) fn secured<B>(status: StatusCode, content_type: &'static str, body: B) -> Response<B> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; \
             connect-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        // Not `no-referrer`: under it a browser sends `Origin: null` with the console's
        // own forms, and those are refused as from elsewhere.
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_text_is_escaped() {
        assert_eq!(
            escape("<script>alert('x' & \"y\")</script>"),
            "&lt;script&gt;alert(&#39;x&#39; &amp; &quot;y&quot;)&lt;/script&gt;"
        );
    }
}
