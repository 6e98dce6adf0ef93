//! The embedded redb store: one file, one writer thread, MVCC readers.
//!
//! * [`tables`] — the tables and what one write transaction opens;
//! * [`codec`] — the layouts of the values this program encodes itself;
//! * [`index`] — the search indexes: writing, looking up, rebuilding, checking;
//! * [`writer`] — group commit, NHS number allocation, and recovery after a storage failure;
//! * this module — opening the file and the queries of [`PatientStore`].
//!
//! All tables are created when the database is opened, so readers never meet a missing table.
//! redb commits are durable (fsync) when `commit` returns: an acknowledged change survives a
//! crash. Reads are short read transactions; changes go to the writer thread.

mod codec;
mod dump;
mod error;
mod index;
mod migrate;
mod packing;
mod resources;
mod tables;
#[cfg(test)]
mod tests;
mod writer;

use std::path::Path;
use std::sync::{mpsc, Arc};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};

pub use error::OpenError;
pub use migrate::{migrate, Migrated};
pub use tables::FORMAT;
use tables::*;
use writer::{answer, fail, writer_loop, Handle, Job};

use super::resource::{IndexQuery, ResourceKind, ResourceVersion};
use super::{
    durable, stage, writer_gone, AllocatingChange, AuditEntry, BulkStep, Change, Committed,
    ExistingRecords, PatientStore, Reply, RequestRecord, Staged, StoreError, StoredRecord,
};
use crate::domain::index::Lookup;
use crate::domain::{NhsNumber, Patient, Version};

pub struct RedbStore {
    db: Arc<Handle>,
    /// Changes go to the writer thread, which commits them in groups (see [`writer_loop`]).
    jobs: Option<mpsc::Sender<Job>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for RedbStore {
    /// Stops the writer after the changes already queued, so the database closes cleanly.
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// Records the store format in a new database, and refuses one written in another.
fn check_format(meta: &mut redb::Table<'_, &'static str, &'static [u8]>) -> Result<(), StoreError> {
    let format = meta.get("format")?.map(|g| g.value().to_vec());
    match format.as_deref() {
        None => {
            meta.insert("format", [FORMAT].as_slice())?;
            Ok(())
        }
        Some([FORMAT]) => Ok(()),
        // read as it is; `pds-facade migrate` rewrites it in format 2
        Some([FORMAT_1]) => Ok(()),
        Some(f) => Err(StoreError::Corrupt(format!(
            "unknown store format {f:?} (this program writes {FORMAT})"
        ))),
    }
}

/// A file that does not count its records yet (new, or of format 1) starts counting: from
/// format 1's table of current records (no longer kept), or from nothing.
pub(super) fn count_records_once(
    txn: &redb::WriteTransaction,
    t: &mut Tables,
) -> Result<(), StoreError> {
    if tables::meta_u64(&t.meta, tables::RECORDS)?.is_some() {
        return Ok(());
    }
    let format_1: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("patients");
    let has_it = txn
        .list_tables()?
        .any(|h| redb::TableHandle::name(&h) == "patients");
    let n = if has_it {
        txn.open_table(format_1)?.len()?
    } else {
        0
    };
    t.set_records(n)
}

/// redb's page cache when none is configured (redb's own default).
pub const DEFAULT_CACHE_BYTES: usize = 1024 * 1024 * 1024;

fn create(path: &Path, cache_bytes: usize) -> Result<Database, redb::DatabaseError> {
    Database::builder().set_cache_size(cache_bytes).create(path)
}

impl RedbStore {
    /// Opens (creating if needed) the database file at `path`, with the default cache.
    pub fn open(path: &Path) -> Result<RedbStore, OpenError> {
        RedbStore::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// Opens (creating if needed) the database file at `path`; redb caches up to `cache_bytes`
    /// of pages in memory (most of the process's memory beyond a few MiB).
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<RedbStore, OpenError> {
        let shown = path.display().to_string();
        let other = |reason: String| OpenError::Other {
            path: shown.clone(),
            reason,
        };
        // the file holds every record unredacted: readable by its owner only, whatever the umask
        // (an existing file keeps the permissions its owner gave it)
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path);
        }
        let db = match create(path, cache_bytes) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(OpenError::AlreadyOpen(shown))
            }
            Err(redb::DatabaseError::Storage(redb::StorageError::Io(e)))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
                ) =>
            {
                return Err(OpenError::NotWritable {
                    path: shown,
                    reason: e.to_string(),
                })
            }
            Err(e) => return Err(other(e.to_string())),
        };
        let txn = db.begin_write().map_err(|e| other(e.to_string()))?;
        let checked = Tables::open(&txn).and_then(|mut t| {
            check_format(&mut t.meta)?;
            count_records_once(&txn, &mut t)?;
            index::build_birth_first_once(&mut t.indexes, &mut t.meta)
        });
        checked.map_err(|e| other(e.to_string()))?;
        txn.commit().map_err(|e| other(e.to_string()))?;
        let db = Arc::new(Handle {
            path: path.to_path_buf(),
            cache_bytes,
            current: std::sync::RwLock::new(Some(Arc::new(db))),
        });
        let (jobs, queue) = mpsc::channel();
        let writer_db = db.clone();
        let writer = std::thread::Builder::new()
            .name("redb-writer".into())
            .spawn(move || writer_loop(writer_db, queue))
            .map_err(|e| other(e.to_string()))?;
        Ok(RedbStore {
            db,
            jobs: Some(jobs),
            writer: Some(writer),
        })
    }
}

impl RedbStore {
    /// Hands a change to the writer; `reply` gets its outcome once it is durable (or failed).
    pub fn submit(&self, change: Change, reply: Reply<Committed>) {
        let mut staged = stage(&change);
        for s in &mut staged {
            s.packed = Some(tables::pack(s));
        }
        let job = Job::Commit {
            staged,
            change: Box::new(change),
            reply,
        };
        if let Err(job) = self.send(job) {
            answer(fail(job, writer_gone()), &Ok(()));
        }
    }

    /// [`RedbStore::submit`] for a change that needs a newly allocated NHS number.
    pub fn submit_allocating(
        &self,
        prefixes: (u64, u64),
        build: AllocatingChange,
        reply: Reply<(Committed, NhsNumber)>,
    ) {
        let job = Job::Allocate {
            prefixes,
            build,
            reply,
        };
        if let Err(job) = self.send(job) {
            answer(fail(job, writer_gone()), &Ok(()));
        }
    }

    /// Hands a readiness check to the writer (see [`Job::Probe`]).
    fn submit_probe(&self, reply: Reply<()>) {
        if let Err(job) = self.send(Job::Probe { reply }) {
            answer(fail(job, writer_gone()), &Ok(()));
        }
    }

    fn db(&self) -> Result<Arc<Database>, StoreError> {
        self.db.get()
    }

    /// Queues a job for the writer; hands it back if the writer has stopped.
    fn send(&self, job: Job) -> Result<(), Job> {
        match &self.jobs {
            Some(jobs) => jobs.send(job).map_err(|e| e.0),
            None => Err(job),
        }
    }
}

/// One batch of a bulk load: one non-durable transaction, every table opened once.
fn load_batch(
    db: &Database,
    batch: &[Staged],
    existing: ExistingRecords,
) -> Result<(), StoreError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(redb::Durability::None)?;
    Tables::open(&txn)?.import(batch, existing)?;
    Ok(txn.commit()?)
}

/// A `versions` value as a stored record: its flags from the value's header (a format-1 value
/// has none, and is parsed for them).
fn stored_version(value: &[u8], version: Version) -> Result<StoredRecord, StoreError> {
    match packing::unpack(value)? {
        (json, Some(flags)) => Ok(StoredRecord {
            version,
            restricted: flags.restricted,
            merged: flags.merged,
            invalidated: flags.invalidated,
            json: json.into_owned(),
        }),
        (json, None) => StoredRecord::from_version(json.into_owned(), version),
    }
}

/// An audit entry as a version carries it.
fn audit_entry(json: &[u8]) -> Result<AuditEntry, StoreError> {
    serde_json::from_slice(json).map_err(|e| StoreError::Corrupt(format!("an audit entry: {e}")))
}

/// The flags of a record's JSON, read from the document.
fn flags_of(json: &[u8]) -> Result<packing::Flags, StoreError> {
    let record = Patient::from_stored(json).map_err(StoreError::Corrupt)?;
    Ok(packing::Flags {
        restricted: record.is_restricted(),
        merged: record.has_merge_state(),
        invalidated: record.is_invalidated(),
    })
}

#[async_trait::async_trait]
impl PatientStore for RedbStore {
    fn prepare(&self, staged: &mut Staged) {
        staged.packed = Some(tables::pack(staged));
        // the stored form is all the load writes: a batch in memory holds only that
        staged.json = Vec::new();
    }

    async fn get(&self, id: NhsNumber) -> Result<Option<StoredRecord>, StoreError> {
        let txn = self.db()?.begin_read()?;
        let table = txn.open_table(VERSIONS)?;
        let key = id.as_u64();
        // the newest version is the current record
        let newest = table.range((key, 0)..=(key, u32::MAX))?.next_back();
        let Some(entry) = newest else {
            return Ok(None);
        };
        let (k, v) = entry?;
        let version =
            Version::new(k.value().1).ok_or_else(|| StoreError::Corrupt("version 0".into()))?;
        stored_version(v.value(), version).map(Some)
    }

    async fn get_version(
        &self,
        id: NhsNumber,
        version: Version,
    ) -> Result<Option<StoredRecord>, StoreError> {
        let txn = self.db()?.begin_read()?;
        let table = txn.open_table(VERSIONS)?;
        let Some(guard) = table.get((id.as_u64(), version.get()))? else {
            return Ok(None);
        };
        stored_version(guard.value(), version).map(Some)
    }

    async fn history(&self, id: NhsNumber) -> Result<Vec<StoredRecord>, StoreError> {
        let txn = self.db()?.begin_read()?;
        let table = txn.open_table(VERSIONS)?;
        let key = id.as_u64();
        let mut out = Vec::new();
        for entry in table.range((key, 0)..=(key, u32::MAX))?.rev() {
            let (k, v) = entry?;
            let version =
                Version::new(k.value().1).ok_or_else(|| StoreError::Corrupt("version 0".into()))?;
            out.push(stored_version(v.value(), version)?);
        }
        Ok(out)
    }

    async fn superseded_by(&self, id: NhsNumber) -> Result<Option<NhsNumber>, StoreError> {
        let txn = self.db()?.begin_read()?;
        let table = txn.open_table(SUPERSEDED)?;
        let Some(guard) = table.get(id.as_u64())? else {
            return Ok(None);
        };
        NhsNumber::from_u64(guard.value())
            .map(Some)
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    async fn commit(&self, change: Change) -> Result<Committed, StoreError> {
        durable(|reply| self.submit(change, reply)).await
    }

    async fn commit_allocating(
        &self,
        prefixes: (u64, u64),
        build: AllocatingChange,
    ) -> Result<(Committed, NhsNumber), StoreError> {
        durable(|reply| self.submit_allocating(prefixes, build, reply)).await
    }

    async fn request(&self, request_id: &str) -> Result<Option<RequestRecord>, StoreError> {
        let txn = self.db()?.begin_read()?;
        let table = txn.open_table(REQUESTS)?;
        let Some(guard) = table.get(request_id)? else {
            return Ok(None);
        };
        guard.value().into_record(request_id).map(Some)
    }

    async fn audit(&self, id: NhsNumber) -> Result<Vec<AuditEntry>, StoreError> {
        let txn = self.db()?.begin_read()?;
        let key = id.as_u64();
        // the entries in the versions they wrote, and any in rows of their own (format 1, or
        // copied from another store without the version they name)
        let mut out = Vec::new();
        let versions = txn.open_table(VERSIONS)?;
        for entry in versions.range((key, 0)..=(key, u32::MAX))? {
            let (_, v) = entry?;
            if let Some((seq, json)) = packing::audit_of(v.value())? {
                out.push((seq, audit_entry(json)?));
            }
        }
        let table = txn.open_table(AUDIT)?;
        for entry in table.range((key, 0)..=(key, u64::MAX))? {
            let (k, v) = entry?;
            out.push((k.value().1, v.value().map_err(StoreError::Corrupt)?));
        }
        out.sort_by_key(|(seq, _)| *seq);
        Ok(out.into_iter().map(|(_, e)| e).collect())
    }

    async fn insert_batch(
        &self,
        records: &[Patient],
        existing: ExistingRecords,
    ) -> Result<(), StoreError> {
        super::once_each(records.iter().map(Patient::id))?;
        let staged: Vec<Staged> = records.iter().map(Staged::new).collect();
        let txn = self.db()?.begin_write()?;
        Tables::open(&txn)?.import(&staged, existing)?;
        Ok(txn.commit()?)
    }

    async fn bulk_load(
        &self,
        existing: ExistingRecords,
        next: &mut (dyn FnMut() -> BulkStep + Send),
    ) -> Result<u64, StoreError> {
        let db = self.db()?;
        // where an abandoned or failed load goes back to (kept in memory while the load runs;
        // a crash goes back there anyway, as no commit of the load is durable before the end)
        let savepoint = {
            let txn = db.begin_write()?;
            let savepoint = txn.ephemeral_savepoint()?;
            txn.abort()?;
            savepoint
        };
        let undo = |why: StoreError| -> StoreError {
            let restore = || -> Result<(), StoreError> {
                let mut txn = db.begin_write()?;
                txn.restore_savepoint(&savepoint)?;
                Ok(txn.commit()?)
            };
            restore().err().unwrap_or(why)
        };
        let mut stored = 0u64;
        loop {
            match next() {
                BulkStep::Batch(batch) => {
                    if let Err(e) = load_batch(&db, &batch, existing) {
                        return Err(undo(e));
                    }
                    stored += batch.len() as u64;
                }
                BulkStep::Abort => return Err(undo(StoreError::Aborted)),
                BulkStep::Done => {
                    // one durable commit makes every batch before it durable
                    let txn = db.begin_write()?;
                    txn.commit().map_err(|e| undo(e.into()))?;
                    return Ok(stored);
                }
            }
        }
    }

    async fn readiness(&self) -> Result<(), StoreError> {
        // a read, then a durable write through the writer (as every change takes)
        {
            let txn = self.db()?.begin_read()?;
            txn.open_table(META)?.get("format")?;
        }
        durable(|reply| self.submit_probe(reply)).await
    }

    async fn snapshot(&self) -> Result<Box<dyn super::dump::Snapshot>, StoreError> {
        Ok(Box::new(dump::RedbSnapshot(self.db()?.begin_read()?)))
    }

    async fn restore(&self) -> Result<Box<dyn super::dump::Restore>, StoreError> {
        Ok(Box::new(dump::RedbRestore::begin(
            self.db()?,
            "the redb file",
        )?))
    }

    async fn count(&self) -> Result<u64, StoreError> {
        let txn = self.db()?.begin_read()?;
        Ok(tables::meta_u64(&txn.open_table(META)?, tables::RECORDS)?.unwrap_or(0))
    }

    async fn candidates(&self, lookups: &[Lookup]) -> Result<Vec<NhsNumber>, StoreError> {
        index::candidates(&self.db()?.begin_read()?, lookups)
    }

    async fn reindex(&self) -> Result<u64, StoreError> {
        let txn = self.db()?.begin_write()?;
        let records = index::rebuild(&txn)?;
        txn.commit()?;
        Ok(records)
    }

    async fn check_indexes(&self) -> Result<Vec<String>, StoreError> {
        index::check(&self.db()?.begin_read()?)
    }

    async fn resource(
        &self,
        kind: ResourceKind,
        id: &str,
    ) -> Result<Option<ResourceVersion>, StoreError> {
        resources::current(&self.db()?.begin_read()?, kind, id)
    }

    async fn resource_history(
        &self,
        kind: ResourceKind,
        id: &str,
    ) -> Result<Vec<ResourceVersion>, StoreError> {
        resources::history(&self.db()?.begin_read()?, kind, id)
    }

    async fn resource_ids(&self, query: &IndexQuery) -> Result<Vec<String>, StoreError> {
        resources::ids(&self.db()?.begin_read()?, query)
    }
}
