//! The console's dead-letter pages: the journal, a page at a time and filtered, and
//! one entry whole (the actions on a selection are [`super::dead_letter_actions`]).

use std::time::{Duration, SystemTime};

use http::{Response, StatusCode};

use crate::receiver::Receiver;
use crate::response::AnswerBody;
use crate::store::{DeadLetter, JournalQuery, ListedDeadLetter, RouteCount, Store, StoreError};

use super::page::{csrf_field, escape, page};
use super::session::Current;
use super::{Form, url_encode};

/// Entries a page of the journal shows.
const PAGE_SIZE: u32 = 50;

/// The journal, newest first, filtered by route, reason text and age, a page at a time.
pub(super) async fn list(
    receiver: &Receiver,
    session: &Current,
    query: &Form,
) -> Response<AnswerBody> {
    let Some(store) = receiver.store() else {
        return page(
            StatusCode::OK,
            "Dead letters",
            Some(session),
            "<p>This host keeps no store (<code>--no-state</code>): nothing is journaled.</p>",
        );
    };
    let filter = Filter::of(query);
    let (counts, entries, matching, page_number) = match read_page(store, &filter).await {
        Ok(read) => read,
        Err(err) => {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Dead letters",
                Some(session),
                &format!(
                    "<p>The store could not be read: {}</p>",
                    escape(&err.to_string())
                ),
            );
        }
    };
    let total: u64 = counts.iter().map(|count| count.entries).sum();
    let mut routes: Vec<String> = counts.into_iter().filter_map(|count| count.route).collect();
    routes.sort();
    let pages = matching.div_ceil(u64::from(PAGE_SIZE)).max(1);
    let body = format!(
        "{form}<p class=\"note\">{matching} of {total} entries.</p>\
         <form method=\"post\" action=\"/console/dead-letters/replay\">{csrf}\
         <table class=\"cards\"><thead><tr><th></th><th>Entry</th><th>Journaled (UTC)</th><th>Route</th>\
         <th>Message id</th><th>Attempts</th><th>Reason</th></tr></thead>{rows}</table>\
         <p><button>Replay selected</button> <button class=\"danger\" formaction=\"/console/dead-letters/purge\">Purge selected</button></p></form>{pager}",
        form = filter.form(&routes),
        rows = entries.iter().map(row).collect::<String>(),
        csrf = csrf_field(session),
        pager = filter.pager(page_number, pages),
    );
    page(StatusCode::OK, "Dead letters", Some(session), &body)
}

/// The journal page a query asks for: its filter, as given, and its page number.
struct Filter<'a> {
    route: &'a str,
    reason: &'a str,
    within: &'a str,
    page: u64,
}

impl<'a> Filter<'a> {
    fn of(query: &'a Form) -> Self {
        let first = |name: &str| query.first(name).unwrap_or("");
        Filter {
            route: first("route"),
            reason: first("reason"),
            within: first("within"),
            page: first("page").parse::<u64>().unwrap_or(1).max(1),
        }
    }

    fn query(&self) -> JournalQuery {
        let within = match self.within {
            "1h" => Some(Duration::from_secs(3600)),
            "1d" => Some(Duration::from_secs(86_400)),
            "7d" => Some(Duration::from_secs(7 * 86_400)),
            _ => None,
        };
        JournalQuery {
            route: Some(self.route.to_owned()).filter(|route| !route.is_empty()),
            reason: Some(self.reason.to_owned()).filter(|reason| !reason.is_empty()),
            since: within.and_then(|within| SystemTime::now().checked_sub(within)),
            limit: PAGE_SIZE,
            offset: (self.page - 1).saturating_mul(u64::from(PAGE_SIZE)),
        }
    }

    /// The filter's form, showing the filter.
    fn form(&self, routes: &[String]) -> String {
        let selected = |yes: bool| if yes { " selected" } else { "" };
        let routes: String = routes
            .iter()
            .map(|name| {
                format!(
                    "<option value=\"{n}\"{s}>{n}</option>",
                    n = escape(name),
                    s = selected(name == self.route)
                )
            })
            .collect();
        let within: String = ["1h", "1d", "7d"]
            .iter()
            .map(|w| {
                format!(
                    "<option value=\"{w}\"{s}>last {w}</option>",
                    s = selected(*w == self.within)
                )
            })
            .collect();
        format!(
            "<form class=\"filter\" method=\"get\"><select name=\"route\"><option value=\"\">every route</option>{routes}</select>\
             <input name=\"reason\" placeholder=\"reason contains\" value=\"{reason}\">\
             <select name=\"within\"><option value=\"\">any time</option>{within}</select><button>Filter</button></form>",
            reason = escape(self.reason),
        )
    }

    /// Links to the newer and older pages under the same filter, when there are pages.
    fn pager(&self, page_number: u64, pages: u64) -> String {
        if pages <= 1 {
            return String::new();
        }
        let filter_query = format!(
            "route={}&reason={}&within={}",
            escape(&url_encode(self.route)),
            escape(&url_encode(self.reason)),
            escape(&url_encode(self.within))
        );
        let link = |n: u64, text: &str| {
            format!("<a href=\"/console/dead-letters?{filter_query}&amp;page={n}\">{text}</a>")
        };
        format!(
            "<p>Page {page_number} of {pages} {} {}</p>",
            if page_number > 1 {
                link(page_number - 1, "newer")
            } else {
                String::new()
            },
            if page_number < pages {
                link(page_number + 1, "older")
            } else {
                String::new()
            },
        )
    }
}

/// The journal's counts by route, the entries of the page `filter` asks for (the last
/// page when it asks past it: the journal shrank since the link was made), how many
/// entries match, and that page's number.
async fn read_page(
    store: &Store,
    filter: &Filter<'_>,
) -> Result<(Vec<RouteCount>, Vec<ListedDeadLetter>, u64, u64), StoreError> {
    let journal_query = filter.query();
    let counts = store.dead_letter_counts().await?;
    let (mut entries, mut matching) = store.journal_page(journal_query.clone()).await?;
    let last = matching.div_ceil(u64::from(PAGE_SIZE)).max(1);
    let page_number = filter.page.min(last);
    if entries.is_empty() && matching > 0 {
        let query = JournalQuery {
            offset: (last - 1) * u64::from(PAGE_SIZE),
            ..journal_query
        };
        (entries, matching) = store.journal_page(query).await?;
    }
    Ok((counts, entries, matching, page_number))
}

/// One entry's row in the journal's table.
fn row(entry: &ListedDeadLetter) -> String {
    format!(
        "<tr><td><input type=\"checkbox\" name=\"id\" value=\"{id}\" aria-label=\"select {id}\"></td>\
         <td data-label=\"Entry\"><a href=\"/console/dead-letters/{id}\">{id}</a></td><td data-label=\"Journaled\">{at}</td>\
         <td data-label=\"Route\">{route}</td><td data-label=\"Message id\">{message}</td>\
         <td data-label=\"Attempts\">{attempts}</td><td class=\"reason\" data-label=\"Reason\">{reason}</td></tr>",
        id = entry.id,
        at = humantime::format_rfc3339_seconds(entry.created),
        route = escape(entry.route.as_deref().unwrap_or("-")),
        message = escape(&entry.message_id),
        attempts = entry.attempts,
        reason = escape(&entry.reason),
    )
}

/// One entry whole: its headers, tags, attempts, reason and body, as text, JSON or hex.
pub(super) async fn entry(
    receiver: &Receiver,
    session: &Current,
    id: i64,
    query: &Form,
) -> Response<AnswerBody> {
    let found = match receiver.store() {
        Some(store) => store.dead_letter(id).await.map_err(|err| err.to_string()),
        None => Ok(None),
    };
    let entry = match found {
        Ok(Some(entry)) => entry,
        Ok(None) => {
            return page(
                StatusCode::NOT_FOUND,
                "No such entry",
                Some(session),
                "<p><a href=\"/console/dead-letters\">Back to the journal</a></p>",
            );
        }
        Err(err) => {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Dead letter",
                Some(session),
                &format!("<p>{}</p>", escape(&err)),
            );
        }
    };
    let (views, body) = body_views(&entry.body, id, query.first("view"));
    let body_html = format!(
        "{fields}<h2>Body ({bytes} bytes)</h2><p>{views}</p><pre>{body}</pre>\
         <form method=\"post\" action=\"/console/dead-letters/replay\">{csrf}\
         <input type=\"hidden\" name=\"id\" value=\"{id}\">\
         <button>Replay</button> <button class=\"danger\" formaction=\"/console/dead-letters/purge\">Purge</button></form>",
        fields = fields(&entry),
        bytes = entry.body.len(),
        body = escape(&body),
        csrf = csrf_field(session),
    );
    page(
        StatusCode::OK,
        &format!("Dead letter {id}"),
        Some(session),
        &body_html,
    )
}

/// An entry's body as `view` asks (`json`, `text` or `hex`; by default JSON when it
/// parses, else text when it is UTF-8, else hex), and the links to the other views.
fn body_views(bytes: &[u8], id: i64, view: Option<&str>) -> (String, String) {
    let text = std::str::from_utf8(bytes).ok();
    let json = text
        .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
        .and_then(|value| serde_json::to_string_pretty(&value).ok());
    let (shown, body) = match (view, &json, text) {
        (Some("hex"), _, _) | (_, None, None) => ("hex", hex(bytes)),
        (Some("text"), _, Some(text)) | (None, None, Some(text)) => ("text", text.to_owned()),
        (_, Some(json), _) => ("json", json.clone()),
        (_, None, Some(text)) => ("text", text.to_owned()),
    };
    let views: String = [
        ("json", json.is_some()),
        ("text", text.is_some()),
        ("hex", true),
    ]
    .into_iter()
    .filter(|(_, available)| *available)
    .map(|(name, _)| {
        if name == shown {
            format!("<strong>{name}</strong>")
        } else {
            format!("<a href=\"/console/dead-letters/{id}?view={name}\">{name}</a>")
        }
    })
    .collect::<Vec<_>>()
    .join(" · ");
    (views, body)
}

/// An entry's fields, as a table.
fn fields(entry: &DeadLetter) -> String {
    let field =
        |name: &str, value: &str| format!("<tr><th>{name}</th><td>{}</td></tr>", escape(value));
    [
        field("Message id", &entry.message_id),
        field("Route", entry.route.as_deref().unwrap_or("-")),
        field(
            "Journaled (UTC)",
            &humantime::format_rfc3339_seconds(entry.created).to_string(),
        ),
        field("Attempts", &entry.attempts.to_string()),
        field("Reason", &entry.reason),
        field("Format", entry.format.name()),
        field(
            "x-cmq-request-id",
            entry.request_id.as_deref().unwrap_or("-"),
        ),
        field(
            "x-cmq-message-tag",
            entry.message_tag.as_deref().unwrap_or("-"),
        ),
    ]
    .into_iter()
    .fold("<table>".to_owned(), |table, row| table + &row)
        + "</table>"
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .map(|line| {
            line.iter()
                .map(|byte| format!("{byte:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}
