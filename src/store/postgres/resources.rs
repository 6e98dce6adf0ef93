//! Tasks and Communications on PostgreSQL (see [`crate::store::resource`]): written in the
//! transaction of the change that carries them, read by key.

use deadpool_postgres::GenericClient;
use deadpool_postgres::Transaction;

use super::{error, Failure};
use crate::store::resource::{
    check_expected, IndexEntry, IndexQuery, ResourceKind, ResourceVersion, ResourceWrite,
};
use crate::store::StoreError;

fn decode(body: &[u8]) -> Result<ResourceVersion, StoreError> {
    serde_json::from_slice(body).map_err(|e| StoreError::Corrupt(format!("a stored resource: {e}")))
}

/// Locks the current rows of the written resources (in key order: no deadlock between two
/// changes of the same resources) and refuses the change if any moved on.
pub async fn check(txn: &Transaction<'_>, writes: &[ResourceWrite]) -> Result<(), Failure> {
    if writes.is_empty() {
        return Ok(());
    }
    let lock = txn
        .prepare_cached("SELECT version FROM resources WHERE kind = $1 AND id = $2 FOR UPDATE")
        .await?;
    let mut order: Vec<&ResourceWrite> = writes.iter().collect();
    order.sort_by(|a, b| (a.new.kind, &a.new.id).cmp(&(b.new.kind, &b.new.id)));
    for w in order {
        let current = txn
            .query_opt(&lock, &[&w.new.kind.name(), &w.new.id])
            .await?
            .map(|r| r.get::<_, i32>(0) as u32);
        check_expected(w, current)?;
    }
    Ok(())
}

/// Writes checked resource versions: the current row, the version, the index entries.
pub async fn write(txn: &Transaction<'_>, writes: &[ResourceWrite]) -> Result<(), Failure> {
    for w in writes {
        match put(txn, &w.new, &w.old_index, w.expected.is_none()).await {
            Ok(()) => {}
            // created meanwhile by another node: the next attempt sees it
            Err(e) if error::unique_violation(&e, "resources_pkey") => {
                return Err(Failure::Retry(e.into()))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Stores `new` as the current version; its index entries replace `old_index`.
pub async fn put(
    client: &impl GenericClient,
    new: &ResourceVersion,
    old_index: &[IndexEntry],
    create: bool,
) -> Result<(), tokio_postgres::Error> {
    let (kind, id, version) = (new.kind.name(), new.id.as_str(), new.version as i32);
    let current = client
        .prepare_cached(if create {
            "INSERT INTO resources (kind, id, version) VALUES ($1, $2, $3)"
        } else {
            "INSERT INTO resources (kind, id, version) VALUES ($1, $2, $3)
             ON CONFLICT (kind, id) DO UPDATE SET version = EXCLUDED.version"
        })
        .await?;
    client.execute(&current, &[&kind, &id, &version]).await?;
    let body = serde_json::to_vec(new).expect("JSON");
    let history = client
        .prepare_cached(
            "INSERT INTO resource_versions (kind, id, version, body) VALUES ($1, $2, $3, $4)",
        )
        .await?;
    client
        .execute(&history, &[&kind, &id, &version, &body])
        .await?;
    // only the entries the new version drops are deleted: within one statement a delete and an
    // insert of the same row do not see each other (the insert would find it and do nothing)
    let (old_keys, old_sorts): (Vec<&str>, Vec<&str>) = old_index
        .iter()
        .filter(|e| !new.index.contains(e))
        .map(|e| (e.key.as_str(), e.sort.as_str()))
        .unzip();
    let (keys, sorts): (Vec<&str>, Vec<&str>) = new
        .index
        .iter()
        .map(|e| (e.key.as_str(), e.sort.as_str()))
        .unzip();
    let reindex = client
        .prepare_cached(
            "WITH gone AS (
                 DELETE FROM resource_index WHERE kind = $1 AND id = $2
                 AND (key, sort) IN (SELECT * FROM unnest($3::text[], $4::text[])))
             INSERT INTO resource_index (kind, key, sort, id)
             SELECT $1, k, s, $2 FROM unnest($5::text[], $6::text[]) AS u(k, s)
             ON CONFLICT DO NOTHING",
        )
        .await?;
    client
        .execute(
            &reindex,
            &[&kind, &id, &old_keys, &old_sorts, &keys, &sorts],
        )
        .await?;
    Ok(())
}

/// Stores a copied version: the current one so far (versions come in order).
pub async fn restore(client: &impl GenericClient, v: &ResourceVersion) -> Result<(), StoreError> {
    let previous = if v.version > 1 {
        let statement = client
            .prepare_cached(
                "SELECT body FROM resource_versions WHERE kind = $1 AND id = $2 AND version = $3",
            )
            .await?;
        let row = client
            .query_opt(
                &statement,
                &[&v.kind.name(), &v.id, &(v.version as i32 - 1)],
            )
            .await?;
        match row {
            Some(r) => decode(r.get(0))?.index,
            None => Vec::new(),
        }
    } else {
        Vec::new()
    };
    put(client, v, &previous, v.version == 1).await?;
    Ok(())
}

pub async fn current(
    client: &impl GenericClient,
    kind: ResourceKind,
    id: &str,
) -> Result<Option<ResourceVersion>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT v.body FROM resources r JOIN resource_versions v
             ON v.kind = r.kind AND v.id = r.id AND v.version = r.version
             WHERE r.kind = $1 AND r.id = $2",
        )
        .await?;
    client
        .query_opt(&statement, &[&kind.name(), &id])
        .await?
        .map(|r| decode(r.get(0)))
        .transpose()
}

pub async fn history_of(
    client: &impl GenericClient,
    kind: ResourceKind,
    id: &str,
) -> Result<Vec<ResourceVersion>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT body FROM resource_versions WHERE kind = $1 AND id = $2 ORDER BY version DESC",
        )
        .await?;
    client
        .query(&statement, &[&kind.name(), &id])
        .await?
        .iter()
        .map(|r| decode(r.get(0)))
        .collect()
}

pub async fn ids(client: &impl GenericClient, q: &IndexQuery) -> Result<Vec<String>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT id FROM resource_index WHERE kind = $1 AND key = $2
             AND ($3::text IS NULL OR sort < $3) ORDER BY sort, id",
        )
        .await?;
    Ok(client
        .query(&statement, &[&q.kind.name(), &q.key, &q.below])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// The dump's page of resource versions after `(kind, id, version)`.
pub async fn page(
    client: &impl GenericClient,
    after: Option<(&str, &str, u32)>,
    limit: usize,
) -> Result<Vec<ResourceVersion>, StoreError> {
    let (k, i, v) = after.unwrap_or(("", "", 0));
    let statement = client
        .prepare_cached(
            "SELECT body FROM resource_versions WHERE (kind, id, version) > ($1, $2, $3)
             ORDER BY kind, id, version LIMIT $4",
        )
        .await?;
    client
        .query(&statement, &[&k, &i, &(v as i32), &(limit as i64)])
        .await?
        .iter()
        .map(|r| decode(r.get(0)))
        .collect()
}
