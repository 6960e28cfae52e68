//! The operator's console, on the admin listener under `/console`, behind the admin
//! token. This file routes its requests, logs in and out, and checks every action:
//! its form must carry the session's CSRF token and come from the console's own
//! origin; every login, refusal and action is logged with the session and the peer.
//!
//! - [`session`]: the admin token, sessions and their cookie, CSRF tokens;
//! - [`routes`]: the routes page, from the metrics, and its chart ([`rates`]), kept
//!   current by a stream of its own ([`charts`]);
//! - [`live`]: the live page, decisions as they happen;
//! - [`dead_letters`]: the journal, one entry, replay and purge;
//! - [`form`]: the forms and query strings it reads;
//! - [`page`](mod@page): the HTML and the console's security headers.

mod charts;
mod dead_letter_actions;
mod dead_letters;
mod form;
mod live;
mod page;
mod rates;
mod routes;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Either;
use hyper::body::Incoming;

use crate::receiver::Receiver;
use crate::response::AnswerBody;
use crate::serve::access::Token;

use form::{Form, read_form, url_encode};
use live::EventStream;
use page::{escape, page, redirect, respond, secured};
use session::{Current, Sessions};

/// The body of the console's answers: a whole page, or the live page's stream.
pub(crate) type ConsoleBody = Either<AnswerBody, EventStream>;

/// The console: its sessions.
#[derive(Debug)]
pub(crate) struct Console {
    sessions: Arc<Sessions>,
    last_seen: routes::LastSeen,
    /// The routes page's chart's readings.
    rates: rates::Rates,
    /// The charts after the last reading, for the routes pages that listen.
    charts: charts::Charts,
}

impl Console {
    pub(crate) fn new(token: Token) -> Console {
        Console {
            sessions: Arc::new(Sessions::new(token)),
            last_seen: routes::LastSeen::default(),
            rates: rates::Rates::default(),
            charts: charts::Charts::default(),
        }
    }

    /// Reads `receiver`'s metrics for the routes page's chart every
    /// [`rates::EVERY`], and sends the charts to the routes pages that listen, for as
    /// long as the returned task is not aborted.
    pub(crate) fn read_rates(
        self: Arc<Self>,
        receiver: Arc<Receiver>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut every = tokio::time::interval(rates::EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let text = receiver.metrics_text().await;
                let now = std::time::Instant::now();
                self.rates.read(&routes::samples(&text), now);
                if self.charts.listened() {
                    self.charts
                        .publish(routes::charts(&receiver, &self.rates, now));
                }
            }
        })
    }

    /// Answers a request under `/console`.
    pub(crate) async fn answer(
        &self,
        receiver: &Receiver,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<ConsoleBody> {
        if request.uri().path() == "/console/live/events" && request.method() == Method::GET {
            return self.events(receiver, &request, peer);
        }
        self.answer_whole(receiver, request, peer)
            .await
            .map(Either::Left)
    }

    /// The live page's stream of decisions, for a logged-in session.
    fn events(
        &self,
        receiver: &Receiver,
        request: &Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<ConsoleBody> {
        // A page of another site (another port of this host is the same site, so the
        // cookie goes along) may not open one: it would hold a view's place.
        if fetched_from_elsewhere(request.headers()) {
            tracing::warn!(target: "cmq_host::console", %peer, "console live view refused: opened from another site");
            return forbidden("opened from another site").map(Either::Left);
        }
        let Some(session) = self.sessions.current(request.headers()) else {
            tracing::warn!(target: "cmq_host::console", %peer, "console live view refused: not logged in");
            return forbidden("log in first").map(Either::Left);
        };
        let query = request.uri().query().map(Form::parse).unwrap_or_default();
        if query.first("charts") == Some("1") {
            return self.charts_events(receiver, session, peer);
        }
        let filter = live::Filter::of(&query);
        let Some(watch) = receiver.feed().watch(filter.bodies()) else {
            tracing::warn!(target: "cmq_host::console", session = session.number, %peer, "console live view refused: all its places are taken");
            return respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                format!(
                    "{} live views are open already\n",
                    crate::push::feed::MAX_WATCHERS
                )
                .into(),
            )
            .map(Either::Left);
        };
        tracing::info!(target: "cmq_host::console", session = session.number, %peer, bodies = filter.bodies(), "console live view opened");
        let stream = live::stream(watch, filter, self.sessions.clone(), session, peer);
        secured(StatusCode::OK, "text/event-stream", Either::Right(stream))
    }

    /// The routes page's stream of its charts, for a logged-in session.
    fn charts_events(
        &self,
        receiver: &Receiver,
        session: Current,
        peer: SocketAddr,
    ) -> Response<ConsoleBody> {
        let Some(listening) = self.charts.listen() else {
            tracing::warn!(target: "cmq_host::console", session = session.number, %peer, "console charts view refused: all its places are taken");
            return respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                format!("{} charts views are open already\n", charts::MAX_VIEWS).into(),
            )
            .map(Either::Left);
        };
        tracing::info!(target: "cmq_host::console", session = session.number, %peer, "console charts view opened");
        let closing = receiver.feed().closing();
        let stream = charts::stream(listening, closing, self.sessions.clone(), session, peer);
        secured(StatusCode::OK, "text/event-stream", Either::Right(stream))
    }

    /// Answers a request under `/console` with a whole page.
    async fn answer_whole(
        &self,
        receiver: &Receiver,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<AnswerBody> {
        let path = request.uri().path().to_owned();
        let query = request.uri().query().map(Form::parse).unwrap_or_default();
        let method = request.method().clone();
        if let Some((content_type, text)) = asset(&path) {
            return respond(StatusCode::OK, content_type, text.into());
        }
        if path == "/console/login" {
            return match method {
                Method::POST => self.log_in(request, peer).await,
                _ => login_page(StatusCode::OK, ""),
            };
        }
        let Some(session) = self.sessions.current(request.headers()) else {
            return match method {
                Method::GET | Method::HEAD => redirect("/console/login"),
                _ => {
                    tracing::warn!(target: "cmq_host::console", %peer, "console action refused: not logged in");
                    forbidden("log in first")
                }
            };
        };
        match method {
            Method::POST => {
                self.checked_act(receiver, &session, &path, request, peer)
                    .await
            }
            Method::GET | Method::HEAD => self.view(receiver, &session, &path, &query).await,
            _ => respond(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain; charset=utf-8",
                "GET or POST\n".into(),
            ),
        }
    }

    /// A logged-in session's POST: acted on once its origin and CSRF token check.
    async fn checked_act(
        &self,
        receiver: &Receiver,
        session: &Current,
        path: &str,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<AnswerBody> {
        let headers = request.headers().clone();
        let form = match read_form(request).await {
            Ok(form) => form,
            Err(response) => return response,
        };
        if let Err(why) = same_origin(&headers) {
            tracing::warn!(target: "cmq_host::console", session = session.number, %peer, "console action refused: {why}");
            return forbidden(why);
        }
        if !session.csrf_is(form.first("csrf")) {
            tracing::warn!(target: "cmq_host::console", session = session.number, %peer, "console action refused: no valid CSRF token");
            return forbidden("the form is not this session's");
        }
        self.act(receiver, session, path, &form, peer).await
    }

    /// A logged-in session's page.
    async fn view(
        &self,
        receiver: &Receiver,
        session: &Current,
        path: &str,
        query: &Form,
    ) -> Response<AnswerBody> {
        match path {
            "/console" | "/console/" => redirect("/console/routes"),
            "/console/routes" => page(
                StatusCode::OK,
                "Routes",
                Some(session),
                &routes::body(receiver, &self.last_seen, &self.rates).await,
            ),
            "/console/live" => page(
                StatusCode::OK,
                "Live",
                Some(session),
                &live::body(receiver, &live::Filter::of(query)),
            ),
            "/console/dead-letters" => dead_letters::list(receiver, session, query).await,
            _ => match path
                .strip_prefix("/console/dead-letters/")
                .and_then(|id| id.parse::<i64>().ok())
            {
                Some(id) => dead_letters::entry(receiver, session, id, query).await,
                None => page(StatusCode::NOT_FOUND, "Not found", Some(session), ""),
            },
        }
    }

    async fn log_in(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<AnswerBody> {
        let headers = request.headers().clone();
        let form = match read_form(request).await {
            Ok(form) => form,
            Err(response) => return response,
        };
        if let Err(why) = same_origin(&headers) {
            tracing::warn!(target: "cmq_host::console", %peer, "console login refused: {why}");
            return forbidden(why);
        }
        let given = form.first("token").unwrap_or("");
        match self.sessions.log_in(given) {
            Some((id, number)) => {
                tracing::info!(target: "cmq_host::console", session = number, %peer, "console login");
                let mut response = redirect("/console/routes");
                if let Ok(cookie) = HeaderValue::from_str(&session::set_cookie(&id)) {
                    response.headers_mut().insert(header::SET_COOKIE, cookie);
                }
                response
            }
            None => {
                tracing::warn!(target: "cmq_host::console", %peer, "console login refused: not the admin token");
                login_page(StatusCode::UNAUTHORIZED, "That is not the admin token.")
            }
        }
    }

    /// A checked POST: log out, confirm, replay or purge.
    async fn act(
        &self,
        receiver: &Receiver,
        session: &Current,
        path: &str,
        form: &Form,
        peer: SocketAddr,
    ) -> Response<AnswerBody> {
        if path == "/console/logout" {
            self.sessions.log_out(session);
            tracing::info!(target: "cmq_host::console", session = session.number, %peer, "console logout");
            let mut response = redirect("/console/login");
            if let Ok(cookie) = HeaderValue::from_str(&session::clear_cookie()) {
                response.headers_mut().insert(header::SET_COOKIE, cookie);
            }
            return response;
        }
        match path.strip_prefix("/console/dead-letters/") {
            Some(action) => dead_letter_actions::act(receiver, session, action, form, peer).await,
            None => page(StatusCode::NOT_FOUND, "Not found", Some(session), ""),
        }
    }
}

/// The console's stylesheet and scripts, by path: its content type and text.
fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "/console/style.css" => Some(("text/css; charset=utf-8", page::STYLE)),
        "/console/live.js" => Some(("text/javascript; charset=utf-8", live::SCRIPT)),
        "/console/routes.js" => Some(("text/javascript; charset=utf-8", routes::SCRIPT)),
        _ => None,
    }
}

fn login_page(status: StatusCode, message: &str) -> Response<AnswerBody> {
    page(
        status,
        "Log in",
        None,
        &format!(
            "<p class=\"kept\">{}</p><form method=\"post\" action=\"/console/login\">\
             <label>Admin token <input type=\"password\" name=\"token\" autocomplete=\"current-password\" autofocus></label> \
             <button>Log in</button></form>",
            escape(message)
        ),
    )
}

fn forbidden(why: &str) -> Response<AnswerBody> {
    respond(
        StatusCode::FORBIDDEN,
        "text/plain; charset=utf-8",
        Bytes::from(format!("forbidden: {why}\n")),
    )
}

/// Refuses a POST a browser sent from another origin: its `Sec-Fetch-Site`, when it
/// sends one, must say `same-origin`, and its `Origin` (or, lacking one, `Referer`) must
/// name this host. (The session cookie is `SameSite=Strict` too, which another port
/// of the same host does not stop: a site is a host, whatever its port.)
fn same_origin(headers: &HeaderMap) -> Result<(), &'static str> {
    const FROM_ELSEWHERE: &str = "the form came from another site";
    if fetched_from_elsewhere(headers) {
        return Err(FROM_ELSEWHERE);
    }
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .ok_or("no Host header")?;
    let from = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|value| value.to_str().ok());
    match from {
        // A client that is not a browser (curl) sends neither.
        None => Ok(()),
        Some(from) => {
            let authority = from
                .strip_prefix("http://")
                .or_else(|| from.strip_prefix("https://"))
                .map(|rest| rest.split('/').next().unwrap_or(""));
            if authority == Some(host) {
                Ok(())
            } else {
                Err(FROM_ELSEWHERE)
            }
        }
    }
}

/// Whether the browser says the request comes from a page of another origin
/// (`Sec-Fetch-Site`, which clients that are not browsers do not send; `none` is the
/// person's own doing: an address typed, a bookmark).
fn fetched_from_elsewhere(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .is_some_and(|site| !matches!(site.as_bytes(), b"same-origin" | b"none"))
}
