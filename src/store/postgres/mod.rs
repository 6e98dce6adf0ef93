//! The PostgreSQL store: for deployments that outgrow one machine — several API nodes on one
//! database, which may be a distributed engine speaking PostgreSQL.
//!
//! The guarantees are the embedded store's: every change is one SQL transaction that checks
//! the versions it expects (rows locked `FOR UPDATE`, in NHS-number order), writes the records,
//! their history, their index keys, the audit entries and the idempotency record, and commits
//! before anything is answered (a server with `fsync` or `synchronous_commit` off is refused).
//! Nothing lives in one node's memory: the idempotency record of a request id is claimed first
//! in the transaction, so a duplicate on another node waits for it and then gets its answer;
//! allocated NHS numbers are a table with a unique key, so two nodes never hand out the same
//! one. A lost connection or a restarting server answers `Unavailable` (503, retry); the pool
//! opens new connections by itself.

mod dump;
mod error;
pub mod index;
mod resources;
pub mod schema;

use std::collections::HashMap;

use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Transaction,
};
use tokio_postgres::NoTls;

use super::resource::{IndexQuery, ResourceKind, ResourceVersion};
use super::{
    stage, AllocatingChange, AuditEntry, BulkStep, Change, Committed, ExistingRecords,
    PatientStore, RequestRecord, SavedResponse, Staged, StoreError, StoredRecord,
};
use crate::domain::index::Lookup;
use crate::domain::{NhsNumber, Patient, Version};
pub use error::describe;

/// How many times a change that lost a race (a deadlock, a serialization failure, a number
/// another node allocated at the same moment) is tried again before answering 503.
const ATTEMPTS: usize = 5;

/// How many expired idempotency records one change forgets at most (keeps changes short).
const FORGET_PER_COMMIT: i64 = 64;

#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
}

/// Runs a change to its end on its own task: a caller that gives up (a request timeout, a
/// client that went) must not cut a transaction short between its commit and its answer, so
/// the outcome is always whole and a retry with the same request id finds it.
async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::spawn(work)
        .await
        .map_err(|e| StoreError::Unavailable(format!("the change did not finish: {e}")))?
}

fn nhs(n: NhsNumber) -> i64 {
    n.as_u64() as i64
}

fn nhs_of(v: i64) -> Result<NhsNumber, StoreError> {
    NhsNumber::from_u64(v as u64).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn version_of(v: i32) -> Result<Version, StoreError> {
    Version::new(v as u32).ok_or_else(|| StoreError::Corrupt(format!("version {v}")))
}

/// The columns every read of a record from `patients` selects, in this order (after any key
/// columns): what [`stored_record`] reads. A macro, so that queries stay constant strings.
macro_rules! record_columns {
    () => {
        "version, restricted, merged, invalidated, doc"
    };
}
pub(crate) use record_columns;

/// A record from the `record_columns!()` of `row`, starting at column `at`.
fn stored_record(row: &tokio_postgres::Row, at: usize) -> Result<StoredRecord, StoreError> {
    Ok(StoredRecord {
        version: version_of(row.get(at))?,
        restricted: row.get(at + 1),
        merged: row.get(at + 2),
        invalidated: row.get(at + 3),
        json: row.get(at + 4),
    })
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host/db`) with a pool of `size` connections and
    /// brings the schema up to date.
    pub async fn connect(url: &str, size: usize) -> Result<PgStore, StoreError> {
        let store = PgStore::connect_unmigrated(url, size).await?;
        store.check_durability().await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Refuses a server that would acknowledge a commit it may lose in a crash: an answer is
    /// sent once COMMIT returns, so COMMIT must mean durable (`fsync` and `synchronous_commit`
    /// not `off`, as the server, the database or the role has them).
    async fn check_durability(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        for setting in ["fsync", "synchronous_commit"] {
            let value: String = client
                .query_one(&format!("SHOW {setting}"), &[])
                .await?
                .get(0);
            if value == "off" {
                return Err(StoreError::Internal(format!(
                    "the PostgreSQL server runs with {setting} = off: a change it acknowledges \
                     could be lost in a crash, and pds-facade answers 200 only for durable \
                     changes — set {setting} = on"
                )));
            }
        }
        Ok(())
    }

    /// Connects without touching the schema (for `pds-facade migrate`, which reports it).
    pub async fn connect_unmigrated(url: &str, size: usize) -> Result<PgStore, StoreError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Unavailable(format!("not a PostgreSQL URL: {e}")))?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                // a connection whose server went (restarted, killed) is closed by then and
                // dropped, not handed out again; no test query per checkout (a round trip)
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(size)
            .wait_timeout(Some(std::time::Duration::from_secs(5)))
            .create_timeout(Some(std::time::Duration::from_secs(5)))
            .recycle_timeout(Some(std::time::Duration::from_secs(5)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(PgStore { pool })
    }

    /// The database's schema version (`None`: not a pds-facade database yet).
    pub async fn schema_version(&self) -> Result<Option<i32>, StoreError> {
        let client = self.pool.get().await?;
        schema::current(&client).await
    }

    /// Applies the migrations this database lacks; returns the versions applied.
    pub async fn migrate(&self) -> Result<Vec<i32>, StoreError> {
        let mut client = self.pool.get().await?;
        schema::migrate(&mut client).await
    }

    /// A secret shared by every node on this database, created on first use (the development
    /// JWT key of sandbox mode).
    pub async fn shared_secret(&self, name: &str, fresh: &str) -> Result<String, StoreError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&name, &fresh],
            )
            .await?;
        Ok(client
            .query_one("SELECT value FROM secrets WHERE name = $1", &[&name])
            .await?
            .get(0))
    }

    /// The plan PostgreSQL makes for each lookup of a search, with sequential scans ruled out
    /// where an index can serve (`enable_seqscan = off`): a plan that still scans a table
    /// sequentially has no index to use.
    pub async fn explain(&self, lookups: &[Lookup]) -> Result<Vec<String>, StoreError> {
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        txn.execute("SET LOCAL enable_seqscan = off", &[]).await?;
        let mut plans = Vec::new();
        for lookup in lookups {
            let (sql, kind, key, upper, lo, hi) = index::query(lookup);
            let explain = format!("EXPLAIN {sql}");
            let rows = match &upper {
                Some(u) => txn.query(&explain, &[&kind, &key, &lo, &hi, u]).await?,
                None => txn.query(&explain, &[&kind, &key, &lo, &hi]).await?,
            };
            plans.push(
                rows.iter()
                    .map(|r| r.get::<_, String>(0))
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
        }
        Ok(plans)
    }

    /// Runs `attempt` in a fresh transaction until it commits or fails for a reason other than
    /// a race it may lose (tried [`ATTEMPTS`] times).
    async fn with_retries<T, F>(&self, mut attempt: F) -> Result<T, StoreError>
    where
        F: for<'t> FnMut(&'t Transaction<'t>) -> Attempt<'t, T>,
    {
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let mut client = self.pool.get().await?;
            let txn = client.transaction().await?;
            match attempt(&txn).await {
                Ok(Outcome::Commit(value)) => {
                    let started = std::time::Instant::now();
                    let committed = txn.commit().await;
                    crate::telemetry::postgres_commit(started.elapsed());
                    match committed {
                        Ok(()) => return Ok(value),
                        Err(e) if error::retryable(&e) => last = Some(StoreError::from(e)),
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(Outcome::Rollback(value)) => {
                    txn.rollback().await?;
                    return Ok(value);
                }
                Err(Failure::Retry(e)) => {
                    last = Some(e);
                    let _ = txn.rollback().await;
                }
                Err(Failure::Stop(e)) => {
                    let _ = txn.rollback().await;
                    return Err(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| StoreError::Unavailable("too many conflicts".into())))
    }
}

/// One attempt at a transaction.
type Attempt<'t, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Outcome<T>, Failure>> + Send + 't>>;

/// How a transaction attempt ends.
enum Outcome<T> {
    Commit(T),
    /// Nothing to write (a replayed request): the transaction is rolled back.
    Rollback(T),
}

/// Why an attempt did not get to commit.
enum Failure {
    /// A race lost: try again in a new transaction.
    Retry(StoreError),
    Stop(StoreError),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        if error::retryable(&e) {
            Failure::Retry(e.into())
        } else {
            Failure::Stop(e.into())
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Stop(e)
    }
}

/// Claims a change's request id (first thing in its transaction): `Some` saved answer to
/// replay, or the request is ours. A concurrent identical request on another node waits here
/// until the first commits (then replays its answer) or rolls back (then runs itself).
async fn claim_request(
    txn: &Transaction<'_>,
    change: &Change,
) -> Result<Option<SavedResponse>, Failure> {
    let Some(request) = &change.request else {
        return Ok(None);
    };
    let response = serde_json::to_vec(&request.response).expect("JSON");
    let (fingerprint, saved_at) = (request.fingerprint.to_vec(), request.saved_at as i64);
    let claim = txn
        .prepare_cached(
            "INSERT INTO requests (request_id, fingerprint, saved_at, response)
             VALUES ($1, $2, $3, $4) ON CONFLICT (request_id) DO NOTHING",
        )
        .await?;
    let inserted = txn
        .execute(
            &claim,
            &[&request.request_id, &fingerprint, &saved_at, &response],
        )
        .await?;
    if inserted == 1 {
        return Ok(None);
    }
    let Some(row) = txn
        .query_opt(
            "SELECT fingerprint, saved_at, response FROM requests WHERE request_id = $1 FOR UPDATE",
            &[&request.request_id],
        )
        .await?
    else {
        // an expired record another change forgot between the two statements: claim afresh
        return Err(Failure::Retry(StoreError::Unavailable(
            "the request id's expired record was forgotten meanwhile".into(),
        )));
    };
    let (stored_fingerprint, stored_at): (Vec<u8>, i64) = (row.get(0), row.get(1));
    if (stored_at as u64) < change.forget_requests_before {
        // expired: the id is free again
        txn.execute(
            "UPDATE requests SET fingerprint = $2, saved_at = $3, response = $4 WHERE request_id = $1",
            &[&request.request_id, &fingerprint, &saved_at, &response],
        )
        .await?;
        return Ok(None);
    }
    if stored_fingerprint != fingerprint {
        return Err(StoreError::RequestIdReused(request.request_id.clone()).into());
    }
    let saved: SavedResponse = serde_json::from_slice(row.get::<_, &[u8]>(2))
        .map_err(|e| StoreError::Corrupt(format!("a saved response: {e}")))?;
    Ok(Some(saved))
}

/// Locks the rows a change writes (in NHS-number order, so that two changes of the same
/// records cannot deadlock) and reads their versions.
async fn lock_versions(
    txn: &Transaction<'_>,
    change: &Change,
) -> Result<HashMap<i64, i32>, Failure> {
    let mut ids: Vec<i64> = change.writes.iter().map(|w| nhs(w.record.id())).collect();
    ids.sort_unstable();
    // one statement a row (a merge has two): each stays on one shard of a distributed engine,
    // where a locking read across shards is not allowed
    let lock = txn
        .prepare_cached("SELECT version FROM patients WHERE nhs = $1 FOR UPDATE")
        .await?;
    let mut current = HashMap::with_capacity(ids.len());
    for id in ids {
        if let Some(row) = txn.query_opt(&lock, &[&id]).await? {
            current.insert(id, row.get(0));
        }
    }
    Ok(current)
}

/// Every write's expected version is still current (`current`: the locked rows' versions).
fn compare_versions(current: &HashMap<i64, i32>, change: &Change) -> Result<(), Failure> {
    for w in &change.writes {
        let id = w.record.id();
        match (current.get(&nhs(id)), w.expected) {
            (None, None) => {}
            (Some(_), None) => return Err(StoreError::AlreadyExists(id).into()),
            (None, Some(_)) => return Err(StoreError::NotFound(id).into()),
            (Some(v), Some(expected)) if *v as u32 != expected.get() => {
                return Err(StoreError::VersionConflict {
                    id,
                    expected,
                    current: version_of(*v)?,
                }
                .into())
            }
            (Some(_), Some(_)) => {}
        }
    }
    Ok(())
}

/// The current rows of `rows`: `create` rows must be new (a number taken meanwhile by a
/// concurrent writer fails the insert), the others replace the current row.
async fn put_patients(
    client: &impl GenericClient,
    rows: &Rows<'_>,
    create: bool,
) -> Result<(), tokio_postgres::Error> {
    if rows.ids.is_empty() {
        return Ok(());
    }
    let patients = client
        .prepare_cached(if create {
            "INSERT INTO patients (nhs, version, restricted, merged, invalidated, doc)
             SELECT * FROM unnest($1::bigint[], $2::integer[], $3::boolean[], $4::boolean[],
                                  $5::boolean[], $6::bytea[])"
        } else {
            "INSERT INTO patients (nhs, version, restricted, merged, invalidated, doc)
             SELECT * FROM unnest($1::bigint[], $2::integer[], $3::boolean[], $4::boolean[],
                                  $5::boolean[], $6::bytea[])
             ON CONFLICT (nhs) DO UPDATE SET version = EXCLUDED.version,
                 restricted = EXCLUDED.restricted, merged = EXCLUDED.merged,
                 invalidated = EXCLUDED.invalidated, doc = EXCLUDED.doc"
        })
        .await?;
    client
        .execute(
            &patients,
            &[
                &rows.ids,
                &rows.versions,
                &rows.restricted,
                &rows.merged,
                &rows.invalidated,
                &rows.docs,
            ],
        )
        .await?;
    Ok(())
}

/// The current record and the version of each staged write (see [`put_patients`]).
async fn put_records(
    client: &impl GenericClient,
    staged: &[&Staged],
    create: bool,
) -> Result<(), tokio_postgres::Error> {
    let rows = Rows::of(staged.iter().copied());
    if rows.ids.is_empty() {
        return Ok(());
    }
    put_patients(client, &rows, create).await?;
    let history = client
        .prepare_cached(
            "INSERT INTO versions (nhs, version, doc)
             SELECT * FROM unnest($1::bigint[], $2::integer[], $3::bytea[])",
        )
        .await?;
    client
        .execute(&history, &[&rows.ids, &rows.versions, &rows.docs])
        .await?;
    Ok(())
}

/// Everything a checked change writes, as one statement (one round trip): its records
/// (`created` rows must be new — a number taken meanwhile by a concurrent writer fails the
/// insert — the others replace the current row), their versions, their new index keys, merge
/// links set and cleared, audit entries (numbered in their order), identity links, and a few
/// expired idempotency records forgotten. An empty array writes nothing.
const WRITE_CHANGE: &str = r#"
WITH created AS (
    INSERT INTO patients (nhs, version, restricted, merged, invalidated, doc)
    SELECT * FROM unnest($1::bigint[], $2::integer[], $3::boolean[], $4::boolean[], $5::boolean[],
                         $6::bytea[])
), updated AS (
    INSERT INTO patients (nhs, version, restricted, merged, invalidated, doc)
    SELECT * FROM unnest($7::bigint[], $8::integer[], $9::boolean[], $10::boolean[],
                         $11::boolean[], $12::bytea[])
    ON CONFLICT (nhs) DO UPDATE SET version = EXCLUDED.version, restricted = EXCLUDED.restricted,
        merged = EXCLUDED.merged, invalidated = EXCLUDED.invalidated, doc = EXCLUDED.doc
), history AS (
    INSERT INTO versions (nhs, version, doc)
    SELECT * FROM unnest($1::bigint[] || $7::bigint[], $2::integer[] || $8::integer[],
                         $6::bytea[] || $12::bytea[])
), keys AS (
    INSERT INTO search_index (kind, key, birth, nhs)
    SELECT * FROM unnest($13::smallint[], $14::text[], $15::integer[], $16::bigint[])
    ON CONFLICT DO NOTHING
), merged AS (
    INSERT INTO superseded (nhs, by_nhs) SELECT * FROM unnest($17::bigint[], $18::bigint[])
    ON CONFLICT (nhs) DO UPDATE SET by_nhs = EXCLUDED.by_nhs
), unmerged AS (
    DELETE FROM superseded WHERE nhs = ANY($19::bigint[])
), audited AS (
    INSERT INTO audit (nhs, entry)
    SELECT nhs, entry FROM unnest($20::bigint[], $21::bytea[]) WITH ORDINALITY AS a(nhs, entry, i)
    ORDER BY i
), links AS (
    INSERT INTO identity_links (nhs, new_nhs) SELECT * FROM unnest($22::bigint[], $23::bigint[])
), forgotten AS (
    DELETE FROM requests WHERE request_id IN (
        SELECT request_id FROM requests WHERE saved_at < $24 ORDER BY saved_at LIMIT $25
        FOR UPDATE SKIP LOCKED)
)
SELECT 1
"#;

/// The columns of `patients` for some staged writes.
struct Rows<'a> {
    ids: Vec<i64>,
    versions: Vec<i32>,
    restricted: Vec<bool>,
    merged: Vec<bool>,
    invalidated: Vec<bool>,
    docs: Vec<&'a [u8]>,
}

impl<'a> Rows<'a> {
    fn of(staged: impl Iterator<Item = &'a Staged>) -> Rows<'a> {
        let mut rows = Rows {
            ids: vec![],
            versions: vec![],
            restricted: vec![],
            merged: vec![],
            invalidated: vec![],
            docs: vec![],
        };
        for s in staged {
            rows.ids.push(nhs(s.id));
            rows.versions.push(s.version.get() as i32);
            rows.restricted.push(s.restricted);
            rows.merged.push(s.merged);
            rows.invalidated.push(s.invalidated);
            rows.docs.push(&s.json);
        }
        rows
    }
}

/// Writes a checked change (its request id already claimed).
async fn write_change(
    txn: &Transaction<'_>,
    change: &Change,
    staged: &[Staged],
) -> Result<(), Failure> {
    let is_new = |i: usize| change.writes[i].expected.is_none();
    let created = Rows::of(
        staged
            .iter()
            .enumerate()
            .filter(|(i, _)| is_new(*i))
            .map(|(_, s)| s),
    );
    let updated = Rows::of(
        staged
            .iter()
            .enumerate()
            .filter(|(i, _)| !is_new(*i))
            .map(|(_, s)| s),
    );
    let (mut kinds, mut keys, mut births, mut key_ids) = (vec![], vec![], vec![], vec![]);
    for s in staged {
        for key in &s.keys {
            let (kind, value, birth) = index::row(key);
            kinds.push(kind);
            keys.push(value);
            births.push(birth);
            key_ids.push(nhs(s.id));
        }
    }
    let (sources, targets): (Vec<i64>, Vec<i64>) = change
        .supersede
        .iter()
        .map(|(s, t)| (nhs(*s), nhs(*t)))
        .unzip();
    let unmerged: Vec<i64> = change.unsupersede.iter().map(|n| nhs(*n)).collect();
    let mut audit_ids = Vec::with_capacity(change.audit.len());
    let mut audit_entries = Vec::with_capacity(change.audit.len());
    for entry in &change.audit {
        let patient =
            NhsNumber::parse(&entry.patient).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        audit_ids.push(nhs(patient));
        audit_entries.push(serde_json::to_vec(entry).expect("JSON"));
    }
    let (old, new): (Vec<i64>, Vec<i64>) = change
        .identity_links
        .iter()
        .map(|(o, n)| (nhs(*o), nhs(*n)))
        .unzip();
    let forget_before = change.forget_requests_before as i64;
    let statement = txn.prepare_cached(WRITE_CHANGE).await?;
    let written = txn
        .execute(
            &statement,
            &[
                &created.ids,
                &created.versions,
                &created.restricted,
                &created.merged,
                &created.invalidated,
                &created.docs,
                &updated.ids,
                &updated.versions,
                &updated.restricted,
                &updated.merged,
                &updated.invalidated,
                &updated.docs,
                &kinds,
                &keys,
                &births,
                &key_ids,
                &sources,
                &targets,
                &unmerged,
                &audit_ids,
                &audit_entries,
                &old,
                &new,
                &forget_before,
                &FORGET_PER_COMMIT,
            ],
        )
        .await;
    match written {
        Ok(_) => Ok(()),
        // a concurrent writer took the number since it was checked: the next attempt sees it
        Err(e) if error::unique_violation(&e, "patients_pkey") => Err(Failure::Retry(e.into())),
        Err(e) => Err(e.into()),
    }
}

/// Claims, checks and writes one change in `txn`.
async fn run_change(
    txn: &Transaction<'_>,
    change: &Change,
    staged: &[Staged],
) -> Result<Outcome<Committed>, Failure> {
    // sent together (one round trip); PostgreSQL runs them in order, the claim first
    let (claimed, current) =
        tokio::try_join!(claim_request(txn, change), lock_versions(txn, change))?;
    if let Some(saved) = claimed {
        return Ok(Outcome::Rollback(Committed::Replayed(saved)));
    }
    compare_versions(&current, change)?;
    resources::check(txn, &change.resources).await?;
    write_change(txn, change, staged).await?;
    resources::write(txn, &change.resources).await?;
    Ok(Outcome::Commit(Committed::Applied))
}

/// Stores one batch of a bulk load in the load's transaction: new records as they are,
/// existing ones refused or stored as their next version.
async fn load_batch(
    txn: &Transaction<'_>,
    batch: &[Staged],
    existing: ExistingRecords,
) -> Result<(), StoreError> {
    let ids: Vec<i64> = batch.iter().map(|s| nhs(s.id)).collect();
    let current: HashMap<i64, i32> = txn
        .query(
            "SELECT nhs, version FROM patients WHERE nhs = ANY($1) ORDER BY nhs FOR UPDATE",
            &[&ids],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut replaced = Vec::new();
    for s in batch {
        if let Some(v) = current.get(&nhs(s.id)) {
            if existing == ExistingRecords::Reject {
                return Err(StoreError::AlreadyExists(s.id));
            }
            let record = Patient::from_stored(&s.json)
                .map_err(StoreError::Corrupt)?
                .with_version(version_of(*v)?.next());
            replaced.push(Staged::new(&record));
        }
    }
    let fresh: Vec<&Staged> = batch
        .iter()
        .filter(|s| !current.contains_key(&nhs(s.id)))
        .collect();
    put_records(txn, &fresh, true).await?;
    put_records(txn, &replaced.iter().collect::<Vec<_>>(), false).await?;
    let entries: Vec<(&crate::domain::index::IndexKey, i64)> = batch
        .iter()
        .flat_map(|s| s.keys.iter().map(move |k| (k, nhs(s.id))))
        .collect();
    index::insert(txn, &entries).await
}

#[async_trait::async_trait]
impl PatientStore for PgStore {
    async fn readiness(&self) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        txn.batch_execute("SET LOCAL statement_timeout = '2s'")
            .await?;
        // a read of the records' table, and whether this server takes writes at all
        let replica: bool = txn
            .query_one(
                "SELECT pg_is_in_recovery(), EXISTS (SELECT 1 FROM patients)",
                &[],
            )
            .await?
            .get(0);
        if replica {
            return Err(StoreError::Unavailable(
                "the PostgreSQL server is a read-only replica (in recovery)".into(),
            ));
        }
        // a transaction id makes the commit a real, durable write (a WAL commit record)
        txn.query_one("SELECT txid_current()", &[]).await?;
        txn.commit().await?;
        Ok(())
    }

    async fn get(&self, id: NhsNumber) -> Result<Option<StoredRecord>, StoreError> {
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached(concat!(
                "SELECT ",
                record_columns!(),
                " FROM patients WHERE nhs = $1"
            ))
            .await?;
        client
            .query_opt(&statement, &[&nhs(id)])
            .await?
            .map(|row| stored_record(&row, 0))
            .transpose()
    }

    async fn get_many(
        &self,
        ids: &[NhsNumber],
    ) -> Result<Vec<(NhsNumber, StoredRecord)>, StoreError> {
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached(concat!(
                "SELECT nhs, ",
                record_columns!(),
                " FROM patients WHERE nhs = ANY($1)"
            ))
            .await?;
        let wanted: Vec<i64> = ids.iter().map(|n| nhs(*n)).collect();
        let mut found: HashMap<i64, StoredRecord> = HashMap::with_capacity(ids.len());
        for row in client.query(&statement, &[&wanted]).await? {
            found.insert(row.get(0), stored_record(&row, 1)?);
        }
        Ok(ids
            .iter()
            .filter_map(|n| found.remove(&nhs(*n)).map(|r| (*n, r)))
            .collect())
    }

    async fn get_version(
        &self,
        id: NhsNumber,
        version: Version,
    ) -> Result<Option<StoredRecord>, StoreError> {
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached("SELECT doc FROM versions WHERE nhs = $1 AND version = $2")
            .await?;
        let row = client
            .query_opt(&statement, &[&nhs(id), &(version.get() as i32)])
            .await?;
        row.map(|r| StoredRecord::from_version(r.get(0), version))
            .transpose()
    }

    async fn history(&self, id: NhsNumber) -> Result<Vec<StoredRecord>, StoreError> {
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached(
                "SELECT version, doc FROM versions WHERE nhs = $1 ORDER BY version DESC",
            )
            .await?;
        client
            .query(&statement, &[&nhs(id)])
            .await?
            .into_iter()
            .map(|r| StoredRecord::from_version(r.get(1), version_of(r.get(0))?))
            .collect()
    }

    async fn superseded_by(&self, id: NhsNumber) -> Result<Option<NhsNumber>, StoreError> {
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached("SELECT by_nhs FROM superseded WHERE nhs = $1")
            .await?;
        client
            .query_opt(&statement, &[&nhs(id)])
            .await?
            .map(|r| nhs_of(r.get(0)))
            .transpose()
    }

    async fn commit(&self, change: Change) -> Result<Committed, StoreError> {
        let store = self.clone();
        detached(async move {
            let staged = std::sync::Arc::new(stage(&change));
            let change = std::sync::Arc::new(change);
            store
                .with_retries(|txn| {
                    let (change, staged) = (change.clone(), staged.clone());
                    Box::pin(async move { run_change(txn, &change, &staged).await })
                })
                .await
        })
        .await
    }

    async fn commit_allocating(
        &self,
        prefixes: (u64, u64),
        build: AllocatingChange,
    ) -> Result<(Committed, NhsNumber), StoreError> {
        let store = self.clone();
        detached(async move {
            store
                .with_retries(|txn| {
                    let build = build.clone();
                    Box::pin(async move {
                        let used = txn
                            .prepare_cached(
                                "SELECT EXISTS (SELECT 1 FROM allocated WHERE nhs = $1)
                             OR EXISTS (SELECT 1 FROM patients WHERE nhs = $1)",
                            )
                            .await?;
                        let mut chosen = None;
                        for n in super::allocation::candidates(prefixes)? {
                            if !txn.query_one(&used, &[&nhs(n)]).await?.get::<_, bool>(0) {
                                chosen = Some(n);
                                break;
                            }
                        }
                        let n = chosen.ok_or(StoreError::RangeExhausted)?;
                        let change = build(n);
                        if let Some(saved) = claim_request(txn, &change).await? {
                            return Ok(Outcome::Rollback((Committed::Replayed(saved), n)));
                        }
                        // another node may have drawn the same number a moment ago: its insert wins,
                        // and this attempt starts again with a new draw
                        let taken = txn
                            .execute(
                                "INSERT INTO allocated (nhs) VALUES ($1) ON CONFLICT DO NOTHING",
                                &[&nhs(n)],
                            )
                            .await?;
                        if taken == 0 {
                            return Err(Failure::Retry(StoreError::Unavailable(
                                "the number drawn was allocated meanwhile".into(),
                            )));
                        }
                        let staged = stage(&change);
                        match run_after_claim(txn, &change, &staged).await? {
                            Outcome::Commit(c) => Ok(Outcome::Commit((c, n))),
                            Outcome::Rollback(c) => Ok(Outcome::Rollback((c, n))),
                        }
                    })
                })
                .await
        })
        .await
    }

    async fn request(&self, request_id: &str) -> Result<Option<RequestRecord>, StoreError> {
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached(
                "SELECT fingerprint, saved_at, response FROM requests WHERE request_id = $1",
            )
            .await?;
        let Some(row) = client.query_opt(&statement, &[&request_id]).await? else {
            return Ok(None);
        };
        let fingerprint: Vec<u8> = row.get(0);
        Ok(Some(RequestRecord {
            request_id: request_id.to_string(),
            fingerprint: fingerprint
                .try_into()
                .map_err(|_| StoreError::Corrupt("a request fingerprint".into()))?,
            saved_at: row.get::<_, i64>(1) as u64,
            response: serde_json::from_slice(row.get::<_, &[u8]>(2))
                .map_err(|e| StoreError::Corrupt(format!("a saved response: {e}")))?,
        }))
    }

    async fn audit(&self, id: NhsNumber) -> Result<Vec<AuditEntry>, StoreError> {
        let client = self.pool.get().await?;
        let statement = client
            .prepare_cached("SELECT entry FROM audit WHERE nhs = $1 ORDER BY seq")
            .await?;
        client
            .query(&statement, &[&nhs(id)])
            .await?
            .iter()
            .map(|r| {
                serde_json::from_slice(r.get::<_, &[u8]>(0))
                    .map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .collect()
    }

    async fn insert_batch(
        &self,
        records: &[Patient],
        existing: ExistingRecords,
    ) -> Result<(), StoreError> {
        super::once_each(records.iter().map(Patient::id))?;
        let staged: Vec<Staged> = records.iter().map(Staged::new).collect();
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        load_batch(&txn, &staged, existing).await?;
        Ok(txn.commit().await?)
    }

    async fn bulk_load(
        &self,
        existing: ExistingRecords,
        next: &mut (dyn FnMut() -> BulkStep + Send),
    ) -> Result<u64, StoreError> {
        // the whole load is one transaction: all of it or none, on a problem or a crash alike
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        let mut stored = 0u64;
        loop {
            match next() {
                BulkStep::Batch(batch) => {
                    super::once_each(batch.iter().map(|s| s.id))?;
                    load_batch(&txn, &batch, existing).await?;
                    stored += batch.len() as u64;
                }
                BulkStep::Abort => {
                    txn.rollback().await?;
                    return Err(StoreError::Aborted);
                }
                BulkStep::Done => {
                    txn.commit().await?;
                    return Ok(stored);
                }
            }
        }
    }

    async fn snapshot(&self) -> Result<Box<dyn super::dump::Snapshot>, StoreError> {
        Ok(Box::new(dump::PgSnapshot::begin(self).await?))
    }

    async fn restore(&self) -> Result<Box<dyn super::dump::Restore>, StoreError> {
        Ok(Box::new(dump::PgRestore::begin(self).await?))
    }

    async fn count(&self) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        let n: i64 = client
            .query_one("SELECT count(*) FROM patients", &[])
            .await?
            .get(0);
        Ok(n as u64)
    }

    async fn candidates(&self, lookups: &[Lookup]) -> Result<Vec<NhsNumber>, StoreError> {
        let client = self.pool.get().await?;
        index::candidates(&client, lookups).await
    }

    async fn reindex(&self) -> Result<u64, StoreError> {
        let mut client = self.pool.get().await?;
        let txn = client.transaction().await?;
        let n = index::rebuild(&txn).await?;
        txn.commit().await?;
        Ok(n)
    }

    async fn check_indexes(&self) -> Result<Vec<String>, StoreError> {
        let mut client = self.pool.get().await?;
        // one snapshot for both sides of the comparison
        let txn = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        index::check(&txn).await
    }

    async fn resource(
        &self,
        kind: ResourceKind,
        id: &str,
    ) -> Result<Option<ResourceVersion>, StoreError> {
        resources::current(&self.pool.get().await?, kind, id).await
    }

    async fn resource_history(
        &self,
        kind: ResourceKind,
        id: &str,
    ) -> Result<Vec<ResourceVersion>, StoreError> {
        resources::history_of(&self.pool.get().await?, kind, id).await
    }

    async fn resource_ids(&self, query: &IndexQuery) -> Result<Vec<String>, StoreError> {
        resources::ids(&self.pool.get().await?, query).await
    }
}

/// [`run_change`] once the request id is claimed (an allocation claims it itself).
async fn run_after_claim(
    txn: &Transaction<'_>,
    change: &Change,
    staged: &[Staged],
) -> Result<Outcome<Committed>, Failure> {
    compare_versions(&lock_versions(txn, change).await?, change)?;
    resources::check(txn, &change.resources).await?;
    write_change(txn, change, staged).await?;
    resources::write(txn, &change.resources).await?;
    Ok(Outcome::Commit(Committed::Applied))
}
