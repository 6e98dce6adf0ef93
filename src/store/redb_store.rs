//! The embedded redb store.
//!
//! Tables:
//! * `patients`: NHS number → current record, as `[format][flags][version u32 LE][JSON]`, so a
//!   GET can answer with the version, the restricted flag and the bytes without parsing JSON;
//! * `versions`: (NHS number, version) → JSON of every version, current included;
//! * `meta`: store-format facts (`format` = 1).
//!
//! All tables are created when the database is opened, so readers never meet a missing table.
//! redb commits are durable (fsync) when `commit` returns: an acknowledged change survives a
//! crash. Calls block; async callers run them on a blocking thread.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{ExistingRecords, PatientStore, StoreError, StoredRecord};
use crate::domain::{NhsNumber, Patient, Version};

const PATIENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("patients");
const VERSIONS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("versions");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const FORMAT: u8 = 1;
const FLAG_RESTRICTED: u8 = 1;
const HEADER: usize = 6;

pub struct RedbStore {
    db: Database,
}

/// Why the database could not be opened, in words for the person starting the service.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the database {0} is already open in another process (is another pds-facade running on it?)")]
    AlreadyOpen(String),
    #[error("cannot open the database {path}: {reason}")]
    Other { path: String, reason: String },
}

impl RedbStore {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: &Path) -> Result<RedbStore, OpenError> {
        let shown = path.display().to_string();
        let other = |reason: String| OpenError::Other {
            path: shown.clone(),
            reason,
        };
        let db = match Database::create(path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(OpenError::AlreadyOpen(shown))
            }
            Err(e) => return Err(other(e.to_string())),
        };
        let txn = db.begin_write().map_err(|e| other(e.to_string()))?;
        {
            txn.open_table(PATIENTS).map_err(|e| other(e.to_string()))?;
            txn.open_table(VERSIONS).map_err(|e| other(e.to_string()))?;
            let mut meta = txn.open_table(META).map_err(|e| other(e.to_string()))?;
            let format = meta
                .get("format")
                .map_err(|e| other(e.to_string()))?
                .map(|g| g.value().to_vec());
            match format.as_deref() {
                None => {
                    meta.insert("format", [FORMAT].as_slice())
                        .map_err(|e| other(e.to_string()))?;
                }
                Some([FORMAT]) => {}
                Some(f) => {
                    return Err(other(format!(
                        "unknown store format {f:?} (this program writes {FORMAT})"
                    )))
                }
            }
        }
        txn.commit().map_err(|e| other(e.to_string()))?;
        Ok(RedbStore { db })
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn encode(record: &Patient, json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + json.len());
    out.push(FORMAT);
    out.push(if record.is_restricted() {
        FLAG_RESTRICTED
    } else {
        0
    });
    out.extend_from_slice(&record.version().get().to_le_bytes());
    out.extend_from_slice(json);
    out
}

fn decode(bytes: &[u8]) -> Result<StoredRecord, StoreError> {
    if bytes.len() < HEADER || bytes[0] != FORMAT {
        return Err(StoreError::Corrupt("record header".into()));
    }
    let version = u32::from_le_bytes(bytes[2..6].try_into().expect("4 bytes"));
    let version = Version::new(version).ok_or_else(|| StoreError::Corrupt("version 0".into()))?;
    Ok(StoredRecord {
        version,
        restricted: bytes[1] & FLAG_RESTRICTED != 0,
        json: bytes[HEADER..].to_vec(),
    })
}

/// Writes `record` as current and into the history (inside an open write transaction).
fn put(txn: &redb::WriteTransaction, record: &Patient) -> Result<(), StoreError> {
    let json = record.to_bytes();
    let key = record.id().as_u64();
    txn.open_table(PATIENTS)
        .map_err(unavailable)?
        .insert(key, encode(record, &json).as_slice())
        .map_err(unavailable)?;
    txn.open_table(VERSIONS)
        .map_err(unavailable)?
        .insert((key, record.version().get()), json.as_slice())
        .map_err(unavailable)?;
    Ok(())
}

fn current_version(
    txn: &redb::WriteTransaction,
    id: NhsNumber,
) -> Result<Option<Version>, StoreError> {
    let table = txn.open_table(PATIENTS).map_err(unavailable)?;
    let guard = table.get(id.as_u64()).map_err(unavailable)?;
    guard
        .map(|g| decode(g.value()).map(|r| r.version))
        .transpose()
}

impl PatientStore for RedbStore {
    fn get(&self, id: NhsNumber) -> Result<Option<StoredRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(PATIENTS).map_err(unavailable)?;
        let guard = table.get(id.as_u64()).map_err(unavailable)?;
        guard.map(|g| decode(g.value())).transpose()
    }

    fn get_version(
        &self,
        id: NhsNumber,
        version: Version,
    ) -> Result<Option<StoredRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(VERSIONS).map_err(unavailable)?;
        let Some(guard) = table
            .get((id.as_u64(), version.get()))
            .map_err(unavailable)?
        else {
            return Ok(None);
        };
        let json = guard.value().to_vec();
        let record = Patient::from_stored(&json).map_err(StoreError::Corrupt)?;
        Ok(Some(StoredRecord {
            version,
            restricted: record.is_restricted(),
            json,
        }))
    }

    fn update(&self, expected: Version, record: &Patient) -> Result<(), StoreError> {
        debug_assert_eq!(record.version(), expected.next());
        let txn = self.db.begin_write().map_err(unavailable)?;
        match current_version(&txn, record.id())? {
            None => return Err(StoreError::NotFound(record.id())),
            Some(current) if current != expected => {
                return Err(StoreError::VersionConflict {
                    id: record.id(),
                    expected,
                    current,
                });
            }
            Some(_) => {}
        }
        put(&txn, record)?;
        txn.commit().map_err(unavailable)
    }

    fn insert_batch(
        &self,
        records: &[Patient],
        existing: ExistingRecords,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(unavailable)?;
        let mut seen = std::collections::HashSet::with_capacity(records.len());
        for record in records {
            if !seen.insert(record.id()) {
                return Err(StoreError::DuplicateInBatch(record.id()));
            }
            match (current_version(&txn, record.id())?, existing) {
                (None, _) => put(&txn, record)?,
                (Some(_), ExistingRecords::Reject) => {
                    return Err(StoreError::AlreadyExists(record.id()))
                }
                (Some(current), ExistingRecords::Replace) => {
                    put(&txn, &record.clone().with_version(current.next()))?
                }
            }
        }
        txn.commit().map_err(unavailable)
    }

    fn count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(PATIENTS).map_err(unavailable)?;
        table.len().map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Schemas;
    use serde_json::json;
    use time::macros::date;

    fn patient(id: &str, version: &str, family: &str) -> Patient {
        let doc = json!({"resourceType": "Patient", "id": id, "meta": {"versionId": version},
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": id}],
            "name": [{"id": "n", "use": "usual", "family": family}]});
        Patient::parse(doc, &Schemas::compile(), date!(2026 - 01 - 01)).unwrap()
    }

    #[test]
    fn versions_and_conflicts() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("t.redb")).unwrap();
        let v1 = patient("9000000009", "1", "One");
        store
            .insert_batch(std::slice::from_ref(&v1), ExistingRecords::Reject)
            .unwrap();
        let v2 = patient("9000000009", "2", "Two");
        store.update(Version::FIRST, &v2).unwrap();
        // a second writer holding version 1 loses
        let stale = patient("9000000009", "2", "Stale");
        assert!(matches!(
            store.update(Version::FIRST, &stale),
            Err(StoreError::VersionConflict { .. })
        ));

        let id = v1.id();
        let current = store.get(id).unwrap().unwrap();
        assert_eq!(current.version.get(), 2);
        assert_eq!(Patient::from_stored(&current.json).unwrap(), v2);
        let old = store.get_version(id, Version::FIRST).unwrap().unwrap();
        assert_eq!(Patient::from_stored(&old.json).unwrap(), v1);
        assert_eq!(store.count().unwrap(), 1);
    }

    #[test]
    fn batches_are_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("t.redb")).unwrap();
        store
            .insert_batch(&[patient("9000000009", "1", "A")], ExistingRecords::Reject)
            .unwrap();
        let batch = [
            patient("9000000017", "1", "B"),
            patient("9000000009", "1", "C"),
        ];
        assert!(matches!(
            store.insert_batch(&batch, ExistingRecords::Reject),
            Err(StoreError::AlreadyExists(_))
        ));
        assert_eq!(
            store.count().unwrap(),
            1,
            "nothing of the failed batch was stored"
        );
        store
            .insert_batch(&batch, ExistingRecords::Replace)
            .unwrap();
        let r = store
            .get(NhsNumber::parse("9000000009").unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(r.version.get(), 2, "replace appends a version");
    }

    #[test]
    fn second_open_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        let _first = RedbStore::open(&path).unwrap();
        let err = RedbStore::open(&path).err().unwrap();
        assert!(err.to_string().contains("already open"), "{err}");
    }
}
