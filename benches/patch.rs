//! Durable PATCH throughput: the release server on loopback, N clients each updating its own
//! patient as fast as it is answered (every 200 is an fsync-durable change), for 1, 16 and 64
//! clients. Prints changes/s and latency percentiles; asserts nothing about time.
//!
//! `cargo bench --bench patch` (`BENCH_SECONDS` per run, default 5).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_pds-facade");

fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bench.redb");
    let data = dir.path().join("patients.ndjson");
    assert!(Command::new(BIN)
        .args(["generate", "--count", "200", "--seed", "3", "--out"])
        .arg(&data)
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success());
    assert!(Command::new(BIN)
        .args(["import", "--db"])
        .arg(&db)
        .arg(&data)
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success());
    let mut server = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(&db)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();
    let ids: Vec<String> = (0..64)
        .map(|i| pds_facade::generate::nhs_number(i).to_string())
        .collect();
    // the back office may update every record (a generated one in a hundred is restricted)
    let token = Command::new(BIN)
        .args(["token", "--role", "back-office", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    let token = format!("Bearer {}", String::from_utf8(token.stdout).unwrap().trim());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("| clients | durable changes/s | p50 | p99 |");
    println!("|---|---|---|---|");
    for clients in [1usize, 16, 64] {
        let (count, mut latencies) = runtime.block_on(run(
            &base,
            &token,
            &ids[..clients],
            Duration::from_secs(seconds),
        ));
        latencies.sort();
        let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize];
        println!(
            "| {clients} | {:.0} | {:.2} ms | {:.2} ms |",
            count as f64 / seconds as f64,
            pct(0.5).as_secs_f64() * 1000.0,
            pct(0.99).as_secs_f64() * 1000.0
        );
    }
    let _ = server.kill();
    let _ = server.wait();
}

async fn run(base: &str, token: &str, ids: &[String], length: Duration) -> (usize, Vec<Duration>) {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", token.parse().unwrap());
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap();
    let stop = Instant::now() + length;
    let mut tasks = Vec::new();
    for (k, id) in ids.iter().enumerate() {
        let (http, url) = (http.clone(), format!("{base}/Patient/{id}"));
        tasks.push(tokio::spawn(async move {
            let rid = || uuid::Uuid::new_v4().to_string();
            let r = http.get(&url).header("X-Request-ID", rid()).send().await.unwrap();
            let mut etag = r.headers()["etag"].to_str().unwrap().to_string();
            let (mut done, mut latencies, mut n) = (0, Vec::new(), 0u64);
            while Instant::now() < stop {
                n += 1;
                let body = json!({"patches": [{"op": "replace", "path": "/name/0/id", "value": "N1"},
                    {"op": "replace", "path": "/name/0/given/0", "value": format!("Bench{k}x{n}")}]});
                let t = Instant::now();
                let r = http
                    .patch(&url)
                    .header("X-Request-ID", rid())
                    .header("If-Match", &etag)
                    .header("Content-Type", "application/json-patch+json")
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
                latencies.push(t.elapsed());
                etag = r.headers()["etag"].to_str().unwrap().to_string();
                done += 1;
            }
            (done, latencies)
        }));
    }
    let mut total = 0;
    let mut all = Vec::new();
    for t in tasks {
        let (done, lat) = t.await.unwrap();
        total += done;
        all.extend(lat);
    }
    (total, all)
}
