//! Who may use the console: whoever logs in with the admin token. A login opens a
//! session, known by a random id in an `HttpOnly`, `SameSite=Strict` cookie scoped to
//! `/console` (the token itself never leaves the login form: not in a URL, a cookie or
//! a log line), with its own random CSRF token that every action's form must carry.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::HeaderMap;
use http::header::COOKIE;
use subtle::ConstantTimeEq as _;

use crate::serve::access::Token;

/// The session cookie's name.
pub(crate) const COOKIE_NAME: &str = "cmq_console";

/// How long a session lasts after its login.
const LIFETIME: Duration = Duration::from_secs(8 * 60 * 60);

/// Sessions open at once; a login beyond it closes the oldest.
const MAX_SESSIONS: usize = 32;

/// The console's admin token and its open sessions.
#[derive(Debug)]
pub(crate) struct Sessions {
    token: Token,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    sessions: Vec<Session>,
    /// The number the next login gets: how the log tells sessions apart.
    next: u64,
}

#[derive(Debug, Clone)]
struct Session {
    id: String,
    csrf: String,
    number: u64,
    expires: Instant,
}

/// A logged-in request's session, as pages and actions need it.
#[derive(Debug, Clone)]
pub(crate) struct Current {
    /// Its number, for the log: `console session 3`.
    pub(crate) number: u64,
    /// The token its forms carry.
    pub(crate) csrf: String,
    id: String,
}

impl Sessions {
    pub(crate) fn new(token: Token) -> Sessions {
        Sessions {
            token,
            open: Mutex::new(Open::default()),
        }
    }

    /// A new session when `given` is the admin token (compared in constant time): its
    /// cookie's value and its number.
    pub(crate) fn log_in(&self, given: &str) -> Option<(String, u64)> {
        if !self.token.is(given) {
            return None;
        }
        let mut open = self.lock();
        let now = Instant::now();
        open.sessions.retain(|session| session.expires > now);
        if open.sessions.len() >= MAX_SESSIONS {
            open.sessions.remove(0);
        }
        open.next += 1;
        let session = Session {
            id: random_hex(),
            csrf: random_hex(),
            number: open.next,
            expires: now + LIFETIME,
        };
        let opened = (session.id.clone(), session.number);
        open.sessions.push(session);
        Some(opened)
    }

    /// The session a request's cookie names, if it is open.
    pub(crate) fn current(&self, headers: &HeaderMap) -> Option<Current> {
        let id = cookie(headers)?;
        let open = self.lock();
        let now = Instant::now();
        open.sessions
            .iter()
            .find(|session| session.expires > now && same(&session.id, id))
            .map(|session| Current {
                number: session.number,
                csrf: session.csrf.clone(),
                id: session.id.clone(),
            })
    }

    /// Whether `current` is still open: not logged out, expired or closed for a newer one.
    pub(crate) fn is_open(&self, current: &Current) -> bool {
        let now = Instant::now();
        self.lock()
            .sessions
            .iter()
            .any(|session| session.expires > now && session.id == current.id)
    }

    /// Closes `current`.
    pub(crate) fn log_out(&self, current: &Current) {
        self.lock()
            .sessions
            .retain(|session| session.id != current.id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Current {
    /// Whether `given` is this session's CSRF token (in constant time).
    pub(crate) fn csrf_is(&self, given: Option<&str>) -> bool {
        given.is_some_and(|given| same(&self.csrf, given))
    }
}

/// The `Set-Cookie` value that opens session `id`.
pub(crate) fn set_cookie(id: &str) -> String {
    format!("{COOKIE_NAME}={id}; Path=/console; HttpOnly; SameSite=Strict")
}

/// The `Set-Cookie` value that ends it.
pub(crate) fn clear_cookie() -> String {
    format!("{COOKIE_NAME}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The session id in the request's cookies.
fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE_NAME)?.strip_prefix('='))
}

fn same(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// 32 random bytes, in hex.
fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    // The operating system's generator; without it no session can be safe.
    getrandom::fill(&mut bytes).expect("the operating system's random generator");
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions() -> Sessions {
        Sessions::new("console-token-0123456789".parse().expect("a token"))
    }

    fn with_cookie(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, value.parse().expect("a header value"));
        headers
    }

    #[test]
    fn only_the_token_opens_a_session_and_only_its_cookie_finds_it() {
        let sessions = sessions();
        assert!(sessions.log_in("console-token-012345678").is_none());
        assert!(sessions.log_in("").is_none());
        let (id, number) = sessions
            .log_in("console-token-0123456789")
            .expect("logged in");
        assert_eq!(number, 1);
        let current = sessions
            .current(&with_cookie(&format!("a=b; {COOKIE_NAME}={id}")))
            .expect("the session");
        assert!(current.csrf_is(Some(&current.csrf.clone())));
        assert!(!current.csrf_is(Some("forged")));
        assert!(!current.csrf_is(None));
        assert!(
            sessions
                .current(&with_cookie(&format!("{COOKIE_NAME}=x{id}")))
                .is_none()
        );
        assert!(sessions.current(&HeaderMap::new()).is_none());
        sessions.log_out(&current);
        assert!(
            sessions
                .current(&with_cookie(&format!("{COOKIE_NAME}={id}")))
                .is_none()
        );
    }

    #[test]
    fn sessions_are_bounded_the_oldest_closed_first() {
        let sessions = sessions();
        let first = sessions.log_in("console-token-0123456789").expect("in").0;
        for _ in 0..MAX_SESSIONS {
            sessions.log_in("console-token-0123456789").expect("in");
        }
        assert!(
            sessions
                .current(&with_cookie(&format!("{COOKIE_NAME}={first}")))
                .is_none()
        );
        assert_eq!(sessions.lock().sessions.len(), MAX_SESSIONS);
    }
}
