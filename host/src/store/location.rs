//! Where a delivery store lives, and how it is shown without its password.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Where the delivery state lives: a SQLite file, or a PostgreSQL database URL.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A SQLite database file, created when missing.
    Sqlite(PathBuf),
    /// A PostgreSQL URL (`postgres://user:password@host/db`), shared by several hosts.
    Postgres(String),
}

impl FromStr for StoreLocation {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err("the store location is empty".into());
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(StoreLocation::Postgres(text.to_owned()));
        }
        if text.contains("://") {
            return Err("a store is a file path or a postgres:// URL".into());
        }
        Ok(StoreLocation::Sqlite(PathBuf::from(text)))
    }
}

impl fmt::Display for StoreLocation {
    /// A PostgreSQL URL is shown without its user info and its query: either may hold
    /// a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Sqlite(path) => write!(f, "{}", path.display()),
            StoreLocation::Postgres(url) => {
                let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
                let rest = rest.split_once('?').map_or(rest, |(before, _)| before);
                let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
                write!(f, "{scheme}://{rest}")
            }
        }
    }
}

impl fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreLocation({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_hide_passwords() {
        assert_eq!(
            "state/cmq.db".parse::<StoreLocation>(),
            Ok(StoreLocation::Sqlite("state/cmq.db".into()))
        );
        let url = "postgres://cmq:s3cret@db.internal:5432/cmq";
        let location: StoreLocation = url.parse().expect("a postgres URL");
        assert_eq!(location, StoreLocation::Postgres(url.into()));
        assert_eq!(location.to_string(), "postgres://db.internal:5432/cmq");
        assert!(!format!("{location:?}").contains("s3cret"));
        assert!("redis://localhost".parse::<StoreLocation>().is_err());
        assert!("".parse::<StoreLocation>().is_err());
    }
}
