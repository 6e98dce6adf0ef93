//! The writer: one thread that commits every change, in groups, and recovers the database
//! after a storage failure.
//!
//! redb has one writer and a durable commit costs an fsync. Instead of one commit per change,
//! the writer takes every change waiting, checks and writes each in turn in one transaction —
//! each sees the ones before it, so version conflicts and repeated X-Request-IDs resolve exactly
//! as they would one at a time — commits once, and only then answers each caller.

use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use redb::{Database, ReadableTable, WriteTransaction};

use super::codec::Request;
use super::tables::Tables;
use crate::domain::NhsNumber;
use crate::store::{
    stage, AllocatingChange, Change, Committed, Reply, RequestRecord, SavedResponse, Staged,
    StoreError,
};

/// The open database, replaced by a fresh handle after a storage failure.
///
/// After one failed write (disk full, I/O error, file system gone read-only) redb refuses every
/// later operation with "previous I/O error — close and re-open the database". The writer thread
/// does exactly that: it takes the handle out (requests meanwhile get 503 and retry), waits for
/// readers to let go of it, opens the file again (redb repairs it from its last durable commit)
/// and puts the new handle in. Until the cause goes away the reopen fails or the next commit
/// fails again, and the writer keeps trying, so the service recovers by itself.
pub(super) struct Handle {
    pub(super) path: PathBuf,
    pub(super) cache_bytes: usize,
    pub(super) current: std::sync::RwLock<Option<Arc<Database>>>,
}

/// How often the writer tries to reopen a database it could not reopen.
const REOPEN_RETRY: Duration = Duration::from_secs(1);

impl Handle {
    pub(super) fn get(&self) -> Result<Arc<Database>, StoreError> {
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
            match super::create(&self.path, self.cache_bytes) {
                Ok(db) => break db,
                Err(redb::DatabaseError::DatabaseAlreadyOpen)
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => {
                    tracing::error!(error = %e, "the database could not be reopened; retrying");
                    return Err(StoreError::Unavailable(e.to_string()));
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
pub(super) enum Job {
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
    /// A readiness check (`/_status`): a small durable write through the same path as every
    /// change, so that it fails when they would (disk full, file system read-only, the
    /// database down).
    Probe { reply: Reply<()> },
}

/// The most changes one durable commit carries.
const MAX_GROUP: usize = 256;

/// Group commit. redb has one writer and a durable commit costs an fsync, so instead of one
/// commit per change the writer takes every change waiting, checks and writes each in turn in
/// one transaction — each sees the ones before it, so version conflicts and repeated
/// X-Request-IDs resolve exactly as they would one at a time — commits once, and only then
/// answers each caller. Nothing is acknowledged before it is durable; if anything goes wrong
/// with the transaction, no change of the group is acknowledged.
pub(super) fn writer_loop(handle: Arc<Handle>, jobs: mpsc::Receiver<Job>) {
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
    let mut sweep = Sweep::default();
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
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_group(&db, group, &mut sweep)
        })) {
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

pub(super) enum Outcome {
    Commit(Reply<Committed>, Result<Committed, StoreError>),
    Allocate(
        Reply<(Committed, NhsNumber)>,
        Result<(Committed, NhsNumber), StoreError>,
    ),
    Probe(Reply<()>, Result<(), StoreError>),
}

fn run_group(db: &Database, group: Vec<Job>, sweep: &mut Sweep) -> GroupResult {
    let started = std::time::Instant::now();
    let changes = group.len();
    let mut outcomes = Vec::with_capacity(group.len());
    let committed = match db.begin_write() {
        Err(e) => {
            let e = StoreError::from(e);
            for job in group {
                outcomes.push(fail(job, StoreError::Unavailable(e.to_string())));
            }
            Err(e)
        }
        // a failed group drops its transaction: nothing of it is written
        Ok(txn) => {
            let mut next = sweep.clone();
            let written = write_group(&txn, group, &mut outcomes, &mut next);
            let committed = written.and_then(|()| Ok(txn.commit()?));
            // the sweep moves on only with a commit that removed what it passed
            if committed.is_ok() {
                *sweep = next;
            }
            committed
        }
    };
    let result = if committed.is_err() {
        GroupResult::StorageFailed
    } else {
        crate::telemetry::group_commit(changes, started.elapsed());
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
    sweep: &mut Sweep,
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
            Job::Probe { reply } => {
                let result = probe(&mut tables);
                if let Err(e) = &result {
                    failed = Some(StoreError::Unavailable(e.to_string()));
                }
                outcomes.push(Outcome::Probe(reply, result));
            }
        }
    }
    match failed {
        Some(e) => Err(e),
        // expired idempotency records go once per group (a check above already treats them
        // as gone)
        None => forget_requests(&mut tables, forget_before, sweep),
    }
}

/// Sends one change's outcome — its own result only if the group's commit became durable.
pub(super) fn answer(outcome: Outcome, committed: &Result<(), StoreError>) {
    match (outcome, committed) {
        (Outcome::Commit(reply, result), Ok(())) => reply(result),
        (Outcome::Allocate(reply, result), Ok(())) => reply(result),
        (Outcome::Probe(reply, result), Ok(())) => reply(result),
        // the transaction did not become durable: nothing of the group is acknowledged
        (Outcome::Commit(reply, _), Err(e)) => reply(Err(StoreError::Unavailable(e.to_string()))),
        (Outcome::Allocate(reply, _), Err(e)) => reply(Err(StoreError::Unavailable(e.to_string()))),
        (Outcome::Probe(reply, _), Err(e)) => reply(Err(StoreError::Unavailable(e.to_string()))),
    }
}

pub(super) fn fail(job: Job, e: StoreError) -> Outcome {
    match job {
        Job::Commit { reply, .. } => Outcome::Commit(reply, Err(e)),
        Job::Allocate { reply, .. } => Outcome::Allocate(reply, Err(e)),
        Job::Probe { reply } => Outcome::Probe(reply, Err(e)),
    }
}

/// `meta` key the readiness check writes (the time of the last check).
const PROBE: &str = "readiness-checked-at";

/// The readiness check's write: the time, in `meta` (copies and comparisons skip `meta`).
fn probe(tables: &mut Tables) -> Result<(), StoreError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    tables.meta.insert(PROBE, now.to_le_bytes().as_slice())?;
    Ok(())
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
    tables.allocated.insert(nhs.as_u64(), ())?;
    Ok((Committed::Applied, nhs))
}

/// The first of the allocation candidates ([`crate::store::allocation::candidates`]) that was
/// never allocated nor stored. The writer draws inside the transaction that stores the record,
/// so no two callers get the same number.
fn draw_unallocated(tables: &Tables, prefixes: (u64, u64)) -> Result<NhsNumber, StoreError> {
    for n in crate::store::allocation::candidates(prefixes)? {
        if tables.current_version(n)?.is_none() && tables.allocated.get(n.as_u64())?.is_none() {
            return Ok(n);
        }
    }
    Err(StoreError::RangeExhausted)
}

/// How many expired idempotency records one commit forgets at most (keeps commits short).
const FORGET_PER_COMMIT: usize = 64;

/// Checks a request id inside the write transaction: `Some` answer to replay, or an error.
fn check_request(tables: &Tables, change: &Change) -> Result<Option<SavedResponse>, StoreError> {
    let Some(request) = &change.request else {
        return Ok(None);
    };
    let Some(guard) = tables.requests.get(request.request_id.as_str())? else {
        return Ok(None);
    };
    let saved = guard.value().into_record(&request.request_id)?;
    if saved.saved_at < change.forget_requests_before {
        return Ok(None);
    }
    if saved.fingerprint == request.fingerprint {
        Ok(Some(saved.response))
    } else {
        Err(StoreError::RequestIdReused(request.request_id.clone()))
    }
}

pub(super) fn save_request(tables: &mut Tables, request: &RequestRecord) -> Result<(), StoreError> {
    tables
        .requests
        .insert(request.request_id.as_str(), Request::of(request))?;
    Ok(())
}

/// Where the sweep for expired idempotency records goes on (in memory: after a restart it
/// starts again from the first request id).
#[derive(Clone, Debug, Default)]
pub(super) struct Sweep {
    /// The last request id looked at; `None`: start from the first.
    after: Option<String>,
}

/// Forgets expired idempotency records: each commit looks at the next [`FORGET_PER_COMMIT`]
/// records in request-id order and removes those saved before `before`, going round the table
/// again and again. No second table keyed by time is kept in step with every change (it
/// cost a change two more B-tree pages); an expired record the sweep has not reached yet is
/// treated as absent anyway ([`check_request`]).
fn forget_requests(tables: &mut Tables, before: u64, sweep: &mut Sweep) -> Result<(), StoreError> {
    if before == 0 {
        return Ok(());
    }
    let from = match &sweep.after {
        Some(id) => std::ops::Bound::Excluded(id.as_str()),
        None => std::ops::Bound::Unbounded,
    };
    let mut seen = 0;
    let mut last = None;
    let mut expired = Vec::new();
    for entry in tables
        .requests
        .range::<&str>((from, std::ops::Bound::Unbounded))?
        .take(FORGET_PER_COMMIT)
    {
        let (id, record) = entry?;
        let id = id.value().to_string();
        if record.value().saved_at()? < before {
            expired.push(id.clone());
        }
        last = Some(id);
        seen += 1;
    }
    for id in &expired {
        tables.requests.remove(id.as_str())?;
    }
    // a short page is the end of the table: round again from the start
    sweep.after = if seen < FORGET_PER_COMMIT { None } else { last };
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
    for w in &change.resources {
        let current = tables.resource_version(w.new.kind.name(), &w.new.id)?;
        crate::store::resource::check_expected(w, current)?;
    }
    Ok(())
}

/// Writes a checked change; an error here is an I/O error and aborts the transaction.
fn write_change(tables: &mut Tables, change: &Change, staged: &[Staged]) -> Result<(), StoreError> {
    // each record's audit entry goes in the row of the version it wrote; an entry that names
    // no version of this change (none do today) gets a row of its own in `audit`
    let mut embedded = vec![false; change.audit.len()];
    for w in staged {
        let id = w.id.to_string();
        let found = change
            .audit
            .iter()
            .position(|a| a.version_after == w.version.get() && a.patient == id);
        let audit = match found {
            Some(i) => {
                embedded[i] = true;
                let json = serde_json::to_vec(&change.audit[i]).expect("JSON");
                Some((tables.next_audit_seq()?, json))
            }
            None => None,
        };
        tables.put(w, audit.as_ref().map(|(seq, json)| (*seq, json.as_slice())))?;
    }
    let created = change
        .writes
        .iter()
        .filter(|w| w.expected.is_none())
        .count();
    if created > 0 {
        tables.count_new_records(created as u64)?;
    }
    for (source, target) in &change.supersede {
        tables.superseded.insert(source.as_u64(), target.as_u64())?;
    }
    for source in &change.unsupersede {
        tables.superseded.remove(source.as_u64())?;
    }
    for (entry, _) in change.audit.iter().zip(embedded).filter(|(_, e)| !e) {
        let seq = tables.next_audit_seq()?;
        let patient =
            NhsNumber::parse(&entry.patient).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        tables
            .audit
            .insert((patient.as_u64(), seq), Ok(entry.clone()))?;
    }
    if let Some(request) = &change.request {
        save_request(tables, request)?;
    }
    for (old, new) in &change.identity_links {
        tables.identity_links.insert(old.as_u64(), new.as_u64())?;
    }
    for w in &change.resources {
        tables.put_resource(&w.new, &w.old_index)?;
    }
    Ok(())
}
