//! The TOML config of `cmq-host serve --config`: the listener, the limits shared by all
//! routes, and the routes themselves. Checked whole before anything listens; every error
//! names the file, the line and the key.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cmq_message::ExpectedFormat;
use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use crate::access::Token;
use crate::grants::{DirGrant, EnvGrant, Grants, HttpGrant};
use crate::guest::ServeAs;
use crate::options::{ReceiverOptions, RouteOptions, SharedLimits};
use crate::route::RoutePlan;
use crate::units::{ByteSize, DedupeWindow, HumanDuration};

/// The address `serve` listens on unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// A checked config: what to listen on, and the routes to serve.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from, if any (flags make a config without one).
    pub source: Option<PathBuf>,
    /// Where pushes arrive.
    pub listen: SocketAddr,
    /// Where `/metrics`, `/healthz` and `/readyz` are served, if anywhere.
    pub admin_listen: Option<SocketAddr>,
    /// HTTPS certificate chain and key, PEM files.
    pub tls: Option<TlsFiles>,
    /// Connections open at once; beyond it new ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// Source networks allowed to connect; empty allows every address.
    pub allow: Vec<IpNet>,
    /// Limits that hold across routes.
    pub limits: SharedLimits,
    /// The routes, in the order the file lists them.
    pub routes: Vec<RoutePlan>,
    /// Whether a route's component may be a `.cwasm` from `cmq-host compile`: native
    /// code, run as is (default: no, only `.wasm` components).
    pub allow_precompiled: bool,
}

/// A certificate chain and its private key, PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

/// A config that cannot be served, and where: file, line and key when they are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// The line, from 1.
    pub line: Option<usize>,
    /// The key, dotted: `routes.orders.format`.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and checks the config file at `path`. Relative paths in it are relative to
    /// the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
            file: path.to_owned(),
            line: None,
            key: None,
            message: format!("cannot read it: {err}"),
        })?;
        Config::parse(&text, path)
    }

    /// Checks the config `text`, read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let at = |span: Option<std::ops::Range<usize>>, message: String| {
            let (line, key) = match span {
                Some(span) => (Some(line_of(text, span.start)), key_at(text, span.start)),
                None => (None, None),
            };
            ConfigError {
                file: path.to_owned(),
                line,
                key,
                message,
            }
        };
        let raw: RawConfig =
            toml::from_str(text).map_err(|err| at(err.span(), err.message().trim().to_owned()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let base = if base.as_os_str().is_empty() {
            Path::new(".")
        } else {
            base
        };
        let defaults = SharedLimits::default();
        let limits = SharedLimits {
            max_in_flight: raw.max_in_flight.unwrap_or(defaults.max_in_flight),
            max_body: raw
                .max_body
                .map_or(defaults.max_body, |size| size.0.bytes()),
            body_timeout: raw.body_timeout.map_or(defaults.body_timeout, |t| t.0.0),
        };
        let tls = match raw.tls {
            None => None,
            Some(tls) => {
                let file = |spanned: &Spanned<PathBuf>| {
                    let path = base.join(spanned.get_ref());
                    match std::fs::metadata(&path) {
                        Ok(_) => Ok(path),
                        Err(err) => Err(at(
                            Some(spanned.span()),
                            format!("cannot read {}: {err}", path.display()),
                        )),
                    }
                };
                Some(TlsFiles {
                    cert: file(&tls.cert)?,
                    key: file(&tls.key)?,
                })
            }
        };
        if raw.routes.get_ref().is_empty() {
            return Err(at(
                Some(raw.routes.span()),
                "there are no routes: add a [routes.NAME] table".into(),
            ));
        }
        let mut routes: Vec<RoutePlan> = Vec::new();
        let mut paths: Vec<(String, String)> = Vec::new();
        let mut entries: Vec<_> = raw.routes.into_inner().into_iter().collect();
        // In the file's order, so that errors and reports follow it.
        entries.sort_by_key(|(name, _)| name.span().start);
        for (name, route) in entries {
            let name_span = name.span();
            let name = name.into_inner();
            check_route_name(&name).map_err(|message| at(Some(name_span.clone()), message))?;
            let path_span = route.path.span();
            let route_path = route.path.into_inner();
            check_route_path(&route_path)
                .map_err(|message| at(Some(path_span.clone()), message))?;
            if let Some((other, _)) = paths.iter().find(|(_, path)| *path == route_path) {
                return Err(at(
                    Some(path_span),
                    format!("path {route_path:?} is already served by route {other:?}"),
                ));
            }
            paths.push((name.clone(), route_path.clone()));
            let component = base.join(route.component.get_ref());
            if let Err(err) = std::fs::metadata(&component) {
                return Err(at(
                    Some(route.component.span()),
                    format!("cannot read {}: {err}", component.display()),
                ));
            }
            let token = match &route.token_env {
                None => None,
                Some(variable) => Some(
                    read_token(variable.get_ref())
                        .map_err(|message| at(Some(variable.span()), message))?,
                ),
            };
            let defaults = RouteOptions::default();
            let options = RouteOptions {
                format: route.format.map_or(defaults.format, |f| f.0),
                deadline: route.deadline.map_or(defaults.deadline, |d| d.0.0),
                max_memory: route
                    .max_memory
                    .map_or(defaults.max_memory, |size| size.0.bytes()),
                max_in_flight: route.max_in_flight,
                token,
                grants: Grants {
                    env: route.env.into_iter().map(|grant| grant.0).collect(),
                    dir: route.dir.map(|dir| {
                        let DirGrant { host, guest } = dir.0;
                        DirGrant {
                            host: base.join(host),
                            guest,
                        }
                    }),
                    http: route.http.into_iter().map(|grant| grant.0).collect(),
                },
                serve_as: route.serve_as.map_or(defaults.serve_as, |s| s.0),
                dedupe_window: route
                    .dedupe_window
                    .map_or(defaults.dedupe_window, |w| w.0.0),
                max_attempts: route.max_attempts.unwrap_or(defaults.max_attempts),
            };
            routes.push(RoutePlan {
                name,
                path: route_path,
                component,
                options,
            });
        }
        Ok(Config {
            source: Some(path.to_owned()),
            listen: raw.listen.map_or_else(default_listen, |listen| listen.0),
            admin_listen: raw.admin_listen.map(|listen| listen.0),
            tls,
            max_connections: raw
                .max_connections
                .unwrap_or(crate::options::DEFAULT_MAX_CONNECTIONS),
            allow: raw.allow.into_iter().map(|net| net.0).collect(),
            limits,
            routes,
            allow_precompiled: raw.allow_precompiled.unwrap_or(false),
        })
    }

    /// The config of a single component, served on every path: what `serve` makes of
    /// its flags, and [`crate::Receiver::load`] of its options (the store aside).
    pub fn single(component: PathBuf, options: &ReceiverOptions) -> Config {
        Config {
            source: None,
            listen: default_listen(),
            admin_listen: None,
            tls: None,
            max_connections: crate::options::DEFAULT_MAX_CONNECTIONS,
            allow: Vec::new(),
            limits: options.limits,
            routes: vec![RoutePlan {
                name: SINGLE_ROUTE.to_owned(),
                path: "/".to_owned(),
                component,
                options: RouteOptions {
                    // The receiver's cap is the route's.
                    max_in_flight: None,
                    ..options.route.clone()
                },
            }],
            allow_precompiled: options.allow_precompiled,
        }
    }

    /// Refuses routes that take pushes without a token when `listen` (the address
    /// served) reaches other machines and `allow` is empty: with the delivery store,
    /// anyone who reaches the port could have a message id acknowledged, making CMQ's
    /// own message with that id a duplicate.
    pub fn check_authenticated(&self, listen: SocketAddr, allow: &[IpNet]) -> anyhow::Result<()> {
        if listen.ip().is_loopback() || !allow.is_empty() {
            return Ok(());
        }
        let open: Vec<&str> = self
            .routes
            .iter()
            .filter(|route| route.options.token.is_none())
            .map(|route| route.name.as_str())
            .collect();
        anyhow::ensure!(
            open.is_empty(),
            "refusing to serve {listen} to other machines: route {} takes pushes without a \
             token, no --allow list is set, and with the delivery store anyone who reaches \
             the port could have a message id acknowledged, making CMQ's own message with \
             that id a duplicate. Set a token (--token, CMQ_HOST_TOKEN, or token_env in a \
             config), an allowlist (--allow CIDR), or say --allow-unauthenticated",
            open.join(", ")
        );
        Ok(())
    }

    /// The component files the routes load, to watch for changes.
    pub fn component_files(&self) -> Vec<PathBuf> {
        self.routes
            .iter()
            .map(|route| route.component.clone())
            .collect()
    }
}

/// [`DEFAULT_LISTEN`] as an address.
fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN
        .parse()
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080)))
}

/// The name of the one route a single component is served as.
pub const SINGLE_ROUTE: &str = "default";

fn check_route_name(name: &str) -> Result<(), String> {
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if name.is_empty() || name.len() > 64 || !name.chars().all(valid) {
        return Err(format!(
            "route name {name:?}: use 1 to 64 letters, digits, - and _ (it labels logs and metrics)"
        ));
    }
    Ok(())
}

fn check_route_path(path: &str) -> Result<(), String> {
    let valid = |c: char| c.is_ascii_alphanumeric() || "/-._~".contains(c);
    if !path.starts_with('/') {
        return Err(format!("path {path:?} must start with /"));
    }
    if path.len() > 1 && path.ends_with('/') {
        return Err(format!(
            "path {path:?} must not end with / (it serves the paths under it anyway)"
        ));
    }
    if path.contains("//") || !path.chars().all(valid) {
        return Err(format!(
            "path {path:?} may hold only letters, digits and - . _ ~ between single slashes"
        ));
    }
    Ok(())
}

/// The token in the environment variable `variable`; errors never show its value.
fn read_token(variable: &str) -> Result<Token, String> {
    let value = std::env::var(variable).map_err(|_| {
        format!("{variable} is not set in the environment (it holds the route's token)")
    })?;
    value
        .parse()
        .map_err(|reason| format!("{variable} is not a valid token (value not shown): {reason}"))
}

/// The line, from 1, of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The dotted key whose value or header is at byte `offset`: the table header in force
/// there, and the key of the line (or of the nearest line above with one, for a value
/// that spans lines).
fn key_at(text: &str, offset: usize) -> Option<String> {
    let line_number = line_of(text, offset);
    let lines: Vec<&str> = text.lines().collect();
    let header = |line: &str| {
        let line = line.trim();
        line.starts_with('[').then(|| {
            line.trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_owned()
        })
    };
    let table = lines
        .iter()
        .take(line_number.saturating_sub(1))
        .filter_map(|line| header(line))
        .next_back();
    let own_line = lines
        .get(line_number.saturating_sub(1))
        .copied()
        .unwrap_or("");
    if let Some(name) = header(own_line) {
        return Some(name);
    }
    let key = lines
        .iter()
        .take(line_number)
        .rev()
        .take_while(|line| header(line).is_none())
        .find_map(|line| {
            let (key, _) = line.split_once('=')?;
            let key = key.trim().trim_matches('"');
            (!key.is_empty() && !key.starts_with('#')).then(|| key.to_owned())
        });
    match (table, key) {
        (Some(table), Some(key)) => Some(format!("{table}.{key}")),
        (None, Some(key)) => Some(key),
        (table, None) => table,
    }
}

/// A value parsed from a TOML string by its `FromStr`; its error is located at the value.
#[derive(Debug)]
struct Text<T>(T);

impl<'de, T> Deserialize<'de> for Text<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map(Text).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<Text<SocketAddr>>,
    admin_listen: Option<Text<SocketAddr>>,
    max_in_flight: Option<usize>,
    max_connections: Option<usize>,
    max_body: Option<Text<ByteSize>>,
    body_timeout: Option<Text<HumanDuration>>,
    #[serde(default)]
    allow: Vec<Text<IpNet>>,
    tls: Option<RawTls>,
    allow_precompiled: Option<bool>,
    routes: Spanned<BTreeMap<Spanned<String>, RawRoute>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Spanned<PathBuf>,
    key: Spanned<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    path: Spanned<String>,
    component: Spanned<PathBuf>,
    format: Option<Text<ExpectedFormat>>,
    serve_as: Option<Text<ServeAs>>,
    token_env: Option<Spanned<String>>,
    deadline: Option<Text<HumanDuration>>,
    max_memory: Option<Text<ByteSize>>,
    max_in_flight: Option<usize>,
    #[serde(default)]
    env: Vec<Text<EnvGrant>>,
    dir: Option<Text<DirGrant>>,
    #[serde(default)]
    http: Vec<Text<HttpGrant>>,
    dedupe_window: Option<Text<DedupeWindow>>,
    max_attempts: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> ConfigError {
        Config::parse(text, Path::new("cmq.toml")).expect_err("the config is refused")
    }

    #[test]
    fn a_bad_value_is_located_by_line_and_key() {
        let err = error(
            "listen = \"127.0.0.1:0\"\n\n[routes.orders]\npath = \"/orders\"\ncomponent = \"x.wasm\"\nformat = \"xml\"\n",
        );
        assert_eq!(err.line, Some(6), "{err}");
        assert_eq!(err.key.as_deref(), Some("routes.orders.format"), "{err}");
        assert!(
            err.to_string()
                .starts_with("cmq.toml:6: routes.orders.format: "),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_key_and_a_missing_component_are_located() {
        let err = error("[routes.a]\npath = \"/a\"\ncomponent = \"x.wasm\"\nformt = \"json\"\n");
        assert_eq!(
            (err.line, err.key.as_deref()),
            (Some(4), Some("routes.a.formt")),
            "{err}"
        );
        let err = error("[routes.a]\npath = \"/a\"\ncomponent = \"does-not-exist.wasm\"\n");
        assert_eq!(
            (err.line, err.key.as_deref()),
            (Some(3), Some("routes.a.component")),
            "{err}"
        );
    }

    #[test]
    fn route_paths_and_names_are_checked() {
        for (path, why) in [
            ("orders", "start with /"),
            ("/orders/", "not end with /"),
            ("/a b", "may hold only"),
        ] {
            let err = error(&format!(
                "[routes.a]\npath = \"{path}\"\ncomponent = \"x.wasm\"\n"
            ));
            assert!(err.message.contains(why), "{path}: {err}");
            assert_eq!(err.line, Some(2), "{err}");
        }
        let err = error("[routes.\"a b\"]\npath = \"/a\"\ncomponent = \"x.wasm\"\n");
        assert!(err.message.contains("route name"), "{err}");
    }

    #[test]
    fn the_key_of_a_multi_line_array_is_found() {
        let text = "allow = [\n  \"10.0.0.0/8\",\n  \"not-a-cidr\",\n]\n";
        assert_eq!(
            key_at(text, text.find("not-a").expect("in text")).as_deref(),
            Some("allow")
        );
    }
}
