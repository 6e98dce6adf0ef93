//! Search benchmark: loads N synthetic patients (default 1,000,000; `BENCH_PATIENTS`) into a
//! fresh redb database, then times exact, wildcard and fuzzy searches through the same code the
//! HTTP handler runs (`pds_facade::app::search::run`), and prints p50 / p99 / max per kind.
//!
//! `cargo bench --bench search` (or `BENCH_PATIENTS=20000 cargo bench --bench search` for a
//! quick run). Reports figures; asserts nothing about time.

use std::time::{Duration, Instant};

use pds_facade::domain::search::SearchQuery;
use pds_facade::domain::{Patient, Role, Schemas};
use pds_facade::generate;
use pds_facade::store::redb_store::RedbStore;
use pds_facade::store::{ExistingRecords, PatientStore};

const SEED: u64 = 20261127;

/// A kind of query, made from a patient's own data.
type MakeQuery = fn(&serde_json::Value) -> String;
const QUERIES: usize = 500;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let n: u64 = std::env::var("BENCH_PATIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bench.redb");
    let store = RedbStore::open(&path).expect("open");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let schemas = Schemas::compile();
    let today = time::OffsetDateTime::now_utc().date();

    let started = Instant::now();
    let batch = 10_000;
    let mut i = 0;
    while i < n {
        let end = (i + batch).min(n);
        let records: Vec<Patient> = (i..end)
            .map(|k| Patient::parse(generate::patient(SEED, k), &schemas, today).expect("valid"))
            .collect();
        runtime
            .block_on(store.insert_batch(&records, ExistingRecords::Reject))
            .expect("insert");
        i = end;
    }
    let load = started.elapsed();
    let meta = std::fs::metadata(&path).expect("database file");
    #[cfg(unix)]
    let allocated = std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
    #[cfg(not(unix))]
    let allocated = meta.len();
    println!(
        "loaded {n} patients in {:.1} s ({:.0} patients/s); database file {:.0} MiB long, {:.0} MiB allocated on disk",
        load.as_secs_f64(),
        n as f64 / load.as_secs_f64(),
        meta.len() as f64 / 1048576.0,
        allocated as f64 / 1048576.0
    );

    // queries built from real records, spread over the population
    let sample: Vec<serde_json::Value> = (0..QUERIES as u64)
        .map(|q| generate::patient(SEED, (q * 7919) % n))
        .collect();
    let kinds: [(&str, MakeQuery); 5] = [
        ("exact (family + birthdate)", |p| {
            format!(
                "family={}&birthdate=eq{}",
                p["name"][0]["family"].as_str().unwrap(),
                p["birthDate"].as_str().unwrap()
            )
        }),
        ("exact + gender + postcode", |p| {
            format!(
                "family={}&gender={}&birthdate={}&address-postalcode={}",
                p["name"][0]["family"].as_str().unwrap(),
                p["gender"].as_str().unwrap(),
                p["birthDate"].as_str().unwrap(),
                p["address"][0]["postalCode"].as_str().unwrap()
            )
        }),
        ("wildcard (3 letters* + birthdate)", |p| {
            let f = family_prefix(p);
            format!(
                "family={f}*&birthdate=eq{}",
                p["birthDate"].as_str().unwrap()
            )
        }),
        ("wildcard, wide (3 letters*, a whole birth year)", |p| {
            let f = family_prefix(p);
            let year = &p["birthDate"].as_str().unwrap()[..4];
            format!("family={f}*&birthdate=ge{year}-01-01&birthdate=le{year}-12-31")
        }),
        ("fuzzy (misspelt family + given + birthdate)", |p| {
            let mut f: Vec<char> = p["name"][0]["family"].as_str().unwrap().chars().collect();
            let last = f.len() - 1;
            f.swap(last - 1, last);
            let f: String = f.into_iter().collect();
            format!(
                "_fuzzy-match=true&family={f}&given={}&birthdate={}",
                p["name"][0]["given"][0].as_str().unwrap(),
                p["birthDate"].as_str().unwrap()
            )
        }),
    ];
    println!("\n| query ({QUERIES} each, {n} patients) | p50 | p99 | max | mean hits |");
    println!("|---|---|---|---|---|");
    for (name, make) in kinds {
        let mut times = Vec::with_capacity(QUERIES);
        let mut hits = 0usize;
        for p in &sample {
            let pairs: Vec<(String, String)> = form_urlencoded::parse(make(p).as_bytes())
                .into_owned()
                .collect();
            let t = Instant::now();
            let query = SearchQuery::parse(&pairs, Role::HealthcareWorker).expect("valid query");
            match runtime
                .block_on(pds_facade::app::search::run(
                    &store,
                    &query,
                    pds_facade::domain::Role::HealthcareWorker,
                ))
                .expect("search")
            {
                pds_facade::app::search::Outcome::Hits(h) => hits += h.len(),
                pds_facade::app::search::Outcome::TooManyMatches => hits += query.max_results + 1,
            }
            times.push(t.elapsed());
        }
        times.sort();
        let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
        println!(
            "| {name} | {} | {} | {} | {:.1} |",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99)),
            ms(*times.last().unwrap()),
            hits as f64 / QUERIES as f64
        );
    }
    drop(store);
}

/// The first three letters of a patient's usual family name (for wildcard queries).
fn family_prefix(p: &serde_json::Value) -> String {
    p["name"][0]["family"]
        .as_str()
        .unwrap()
        .chars()
        .take(3)
        .collect()
}
