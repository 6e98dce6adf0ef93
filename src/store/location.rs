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
            // the URL may carry a password (in its user part or its query): only the hosts,
            // ports and database are shown
            Location::Postgres(url) => match url.parse::<tokio_postgres::Config>() {
                Ok(config) => {
                    let hosts: Vec<String> = config
                        .get_hosts()
                        .iter()
                        .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
                        .map(|(host, port)| match host {
                            tokio_postgres::config::Host::Tcp(h) => format!("{h}:{port}"),
                            #[cfg(unix)]
                            tokio_postgres::config::Host::Unix(p) => {
                                format!("{}:{port}", p.display())
                            }
                        })
                        .collect();
                    write!(
                        f,
                        "postgres://…@{}/{}",
                        hosts.join(","),
                        config.get_dbname().unwrap_or("")
                    )
                }
                Err(_) => write!(f, "postgres://… (not a valid URL)"),
            },
        }
    }
}

/// Why `path` cannot be an existing redb database, if it cannot: it `does not exist`, or it
/// `is not a database` (a directory, an empty file).
pub fn redb_file_problem(path: &std::path::Path) -> Option<&'static str> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() > 0 => None,
        Ok(_) => Some("is not a database"),
        Err(_) if path.exists() => Some("is not a database"),
        Err(_) => Some("does not exist"),
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

    /// Opens a store that must exist already, as it is: nothing is created and no schema
    /// migrated (for the commands that only read: export, verify, the source of a copy,
    /// explain — they may point at a replica, or run beside nodes of another release).
    pub async fn open_existing(location: &Location, options: Options) -> Result<Opened, String> {
        match location {
            Location::Redb(path) => match redb_file_problem(path) {
                Some(what) => Err(format!("{location} {what}")),
                None => Opened::open(location, options).await,
            },
            Location::Postgres(url) => {
                let pg = PgStore::connect_unmigrated(url, options.pool_size)
                    .await
                    .map_err(|e| format!("cannot use the PostgreSQL store {location}: {e}"))?;
                let latest = super::postgres::schema::latest();
                match pg.schema_version().await.map_err(|e| e.to_string())? {
                    None => Err(format!("{location} is not a pds-facade database")),
                    Some(v) if v < latest => Err(format!(
                        "{location} has schema version {v}, older than this pds-facade's \
                         ({latest}): run `pds-facade migrate` first"
                    )),
                    Some(v) if v > latest => Err(format!(
                        "{location} has schema version {v}, newer than this pds-facade knows \
                         ({latest}): use a pds-facade at least as new"
                    )),
                    Some(_) => Ok(Opened::Postgres(pg)),
                }
            }
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
        let query: Location = "postgres://db.example/pds?user=pds&password=secret"
            .parse()
            .unwrap();
        assert_eq!(query.to_string(), "postgres://…@db.example:5432/pds");
        assert!(!query.to_string().contains("secret"));
        assert!("mysql://x".parse::<Location>().is_err());
    }
}
