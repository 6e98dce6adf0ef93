use super::*;
use crate::domain::Schemas;
use crate::store::{RecordWrite, SavedBody, SavedResponse};
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
        serde_json::from_value::<SavedResponse>(json!({"status": 200, "body": body.to_string()}))
            .unwrap()
            .body
    };
    assert_eq!(
        legacy(json!({"resourceType": "Patient", "id": "9000000009", "meta": {"versionId": "3"}})),
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

#[tokio::test]
async fn versions_and_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("t.redb")).unwrap();
    let v1 = patient("9000000009", "1", "One");
    store
        .insert_batch(std::slice::from_ref(&v1), ExistingRecords::Reject)
        .await
        .unwrap();
    let v2 = patient("9000000009", "2", "Two");
    store.commit(update(Version::FIRST, &v2)).await.unwrap();
    // a second writer holding version 1 loses
    let stale = patient("9000000009", "2", "Stale");
    assert!(matches!(
        store.commit(update(Version::FIRST, &stale)).await,
        Err(StoreError::VersionConflict { .. })
    ));

    let id = v1.id();
    let current = store.get(id).await.unwrap().unwrap();
    assert_eq!(current.version.get(), 2);
    assert_eq!(Patient::from_stored(&current.json).unwrap(), v2);
    let old = store
        .get_version(id, Version::FIRST)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(Patient::from_stored(&old.json).unwrap(), v1);
    assert_eq!(store.count().await.unwrap(), 1);
    let history: Vec<u32> = store
        .history(id)
        .await
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

#[tokio::test]
async fn idempotent_requests_and_audit() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("t.redb")).unwrap();
    store
        .insert_batch(
            &[patient("9000000009", "1", "One")],
            ExistingRecords::Reject,
        )
        .await
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
    assert_eq!(
        store.commit(change.clone()).await.unwrap(),
        Committed::Applied
    );
    // the same request again: the saved answer, nothing written (no version conflict either)
    assert_eq!(
        store.commit(change.clone()).await.unwrap(),
        Committed::Replayed(saved)
    );
    assert_eq!(store.audit(v2.id()).await.unwrap().len(), 1);
    {
        // the entry is in the row of the version it wrote: no row of its own
        let txn = store.db().unwrap().begin_read().unwrap();
        assert!(txn.open_table(tables::AUDIT).unwrap().is_empty().unwrap());
        let versions = txn.open_table(tables::VERSIONS).unwrap();
        let row = versions.get((v2.id().as_u64(), 2)).unwrap().unwrap();
        assert!(packing::audit_of(row.value()).unwrap().is_some());
    }
    // the same id for something else
    let mut other = change.clone();
    other.request.as_mut().unwrap().fingerprint = [8; 32];
    assert!(matches!(
        store.commit(other).await,
        Err(StoreError::RequestIdReused(_))
    ));
    assert_eq!(
        store.request("rid").await.unwrap().unwrap().fingerprint,
        [7; 32]
    );
    // once the window has passed, it is forgotten
    let later = Change {
        forget_requests_before: 2000,
        ..Default::default()
    };
    store.commit(later).await.unwrap();
    assert!(store.request("rid").await.unwrap().is_none());
}

fn named(id: &str, family: &str, birth: &str) -> Patient {
    let doc = json!({"resourceType": "Patient", "id": id, "birthDate": birth,
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": id}],
        "name": [{"id": "n", "use": "usual", "family": family}]});
    Patient::parse(doc, &Schemas::compile(), date!(2026 - 01 - 01)).unwrap()
}

/// A store at `path` holding `(NHS number, family name, birth date)` people.
async fn with_people(path: &Path, people: &[(&str, &str, &str)]) -> RedbStore {
    let records: Vec<Patient> = people.iter().map(|(i, f, b)| named(i, f, b)).collect();
    let store = RedbStore::open(path).unwrap();
    store
        .insert_batch(&records, ExistingRecords::Reject)
        .await
        .unwrap();
    store
}

/// The candidates of a wildcard family lookup (`name*`, born in `birth`), as NHS numbers.
async fn prefixed(store: &RedbStore, name: &str, birth: (u32, u32)) -> Vec<String> {
    let l = Lookup::Family {
        name: name.into(),
        prefix: true,
        birth,
    };
    let found = store.candidates(&[l]).await.unwrap();
    found.iter().map(|n| n.to_string()).collect()
}

#[tokio::test]
async fn wildcard_lookups_skip_to_each_birth_range() {
    let dir = tempfile::tempdir().unwrap();
    let people = [
        ("9000000009", "Smith", "1980-01-01"),
        ("9000000017", "Smith", "1990-06-15"),
        ("9000000025", "Smithson", "1990-06-20"),
        ("9000000033", "Smyth", "1990-12-31"),
        ("9000000041", "Smyth", "1991-01-01"),
        ("9000000068", "Snow", "1990-06-15"),
        ("9000000076", "Sm", "1990-07-01"),
    ];
    let store = with_people(&dir.path().join("t.redb"), &people).await;
    let found = async |name: &str, lo: u32, hi: u32| prefixed(&store, name, (lo, hi)).await;
    assert_eq!(
        found("sm", 19900101, 19901231).await,
        ["9000000017", "9000000025", "9000000033", "9000000076"]
    );
    assert_eq!(
        found("smith", 0, 99999999).await,
        ["9000000009", "9000000017", "9000000025"]
    );
    assert_eq!(found("smy", 19910101, 19910101).await, ["9000000041"]);
    assert!(found("sz", 0, 99999999).await.is_empty());
    assert_eq!(store.check_indexes().await.unwrap(), Vec::<String>::new());
}

#[tokio::test]
async fn narrow_wildcard_lookups_read_birth_date_first_even_in_an_older_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.redb");
    let people = [
        ("9000000009", "Aaron", "1990-06-15"),
        ("9000000017", "Wilson", "1990-06-15"),
        ("9000000025", "Wilkins", "1990-06-15"),
        ("9000000033", "Young", "1990-06-15"),
        ("9000000041", "Adams", "1990-06-16"),
        ("9000000068", "Wild", "1990-06-17"),
        ("9000000076", "Wil", "1990-06-18"),
        ("9000000084", "Wilson", "1990-06-19"),
        ("9000000092", "Zed", "1990-06-14"),
    ];
    drop(with_people(&path, &people).await);
    let wanted = |lo: &str, hi: &str| -> Vec<String> {
        let mut ids: Vec<String> = people
            .iter()
            .filter(|(_, f, b)| f.to_lowercase().starts_with("wil") && *b >= lo && *b <= hi)
            .map(|(i, ..)| i.to_string())
            .collect();
        ids.sort();
        ids
    };
    let ranges = [
        ("1990-06-15", "1990-06-15"),
        ("1990-06-14", "1990-06-18"),
        ("1990-06-16", "1990-06-16"),
        ("1990-06-01", "1990-06-30"),
        ("1990-06-19", "1990-07-19"),
    ];
    let check = async |store: &RedbStore| {
        for (lo, hi) in ranges {
            let n = |d: &str| d.replace('-', "").parse::<u32>().unwrap();
            let found = prefixed(store, "wil", (n(lo), n(hi))).await;
            assert_eq!(found, wanted(lo, hi), "{lo}..{hi}");
        }
        assert_eq!(store.check_indexes().await.unwrap(), Vec::<String>::new());
    };
    check(&RedbStore::open(&path).unwrap()).await;
    // a file written before the birth-first index: it is built when the file is next opened
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.delete_multimap_table(index::BIRTH_FAMILY).unwrap();
        txn.open_table(META)
            .unwrap()
            .remove(index::BIRTH_FAMILY_BUILT)
            .unwrap();
        txn.commit().unwrap();
    }
    let store = RedbStore::open(&path).unwrap();
    check(&store).await;
}

#[tokio::test]
async fn the_writer_survives_a_panicking_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("t.redb")).unwrap();
    let boom: crate::store::AllocatingChange = std::sync::Arc::new(|_| panic!("a bug in a change"));
    assert!(matches!(
        store
            .commit_allocating((999_300_000, 999_300_100), boom)
            .await,
        Err(StoreError::Unavailable(_))
    ));
    // nothing of it was written, and later changes still go through
    assert_eq!(store.count().await.unwrap(), 0);
    store
        .insert_batch(
            &[patient("9000000009", "1", "One")],
            ExistingRecords::Reject,
        )
        .await
        .unwrap();
    let v2 = patient("9000000009", "2", "Two");
    assert_eq!(
        store.commit(update(Version::FIRST, &v2)).await.unwrap(),
        Committed::Applied
    );
}

#[tokio::test]
async fn supersession_and_survivor() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("t.redb")).unwrap();
    let [a, b, c] =
        ["9000000009", "9000000017", "9000000025"].map(|n| NhsNumber::parse(n).unwrap());
    store
        .commit(Change {
            supersede: vec![(a, b), (b, c)],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(store.survivor(a).await.unwrap(), c);
    assert_eq!(store.superseded_by(a).await.unwrap(), Some(b));
    store
        .commit(Change {
            unsupersede: vec![a],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(store.survivor(a).await.unwrap(), a);
}

#[tokio::test]
async fn an_update_writes_only_the_index_keys_its_previous_version_lacks() {
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
        .await
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
    store.commit(change).await.unwrap();
    assert!(store.check_indexes().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_bulk_load_is_one_unit() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("t.redb")).unwrap();
    store
        .insert_batch(&[patient("9000000009", "1", "A")], ExistingRecords::Reject)
        .await
        .unwrap();
    let staged = |ids: &[&str]| {
        ids.iter()
            .map(|id| Staged::new(&patient(id, "1", "B")))
            .collect::<Vec<_>>()
    };
    let run = async |steps: Vec<BulkStep>, existing| {
        let mut steps = steps.into_iter();
        store
            .bulk_load(existing, &mut || steps.next().unwrap())
            .await
    };
    // abandoned after two committed batches: nothing of it stays
    let abandoned = run(
        vec![
            BulkStep::Batch(staged(&["9000000017"])),
            BulkStep::Batch(staged(&["9000000025"])),
            BulkStep::Abort,
        ],
        ExistingRecords::Reject,
    )
    .await;
    assert!(matches!(abandoned, Err(StoreError::Aborted)));
    assert_eq!(store.count().await.unwrap(), 1);
    // an existing record in the second batch undoes the first
    let refused = run(
        vec![
            BulkStep::Batch(staged(&["9000000017"])),
            BulkStep::Batch(staged(&["9000000009"])),
        ],
        ExistingRecords::Reject,
    )
    .await;
    assert!(matches!(refused, Err(StoreError::AlreadyExists(_))));
    assert_eq!(store.count().await.unwrap(), 1);
    assert!(store.check_indexes().await.unwrap().is_empty());
    // done: every batch stored, indexed, and replace appends a version
    let loaded = run(
        vec![
            BulkStep::Batch(staged(&["9000000017", "9000000025"])),
            BulkStep::Batch(staged(&["9000000009"])),
            BulkStep::Done,
        ],
        ExistingRecords::Replace,
    )
    .await;
    assert_eq!(loaded.unwrap(), 3);
    assert_eq!(store.count().await.unwrap(), 3);
    let r = store
        .get(NhsNumber::parse("9000000009").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.version.get(), 2);
    assert!(store.check_indexes().await.unwrap().is_empty());
}

#[tokio::test]
async fn batches_are_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("t.redb")).unwrap();
    store
        .insert_batch(&[patient("9000000009", "1", "A")], ExistingRecords::Reject)
        .await
        .unwrap();
    let batch = [
        patient("9000000017", "1", "B"),
        patient("9000000009", "1", "C"),
    ];
    assert!(matches!(
        store.insert_batch(&batch, ExistingRecords::Reject).await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert_eq!(
        store.count().await.unwrap(),
        1,
        "nothing of the failed batch was stored"
    );
    store
        .insert_batch(&batch, ExistingRecords::Replace)
        .await
        .unwrap();
    let r = store
        .get(NhsNumber::parse("9000000009").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.version.get(), 2, "replace appends a version");
}

#[cfg(unix)]
#[tokio::test]
async fn a_new_database_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.redb");
    let store = RedbStore::open(&path).unwrap();
    store
        .insert_batch(&[patient("9000000009", "1", "A")], ExistingRecords::Reject)
        .await
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

#[tokio::test]
async fn what_this_program_did_not_write_is_reported_as_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("t.redb")).unwrap();
    let id = NhsNumber::parse("9000000009").unwrap();
    {
        // a value the record codec cannot read, written behind the store's back
        let txn = store.db().unwrap().begin_write().unwrap();
        txn.open_table(tables::VERSIONS)
            .unwrap()
            .insert((id.as_u64(), 1), b"no".as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    assert!(matches!(store.get(id).await, Err(StoreError::Corrupt(_))));
    // and redb's own verdict carries over
    assert!(matches!(
        StoreError::from(redb::Error::Corrupted("a page".into())),
        StoreError::Corrupt(_)
    ));
    assert!(matches!(
        StoreError::from(redb::Error::from(redb::StorageError::Io(
            std::io::Error::other("disk full")
        ))),
        StoreError::Unavailable(_)
    ));
}

/// Every record's current version, flags and history as a store reads them.
async fn snapshot(
    store: &RedbStore,
    records: &[Patient],
) -> Vec<(Version, bool, Vec<u8>, Vec<(u32, Vec<u8>)>)> {
    let mut seen = Vec::new();
    for r in records {
        let got = store.get(r.id()).await.unwrap().unwrap();
        let history = store
            .history(r.id())
            .await
            .unwrap()
            .into_iter()
            .map(|h| (h.version.get(), h.json))
            .collect();
        seen.push((got.version, got.restricted, got.json, history));
    }
    seen
}

/// Writes `records` into a new file the way store format 1 did: the current record's JSON
/// after its header in `patients`, every version as plain JSON in `versions`, `format` 1.
fn write_format_1(path: &Path, records: &[Patient]) {
    let patients: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("patients");
    let versions: redb::TableDefinition<(u64, u32), &[u8]> = redb::TableDefinition::new("versions");
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut p = txn.open_table(patients).unwrap();
        let mut v = txn.open_table(versions).unwrap();
        for r in records {
            let json = r.to_bytes();
            let flags = u8::from(r.is_restricted()) | (u8::from(r.has_merge_state()) << 1);
            let mut head = vec![1, flags];
            head.extend_from_slice(&r.version().get().to_le_bytes());
            head.extend_from_slice(&json);
            p.insert(r.id().as_u64(), head.as_slice()).unwrap();
            v.insert((r.id().as_u64(), r.version().get()), json.as_slice())
                .unwrap();
        }
        txn.open_table(tables::META)
            .unwrap()
            .insert("format", [1u8].as_slice())
            .unwrap();
    }
    txn.commit().unwrap();
}

#[tokio::test]
async fn a_format_1_file_serves_as_it_is_and_migrates_to_format_2_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.redb");
    let schemas = Schemas::compile();
    let today = date!(2026 - 11 - 27);
    let records: Vec<Patient> = (0..300)
        .map(|i| Patient::parse(crate::generate::patient(11, i), &schemas, today).unwrap())
        .collect();
    write_format_1(&path, &records);
    let restricted = records.iter().find(|r| r.is_restricted()).unwrap().id();

    // read as it is, and changed: a new version in format 2 beside the old ones
    // counted from format 1's table of current records when the file is first opened
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(store.count().await.unwrap(), 300);
    let first = &records[0];
    let v2 = Patient::from_stored(&first.to_bytes())
        .unwrap()
        .with_version(first.version().next());
    store.commit(update(first.version(), &v2)).await.unwrap();
    assert!(store.get(restricted).await.unwrap().unwrap().restricted);
    let before = snapshot(&store, &records).await;
    assert_eq!(before[0].3.len(), 2);
    store.reindex().await.unwrap();
    drop(store);

    let done = migrate(&path).unwrap();
    assert_eq!(done.from, 1);
    assert_eq!(
        done.versions, 300,
        "the old versions; the new one is format 2 already"
    );
    assert!(
        done.bytes_after < done.bytes_before,
        "{} → {}",
        done.bytes_before,
        done.bytes_after
    );
    let store = RedbStore::open(&path).unwrap();
    assert!(store.check_indexes().await.unwrap().is_empty());
    assert_eq!(store.count().await.unwrap(), 300);
    let after = snapshot(&store, &records).await;
    assert!(before == after, "every record and version reads the same");
    drop(store);
    // a second run has nothing to do
    assert_eq!(migrate(&path).unwrap().from, FORMAT);
    let db = redb::Database::open(&path).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(tables::META).unwrap();
    assert_eq!(meta.get("format").unwrap().unwrap().value(), [FORMAT]);
}
