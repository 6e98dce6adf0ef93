//! The embedded redb store.
//!
//! Tables:
//! * `patients`: NHS number → current record, as `[format][flags][version u32 LE][JSON]`, so a
//!   GET can answer with the version, the restricted flag and the bytes without parsing JSON;
//! * `versions`: (NHS number, version) → JSON of every version, current included;
//! * `superseded`: merged NHS number → the NHS number that superseded it;
//! * `identity_links`: old NHS number of a change of identity → the new one (sealed);
//! * `allocated`: every NHS number ever allocated → ();
//! * `audit`: (NHS number, sequence) → audit entry (JSON), sequence global and increasing;
//! * `requests`: X-Request-ID → `[fingerprint 32][saved_at u64 LE][saved response JSON]`, with
//!   `requests_by_time`: (saved_at, X-Request-ID) → () to forget old ones cheaply;
//! * `meta`: store-format facts (`format` = 1, `audit_seq`; `next_nhs_prefix`, the sequential
//!   allocator's counter in databases written before allocation became random, is left as it is).
//!
//! All tables are created when the database is opened, so readers never meet a missing table.
//! redb commits are durable (fsync) when `commit` returns: an acknowledged change survives a
//! crash. Calls block; async callers run writes on a blocking thread.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use redb::{
    Database, MultimapTableDefinition, ReadableDatabase, ReadableMultimapTable, ReadableTable,
    ReadableTableMetadata, TableDefinition, WriteTransaction,
};

use super::{
    writer_gone, AllocatingChange, AuditEntry, BulkStep, Change, Committed, ExistingRecords,
    PatientStore, Reply, RequestRecord, SavedResponse, Staged, StoreError, StoredRecord,
};
use crate::domain::index::{self, IndexKey, Lookup};
use crate::domain::{NhsNumber, Patient, Version};

const PATIENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("patients");
const VERSIONS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("versions");
const SUPERSEDED: TableDefinition<u64, u64> = TableDefinition::new("superseded");
const IDENTITY_LINKS: TableDefinition<u64, u64> = TableDefinition::new("identity_links");
/// Every NHS number ever allocated, so that none is allocated twice whatever becomes of its record.
const ALLOCATED: TableDefinition<u64, ()> = TableDefinition::new("allocated");
const AUDIT: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("audit");
const REQUESTS: TableDefinition<&str, &[u8]> = TableDefinition::new("requests");
const REQUESTS_BY_TIME: TableDefinition<(u64, &str), ()> = TableDefinition::new("requests_by_time");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Search indexes: key → NHS numbers of every record any version of which had that key.
const IDX_FAMILY: MultimapTableDefinition<(&str, u32), u64> =
    MultimapTableDefinition::new("idx_family_birth");
const IDX_PHONETIC: MultimapTableDefinition<(&str, u32), u64> =
    MultimapTableDefinition::new("idx_phonetic_birth");
const IDX_GIVEN: MultimapTableDefinition<(&str, u32), u64> =
    MultimapTableDefinition::new("idx_given_birth");
const IDX_POSTCODE: MultimapTableDefinition<&str, u64> =
    MultimapTableDefinition::new("idx_postcode");
const IDX_PHONE: MultimapTableDefinition<&str, u64> = MultimapTableDefinition::new("idx_phone");
const IDX_EMAIL: MultimapTableDefinition<&str, u64> = MultimapTableDefinition::new("idx_email");
const IDX_GP: MultimapTableDefinition<&str, u64> = MultimapTableDefinition::new("idx_gp");
const DATED_INDEXES: [MultimapTableDefinition<(&str, u32), u64>; 3] =
    [IDX_FAMILY, IDX_PHONETIC, IDX_GIVEN];
const FLAT_INDEXES: [MultimapTableDefinition<&str, u64>; 4] =
    [IDX_POSTCODE, IDX_PHONE, IDX_EMAIL, IDX_GP];

const FORMAT: u8 = 1;
const FLAG_RESTRICTED: u8 = 1;
const FLAG_MERGED: u8 = 2;
const FLAG_INVALIDATED: u8 = 4;
const HEADER: usize = 6;
/// Every table a write transaction touches, opened once per transaction (not once per change:
/// opening a table is a lookup of its own).
struct Tables<'t> {
    patients: redb::Table<'t, u64, &'static [u8]>,
    versions: redb::Table<'t, (u64, u32), &'static [u8]>,
    superseded: redb::Table<'t, u64, u64>,
    identity_links: redb::Table<'t, u64, u64>,
    allocated: redb::Table<'t, u64, ()>,
    audit: redb::Table<'t, (u64, u64), &'static [u8]>,
    requests: redb::Table<'t, &'static str, &'static [u8]>,
    requests_by_time: redb::Table<'t, (u64, &'static str), ()>,
    meta: redb::Table<'t, &'static str, &'static [u8]>,
    dated: Vec<redb::MultimapTable<'t, (&'static str, u32), u64>>,
    flat: Vec<redb::MultimapTable<'t, &'static str, u64>>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Tables<'t>, StoreError> {
        let mut dated = Vec::with_capacity(DATED_INDEXES.len());
        for t in DATED_INDEXES {
            dated.push(txn.open_multimap_table(t).map_err(unavailable)?);
        }
        let mut flat = Vec::with_capacity(FLAT_INDEXES.len());
        for t in FLAT_INDEXES {
            flat.push(txn.open_multimap_table(t).map_err(unavailable)?);
        }
        Ok(Tables {
            patients: txn.open_table(PATIENTS).map_err(unavailable)?,
            versions: txn.open_table(VERSIONS).map_err(unavailable)?,
            superseded: txn.open_table(SUPERSEDED).map_err(unavailable)?,
            identity_links: txn.open_table(IDENTITY_LINKS).map_err(unavailable)?,
            allocated: txn.open_table(ALLOCATED).map_err(unavailable)?,
            audit: txn.open_table(AUDIT).map_err(unavailable)?,
            requests: txn.open_table(REQUESTS).map_err(unavailable)?,
            requests_by_time: txn.open_table(REQUESTS_BY_TIME).map_err(unavailable)?,
            meta: txn.open_table(META).map_err(unavailable)?,
            dated,
            flat,
        })
    }

    /// Adds `id` under `key` (an entry already there stays as it is).
    fn index(&mut self, key: &IndexKey, id: u64) -> Result<(), StoreError> {
        index_into(&mut self.dated, &mut self.flat, key, id)
    }

    /// Stores a version as the record's current one, with its index keys.
    fn put(&mut self, staged: &Staged) -> Result<(), StoreError> {
        for key in &staged.keys {
            self.index(key, staged.id.as_u64())?;
        }
        self.put_record(staged)
    }

    /// Stores a version as the record's current one (not indexed).
    fn put_record(&mut self, staged: &Staged) -> Result<(), StoreError> {
        let key = staged.id.as_u64();
        self.patients
            .insert(key, encode(staged).as_slice())
            .map_err(unavailable)?;
        self.versions
            .insert((key, staged.version.get()), staged.json.as_slice())
            .map_err(unavailable)?;
        Ok(())
    }

    /// Stores imported records: new ones as they are, existing ones refused or (with
    /// [`ExistingRecords::Replace`]) stored as their next version. Index entries go in last,
    /// sorted, so neighbouring keys share B-tree pages.
    fn import(&mut self, batch: &[Staged], existing: ExistingRecords) -> Result<(), StoreError> {
        let mut entries: Vec<(&IndexKey, u64)> = Vec::with_capacity(batch.len() * 10);
        for staged in batch {
            let id = staged.id;
            match (self.current_version(id)?, existing) {
                (None, _) => self.put_record(staged)?,
                (Some(_), ExistingRecords::Reject) => return Err(StoreError::AlreadyExists(id)),
                (Some(current), ExistingRecords::Replace) => {
                    let record = Patient::from_stored(&staged.json)
                        .map_err(StoreError::Corrupt)?
                        .with_version(current.next());
                    self.put_record(&Staged::new(&record))?
                }
            }
            entries.extend(staged.keys.iter().map(|k| (k, id.as_u64())));
        }
        entries.sort_unstable();
        for (key, id) in entries {
            self.index(key, id)?;
        }
        Ok(())
    }

    fn current_version(&self, id: NhsNumber) -> Result<Option<Version>, StoreError> {
        let guard = self.patients.get(id.as_u64()).map_err(unavailable)?;
        guard
            .map(|g| decode(g.value()).map(|r| r.version))
            .transpose()
    }
}

/// How many expired idempotency records one commit forgets at most (keeps commits short).
const FORGET_PER_COMMIT: usize = 64;

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

/// The open database, replaced by a fresh handle after a storage failure.
///
/// After one failed write (disk full, I/O error, file system gone read-only) redb refuses every
/// later operation with "previous I/O error — close and re-open the database". The writer thread
/// does exactly that: it takes the handle out (requests meanwhile get 503 and retry), waits for
/// readers to let go of it, opens the file again (redb repairs it from its last durable commit)
/// and puts the new handle in. Until the cause goes away the reopen fails or the next commit
/// fails again, and the writer keeps trying, so the service recovers by itself.
struct Handle {
    path: std::path::PathBuf,
    cache_bytes: usize,
    current: std::sync::RwLock<Option<Arc<Database>>>,
}

/// How often the writer tries to reopen a database it could not reopen.
const REOPEN_RETRY: Duration = Duration::from_secs(1);

impl Handle {
    fn get(&self) -> Result<Arc<Database>, StoreError> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or_else(|| {
                StoreError::Unavailable(
                    "the database is being reopened after a storage error".into(),
                )
            })
    }

    fn is_down(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_none()
    }

    /// Closes the current handle (if any) and opens the file again.
    fn reopen(&self) -> Result<Arc<Database>, StoreError> {
        let old = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        drop(old);
        // readers may still hold the old handle (or a transaction on it) for a moment; the file
        // lock goes with the last of them
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let db = loop {
            match create(&self.path, self.cache_bytes) {
                Ok(db) => break db,
                Err(redb::DatabaseError::DatabaseAlreadyOpen)
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => {
                    tracing::error!(error = %e, "the database could not be reopened; retrying");
                    return Err(unavailable(e));
                }
            }
        };
        tracing::warn!("the database was reopened after a storage error");
        let db = Arc::new(db);
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(db.clone());
        Ok(db)
    }
}

/// A change waiting for the writer thread, and where its outcome goes.
enum Job {
    Commit {
        change: Box<Change>,
        /// The change's writes made ready on the submitting thread (JSON, index keys), so the
        /// writer only writes.
        staged: Vec<Staged>,
        reply: Reply<Committed>,
    },
    Allocate {
        prefixes: (u64, u64),
        build: AllocatingChange,
        reply: Reply<(Committed, NhsNumber)>,
    },
}

/// The most changes one durable commit carries.
const MAX_GROUP: usize = 256;

/// Group commit. redb has one writer and a durable commit costs an fsync, so instead of one
/// commit per change the writer takes every change waiting, checks and writes each in turn in
/// one transaction — each sees the ones before it, so version conflicts and repeated
/// X-Request-IDs resolve exactly as they would one at a time — commits once, and only then
/// answers each caller. Nothing is acknowledged before it is durable; if anything goes wrong
/// with the transaction, no change of the group is acknowledged.
fn writer_loop(handle: Arc<Handle>, jobs: mpsc::Receiver<Job>) {
    // reopening may mean a repair pass over the file: at most one attempt per REOPEN_RETRY
    let mut last_reopen: Option<std::time::Instant> = None;
    let mut reopen = |handle: &Handle| -> Result<Arc<Database>, StoreError> {
        if last_reopen.is_some_and(|t| t.elapsed() < REOPEN_RETRY) {
            return Err(StoreError::Unavailable(
                "the database is being reopened after a storage error".into(),
            ));
        }
        last_reopen = Some(std::time::Instant::now());
        handle.reopen()
    };
    // the open handle failed in storage and has not been replaced yet (readers may still use
    // it: what it has cached is committed data)
    let mut stale = false;
    loop {
        let first = if stale || handle.is_down() {
            match jobs.recv_timeout(REOPEN_RETRY) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // nobody is writing, but the database should be back before anyone does
                    stale = reopen(&handle).is_err();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match jobs.recv() {
                Ok(job) => job,
                Err(_) => break,
            }
        };
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let db = if stale {
            reopen(&handle)
        } else {
            handle.get().or_else(|_| reopen(&handle))
        };
        let db = match db {
            Ok(db) => db,
            Err(e) => {
                for job in group {
                    answer(fail(job, StoreError::Unavailable(e.to_string())), &Ok(()));
                }
                continue;
            }
        };
        stale = false;
        // a bug that panics must cost only its own group (its transaction is dropped, its
        // callers get an error), never the writer and so every later change
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_group(&db, group))) {
            Err(_) => {
                tracing::error!("a group of changes failed with a panic; none of it was committed")
            }
            Ok(GroupResult::StorageFailed) => {
                // redb fails every later operation after an I/O error until it is reopened
                tracing::error!(
                    "a storage error failed a group of changes; reopening the database"
                );
                drop(db);
                stale = reopen(&handle).is_err();
            }
            Ok(GroupResult::Done) => {}
        }
    }
}

enum GroupResult {
    Done,
    /// Some change (or the commit) failed in the storage itself.
    StorageFailed,
}

enum Outcome {
    Commit(Reply<Committed>, Result<Committed, StoreError>),
    Allocate(
        Reply<(Committed, NhsNumber)>,
        Result<(Committed, NhsNumber), StoreError>,
    ),
}

fn run_group(db: &Database, group: Vec<Job>) -> GroupResult {
    let mut outcomes = Vec::with_capacity(group.len());
    let committed = match db.begin_write().map_err(unavailable) {
        Err(e) => {
            for job in group {
                outcomes.push(fail(job, StoreError::Unavailable(e.to_string())));
            }
            Err(e)
        }
        // a failed group drops its transaction: nothing of it is written
        Ok(txn) => {
            write_group(&txn, group, &mut outcomes).and_then(|()| txn.commit().map_err(unavailable))
        }
    };
    let result = if committed.is_err() {
        GroupResult::StorageFailed
    } else {
        GroupResult::Done
    };
    for outcome in outcomes {
        answer(outcome, &committed);
    }
    result
}

/// Checks and writes each change of a group in order, every table opened once for the group;
/// each change's outcome goes to `outcomes`. An error is a storage failure that fails the group.
fn write_group(
    txn: &WriteTransaction,
    group: Vec<Job>,
    outcomes: &mut Vec<Outcome>,
) -> Result<(), StoreError> {
    let mut tables = match Tables::open(txn) {
        Ok(t) => t,
        Err(e) => {
            for job in group {
                outcomes.push(fail(job, StoreError::Unavailable(e.to_string())));
            }
            return Err(e);
        }
    };
    let mut failed: Option<StoreError> = None;
    let mut forget_before = 0;
    for job in group {
        if let Some(e) = &failed {
            outcomes.push(fail(job, StoreError::Unavailable(e.to_string())));
            continue;
        }
        match job {
            Job::Commit {
                change,
                staged,
                reply,
            } => {
                forget_before = forget_before.max(change.forget_requests_before);
                let result = commit_one(&mut tables, &change, &staged);
                if let Err(e @ StoreError::Unavailable(_)) = &result {
                    failed = Some(StoreError::Unavailable(e.to_string()));
                }
                outcomes.push(Outcome::Commit(reply, result));
            }
            Job::Allocate {
                prefixes,
                build,
                reply,
            } => {
                let result = allocate_one(&mut tables, prefixes, build.as_ref());
                if let Err(e @ StoreError::Unavailable(_)) = &result {
                    failed = Some(StoreError::Unavailable(e.to_string()));
                }
                outcomes.push(Outcome::Allocate(reply, result));
            }
        }
    }
    match failed {
        Some(e) => Err(e),
        // expired idempotency records go once per group (a check above already treats them
        // as gone)
        None => forget_requests(&mut tables, forget_before),
    }
}

/// Sends one change's outcome — its own result only if the group's commit became durable.
fn answer(outcome: Outcome, committed: &Result<(), StoreError>) {
    match (outcome, committed) {
        (Outcome::Commit(reply, result), Ok(())) => reply(result),
        (Outcome::Allocate(reply, result), Ok(())) => reply(result),
        // the transaction did not become durable: nothing of the group is acknowledged
        (Outcome::Commit(reply, _), Err(e)) => reply(Err(StoreError::Unavailable(e.to_string()))),
        (Outcome::Allocate(reply, _), Err(e)) => reply(Err(StoreError::Unavailable(e.to_string()))),
    }
}

fn fail(job: Job, e: StoreError) -> Outcome {
    match job {
        Job::Commit { reply, .. } => Outcome::Commit(reply, Err(e)),
        Job::Allocate { reply, .. } => Outcome::Allocate(reply, Err(e)),
    }
}

/// One change of a group: replayed, refused (nothing written) or written.
fn commit_one(
    tables: &mut Tables,
    change: &Change,
    staged: &[Staged],
) -> Result<Committed, StoreError> {
    if let Some(saved) = check_request(tables, change)? {
        return Ok(Committed::Replayed(saved));
    }
    check_versions(tables, change)?;
    write_change(tables, change, staged)?;
    Ok(Committed::Applied)
}

/// The writes of a change made ready for the writer: JSON and index keys computed, less the
/// keys the expected version already has (inserting them again would still rewrite their
/// B-tree pages).
fn stage(change: &Change) -> Vec<Staged> {
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

/// One allocating change of a group: an unused NHS number drawn at random, then the change
/// built for it.
fn allocate_one(
    tables: &mut Tables,
    prefixes: (u64, u64),
    build: &(dyn Fn(NhsNumber) -> Change + Send + Sync),
) -> Result<(Committed, NhsNumber), StoreError> {
    let nhs = draw_unallocated(tables, prefixes)?;
    let change = build(nhs);
    if let Some(saved) = check_request(tables, &change)? {
        return Ok((Committed::Replayed(saved), nhs));
    }
    check_versions(tables, &change)?;
    write_change(tables, &change, &stage(&change))?;
    tables
        .allocated
        .insert(nhs.as_u64(), ())
        .map_err(unavailable)?;
    Ok((Committed::Applied, nhs))
}

/// An NHS number from `prefixes` (first nine digits, inclusive) that was never allocated nor
/// stored, drawn uniformly at random with the operating system's generator: numbers handed
/// out one after another must not be adjacent or in order, or the gap between two a caller
/// was given would point to the new identity of someone whose old number just disappeared.
/// The writer draws inside the transaction that stores the record, so no two callers get the
/// same number. When random draws keep landing on used numbers (a nearly full range), a walk
/// from a random point finds the next free one.
fn draw_unallocated(tables: &Tables, (lo, hi): (u64, u64)) -> Result<NhsNumber, StoreError> {
    let span = hi - lo + 1;
    let free = |prefix: u64| -> Result<Option<NhsNumber>, StoreError> {
        let Some(n) = NhsNumber::from_prefix(prefix) else {
            return Ok(None); // no valid check digit for this prefix
        };
        let used = tables.current_version(n)?.is_some()
            || tables
                .allocated
                .get(n.as_u64())
                .map_err(unavailable)?
                .is_some();
        Ok((!used).then_some(n))
    };
    for _ in 0..64 {
        if let Some(n) = free(lo + random_below(span)?)? {
            return Ok(n);
        }
    }
    let start = random_below(span)?;
    for k in 0..span {
        if let Some(n) = free(lo + (start + k) % span)? {
            return Ok(n);
        }
    }
    Err(StoreError::RangeExhausted)
}

/// A uniform random number below `n` (> 0), without modulo bias.
fn random_below(n: u64) -> Result<u64, StoreError> {
    let zone = u64::MAX - u64::MAX % n;
    loop {
        let r = getrandom::u64()
            .map_err(|e| StoreError::Unavailable(format!("no random numbers: {e}")))?;
        if r < zone {
            return Ok(r % n);
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
        {
            let e = |e: redb::TableError| other(e.to_string());
            txn.open_table(PATIENTS).map_err(e)?;
            txn.open_table(VERSIONS).map_err(e)?;
            txn.open_table(SUPERSEDED).map_err(e)?;
            txn.open_table(IDENTITY_LINKS).map_err(e)?;
            txn.open_table(ALLOCATED).map_err(e)?;
            txn.open_table(AUDIT).map_err(e)?;
            txn.open_table(REQUESTS).map_err(e)?;
            txn.open_table(REQUESTS_BY_TIME).map_err(e)?;
            for t in DATED_INDEXES {
                txn.open_multimap_table(t).map_err(e)?;
            }
            for t in FLAT_INDEXES {
                txn.open_multimap_table(t).map_err(e)?;
            }
            let mut meta = txn.open_table(META).map_err(e)?;
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

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn encode(record: &Staged) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + record.json.len());
    out.push(FORMAT);
    let mut flags = 0;
    if record.restricted {
        flags |= FLAG_RESTRICTED;
    }
    if record.merged {
        flags |= FLAG_MERGED;
    }
    if record.invalidated {
        flags |= FLAG_INVALIDATED;
    }
    out.push(flags);
    out.extend_from_slice(&record.version.get().to_le_bytes());
    out.extend_from_slice(&record.json);
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
        merged: bytes[1] & FLAG_MERGED != 0,
        invalidated: bytes[1] & FLAG_INVALIDATED != 0,
        json: bytes[HEADER..].to_vec(),
    })
}

fn versioned(json: Vec<u8>, version: Version) -> Result<StoredRecord, StoreError> {
    let record = Patient::from_stored(&json).map_err(StoreError::Corrupt)?;
    Ok(StoredRecord {
        version,
        restricted: record.is_restricted(),
        merged: record.has_merge_state(),
        invalidated: record.is_invalidated(),
        json,
    })
}

fn encode_request(r: &RequestRecord) -> Vec<u8> {
    let mut out = r.fingerprint.to_vec();
    out.extend_from_slice(&r.saved_at.to_le_bytes());
    out.extend_from_slice(&serde_json::to_vec(&r.response).expect("JSON"));
    out
}

fn decode_request(request_id: &str, bytes: &[u8]) -> Result<RequestRecord, StoreError> {
    if bytes.len() < 40 {
        return Err(StoreError::Corrupt("request record".into()));
    }
    let response: SavedResponse =
        serde_json::from_slice(&bytes[40..]).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(RequestRecord {
        request_id: request_id.to_string(),
        fingerprint: bytes[..32].try_into().expect("32 bytes"),
        saved_at: u64::from_le_bytes(bytes[32..40].try_into().expect("8 bytes")),
        response,
    })
}

/// Adds one index entry (entries are never removed by a change: past values stay findable for
/// `_history` searches).
fn index_into(
    dated: &mut [redb::MultimapTable<(&'static str, u32), u64>],
    flat: &mut [redb::MultimapTable<&'static str, u64>],
    key: &IndexKey,
    id: u64,
) -> Result<(), StoreError> {
    match key {
        IndexKey::Family(v, b) | IndexKey::Phonetic(v, b) | IndexKey::Given(v, b) => {
            dated[slot(key)].insert((v.as_str(), *b), id)
        }
        IndexKey::Postcode(v) | IndexKey::Phone(v) | IndexKey::Email(v) | IndexKey::Gp(v) => {
            flat[slot(key)].insert(v.as_str(), id)
        }
    }
    .map_err(unavailable)?;
    Ok(())
}

/// Which table of [`DATED_INDEXES`] or [`FLAT_INDEXES`] holds a key.
fn slot(key: &IndexKey) -> usize {
    match key {
        IndexKey::Family(..) | IndexKey::Postcode(_) => 0,
        IndexKey::Phonetic(..) | IndexKey::Phone(_) => 1,
        IndexKey::Given(..) | IndexKey::Email(_) => 2,
        IndexKey::Gp(_) => 3,
    }
}

/// The key a [`DATED_INDEXES`] entry stands for.
fn dated_key(slot: usize, value: &str, birth: u32) -> IndexKey {
    match slot {
        0 => IndexKey::Family(value.into(), birth),
        1 => IndexKey::Phonetic(value.into(), birth),
        _ => IndexKey::Given(value.into(), birth),
    }
}

/// The key a [`FLAT_INDEXES`] entry stands for.
fn flat_key(slot: usize, value: &str) -> IndexKey {
    match slot {
        0 => IndexKey::Postcode(value.into()),
        1 => IndexKey::Phone(value.into()),
        2 => IndexKey::Email(value.into()),
        _ => IndexKey::Gp(value.into()),
    }
}

/// Writes `record` as current and into the history (inside an open write transaction), with
/// its index entries.
/// One batch of a bulk load: one non-durable transaction, every table opened once.
fn load_batch(
    db: &Database,
    batch: &[Staged],
    existing: ExistingRecords,
) -> Result<(), StoreError> {
    let mut txn = db.begin_write().map_err(unavailable)?;
    txn.set_durability(redb::Durability::None)
        .map_err(unavailable)?;
    Tables::open(&txn)?.import(batch, existing)?;
    txn.commit().map_err(unavailable)
}

fn next_audit_seq(tables: &mut Tables) -> Result<u64, StoreError> {
    let current = tables
        .meta
        .get("audit_seq")
        .map_err(unavailable)?
        .map(|g| u64::from_le_bytes(g.value().try_into().unwrap_or([0; 8])))
        .unwrap_or(0);
    let next = current + 1;
    tables
        .meta
        .insert("audit_seq", next.to_le_bytes().as_slice())
        .map_err(unavailable)?;
    Ok(next)
}

/// Checks a request id inside the write transaction: `Some` answer to replay, or an error.
fn check_request(tables: &Tables, change: &Change) -> Result<Option<SavedResponse>, StoreError> {
    let Some(request) = &change.request else {
        return Ok(None);
    };
    let Some(guard) = tables
        .requests
        .get(request.request_id.as_str())
        .map_err(unavailable)?
    else {
        return Ok(None);
    };
    let saved = decode_request(&request.request_id, guard.value())?;
    if saved.saved_at < change.forget_requests_before {
        return Ok(None);
    }
    if saved.fingerprint == request.fingerprint {
        Ok(Some(saved.response))
    } else {
        Err(StoreError::RequestIdReused(request.request_id.clone()))
    }
}

fn save_request(tables: &mut Tables, request: &RequestRecord) -> Result<(), StoreError> {
    let Tables {
        requests,
        requests_by_time: by_time,
        ..
    } = tables;
    let old = requests
        .get(request.request_id.as_str())
        .map_err(unavailable)?
        .map(|g| g.value().to_vec());
    if let Some(old) = old {
        let old = decode_request(&request.request_id, &old)?;
        by_time
            .remove((old.saved_at, request.request_id.as_str()))
            .map_err(unavailable)?;
    }
    requests
        .insert(
            request.request_id.as_str(),
            encode_request(request).as_slice(),
        )
        .map_err(unavailable)?;
    by_time
        .insert((request.saved_at, request.request_id.as_str()), ())
        .map_err(unavailable)?;
    Ok(())
}

fn forget_requests(tables: &mut Tables, before: u64) -> Result<(), StoreError> {
    let Tables {
        requests,
        requests_by_time: by_time,
        ..
    } = tables;
    let expired: Vec<(u64, String)> = by_time
        .range((0u64, "")..(before, ""))
        .map_err(unavailable)?
        .take(FORGET_PER_COMMIT)
        .map(|e| e.map(|(k, _)| (k.value().0, k.value().1.to_string())))
        .collect::<Result<_, _>>()
        .map_err(unavailable)?;
    for (at, id) in expired {
        by_time.remove((at, id.as_str())).map_err(unavailable)?;
        requests.remove(id.as_str()).map_err(unavailable)?;
    }
    Ok(())
}

/// Every write's expected version is still current (checked for all before any is written,
/// so a change that fails leaves nothing behind).
fn check_versions(tables: &Tables, change: &Change) -> Result<(), StoreError> {
    for w in &change.writes {
        let id = w.record.id();
        match (tables.current_version(id)?, w.expected) {
            (None, None) => {}
            (Some(_), None) => return Err(StoreError::AlreadyExists(id)),
            (None, Some(_)) => return Err(StoreError::NotFound(id)),
            (Some(current), Some(expected)) if current != expected => {
                return Err(StoreError::VersionConflict {
                    id,
                    expected,
                    current,
                });
            }
            (Some(_), Some(_)) => {}
        }
    }
    Ok(())
}

/// Writes a checked change; an error here is an I/O error and aborts the transaction.
fn write_change(tables: &mut Tables, change: &Change, staged: &[Staged]) -> Result<(), StoreError> {
    for w in staged {
        tables.put(w)?;
    }
    for (source, target) in &change.supersede {
        tables
            .superseded
            .insert(source.as_u64(), target.as_u64())
            .map_err(unavailable)?;
    }
    for source in &change.unsupersede {
        tables
            .superseded
            .remove(source.as_u64())
            .map_err(unavailable)?;
    }
    for entry in &change.audit {
        let seq = next_audit_seq(tables)?;
        let patient =
            NhsNumber::parse(&entry.patient).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let json = serde_json::to_vec(entry).expect("JSON");
        tables
            .audit
            .insert((patient.as_u64(), seq), json.as_slice())
            .map_err(unavailable)?;
    }
    if let Some(request) = &change.request {
        save_request(tables, request)?;
    }
    for (old, new) in &change.identity_links {
        tables
            .identity_links
            .insert(old.as_u64(), new.as_u64())
            .map_err(unavailable)?;
    }
    Ok(())
}

impl PatientStore for RedbStore {
    fn get(&self, id: NhsNumber) -> Result<Option<StoredRecord>, StoreError> {
        let txn = self.db()?.begin_read().map_err(unavailable)?;
        let table = txn.open_table(PATIENTS).map_err(unavailable)?;
        let guard = table.get(id.as_u64()).map_err(unavailable)?;
        guard.map(|g| decode(g.value())).transpose()
    }

    fn get_version(
        &self,
        id: NhsNumber,
        version: Version,
    ) -> Result<Option<StoredRecord>, StoreError> {
        let txn = self.db()?.begin_read().map_err(unavailable)?;
        let table = txn.open_table(VERSIONS).map_err(unavailable)?;
        let Some(guard) = table
            .get((id.as_u64(), version.get()))
            .map_err(unavailable)?
        else {
            return Ok(None);
        };
        versioned(guard.value().to_vec(), version).map(Some)
    }

    fn history(&self, id: NhsNumber) -> Result<Vec<StoredRecord>, StoreError> {
        let txn = self.db()?.begin_read().map_err(unavailable)?;
        let table = txn.open_table(VERSIONS).map_err(unavailable)?;
        let key = id.as_u64();
        let mut out = Vec::new();
        for entry in table
            .range((key, 0)..=(key, u32::MAX))
            .map_err(unavailable)?
            .rev()
        {
            let (k, v) = entry.map_err(unavailable)?;
            let version =
                Version::new(k.value().1).ok_or_else(|| StoreError::Corrupt("version 0".into()))?;
            out.push(versioned(v.value().to_vec(), version)?);
        }
        Ok(out)
    }

    fn superseded_by(&self, id: NhsNumber) -> Result<Option<NhsNumber>, StoreError> {
        let txn = self.db()?.begin_read().map_err(unavailable)?;
        let table = txn.open_table(SUPERSEDED).map_err(unavailable)?;
        let Some(guard) = table.get(id.as_u64()).map_err(unavailable)? else {
            return Ok(None);
        };
        NhsNumber::from_u64(guard.value())
            .map(Some)
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    fn submit(&self, change: Change, reply: Reply<Committed>) {
        let job = Job::Commit {
            staged: stage(&change),
            change: Box::new(change),
            reply,
        };
        if let Err(job) = self.send(job) {
            answer(fail(job, writer_gone()), &Ok(()));
        }
    }

    fn submit_allocating(
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

    fn request(&self, request_id: &str) -> Result<Option<RequestRecord>, StoreError> {
        let txn = self.db()?.begin_read().map_err(unavailable)?;
        let table = txn.open_table(REQUESTS).map_err(unavailable)?;
        let Some(guard) = table.get(request_id).map_err(unavailable)? else {
            return Ok(None);
        };
        decode_request(request_id, guard.value()).map(Some)
    }

    fn audit(&self, id: NhsNumber) -> Result<Vec<AuditEntry>, StoreError> {
        let txn = self.db()?.begin_read().map_err(unavailable)?;
        let table = txn.open_table(AUDIT).map_err(unavailable)?;
        let key = id.as_u64();
        let mut out = Vec::new();
        for entry in table
            .range((key, 0)..=(key, u64::MAX))
            .map_err(unavailable)?
        {
            let (_, v) = entry.map_err(unavailable)?;
            out.push(
                serde_json::from_slice(v.value())
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            );
        }
        Ok(out)
    }

    fn insert_batch(
        &self,
        records: &[Patient],
        existing: ExistingRecords,
    ) -> Result<(), StoreError> {
        let mut seen = std::collections::HashSet::with_capacity(records.len());
        if let Some(twice) = records.iter().find(|r| !seen.insert(r.id())) {
            return Err(StoreError::DuplicateInBatch(twice.id()));
        }
        let staged: Vec<Staged> = records.iter().map(Staged::new).collect();
        let txn = self.db()?.begin_write().map_err(unavailable)?;
        Tables::open(&txn)?.import(&staged, existing)?;
        txn.commit().map_err(unavailable)
    }

    fn bulk_load(
        &self,
        existing: ExistingRecords,
        next: &mut dyn FnMut() -> BulkStep,
    ) -> Result<u64, StoreError> {
        let db = self.db()?;
        // where an abandoned or failed load goes back to (kept in memory while the load runs;
        // a crash goes back there anyway, as no commit of the load is durable before the end)
        let savepoint = {
            let txn = db.begin_write().map_err(unavailable)?;
            let savepoint = txn.ephemeral_savepoint().map_err(unavailable)?;
            txn.abort().map_err(unavailable)?;
            savepoint
        };
        let undo = |why: StoreError| -> StoreError {
            let restore = || -> Result<(), StoreError> {
                let mut txn = db.begin_write().map_err(unavailable)?;
                txn.restore_savepoint(&savepoint).map_err(unavailable)?;
                txn.commit().map_err(unavailable)
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
                    let txn = db.begin_write().map_err(unavailable)?;
                    txn.commit().map_err(|e| undo(unavailable(e)))?;
                    return Ok(stored);
                }
            }
        }
    }

    fn count(&self) -> Result<u64, StoreError> {
        let txn = self.db()?.begin_read().map_err(unavailable)?;
        let table = txn.open_table(PATIENTS).map_err(unavailable)?;
        table.len().map_err(unavailable)
    }

    fn candidates(&self, lookups: &[Lookup]) -> Result<Vec<NhsNumber>, StoreError> {
        let txn = self.db()?.begin_read().map_err(unavailable)?;
        let mut found = BTreeSet::new();
        let mut collect = |values: redb::MultimapValue<u64>| -> Result<(), StoreError> {
            for v in values {
                found.insert(v.map_err(unavailable)?.value());
            }
            Ok(())
        };
        for lookup in lookups {
            match lookup {
                Lookup::Family {
                    name,
                    prefix: false,
                    birth,
                }
                | Lookup::Phonetic { code: name, birth }
                | Lookup::Given { name, birth } => {
                    let def = match lookup {
                        Lookup::Family { .. } => IDX_FAMILY,
                        Lookup::Phonetic { .. } => IDX_PHONETIC,
                        _ => IDX_GIVEN,
                    };
                    let table = txn.open_multimap_table(def).map_err(unavailable)?;
                    for entry in table
                        .range((name.as_str(), birth.0)..=(name.as_str(), birth.1))
                        .map_err(unavailable)?
                    {
                        collect(entry.map_err(unavailable)?.1)?;
                    }
                }
                Lookup::Family {
                    name,
                    prefix: true,
                    birth,
                } => {
                    // Skip-scan: for each family name with the prefix, seek straight to
                    // its birth-date range, then on to the next family name.
                    let table = txn.open_multimap_table(IDX_FAMILY).map_err(unavailable)?;
                    let mut seek: Option<(String, u32)> = Some((name.clone(), birth.0));
                    while let Some((from, from_birth)) = seek.take() {
                        for entry in table
                            .range((from.as_str(), from_birth)..)
                            .map_err(unavailable)?
                        {
                            let (key, values) = entry.map_err(unavailable)?;
                            let (family, born) = key.value();
                            if !family.starts_with(name.as_str()) {
                                break;
                            }
                            if born < birth.0 {
                                seek = Some((family.to_string(), birth.0));
                                break;
                            }
                            if born > birth.1 {
                                seek = Some((format!("{family}\0"), 0));
                                break;
                            }
                            collect(values)?;
                        }
                    }
                }
                Lookup::Postcode { code, prefix } => {
                    let table = txn.open_multimap_table(IDX_POSTCODE).map_err(unavailable)?;
                    if *prefix {
                        for entry in table.range(code.as_str()..).map_err(unavailable)? {
                            let (key, values) = entry.map_err(unavailable)?;
                            if !key.value().starts_with(code.as_str()) {
                                break;
                            }
                            collect(values)?;
                        }
                    } else {
                        collect(table.get(code.as_str()).map_err(unavailable)?)?;
                    }
                }
                Lookup::Phone(v) | Lookup::Email(v) | Lookup::Gp(v) => {
                    let def = match lookup {
                        Lookup::Phone(_) => IDX_PHONE,
                        Lookup::Email(_) => IDX_EMAIL,
                        _ => IDX_GP,
                    };
                    let table = txn.open_multimap_table(def).map_err(unavailable)?;
                    collect(table.get(v.as_str()).map_err(unavailable)?)?;
                }
            }
        }
        found
            .into_iter()
            .map(|n| NhsNumber::from_u64(n).map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect()
    }

    fn reindex(&self) -> Result<u64, StoreError> {
        let txn = self.db()?.begin_write().map_err(unavailable)?;
        for t in DATED_INDEXES {
            txn.delete_multimap_table(t).map_err(unavailable)?;
        }
        for t in FLAT_INDEXES {
            txn.delete_multimap_table(t).map_err(unavailable)?;
        }
        let mut records = HashSet::new();
        {
            let Tables {
                versions,
                dated,
                flat,
                ..
            } = &mut Tables::open(&txn)?;
            for entry in versions.iter().map_err(unavailable)? {
                let (k, v) = entry.map_err(unavailable)?;
                let id = k.value().0;
                let doc: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_slice(v.value())
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                for key in index::keys(&doc) {
                    index_into(dated, flat, &key, id)?;
                }
                records.insert(id);
            }
        }
        txn.commit().map_err(unavailable)?;
        Ok(records.len() as u64)
    }

    fn check_indexes(&self) -> Result<Vec<String>, StoreError> {
        let txn = self.db()?.begin_read().map_err(unavailable)?;
        // what the versions say the indexes hold
        let mut expected: BTreeSet<(IndexKey, u64)> = BTreeSet::new();
        let versions = txn.open_table(VERSIONS).map_err(unavailable)?;
        for entry in versions.iter().map_err(unavailable)? {
            let (k, v) = entry.map_err(unavailable)?;
            let doc: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(v.value())
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            expected.extend(index::keys(&doc).into_iter().map(|key| (key, k.value().0)));
        }
        // what they hold
        let mut actual: BTreeSet<(IndexKey, u64)> = BTreeSet::new();
        for (slot, def) in DATED_INDEXES.into_iter().enumerate() {
            let table = txn.open_multimap_table(def).map_err(unavailable)?;
            for entry in table.iter().map_err(unavailable)? {
                let (key, values) = entry.map_err(unavailable)?;
                let (name, birth) = key.value();
                for v in values {
                    actual.insert((
                        dated_key(slot, name, birth),
                        v.map_err(unavailable)?.value(),
                    ));
                }
            }
        }
        for (slot, def) in FLAT_INDEXES.into_iter().enumerate() {
            let table = txn.open_multimap_table(def).map_err(unavailable)?;
            for entry in table.iter().map_err(unavailable)? {
                let (key, values) = entry.map_err(unavailable)?;
                for v in values {
                    actual.insert((flat_key(slot, key.value()), v.map_err(unavailable)?.value()));
                }
            }
        }
        let missing = expected
            .difference(&actual)
            .map(|(k, id)| format!("missing: {k:?} → {id:010}"));
        let extra = actual
            .difference(&expected)
            .map(|(k, id)| format!("unexpected: {k:?} → {id:010}"));
        Ok(missing.chain(extra).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Schemas;
    use crate::store::{RecordWrite, SavedBody};
    use serde_json::json;
    use time::macros::date;

    fn patient(id: &str, version: &str, family: &str) -> Patient {
        let doc = json!({"resourceType": "Patient", "id": id, "meta": {"versionId": version},
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": id}],
            "name": [{"id": "n", "use": "usual", "family": family}]});
        Patient::parse(doc, &Schemas::compile(), date!(2026 - 01 - 01)).unwrap()
    }

    fn update(expected: Version, record: &Patient) -> Change {
        Change {
            writes: vec![RecordWrite {
                expected: Some(expected),
                record: record.clone(),
                known_keys: Vec::new(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn saved_responses_written_as_text_are_read_as_references() {
        let legacy = |body: serde_json::Value| {
            serde_json::from_value::<SavedResponse>(
                json!({"status": 200, "body": body.to_string()}),
            )
            .unwrap()
            .body
        };
        assert_eq!(
            legacy(
                json!({"resourceType": "Patient", "id": "9000000009", "meta": {"versionId": "3"}})
            ),
            SavedBody::Patient {
                id: "9000000009".into(),
                version: 3
            }
        );
        assert_eq!(
            legacy(json!({"resourceType": "Parameters", "parameter": [
                {"name": "outcome", "resource": {"resourceType": "OperationOutcome", "issue": [{"diagnostics": "Merge completed"}]}},
                {"name": "result", "resource": {"resourceType": "Patient", "id": "9000000017", "meta": {"versionId": "2"}}}]})),
            SavedBody::Parameters {
                outcome: "Merge completed".into(),
                id: "9000000017".into(),
                version: 2
            }
        );
        let now = SavedBody::patient(&patient("9000000009", "4", "A"));
        let round: SavedResponse = serde_json::from_str(
            &serde_json::to_string(&SavedResponse {
                status: 200,
                etag: None,
                location: None,
                body: now.clone(),
            })
            .unwrap(),
        )
        .unwrap();
        assert_eq!(round.body, now);
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
        store.commit(update(Version::FIRST, &v2)).unwrap();
        // a second writer holding version 1 loses
        let stale = patient("9000000009", "2", "Stale");
        assert!(matches!(
            store.commit(update(Version::FIRST, &stale)),
            Err(StoreError::VersionConflict { .. })
        ));

        let id = v1.id();
        let current = store.get(id).unwrap().unwrap();
        assert_eq!(current.version.get(), 2);
        assert_eq!(Patient::from_stored(&current.json).unwrap(), v2);
        let old = store.get_version(id, Version::FIRST).unwrap().unwrap();
        assert_eq!(Patient::from_stored(&old.json).unwrap(), v1);
        assert_eq!(store.count().unwrap(), 1);
        let history: Vec<u32> = store
            .history(id)
            .unwrap()
            .iter()
            .map(|r| r.version.get())
            .collect();
        assert_eq!(history, [2, 1], "newest first");
    }

    fn entry(patient: &str, after: u32) -> AuditEntry {
        AuditEntry {
            at: "2026-11-27T00:00:00Z".into(),
            subject: "t".into(),
            role: "back-office".into(),
            request_id: format!("r{after}"),
            correlation_id: None,
            operation: "patch".into(),
            patient: patient.into(),
            version_before: Some(after - 1),
            version_after: after,
            patch: None,
            reason: None,
            related: None,
        }
    }

    #[test]
    fn idempotent_requests_and_audit() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("t.redb")).unwrap();
        store
            .insert_batch(
                &[patient("9000000009", "1", "One")],
                ExistingRecords::Reject,
            )
            .unwrap();
        let v2 = patient("9000000009", "2", "Two");
        let saved = SavedResponse {
            status: 200,
            etag: Some("W/\"2\"".into()),
            location: None,
            body: SavedBody::patient(&v2),
        };
        let request = RequestRecord {
            request_id: "rid".into(),
            fingerprint: [7; 32],
            saved_at: 1000,
            response: saved.clone(),
        };
        let mut change = update(Version::FIRST, &v2);
        change.request = Some(request.clone());
        change.audit = vec![entry("9000000009", 2)];
        assert_eq!(store.commit(change.clone()).unwrap(), Committed::Applied);
        // the same request again: the saved answer, nothing written (no version conflict either)
        assert_eq!(
            store.commit(change.clone()).unwrap(),
            Committed::Replayed(saved)
        );
        assert_eq!(store.audit(v2.id()).unwrap().len(), 1);
        // the same id for something else
        let mut other = change.clone();
        other.request.as_mut().unwrap().fingerprint = [8; 32];
        assert!(matches!(
            store.commit(other),
            Err(StoreError::RequestIdReused(_))
        ));
        assert_eq!(store.request("rid").unwrap().unwrap().fingerprint, [7; 32]);
        // once the window has passed, it is forgotten
        let later = Change {
            forget_requests_before: 2000,
            ..Default::default()
        };
        store.commit(later).unwrap();
        assert!(store.request("rid").unwrap().is_none());
    }

    fn named(id: &str, family: &str, birth: &str) -> Patient {
        let doc = json!({"resourceType": "Patient", "id": id, "birthDate": birth,
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": id}],
            "name": [{"id": "n", "use": "usual", "family": family}]});
        Patient::parse(doc, &Schemas::compile(), date!(2026 - 01 - 01)).unwrap()
    }

    #[test]
    fn wildcard_lookups_skip_to_each_birth_range() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("t.redb")).unwrap();
        let people = [
            ("9000000009", "Smith", "1980-01-01"),
            ("9000000017", "Smith", "1990-06-15"),
            ("9000000025", "Smithson", "1990-06-20"),
            ("9000000033", "Smyth", "1990-12-31"),
            ("9000000041", "Smyth", "1991-01-01"),
            ("9000000068", "Snow", "1990-06-15"),
            ("9000000076", "Sm", "1990-07-01"),
        ];
        let records: Vec<Patient> = people.iter().map(|(i, f, b)| named(i, f, b)).collect();
        store
            .insert_batch(&records, ExistingRecords::Reject)
            .unwrap();
        let found = |name: &str, lo: u32, hi: u32| -> Vec<String> {
            let l = Lookup::Family {
                name: name.into(),
                prefix: true,
                birth: (lo, hi),
            };
            store
                .candidates(&[l])
                .unwrap()
                .iter()
                .map(|n| n.to_string())
                .collect()
        };
        assert_eq!(
            found("sm", 19900101, 19901231),
            ["9000000017", "9000000025", "9000000033", "9000000076"]
        );
        assert_eq!(
            found("smith", 0, 99999999),
            ["9000000009", "9000000017", "9000000025"]
        );
        assert_eq!(found("smy", 19910101, 19910101), ["9000000041"]);
        assert!(found("sz", 0, 99999999).is_empty());
        assert_eq!(store.check_indexes().unwrap(), Vec::<String>::new());
    }

    #[test]
    fn the_writer_survives_a_panicking_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("t.redb")).unwrap();
        let boom: crate::store::AllocatingChange =
            std::sync::Arc::new(|_| panic!("a bug in a change"));
        assert!(matches!(
            store.commit_allocating((999_300_000, 999_300_100), boom),
            Err(StoreError::Unavailable(_))
        ));
        // nothing of it was written, and later changes still go through
        assert_eq!(store.count().unwrap(), 0);
        store
            .insert_batch(
                &[patient("9000000009", "1", "One")],
                ExistingRecords::Reject,
            )
            .unwrap();
        let v2 = patient("9000000009", "2", "Two");
        assert_eq!(
            store.commit(update(Version::FIRST, &v2)).unwrap(),
            Committed::Applied
        );
    }

    #[test]
    fn supersession_and_survivor() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("t.redb")).unwrap();
        let [a, b, c] =
            ["9000000009", "9000000017", "9000000025"].map(|n| NhsNumber::parse(n).unwrap());
        store
            .commit(Change {
                supersede: vec![(a, b), (b, c)],
                ..Default::default()
            })
            .unwrap();
        assert_eq!(store.survivor(a).unwrap(), c);
        assert_eq!(store.superseded_by(a).unwrap(), Some(b));
        store
            .commit(Change {
                unsupersede: vec![a],
                ..Default::default()
            })
            .unwrap();
        assert_eq!(store.survivor(a).unwrap(), a);
    }

    #[test]
    fn an_update_writes_only_the_index_keys_its_previous_version_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("t.redb")).unwrap();
        let version = |v: &str, family: &str| {
            let doc = json!({"resourceType": "Patient", "id": "9000000009", "meta": {"versionId": v},
                "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"}],
                "name": [{"id": "n", "use": "usual", "family": family}], "birthDate": "1990-01-01",
                "address": [{"id": "a", "use": "home", "line": ["1 A Street"], "postalCode": "LS1 4AP"}]});
            Patient::parse(doc, &Schemas::compile(), date!(2026 - 01 - 01)).unwrap()
        };
        let v1 = version("1", "Old");
        store
            .insert_batch(std::slice::from_ref(&v1), ExistingRecords::Reject)
            .unwrap();
        let v2 = version("2", "New");
        let change = Change {
            writes: vec![RecordWrite::update(&v1, v2.clone())],
            ..Default::default()
        };
        let staged = stage(&change);
        let all = crate::domain::index::keys(v2.doc());
        assert!(!staged[0].keys.is_empty() && staged[0].keys.len() < all.len());
        assert!(staged[0]
            .keys
            .iter()
            .all(|k| !crate::domain::index::keys(v1.doc()).contains(k)));
        store.commit(change).unwrap();
        assert!(store.check_indexes().unwrap().is_empty());
    }

    #[test]
    fn a_bulk_load_is_one_unit() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("t.redb")).unwrap();
        store
            .insert_batch(&[patient("9000000009", "1", "A")], ExistingRecords::Reject)
            .unwrap();
        let staged = |ids: &[&str]| {
            ids.iter()
                .map(|id| Staged::new(&patient(id, "1", "B")))
                .collect::<Vec<_>>()
        };
        let run = |steps: Vec<BulkStep>, existing| {
            let mut steps = steps.into_iter();
            store.bulk_load(existing, &mut || steps.next().unwrap())
        };
        // abandoned after two committed batches: nothing of it stays
        let abandoned = run(
            vec![
                BulkStep::Batch(staged(&["9000000017"])),
                BulkStep::Batch(staged(&["9000000025"])),
                BulkStep::Abort,
            ],
            ExistingRecords::Reject,
        );
        assert!(matches!(abandoned, Err(StoreError::Aborted)));
        assert_eq!(store.count().unwrap(), 1);
        // an existing record in the second batch undoes the first
        let refused = run(
            vec![
                BulkStep::Batch(staged(&["9000000017"])),
                BulkStep::Batch(staged(&["9000000009"])),
            ],
            ExistingRecords::Reject,
        );
        assert!(matches!(refused, Err(StoreError::AlreadyExists(_))));
        assert_eq!(store.count().unwrap(), 1);
        assert!(store.check_indexes().unwrap().is_empty());
        // done: every batch stored, indexed, and replace appends a version
        let loaded = run(
            vec![
                BulkStep::Batch(staged(&["9000000017", "9000000025"])),
                BulkStep::Batch(staged(&["9000000009"])),
                BulkStep::Done,
            ],
            ExistingRecords::Replace,
        );
        assert_eq!(loaded.unwrap(), 3);
        assert_eq!(store.count().unwrap(), 3);
        let r = store
            .get(NhsNumber::parse("9000000009").unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(r.version.get(), 2);
        assert!(store.check_indexes().unwrap().is_empty());
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

    #[cfg(unix)]
    #[test]
    fn a_new_database_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        let store = RedbStore::open(&path).unwrap();
        store
            .insert_batch(&[patient("9000000009", "1", "A")], ExistingRecords::Reject)
            .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
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
