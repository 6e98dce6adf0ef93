//! Reading the file as a [`dump`](crate::store::dump) stream, and loading a copy into a new
//! file: batches committed without fsync on top of a savepoint taken when the copy starts, so
//! that an unfinished copy — an error, a crash — leaves the file as empty as it was.

use std::ops::Bound;
use std::sync::Arc;

use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::codec::Request;
use super::tables::*;
use super::writer::save_request;
use crate::domain::{NhsNumber, Version};
use crate::store::dump::{After, Currents, Entry, Part, Restore, Snapshot};
use crate::store::{AuditEntry, StoreError};

fn number(v: u64) -> Result<NhsNumber, StoreError> {
    NhsNumber::from_u64(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn version(v: u32) -> Result<Version, StoreError> {
    Version::new(v).ok_or_else(|| StoreError::Corrupt("version 0".into()))
}

/// The pair an [`After`] stands for in a table keyed by NHS number (and a second number).
fn pair(after: &After) -> Option<(u64, u64)> {
    match after {
        After::Number(a, b) => Some((*a, *b)),
        _ => None,
    }
}

/// A table keyed by NHS number alone, read after `after`.
fn by_number<V: redb::Value + 'static>(
    txn: &ReadTransaction,
    table: redb::TableDefinition<u64, V>,
    after: &After,
    limit: usize,
    entry: impl Fn(u64, V::SelfType<'_>) -> Result<Entry, StoreError>,
) -> Result<Vec<Entry>, StoreError> {
    let table = txn.open_table(table)?;
    let from = match pair(after) {
        Some((n, _)) => Bound::Excluded(n),
        None => Bound::Unbounded,
    };
    let mut out = Vec::new();
    for item in table.range::<u64>((from, Bound::Unbounded))?.take(limit) {
        let (k, v) = item?;
        out.push(entry(k.value(), v.value())?);
    }
    Ok(out)
}

pub fn page(
    txn: &ReadTransaction,
    part: Part,
    after: &After,
    limit: usize,
) -> Result<Vec<Entry>, StoreError> {
    match part {
        Part::Versions => {
            let table = txn.open_table(VERSIONS)?;
            let from = match pair(after) {
                Some((n, v)) => Bound::Excluded((n, v as u32)),
                None => Bound::Unbounded,
            };
            let mut out = Vec::new();
            for item in table
                .range::<(u64, u32)>((from, Bound::Unbounded))?
                .take(limit)
            {
                let (k, v) = item?;
                let (id, n) = k.value();
                out.push(Entry::Version {
                    id: number(id)?,
                    version: version(n)?,
                    json: super::packing::unpack(v.value())?.0.into_owned(),
                });
            }
            Ok(out)
        }
        Part::Current => {
            // the newest version of each number, number after number
            let versions = txn.open_table(VERSIONS)?;
            let mut from = match pair(after) {
                Some((n, _)) => Bound::Excluded((n, u32::MAX)),
                None => Bound::Unbounded,
            };
            let mut out = Vec::new();
            while out.len() < limit {
                let next = versions
                    .range::<(u64, u32)>((from, Bound::Unbounded))?
                    .next();
                let Some(entry) = next else { break };
                let id = entry?.0.value().0;
                let (k, v) = versions
                    .range((id, 0)..=(id, u32::MAX))?
                    .next_back()
                    .expect("the number has a version")?;
                out.push(Entry::Current {
                    id: number(id)?,
                    record: super::stored_version(v.value(), version(k.value().1)?)?,
                });
                from = Bound::Excluded((id, u32::MAX));
            }
            Ok(out)
        }
        Part::Superseded => by_number(txn, SUPERSEDED, after, limit, |id, by| {
            Ok(Entry::Superseded {
                id: number(id)?,
                by: number(by)?,
            })
        }),
        Part::IdentityLinks => by_number(txn, IDENTITY_LINKS, after, limit, |old, new| {
            Ok(Entry::IdentityLink {
                old: number(old)?,
                new: number(new)?,
            })
        }),
        Part::Allocated => by_number(txn, ALLOCATED, after, limit, |n, ()| {
            Ok(Entry::Allocated(number(n)?))
        }),
        Part::Audit => {
            // the entries the versions carry, and those in rows of their own, merged in
            // (number, sequence) order (a record's entries are numbered in version order)
            let after = pair(after);
            let mut out: Vec<(u64, u64, AuditEntry)> = Vec::new();
            let versions = txn.open_table(VERSIONS)?;
            let from = after.map_or(Bound::Unbounded, |(n, _)| Bound::Included((n, 0)));
            let mut last = None;
            for item in versions.range::<(u64, u32)>((from, Bound::Unbounded))? {
                let (k, v) = item?;
                let id = k.value().0;
                // enough, and every entry of the last number taken
                if out.len() >= limit && last != Some(id) {
                    break;
                }
                last = Some(id);
                if let Some((seq, json)) = super::packing::audit_of(v.value())? {
                    if after.is_none_or(|a| (id, seq) > a) {
                        out.push((id, seq, super::audit_entry(json)?));
                    }
                }
            }
            let table = txn.open_table(AUDIT)?;
            let from = after.map_or(Bound::Unbounded, Bound::Excluded);
            for item in table
                .range::<(u64, u64)>((from, Bound::Unbounded))?
                .take(limit)
            {
                let (k, v) = item?;
                let (id, seq) = k.value();
                out.push((id, seq, v.value().map_err(StoreError::Corrupt)?));
            }
            out.sort_by_key(|(id, seq, _)| (*id, *seq));
            out.truncate(limit);
            out.into_iter()
                .map(|(id, seq, entry)| {
                    Ok(Entry::Audit {
                        id: number(id)?,
                        seq,
                        entry,
                    })
                })
                .collect()
        }
        Part::Resources => {
            let Some(table) =
                super::resources::missing_is_empty(txn.open_table(RESOURCE_VERSIONS))?
            else {
                return Ok(Vec::new());
            };
            let mut out = Vec::new();
            let range = match after {
                After::Resource(k, i, v) => table.range::<(&str, &str, u32)>((
                    Bound::Excluded((k.as_str(), i.as_str(), *v)),
                    Bound::Unbounded,
                ))?,
                _ => table.range::<(&str, &str, u32)>(..)?,
            };
            for item in range.take(limit) {
                out.push(Entry::Resource(
                    item?.1.value().map_err(StoreError::Corrupt)?,
                ));
            }
            Ok(out)
        }
        Part::Requests => {
            let table = txn.open_table(REQUESTS)?;
            let from = match after {
                After::Text(t) => Bound::Excluded(t.as_str()),
                _ => Bound::Unbounded,
            };
            let mut out = Vec::new();
            for item in table.range::<&str>((from, Bound::Unbounded))?.take(limit) {
                let (k, v) = item?;
                let request: Request = v.value();
                out.push(Entry::Request(request.into_record(k.value())?));
            }
            Ok(out)
        }
    }
}

/// One read transaction: redb's MVCC keeps what it saw for as long as it is open.
pub struct RedbSnapshot(pub ReadTransaction);

#[async_trait::async_trait]
impl Snapshot for RedbSnapshot {
    async fn page(
        &self,
        part: Part,
        after: &After,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        page(&self.0, part, after, limit)
    }
}

/// Whether the file holds anything a copy would overwrite.
fn is_empty(db: &Database) -> Result<bool, StoreError> {
    let txn = db.begin_read()?;
    Ok(txn.open_table(VERSIONS)?.is_empty()?
        && txn.open_table(ALLOCATED)?.is_empty()?
        && txn.open_table(AUDIT)?.is_empty()?
        && txn.open_table(REQUESTS)?.is_empty()?
        && txn.open_table(SUPERSEDED)?.is_empty()?
        && txn.open_table(IDENTITY_LINKS)?.is_empty()?
        && super::resources::missing_is_empty(txn.open_table(RESOURCES))?
            .map_or(Ok(true), |t| t.is_empty())?)
}

/// A copied audit entry goes in the row of the version it names, as the writer puts it; one
/// whose version is missing or carries an entry already gets a row of its own.
fn embed_or_keep(
    tables: &mut Tables,
    id: NhsNumber,
    seq: u64,
    entry: AuditEntry,
) -> Result<(), StoreError> {
    let key = (id.as_u64(), entry.version_after);
    let value = tables.versions.get(key)?.map(|g| g.value().to_vec());
    let fits = entry.patient == id.to_string();
    match value {
        Some(v) if fits && super::packing::is_unaudited(&v) => {
            let json = serde_json::to_vec(&entry).expect("JSON");
            tables
                .versions
                .insert(key, super::packing::with_audit(v, seq, &json).as_slice())?;
        }
        _ => {
            tables.audit.insert((id.as_u64(), seq), Ok(entry))?;
        }
    }
    Ok(())
}

pub struct RedbRestore {
    db: Arc<Database>,
    /// Where an unfinished copy goes back to.
    savepoint: Option<redb::Savepoint>,
    currents: Currents,
    last_seq: u64,
}

impl RedbRestore {
    pub fn begin(db: Arc<Database>, name: &str) -> Result<RedbRestore, StoreError> {
        if !is_empty(&db)? {
            return Err(StoreError::NotEmpty(name.to_string()));
        }
        let savepoint = {
            let txn = db.begin_write()?;
            let savepoint = txn.ephemeral_savepoint()?;
            txn.abort()?;
            savepoint
        };
        Ok(RedbRestore {
            db,
            savepoint: Some(savepoint),
            currents: Currents::default(),
            last_seq: 0,
        })
    }
}

impl Drop for RedbRestore {
    /// An unfinished copy: back to the empty file it started from.
    fn drop(&mut self) {
        if let Some(savepoint) = self.savepoint.take() {
            let undo = || -> Result<(), StoreError> {
                let mut txn = self.db.begin_write()?;
                txn.restore_savepoint(&savepoint)?;
                Ok(txn.commit()?)
            };
            if let Err(e) = undo() {
                tracing::error!(error = %e, "an unfinished copy could not be undone");
            }
        }
    }
}

#[async_trait::async_trait]
impl Restore for RedbRestore {
    async fn put(&mut self, entries: Vec<Entry>) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(redb::Durability::None)?;
        {
            let mut tables = Tables::open(&txn)?;
            for entry in entries {
                match entry {
                    Entry::Version { id, version, json } => {
                        let flags = super::flags_of(&json)?;
                        tables.versions.insert(
                            (id.as_u64(), version.get()),
                            super::packing::pack(&json, flags).as_slice(),
                        )?;
                        // checks that each version holds its own record and number
                        self.currents.push(id, version, &json)?;
                    }
                    Entry::Superseded { id, by } => {
                        tables.superseded.insert(id.as_u64(), by.as_u64())?;
                    }
                    Entry::IdentityLink { old, new } => {
                        tables.identity_links.insert(old.as_u64(), new.as_u64())?;
                    }
                    Entry::Allocated(n) => {
                        tables.allocated.insert(n.as_u64(), ())?;
                    }
                    Entry::Audit { id, seq, entry } => {
                        embed_or_keep(&mut tables, id, seq, entry)?;
                        self.last_seq = self.last_seq.max(seq);
                    }
                    Entry::Request(r) => save_request(&mut tables, &r)?,
                    Entry::Resource(r) => tables.restore_resource(&r)?,
                    // derived from the versions, never copied
                    Entry::Current { .. } => {}
                }
            }
            self.currents.last()?;
        }
        Ok(txn.commit()?)
    }

    async fn finish(mut self: Box<Self>) -> Result<u64, StoreError> {
        let txn = self.db.begin_write()?;
        let records = super::index::rebuild(&txn)?;
        let mut tables = Tables::open(&txn)?;
        tables.set_audit_seq(self.last_seq)?;
        tables.set_records(records)?;
        drop(tables);
        // one durable commit makes every batch before it durable
        txn.commit()?;
        self.savepoint = None;
        Ok(records)
    }
}
