//! `export`, `copy` and `verify`: a whole database moved from the embedded file into another
//! store (a second file; PostgreSQL under `PDS_TEST_POSTGRES`) serves exactly what the
//! original did — every version, audit entry, merge, identity link, allocated number and
//! idempotency record.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::helpers::*;

/// The store a copy goes to: another redb file, or the PostgreSQL database standing for it.
fn location_of(db: &Path) -> String {
    match postgres() {
        Some(base) => postgres_database(base, db),
        None => format!("redb:{}", db.display()),
    }
}

fn redb(db: &Path) -> Vec<String> {
    vec!["--db".into(), db.display().to_string()]
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ident(n: &str) -> Value {
    json!({"system": "https://fhir.nhs.uk/Id/nhs-number", "value": n})
}

/// What was done to the source, to be checked on the copy.
struct Done {
    /// A PATCH's request id, body and answer (its ETag).
    patch: (String, String, String),
    /// Records to compare, whatever happened to them.
    ids: Vec<String>,
}

/// Demo data, then something in every part of the store: versions, audit entries and saved
/// answers (PATCH, flag), a merge link, an allocation (create) and an identity link.
async fn populate(db: &Path) -> Done {
    let server = Server::start_on(&redb(db), db, &["--demo"]);
    let bo = Api {
        token: Some(mint_on(&redb(db), "back-office", &[])),
        ..server.api()
    };
    let rid = request_id();
    let body = json!({"patches": [{"op": "replace", "path": "/gender", "value": "male"}],
        "reason": "copied"})
    .to_string();
    let r = bo
        .send(
            "PATCH",
            &format!("/Patient/{FULL}"),
            &[
                ("X-Request-ID", &rid),
                ("If-Match", "W/\"1\""),
                ("Content-Type", "application/json-patch+json"),
            ],
            Some(body.clone()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let patch = (rid, body, r.header("etag").unwrap().to_string());
    let merge = bo
        .operation(
            "$merge",
            json!([{"name": "source-patient-identifier", "valueIdentifier": ident(COMPOUND_GIVEN)},
                   {"name": "target-patient-identifier", "valueIdentifier": ident(SEVERAL_TELECOMS)},
                   {"name": "reason", "valueString": "duplicate"}]),
        )
        .await;
    assert_eq!(merge.status, 200, "{}", merge.body);
    let created = bo
        .post_with(
            "/Patient",
            &new_patient("Wren", "Copperfield", "2011-11-11"),
            &request_id(),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let changed = bo
        .operation(
            "$change-identity",
            json!([{"name": "nhs-number", "valueIdentifier": ident(HOME_AND_TEMP)},
                   {"name": "patient", "resource": {"resourceType": "Patient",
                       "name": [{"use": "usual", "family": "Marlowe", "given": ["Sam"]}],
                       "gender": "unknown", "birthDate": "1990-09-09",
                       "address": [{"use": "home", "line": ["9 Copy Row"], "postalCode": "YO1 7HH"}]}},
                   {"name": "reason", "valueString": "new identity"}]),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    let new_identity = changed.body["parameter"][1]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let flagged = bo
        .patch_current_because(
            MINIMAL,
            json!([{"op": "replace", "path": "/meta/security/0/code", "value": "R"},
                   {"op": "replace", "path": "/meta/security/0/display", "value": "restricted"}]),
            "flagged",
        )
        .await;
    assert_eq!(flagged.status, 200, "{}", flagged.body);
    assert_eq!(server.stop().code(), Some(0));
    let mut ids: Vec<String> = [
        FULL,
        MINIMAL,
        RESTRICTED,
        COMPOUND_GIVEN,
        SEVERAL_TELECOMS,
        HOME_AND_TEMP,
        FORMAL_DEATH,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    ids.push(created.body["id"].as_str().unwrap().to_string());
    ids.push(new_identity);
    Done { patch, ids }
}

/// Everything a caller of `role` can read about `id`: the record, its versions, its audit.
async fn seen(api: &Api, id: &str, back_office: bool) -> Vec<(u16, Value, Option<String>)> {
    let mut paths = vec![format!("/Patient/{id}")];
    if back_office {
        paths.push(format!("/Patient/{id}/_history"));
        paths.push(format!("/_audit?patient={id}"));
    }
    let mut out = Vec::new();
    for p in paths {
        let r = api.get(&p).await;
        // links name the server they came from
        let body = r.body.to_string().replace(&api.base, "BASE");
        out.push((
            r.status,
            serde_json::from_str(&body).unwrap(),
            r.header("etag").map(str::to_string),
        ));
    }
    out
}

#[tokio::test]
async fn a_copied_store_serves_what_the_original_did() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src.redb"), dir.path().join("dst.redb"));
    let done = populate(&src).await;
    let (from, to) = (format!("redb:{}", src.display()), location_of(&dst));

    let (ok, out, err) = run(&["copy", "--from", &from, "--to", &to]);
    assert!(ok, "{out}{err}");
    for part in [
        "versions",
        "merge links",
        "identity links",
        "allocated numbers",
        "audit entries",
        "idempotency records",
    ] {
        let line = out.lines().find(|l| l.starts_with(part)).unwrap_or("");
        let n: u64 = line.rsplit(' ').next().unwrap_or("0").parse().unwrap_or(0);
        assert!(n > 0, "{part} copied: {out}");
    }
    let (ok, out, _) = run(&["verify", "--from", &from, "--to", &to]);
    assert!(ok && out.contains("hold the same"), "{out}");

    // the same export, byte for byte
    let (export_src, export_dst) = (dir.path().join("a.ndjson"), dir.path().join("b.ndjson"));
    let (ok, _, err) = run(&[
        "export",
        "--store",
        &from,
        "--out",
        export_src.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let (ok, _, _) = run(&[
        "export",
        "--store",
        &to,
        "--out",
        export_dst.to_str().unwrap(),
    ]);
    assert!(ok);
    let exported = std::fs::read(&export_src).unwrap();
    assert_eq!(exported, std::fs::read(&export_dst).unwrap());

    // both served side by side: every role reads the same
    let original = Server::start_on(&redb(&src), &src, &[]);
    let copy = Server::start(&dst, &[]);
    let bo = |server: &Server, store: &[String]| Api {
        token: Some(mint_on(store, "back-office", &[])),
        ..server.api()
    };
    let (bo_original, bo_copy) = (bo(&original, &redb(&src)), bo(&copy, &store_of(&dst)));
    for id in &done.ids {
        assert_eq!(
            seen(&bo_original, id, true).await,
            seen(&bo_copy, id, true).await,
            "{id} as the back office"
        );
        assert_eq!(
            seen(&original.api(), id, false).await,
            seen(&copy.api(), id, false).await,
            "{id} as a healthcare worker"
        );
    }

    // a retry of a change made before the copy gets its answer from the copy, applied once
    let (rid, body, etag) = &done.patch;
    let retry = bo_copy
        .send(
            "PATCH",
            &format!("/Patient/{FULL}"),
            &[
                ("X-Request-ID", rid),
                ("If-Match", "W/\"1\""),
                ("Content-Type", "application/json-patch+json"),
            ],
            Some(body.clone()),
        )
        .await;
    assert_eq!(
        (retry.status, retry.header("etag")),
        (200, Some(etag.as_str()))
    );

    // a new change on the copy is audited after the copied entries
    let before = bo_copy.get(&format!("/_audit?patient={FULL}")).await;
    let r = bo_copy
        .patch_current_because(
            FULL,
            json!([{"op": "replace", "path": "/gender", "value": "female"}]),
            "after the copy",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let after = bo_copy.get(&format!("/_audit?patient={FULL}")).await;
    let (before, after) = (before.body.to_string(), after.body.to_string());
    assert!(after.contains("after the copy") && after.len() > before.len());
    assert!(
        after.find("copied").unwrap() < after.find("after the copy").unwrap(),
        "{after}"
    );
    drop((original, copy));

    // now they differ, and verify says where — by NHS number and version, never by content
    let (ok, out, _) = run(&["verify", "--from", &from, "--to", &to]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("only in the second: version 3 of {FULL}")),
        "{out}"
    );
    assert!(!out.contains('{') && !out.contains("female"), "{out}");

    // and back again: PostgreSQL into a new file
    if postgres().is_some() {
        let back = format!("redb:{}", dir.path().join("back.redb").display());
        let (ok, out, err) = run(&["copy", "--from", &to, "--to", &back]);
        assert!(ok, "{out}{err}");
        let (ok, out, _) = run(&["verify", "--from", &to, "--to", &back]);
        assert!(ok && out.contains("hold the same"), "{out}");
    }

    // a copy never goes into a store that holds something
    let (ok, _, err) = run(&["copy", "--from", &from, "--to", &to]);
    assert!(!ok && err.contains("not empty"), "{err}");
    let (ok, out, _) = run(&["export", "--store", &to]);
    assert!(ok && out.lines().count() == exported.split(|b| *b == b'\n').count() - 1);
}

#[test]
fn an_export_is_every_current_record_in_a_private_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pds.redb");
    drop(Server::demo(&dir));
    let file = dir.path().join("all.ndjson");
    let store = store_of(&db);
    let mut args = vec!["export", "--out", file.to_str().unwrap()];
    args.extend(store.iter().map(String::as_str));
    let (ok, _, err) = run(&args);
    assert!(ok, "{err}");
    assert!(err.contains("exported"), "{err}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "restricted records are in it");
    }
    let text = std::fs::read_to_string(&file).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "in NHS-number order");
    assert!(ids.contains(&RESTRICTED) && ids.contains(&FULL));
    assert!(records.iter().all(|r| r["resourceType"] == "Patient"));
    // and it loads into a new store as it is
    let again = dir.path().join("again.redb");
    let again = location_of(&again);
    let (ok, out, _) = run(&["import", "--store", &again, file.to_str().unwrap()]);
    assert!(
        ok && out.contains(&format!("summary: {} loaded", records.len())),
        "{out}"
    );
}

#[test]
fn an_interrupted_copy_leaves_the_target_empty() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src.redb"), dir.path().join("dst.redb"));
    let data = dir.path().join("patients.ndjson");
    let (ok, _, _) = run(&[
        "generate",
        "--count",
        "6000",
        "--seed",
        "11",
        "--out",
        data.to_str().unwrap(),
    ]);
    assert!(ok);
    let (ok, out, _) = run(&[
        "import",
        "--db",
        src.to_str().unwrap(),
        data.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    let (from, to) = (format!("redb:{}", src.display()), location_of(&dst));
    let mut child = Command::new(BIN)
        .args(["copy", "--from", &from, "--to", &to])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // the second progress line comes once the first page is in the target
    let mut progress = BufReader::new(child.stderr.take().unwrap()).lines();
    let second = progress.nth(1).unwrap().unwrap();
    assert!(second.contains("copying"), "{second}");
    child.kill().unwrap();
    child.wait().unwrap();
    let (ok, out, err) = run(&["export", "--store", &to]);
    assert!(ok, "{err}");
    assert!(out.is_empty() && err.contains("exported 0 record"), "{err}");
    // and the copy runs again from the start
    let (ok, out, err) = run(&["copy", "--from", &from, "--to", &to]);
    assert!(ok && out.contains("copied 6000 record(s)"), "{out}{err}");
    let (ok, out, _) = run(&["verify", "--from", &from, "--to", &to]);
    assert!(ok, "{out}");
}

#[test]
fn commands_that_only_read_never_create_a_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name).display().to_string();
    let (missing, out) = (at("missing.redb"), at("out.ndjson"));
    let (from, other, target) = (
        format!("redb:{missing}"),
        format!("redb:{}", at("other.redb")),
        format!("redb:{}", at("target.redb")),
    );
    let attempts: [&[&str]; 3] = [
        &["export", "--db", &missing, "--out", &out],
        &["verify", "--from", &from, "--to", &other],
        &["copy", "--from", &from, "--to", &target],
    ];
    for args in attempts {
        let (ok, _, err) = run(args);
        assert!(!ok && err.contains("does not exist"), "{args:?}: {err}");
    }
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing was created"
    );
}

#[test]
fn migrate_leaves_a_current_file_as_it_is_and_names_a_missing_one() {
    // migrate rewrites an embedded file, so the demo goes into one whatever store the suite runs on
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pds.redb");
    drop(Server::start_on(&redb(&db), &db, &["--demo"]));
    let export = |name: &str| {
        let file = dir.path().join(name);
        let (ok, _, err) = run(&[
            "export",
            "--db",
            db.to_str().unwrap(),
            "--out",
            file.to_str().unwrap(),
        ]);
        assert!(ok, "{err}");
        std::fs::read(file).unwrap()
    };
    let before = export("before.ndjson");
    let (ok, out, err) = run(&["migrate", "--db", db.to_str().unwrap()]);
    assert!(ok && out.contains("already; nothing to do"), "{out}{err}");
    assert!(export("after.ndjson") == before, "every record as it was");
    let missing = dir.path().join("none.redb");
    let (ok, _, err) = run(&["migrate", "--db", missing.to_str().unwrap()]);
    assert!(!ok && err.contains("no such database file"), "{err}");
    assert!(!missing.exists(), "nothing is created");
}
