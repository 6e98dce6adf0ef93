//! Restricted stays restricted: for every role but the back office, a restricted record behaves
//! as if the elements its restricted view hides did not exist — in responses, search matching,
//! scores, counts, error texts, replays, history, merges and changes of identity.

use serde_json::{json, Value};

use crate::helpers::*;

const CONFIDENTIALITY: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";

fn ident(n: &str) -> Value {
    json!({"system": "https://fhir.nhs.uk/Id/nhs-number", "value": n})
}

/// A stored record with one of each locating value.
struct Person<'a> {
    nhs: &'a str,
    family: &'a str,
    given: &'a str,
    birth: &'a str,
    code: &'a str,
    postcode: &'a str,
    phone: &'a str,
    email: &'a str,
    gp: &'a str,
}

impl Person<'_> {
    fn record(&self) -> Value {
        json!({"resourceType": "Patient", "id": self.nhs,
            "identifier": [ident(self.nhs)],
            "meta": {"versionId": "1", "security": [{"system": CONFIDENTIALITY, "code": self.code}]},
            "name": [{"id": "N1", "use": "usual", "family": self.family, "given": [self.given]}],
            "gender": "female", "birthDate": self.birth,
            "address": [{"id": "A1", "use": "home", "line": [format!("1 {} Row", self.family)], "postalCode": self.postcode}],
            "telecom": [{"id": "T1", "system": "phone", "use": "mobile", "value": self.phone},
                        {"id": "T2", "system": "email", "use": "home", "value": self.email}],
            "generalPractitioner": [{"id": "G1", "type": "Organization",
                "identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": self.gp}}]})
    }
}

async fn search(api: &Api, query: &str) -> Reply {
    let r = api.get(&format!("/Patient?{query}")).await;
    assert_eq!(r.status, 200, "{query}: {}", r.body);
    r
}

fn ids_of(r: &Reply) -> Vec<String> {
    r.body["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
        .collect()
}

/// What a search answered, without the time it answered at and its `self` link (the caller's
/// own query, repeated): ids, scores, total or the TOO_MANY_MATCHES outcome.
fn answer(r: &Reply) -> Value {
    let mut b = r.body.clone();
    if let Some(m) = b.as_object_mut() {
        m.remove("timestamp");
        m.remove("link");
    }
    b
}

fn flag(code: &str) -> Value {
    json!([{"op": "replace", "path": "/meta/security/0/code", "value": code}])
}

#[tokio::test]
async fn restricted_records_never_match_on_a_hidden_field() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pds.redb");
    let (hidden, open) = (nhs_from(999_250_000, 0), nhs_from(999_250_000, 1));
    import(
        &db,
        &[
            Person {
                nhs: &hidden,
                family: "Quillfeather",
                given: "Rose",
                birth: "1979-04-04",
                code: "R",
                postcode: "LS2 9JT",
                phone: "07700900401",
                email: "rose.q@example.com",
                gp: "Y40401",
            }
            .record(),
            Person {
                nhs: &open,
                family: "Quillfeather",
                given: "Ivy",
                birth: "1979-04-04",
                code: "U",
                postcode: "LS6 1AA",
                phone: "07700900402",
                email: "ivy.q@example.com",
                gp: "Y40402",
            }
            .record(),
        ],
    );
    let server = Server::start(&db, &[]);
    let bo = server.api_as("back-office");
    let others = [
        server.api(),
        server.api_as("healthcare-worker"),
        server.api_as("application-restricted"),
    ];
    let base = "family=Quillfeather&birthdate=1979-04-04";
    let wide = "family=Qu*&birthdate=ge1900-01-01&birthdate=le2020-12-31";
    let fuzzy = "_fuzzy-match=true&family=Quillfeather&given=Rose&birthdate=1979-04-04";
    // each hidden value of the restricted record, in every search mode
    let cases = [
        format!("{base}&phone=07700900401"),
        format!("{base}&email=rose.q@example.com"),
        format!("{base}&address-postalcode=LS2%209JT"),
        format!("{base}&general-practitioner=Y40401"),
        format!("{wide}&phone=07700900401"),
        format!("{wide}&email=ROSE.Q@example.com"),
        format!("{base}&_history=true&phone=07700900401"),
        format!("{base}&_history=true&email=rose.q@example.com"),
        format!("{fuzzy}&phone=07700900401"),
        format!("{fuzzy}&email=rose.q@example.com"),
        "_fuzzy-match=true&family=Quillfeather&gender=female&birthdate=1979-04-04&address-postalcode=LS2%209JT".to_string(),
        format!("{fuzzy}&general-practitioner=Y40401"),
    ];
    for q in &cases {
        let found = search(&bo, q).await;
        assert!(
            ids_of(&found).contains(&hidden),
            "the back office finds it: {q}"
        );
        // the same query with a value nobody has: the answer must not differ by a byte
        let decoy = q
            .replace("07700900401", "07700900999")
            .replace("rose.q@", "nobody@")
            .replace("ROSE.Q@", "nobody@")
            .replace("LS2%209JT", "LS2%209ZZ")
            .replace("Y40401", "Y49999");
        // (application-restricted callers get at most one result: a match would be counted)
        for api in &others {
            let r = search(api, q).await;
            assert!(!ids_of(&r).contains(&hidden), "{q}: {}", r.body);
            assert_ne!(
                r.body["resourceType"], "OperationOutcome",
                "not even counted: {q}: {}",
                r.body
            );
            let d = search(api, &decoy).await;
            assert_eq!(answer(&r), answer(&d), "{q} vs {decoy}");
        }
    }
    // by what everyone may see (name, birth date), it is found — redacted
    let r = search(&others[0], base).await;
    assert_eq!(ids_of(&r), [hidden.as_str(), open.as_str()]);
    let shown = r.body["entry"][0]["resource"].to_string();
    for value in ["LS2 9JT", "07700900401", "rose.q@", "Y40401"] {
        assert!(!shown.contains(value), "{value} in {shown}");
    }
}

#[tokio::test]
async fn phone_and_email_are_filters_in_every_search_mode() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pds.redb");
    let nhs = nhs_from(999_251_000, 0);
    import(
        &db,
        &[Person {
            nhs: &nhs,
            family: "Ashworth",
            given: "Pearl",
            birth: "1966-06-06",
            code: "U",
            postcode: "BD1 1AA",
            phone: "07700900411",
            email: "pearl.a@example.com",
            gp: "Y41101",
        }
        .record()],
    );
    let server = Server::start(&db, &[]);
    let api = server.api();
    let fuzzy = "_fuzzy-match=true&family=Ashworth&given=Pearl&birthdate=1966-06-06";
    assert_eq!(ids_of(&search(&api, fuzzy).await), [nhs.as_str()]);
    // PDS: "If you use phone number and/or email address, only exact matches will be returned"
    for (q, hit) in [
        (format!("{fuzzy}&phone=07700900411"), true),
        (format!("{fuzzy}&phone=07700900412"), false),
        (format!("{fuzzy}&email=PEARL.A@example.com"), true),
        (format!("{fuzzy}&email=pearl.b@example.com"), false),
        (
            format!("{fuzzy}&phone=07700900411&email=pearl.b@example.com"),
            false,
        ),
    ] {
        let r = search(&api, &q).await;
        assert_eq!(!ids_of(&r).is_empty(), hit, "{q}: {}", r.body);
        if hit {
            assert_eq!(r.body["entry"][0]["search"]["score"], 1.0, "{q}");
        }
    }
}

#[tokio::test]
async fn values_held_while_restricted_stay_hidden_after_the_flag_is_lifted() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pds.redb");
    let nhs = nhs_from(999_252_000, 0);
    import(
        &db,
        &[Person {
            nhs: &nhs,
            family: "Fairweather",
            given: "Maud",
            birth: "1990-09-09",
            code: "U",
            postcode: "HX1 1AA",
            phone: "07700900421",
            email: "maud.first@example.com",
            gp: "Y42101",
        }
        .record()],
    );
    let server = Server::start(&db, &[]);
    let bo = server.api_as("back-office");
    // flagged, then the person moves and changes number and e-mail, then the flag is lifted
    for (patches, reason) in [
        (flag("R"), "at risk of harm"),
        (
            json!([{"op": "replace", "path": "/address/0/id", "value": "A1"},
                   {"op": "replace", "path": "/address/0/postalCode", "value": "HX7 7ZZ"},
                   {"op": "replace", "path": "/address/0/line/0", "value": "9 Refuge Walk"}]),
            "moved",
        ),
        (
            json!([{"op": "replace", "path": "/telecom/0/id", "value": "T1"},
                   {"op": "replace", "path": "/telecom/0/value", "value": "07700900429"},
                   {"op": "replace", "path": "/telecom/1/id", "value": "T2"},
                   {"op": "replace", "path": "/telecom/1/value", "value": "maud.second@example.com"}]),
            "new number",
        ),
        (flag("U"), "risk has passed"),
    ] {
        let r = bo.patch_current_because(&nhs, patches, reason).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let held = [
        "HX1 1AA",
        "1 Fairweather Row",
        "07700900421",
        "maud.first@example.com",
    ];
    let others = [server.api(), server.api_as("application-restricted")];
    let base = "family=Fairweather&birthdate=1990-09-09";
    let fuzzy = "_fuzzy-match=true&family=Fairweather&given=Maud&birthdate=1990-09-09";
    let decoy = |q: &str| {
        q.replace("HX1%201AA", "ZZ9%209ZZ")
            .replace("07700900421", "07700900999")
            .replace("maud.first@", "nobody@")
    };
    for q in [
        format!("{base}&_history=true&address-postalcode=HX1%201AA"),
        format!("{base}&_history=true&phone=07700900421"),
        format!("{base}&_history=true&email=maud.first@example.com"),
        format!("{fuzzy}&phone=07700900421"),
        format!("{fuzzy}&email=maud.first@example.com"),
        "_fuzzy-match=true&family=Fairweather&gender=female&birthdate=1990-09-09&address-postalcode=HX1%201AA".to_string(),
    ] {
        // the back office matches on the old value: found, or scored higher than a decoy
        let (b, d) = (search(&bo, &q).await, search(&bo, &decoy(&q)).await);
        assert_eq!(ids_of(&b), [nhs.as_str()], "{q}");
        assert_ne!(answer(&b), answer(&d), "{q}");
        // other roles: as if the record had never held it
        for api in &others {
            let (r, d) = (search(api, &q).await, search(api, &decoy(&q)).await);
            assert_eq!(answer(&r), answer(&d), "{q}");
            if !q.contains("postalcode") || !q.contains("_fuzzy") {
                assert!(ids_of(&r).is_empty(), "{q}: {}", r.body);
            }
        }
    }
    // the current values, which the back office lifted the flag on, are the record's
    let now = others[0].get_patient(&nhs).await;
    assert_eq!(now.body["address"][0]["postalCode"], "HX7 7ZZ");
    assert_eq!(
        ids_of(&search(&others[0], &format!("{base}&phone=07700900429")).await),
        [nhs.as_str()]
    );
    // and history shows nothing the record held while restricted
    for api in &others {
        let h = api.get(&format!("/Patient/{nhs}/_history")).await;
        assert_eq!(h.status, 200);
        assert_eq!(h.body["total"], 5);
        let text = h.body.to_string();
        for value in held {
            assert!(!text.contains(value), "{value} in the history");
        }
    }
    let text = bo
        .get(&format!("/Patient/{nhs}/_history"))
        .await
        .body
        .to_string();
    assert!(
        held.iter().all(|v| text.contains(v)),
        "the back office sees it all"
    );
}

async fn merge(bo: &Api, source: &str, target: &str, preview: bool) -> Reply {
    bo.operation(
        "$merge",
        json!([
            {"name": "source-patient-identifier", "valueIdentifier": ident(source)},
            {"name": "target-patient-identifier", "valueIdentifier": ident(target)},
            {"name": "preview", "valueBoolean": preview},
            {"name": "reason", "valueString": "duplicate"}]),
    )
    .await
}

async fn unmerge(bo: &Api, source: &str) -> Reply {
    bo.operation(
        "$unmerge",
        json!([
            {"name": "source-patient-identifier", "valueIdentifier": ident(source)},
            {"name": "reason", "valueString": "different people"}]),
    )
    .await
}

fn label_of(r: &Reply) -> String {
    r.body["meta"]["security"][0]["code"]
        .as_str()
        .unwrap_or("U")
        .to_string()
}

#[tokio::test]
async fn a_merge_survivor_is_as_restricted_as_the_stricter_record() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pds.redb");
    let n: Vec<String> = (0..4).map(|i| nhs_from(999_253_000, i)).collect();
    let postcodes: Vec<String> = (0..4).map(|i| format!("YO{} 1AA", i + 1)).collect();
    let phones: Vec<String> = (0..4).map(|i| format!("0770090043{i}")).collect();
    let emails: Vec<String> = (0..4).map(|i| format!("ada{i}@example.com")).collect();
    let person = |i: usize, code: &'static str, family: &'static str| {
        Person {
            nhs: &n[i],
            family,
            given: "Ada",
            birth: "1955-05-05",
            code,
            postcode: &postcodes[i],
            phone: &phones[i],
            email: &emails[i],
            gp: "Y43001",
        }
        .record()
    };
    import(
        &db,
        &[
            person(0, "R", "Hollins"),
            person(1, "U", "Hollins"),
            person(2, "V", "Merriman"),
            person(3, "R", "Merriman"),
        ],
    );
    let server = Server::start(&db, &[]);
    let (bo, hcw) = (server.api_as("back-office"), server.api());
    // the preview says what the merge will do to the label
    let p = merge(&bo, &n[0], &n[1], true).await;
    assert_eq!(p.status, 200, "{}", p.body);
    let said = p.body["parameter"][0]["resource"]["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(said.contains("would carry confidentiality R"), "{said}");
    assert_eq!(
        p.body["parameter"][1]["resource"]["meta"]["security"][0]["code"],
        "R"
    );
    assert_eq!(
        label_of(&bo.get_patient(&n[1]).await),
        "U",
        "a preview changes nothing"
    );

    let m = merge(&bo, &n[0], &n[1], false).await;
    assert_eq!(m.status, 200, "{}", m.body);
    // the restricted number now shows the survivor — redacted, like the survivor's own number
    for id in [&n[0], &n[1]] {
        let r = hcw.get_patient(id).await;
        assert_eq!(
            (r.status, r.body["id"].as_str()),
            (200, Some(n[1].as_str()))
        );
        assert_eq!(label_of(&r), "R");
        assert!(
            r.body.get("address").is_none() && r.body.get("telecom").is_none(),
            "{}",
            r.body
        );
    }
    let q = "family=Hollins&birthdate=1955-05-05&address-postalcode=YO2%201AA";
    assert!(
        ids_of(&search(&hcw, q).await).is_empty(),
        "the survivor is restricted now"
    );
    // the audit records it, against both records
    let audit = bo.get(&format!("/_audit?patient={}", n[1])).await;
    let entry = audit.body["entries"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(entry["operation"], "merge");
    assert_eq!(entry["related"], n[0].as_str());
    assert!(
        entry["patch"].to_string().contains("/meta/security"),
        "{entry}"
    );

    // unmerge: each record gets its own label back
    let u = unmerge(&bo, &n[0]).await;
    assert_eq!(u.status, 200, "{}", u.body);
    assert_eq!(label_of(&bo.get_patient(&n[1]).await), "U");
    assert_eq!(label_of(&bo.get_patient(&n[0]).await), "R");
    assert_eq!(
        hcw.get_patient(&n[1]).await.body["address"][0]["postalCode"],
        "YO2 1AA"
    );
    assert!(hcw.get_patient(&n[0]).await.body.get("address").is_none());

    // merged again, then flagged by the back office: the flag outlives the unmerge
    assert_eq!(merge(&bo, &n[0], &n[1], false).await.status, 200);
    let r = bo
        .patch_current_because(&n[1], flag("R"), "at risk in its own right")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(unmerge(&bo, &n[0]).await.status, 200);
    assert_eq!(label_of(&bo.get_patient(&n[1]).await), "R");

    // merged again and changed while restricted: the unmerge keeps the label, since what the
    // survivor took on while restricted would otherwise surface by itself
    let r = bo
        .patch_current_because(&n[1], flag("U"), "flag lifted")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(merge(&bo, &n[0], &n[1], false).await.status, 200);
    let moved = json!([{"op": "replace", "path": "/address/0/id", "value": "A1"},
        {"op": "replace", "path": "/address/0/postalCode", "value": "YO9 9RF"}]);
    let r = bo.patch_current(&n[1], moved).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(unmerge(&bo, &n[0]).await.status, 200);
    assert_eq!(label_of(&bo.get_patient(&n[1]).await), "R");
    assert!(!hcw
        .get_patient(&n[1])
        .await
        .body
        .to_string()
        .contains("YO9 9RF"));
    // an invalidated survivor stays invalidated through an unmerge
    let r = bo
        .patch_current_because(&n[1], flag("U"), "flag lifted")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(merge(&bo, &n[0], &n[1], false).await.status, 200);
    let r = bo
        .operation(
            "$invalidate",
            json!([{"name": "nhs-number", "valueIdentifier": ident(&n[1])},
                   {"name": "reason", "valueString": "created in error"}]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(unmerge(&bo, &n[0]).await.status, 200);
    hcw.get_patient(&n[1])
        .await
        .expect(404, "INVALIDATED_RESOURCE");

    // V over R
    assert_eq!(merge(&bo, &n[2], &n[3], false).await.status, 200);
    assert_eq!(label_of(&bo.get_patient(&n[3]).await), "V");
    assert_eq!(unmerge(&bo, &n[2]).await.status, 200);
    assert_eq!(label_of(&bo.get_patient(&n[3]).await), "R");
}

#[tokio::test]
async fn a_change_of_identity_keeps_the_label_and_new_numbers_are_not_in_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pds.redb");
    let old = nhs_from(999_254_000, 0);
    import(
        &db,
        &[Person {
            nhs: &old,
            family: "Thornbury",
            given: "Jess",
            birth: "1988-08-08",
            code: "R",
            postcode: "NE1 1AA",
            phone: "07700900441",
            email: "jess.t@example.com",
            gp: "Y44001",
        }
        .record()],
    );
    let server = Server::start(&db, &[]);
    let (bo, hcw) = (server.api_as("back-office"), server.api());
    let r = bo
        .operation(
            "$change-identity",
            json!([
                {"name": "nhs-number", "valueIdentifier": ident(&old)},
                {"name": "patient", "resource": {"resourceType": "Patient",
                    "name": [{"use": "usual", "family": "Ravensworth", "given": ["Jo"]}],
                    "gender": "unknown", "birthDate": "1988-08-08",
                    "address": [{"use": "home", "line": ["3 Far Lane"], "postalCode": "CA1 9ZZ"}]}},
                {"name": "reason", "valueString": "new identity"}]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let new = r.body["parameter"][1]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let shown = hcw.get_patient(&new).await;
    assert_eq!(label_of(&shown), "R", "{}", shown.body);
    assert!(shown.body.get("address").is_none());
    let found = search(
        &hcw,
        "family=Ravensworth&birthdate=1988-08-08&address-postalcode=CA1%209ZZ",
    )
    .await;
    assert!(
        ids_of(&found).is_empty(),
        "not findable by its new postcode"
    );

    // numbers handed out one after another are drawn at random: not in order, not adjacent
    let mut numbers = Vec::new();
    for i in 0..12 {
        let body = json!({"resourceType": "Patient",
            "name": [{"use": "usual", "family": format!("Seq{}", (b'a' + i as u8) as char), "given": ["Kim"]}],
            "gender": "male", "birthDate": format!("2001-02-{:02}", i + 1),
            "address": [{"use": "home", "period": {"start": "2020-01-01"}, "line": ["1 Test Road", "", "", "Leeds"], "postalCode": "LS1 1AA"}],
            "extension": [{"url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-RegisteringAuthority",
                "extension": [{"url": "registeringAuthorityType", "valueCodeableConcept": {"coding": [
                    {"system": "https://fhir.nhs.uk/CodeSystem/UKCore-RegisteringAuthorityType", "code": "x"}]}},
                    {"url": "organisationIdentifier", "valueString": "Y12345"}]}]});
        let r = hcw.post_with("/Patient", &body, &request_id()).await;
        assert_eq!(r.status, 201, "{}", r.body);
        numbers.push(r.body["id"].as_str().unwrap().parse::<u64>().unwrap() / 10);
    }
    assert!(
        numbers.windows(2).any(|w| w[0] > w[1]),
        "allocations come in increasing order: {numbers:?}"
    );
    // a sequential allocator puts all 11 pairs side by side; uniform draws from the 100,000
    // prefixes of the range put a pair within 100 of each other 0.2% of the time, two pairs
    // almost never
    let close = numbers
        .windows(2)
        .filter(|w| w[0].abs_diff(w[1]) <= 100)
        .count();
    assert!(close <= 1, "adjacent allocations: {numbers:?}");
}

#[tokio::test]
async fn error_texts_never_quote_what_the_caller_may_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pds.redb");
    let n: Vec<String> = (0..3).map(|i| nhs_from(999_255_000, i)).collect();
    let person = |i: usize, code: &'static str| {
        Person {
            nhs: &n[i],
            family: "Calloway",
            given: "Bea",
            birth: "1977-07-07",
            code,
            postcode: "CF10 1AA",
            phone: "07700900451",
            email: "bea.c@example.com",
            gp: "Y45001",
        }
        .record()
    };
    import(&db, &[person(0, "U"), person(1, "U"), person(2, "R")]);
    let server = Server::start(&db, &[]);
    let (bo, hcw) = (server.api_as("back-office"), server.api());
    assert_eq!(merge(&bo, &n[0], &n[1], false).await.status, 200);
    // the survivor carries merge links only the back office sees; a failed test of them must
    // not quote them, nor differ from a record that has none
    for path in ["/link", "/link/0/other/reference", "/active"] {
        let ops = json!([{"op": "test", "path": path, "value": "guess"}]);
        let on_survivor = hcw.patch_current(&n[1], ops.clone()).await;
        assert_eq!(on_survivor.status, 400, "{}", on_survivor.body);
        let text = on_survivor.body.to_string();
        assert!(
            !text.contains(&n[0]) && !text.contains("replaces"),
            "{text}"
        );
        let on_plain = hcw.patch_current(&n[2], ops.clone()).await;
        assert_eq!(
            on_plain.status, 403,
            "a restricted record: refused before any test"
        );
        assert!(!on_plain.body.to_string().contains("CF10"));
        // the back office may read the links, so its message may quote them
        let r = bo.patch_current(&n[1], ops).await;
        assert_eq!(r.status, 400);
    }
    let r = bo
        .patch_current(
            &n[1],
            json!([{"op": "test", "path": "/link/0/type", "value": "guess"}]),
        )
        .await;
    assert!(r.diagnostics().unwrap().contains("replaces"), "{}", r.body);
    // a failed test of a value the caller can read says what it is
    let r = hcw
        .patch_current(
            &n[1],
            json!([{"op": "test", "path": "/gender", "value": "male"}]),
        )
        .await;
    assert!(r.diagnostics().unwrap().contains("'female'"), "{}", r.body);
}

#[tokio::test]
async fn replays_show_the_record_as_the_caller_may_see_it_now() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pds.redb");
    let n: Vec<String> = (0..2).map(|i| nhs_from(999_256_000, i)).collect();
    let person = |i: usize| {
        Person {
            nhs: &n[i],
            family: "Penhallow",
            given: "Wyn",
            birth: "1944-04-04",
            code: "U",
            postcode: "PL1 1AA",
            phone: "07700900461",
            email: "wyn.p@example.com",
            gp: "Y46001",
        }
        .record()
    };
    import(&db, &[person(0), person(1)]);
    let server = Server::start(&db, &[]);
    let (bo, hcw) = (server.api_as("back-office"), server.api());
    let body =
        json!({"patches": [{"op": "replace", "path": "/gender", "value": "male"}]}).to_string();
    let rid = request_id();
    let send = |id: &str| {
        let path = format!("/Patient/{id}");
        let (hcw, body, rid) = (&hcw, body.clone(), rid.clone());
        async move {
            hcw.send(
                "PATCH",
                &path,
                &[
                    ("X-Request-ID", &rid),
                    ("If-Match", "W/\"1\""),
                    ("Content-Type", "application/json-patch+json"),
                ],
                Some(body),
            )
            .await
        }
    };
    let first = send(&n[0]).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["address"][0]["postalCode"], "PL1 1AA");
    // the record is flagged after the first answer: the retry gets the same change, redacted
    let r = bo.patch_current_because(&n[0], flag("R"), "at risk").await;
    assert_eq!(r.status, 200);
    let again = send(&n[0]).await;
    assert_eq!((again.status, again.header("etag")), (200, Some("W/\"2\"")));
    assert_eq!(again.body["gender"], "male");
    let text = again.body.to_string();
    for value in ["PL1 1AA", "07700900461", "wyn.p@", "Y46001"] {
        assert!(!text.contains(value), "{value} replayed: {text}");
    }
    assert_eq!(bo.get_patient(&n[0]).await.version(), 3, "applied once");
    // invalidated since: the retry is answered as a read would be
    let rid2 = request_id();
    let path = format!("/Patient/{}", n[1]);
    let headers = [
        ("X-Request-ID", rid2.as_str()),
        ("If-Match", "W/\"1\""),
        ("Content-Type", "application/json-patch+json"),
    ];
    assert_eq!(
        hcw.send("PATCH", &path, &headers, Some(body.clone()))
            .await
            .status,
        200
    );
    let r = bo
        .operation(
            "$invalidate",
            json!([{"name": "nhs-number", "valueIdentifier": ident(&n[1])},
                   {"name": "reason", "valueString": "created in error"}]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    hcw.send("PATCH", &path, &headers, Some(body))
        .await
        .expect(404, "INVALIDATED_RESOURCE");
}

#[tokio::test]
async fn the_restricted_view_hides_contact_preferences_and_removal_from_registration() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pds.redb");
    let nhs = nhs_from(999_257_000, 0);
    let mut record = Person {
        nhs: &nhs,
        family: "Garside",
        given: "Nell",
        birth: "1961-01-01",
        code: "R",
        postcode: "M1 1AA",
        phone: "07700900471",
        email: "nell.g@example.com",
        gp: "Y47001",
    }
    .record();
    record["extension"] = json!([
        {"url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSCommunication", "extension": [
            {"url": "language", "valueCodeableConcept": {"coding": [{"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-HumanLanguage", "code": "cy", "display": "Welsh"}]}},
            {"url": "interpreterRequired", "valueBoolean": true}]},
        {"url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-ContactPreference", "extension": [
            {"url": "PreferredContactMethod", "valueCodeableConcept": {"coding": [{"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-PreferredContactMethod", "code": "2", "display": "Visit"}]}},
            {"url": "PreferredContactTimes", "valueString": "At the shelter after 6pm"}]},
        {"url": "https://fhir.nhs.uk/StructureDefinition/Extension-PDS-RemovalFromRegistration", "extension": [
            {"url": "removalFromRegistrationCode", "valueCodeableConcept": {"coding": [{"system": "https://fhir.nhs.uk/CodeSystem/PDS-RemovalReasonExitCode", "code": "SCT", "display": "Transferred to Scotland"}]}},
            {"url": "effectiveTime", "valuePeriod": {"start": "2024-01-01T00:00:00+00:00"}}]}]);
    import(&db, &[record]);
    let server = Server::start(&db, &[]);
    let r = server.api().get_patient(&nhs).await;
    let text = r.body.to_string();
    for hidden in [
        "shelter",
        "Visit",
        "Scotland",
        "SCT",
        "ContactPreference",
        "RemovalFromRegistration",
    ] {
        assert!(!text.contains(hidden), "{hidden}: {text}");
    }
    assert!(text.contains("Welsh"), "communication needs stay: {text}");
    let full = server.api_as("back-office").get_patient(&nhs).await;
    assert!(full.body.to_string().contains("shelter"));
}

// ---------------------------------------------------------------------------------------------
// Random sequences

/// Locating values, each unique for the whole run, so that a value is only ever held by one
/// record and a search on it can only match (or score on) that record.
#[derive(Default)]
struct Values(usize);

impl Values {
    fn next(&mut self) -> usize {
        self.0 += 1;
        assert!(self.0 < 900, "the value space is bounded");
        self.0
    }
    fn postcode(&mut self) -> String {
        let c = self.next();
        let letter = |n: usize| (b'A' + (n % 26) as u8) as char;
        format!(
            "PE{} {}{}{}",
            1 + c % 9,
            c / 9 % 10,
            letter(c / 90),
            letter(c)
        )
    }
    fn phone(&mut self) -> String {
        format!("07700900{:03}", self.next())
    }
    fn email(&mut self) -> String {
        format!("pellow{}@example.com", self.next())
    }
    fn gp(&mut self) -> String {
        format!("Y{:05}", 50_000 + self.next())
    }
    fn line(&mut self) -> String {
        format!("No {} Pellow Street", self.next())
    }
}

/// The search parameter a value belongs to, and a value of the same kind nobody ever holds (a
/// postcode keeps its outward code, which fuzzy search gives part marks for).
fn kind_and_decoy(v: &str) -> Option<(&'static str, String)> {
    if v.starts_with("PE") {
        let outward = v.split(' ').next().unwrap();
        Some(("address-postalcode", format!("{outward} 9ZZ")))
    } else if v.starts_with("07700900") {
        Some(("phone", "07700900999".into()))
    } else if v.starts_with("pellow") {
        Some(("email", "pellow-decoy@example.com".into()))
    } else if v.starts_with('Y') {
        Some(("general-practitioner", "Y99999".into()))
    } else {
        None // an address line: not searchable, only looked for in responses
    }
}

/// What the test knows of one NHS number, refreshed from the back office's view of its history.
struct Known {
    nhs: String,
    given: String,
    /// Every locating value some restricted version of it held.
    held_while_restricted: std::collections::HashSet<String>,
    current: Vec<String>,
    label: String,
    /// Neither superseded nor invalidated.
    live: bool,
}

fn locating_values(doc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for a in doc["address"].as_array().into_iter().flatten() {
        out.extend(a["postalCode"].as_str().map(str::to_string));
        for l in a["line"].as_array().into_iter().flatten() {
            out.extend(l.as_str().map(str::to_string));
        }
    }
    for t in doc["telecom"].as_array().into_iter().flatten() {
        out.extend(t["value"].as_str().map(str::to_string));
    }
    for g in doc["generalPractitioner"].as_array().into_iter().flatten() {
        out.extend(g["identifier"]["value"].as_str().map(str::to_string));
    }
    out
}

async fn refresh(bo: &Api, k: &mut Known) {
    let h = bo.get(&format!("/Patient/{}/_history", k.nhs)).await;
    assert_eq!(h.status, 200, "{}", h.body);
    let versions: Vec<&Value> = h.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .collect();
    for v in &versions {
        if matches!(v["meta"]["security"][0]["code"].as_str(), Some("R" | "V")) {
            k.held_while_restricted.extend(locating_values(v));
        }
    }
    let now = versions[0];
    k.current = locating_values(now);
    k.label = now["meta"]["security"][0]["code"]
        .as_str()
        .unwrap_or("U")
        .to_string();
    k.live = now.get("active") != Some(&Value::Bool(false)) && k.label != "REDACTED";
}

/// The values no role but the back office may meet: held while restricted, unless the record
/// is live, unrestricted now and holds the value now (the back office lifted the flag on it).
fn secrets(known: &[Known]) -> Vec<String> {
    let mut out: Vec<String> = known
        .iter()
        .flat_map(|k| {
            k.held_while_restricted
                .iter()
                .filter(move |v| !(k.live && k.label == "U" && k.current.contains(v)))
                .cloned()
        })
        .collect();
    out.sort();
    out
}

fn assert_hides(reply: &Reply, secrets: &[String], what: &str, trace: &[String]) {
    let text = shown(reply);
    for s in secrets {
        assert!(
            !text.contains(s.as_str()),
            "{what} showed {s}, held while restricted\nlast steps: {trace:#?}\n{text}"
        );
    }
    assert!(reply.status < 500, "{what}: {}", reply.body);
}

/// One random run: back-office corrections and healthcare-worker changes interleaved with
/// reads, searches, history and replays by every other role, each answer checked.
async fn random_run(seed: u64, steps: usize) {
    let mut rng = Rng(seed);
    let mut values = Values::default();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pds.redb");
    let givens = ["Ann", "Bea", "Cat", "Dot", "Eve", "Fay", "Gwen", "Hal"];
    let mut records = Vec::new();
    for (i, given) in givens.iter().enumerate() {
        let nhs = nhs_from(999_260_000 + seed % 1000 * 100, i);
        let code = ["U", "U", "R", "V"][rng.below(4)];
        records.push(json!({"resourceType": "Patient", "id": nhs, "identifier": [ident(&nhs)],
            "meta": {"versionId": "1", "security": [{"system": CONFIDENTIALITY, "code": code}]},
            "name": [{"id": "N1", "use": "usual", "family": "Pellow", "given": [given]}],
            "gender": "female", "birthDate": format!("1970-0{}-0{}", 1 + i % 9, 1 + i % 9),
            "address": [{"id": "A1", "use": "home", "line": [values.line()], "postalCode": values.postcode()}],
            "telecom": [{"id": "T1", "system": "phone", "use": "mobile", "value": values.phone()},
                        {"id": "T2", "system": "email", "use": "home", "value": values.email()}],
            "generalPractitioner": [{"id": "G1", "type": "Organization",
                "identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": values.gp()}}]}));
    }
    import(&db, &records);
    let server = Server::start(&db, &[]);
    let bo = server.api_as("back-office");
    let others = [
        server.api(),
        server.api_as("healthcare-worker"),
        server.api_as("application-restricted"),
    ];
    let mut known: Vec<Known> = records
        .iter()
        .map(|r| Known {
            nhs: r["id"].as_str().unwrap().to_string(),
            given: r["name"][0]["given"][0].as_str().unwrap().to_string(),
            held_while_restricted: Default::default(),
            current: Vec::new(),
            label: String::new(),
            live: true,
        })
        .collect();
    for k in known.iter_mut() {
        refresh(&bo, k).await;
    }
    // PATCHes a healthcare worker made, to be sent again later
    let mut sent: Vec<(String, String, String, String)> = Vec::new();
    let mut trace: Vec<String> = Vec::new();
    // how many of each check ran with something to hide, so the run cannot pass vacuously
    let (mut compared, mut replayed, mut looked) = (0, 0, 0);
    let range = "birthdate=ge1970-01-01&birthdate=le1970-12-31";
    for step in 0..steps {
        let live: Vec<String> = known
            .iter()
            .filter(|k| k.live)
            .map(|k| k.nhs.clone())
            .collect();
        let any: Vec<String> = known.iter().map(|k| k.nhs.clone()).collect();
        let api = &others[rng.below(others.len())];
        let action = rng.below(14);
        let Some(id) = rng.pick(&live).cloned() else {
            break;
        };
        trace.push(format!("{step}: action {action} on {id}"));
        if trace.len() > 12 {
            trace.remove(0);
        }
        let bo_doc = || async {
            bo.get(&format!("/Patient/{id}/_history")).await.body["entry"][0]["resource"].clone()
        };
        let mut changed = true;
        match action {
            0 => {
                let code = ["U", "R", "V"][rng.below(3)];
                let _ = bo
                    .patch_current_because(&id, flag(code), "random flag")
                    .await;
            }
            1 => {
                let doc = bo_doc().await;
                if let Some(aid) = doc["address"][0]["id"].as_str() {
                    let ops = json!([{"op": "replace", "path": "/address/0/id", "value": aid},
                        {"op": "replace", "path": "/address/0/postalCode", "value": values.postcode()},
                        {"op": "replace", "path": "/address/0/line", "value": [values.line()]}]);
                    let _ = bo.patch_current_because(&id, ops, "moved").await;
                }
            }
            2 => {
                let doc = bo_doc().await;
                let mut ops = Vec::new();
                for (i, t) in doc["telecom"].as_array().into_iter().flatten().enumerate() {
                    let new = if t["system"] == "email" {
                        values.email()
                    } else {
                        values.phone()
                    };
                    ops.push(json!({"op": "replace", "path": format!("/telecom/{i}/id"), "value": t["id"]}));
                    ops.push(json!({"op": "replace", "path": format!("/telecom/{i}/value"), "value": new}));
                }
                if !ops.is_empty() {
                    let _ = bo
                        .patch_current_because(&id, Value::Array(ops), "new numbers")
                        .await;
                }
            }
            3 => {
                let doc = bo_doc().await;
                if let Some(gid) = doc["generalPractitioner"][0]["id"].as_str() {
                    let ops = json!([{"op": "replace", "path": "/generalPractitioner/0/id", "value": gid},
                        {"op": "replace", "path": "/generalPractitioner/0/identifier/value", "value": values.gp()}]);
                    let _ = bo.patch_current_because(&id, ops, "new practice").await;
                }
            }
            4 => {
                // a healthcare worker's change, remembered for a retry later
                let now = api.get_patient(&id).await;
                if let (Some(etag), Some(g)) = (now.header("etag"), now.body["gender"].as_str()) {
                    let other = if g == "female" { "male" } else { "female" };
                    let body =
                        json!({"patches": [{"op": "replace", "path": "/gender", "value": other}]})
                            .to_string();
                    let rid = request_id();
                    let headers = [
                        ("X-Request-ID", rid.as_str()),
                        ("If-Match", etag),
                        ("Content-Type", "application/json-patch+json"),
                    ];
                    let r = api
                        .send(
                            "PATCH",
                            &format!("/Patient/{id}"),
                            &headers,
                            Some(body.clone()),
                        )
                        .await;
                    assert_hides(&r, &secrets(&known), "a PATCH", &trace);
                    sent.push((rid, id.clone(), etag.to_string(), body));
                }
            }
            5 => {
                if let Some(target) = rng.pick(&live).cloned() {
                    let _ = merge(&bo, &id, &target, false).await;
                }
            }
            6 => {
                let superseded: Vec<String> = known
                    .iter()
                    .filter(|k| !k.live && k.label != "REDACTED")
                    .map(|k| k.nhs.clone())
                    .collect();
                if let Some(s) = rng.pick(&superseded) {
                    let _ = unmerge(&bo, s).await;
                }
            }
            7 => {
                let r = bo
                    .operation("$change-identity", json!([
                        {"name": "nhs-number", "valueIdentifier": ident(&id)},
                        {"name": "patient", "resource": {"resourceType": "Patient",
                            "name": [{"use": "usual", "family": "Pellow", "given": ["Ivo"]}],
                            "gender": "female", "birthDate": "1970-06-06",
                            "address": [{"use": "home", "line": [values.line()], "postalCode": values.postcode()}],
                            "telecom": [{"system": "phone", "use": "mobile", "value": values.phone()}]}},
                        {"name": "reason", "valueString": "new identity"}]))
                    .await;
                if let Some(new) = r.body["parameter"][1]["resource"]["id"].as_str() {
                    known.push(Known {
                        nhs: new.to_string(),
                        given: "Ivo".into(),
                        held_while_restricted: Default::default(),
                        current: Vec::new(),
                        label: String::new(),
                        live: true,
                    });
                }
            }
            _ => changed = false,
        }
        if changed {
            for k in known.iter_mut() {
                refresh(&bo, k).await;
            }
        }
        let secret = secrets(&known);
        if !secret.is_empty() {
            looked += 1;
        }
        // then someone else looks, one way or another
        let target = rng.pick(&any).unwrap().clone();
        let look = rng.below(6);
        match look {
            0 => assert_hides(&api.get_patient(&target).await, &secret, "a GET", &trace),
            1 => assert_hides(
                &api.get(&format!("/Patient/{target}/_history")).await,
                &secret,
                "history",
                &trace,
            ),
            2 => {
                if let Some((rid, id, etag, body)) = rng.pick(&sent).cloned() {
                    let headers = [
                        ("X-Request-ID", rid.as_str()),
                        ("If-Match", etag.as_str()),
                        ("Content-Type", "application/json-patch+json"),
                    ];
                    let r = api
                        .send("PATCH", &format!("/Patient/{id}"), &headers, Some(body))
                        .await;
                    assert_hides(&r, &secret, "a replay", &trace);
                    replayed += 1;
                }
            }
            3 => {
                let q = if rng.below(2) == 0 {
                    format!("family=Pellow&{range}")
                } else {
                    format!("family=Pe*&{range}&_history=true")
                };
                let r = api.get(&format!("/Patient?{q}&_max-results=50")).await;
                assert_hides(&r, &secret, &q, &trace);
            }
            _ => {
                // a search on a secret value must answer exactly as one on a value nobody holds
                let Some(v) = rng.pick(&secret).cloned() else {
                    continue;
                };
                let Some((param, decoy)) = kind_and_decoy(&v) else {
                    continue;
                };
                let holder = known
                    .iter()
                    .find(|k| k.held_while_restricted.contains(&v))
                    .map(|k| k.given.clone())
                    .unwrap_or_default();
                let enc = |s: &str| s.replace(' ', "%20");
                let forms = [
                    format!("family=Pellow&{range}&{param}="),
                    format!("family=Pe*&{range}&_history=true&{param}="),
                    if param == "address-postalcode" {
                        format!("_fuzzy-match=true&family=Pellow&gender=female&{range}&{param}=")
                    } else {
                        format!("_fuzzy-match=true&family=Pellow&given={holder}&{range}&{param}=")
                    },
                ];
                let form = &forms[rng.below(forms.len())];
                let (q, d) = (
                    format!("{form}{}", enc(&v)),
                    format!("{form}{}", enc(&decoy)),
                );
                let (r, e) = (
                    api.get(&format!("/Patient?{q}")).await,
                    api.get(&format!("/Patient?{d}")).await,
                );
                assert_hides(&r, &secret, &q, &trace);
                assert_eq!(
                    answer(&r),
                    answer(&e),
                    "{q} answered differently from {d}\nlast steps: {trace:#?}"
                );
                compared += 1;
            }
        }
    }
    assert!(
        looked > steps / 2 && compared > steps / 20 && replayed > 0,
        "seed {seed:#x}: too few checks with something to hide ({looked} looks, {compared} searches, {replayed} replays)"
    );
}

#[tokio::test]
async fn restricted_values_never_reach_other_roles_through_random_sequences() {
    let long = std::env::var("PDS_LONG_TESTS").is_ok_and(|v| v == "1");
    let (seeds, steps) = if long { (10, 300) } else { (2, 80) };
    for seed in 0..seeds {
        random_run(0x5EED_0000 + seed, steps).await;
    }
}
