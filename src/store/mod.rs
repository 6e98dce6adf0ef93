//! Storage behind a narrow trait, so that the HTTP layer and the patch layer never see the
//! database: redb today ([`redb_store::RedbStore`]), PostgreSQL later.
//!
//! Every change is one call, and every call is one transaction: a record's new current
//! version and its copy in the version history are written together or not at all.

pub mod redb_store;

use crate::domain::{NhsNumber, Patient, Version};

/// A record as stored: enough to answer a GET without parsing the document.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredRecord {
    pub version: Version,
    /// Confidentiality R or V: the HTTP layer must redact it for most roles.
    pub restricted: bool,
    /// The Patient document (JSON, `meta.versionId` = `version`).
    pub json: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no record for NHS number {0}")]
    NotFound(NhsNumber),
    #[error("record {id} is at version {current}, not {expected}")]
    VersionConflict {
        id: NhsNumber,
        expected: Version,
        current: Version,
    },
    #[error("a record for NHS number {0} already exists")]
    AlreadyExists(NhsNumber),
    #[error("NHS number {0} appears twice in one batch")]
    DuplicateInBatch(NhsNumber),
    /// The database cannot be used right now (I/O error, disk full...). Nothing was changed.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The database holds something this program did not write.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// What to do when an imported record's NHS number is already stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExistingRecords {
    /// Refuse the whole batch.
    Reject,
    /// Store the imported record as the next version of the existing one (history kept).
    Replace,
}

pub trait PatientStore: Send + Sync + 'static {
    /// The current version of a record.
    fn get(&self, id: NhsNumber) -> Result<Option<StoredRecord>, StoreError>;

    /// One version of a record, current or past.
    fn get_version(
        &self,
        id: NhsNumber,
        version: Version,
    ) -> Result<Option<StoredRecord>, StoreError>;

    /// Stores `record` as the next version, if the current version is still `expected`
    /// (optimistic concurrency: otherwise [`StoreError::VersionConflict`], nothing written).
    fn update(&self, expected: Version, record: &Patient) -> Result<(), StoreError>;

    /// Stores new records in one transaction: all of them or none.
    fn insert_batch(
        &self,
        records: &[Patient],
        existing: ExistingRecords,
    ) -> Result<(), StoreError>;

    /// How many records are stored.
    fn count(&self) -> Result<u64, StoreError>;
}
