//! What redb's errors mean here: corruption is corruption (the file holds what this program did
//! not write, or redb says so); anything else means the database cannot be used right now (I/O
//! error, disk full, a handle waiting to be reopened) — nothing was changed, and a retry may do.

use crate::store::StoreError;

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                redb::Error::from(e).into()
            }
        }
    )*};
}

from_redb!(
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::SavepointError,
    redb::SetDurabilityError
);

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        match e {
            redb::Error::Corrupted(what) => StoreError::Corrupt(what),
            redb::Error::UpgradeRequired(format) => StoreError::Corrupt(format!(
                "the file is in redb's old format {format}; it must be upgraded"
            )),
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

/// Why the database could not be opened, in words for the person starting the service.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the database {0} is already open in another process (is another pds-facade running on it?)")]
    AlreadyOpen(String),
    #[error("the database {path} cannot be opened for writing ({reason}); pds-facade needs read and write access to the file and a writable file system")]
    NotWritable { path: String, reason: String },
    #[error("cannot open the database {path}: {reason}")]
    Other { path: String, reason: String },
}
