//! GET /Patient?… — PDS search: the documented examples, validation order and codes, matching
//! rules, scores, the searchset shape, restricted and superseded records, and the indexes.

use serde_json::{json, Value};

use crate::helpers::*;
use pds_facade::demo::{ids, nhs_numbers};

fn demo(i: usize) -> String {
    nhs_numbers()[i].to_string()
}

fn ids_of(r: &Reply) -> Vec<String> {
    r.body["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|x| x["resource"]["id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn scores(r: &Reply) -> Vec<f64> {
    r.body["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|x| x["search"]["score"].as_f64().unwrap())
                .collect()
        })
        .unwrap_or_default()
}

async fn search(api: &Api, query: &str) -> Reply {
    api.get(&format!("/Patient?{query}")).await
}

#[tokio::test]
async fn the_pds_documentation_examples() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let api = server.api();
    let jane = demo(ids::JANE_SMITH);
    let jayne = demo(ids::JAYNE_SMYTH);

    let r = search(&api, "family=Smith&gender=female&birthdate=eq2010-10-22").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        (
            r.body["resourceType"].as_str(),
            r.body["type"].as_str(),
            r.body["total"].as_u64()
        ),
        (Some("Bundle"), Some("searchset"), Some(1))
    );
    assert!(r.body["timestamp"].as_str().unwrap().ends_with("+00:00"));
    assert_eq!(ids_of(&r), [jane.as_str()]);
    assert_eq!(scores(&r), [1.0]);
    assert_eq!(
        r.body["entry"][0]["fullUrl"],
        format!(
            "{}/personal-demographics/FHIR/R4/Patient/{jane}",
            server.base
        )
    );
    assert_eq!(r.header("etag"), None, "no ETag on search");

    // every documented parameter at once
    let r = search(&api, "family=Smith&given=Jane&gender=female&birthdate=eq2010-10-22&address-postcode=LS1%206AE&death-date=eq2010-10-22&general-practitioner=Y12345&email=jane.smith@example.com&phone=01632960587").await;
    assert_eq!(
        (ids_of(&r), scores(&r)),
        (vec![jane.clone()], vec![1.0]),
        "{}",
        r.body
    );
    // e-mail and telephone alone (with the required family and birth date)
    for q in ["email=JANE.SMITH@example.com", "phone=01632960587"] {
        let r = search(&api, &format!("family=Smith&birthdate=2010-10-22&{q}")).await;
        assert_eq!(ids_of(&r), [jane.as_str()], "{q}");
    }
    // wildcard: both namesakes, below 1
    let r = search(&api, "family=Sm*&gender=female&birthdate=eq2010-10-22").await;
    assert_eq!(ids_of(&r), [jane.as_str(), jayne.as_str()]);
    assert!(scores(&r).iter().all(|s| *s < 1.0 && *s > 0.5));
    // fuzzy: the exact one first, the homophone after
    let r = search(
        &api,
        "_fuzzy-match=true&family=Smith&given=Jane&gender=female&birthdate=2010-10-22",
    )
    .await;
    assert_eq!(ids_of(&r), [jane.as_str(), jayne.as_str()], "{}", r.body);
    let s = scores(&r);
    assert!(s[0] == 1.0 && s[1] < 1.0 && s[1] >= 0.6, "{s:?}");
    let r = search(&api, "_fuzzy-match=true&_exact-match=true&family=Smith&given=Jane&gender=female&birthdate=2010-10-22").await;
    assert_eq!(ids_of(&r), [jane.as_str()]);
    // more matches than asked for: 200 with an OperationOutcome, no partial list
    let r = search(
        &api,
        "family=Sm*&gender=female&birthdate=eq2010-10-22&_max-results=1",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.code(), "TOO_MANY_MATCHES");
    assert_eq!(
        (
            r.body["issue"][0]["severity"].as_str(),
            r.body["issue"][0]["code"].as_str()
        ),
        (Some("information"), Some("multiple-matches"))
    );
    assert_eq!(r.diagnostics(), None);
    // no match: no entry key at all
    let r = search(&api, "family=Nobody&birthdate=2010-10-22").await;
    assert_eq!(r.body["total"], 0);
    assert!(r.body.get("entry").is_none());
    // the PDS base path serves search too
    let r = api
        .get("/personal-demographics/FHIR/R4/Patient?family=Smith&birthdate=2010-10-22")
        .await;
    assert_eq!(ids_of(&r), [jane]);
}

#[tokio::test]
async fn validation_order_and_codes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let api = server.api();
    let cases: [(&str, u16, &str, Option<&str>); 12] = [
        ("", 400, "UNSUPPORTED_SERVICE", None),
        ("&=", 400, "UNSUPPORTED_SERVICE", None),
        ("family=Smith&birthdate=2010-10-22&year=2010", 400, "ADDITIONAL_PROPERTIES", Some("Invalid request with error - Additional properties are not allowed ('year' was unexpected)")),
        ("history=true&family=Smith&birthdate=2010-10-22", 400, "ADDITIONAL_PROPERTIES", None),
        ("family=Smith&birthdate=20101022", 400, "INVALID_VALUE", Some("Invalid value - '20101022' in field 'birthdate'")),
        ("family=Smith&birthdate=2010-10-22&death-date=2010-13-01", 400, "INVALID_VALUE", Some("Invalid value - '2010-13-01' in field 'death-date'")),
        ("family=Smith&gender=mal&birthdate=2010-10-22", 400, "INVALID_VALUE", Some("Invalid value - 'mal' in field 'gender'")),
        ("gender=female", 400, "MISSING_VALUE", Some("Missing value - 'birthdate' (a search needs a birth date, birthdate=yyyy-mm-dd, or a range with ge and le)")),
        ("email=a@example.com&phone=01632960587", 400, "MISSING_VALUE", None),
        ("birthdate=2010-10-22", 400, "INVALID_SEARCH_DATA", Some("Invalid search data provided - 'No searches were performed as the search criteria did not meet the minimum requirements'")),
        ("family=Smith&birthdate=2010-10-22&address-postcode=LS1&address-postalcode=LS1", 400, "INVALID_SEARCH_DATA", None),
        ("_fuzzy-match=true&family=Sm*&given=Jane&birthdate=2010-10-22", 400, "INVALID_SEARCH_DATA", Some("Invalid search data provided - 'A fuzzy search was requested however the data given did not meet the fuzzy search criteria'")),
    ];
    for (q, status, code, diagnostics) in cases {
        let r = search(&api, q).await;
        r.expect(status, code);
        if let Some(d) = diagnostics {
            r.expect_diagnostics(d);
        }
    }
    // empty pairs are ignored; the rest still works
    assert_eq!(
        search(&api, "family=Smith&&=&birthdate=2010-10-22")
            .await
            .body["total"],
        1
    );
    // X-Request-ID still required
    api.send(
        "GET",
        "/Patient?family=Smith&birthdate=2010-10-22",
        &[],
        None,
    )
    .await
    .expect(400, "MISSING_VALUE");
    // wildcards need two leading characters
    search(&api, "family=S*&birthdate=2010-10-22")
        .await
        .expect(400, "INVALID_SEARCH_DATA");
    // fuzzy combinations PDS allows, and one it does not
    for q in [
        "family=Smith&given=Jane",
        "family=Smith&gender=female&address-postalcode=LS1%206AE",
        "given=Jane&gender=female&address-postalcode=LS16AE",
    ] {
        let r = search(&api, &format!("_fuzzy-match=true&birthdate=2010-10-22&{q}")).await;
        assert_eq!(r.status, 200, "{q}: {}", r.body);
        assert_eq!(ids_of(&r).first(), Some(&demo(ids::JANE_SMITH)), "{q}");
    }
    search(&api, "_fuzzy-match=true&family=Smith&birthdate=2010-10-22")
        .await
        .expect(400, "INVALID_SEARCH_DATA");
    // names in other scripts are searched, not crashed on (a fuzzing find)
    for q in [
        "_fuzzy-match=true&family=Smith&given=BIRHDTEGER%CF%98&birthdate=2010-10-22",
        "_fuzzy-match=true&family=BIRHDTEGER%CF%98&given=Jane&birthdate=2010-10-22",
        "family=%CF%98%CE%B9%CE%B1&birthdate=2010-10-22",
    ] {
        assert_eq!(search(&api, q).await.status, 200, "{q}");
    }
}

#[tokio::test]
async fn application_restricted_gets_one_result() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let app = server.api_as("application-restricted");
    let r = search(&app, "family=Smith&birthdate=2010-10-22&_max-results=2").await;
    r.expect(403, "INVALID_VALUE").expect_diagnostics(
        "Your app has insufficient permissions to perform this search. Please contact support.",
    );
    assert_eq!(r.body["issue"][0]["code"], "forbidden");
    assert_eq!(
        ids_of(&search(&app, "family=Smith&birthdate=2010-10-22").await),
        [demo(ids::JANE_SMITH)]
    );
    // two matches are too many for a single-result search
    assert_eq!(
        search(&app, "family=Sm*&birthdate=2010-10-22").await.code(),
        "TOO_MANY_MATCHES"
    );
    assert_eq!(
        search(&app, "family=Sm*&birthdate=2010-10-22&_max-results=1")
            .await
            .code(),
        "TOO_MANY_MATCHES"
    );
}

#[tokio::test]
async fn names_of_every_shape() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let api = server.api();
    let get = |i: usize| {
        let api = &api;
        async move { api.get_patient(&demo(i)).await.body }
    };
    let hyphen = get(ids::HOME_AND_TEMP).await;
    let apostrophe = get(ids::COMPOUND_GIVEN).await;
    assert_eq!(
        ids_of(&search(&api, "family=pryce-davies&birthdate=2005-09-01").await),
        [hyphen["id"].as_str().unwrap()]
    );
    assert_eq!(
        ids_of(
            &search(
                &api,
                "family=O%27Sullivan&given=Mary%20Ann&given=Josephine&birthdate=2012-02-29"
            )
            .await
        ),
        [apostrophe["id"].as_str().unwrap()]
    );
    assert_eq!(
        ids_of(&search(&api, "family=O%27Sul*&given=Ma*&birthdate=2012-02-29").await),
        [apostrophe["id"].as_str().unwrap()]
    );
    // given names are positional: the second given name is not the first
    assert_eq!(
        search(
            &api,
            "family=O%27Sullivan&given=Josephine&birthdate=2012-02-29"
        )
        .await
        .body["total"],
        0
    );
    // accents are ignored both ways
    let accented: Vec<Value> = {
        let mut v = Vec::new();
        for i in 0..nhs_numbers().len() {
            let p = get(i).await;
            if p["name"][0]["family"]
                .as_str()
                .is_some_and(|f| f.contains('ń'))
            {
                v.push(p);
            }
        }
        v
    };
    let z = &accented[0];
    let birth = z["birthDate"].as_str().unwrap();
    assert_eq!(
        ids_of(&search(&api, &format!("family=Zielinski&birthdate={birth}")).await),
        [z["id"].as_str().unwrap()]
    );
    assert_eq!(
        ids_of(&search(&api, &format!("family=ZIELI%C5%83SKI&birthdate={birth}")).await),
        [z["id"].as_str().unwrap()]
    );
    // twins: same family and birth date, two results; birth-date ranges
    let twins = search(&api, "family=Khatun&birthdate=1968-05-21").await;
    assert_eq!(twins.body["total"], 2, "{}", twins.body);
    assert_eq!(
        search(
            &api,
            "family=Khatun&birthdate=ge1968-05-21&birthdate=le1968-05-21&gender=male"
        )
        .await
        .body["total"],
        1
    );
    assert_eq!(
        search(
            &api,
            "family=Khatun&birthdate=ge1968-05-22&birthdate=le1968-12-31"
        )
        .await
        .body["total"],
        0
    );
    assert_eq!(
        search(&api, "family=Khatun&birthdate=le1968-05-20")
            .await
            .body["total"],
        0
    );
    // past names need _history, and score below 1; the current record comes back
    let full = demo(ids::FULL);
    assert_eq!(
        search(&api, "family=Pennington&birthdate=1971-06-02")
            .await
            .body["total"],
        0
    );
    let r = search(&api, "family=Pennington&birthdate=1971-06-02&_history=true").await;
    assert_eq!(ids_of(&r), [full.as_str()]);
    assert!(scores(&r)[0] < 1.0);
    assert_eq!(
        r.body["entry"][0]["resource"]["name"][0]["family"],
        "Ashworth"
    );
    // the search subset: usual/nickname/temp names, home address, death extension only
    let r = search(&api, "family=Ashworth&birthdate=1971-06-02").await;
    let resource = &r.body["entry"][0]["resource"];
    let uses: Vec<&str> = resource["name"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["use"].as_str().unwrap())
        .collect();
    assert_eq!(uses, ["usual", "nickname"]);
    assert!(
        resource.get("extension").is_none() && resource.get("managingOrganization").is_none(),
        "{resource}"
    );
    let temp = search(&api, "family=Pryce-Davies&birthdate=2005-09-01").await;
    let uses: Vec<&str> = temp.body["entry"][0]["resource"]["address"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["use"].as_str().unwrap())
        .collect();
    assert_eq!(uses, ["home"]);
    let dead = search(&api, "family=Smith&birthdate=2010-10-22").await;
    assert_eq!(
        dead.body["entry"][0]["resource"]["extension"][0]["url"],
        "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-DeathNotificationStatus"
    );
}

#[tokio::test]
async fn restricted_and_superseded_records() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pds.redb");
    Server::demo(&dir).stop();
    // an unrestricted namesake of the restricted demo patient, at the same postcode and practice
    let namesake = json!({"resourceType": "Patient", "id": "9000000009",
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"}],
        "name": [{"use": "usual", "family": "Tregarthen", "given": ["Morwenna"]}], "gender": "female", "birthDate": "1988-11-23",
        "address": [{"use": "home", "line": ["9 Quay Street", "Truro"], "postalCode": "TR1 2HE"}],
        "generalPractitioner": [{"type": "Organization", "identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "Y02468"}}]});
    let file = dir.path().join("namesake.json");
    std::fs::write(&file, namesake.to_string()).unwrap();
    assert!(std::process::Command::new(BIN)
        .arg("import")
        .args(store_of(&db))
        .arg(&file)
        .status()
        .unwrap()
        .success());
    let server = Server::start(&db, &[]);
    let (hcw, bo) = (server.api(), server.api_as("back-office"));

    // by name: both, the restricted one redacted for a healthcare worker
    let r = search(&hcw, "family=Tregarthen&birthdate=1988-11-23").await;
    assert_eq!(ids_of(&r), ["9000000009", RESTRICTED]);
    let hidden = &r.body["entry"][1]["resource"];
    assert!(
        hidden.get("address").is_none() && hidden.get("generalPractitioner").is_none(),
        "{hidden}"
    );
    let r = search(&bo, "family=Tregarthen&birthdate=1988-11-23").await;
    assert_eq!(
        r.body["entry"][1]["resource"]["address"][0]["postalCode"],
        "TR1 2HE"
    );
    // by postcode or GP: never, and not even counted — for every role but the back office
    for q in [
        "address-postalcode=TR1%202HE",
        "address-postcode=TR12HE",
        "general-practitioner=Y02468",
    ] {
        let r = search(
            &hcw,
            &format!("family=Tregarthen&birthdate=1988-11-23&{q}&_max-results=1"),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(ids_of(&r), ["9000000009"], "{q}: {}", r.body);
        let r = search(&bo, &format!("family=Tregarthen&birthdate=1988-11-23&{q}")).await;
        assert_eq!(ids_of(&r), ["9000000009", RESTRICTED], "{q}: {}", r.body);
    }
    // superseded records never come back; their survivor does
    let twins = search(&hcw, "family=Khatun&birthdate=1968-05-21").await;
    let (a, b) = (ids_of(&twins)[0].clone(), ids_of(&twins)[1].clone());
    let merge = json!({"resourceType": "Parameters", "parameter": [
        {"name": "source-patient-identifier", "valueIdentifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": a}},
        {"name": "target-patient-identifier", "valueIdentifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": b}},
        {"name": "reason", "valueString": "test"}]});
    let rid = request_id();
    let r = bo
        .send(
            "POST",
            "/Patient/$merge",
            &[
                ("X-Request-ID", &rid),
                ("Content-Type", "application/fhir+json"),
            ],
            Some(merge.to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let b_given = hcw.get_patient(&b).await.body["name"][0]["given"][0]
        .as_str()
        .unwrap()
        .to_string();
    for q in [
        "family=Khatun&birthdate=1968-05-21".to_string(),
        format!("_fuzzy-match=true&family=Khatun&given={b_given}&birthdate=1968-05-21"),
    ] {
        assert_eq!(ids_of(&search(&hcw, &q).await), [b.as_str()], "{q}");
    }
}

/// A tiny deterministic generator for the random PATCH sequence.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[tokio::test]
async fn indexes_agree_with_records_after_random_changes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let bo = server.api_as("back-office");
    let mut rng = Rng(20261127);
    let families = ["Ashcroft", "Bramley", "Cotterill", "Dunmore", "Ellery"];
    let mut applied = 0;
    for _ in 0..60 {
        let id = demo(10 + rng.below(20) as usize);
        let current = bo.get_patient(&id).await;
        let v = current.version();
        let ops = match rng.below(4) {
            0 => {
                json!([{"op": "replace", "path": "/name/0/id", "value": "N1"}, {"op": "replace", "path": "/name/0/family", "value": families[rng.below(5) as usize]}])
            }
            1 => {
                json!([{"op": "replace", "path": "/address/0/id", "value": "A1"}, {"op": "replace", "path": "/address/0/postalCode", "value": format!("LS{} {}AB", 1 + rng.below(20), rng.below(10))}])
            }
            2 => {
                json!([{"op": "add", "path": "/telecom/-", "value": {"system": "email", "use": if rng.below(2) == 0 { "home" } else { "work" }, "value": format!("p{}@example.com", rng.below(1000))}}])
            }
            _ => {
                json!([{"op": "replace", "path": "/birthDate", "value": format!("19{:02}-0{}-1{}", 30 + rng.below(60), 1 + rng.below(9), rng.below(10))}])
            }
        };
        if bo.patch(&id, v, json!({ "patches": ops })).await.status == 200 {
            applied += 1;
        }
    }
    assert!(applied > 30, "most random changes apply ({applied})");
    let db = server.db.clone();
    server.stop();
    let (ok, out) = check_indexes(&db);
    assert!(ok && out.contains("0 difference(s)"), "{out}");
    let rebuilt = std::process::Command::new(BIN)
        .arg("reindex")
        .args(store_of(&db))
        .output()
        .unwrap();
    assert!(
        rebuilt.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuilt.stderr)
    );
    let (ok, out) = check_indexes(&db);
    assert!(ok, "{out}");
}

#[tokio::test]
async fn history_searches_find_changed_values() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let hcw = server.api();
    let id = demo(ids::COMPOUND_GIVEN);
    let r = hcw
        .patch(&id, 1, json!({"patches": [
            {"op": "replace", "path": "/name/0/id", "value": "N1"}, {"op": "replace", "path": "/name/0/family", "value": "Sullivan-Rhodes"},
            {"op": "replace", "path": "/address/0/id", "value": "A1"}, {"op": "replace", "path": "/address/0/postalCode", "value": "L1 8JQ"}]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        ids_of(&search(&hcw, "family=Sullivan-Rhodes&birthdate=2012-02-29").await),
        [id.as_str()]
    );
    assert_eq!(
        search(&hcw, "family=O%27Sullivan&birthdate=2012-02-29")
            .await
            .body["total"],
        0
    );
    let r = search(
        &hcw,
        "family=O%27Sullivan&birthdate=2012-02-29&_history=true",
    )
    .await;
    assert_eq!(ids_of(&r), [id.as_str()]);
    assert_eq!(
        r.body["entry"][0]["resource"]["name"][0]["family"], "Sullivan-Rhodes",
        "current data comes back"
    );
    assert_eq!(
        search(
            &hcw,
            "family=Sullivan-Rhodes&birthdate=2012-02-29&address-postalcode=L55AE"
        )
        .await
        .body["total"],
        0
    );
    assert_eq!(
        search(
            &hcw,
            "family=Sullivan-Rhodes&birthdate=2012-02-29&address-postalcode=L55AE&_history=true"
        )
        .await
        .body["total"],
        1
    );
}

#[tokio::test]
async fn names_with_letters_outside_ascii_are_stored_indexed_and_found() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let api = server.api();
    let id = demo(ids::COMPOUND_GIVEN);
    let r = api
        .patch(
            &id,
            1,
            json!({"patches": [{"op": "replace", "path": "/name/0/id", "value": "N1"},
            {"op": "replace", "path": "/name/0/family", "value": "Ødegård-Łukasz"},
            {"op": "replace", "path": "/name/0/given/0", "value": "Søren"}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    for q in [
        "family=%C3%98deg%C3%A5rd-%C5%81ukasz&birthdate=2012-02-29",
        "family=%C3%98deg*&birthdate=2012-02-29",
        "_fuzzy-match=true&family=%C3%98degard-Lukasz&given=S%C3%B8ren&birthdate=2012-02-29",
    ] {
        assert_eq!(ids_of(&search(&api, q).await), [id.as_str()], "{q}");
    }
    // and the writer is still writing
    assert_eq!(
        api.patch(
            &id,
            2,
            json!({"patches": [{"op": "replace", "path": "/gender", "value": "unknown"}]})
        )
        .await
        .status,
        200
    );
}
