//! The TOML file of `serve --config`, read into a [`Config`]: every value checked, and
//! every error pointing at the file, the line and the key.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::position::{column_of, key_at, line_of};
use super::raw::{OneOrMore, RawConfig, RawRoute, RawSetting, Text};
use super::{Config, ConfigError, TlsFiles, default_listen};
use crate::options::{DEFAULT_MAX_CONNECTIONS, RouteOptions, SharedLimits};
use crate::route::RoutePlan;
use crate::sandbox::config_vars::{ConfigVar, check_name};
use crate::sandbox::grants::{DirGrant, EnvGrant, Grants};
use crate::sandbox::http_grant::HttpGrant;
use crate::serve::access::Token;

/// Reads one file's text into a config.
pub(super) struct Reader<'a> {
    text: &'a str,
    path: &'a Path,
    /// The folder relative paths in the file start from.
    base: &'a Path,
    /// Whether a route's token variable must be set (`serve`), or may be missing
    /// (`check --without-secrets`).
    secrets: Secrets,
}

/// What a config's secrets must be when it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Secrets {
    /// Set and valid: to serve.
    Required,
    /// Checked when set; when not, the route is read as though it had a token: to
    /// check a config on a machine that does not hold its secrets.
    Optional,
}

impl<'a> Reader<'a> {
    pub(super) fn new(text: &'a str, path: &'a Path, secrets: Secrets) -> Self {
        let base = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        Reader {
            text,
            path,
            base,
            secrets,
        }
    }

    /// The error `message`, at the key `span` points into.
    fn at(&self, span: Option<Range<usize>>, message: String) -> ConfigError {
        let (line, column, key) = match span {
            Some(span) => (
                Some(line_of(self.text, span.start)),
                Some(column_of(self.text, span.start)),
                key_at(self.text, span.start),
            ),
            None => (None, None, None),
        };
        ConfigError {
            file: self.path.to_owned(),
            line,
            column,
            key,
            message,
        }
    }

    pub(super) fn config(&self) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(self.text)
            .map_err(|err| self.at(err.span(), err.message().trim().to_owned()))?;
        let defaults = SharedLimits::default();
        let limits = SharedLimits {
            max_in_flight: raw.max_in_flight.unwrap_or(defaults.max_in_flight),
            max_body: raw
                .max_body
                .map_or(defaults.max_body, |size| size.0.bytes()),
            body_timeout: raw.body_timeout.map_or(defaults.body_timeout, |t| t.0.0),
        };
        let tls = match raw.tls {
            Some(tls) => Some(TlsFiles {
                cert: self.file(&tls.cert)?,
                key: self.file(&tls.key)?,
            }),
            None => None,
        };
        let routes = self.routes(raw.routes)?;
        Ok(Config {
            source: Some(self.path.to_owned()),
            listen: raw.listen.map_or_else(default_listen, |listen| listen.0),
            admin_listen: raw.admin_listen.map(|listen| listen.0),
            tls,
            max_connections: raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
            allow: raw.allow.into_iter().map(|net| net.0).collect(),
            limits,
            routes,
            allow_precompiled: raw.allow_precompiled.unwrap_or(false),
        })
    }

    /// A file the config names, relative to the config's folder, checked to be there.
    /// An `env` grant; `NAME` alone takes the host's value, which [`Secrets::Optional`]
    /// lets be unset (the grant is then checked with an empty value, like a token).
    fn env_grant(&self, grant: Spanned<String>) -> Result<EnvGrant, ConfigError> {
        let span = grant.span();
        let text = grant.into_inner();
        if self.secrets == Secrets::Optional
            && !text.contains('=')
            && std::env::var_os(&text).is_none()
        {
            return format!("{text}=")
                .parse()
                .map_err(|message| self.at(Some(span), message));
        }
        text.parse().map_err(|message| self.at(Some(span), message))
    }

    fn file(&self, spanned: &Spanned<PathBuf>) -> Result<PathBuf, ConfigError> {
        let path = self.base.join(spanned.get_ref());
        match std::fs::metadata(&path) {
            Ok(_) => Ok(path),
            Err(err) => Err(self.at(
                Some(spanned.span()),
                format!("cannot read {}: {err}", path.display()),
            )),
        }
    }

    /// The routes, in the file's order, so that errors and reports follow it.
    fn routes(
        &self,
        raw: Spanned<BTreeMap<Spanned<String>, RawRoute>>,
    ) -> Result<Vec<RoutePlan>, ConfigError> {
        if raw.get_ref().is_empty() {
            return Err(self.at(
                Some(raw.span()),
                "there are no routes: add a [routes.NAME] table".into(),
            ));
        }
        let mut entries: Vec<_> = raw.into_inner().into_iter().collect();
        entries.sort_by_key(|(name, _)| name.span().start);
        let mut routes: Vec<RoutePlan> = Vec::new();
        for (name, route) in entries {
            let plan = self.route(name, route, &routes)?;
            routes.push(plan);
        }
        Ok(routes)
    }

    /// One route; `taken` are the routes before it, whose paths it may not serve.
    fn route(
        &self,
        name: Spanned<String>,
        route: RawRoute,
        taken: &[RoutePlan],
    ) -> Result<RoutePlan, ConfigError> {
        let name_span = name.span();
        let name = name.into_inner();
        check_route_name(&name).map_err(|message| self.at(Some(name_span), message))?;
        let path_span = route.path.span();
        let path = route.path.into_inner();
        check_route_path(&path).map_err(|message| self.at(Some(path_span.clone()), message))?;
        if let Some(other) = taken.iter().find(|other| other.path == path) {
            return Err(self.at(
                Some(path_span),
                format!("path {path:?} is already served by route {:?}", other.name),
            ));
        }
        let component = self.file(&route.component)?;
        let token = self.token(route.token_env.as_ref())?;
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
                config: self.settings(route.config)?,
                ..self.grants(route.env, route.dir, route.http, route.http_private)?
            },
            serve_as: route.serve_as.map_or(defaults.serve_as, |s| s.0),
            dedupe_window: route
                .dedupe_window
                .map_or(defaults.dedupe_window, |w| w.0.0),
            max_attempts: route.max_attempts.unwrap_or(defaults.max_attempts),
            max_instance_reuse_count: route
                .max_instance_reuse_count
                .unwrap_or(defaults.max_instance_reuse_count),
            idle_instance_timeout: route
                .idle_instance_timeout
                .map_or(defaults.idle_instance_timeout, |d| d.0.0),
        };
        Ok(RoutePlan {
            name,
            path,
            component,
            options,
        })
    }

    /// The route's token, read from the variable `token_env` names (when only checking,
    /// a variable not set stands for a token).
    fn token(&self, token_env: Option<&Spanned<String>>) -> Result<Option<Token>, ConfigError> {
        Ok(match token_env {
            None => None,
            Some(variable)
                if self.secrets == Secrets::Optional
                    && std::env::var_os(variable.get_ref()).is_none() =>
            {
                Some(Token::unset_for_checking())
            }
            Some(variable) => Some(
                read_token(variable.get_ref())
                    .map_err(|message| self.at(Some(variable.span()), message))?,
            ),
        })
    }

    /// What the route's guest may reach: environment variables, directories (relative
    /// to the config file's folder) and HTTP destinations.
    fn grants(
        &self,
        env: Vec<Spanned<String>>,
        dirs: OneOrMore<Text<DirGrant>>,
        http: Vec<Text<HttpGrant>>,
        http_private: Vec<Text<HttpGrant>>,
    ) -> Result<Grants, ConfigError> {
        Ok(Grants {
            env: env
                .into_iter()
                .map(|grant| self.env_grant(grant))
                .collect::<Result<_, _>>()?,
            dirs: dirs
                .0
                .into_iter()
                .map(|dir| {
                    let DirGrant { host, guest } = dir.0;
                    DirGrant {
                        host: self.base.join(host),
                        guest,
                    }
                })
                .collect(),
            http: http
                .into_iter()
                .map(|grant| grant.0)
                .chain(
                    http_private
                        .into_iter()
                        .map(|grant| grant.0.allowing_private()),
                )
                .collect(),
            config: Vec::new(),
        })
    }

    /// The route's `[routes.NAME.config]`: each value as written, or read from the
    /// variable or file it names (when only checking, one not there reads as empty).
    /// Errors name the key, the variable or the file, never a value.
    fn settings(
        &self,
        raw: BTreeMap<Spanned<String>, Spanned<RawSetting>>,
    ) -> Result<Vec<ConfigVar>, ConfigError> {
        let mut settings = Vec::with_capacity(raw.len());
        for (name, setting) in raw {
            check_name(name.get_ref()).map_err(|message| self.at(Some(name.span()), message))?;
            let span = setting.span();
            let value = match setting.into_inner() {
                RawSetting::Literal(value) => value,
                RawSetting::Env(variable) => match std::env::var(&variable) {
                    Ok(value) => value,
                    Err(_) if self.secrets == Secrets::Optional => String::new(),
                    Err(err) => {
                        let why = match err {
                            std::env::VarError::NotPresent => "is not set in the environment",
                            std::env::VarError::NotUnicode(_) => "is not UTF-8 (value not shown)",
                        };
                        return Err(self.at(Some(span), format!("{variable} {why}")));
                    }
                },
                RawSetting::File(path) => {
                    let path = self.base.join(path);
                    match std::fs::read_to_string(&path) {
                        Ok(text) => without_final_newline(text),
                        Err(_) if self.secrets == Secrets::Optional => String::new(),
                        Err(err) => {
                            return Err(self
                                .at(Some(span), format!("cannot read {}: {err}", path.display())));
                        }
                    }
                }
            };
            settings.push(ConfigVar {
                name: name.into_inner(),
                value,
            });
        }
        Ok(settings)
    }
}

/// A file's text without the one line ending an editor or `echo` leaves after it.
fn without_final_newline(mut text: String) -> String {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    text
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_path_is_the_parsers_however_the_document_spells_it() {
        let at = |text: &str, needle: &str| key_at(text, text.find(needle).expect("in text"));
        let text = "allow = [\n  \"10.0.0.0/8\",\n  \"not-a-cidr\",\n]\n";
        assert_eq!(at(text, "not-a").as_deref(), Some("allow[1]"));
        // Dotted keys, and an inline table, both on one line: no line scan tells them.
        let text = "routes.orders.format = \"xml\"\n";
        assert_eq!(at(text, "xml").as_deref(), Some("routes.orders.format"));
        let text = "[routes]\norders = { path = \"/o\", format = \"xml\" }\n";
        assert_eq!(at(text, "xml").as_deref(), Some("routes.orders.format"));
        assert_eq!(at(text, "path").as_deref(), Some("routes.orders.path"));
        // A quoted key stays quoted.
        let text = "[routes.\"a b\"]\npath = \"/a\"\n";
        assert_eq!(at(text, "/a").as_deref(), Some("routes.\"a b\".path"));
        // A header names its table.
        let text = "listen = \"x\"\n[routes.a]\npath = \"/a\"\n";
        assert_eq!(at(text, "[routes.a]").as_deref(), Some("routes.a"));
    }
}
