//! The console's actions on dead letters: replay (through the route's current
//! component, removed once acknowledged) or purge a selection, each confirmed first
//! and logged.

use std::net::SocketAddr;

use http::{Response, StatusCode};

use crate::receiver::Receiver;
use crate::response::AnswerBody;
use crate::store::Store;

use super::Form;
use super::page::{csrf_field, escape, page};
use super::session::Current;

/// A checked POST to `/console/dead-letters/{action}`: asks for confirmation, then
/// replays or purges the selected entries.
pub(super) async fn act(
    receiver: &Receiver,
    session: &Current,
    action: &str,
    form: &Form,
    peer: SocketAddr,
) -> Response<AnswerBody> {
    let ids: Vec<i64> = form.all("id").filter_map(|id| id.parse().ok()).collect();
    let Some(action) = Action::from_path(action) else {
        return page(StatusCode::NOT_FOUND, "Not found", Some(session), "");
    };
    if ids.is_empty() {
        return page(
            StatusCode::BAD_REQUEST,
            "Nothing selected",
            Some(session),
            "<p><a href=\"/console/dead-letters\">Back to the journal</a></p>",
        );
    }
    if form.first("confirmed").is_none() {
        return confirm(session, action, &ids);
    }
    let Some(store) = receiver.store() else {
        return page(StatusCode::NOT_FOUND, "No store", Some(session), "");
    };
    tracing::info!(
        target: "cmq_host::console",
        session = session.number,
        %peer,
        action = action.name(),
        ids = ?ids,
        "console action"
    );
    let mut rows = String::new();
    for &id in &ids {
        rows.push_str(&done(receiver, store, session, peer, action, id).await);
    }
    page(
        StatusCode::OK,
        action.done_title(),
        Some(session),
        &format!(
            "<table><tr><th>Entry</th><th>Outcome</th></tr>{rows}</table>\
             <p><a href=\"/console/dead-letters\">Back to the journal</a></p>"
        ),
    )
}

/// Does `action` to entry `id`, logs it, and returns its row of the outcome's table.
async fn done(
    receiver: &Receiver,
    store: &Store,
    session: &Current,
    peer: SocketAddr,
    action: Action,
    id: i64,
) -> String {
    let outcome = action.on(receiver, store, id).await;
    tracing::info!(
        target: "cmq_host::console",
        session = session.number,
        %peer,
        action = action.name(),
        id,
        outcome = match &outcome { Ok(done) => done.as_str(), Err(why) => why.as_str() },
        "console action done"
    );
    let (class, text) = match &outcome {
        Ok(done) => ("ok", done.clone()),
        Err(why) => ("kept", format!("{why}; kept")),
    };
    format!(
        "<tr><td>{id}</td><td class=\"{class}\">{}</td></tr>",
        escape(&text)
    )
}

/// What a form asks of the selected entries.
#[derive(Debug, Clone, Copy)]
enum Action {
    Replay,
    Purge,
}

impl Action {
    /// Does this to entry `id`: what was done, or why the entry is kept.
    async fn on(self, receiver: &Receiver, store: &Store, id: i64) -> Result<String, String> {
        match self {
            Action::Purge => match store.remove_dead_letters(Some(vec![id])).await {
                Ok(1) => Ok("removed".to_owned()),
                Ok(_) => Err("no such entry".to_owned()),
                Err(err) => Err(err.to_string()),
            },
            Action::Replay => replay(receiver, id).await,
        }
    }

    fn from_path(rest: &str) -> Option<Action> {
        match rest {
            "replay" => Some(Action::Replay),
            "purge" => Some(Action::Purge),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Action::Replay => "replay",
            Action::Purge => "purge",
        }
    }

    fn done_title(self) -> &'static str {
        match self {
            Action::Replay => "Replayed",
            Action::Purge => "Purged",
        }
    }
}

/// Replays entry `id` through its route's current guest; removes it once acknowledged.
async fn replay(receiver: &Receiver, id: i64) -> Result<String, String> {
    let store = receiver.store().ok_or("no store")?;
    let entry = store
        .dead_letter(id)
        .await
        .map_err(|err| err.to_string())?
        .ok_or("no such entry")?;
    receiver.replay(&entry).await?;
    match store.remove_dead_letters(Some(vec![id])).await {
        Ok(_) => Ok("acknowledged, removed".to_owned()),
        Err(err) => Err(format!("acknowledged, but not removed: {err}")),
    }
}

/// The confirmation of `action` on `ids`: the same form again, confirmed.
fn confirm(session: &Current, action: Action, ids: &[i64]) -> Response<AnswerBody> {
    let hidden: String = ids
        .iter()
        .map(|id| format!("<input type=\"hidden\" name=\"id\" value=\"{id}\">"))
        .collect();
    let listed = ids
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let what = match action {
        Action::Replay => {
            "Run these entries again through their route's current component? \
                           Each one the component acknowledges leaves the journal."
        }
        Action::Purge => "Remove these entries from the journal? They are gone for good.",
    };
    page(
        StatusCode::OK,
        &format!(
            "{} {} entr{}?",
            capitalized(action.name()),
            ids.len(),
            if ids.len() == 1 { "y" } else { "ies" }
        ),
        Some(session),
        &format!(
            "<p>{what}</p><p>Entries: {listed}</p>\
             <form method=\"post\" action=\"/console/dead-letters/{action}\">{csrf}{hidden}\
             <input type=\"hidden\" name=\"confirmed\" value=\"yes\">\
             <button class=\"danger\">Yes, {action}</button> \
             <a href=\"/console/dead-letters\">Cancel</a></form>",
            action = action.name(),
            csrf = csrf_field(session),
        ),
    )
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_ascii_uppercase().to_string() + chars.as_str()
    })
}
