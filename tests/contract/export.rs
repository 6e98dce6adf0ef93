//! FHIR Bulk Data export (`GET /Patient/$export`, back office): kick-off, status polling, the
//! NDJSON file — the very bytes `pds-facade export` writes of the same database — deletion,
//! expiry, and that no other role reaches any of it.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

const ASYNC: (&str, &str) = ("Prefer", "respond-async");

async fn kick_off(api: &Api, query: &str) -> Reply {
    let rid = request_id();
    api.send(
        "GET",
        &format!("/personal-demographics/FHIR/R4/Patient/$export{query}"),
        &[("X-Request-ID", &rid), ASYNC],
        None,
    )
    .await
}

/// The job's status path, from the kick-off's `Content-Location`.
fn status_path(server: &Server, kicked: &Reply) -> String {
    assert_eq!(kicked.status, 202, "{}", kicked.body);
    let location = kicked.header("content-location").expect("Content-Location");
    let path = location
        .strip_prefix(&server.base)
        .unwrap_or_else(|| panic!("{location} is not on {}", server.base));
    assert!(
        path.starts_with("/personal-demographics/FHIR/R4/_export/"),
        "{path}"
    );
    let id = path.rsplit('/').next().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "a random UUID: {id}");
    path.to_string()
}

/// Polls until the job is no longer running; returns the manifest.
async fn finished(api: &Api, status: &str) -> Value {
    for _ in 0..200 {
        let r = api.get(status).await;
        match r.status {
            202 => {
                assert!(r.header("x-progress").is_some());
                assert!(r.header("retry-after").is_some());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            200 => {
                assert_eq!(r.header("content-type"), Some("application/json"));
                return r.body;
            }
            other => panic!("status {other}: {}", r.body),
        }
    }
    panic!("the export did not finish");
}

/// Downloads the manifest's one output file.
async fn download(server: &Server, api: &Api, manifest: &Value) -> Reply {
    let url = manifest["output"][0]["url"].as_str().unwrap();
    let path = url.strip_prefix(&server.base).unwrap();
    api.get(path).await
}

fn cli_export(db: &std::path::Path) -> Vec<u8> {
    let out = Command::new(BIN)
        .arg("export")
        .args(store_of(db))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[tokio::test]
async fn a_bulk_export_is_what_the_cli_exports_and_only_the_back_office_gets_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let bo = server.api_as("back-office");
    let kicked = kick_off(
        &bo,
        "?_outputFormat=application%2Ffhir%2Bndjson&_type=Patient",
    )
    .await;
    assert!(kicked.raw.is_empty() || kicked.body["resourceType"] == "OperationOutcome");
    let status = status_path(&server, &kicked);
    let manifest = finished(&bo, &status).await;
    assert_eq!(manifest["requiresAccessToken"], true);
    assert_eq!(manifest["error"], serde_json::json!([]));
    assert!(manifest["transactionTime"].is_string());
    assert!(manifest["request"]
        .as_str()
        .unwrap()
        .ends_with("/Patient/$export?_outputFormat=application%2Ffhir%2Bndjson&_type=Patient"));
    let output = &manifest["output"].as_array().unwrap();
    assert_eq!(output.len(), 1);
    assert_eq!(output[0]["type"], "Patient");
    assert_eq!(
        output[0]["url"],
        format!("{}{status}/Patient.ndjson", server.base)
    );
    let file = download(&server, &bo, &manifest).await;
    assert_eq!(file.status, 200);
    assert_eq!(file.header("content-type"), Some("application/fhir+ndjson"));
    let records: Vec<Value> = std::str::from_utf8(&file.raw)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(output[0]["count"], records.len());
    assert_eq!(
        records.len() as u64,
        pds_facade::demo::patients().len() as u64
    );
    // the restricted patient, unredacted: what the back office reads
    let restricted = records.iter().find(|r| r["id"] == RESTRICTED).unwrap();
    let read = bo.get_patient(RESTRICTED).await;
    assert_eq!(restricted, &read.body);
    assert!(restricted["address"].is_array(), "not redacted");
    // in a private file beside the database
    #[cfg(unix)]
    if postgres().is_none() {
        use std::os::unix::fs::PermissionsExt;
        let id = status.rsplit('/').next().unwrap();
        let exports = dir.path().join("pds.redb.exports");
        let job = exports.join(id);
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&exports), 0o700);
        assert_eq!(mode(&job), 0o700);
        assert_eq!(mode(&job.join("Patient.ndjson")), 0o600);
        assert!(!job.join("Patient.ndjson.partial").exists());
    }
    // no other role reaches the job, its file, or a new one
    for api in [
        server.api(),
        server.api_as("healthcare-worker"),
        server.api_as("application-restricted"),
        server.api_as("pcse"),
        server.api_as_practice("Y12345"),
    ] {
        kick_off(&api, "").await.expect(403, "ACCESS_DENIED");
        api.get(&status).await.expect(403, "ACCESS_DENIED");
        download(&server, &api, &manifest)
            .await
            .expect(403, "ACCESS_DENIED");
        let rid = request_id();
        api.send("DELETE", &status, &[("X-Request-ID", &rid)], None)
            .await
            .expect(403, "ACCESS_DENIED");
    }
    // deleted: gone, files too
    let rid = request_id();
    let deleted = bo
        .send("DELETE", &status, &[("X-Request-ID", &rid)], None)
        .await;
    assert_eq!(deleted.status, 202);
    bo.get(&status).await.expect(404, "RESOURCE_NOT_FOUND");
    download(&server, &bo, &manifest)
        .await
        .expect(404, "RESOURCE_NOT_FOUND");
    if postgres().is_none() {
        let id = status.rsplit('/').next().unwrap();
        assert!(!dir.path().join("pds.redb.exports").join(id).exists());
    }
    // byte for byte what `pds-facade export` writes of the same database
    let db = server.db.clone();
    assert_eq!(server.stop().code(), Some(0));
    let cli = cli_export(&db);
    assert_eq!(cli, file.raw, "the bulk file is the CLI's export");
}

#[tokio::test]
async fn kick_off_refusals_and_unknown_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let bo = server.api_as("back-office");
    // Prefer: respond-async is required
    let rid = request_id();
    let r = bo
        .send("GET", "/Patient/$export", &[("X-Request-ID", &rid)], None)
        .await;
    r.expect(400, "MISSING_VALUE");
    assert!(r.diagnostics().unwrap().contains("Prefer: respond-async"));
    // and X-Request-ID, as everywhere
    bo.send("GET", "/Patient/$export", &[ASYNC], None)
        .await
        .expect(400, "MISSING_VALUE");
    for (query, code) in [
        ("?_outputFormat=application/fhir%2Bjson", "INVALID_VALUE"),
        ("?_type=Observation", "INVALID_VALUE"),
        ("?_since=yesterday", "INVALID_VALUE"),
        (
            "?_typeFilter=Patient%3Factive%3Dtrue",
            "ADDITIONAL_PROPERTIES",
        ),
        ("?patient=9991000003", "ADDITIONAL_PROPERTIES"),
    ] {
        let r = kick_off(&bo, query).await;
        assert_eq!((r.status, r.code()), (400, code), "{query}: {}", r.body);
    }
    for format in ["ndjson", "application/ndjson"] {
        assert_eq!(
            kick_off(&bo, &format!("?_outputFormat={format}"))
                .await
                .status,
            202
        );
    }
    let unknown = format!("/_export/{}", uuid::Uuid::new_v4());
    bo.get(&unknown).await.expect(404, "RESOURCE_NOT_FOUND");
    bo.get(&format!("{unknown}/Patient.ndjson"))
        .await
        .expect(404, "RESOURCE_NOT_FOUND");
    let rid = request_id();
    bo.send("DELETE", &unknown, &[("X-Request-ID", &rid)], None)
        .await
        .expect(404, "RESOURCE_NOT_FOUND");
    bo.get("/_export/not-a-job")
        .await
        .expect(404, "RESOURCE_NOT_FOUND");
}

#[tokio::test]
async fn since_takes_the_records_updated_at_or_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let bo = server.api_as("back-office");
    let gender = match bo.get_patient(FULL).await.body["gender"].as_str() {
        Some("male") => "female",
        _ => "male",
    };
    let patched = bo
        .patch_current(
            FULL,
            serde_json::json!([{"op": "replace", "path": "/gender", "value": gender}]),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    let at = patched.body["meta"]["lastUpdated"]
        .as_str()
        .unwrap()
        .to_string();
    let records = |file: &Reply| -> Vec<Value> {
        std::str::from_utf8(&file.raw)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let since = form_urlencoded::byte_serialize(at.as_bytes()).collect::<String>();
    let kicked = kick_off(&bo, &format!("?_since={since}")).await;
    let manifest = finished(&bo, &status_path(&server, &kicked)).await;
    let file = download(&server, &bo, &manifest).await;
    let full = records(&file).into_iter().find(|r| r["id"] == FULL);
    assert_eq!(full.unwrap()["gender"], gender, "updated at `_since`: in");
    // after the change: not in (records never dated — loaded before versions were — always are)
    let kicked = kick_off(&bo, "?_since=2999-01-01T00:00:00Z").await;
    let manifest = finished(&bo, &status_path(&server, &kicked)).await;
    let file = download(&server, &bo, &manifest).await;
    let got = records(&file);
    assert!(got.iter().all(|r| r["id"] != FULL));
    assert!(got.iter().all(|r| r["meta"]["lastUpdated"].is_null()));
    assert_eq!(manifest["output"][0]["count"], got.len());
}

#[tokio::test]
async fn jobs_expire_and_do_not_survive_a_restart() {
    if redb_only("the export directory beside the database file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pds.redb");
    let server = Server::start(&db, &["--demo", "--export-expiry", "3s"]);
    let bo = server.api_as("back-office");
    // the client's first answer loads the schemas it checks answers against: seconds
    assert_eq!(bo.get("/_ping").await.status, 200);
    let status = status_path(&server, &kick_off(&bo, "").await);
    finished(&bo, &status).await;
    let job = dir
        .path()
        .join("pds.redb.exports")
        .join(status.rsplit('/').next().unwrap());
    assert!(job.join("Patient.ndjson").exists());
    tokio::time::sleep(Duration::from_millis(4500)).await;
    bo.get(&status).await.expect(404, "RESOURCE_NOT_FOUND");
    assert!(!job.exists(), "expired: its files removed");
    // a finished job's files are removed at the next start
    let status = status_path(&server, &kick_off(&bo, "").await);
    finished(&bo, &status).await;
    let job = job.with_file_name(status.rsplit('/').next().unwrap());
    assert!(job.exists());
    assert_eq!(server.stop().code(), Some(0));
    let server = Server::start(&db, &[]);
    assert!(!job.exists(), "left by a previous run: removed");
    let bo = server.api_as("back-office");
    bo.get(&status).await.expect(404, "RESOURCE_NOT_FOUND");
}
