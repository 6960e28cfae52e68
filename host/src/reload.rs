//! Reloads while serving: on SIGHUP, and when the config file or a component file
//! changes. The new routes are compiled and checked beside the serving ones, which go on
//! serving when anything is wrong.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::Config;
use crate::receiver::Receiver;
use crate::serve::signals::OsSignal;

/// How often the watched files are looked at.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// How long a changed file must stay unchanged before it is read: a copy in progress is
/// not a component yet.
const SETTLE_INTERVAL: Duration = Duration::from_millis(200);

/// Where the routes come from, read again at every reload.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// A config file.
    File(PathBuf),
    /// A config made otherwise (the flags of `serve COMPONENT`): its component files are
    /// read again.
    Fixed(Box<Config>),
}

impl ConfigSource {
    /// Reads the config.
    pub fn load(&self) -> anyhow::Result<Config> {
        match self {
            ConfigSource::File(path) => Ok(Config::load(path)?),
            ConfigSource::Fixed(config) => Ok((**config).clone()),
        }
    }

    /// The files whose change reloads: the config file and every component.
    fn watched(&self, config: &Config) -> Vec<PathBuf> {
        let mut files = config.component_files();
        if let ConfigSource::File(path) = self {
            files.push(path.clone());
        }
        files
    }
}

/// Reloads a receiver's routes when its config or components change, or on SIGHUP.
#[derive(Debug)]
pub struct Reloader {
    source: ConfigSource,
    /// The config serving.
    config: Config,
    /// The files the config read last names (serving or not), and how they looked.
    watched: Vec<PathBuf>,
    seen: FileStamps,
    /// Whether a reloaded config must give every route a token when the listener
    /// reaches other machines without an allowlist (see [`Config::check_authenticated`]).
    require_authentication: bool,
}

impl Reloader {
    /// Looks at the files of `config` now: make it before the receiver loads them, so
    /// that a change made while they load is seen.
    /// With `require_authentication`, a reloaded config whose routes would take pushes
    /// from anyone on a listener other machines reach is refused, as at start.
    pub fn new(source: ConfigSource, config: Config, require_authentication: bool) -> Reloader {
        let watched = source.watched(&config);
        let seen = FileStamps::of(&watched);
        Reloader {
            source,
            config,
            watched,
            seen,
            require_authentication,
        }
    }

    /// Reloads `receiver` at every change or SIGHUP, until dropped. Each outcome is
    /// logged; a failure leaves the serving routes as they were.
    pub async fn run(mut self, receiver: Arc<Receiver>, mut hangups: OsSignal) {
        let mut every = tokio::time::interval(WATCH_INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let why = tokio::select! {
                () = hangups.next() => "SIGHUP",
                _ = every.tick() => {
                    if self.stamps() == self.seen {
                        continue;
                    }
                    let mut settled = self.stamps();
                    loop {
                        tokio::time::sleep(SETTLE_INTERVAL).await;
                        let now = self.stamps();
                        if now == settled {
                            break;
                        }
                        settled = now;
                    }
                    "a watched file changed"
                }
            };
            self.reload(&receiver, why).await;
        }
    }

    fn stamps(&self) -> FileStamps {
        FileStamps::of(&self.watched)
    }

    async fn reload(&mut self, receiver: &Receiver, why: &str) {
        let started = Instant::now();
        tracing::info!("reloading: {why}");
        // Stamped before reading, so that a change made during the reload is seen.
        self.seen = self.stamps();
        let checked = self.source.load().and_then(|new| {
            if self.require_authentication {
                // The listener and allowlist serving are the ones that count.
                new.check_authenticated(self.config.listen, &self.config.allow)?;
            }
            Ok(new)
        });
        let new = match checked {
            Ok(new) => new,
            Err(err) => {
                receiver.count_failed_reload();
                tracing::error!(
                    generation = receiver.generation(),
                    "reload failed, the routes serving go on serving: {err:#}"
                );
                return;
            }
        };
        // From now on, the files this config names, whether or not it serves.
        self.watched = self.source.watched(&new);
        self.seen = self.stamps();
        match receiver.reload(&new).await {
            Ok(report) => {
                for changed in restart_only_changes(&self.config, &new) {
                    tracing::warn!("{changed} changed: it applies from the next start");
                }
                tracing::info!(
                    generation = receiver.generation(),
                    routes = report.len(),
                    reload_ms = started.elapsed().as_millis() as u64,
                    "reloaded: new pushes go to the new routes"
                );
                self.config = new;
            }
            Err(err) => tracing::error!(
                generation = receiver.generation(),
                "reload failed, the routes serving go on serving: {err:#}"
            ),
        }
    }
}

/// The keys whose change a reload cannot apply.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if old.listen != new.listen {
        changed.push("listen");
    }
    if old.admin_listen != new.admin_listen {
        changed.push("admin_listen");
    }
    if old.tls != new.tls {
        changed.push("tls");
    }
    if old.max_connections != new.max_connections {
        changed.push("max_connections");
    }
    if old.allow != new.allow {
        changed.push("allow");
    }
    changed
}

/// What the watched files looked like: modification time, size and inode each, or
/// none for a file that cannot be read.
#[derive(Debug, PartialEq, Eq)]
struct FileStamps(Vec<Option<(SystemTime, u64, u64)>>);

impl FileStamps {
    fn of(files: &[PathBuf]) -> FileStamps {
        FileStamps(
            files
                .iter()
                .map(|file| {
                    let meta = std::fs::metadata(file).ok()?;
                    #[cfg(unix)]
                    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
                    #[cfg(not(unix))]
                    let inode = 0;
                    Some((meta.modified().ok()?, meta.len(), inode))
                })
                .collect(),
        )
    }
}
