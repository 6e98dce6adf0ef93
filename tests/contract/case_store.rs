//! The stores' Tasks and Communications (the case work's foundation): versions kept, the
//! current one found by its index entries in due-date order, a stale write refused with
//! nothing written, written with records in one transaction, and moved whole by `copy`.

use serde_json::json;

use pds_facade::progress::Progress;
use pds_facade::store::location::{Location, Opened, Options};
use pds_facade::store::resource::{
    IndexEntry, IndexQuery, ResourceAudit, ResourceKind, ResourceVersion, ResourceWrite,
};
use pds_facade::store::{Change, PatientStore, StoreError};

use crate::helpers::{postgres, postgres_database};

async fn open(dir: &tempfile::TempDir, name: &str) -> Opened {
    let file = dir.path().join(name);
    let location = match postgres() {
        None => Location::Redb(file),
        Some(base) => Location::Postgres(postgres_database(base, &file)),
    };
    let options = Options {
        cache_bytes: 16 << 20,
        pool_size: 4,
    };
    Opened::open(&location, options).await.unwrap()
}

fn task(id: &str, version: u32, status: &str, due: &str) -> ResourceVersion {
    let entry = |key: String| IndexEntry {
        key,
        sort: due.to_string(),
    };
    ResourceVersion {
        kind: ResourceKind::Task,
        id: id.to_string(),
        version,
        doc: json!({"resourceType": "Task", "id": id, "meta": {"versionId": version.to_string()},
                    "status": status}),
        audit: ResourceAudit {
            at: "2026-12-02T10:00:00Z".into(),
            subject: "test".into(),
            role: "pcse".into(),
            ods: None,
            request_id: format!("req-{id}-{version}"),
            correlation_id: None,
            operation: if version == 1 { "create" } else { "patch" }.into(),
            patch: None,
        },
        index: vec![entry(format!("status={status}")), entry("open".into())],
        reach: vec!["Y12345".into()],
    }
}

fn change(writes: Vec<ResourceWrite>) -> Change {
    Change {
        resources: writes,
        ..Change::default()
    }
}

async fn ids(store: &dyn PatientStore, key: &str, below: Option<&str>) -> Vec<String> {
    store
        .resource_ids(&IndexQuery {
            kind: ResourceKind::Task,
            key: key.into(),
            below: below.map(str::to_string),
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_are_versioned_indexed_by_due_date_and_copied_whole() {
    let dir = tempfile::tempdir().unwrap();
    let opened = open(&dir, "cases.redb").await;
    let store = opened.store();

    let (a1, b1) = (
        task("a", 1, "requested", "2027-02-01"),
        task("b", 1, "requested", "2027-01-15"),
    );
    store
        .commit(change(vec![
            ResourceWrite::create(a1.clone()),
            ResourceWrite::create(b1.clone()),
        ]))
        .await
        .unwrap();
    // due-date order, whatever the order of creation
    assert_eq!(ids(store, "status=requested", None).await, ["b", "a"]);
    assert_eq!(
        ids(store, "open", Some("2027-01-20")).await,
        ["b"],
        "due before a date"
    );

    // the next version replaces the current one's index entries
    let a2 = task("a", 2, "received", "2027-02-01");
    store
        .commit(change(vec![ResourceWrite::update(&a1, a2.clone())]))
        .await
        .unwrap();
    assert_eq!(ids(store, "status=requested", None).await, ["b"]);
    assert_eq!(ids(store, "status=received", None).await, ["a"]);
    assert_eq!(
        ids(store, "open", None).await,
        ["b", "a"],
        "an entry both versions have stays"
    );
    assert_eq!(
        store.resource(ResourceKind::Task, "a").await.unwrap(),
        Some(a2.clone())
    );
    let history = store
        .resource_history(ResourceKind::Task, "a")
        .await
        .unwrap();
    assert_eq!(
        history,
        vec![a2.clone(), a1.clone()],
        "every version, newest first"
    );

    // a write from a stale read is refused, and nothing of its change is written
    let stale = task("a", 2, "on-hold", "2027-02-01");
    let c = task("c", 1, "requested", "2027-03-01");
    let refused = store
        .commit(change(vec![
            ResourceWrite::create(c.clone()),
            ResourceWrite::update(&a1, stale),
        ]))
        .await;
    assert!(
        matches!(refused, Err(StoreError::ResourceConflict { ref id, expected: Some(1), current: Some(2), .. }) if id == "a"),
        "{refused:?}"
    );
    assert_eq!(store.resource(ResourceKind::Task, "c").await.unwrap(), None);
    // so is a second create of one id
    let twice = store
        .commit(change(vec![ResourceWrite::create(task(
            "b",
            1,
            "requested",
            "2027-01-15",
        ))]))
        .await;
    assert!(
        matches!(twice, Err(StoreError::ResourceConflict { .. })),
        "{twice:?}"
    );
    assert_eq!(
        store.resource(ResourceKind::Task, "nope").await.unwrap(),
        None
    );

    // a copy holds every version, and answers the same queries
    let target = open(&dir, "copy.redb").await;
    let mut progress = Progress::new(0, "copy");
    pds_facade::transfer::copy(store, target.store(), &mut progress)
        .await
        .unwrap();
    let copy = target.store();
    assert_eq!(
        copy.resource_history(ResourceKind::Task, "a")
            .await
            .unwrap(),
        history
    );
    assert_eq!(ids(copy, "status=requested", None).await, ["b"]);
    assert_eq!(ids(copy, "status=received", None).await, ["a"]);
    assert_eq!(ids(copy, "open", None).await, ["b", "a"]);
    let compared = pds_facade::transfer::verify(store, copy, &mut Progress::new(0, "verify"))
        .await
        .unwrap();
    assert_eq!(compared.differences, 0, "{:?}", compared.shown);

    // and a case changed on one side is a difference
    store
        .commit(change(vec![ResourceWrite::update(
            &a2,
            task("a", 3, "on-hold", "2027-02-01"),
        )]))
        .await
        .unwrap();
    let compared = pds_facade::transfer::verify(store, copy, &mut Progress::new(0, "verify"))
        .await
        .unwrap();
    assert_eq!(compared.differences, 1, "{:?}", compared.shown);
    assert_eq!(compared.shown, ["only in the first: version 3 of Task a"]);
}
