//! The search index on PostgreSQL: one table, `search_index (kind, key, birth, nhs)`, whose
//! primary key is the btree every lookup uses (see the EXPLAIN test).

use std::collections::{BTreeSet, HashSet};

use deadpool_postgres::GenericClient;

use crate::domain::index::{self, IndexKey, Lookup};
use crate::domain::NhsNumber;
use crate::store::StoreError;

/// The row an index key is stored as: `(kind, key, birth)`.
pub fn row(key: &IndexKey) -> (i16, &str, i32) {
    match key {
        IndexKey::Family(v, b) => (1, v, *b as i32),
        IndexKey::Phonetic(v, b) => (2, v, *b as i32),
        IndexKey::Given(v, b) => (3, v, *b as i32),
        IndexKey::Postcode(v) => (4, v, 0),
        IndexKey::Phone(v) => (5, v, 0),
        IndexKey::Email(v) => (6, v, 0),
        IndexKey::Gp(v) => (7, v, 0),
    }
}

fn key_of(kind: i16, key: String, birth: i32) -> Result<IndexKey, StoreError> {
    let b = birth as u32;
    Ok(match kind {
        1 => IndexKey::Family(key, b),
        2 => IndexKey::Phonetic(key, b),
        3 => IndexKey::Given(key, b),
        4 => IndexKey::Postcode(key),
        5 => IndexKey::Phone(key),
        6 => IndexKey::Email(key),
        7 => IndexKey::Gp(key),
        other => return Err(StoreError::Corrupt(format!("search index kind {other}"))),
    })
}

/// Adds index entries (already there: kept as they are).
pub async fn insert(
    client: &impl GenericClient,
    entries: &[(&IndexKey, i64)],
) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let (mut kinds, mut keys, mut births, mut ids) = (vec![], vec![], vec![], vec![]);
    for (key, id) in entries {
        let (kind, value, birth) = row(key);
        kinds.push(kind);
        keys.push(value);
        births.push(birth);
        ids.push(*id);
    }
    let sql = "INSERT INTO search_index (kind, key, birth, nhs)
               SELECT * FROM unnest($1::smallint[], $2::text[], $3::integer[], $4::bigint[])
               ON CONFLICT DO NOTHING";
    let statement = client.prepare_cached(sql).await?;
    client
        .execute(&statement, &[&kinds, &keys, &births, &ids])
        .await?;
    Ok(())
}

/// The SQL and parameters of one lookup: every one an index range scan on
/// `(kind, key, birth)`.
pub fn query(lookup: &Lookup) -> (&'static str, i16, String, Option<String>, i32, i32) {
    const EXACT: &str =
        "SELECT nhs FROM search_index WHERE kind = $1 AND key = $2 AND birth BETWEEN $3 AND $4";
    const PREFIX: &str = "SELECT nhs FROM search_index WHERE kind = $1 AND key >= $2 AND key < $5 \
                          AND birth BETWEEN $3 AND $4";
    // the smallest string greater than every string starting with `p` (byte order)
    let upper = |p: &str| format!("{p}\u{10FFFF}");
    let all = (0, i32::MAX);
    let (kind, name, prefix, birth) = match lookup {
        Lookup::Family {
            name,
            prefix,
            birth,
        } => (1, name, *prefix, (birth.0 as i32, birth.1 as i32)),
        Lookup::Phonetic { code, birth } => (2, code, false, (birth.0 as i32, birth.1 as i32)),
        Lookup::Given { name, birth } => (3, name, false, (birth.0 as i32, birth.1 as i32)),
        Lookup::Postcode { code, prefix } => (4, code, *prefix, all),
        Lookup::Phone(v) => (5, v, false, all),
        Lookup::Email(v) => (6, v, false, all),
        Lookup::Gp(v) => (7, v, false, all),
    };
    if prefix {
        (
            PREFIX,
            kind,
            name.clone(),
            Some(upper(name)),
            birth.0,
            birth.1,
        )
    } else {
        (EXACT, kind, name.clone(), None, birth.0, birth.1)
    }
}

/// The records the index holds under any of `lookups`.
pub async fn candidates(
    client: &impl GenericClient,
    lookups: &[Lookup],
) -> Result<Vec<NhsNumber>, StoreError> {
    let mut found = BTreeSet::new();
    for lookup in lookups {
        let (sql, kind, key, upper, lo, hi) = query(lookup);
        let statement = client.prepare_cached(sql).await?;
        let rows = match &upper {
            Some(upper) => {
                client
                    .query(&statement, &[&kind, &key, &lo, &hi, upper])
                    .await?
            }
            None => client.query(&statement, &[&kind, &key, &lo, &hi]).await?,
        };
        found.extend(rows.iter().map(|r| r.get::<_, i64>(0)));
    }
    found
        .into_iter()
        .map(|n| NhsNumber::from_u64(n as u64).map_err(|e| StoreError::Corrupt(e.to_string())))
        .collect()
}

/// Versions' index keys, a page at a time after `after` (`(nhs, version)`; start with
/// `(-1, 0)`): a whole table never sits in memory at once. An empty page: no more.
async fn version_keys(
    client: &impl GenericClient,
    after: &mut (i64, i32),
) -> Result<Vec<(i64, Vec<IndexKey>)>, StoreError> {
    let page = client
        .prepare_cached(
            "SELECT nhs, version, doc FROM versions WHERE (nhs, version) > ($1, $2)
             ORDER BY nhs, version LIMIT 5000",
        )
        .await?;
    let rows = client.query(&page, &[&after.0, &after.1]).await?;
    if let Some(last) = rows.last() {
        *after = (last.get(0), last.get(1));
    }
    rows.iter()
        .map(|r| {
            let doc: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(r.get::<_, &[u8]>(2))
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Ok((r.get(0), index::keys(&doc)))
        })
        .collect()
}

/// Rebuilds the index from the stored versions (inside the caller's transaction); returns how
/// many records.
pub async fn rebuild(client: &impl GenericClient) -> Result<u64, StoreError> {
    client.execute("DELETE FROM search_index", &[]).await?;
    let mut records = HashSet::new();
    let mut after = (-1, 0);
    loop {
        let page = version_keys(client, &mut after).await?;
        if page.is_empty() {
            return Ok(records.len() as u64);
        }
        let entries: Vec<(&IndexKey, i64)> = page
            .iter()
            .flat_map(|(id, keys)| keys.iter().map(move |k| (k, *id)))
            .collect();
        insert(client, &entries).await?;
        records.extend(page.iter().map(|(id, _)| *id));
    }
}

/// Compares the index with the records; each difference is described (empty: consistent).
pub async fn check(client: &impl GenericClient) -> Result<Vec<String>, StoreError> {
    let mut expected: BTreeSet<(IndexKey, u64)> = BTreeSet::new();
    let mut after = (-1, 0);
    loop {
        let page = version_keys(client, &mut after).await?;
        if page.is_empty() {
            break;
        }
        for (id, keys) in page {
            expected.extend(keys.into_iter().map(|k| (k, id as u64)));
        }
    }
    let mut actual: BTreeSet<(IndexKey, u64)> = BTreeSet::new();
    for r in client
        .query("SELECT kind, key, birth, nhs FROM search_index", &[])
        .await?
    {
        actual.insert((
            key_of(r.get(0), r.get(1), r.get(2))?,
            r.get::<_, i64>(3) as u64,
        ));
    }
    Ok(crate::domain::index::differences(&expected, &actual))
}
