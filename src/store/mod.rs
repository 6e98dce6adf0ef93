//! Storage behind a narrow trait, so that the use cases and the patch layer never see the
//! database: the embedded redb file ([`redb_store::RedbStore`], the default) or PostgreSQL
//! ([`postgres::PgStore`], for several nodes on one database).
//!
//! Every change is one [`Change`] committed in one transaction: the new versions of the records
//! it touches, their copies in the version history, merge links, the audit entries, and the
//! saved response that makes a retry with the same `X-Request-ID` idempotent — all or nothing.

pub mod allocation;
pub mod dump;
pub mod location;
pub mod postgres;
pub mod redb_store;
pub mod resource;

use serde::{Deserialize, Serialize};

use crate::domain::index::Lookup;
use crate::domain::{NhsNumber, Patient, Version};

/// A record as stored: enough to answer a GET without parsing the document.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredRecord {
    pub version: Version,
    /// Confidentiality R or V: the HTTP layer must redact it for most roles.
    pub restricted: bool,
    /// Carries merge state (`link`/`active`): superseded, or the survivor of a merge.
    pub merged: bool,
    /// Invalidated (confidentiality REDACTED): never shown to roles but the back office.
    pub invalidated: bool,
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
    /// The X-Request-ID was already used, within the window, for a different request.
    #[error("X-Request-ID {0} was already used for a different request")]
    RequestIdReused(String),
    /// The configured NHS number allocation range has no unused number left.
    #[error("the NHS number allocation range is exhausted")]
    RangeExhausted,
    /// The database cannot be used right now (I/O error, disk full...). Nothing was changed.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The database holds something this program did not write.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database refused a statement for a reason a retry will not change (a fault of this
    /// program or of the schema it was given).
    #[error("{0}")]
    Internal(String),
    /// A copy goes only into a store that holds nothing yet.
    #[error("{0} is not empty: a copy goes only into a new store")]
    NotEmpty(String),
    /// A Task or Communication changed since the caller read it (or exists already).
    #[error("{} {id} is at version {current:?}, not {expected:?}", .kind.name())]
    ResourceConflict {
        kind: resource::ResourceKind,
        id: String,
        expected: Option<u32>,
        current: Option<u32>,
    },
    /// A bulk load was abandoned by its source; nothing of it was kept.
    #[error("the load was abandoned; nothing of it was stored")]
    Aborted,
}

/// Refuses a batch that holds one NHS number twice (which of the two would be stored?).
pub fn once_each(ids: impl IntoIterator<Item = NhsNumber>) -> Result<(), StoreError> {
    let mut seen = std::collections::HashSet::new();
    match ids.into_iter().find(|id| !seen.insert(*id)) {
        Some(twice) => Err(StoreError::DuplicateInBatch(twice)),
        None => Ok(()),
    }
}

/// What to do when an imported record's NHS number is already stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExistingRecords {
    /// Refuse the whole batch.
    Reject,
    /// Store the imported record as the next version of the existing one (history kept).
    Replace,
}

/// A validated record made ready for writing off the writer's thread: its stored JSON, the
/// facts the record header needs and its search-index keys are computed where the CPU is free
/// (request threads, bulk import's workers), so the writer only writes. The parsed document is
/// not kept: a bulk import holds many of these at once.
pub struct Staged {
    pub id: NhsNumber,
    pub version: Version,
    pub restricted: bool,
    pub merged: bool,
    pub invalidated: bool,
    /// The record's JSON; empty once [`PatientStore::prepare`] made `packed`, which a store
    /// that prepares reads instead.
    pub json: Vec<u8>,
    pub keys: Vec<crate::domain::index::IndexKey>,
    /// The stored form the store keeps, when it made it ahead of the write off its writer's
    /// thread (see [`PatientStore::prepare`]); `None`: the store makes it while writing.
    pub packed: Option<Vec<u8>>,
}

impl Staged {
    pub fn new(record: &Patient) -> Staged {
        Staged {
            id: record.id(),
            version: record.version(),
            restricted: record.is_restricted(),
            merged: record.has_merge_state(),
            invalidated: record.is_invalidated(),
            json: record.to_bytes(),
            keys: crate::domain::index::keys(record.doc()),
            packed: None,
        }
    }
}

impl StoredRecord {
    /// A stored version's JSON with the facts a record header holds, read from the document.
    pub fn from_version(json: Vec<u8>, version: Version) -> Result<StoredRecord, StoreError> {
        let record = Patient::from_stored(&json).map_err(StoreError::Corrupt)?;
        Ok(StoredRecord {
            version,
            restricted: record.is_restricted(),
            merged: record.has_merge_state(),
            invalidated: record.is_invalidated(),
            json,
        })
    }
}

/// The writes of a change made ready for a store: JSON and index keys computed, less the keys
/// the expected version already has (writing them again would cost for nothing: every
/// version's keys stay indexed).
pub fn stage(change: &Change) -> Vec<Staged> {
    change
        .writes
        .iter()
        .map(|w| {
            let mut staged = Staged::new(&w.record);
            staged.keys.retain(|k| !w.known_keys.contains(k));
            staged
        })
        .collect()
}

/// Where the outcome of a change goes once it is durable or has failed. It runs on the writer's
/// thread, so it must only hand the result on (to a channel), never block.
pub type Reply<T> = Box<dyn FnOnce(Result<T, StoreError>) + Send>;

pub(crate) fn writer_gone() -> StoreError {
    StoreError::Unavailable("the writer has stopped".into())
}

/// Submits with `submit` and awaits the outcome without holding a thread (for async callers).
pub async fn durable<T: Send + 'static>(submit: impl FnOnce(Reply<T>)) -> Result<T, StoreError> {
    let (reply, outcome) = tokio::sync::oneshot::channel();
    submit(Box::new(move |r| {
        let _ = reply.send(r);
    }));
    outcome.await.map_err(|_| writer_gone())?
}

/// What a bulk load's source hands the store next.
pub enum BulkStep {
    /// Records to store (one write transaction).
    Batch(Vec<Staged>),
    /// Everything was handed over: make it durable.
    Done,
    /// The source found a problem: undo everything this load stored.
    Abort,
}

/// One audited change to one record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// RFC 3339 UTC time of the change.
    pub at: String,
    /// The token subject (`anonymous` in sandbox mode without a token).
    pub subject: String,
    pub role: String,
    pub request_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// `patch`, `flag`, `death-correction`, `merge` or `unmerge`.
    pub operation: String,
    pub patient: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_before: Option<u32>,
    pub version_after: u32,
    /// The operations applied (a PATCH's patches, or what a merge did).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The other NHS number of a merge or a change of identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub related: Option<String>,
}

/// A response saved with the change it reports, to answer a retry with the same X-Request-ID.
///
/// The body is kept as a reference to the record version the change produced, not as a copy
/// of the bytes sent: a retry is rendered again from that version through the view rules of
/// the moment, so a record restricted since the first answer is not replayed unredacted (and
/// each change stores a few bytes, not a few kilobytes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedResponse {
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(deserialize_with = "saved_body")]
    pub body: SavedBody,
}

impl SavedResponse {
    /// 200 with the record and its ETag (an update).
    pub fn updated(record: &Patient) -> SavedResponse {
        SavedResponse {
            status: 200,
            etag: Some(record.version().etag()),
            location: None,
            body: SavedBody::patient(record),
        }
    }

    /// 201 with the new record, its ETag and where it is.
    pub fn created(record: &Patient, location: String) -> SavedResponse {
        SavedResponse {
            status: 201,
            location: Some(location),
            ..SavedResponse::updated(record)
        }
    }

    /// 200 with an operation's Parameters: its outcome and the record it left.
    pub fn operation(outcome: String, result: &Patient) -> SavedResponse {
        SavedResponse {
            status: 200,
            etag: None,
            location: None,
            body: SavedBody::parameters(outcome, result),
        }
    }
}

/// What a saved response's body shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SavedBody {
    /// A Patient: the record `id` at `version`.
    Patient { id: String, version: u32 },
    /// An operation's Parameters: the `outcome` sentence and the record `id` at `version` as
    /// its result.
    Parameters {
        outcome: String,
        id: String,
        version: u32,
    },
    /// A Task or Communication: `id` at `version`, of `kind`.
    Resource {
        kind: resource::ResourceKind,
        id: String,
        version: u32,
    },
}

impl SavedBody {
    pub fn patient(p: &Patient) -> SavedBody {
        SavedBody::Patient {
            id: p.id().to_string(),
            version: p.version().get(),
        }
    }

    pub fn parameters(outcome: String, result: &Patient) -> SavedBody {
        SavedBody::Parameters {
            outcome,
            id: result.id().to_string(),
            version: result.version().get(),
        }
    }

    /// The patient record version the body shows (none for a Task or Communication).
    pub fn record(&self) -> Option<(&str, u32)> {
        match self {
            SavedBody::Patient { id, version } | SavedBody::Parameters { id, version, .. } => {
                Some((id, *version))
            }
            SavedBody::Resource { .. } => None,
        }
    }
}

/// Reads a saved body: a reference, or — written before references — the response's JSON
/// text, from which the reference is taken (its Patient, or its Parameters' outcome and
/// result), so that those are rendered afresh too.
fn saved_body<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SavedBody, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OnDisk {
        Reference(SavedBody),
        Text(String),
    }
    let text = match OnDisk::deserialize(d)? {
        OnDisk::Reference(r) => return Ok(r),
        OnDisk::Text(t) => t,
    };
    let bad = || serde::de::Error::custom("a saved response body that names no record");
    let v: serde_json::Value = serde_json::from_str(&text).map_err(serde::de::Error::custom)?;
    let reference = |p: &serde_json::Value| -> Option<(String, u32)> {
        Some((
            p.get("id")?.as_str()?.to_string(),
            p.pointer("/meta/versionId")?.as_str()?.parse().ok()?,
        ))
    };
    match v.get("resourceType").and_then(serde_json::Value::as_str) {
        Some("Patient") => {
            let (id, version) = reference(&v).ok_or_else(bad)?;
            Ok(SavedBody::Patient { id, version })
        }
        Some("Parameters") => {
            let outcome = v
                .pointer("/parameter/0/resource/issue/0/diagnostics")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_string();
            let (id, version) = v
                .pointer("/parameter/1/resource")
                .and_then(reference)
                .ok_or_else(bad)?;
            Ok(SavedBody::Parameters {
                outcome,
                id,
                version,
            })
        }
        _ => Err(bad()),
    }
}

/// The idempotency record of a request.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestRecord {
    pub request_id: String,
    /// Hash of who asked and what (method, path, preconditions, body).
    pub fingerprint: [u8; 32],
    /// Seconds since the Unix epoch when it was saved.
    pub saved_at: u64,
    pub response: SavedResponse,
}

/// A record write: the new version and the version it replaces (`None` for a new record).
#[derive(Clone, Debug)]
pub struct RecordWrite {
    pub expected: Option<Version>,
    pub record: Patient,
    /// The index keys of the expected version: the indexes hold them already (every version's
    /// keys are kept), so only the new version's other keys are written. Taken from the record
    /// the caller already has in hand; if it is no longer current the change is refused anyway.
    pub known_keys: Vec<crate::domain::index::IndexKey>,
}

impl RecordWrite {
    /// A new record (its NHS number must not be stored yet).
    pub fn create(record: Patient) -> RecordWrite {
        RecordWrite {
            expected: None,
            record,
            known_keys: Vec::new(),
        }
    }

    /// The next version of `previous`, which must still be current when the change commits.
    pub fn update(previous: &Patient, record: Patient) -> RecordWrite {
        RecordWrite {
            expected: Some(previous.version()),
            record,
            known_keys: crate::domain::index::keys(previous.doc()),
        }
    }
}

/// Everything one change writes, in one transaction.
#[derive(Clone, Debug, Default)]
pub struct Change {
    pub writes: Vec<RecordWrite>,
    /// `(source, target)`: source is now superseded by target.
    pub supersede: Vec<(NhsNumber, NhsNumber)>,
    /// Sources no longer superseded (an unmerge).
    pub unsupersede: Vec<NhsNumber>,
    /// `(old, new)`: a change of identity, sealed (only the back office ever sees it).
    pub identity_links: Vec<(NhsNumber, NhsNumber)>,
    pub audit: Vec<AuditEntry>,
    /// Tasks and Communications written with the records (a correction and its case).
    pub resources: Vec<resource::ResourceWrite>,
    pub request: Option<RequestRecord>,
    /// Idempotency records saved before this time (Unix seconds) may be forgotten.
    pub forget_requests_before: u64,
}

/// What a commit did.
#[derive(Clone, Debug, PartialEq)]
pub enum Committed {
    Applied,
    /// The same request was already committed; here is its response. Nothing was written.
    Replayed(SavedResponse),
}

/// Builds the change that needs a freshly allocated NHS number. It is called with the number
/// the store allocated, inside the transaction; calling it again with the same number gives the
/// same change (callers rebuild the response that way).
pub type AllocatingChange = std::sync::Arc<dyn Fn(NhsNumber) -> Change + Send + Sync>;

/// What both stores (redb, PostgreSQL) provide. Every call is async: the embedded store answers
/// at once from its page cache (and hands changes to its writer thread), the PostgreSQL store
/// talks to the server.
#[async_trait::async_trait]
pub trait PatientStore: Send + Sync + 'static {
    /// The current version of a record (superseded records included).
    async fn get(&self, id: NhsNumber) -> Result<Option<StoredRecord>, StoreError>;

    /// One version of a record, current or past.
    /// The current records of `ids` that exist, in the order of `ids` (one round trip where
    /// the store is across a network).
    async fn get_many(
        &self,
        ids: &[NhsNumber],
    ) -> Result<Vec<(NhsNumber, StoredRecord)>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(record) = self.get(*id).await? {
                out.push((*id, record));
            }
        }
        Ok(out)
    }

    async fn get_version(
        &self,
        id: NhsNumber,
        version: Version,
    ) -> Result<Option<StoredRecord>, StoreError>;

    /// Every version of a record, newest first.
    async fn history(&self, id: NhsNumber) -> Result<Vec<StoredRecord>, StoreError>;

    /// The record that directly supersedes `id`, if it was merged.
    async fn superseded_by(&self, id: NhsNumber) -> Result<Option<NhsNumber>, StoreError>;

    /// Commits a change atomically, durably, before answering. Each write's `expected` version
    /// must still be current (otherwise [`StoreError::VersionConflict`] and nothing is
    /// written). A request already saved with the same fingerprint is
    /// [`Committed::Replayed`]; with another fingerprint, [`StoreError::RequestIdReused`].
    async fn commit(&self, change: Change) -> Result<Committed, StoreError>;

    /// Allocates an unused NHS number from `prefixes` (first nine digits, inclusive; at random,
    /// never one handed out before, nor one already stored) and commits the change `build`
    /// makes for it — the allocation and the change in one transaction. A replayed request
    /// allocates nothing.
    async fn commit_allocating(
        &self,
        prefixes: (u64, u64),
        build: AllocatingChange,
    ) -> Result<(Committed, NhsNumber), StoreError>;

    /// The idempotency record of a request id, if one is kept.
    async fn request(&self, request_id: &str) -> Result<Option<RequestRecord>, StoreError>;

    /// The audit trail of a patient, oldest first.
    async fn audit(&self, id: NhsNumber) -> Result<Vec<AuditEntry>, StoreError>;

    /// Makes a staged write's stored form ahead of the write, on the caller's thread (a bulk
    /// import's workers), so that the single writer only writes; the JSON may go (a batch in
    /// memory then holds only stored forms). Stores that keep the JSON as it is do nothing.
    fn prepare(&self, _staged: &mut Staged) {}

    /// Stores new records in one transaction: all of them or none.
    async fn insert_batch(
        &self,
        records: &[Patient],
        existing: ExistingRecords,
    ) -> Result<(), StoreError>;

    /// Stores a stream of batches as one unit: the load becomes durable only at
    /// [`BulkStep::Done`]. On [`BulkStep::Abort`], an error (e.g. an existing record under
    /// [`ExistingRecords::Reject`], or a number twice) or a crash, the store is left as it was
    /// before the load. Returns how many records were stored.
    async fn bulk_load(
        &self,
        existing: ExistingRecords,
        next: &mut (dyn FnMut() -> BulkStep + Send),
    ) -> Result<u64, StoreError>;

    /// Whether the store can be read and written now (readiness, `/_status`): a read and a
    /// small durable write that changes no record. The error says why not (disk full, server
    /// unreachable, a read-only replica…) and names no patient.
    async fn readiness(&self) -> Result<(), StoreError>;

    /// How many records are stored.
    async fn count(&self) -> Result<u64, StoreError>;

    /// The records the search indexes hold under any of `lookups` (a superset of the matches:
    /// every value any version held is indexed; callers check each record).
    async fn candidates(&self, lookups: &[Lookup]) -> Result<Vec<NhsNumber>, StoreError>;

    /// Rebuilds every search index from the stored versions; returns how many records.
    async fn reindex(&self) -> Result<u64, StoreError>;

    /// Compares the indexes with the records; each difference is described (empty: consistent).
    async fn check_indexes(&self) -> Result<Vec<String>, StoreError>;

    /// The store as of now, to read whole (see [`dump`]): a read transaction held open.
    async fn snapshot(&self) -> Result<Box<dyn dump::Snapshot>, StoreError>;

    /// Begins loading a copy of another store into this one, which must hold nothing yet.
    async fn restore(&self) -> Result<Box<dyn dump::Restore>, StoreError>;

    /// The current version of a Task or Communication.
    async fn resource(
        &self,
        kind: resource::ResourceKind,
        id: &str,
    ) -> Result<Option<resource::ResourceVersion>, StoreError>;

    /// Every version of a Task or Communication, newest first.
    async fn resource_history(
        &self,
        kind: resource::ResourceKind,
        id: &str,
    ) -> Result<Vec<resource::ResourceVersion>, StoreError>;

    /// The ids indexed under one key, in sort order (see [`resource::IndexQuery`]).
    async fn resource_ids(&self, query: &resource::IndexQuery) -> Result<Vec<String>, StoreError>;

    /// Follows merges from `id` to the surviving record (itself when not superseded).
    async fn survivor(&self, id: NhsNumber) -> Result<NhsNumber, StoreError> {
        let mut current = id;
        for _ in 0..64 {
            match self.superseded_by(current).await? {
                Some(next) => current = next,
                None => return Ok(current),
            }
        }
        Err(StoreError::Corrupt(format!(
            "merge chain from {id} does not end"
        )))
    }
}
