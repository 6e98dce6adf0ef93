//! Crash safety: concurrent PATCHes, `kill -9` at a random moment, restart — every
//! acknowledged change is there, versions are contiguous, audit entries and indexes agree with
//! the records. Two cycles by default; `PDS_LONG_TESTS=1` runs twenty.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

/// What a client saw acknowledged: (version, the given name it wrote).
type Acks = Arc<Mutex<Vec<(u32, String)>>>;

fn cycles() -> usize {
    if std::env::var("PDS_LONG_TESTS").is_ok_and(|v| v == "1") {
        20
    } else {
        2
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_changes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pds.redb");
    let patients: Vec<String> = (14..22)
        .map(|i| pds_facade::demo::nhs_numbers()[i].to_string())
        .collect();
    let acks: Vec<Acks> = patients
        .iter()
        .map(|_| Arc::new(Mutex::new(Vec::new())))
        .collect();
    let mut seed: u64 = 0x2026_1127;
    for cycle in 0..cycles() {
        let server = Server::start(&db, &["--demo"]);
        let mut tasks = Vec::new();
        for (k, id) in patients.iter().enumerate() {
            let (api, id, acks) = (server.api(), id.clone(), acks[k].clone());
            tasks.push(tokio::spawn(async move {
                let mut n = 0;
                loop {
                    let Ok(resp) = api.http.get(format!("{}/Patient/{id}", api.base)).header("X-Request-ID", request_id()).send().await else { break };
                    let Some(version) = resp.headers().get("etag").and_then(|e| e.to_str().ok()).map(str::to_string) else { break };
                    n += 1;
                    let given = format!("Crash{cycle}x{n}");
                    let body = json!({"patches": [{"op": "replace", "path": "/name/0/id", "value": "N1"},
                        {"op": "replace", "path": "/name/0/given/0", "value": given}]});
                    let sent = api
                        .http
                        .patch(format!("{}/Patient/{id}", api.base))
                        .header("X-Request-ID", request_id())
                        .header("If-Match", &version)
                        .header("Content-Type", "application/json-patch+json")
                        .body(body.to_string())
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == 200 => {
                            let v: u32 = r.headers()["etag"].to_str().unwrap().trim_start_matches("W/\"").trim_end_matches('"').parse().unwrap();
                            acks.lock().unwrap().push((v, given));
                        }
                        Ok(_) => {}
                        Err(_) => break, // the server is gone
                    }
                }
            }));
        }
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        tokio::time::sleep(Duration::from_millis(150 + (seed >> 33) % 400)).await;
        server.kill();
        for t in tasks {
            t.await.unwrap();
        }
    }
    let total: usize = acks.iter().map(|a| a.lock().unwrap().len()).sum();
    assert!(total > 20, "the clients got changes acknowledged ({total})");
    println!(
        "crash test: {} kill -9 cycles, {total} acknowledged changes to verify",
        cycles()
    );

    let server = Server::start(&db, &[]);
    let bo = server.api_as("back-office");
    for (k, id) in patients.iter().enumerate() {
        let current = bo.get_patient(id).await;
        let version = current.version();
        let acked = acks[k].lock().unwrap().clone();
        for (v, given) in &acked {
            assert!(
                *v <= version,
                "{id}: acknowledged version {v} lost (now {version})"
            );
            let old = bo.get(&format!("/Patient/{id}/_history/{v}")).await;
            assert_eq!(
                old.body["name"][0]["given"][0].as_str(),
                Some(given.as_str()),
                "{id} v{v}"
            );
        }
        // every version from 1 to the current one, no gaps; one audit entry per change
        let history = bo.get(&format!("/Patient/{id}/_history")).await;
        let versions: Vec<u32> = history.body["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                e["resource"]["meta"]["versionId"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert_eq!(versions, (1..=version).rev().collect::<Vec<_>>(), "{id}");
        let audit = bo.get(&format!("/_audit?patient={id}")).await;
        assert_eq!(
            audit.body["total"].as_u64(),
            Some(u64::from(version - 1)),
            "{id}: one audit entry per change"
        );
    }
    server.stop();
    let (ok, out) = check_indexes(&db);
    assert!(ok, "indexes disagree after crashes: {out}");
}
