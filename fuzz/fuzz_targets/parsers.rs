//! NHS numbers, If-Match values and search query strings from arbitrary bytes: never a panic,
//! and a parsed NHS number prints back to the same ten digits.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

fn records() -> &'static [Map<String, Value>] {
    static R: OnceLock<Vec<Map<String, Value>>> = OnceLock::new();
    R.get_or_init(|| {
        pds_facade::demo::patients()
            .into_iter()
            .filter_map(|p| match p {
                Value::Object(m) => Some(m),
                _ => None,
            })
            .collect()
    })
}
use pds_facade::domain::search::SearchQuery;
use pds_facade::domain::{NhsNumber, Role, Version};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(n) = NhsNumber::parse(&text) {
        assert_eq!(n.to_string(), text);
    }
    let _ = Version::parse_if_match(&text);
    let pairs: Vec<(String, String)> = form_urlencoded::parse(data).into_owned().collect();
    for role in [Role::ApplicationRestricted, Role::HealthcareWorker] {
        if let Ok(q) = SearchQuery::parse(&pairs, role) {
            let _ = q.lookups();
            assert!((1..=50).contains(&q.max_results));
            // and scoring against real records, current and past
            let records = records();
            for (i, r) in records.iter().enumerate() {
                let next = (i + 1) % records.len();
                if let Some(score) = q.score(r, &records[next..next + 1]) {
                    assert!((0.0..=1.0).contains(&score));
                }
            }
        }
    }
});
