//! FHIR resources beside the patients — the case work's `Task`s and `Communication`s — as the
//! stores keep them: every version of each (with who made it and why), the current version,
//! and index entries for the queries the case work asks (by status, by practice, by due
//! date...). The store knows nothing of what a Task means: the domain hands it documents and
//! the index entries each version is found under, and takes them back.
//!
//! A resource change rides in a [`Change`](super::Change) like a record's: a correction and
//! the entry it adds to its case's Task are one transaction, both or neither.

use serde::{Deserialize, Serialize};

/// Which kind of resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ResourceKind {
    Task,
    Communication,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 2] = [ResourceKind::Task, ResourceKind::Communication];

    /// The FHIR resource type, also the key the stores file it under.
    pub fn name(self) -> &'static str {
        match self {
            ResourceKind::Task => "Task",
            ResourceKind::Communication => "Communication",
        }
    }

    pub fn from_name(name: &str) -> Option<ResourceKind> {
        ResourceKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// One index entry: the resource is found under `key`; entries under one key come back in
/// `sort` order (then by id) — for Tasks the due date, so a queue reads in the order it is
/// worked.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IndexEntry {
    pub key: String,
    pub sort: String,
}

/// One version of a resource, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceVersion {
    pub kind: ResourceKind,
    pub id: String,
    pub version: u32,
    /// The resource (FHIR JSON, `meta.versionId` = `version`).
    pub doc: serde_json::Value,
    /// Who made this version, when, under which request, and why.
    pub audit: ResourceAudit,
    /// The index entries of this version (the current version's are the ones indexed).
    pub index: Vec<IndexEntry>,
    /// Facts kept beside the resource that it does not show: for a Task, the ODS codes of the
    /// practices its patients were registered with when it was written (who may read it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reach: Vec<String>,
}

/// The audit entry of one resource version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceAudit {
    /// RFC 3339 UTC.
    pub at: String,
    pub subject: String,
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ods: Option<String>,
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// What was done: `create`, `patch`, `correction`, `read`...
    pub operation: String,
    /// The JSON Patch applied, or what the service changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<serde_json::Value>,
}

/// A resource write: the new version, and the version it replaces (`None`: a new resource).
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceWrite {
    pub expected: Option<u32>,
    pub new: ResourceVersion,
    /// The index entries of the expected version, which the store removes (taken from the
    /// version the caller read; if it is no longer current the change is refused anyway).
    pub old_index: Vec<IndexEntry>,
}

impl ResourceWrite {
    pub fn create(new: ResourceVersion) -> ResourceWrite {
        ResourceWrite {
            expected: None,
            new,
            old_index: Vec::new(),
        }
    }

    pub fn update(previous: &ResourceVersion, new: ResourceVersion) -> ResourceWrite {
        ResourceWrite {
            expected: Some(previous.version),
            new,
            old_index: previous.index.clone(),
        }
    }
}

/// A query of one index key: the ids under `key`, in sort order, with sort values below
/// `below` only when it is given (e.g. due before today: overdue).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexQuery {
    pub kind: ResourceKind,
    pub key: String,
    pub below: Option<String>,
}

/// Refuses a change whose resource writes expect versions that are no longer current.
pub fn check_expected(
    write: &ResourceWrite,
    current: Option<u32>,
) -> Result<(), super::StoreError> {
    match (current, write.expected) {
        (current, expected) if current == expected => Ok(()),
        (current, expected) => Err(super::StoreError::ResourceConflict {
            kind: write.new.kind,
            id: write.new.id.clone(),
            expected,
            current,
        }),
    }
}
