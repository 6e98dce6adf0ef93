//! The tables, and the set of them one write transaction opens.

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::codec::{JsonCodec, RequestCodec};
use super::index::Indexes;
use super::packing::{self, Flags};
use crate::domain::index::IndexKey;
use crate::domain::{NhsNumber, Patient, Version};
use crate::store::resource::{IndexEntry, ResourceVersion};
use crate::store::{AuditEntry, ExistingRecords, Staged, StoreError};

/// (NHS number, version) → every version, compressed (see [`packing`]): the one place a
/// record is kept. The newest version of a number is its current record — there is no second
/// table of current records to keep in step (format 1 had one, `patients`).
pub const VERSIONS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("versions");
/// Merged NHS number → the NHS number that superseded it.
pub const SUPERSEDED: TableDefinition<u64, u64> = TableDefinition::new("superseded");
/// Old NHS number of a change of identity → the new one (sealed: back office only).
pub const IDENTITY_LINKS: TableDefinition<u64, u64> = TableDefinition::new("identity_links");
/// Every NHS number ever allocated, so that none is allocated twice whatever becomes of its
/// record.
pub const ALLOCATED: TableDefinition<u64, ()> = TableDefinition::new("allocated");
/// (NHS number, sequence) → audit entry; the sequence is global and increasing.
pub const AUDIT: TableDefinition<(u64, u64), JsonCodec<AuditEntry>> = TableDefinition::new("audit");
/// X-Request-ID → idempotency record (see [`RequestCodec`]).
pub const REQUESTS: TableDefinition<&str, RequestCodec> = TableDefinition::new("requests");
/// (kind, id) → the current version of a Task or Communication.
pub const RESOURCES: TableDefinition<(&str, &str), u32> = TableDefinition::new("resources");
/// (kind, id, version) → every version of a Task or Communication, with its audit entry and
/// index entries.
pub const RESOURCE_VERSIONS: TableDefinition<(&str, &str, u32), JsonCodec<ResourceVersion>> =
    TableDefinition::new("resource_versions");
/// (kind, key, sort, id) → (): the current versions' index entries, read in sort order.
pub const RESOURCE_INDEX: TableDefinition<(&str, &str, &str, &str), ()> =
    TableDefinition::new("resource_index");
/// Store facts: `format`, and the counters below.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// The store format this program writes (in `meta`, key `format`): 2 since records are stored
/// once, compressed ([`packing`]), the newest version being the current record. A format-1
/// file is read as it is (its values are recognised by their first byte; its `patients`
/// table is no longer read or written) and says 1 until `pds-facade migrate` rewrites it.
pub const FORMAT: u8 = 2;
/// The store format before records were stored once, compressed.
pub const FORMAT_1: u8 = 1;
/// `meta` key of the last audit sequence number.
const AUDIT_SEQ: &str = "audit_seq";
/// `meta` key of the number of records (NHS numbers with a version), kept as records are
/// created (the count is asked for often; the versions table counts versions).
pub const RECORDS: &str = "records";

/// Every table a write transaction touches, opened once per transaction (not once per change:
/// opening a table is a lookup of its own).
pub struct Tables<'t> {
    pub versions: redb::Table<'t, (u64, u32), &'static [u8]>,
    pub superseded: redb::Table<'t, u64, u64>,
    pub identity_links: redb::Table<'t, u64, u64>,
    pub allocated: redb::Table<'t, u64, ()>,
    pub audit: redb::Table<'t, (u64, u64), JsonCodec<AuditEntry>>,
    pub requests: redb::Table<'t, &'static str, RequestCodec>,
    pub meta: redb::Table<'t, &'static str, &'static [u8]>,
    pub indexes: Indexes<'t>,
    pub resources: redb::Table<'t, (&'static str, &'static str), u32>,
    pub resource_versions:
        redb::Table<'t, (&'static str, &'static str, u32), JsonCodec<ResourceVersion>>,
    pub resource_index:
        redb::Table<'t, (&'static str, &'static str, &'static str, &'static str), ()>,
}

impl<'t> Tables<'t> {
    pub fn open(txn: &'t WriteTransaction) -> Result<Tables<'t>, StoreError> {
        Ok(Tables {
            versions: txn.open_table(VERSIONS)?,
            superseded: txn.open_table(SUPERSEDED)?,
            identity_links: txn.open_table(IDENTITY_LINKS)?,
            allocated: txn.open_table(ALLOCATED)?,
            audit: txn.open_table(AUDIT)?,
            requests: txn.open_table(REQUESTS)?,
            meta: txn.open_table(META)?,
            indexes: Indexes::open(txn)?,
            resources: txn.open_table(RESOURCES)?,
            resource_versions: txn.open_table(RESOURCE_VERSIONS)?,
            resource_index: txn.open_table(RESOURCE_INDEX)?,
        })
    }

    /// The current version number of a Task or Communication.
    pub fn resource_version(&self, kind: &str, id: &str) -> Result<Option<u32>, StoreError> {
        Ok(self.resources.get((kind, id))?.map(|g| g.value()))
    }

    /// Stores a resource version as the current one: its index entries replace `old_index`.
    pub fn put_resource(
        &mut self,
        new: &ResourceVersion,
        old_index: &[IndexEntry],
    ) -> Result<(), StoreError> {
        let (kind, id) = (new.kind.name(), new.id.as_str());
        for e in old_index {
            self.resource_index
                .remove((kind, e.key.as_str(), e.sort.as_str(), id))?;
        }
        for e in &new.index {
            self.resource_index
                .insert((kind, e.key.as_str(), e.sort.as_str(), id), ())?;
        }
        self.resources.insert((kind, id), new.version)?;
        self.resource_versions
            .insert((kind, id, new.version), Ok(new.clone()))?;
        Ok(())
    }

    /// Stores a copied resource version: the current one so far (versions come in order).
    pub fn restore_resource(&mut self, v: &ResourceVersion) -> Result<(), StoreError> {
        let previous = match v.version.checked_sub(1) {
            Some(p) if p > 0 => self
                .resource_versions
                .get((v.kind.name(), v.id.as_str(), p))?
                .map(|g| g.value().map_err(StoreError::Corrupt))
                .transpose()?
                .map(|p| p.index)
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        self.put_resource(v, &previous)
    }

    /// Stores a version as the record's current one, with its index keys and the audit entry
    /// of the change that wrote it (its sequence number and JSON), in the same row.
    pub fn put(
        &mut self,
        staged: &Staged,
        audit: Option<packing::Audit<'_>>,
    ) -> Result<(), StoreError> {
        for key in &staged.keys {
            self.indexes.insert(key, staged.id.as_u64())?;
        }
        let Some((seq, audit)) = audit else {
            return self.put_record(staged);
        };
        let packed = staged.packed.clone().unwrap_or_else(|| pack(staged));
        let value = packing::with_audit(packed, seq, audit);
        self.versions
            .insert((staged.id.as_u64(), staged.version.get()), value.as_slice())?;
        Ok(())
    }

    /// Stores a version as the record's current one (not indexed).
    pub fn put_record(&mut self, staged: &Staged) -> Result<(), StoreError> {
        let key = staged.id.as_u64();
        let packed;
        let value = match &staged.packed {
            Some(p) => p.as_slice(),
            None => {
                packed = pack(staged);
                packed.as_slice()
            }
        };
        self.versions.insert((key, staged.version.get()), value)?;
        Ok(())
    }

    /// Stores imported records: new ones as they are, existing ones refused or (with
    /// [`ExistingRecords::Replace`]) stored as their next version. Index entries go in last,
    /// sorted, so neighbouring keys share B-tree pages.
    pub fn import(
        &mut self,
        batch: &[Staged],
        existing: ExistingRecords,
    ) -> Result<(), StoreError> {
        let mut entries: Vec<(&IndexKey, u64)> = Vec::with_capacity(batch.len() * 10);
        let mut created = 0;
        for staged in batch {
            let id = staged.id;
            match (self.current_version(id)?, existing) {
                (None, _) => {
                    self.put_record(staged)?;
                    created += 1;
                }
                (Some(_), ExistingRecords::Reject) => return Err(StoreError::AlreadyExists(id)),
                (Some(current), ExistingRecords::Replace) => {
                    // a prepared record keeps only its stored form
                    let json = match &staged.packed {
                        Some(packed) => packing::unpack(packed)?.0,
                        None => std::borrow::Cow::Borrowed(staged.json.as_slice()),
                    };
                    let record = Patient::from_stored(&json)
                        .map_err(StoreError::Corrupt)?
                        .with_version(current.next());
                    self.put_record(&Staged::new(&record))?
                }
            }
            entries.extend(staged.keys.iter().map(|k| (k, id.as_u64())));
        }
        entries.sort_unstable();
        for (key, id) in entries {
            self.indexes.insert(key, id)?;
        }
        self.count_new_records(created)
    }

    /// The newest version stored under `id`: its current one.
    pub fn current_version(&self, id: NhsNumber) -> Result<Option<Version>, StoreError> {
        current_version(&self.versions, id)
    }

    /// Counts records just created.
    pub fn count_new_records(&mut self, n: u64) -> Result<(), StoreError> {
        let count = meta_u64(&self.meta, RECORDS)?.unwrap_or(0) + n;
        self.meta.insert(RECORDS, count.to_le_bytes().as_slice())?;
        Ok(())
    }

    /// Sets the number of records (a copy, or a file of format 1 opened the first time).
    pub fn set_records(&mut self, n: u64) -> Result<(), StoreError> {
        self.meta.insert(RECORDS, n.to_le_bytes().as_slice())?;
        Ok(())
    }

    /// Sets the last audit sequence number (a copy keeps the numbers it brings).
    pub fn set_audit_seq(&mut self, last: u64) -> Result<(), StoreError> {
        self.meta.insert(AUDIT_SEQ, last.to_le_bytes().as_slice())?;
        Ok(())
    }

    /// The next audit sequence number (and counts it).
    pub fn next_audit_seq(&mut self) -> Result<u64, StoreError> {
        let next = meta_u64(&self.meta, AUDIT_SEQ)?.unwrap_or(0) + 1;
        self.meta.insert(AUDIT_SEQ, next.to_le_bytes().as_slice())?;
        Ok(next)
    }
}

/// The `versions` value of a staged write.
pub fn pack(staged: &Staged) -> Vec<u8> {
    packing::pack(&staged.json, Flags::of(staged))
}

/// The newest version stored under `id` (its current one), in any transaction.
pub fn current_version(
    versions: &impl ReadableTable<(u64, u32), &'static [u8]>,
    id: NhsNumber,
) -> Result<Option<Version>, StoreError> {
    let key = id.as_u64();
    let newest = versions.range((key, 0)..=(key, u32::MAX))?.next_back();
    newest
        .map(|e| {
            let (k, _) = e?;
            Version::new(k.value().1).ok_or_else(|| StoreError::Corrupt("version 0".into()))
        })
        .transpose()
}

/// A counter kept in `meta` as eight little-endian bytes.
pub fn meta_u64(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<u64>, StoreError> {
    meta.get(key)?
        .map(|g| {
            <[u8; 8]>::try_from(g.value())
                .map(u64::from_le_bytes)
                .map_err(|_| StoreError::Corrupt(format!("meta {key}")))
        })
        .transpose()
}
