//! A whole store as a stream of entries, for moving it to another store (`pds-facade copy`),
//! comparing two (`pds-facade verify`) and exporting current records (`pds-facade export`).
//!
//! Both stores read the same [`Part`]s in the same order (by key within each part), so two
//! stores holding the same data give the same stream, entry for entry. The search indexes are
//! not part of it (they are rebuilt from the versions), nor is the sandbox development key.

use crate::domain::{NhsNumber, Patient, Version};
use crate::store::resource::ResourceVersion;
use crate::store::{AuditEntry, RequestRecord, Staged, StoreError, StoredRecord};

/// One kind of stored data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Every version of every record, current ones included (by NHS number, then version).
    Versions,
    /// Merged NHS number → the one that superseded it.
    Superseded,
    /// Old NHS number of a change of identity → the new one.
    IdentityLinks,
    /// Every NHS number ever allocated.
    Allocated,
    /// The audit trail (by NHS number, then sequence).
    Audit,
    /// Idempotency records (by request id, byte order).
    Requests,
    /// Every version of every Task and Communication (by kind, id, version).
    Resources,
    /// The current record of each NHS number, with the flags the store keeps beside it (for
    /// export, and for verify to compare what GET and search go by).
    Current,
}

impl Part {
    /// What verify compares: what a copy moves, and the current records it derives.
    pub const COMPARED: [Part; 8] = [
        Part::Versions,
        Part::Current,
        Part::Superseded,
        Part::IdentityLinks,
        Part::Allocated,
        Part::Audit,
        Part::Requests,
        Part::Resources,
    ];

    /// What a copy moves, in the order it moves it.
    pub const COPIED: [Part; 7] = [
        Part::Versions,
        Part::Superseded,
        Part::IdentityLinks,
        Part::Allocated,
        Part::Audit,
        Part::Requests,
        Part::Resources,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Part::Versions => "versions",
            Part::Superseded => "merge links",
            Part::IdentityLinks => "identity links",
            Part::Allocated => "allocated numbers",
            Part::Audit => "audit entries",
            Part::Requests => "idempotency records",
            Part::Current => "current records",
            Part::Resources => "cases and messages",
        }
    }
}

/// Where the next page of a part starts: after this key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum After {
    Start,
    /// An NHS number and, for versions and audit entries, the version or sequence number.
    Number(u64, u64),
    /// A request id.
    Text(String),
    /// A resource: kind, id, version.
    Resource(String, String, u32),
}

/// One stored item.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    Version {
        id: NhsNumber,
        version: Version,
        json: Vec<u8>,
    },
    Current {
        id: NhsNumber,
        record: StoredRecord,
    },
    Superseded {
        id: NhsNumber,
        by: NhsNumber,
    },
    IdentityLink {
        old: NhsNumber,
        new: NhsNumber,
    },
    Allocated(NhsNumber),
    Audit {
        id: NhsNumber,
        seq: u64,
        entry: AuditEntry,
    },
    Request(RequestRecord),
    Resource(ResourceVersion),
}

impl Entry {
    /// The key the next page starts after.
    pub fn key(&self) -> After {
        match self {
            Entry::Version { id, version, .. } => {
                After::Number(id.as_u64(), u64::from(version.get()))
            }
            Entry::Current { id, .. } | Entry::Superseded { id, .. } => {
                After::Number(id.as_u64(), 0)
            }
            Entry::IdentityLink { old, .. } => After::Number(old.as_u64(), 0),
            Entry::Allocated(n) => After::Number(n.as_u64(), 0),
            Entry::Audit { id, seq, .. } => After::Number(id.as_u64(), *seq),
            Entry::Request(r) => After::Text(r.request_id.clone()),
            Entry::Resource(r) => After::Resource(r.kind.name().into(), r.id.clone(), r.version),
        }
    }

    /// What a difference report names: the part and the key, never the contents (a report
    /// may be read by someone who may not read restricted records).
    pub fn describe(&self) -> String {
        match self {
            Entry::Version { id, version, .. } => format!("version {version} of {id}"),
            Entry::Current { id, .. } => format!("the current record of {id}"),
            Entry::Superseded { id, .. } => format!("the merge link of {id}"),
            Entry::IdentityLink { old, .. } => format!("the identity link of {old}"),
            Entry::Allocated(n) => format!("the allocation of {n}"),
            Entry::Audit { id, seq, .. } => format!("audit entry {seq} of {id}"),
            Entry::Request(r) => format!("the idempotency record of request {}", r.request_id),
            Entry::Resource(r) => format!("version {} of {} {}", r.version, r.kind.name(), r.id),
        }
    }
}

/// A store as of one moment, read page by page: every page of a snapshot sees the same
/// data, however long the reading takes and whatever is written meanwhile.
#[async_trait::async_trait]
pub trait Snapshot: Send + Sync {
    /// Up to `limit` entries of `part` after `after`, in key order; an empty page: the part is
    /// done.
    async fn page(&self, part: Part, after: &After, limit: usize)
        -> Result<Vec<Entry>, StoreError>;
}

/// Loading a copy into an empty store: nothing of it is visible, or durable, until
/// [`Restore::finish`]; dropped unfinished (an error, a crash), the store is left empty.
#[async_trait::async_trait]
pub trait Restore: Send {
    /// Stores entries (in the order of [`Part::COPIED`], each part in key order).
    async fn put(&mut self, entries: Vec<Entry>) -> Result<(), StoreError>;

    /// Makes the current records from the last versions, rebuilds the search indexes and
    /// commits; returns how many records.
    async fn finish(self: Box<Self>) -> Result<u64, StoreError>;
}

/// Turns the versions stream into current records: the last version of each NHS number.
#[derive(Default)]
pub struct Currents {
    pending: Option<(NhsNumber, Version, Vec<u8>)>,
}

impl Currents {
    /// Takes the next version; returns the previous record's current version when this one
    /// starts another record.
    pub fn push(
        &mut self,
        id: NhsNumber,
        version: Version,
        json: &[u8],
    ) -> Result<Option<Staged>, StoreError> {
        let done = match &self.pending {
            Some((last, _, _)) if *last != id => self.take()?,
            _ => None,
        };
        self.pending = Some((id, version, json.to_vec()));
        Ok(done)
    }

    /// The last record's current version, and forgets it.
    pub fn take(&mut self) -> Result<Option<Staged>, StoreError> {
        let last = self.last();
        self.pending = None;
        last
    }

    /// The last record's current version so far (a later version of it may follow).
    pub fn last(&self) -> Result<Option<Staged>, StoreError> {
        self.pending
            .clone()
            .map(|(id, version, json)| {
                let record = Patient::from_stored(&json).map_err(StoreError::Corrupt)?;
                if record.id() != id || record.version() != version {
                    return Err(StoreError::Corrupt(format!(
                        "version {version} of {id} holds another record or version"
                    )));
                }
                // the stored bytes as they are; the indexes are rebuilt at the end
                Ok(Staged {
                    id,
                    version,
                    restricted: record.is_restricted(),
                    merged: record.has_merge_state(),
                    invalidated: record.is_invalidated(),
                    json,
                    keys: Vec::new(),
                    packed: None,
                })
            })
            .transpose()
    }
}
