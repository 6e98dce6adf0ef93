//! The PostgreSQL schema, as numbered migrations run at start-up and by `pds-facade migrate`.
//!
//! Each migration runs once, in its own transaction, recorded in `pds_schema`; several nodes
//! starting together take turns (an advisory lock). A database whose schema is newer than this
//! program knows is refused: an older binary must not write to tables it does not understand.

use tokio_postgres::Client;

use crate::store::StoreError;

/// `(version, what it does, SQL)`, in order.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "tables", TABLES),
    (
        2,
        "distribution on Citus (skipped on plain PostgreSQL)",
        CITUS,
    ),
    (
        3,
        "idempotency records in byte order (copy and verify read them so)",
        "CREATE INDEX requests_in_byte_order ON requests ((request_id COLLATE \"C\"));",
    ),
    (4, "cases and messages (Task, Communication)", RESOURCES),
];

/// Tasks and Communications (see [`crate::store::resource`]): the current version of each,
/// every version (the stored [`ResourceVersion`](crate::store::resource::ResourceVersion) as
/// JSON: the document, its audit entry, its index entries), and the current versions' index
/// entries, read in byte order of `sort` as redb reads them.
const RESOURCES: &str = r#"
CREATE TABLE resources (
    kind    text COLLATE "C" NOT NULL,
    id      text COLLATE "C" NOT NULL,
    version integer NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE TABLE resource_versions (
    kind    text COLLATE "C" NOT NULL,
    id      text COLLATE "C" NOT NULL,
    version integer NOT NULL,
    body    bytea   NOT NULL,
    PRIMARY KEY (kind, id, version)
);
CREATE TABLE resource_index (
    kind text COLLATE "C" NOT NULL,
    key  text COLLATE "C" NOT NULL,
    sort text COLLATE "C" NOT NULL,
    id   text COLLATE "C" NOT NULL,
    PRIMARY KEY (kind, key, sort, id)
);
"#;

/// Every per-patient table is keyed first by the NHS number (`nhs`, bigint): the column a
/// distributed engine shards them on. Documents are kept as the exact bytes written (`bytea`),
/// so a read returns them as they are, field order included.
const TABLES: &str = r#"
CREATE TABLE patients (
    nhs         bigint  PRIMARY KEY,
    version     integer NOT NULL,
    restricted  boolean NOT NULL,
    merged      boolean NOT NULL,
    invalidated boolean NOT NULL,
    doc         bytea   NOT NULL
);
CREATE TABLE versions (
    nhs     bigint  NOT NULL,
    version integer NOT NULL,
    doc     bytea   NOT NULL,
    PRIMARY KEY (nhs, version)
);
CREATE TABLE superseded (nhs bigint PRIMARY KEY, by_nhs bigint NOT NULL);
CREATE TABLE identity_links (nhs bigint PRIMARY KEY, new_nhs bigint NOT NULL);
CREATE TABLE allocated (nhs bigint PRIMARY KEY);
CREATE TABLE audit (
    nhs   bigint NOT NULL,
    seq   bigserial,
    entry bytea  NOT NULL,
    PRIMARY KEY (nhs, seq)
);
CREATE TABLE requests (
    request_id  text   PRIMARY KEY,
    fingerprint bytea  NOT NULL,
    saved_at    bigint NOT NULL,
    response    bytea  NOT NULL
);
CREATE INDEX requests_by_time ON requests (saved_at);
-- search keys: kind (1 family, 2 phonetic, 3 first given name, 4 postcode, 5 phone, 6 e-mail,
-- 7 GP), the normalised value (byte order, for prefix ranges), the birth date for the dated
-- kinds (0 otherwise), and the record
CREATE TABLE search_index (
    kind  smallint NOT NULL,
    key   text COLLATE "C" NOT NULL,
    birth integer  NOT NULL,
    nhs   bigint   NOT NULL,
    PRIMARY KEY (kind, key, birth, nhs)
);
CREATE TABLE secrets (name text PRIMARY KEY, value text NOT NULL);
"#;

/// On Citus, every per-patient table is distributed on `nhs`, co-located, so that a change to
/// one record is a single-shard transaction; `search_index` on `key`, so that a lookup goes to
/// one shard (its entries for one change span a few shards: a multi-shard transaction); the
/// idempotency records on their id; `secrets` is a reference table. Merges and changes of
/// identity touch two records: multi-shard transactions, as Citus does them (two-phase commit).
/// On plain PostgreSQL this does nothing.
const CITUS: &str = r#"
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        PERFORM create_distributed_table('patients', 'nhs');
        PERFORM create_distributed_table('versions', 'nhs', colocate_with => 'patients');
        PERFORM create_distributed_table('superseded', 'nhs', colocate_with => 'patients');
        PERFORM create_distributed_table('identity_links', 'nhs', colocate_with => 'patients');
        PERFORM create_distributed_table('allocated', 'nhs', colocate_with => 'patients');
        PERFORM create_distributed_table('audit', 'nhs', colocate_with => 'patients');
        PERFORM create_distributed_table('requests', 'request_id');
        PERFORM create_distributed_table('search_index', 'key');
        PERFORM create_reference_table('secrets');
    END IF;
END
$$;
"#;

/// The schema version of the database, or `None` where pds-facade never migrated it.
pub async fn current(client: &Client) -> Result<Option<i32>, StoreError> {
    let row = client
        .query_one("SELECT to_regclass('pds_schema') IS NOT NULL", &[])
        .await?;
    if !row.get::<_, bool>(0) {
        return Ok(None);
    }
    Ok(client
        .query_one("SELECT max(version) FROM pds_schema", &[])
        .await?
        .get(0))
}

/// The newest schema version this program knows.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |(v, _, _)| *v)
}

/// Brings the schema up to date; returns the versions applied (none when already current).
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, StoreError> {
    let txn = client.transaction().await?;
    // one node at a time, from the very first statement (two concurrent CREATE TABLE IF NOT
    // EXISTS can both try to create it); the lock goes with the transaction
    txn.execute("SELECT pg_advisory_xact_lock(4171350001)", &[])
        .await?;
    txn.batch_execute(
        "CREATE TABLE IF NOT EXISTS pds_schema (
            version    integer PRIMARY KEY,
            name       text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await?;
    let current: i32 = txn
        .query_one("SELECT coalesce(max(version), 0) FROM pds_schema", &[])
        .await?
        .get(0);
    if current > latest() {
        return Err(StoreError::Unavailable(format!(
            "the database's schema is at version {current}, newer than this pds-facade knows ({}): \
             run a pds-facade at least as new as the one that migrated it",
            latest()
        )));
    }
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS.iter().filter(|(v, _, _)| *v > current) {
        txn.batch_execute(sql).await?;
        txn.execute(
            "INSERT INTO pds_schema (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await?;
        applied.push(*version);
    }
    txn.commit().await?;
    Ok(applied)
}
