//! Where the records are kept, as a command line or `PDS_STORE` says it: `redb:PATH` (or a
//! bare path) for the embedded store, `postgres://…` for PostgreSQL.

use std::path::PathBuf;
use std::sync::Arc;

use super::postgres::PgStore;
use super::redb_store::RedbStore;
use super::PatientStore;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Redb(PathBuf),
    /// A PostgreSQL connection URL.
    Postgres(String),
}

impl std::str::FromStr for Location {
    type Err = String;

    fn from_str(s: &str) -> Result<Location, String> {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(Location::Postgres(s.to_string()));
        }
        let path = s.strip_prefix("redb:").unwrap_or(s);
        if path.is_empty() || path.contains("://") {
            return Err(format!(
                "'{s}' is not a store: use redb:PATH (or a path) or postgres://user@host/db"
            ));
        }
        Ok(Location::Redb(PathBuf::from(path)))
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Redb(p) => write!(f, "redb:{}", p.display()),
            // the URL may carry a password: only the host and database are shown
            Location::Postgres(url) => {
                let shown = url
                    .rsplit_once('@')
                    .map_or(url.as_str(), |(_, host)| host)
                    .trim_start_matches("postgres://")
                    .trim_start_matches("postgresql://");
                write!(f, "postgres://…@{shown}")
            }
        }
    }
}

/// An open store of either kind.
pub enum Opened {
    Redb(RedbStore),
    Postgres(PgStore),
}

/// How to open a store.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// redb's page cache.
    pub cache_bytes: usize,
    /// PostgreSQL connections per process.
    pub pool_size: usize,
}

impl Opened {
    /// Opens the store at `location` (creating a redb file, migrating a PostgreSQL schema).
    pub async fn open(location: &Location, options: Options) -> Result<Opened, String> {
        match location {
            Location::Redb(path) => RedbStore::open_with_cache(path, options.cache_bytes)
                .map(Opened::Redb)
                .map_err(|e| e.to_string()),
            Location::Postgres(url) => PgStore::connect(url, options.pool_size)
                .await
                .map(Opened::Postgres)
                .map_err(|e| format!("cannot use the PostgreSQL store {location}: {e}")),
        }
    }

    pub fn store(&self) -> &dyn PatientStore {
        match self {
            Opened::Redb(s) => s,
            Opened::Postgres(s) => s,
        }
    }

    pub fn into_shared(self) -> Arc<dyn PatientStore> {
        match self {
            Opened::Redb(s) => Arc::new(s),
            Opened::Postgres(s) => Arc::new(s),
        }
    }

    /// The development key of sandbox mode: beside a redb file (`<file>.jwt-dev-key`); in the
    /// database for PostgreSQL, so that every node of one service uses the same one.
    pub async fn dev_key(&self, location: &Location) -> Result<Vec<u8>, String> {
        match (self, location) {
            (Opened::Postgres(pg), _) => pg
                .shared_secret("jwt-dev-key", &crate::auth::fresh_dev_key())
                .await
                .map(String::into_bytes)
                .map_err(|e| e.to_string()),
            (Opened::Redb(_), Location::Redb(path)) => crate::auth::dev_key(path),
            (Opened::Redb(_), _) => Err("a redb store has a file location".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_hide_passwords() {
        assert_eq!(
            "redb:/data/pds.redb".parse(),
            Ok(Location::Redb("/data/pds.redb".into()))
        );
        assert_eq!("pds.redb".parse(), Ok(Location::Redb("pds.redb".into())));
        let pg: Location = "postgres://pds:secret@db.example:5432/pds".parse().unwrap();
        assert!(matches!(pg, Location::Postgres(_)));
        assert_eq!(pg.to_string(), "postgres://…@db.example:5432/pds");
        assert!("mysql://x".parse::<Location>().is_err());
    }
}
