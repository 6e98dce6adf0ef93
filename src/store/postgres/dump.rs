//! Reading the database as a [`dump`](crate::store::dump) stream, and loading a copy into an
//! empty database as one transaction (nothing of it is visible until it commits; a connection
//! lost midway leaves the database empty).

use deadpool_postgres::{GenericClient, Object};

use super::{
    index, nhs, nhs_of, put_patients, record_columns, stored_record, version_of, PgStore, Rows,
};
use crate::store::dump::{After, Currents, Entry, Part, Restore, Snapshot};
use crate::store::{RequestRecord, Staged, StoreError};

/// The query of each part: rows after the key `($1, $2)` (or `$1`: `$2` is then unused),
/// `$3` at most, in key order (request ids in byte order, as redb orders them).
fn query(part: Part) -> &'static str {
    match part {
        Part::Versions => {
            "SELECT nhs, version, doc FROM versions WHERE (nhs, version) > ($1, $2::bigint)
             ORDER BY nhs, version LIMIT $3"
        }
        Part::Current => concat!(
            "SELECT nhs, ",
            record_columns!(),
            " FROM patients WHERE nhs > $1 AND $2::bigint IS NOT NULL ORDER BY nhs LIMIT $3"
        ),
        Part::Superseded => {
            "SELECT nhs, by_nhs FROM superseded WHERE nhs > $1 AND $2::bigint IS NOT NULL
             ORDER BY nhs LIMIT $3"
        }
        Part::IdentityLinks => {
            "SELECT nhs, new_nhs FROM identity_links WHERE nhs > $1 AND $2::bigint IS NOT NULL
             ORDER BY nhs LIMIT $3"
        }
        Part::Allocated => {
            "SELECT nhs FROM allocated WHERE nhs > $1 AND $2::bigint IS NOT NULL ORDER BY nhs LIMIT $3"
        }
        Part::Audit => {
            "SELECT nhs, seq, entry FROM audit WHERE (nhs, seq) > ($1, $2)
             ORDER BY nhs, seq LIMIT $3"
        }
        Part::Requests => {
            "SELECT request_id, fingerprint, saved_at, response FROM requests
             WHERE request_id COLLATE \"C\" > $1 ORDER BY request_id COLLATE \"C\" LIMIT $2"
        }
        Part::Resources => unreachable!("read by resources::page"),
    }
}

pub async fn page(
    client: &impl GenericClient,
    part: Part,
    after: &After,
    limit: usize,
) -> Result<Vec<Entry>, StoreError> {
    if part == Part::Resources {
        let after = match after {
            After::Resource(k, i, v) => Some((k.as_str(), i.as_str(), *v)),
            _ => None,
        };
        let page = super::resources::page(client, after, limit).await?;
        return Ok(page.into_iter().map(Entry::Resource).collect());
    }
    let statement = client.prepare_cached(query(part)).await?;
    let limit = limit as i64;
    let rows = if part == Part::Requests {
        let after = match after {
            After::Text(t) => t.clone(),
            _ => String::new(),
        };
        client.query(&statement, &[&after, &limit]).await?
    } else {
        let (a, b) = match after {
            After::Number(a, b) => (*a as i64, *b as i64),
            _ => (-1, 0),
        };
        client.query(&statement, &[&a, &b, &limit]).await?
    };
    rows.iter()
        .map(|r| {
            Ok(match part {
                Part::Versions => Entry::Version {
                    id: nhs_of(r.get(0))?,
                    version: version_of(r.get(1))?,
                    json: r.get(2),
                },
                Part::Current => Entry::Current {
                    id: nhs_of(r.get(0))?,
                    record: stored_record(r, 1)?,
                },
                Part::Superseded => Entry::Superseded {
                    id: nhs_of(r.get(0))?,
                    by: nhs_of(r.get(1))?,
                },
                Part::IdentityLinks => Entry::IdentityLink {
                    old: nhs_of(r.get(0))?,
                    new: nhs_of(r.get(1))?,
                },
                Part::Allocated => Entry::Allocated(nhs_of(r.get(0))?),
                Part::Audit => Entry::Audit {
                    id: nhs_of(r.get(0))?,
                    seq: r.get::<_, i64>(1) as u64,
                    entry: serde_json::from_slice(r.get::<_, &[u8]>(2))
                        .map_err(|e| StoreError::Corrupt(format!("an audit entry: {e}")))?,
                },
                Part::Resources => unreachable!("read by resources::page"),
                Part::Requests => {
                    let fingerprint: Vec<u8> = r.get(1);
                    Entry::Request(RequestRecord {
                        request_id: r.get(0),
                        fingerprint: fingerprint
                            .try_into()
                            .map_err(|_| StoreError::Corrupt("a request fingerprint".into()))?,
                        saved_at: r.get::<_, i64>(2) as u64,
                        response: serde_json::from_slice(r.get::<_, &[u8]>(3))
                            .map_err(|e| StoreError::Corrupt(format!("a saved response: {e}")))?,
                    })
                }
            })
        })
        .collect()
}

/// One REPEATABLE READ, READ ONLY transaction on a connection of its own: every page sees the
/// database as it was when the snapshot began, whatever the nodes write meanwhile.
pub struct PgSnapshot {
    client: Option<Object>,
}

impl PgSnapshot {
    pub async fn begin(store: &PgStore) -> Result<PgSnapshot, StoreError> {
        let snapshot = PgSnapshot {
            client: Some(store.pool.get().await?),
        };
        snapshot
            .client()
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        Ok(snapshot)
    }

    fn client(&self) -> &Object {
        self.client.as_ref().expect("an open snapshot")
    }
}

impl Drop for PgSnapshot {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            // never back to the pool with the snapshot's transaction open
            drop(Object::take(client));
        }
    }
}

#[async_trait::async_trait]
impl Snapshot for PgSnapshot {
    async fn page(
        &self,
        part: Part,
        after: &After,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        page(self.client(), part, after, limit).await
    }
}

pub struct PgRestore {
    /// The connection the copy's transaction is open on (taken out of the pool: if the copy
    /// is dropped unfinished, the connection closes and the server rolls the copy back).
    client: Option<Object>,
    currents: Currents,
}

impl PgRestore {
    pub async fn begin(store: &PgStore) -> Result<PgRestore, StoreError> {
        // made first, so that an error below drops it — and closes its connection — rather
        // than handing the connection back to the pool inside the copy's transaction
        let restore = PgRestore {
            client: Some(store.pool.get().await?),
            currents: Currents::default(),
        };
        let client = restore.client();
        client
            .batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
            .await?;
        let used: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM versions) OR EXISTS (SELECT 1 FROM patients)
                     OR EXISTS (SELECT 1 FROM allocated) OR EXISTS (SELECT 1 FROM audit)
                     OR EXISTS (SELECT 1 FROM requests) OR EXISTS (SELECT 1 FROM superseded)
                     OR EXISTS (SELECT 1 FROM identity_links)
                     OR EXISTS (SELECT 1 FROM resources)",
                &[],
            )
            .await?
            .get(0);
        if used {
            return Err(StoreError::NotEmpty("the PostgreSQL database".into()));
        }
        Ok(restore)
    }

    fn client(&self) -> &Object {
        self.client.as_ref().expect("an open copy")
    }
}

impl Drop for PgRestore {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            // never back to the pool with the copy's transaction open
            drop(Object::take(client));
        }
    }
}

#[async_trait::async_trait]
impl Restore for PgRestore {
    async fn put(&mut self, entries: Vec<Entry>) -> Result<(), StoreError> {
        let mut currents: Vec<Staged> = Vec::new();
        let mut versions = (Vec::new(), Vec::new(), Vec::new());
        let mut links = (Vec::new(), Vec::new());
        let mut identity = (Vec::new(), Vec::new());
        let mut allocated = Vec::new();
        let mut audit = (Vec::new(), Vec::new(), Vec::new());
        let mut requests = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut resources = Vec::new();
        for entry in entries {
            match entry {
                Entry::Version { id, version, json } => {
                    if let Some(done) = self.currents.push(id, version, &json)? {
                        currents.push(done);
                    }
                    versions.0.push(nhs(id));
                    versions.1.push(version.get() as i32);
                    versions.2.push(json);
                }
                Entry::Superseded { id, by } => {
                    links.0.push(nhs(id));
                    links.1.push(nhs(by));
                }
                Entry::IdentityLink { old, new } => {
                    identity.0.push(nhs(old));
                    identity.1.push(nhs(new));
                }
                Entry::Allocated(n) => allocated.push(nhs(n)),
                Entry::Audit { id, seq, entry } => {
                    audit.0.push(nhs(id));
                    audit.1.push(seq as i64);
                    audit.2.push(serde_json::to_vec(&entry).expect("JSON"));
                }
                // derived from the versions, never copied
                Entry::Current { .. } => {}
                Entry::Resource(r) => resources.push(r),
                Entry::Request(r) => {
                    requests.0.push(r.request_id);
                    requests.1.push(r.fingerprint.to_vec());
                    requests.2.push(r.saved_at as i64);
                    requests
                        .3
                        .push(serde_json::to_vec(&r.response).expect("JSON"));
                }
            }
        }
        let client = self.client();
        let run = |sql: &'static str| async move { client.prepare_cached(sql).await };
        if !versions.0.is_empty() {
            let s = run("INSERT INTO versions (nhs, version, doc)
                         SELECT * FROM unnest($1::bigint[], $2::integer[], $3::bytea[])")
            .await?;
            client
                .execute(&s, &[&versions.0, &versions.1, &versions.2])
                .await?;
        }
        if !currents.is_empty() {
            put_patients(client, &Rows::of(currents.iter()), true).await?;
        }
        if !links.0.is_empty() {
            let s = run("INSERT INTO superseded (nhs, by_nhs)
                         SELECT * FROM unnest($1::bigint[], $2::bigint[])")
            .await?;
            client.execute(&s, &[&links.0, &links.1]).await?;
        }
        if !identity.0.is_empty() {
            let s = run("INSERT INTO identity_links (nhs, new_nhs)
                         SELECT * FROM unnest($1::bigint[], $2::bigint[])")
            .await?;
            client.execute(&s, &[&identity.0, &identity.1]).await?;
        }
        if !allocated.is_empty() {
            let s = run("INSERT INTO allocated (nhs) SELECT * FROM unnest($1::bigint[])").await?;
            client.execute(&s, &[&allocated]).await?;
        }
        if !audit.0.is_empty() {
            let s = run("INSERT INTO audit (nhs, seq, entry)
                         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[])")
            .await?;
            client.execute(&s, &[&audit.0, &audit.1, &audit.2]).await?;
        }
        if !requests.0.is_empty() {
            let s = run(
                "INSERT INTO requests (request_id, fingerprint, saved_at, response)
                         SELECT * FROM unnest($1::text[], $2::bytea[], $3::bigint[], $4::bytea[])",
            )
            .await?;
            client
                .execute(&s, &[&requests.0, &requests.1, &requests.2, &requests.3])
                .await?;
        }
        for r in &resources {
            super::resources::restore(client, r).await?;
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<u64, StoreError> {
        if let Some(last) = self.currents.take()? {
            put_patients(self.client(), &Rows::of([&last].into_iter()), true).await?;
        }
        let client = self.client();
        let records = index::rebuild(client).await?;
        // new audit entries number on from the copied ones
        client
            .batch_execute(
                "SELECT setval(pg_get_serial_sequence('audit', 'seq'),
                               greatest((SELECT max(seq) FROM audit), 1))",
            )
            .await?;
        client.batch_execute("COMMIT").await?;
        // committed: the connection can go back to the pool
        self.client.take();
        Ok(records)
    }
}
