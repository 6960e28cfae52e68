//! The TOML config of `cmq-host serve --config`: the listener, the limits shared by all
//! routes, and the routes themselves. Checked whole before anything listens; every error
//! names the file, the line and the key.
//! `file` reads the TOML; the options it sets are [`crate::options`]'s.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

use crate::options::{ReceiverOptions, RouteOptions, SharedLimits};
use crate::route::RoutePlan;

mod file;
mod position;
mod raw;

use file::Secrets;

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
    /// The column on that line, counted in characters from 1.
    pub column: Option<usize>,
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
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
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
        Config::read(path, Secrets::Required)
    }

    /// [`Config::load`], except that a route's token variable may be unset (its route is
    /// then read as though it had a token): to check a config where its secrets are not.
    pub fn load_without_secrets(path: &Path) -> Result<Config, ConfigError> {
        Config::read(path, Secrets::Optional)
    }

    fn read(path: &Path, secrets: Secrets) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
            file: path.to_owned(),
            line: None,
            column: None,
            key: None,
            message: format!("cannot read it: {err}"),
        })?;
        file::Reader::new(&text, path, secrets).config()
    }

    /// Checks the config `text`, read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        file::Reader::new(text, path, Secrets::Required).config()
    }

    /// The config of a single component, served on every path: what `serve` makes of
    /// its flags, and [`crate::receiver::Receiver::load`] of its options (the store aside).
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
pub(crate) fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN
        .parse()
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080)))
}

/// The name of the one route a single component is served as.
pub const SINGLE_ROUTE: &str = "default";

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
        // The parser's own position: the value, after `format = `.
        assert_eq!(err.column, Some(10), "{err}");
        assert_eq!(err.key.as_deref(), Some("routes.orders.format"), "{err}");
        assert!(
            err.to_string()
                .starts_with("cmq.toml:6:10: routes.orders.format: "),
            "{err}"
        );
    }

    #[test]
    fn a_bad_value_in_an_inline_table_is_located_by_its_key_path() {
        let err = error(
            "[routes]\norders = { path = \"/o\", component = \"x.wasm\", format = \"xml\" }\n",
        );
        assert_eq!(err.key.as_deref(), Some("routes.orders.format"), "{err}");
        // The parser's own position: the value's opening quote.
        assert_eq!((err.line, err.column), (Some(2), Some(56)), "{err}");
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
    fn a_route_grants_one_directory_or_several() {
        // A file that exists, relative to the config's folder (the crate's, in a test).
        let route = "[routes.a]\npath = \"/a\"\ncomponent = \"Cargo.toml\"\n";
        let dirs = |text: &str| {
            let config = Config::parse(&format!("{route}{text}"), Path::new("cmq.toml"))
                .expect("a valid config");
            config.routes[0]
                .options
                .grants
                .dirs
                .iter()
                .map(|dir| (dir.host.display().to_string(), dir.guest.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(dirs(""), vec![]);
        assert_eq!(
            dirs("dir = \"/srv/rules::/rules\"\n"),
            vec![("/srv/rules".into(), "/rules".into())]
        );
        assert_eq!(
            dirs("dir = [\"/srv/rules::/rules\", \"/srv/maps\"]\n"),
            vec![
                ("/srv/rules".into(), "/rules".into()),
                ("/srv/maps".into(), "/srv/maps".into())
            ]
        );
        let err = error(&format!("{route}dir = 3\n"));
        assert_eq!(err.key.as_deref(), Some("routes.a.dir"), "{err}");
        assert!(
            err.message.contains("a string, or a list of strings"),
            "{err}"
        );
        let err = error(&format!("{route}dir = [\"::/x\"]\n"));
        assert_eq!(err.key.as_deref(), Some("routes.a.dir"), "{err}");
    }

    #[test]
    fn a_route_config_table_reads_literals_variables_and_files_and_never_shows_a_value() {
        // Files relative to the config's folder (the crate's, in a test).
        let route = "[routes.a]\npath = \"/a\"\ncomponent = \"Cargo.toml\"\n[routes.a.config]\n";
        let settings = |text: &str| {
            let config = Config::parse(&format!("{route}{text}"), Path::new("cmq.toml"))
                .expect("a valid config");
            config.routes[0]
                .options
                .grants
                .config
                .iter()
                .map(|var| (var.name.clone(), var.value.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            settings("greeting = \"hello\"\n"),
            vec![("greeting".into(), "hello".into())]
        );
        // PATH is set wherever the tests run; the file's one final newline is cut.
        let path = std::env::var("PATH").expect("PATH is set");
        assert_eq!(
            settings("path = { env = \"PATH\" }\n"),
            vec![("path".into(), path)]
        );
        let first_line = std::fs::read_to_string("Cargo.toml").expect("the crate's manifest");
        let read = settings("manifest = { file = \"Cargo.toml\" }\n");
        assert_eq!(
            read[0].1,
            first_line.strip_suffix('\n').unwrap_or(&first_line)
        );
        let err = error(&format!(
            "{route}token = {{ env = \"CMQ_SURELY_NOT_SET_ANYWHERE\" }}\n"
        ));
        assert_eq!(err.key.as_deref(), Some("routes.a.config.token"), "{err}");
        assert!(
            err.message
                .contains("CMQ_SURELY_NOT_SET_ANYWHERE is not set"),
            "{err}"
        );
        let err = error(&format!("{route}token = {{ file = \"no-such-secret\" }}\n"));
        assert_eq!(err.key.as_deref(), Some("routes.a.config.token"), "{err}");
        assert!(err.message.contains("no-such-secret"), "{err}");
        let err = error(&format!("{route}token = {{ vault = \"x\" }}\n"));
        assert!(
            err.message
                .contains("{ env = \"VAR\" } or { file = \"PATH\" }"),
            "{err}"
        );
        let err = error(&format!("{route}\"not a name\" = \"s3cret-value\"\n"));
        assert!(!err.to_string().contains("s3cret-value"), "{err}");
        // When only checking, a variable or file that is not there reads as empty.
        let text = format!("{route}token = {{ env = \"CMQ_SURELY_NOT_SET_ANYWHERE\" }}\n");
        let dir = std::env::temp_dir().join(format!("cmq-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary folder");
        std::fs::copy("Cargo.toml", dir.join("Cargo.toml")).expect("a component stand-in");
        std::fs::write(dir.join("cmq.toml"), text).expect("the config");
        let config = Config::load_without_secrets(&dir.join("cmq.toml")).expect("checkable");
        assert_eq!(config.routes[0].options.grants.config[0].value, "");
        assert!(Config::load(&dir.join("cmq.toml")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
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
}
