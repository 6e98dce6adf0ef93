//! What PostgreSQL's errors mean here.

use tokio_postgres::error::SqlState;

use crate::store::StoreError;

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        let Some(code) = e.code() else {
            // no answer from the server: the connection broke or closed
            return StoreError::Unavailable(describe(&e));
        };
        if *code == SqlState::DATA_CORRUPTED || *code == SqlState::INDEX_CORRUPTED {
            return StoreError::Corrupt(describe(&e));
        }
        // by SQLSTATE class: 08 connection, 40 transaction rollback (a race retried too
        // often), 53 insufficient resources (disk full, out of memory, too many connections),
        // 57 operator intervention (shutdown, restart, statement timeout), 58 system error
        // (I/O), 25006 read-only transaction (a primary became a replica in a failover), 55P03
        // lock not available: nothing was committed, and the same request may succeed later
        let transient = matches!(&code.code()[..2], "08" | "40" | "53" | "57" | "58")
            || *code == SqlState::READ_ONLY_SQL_TRANSACTION
            || *code == SqlState::LOCK_NOT_AVAILABLE;
        if transient {
            StoreError::Unavailable(describe(&e))
        } else {
            // anything else is a statement this program should not have sent (or a schema
            // someone changed): a fault to fix, not to retry
            StoreError::Internal(format!(
                "the database refused a statement: {}",
                describe(&e)
            ))
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Unavailable(format!("no PostgreSQL connection: {e}"))
    }
}

/// The error with its server message, when there is one (the `Display` of a server error says
/// only "db error").
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// Whether the transaction lost a race it may simply run again (a deadlock, a serialization
/// failure, or a unique key taken by a concurrent transaction).
pub fn retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::T_R_SERIALIZATION_FAILURE
    )
}

/// Whether a unique key (which `constraint`) was taken.
pub fn unique_violation(e: &tokio_postgres::Error, constraint: &str) -> bool {
    e.as_db_error().is_some_and(|db| {
        *db.code() == SqlState::UNIQUE_VIOLATION && db.constraint() == Some(constraint)
    })
}
