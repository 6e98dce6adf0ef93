//! NHS numbers, If-Match values and search query strings from arbitrary bytes: never a panic,
//! and a parsed NHS number prints back to the same ten digits.
#![no_main]

use libfuzzer_sys::fuzz_target;
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
        }
    }
});
