//! Identity management: allocation with the duplicate check, change of identity (sealed),
//! invalidate / revalidate, GP corrections.

use serde_json::{json, Value};

use crate::helpers::*;

async fn create_with(api: &Api, body: &Value, rid: &str) -> Reply {
    api.send(
        "POST",
        "/Patient",
        &[
            ("X-Request-ID", rid),
            ("Content-Type", "application/fhir+json"),
        ],
        Some(body.to_string()),
    )
    .await
}

async fn create(api: &Api, body: &Value) -> Reply {
    create_with(api, body, &request_id()).await
}

fn ident(n: &str) -> Value {
    json!({"system": "https://fhir.nhs.uk/Id/nhs-number", "value": n})
}

async fn operation(api: &Api, name: &str, params: Value) -> Reply {
    let rid = request_id();
    let body = json!({"resourceType": "Parameters", "parameter": params});
    api.send(
        "POST",
        &format!("/Patient/{name}"),
        &[
            ("X-Request-ID", &rid),
            ("Content-Type", "application/fhir+json"),
        ],
        Some(body.to_string()),
    )
    .await
}

fn in_range(n: &str) -> bool {
    n.starts_with("9993") && pds_facade::domain::NhsNumber::parse(n).is_ok()
}

#[tokio::test]
async fn allocate_then_single_match() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let api = server.api();
    let body = new_patient("Imogen", "Hartley", "2026-11-20");
    let r = create(&api, &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let nhs = r.body["id"].as_str().unwrap().to_string();
    assert!(in_range(&nhs), "{nhs}");
    assert_eq!(r.body["identifier"][0]["value"], nhs.as_str());
    assert_eq!(r.header("etag"), Some("W/\"1\""));
    assert_eq!(
        r.header("location"),
        Some(
            format!(
                "{}/personal-demographics/FHIR/R4/Patient/{nhs}",
                server.base
            )
            .as_str()
        )
    );
    assert!(r.body["name"][0]["id"].is_string());
    let got = api.get_patient(&nhs).await;
    assert_eq!(
        (got.status, got.body["name"][0]["family"].as_str()),
        (200, Some("Hartley"))
    );

    // the same patient again, even spelt a little differently: a likely duplicate
    for again in [
        body.clone(),
        new_patient("Imogene", "Hartley", "2026-11-20"),
    ] {
        let r = create(&api, &again).await;
        assert_eq!(r.status, 200);
        r.expect(200, "SINGLE_MATCH");
        assert!(r.diagnostics().unwrap().contains(&nhs), "{}", r.body);
        assert_eq!(r.body["issue"][0]["severity"], "error");
    }
    // someone else born the same day is not
    let other = create(&api, &new_patient("Beatrice", "Okonjo", "2026-11-20")).await;
    assert_eq!(other.status, 201, "{}", other.body);
    assert_ne!(other.body["id"], nhs.as_str());
}

#[tokio::test]
async fn multiple_matches() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pds.redb");
    let twin = |id: &str| {
        let mut p = new_patient("Harriet", "Quarmby", "1999-03-03");
        p.as_object_mut().unwrap().remove("extension"); // a stored record, not a create request
        p["id"] = json!(id);
        p["identifier"] = json!([ident(id)]);
        p
    };
    let file = dir.path().join("dups.ndjson");
    std::fs::write(
        &file,
        format!("{}\n{}\n", twin("9000000009"), twin("9000000017")),
    )
    .unwrap();
    assert!(std::process::Command::new(BIN)
        .arg("import")
        .args(store_of(&db))
        .arg(&file)
        .status()
        .unwrap()
        .success());
    let server = Server::start(&db, &[]);
    create(
        &server.api(),
        &new_patient("Harriet", "Quarmby", "1999-03-03"),
    )
    .await
    .expect(200, "MULTIPLE_MATCHES");
}

#[tokio::test]
async fn allocation_is_unique_durable_idempotent_and_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let api = server.api();
    // a retry with the same X-Request-ID returns the first answer and allocates nothing
    let body = new_patient("Orla", "Fenwick-Hart", "2020-02-02");
    let rid = request_id();
    let first = create_with(&api, &body, &rid).await;
    let again = create_with(&api, &body, &rid).await;
    assert_eq!((first.status, again.status), (201, 201));
    assert_eq!(first.body, again.body);
    assert_eq!(again.header("location"), first.header("location"));
    let a = first.body["id"].as_str().unwrap().to_string();

    // 50 concurrent creates of different patients: 50 different valid numbers
    let mut tasks = Vec::new();
    for i in 0..50 {
        let api = server.api();
        tasks.push(tokio::spawn(async move {
            let given = ["Ada", "Bea", "Cai", "Dov", "Eli"][i % 5];
            create(
                &api,
                &new_patient(
                    given,
                    &format!("Concurrent{}", (b'a' + i as u8 / 5) as char),
                    &format!("2001-01-{:02}", 1 + i % 28),
                ),
            )
            .await
        }));
    }
    let mut numbers = std::collections::HashSet::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 201, "{}", r.body);
        let n = r.body["id"].as_str().unwrap().to_string();
        assert!(in_range(&n));
        assert!(numbers.insert(n));
    }
    assert_eq!(numbers.len(), 50);
    assert!(
        !numbers.contains(&a),
        "the retried create allocated nothing new"
    );

    // invalidating a number does not free it, nor does a restart
    let bo = server.api_as("back-office");
    let r = operation(&bo, "$invalidate", json!([{"name": "nhs-number", "valueIdentifier": ident(&a)}, {"name": "reason", "valueString": "test"}])).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let db = server.db.clone();
    server.stop();
    let server = Server::start(&db, &[]);
    let r = create(
        &server.api(),
        &new_patient("Piers", "Ollerenshaw", "2019-09-09"),
    )
    .await;
    let b = r.body["id"].as_str().unwrap().to_string();
    assert!(!numbers.contains(&b) && b != a, "{b} was allocated before");
}

#[tokio::test]
async fn create_validation_and_roles() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let api = server.api();
    let mut no_gender = new_patient("Ada", "Lovell", "2020-01-01");
    no_gender.as_object_mut().unwrap().remove("gender");
    create(&api, &no_gender)
        .await
        .expect(400, "MISSING_VALUE")
        .expect_diagnostics("Missing value - 'gender'");
    let mut with_id = new_patient("Ada", "Lovell", "2020-01-01");
    with_id["id"] = json!("9000000009");
    create(&api, &with_id)
        .await
        .expect(400, "ADDITIONAL_PROPERTIES");
    let mut bad = new_patient("Ada", "Lovell", "2020-01-01");
    bad["gender"] = json!("mal");
    create(&api, &bad).await.expect(400, "INVALID_VALUE");
    let mut future = new_patient("Ada", "Lovell", "2099-01-01");
    future["birthDate"] = json!("2099-01-01");
    create(&api, &future).await.expect(400, "INVALID_VALUE");
    let mut gp = new_patient("Ada", "Lovell", "2020-01-01");
    gp["generalPractitioner"] = json!([{"type": "Organization", "identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "Y12345"}}]);
    create(&api, &gp).await.expect(403, "FORBIDDEN_UPDATE");
    let rid = request_id();
    api.send(
        "POST",
        "/Patient",
        &[("X-Request-ID", &rid), ("Content-Type", "text/plain")],
        Some("{}".into()),
    )
    .await
    .expect(400, "UNSUPPORTED_SERVICE");
    create(
        &server.api_as("application-restricted"),
        &new_patient("Ada", "Lovell", "2020-01-01"),
    )
    .await
    .expect(403, "INVALID_METHOD");
    // the back office may register the GP
    let r = create(&server.api_as("back-office"), &gp).await;
    assert_eq!(r.status, 201, "{}", r.body);
}

#[tokio::test]
async fn change_of_identity_is_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let (bo, hcw) = (server.api_as("back-office"), server.api());
    let old = pds_facade::demo::nhs_numbers()[12].to_string();
    let old_record = hcw.get_patient(&old).await.body;
    let (family, birth) = (
        old_record["name"][0]["family"]
            .as_str()
            .unwrap()
            .to_string(),
        old_record["birthDate"].as_str().unwrap().to_string(),
    );
    let new_identity = json!({"resourceType": "Patient", "name": [{"use": "usual", "given": ["Morgan"], "family": "Ashdown"}],
        "gender": "unknown", "birthDate": birth, "address": [{"use": "home", "line": ["7 Elm Row", "Bath"], "postalCode": "BA1 1AA"}]});
    let r = operation(
        &bo,
        "$change-identity",
        json!([{"name": "nhs-number", "valueIdentifier": ident(&old)},
        {"name": "patient", "resource": new_identity}]),
    )
    .await;
    r.expect(400, "MISSING_VALUE")
        .expect_diagnostics("Missing value - 'reason'");
    let r = operation(&bo, "$change-identity", json!([{"name": "nhs-number", "valueIdentifier": ident(&old)},
        {"name": "patient", "resource": new_identity}, {"name": "reason", "valueString": "gender re-assignment"}])).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let new = r.body["parameter"][1]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(in_range(&new));

    // a healthcare worker can find no trace of the old number anywhere
    let mut seen = Vec::new();
    seen.push(hcw.get_patient(&old).await);
    seen.push(hcw.get(&format!("/Patient/{old}/_history")).await);
    seen.push(
        hcw.patch(
            &old,
            1,
            json!({"patches": [{"op": "replace", "path": "/gender", "value": "male"}]}),
        )
        .await,
    );
    seen.push(hcw.get_patient(&new).await);
    seen.push(hcw.get(&format!("/Patient/{new}/_history")).await);
    seen.push(
        hcw.get(&format!("/Patient?family=Ashdown&birthdate={birth}"))
            .await,
    );
    seen.push(
        hcw.get(&format!("/Patient?family={family}&birthdate={birth}"))
            .await,
    );
    seen.push(
        hcw.get(&format!(
            "/Patient?_fuzzy-match=true&family=Ashdown&given=Morgan&birthdate={birth}"
        ))
        .await,
    );
    seen.push(
        hcw.get(&format!(
            "/Patient?family={family}&birthdate={birth}&_history=true"
        ))
        .await,
    );
    seen.push(
        hcw.get(&format!(
            "/Patient?family=Ashdown&birthdate={birth}&_history=true"
        ))
        .await,
    );
    assert_eq!(seen[0].code(), "INVALIDATED_RESOURCE");
    assert_eq!(seen[0].status, 404);
    assert_eq!(seen[0].diagnostics(), None);
    assert_eq!(seen[1].code(), "INVALIDATED_RESOURCE");
    assert_eq!(
        (seen[2].status, seen[2].code()),
        (404, "INVALIDATED_RESOURCE")
    );
    assert_eq!(seen[3].status, 200);
    assert_eq!(seen[5].body["total"], 1);
    assert_eq!(
        seen[6].body["total"], 0,
        "the old record is never in search results"
    );
    for (i, r) in seen.iter().enumerate() {
        let text = shown(r);
        assert!(
            !text.contains(&old),
            "response {i} connects the identities: {text}"
        );
        assert!(
            !text.contains(&family),
            "response {i} carries the old name: {text}"
        );
    }
    // the back office sees the sealed link
    let entries = bo.get(&format!("/_audit?patient={old}")).await.body["entries"]
        .as_array()
        .unwrap()
        .clone();
    let last = entries.last().unwrap();
    assert_eq!(
        (
            last["operation"].as_str(),
            last["related"].as_str(),
            last["reason"].as_str()
        ),
        (
            Some("change-identity"),
            Some(new.as_str()),
            Some("gender re-assignment")
        )
    );
    let entries = bo.get(&format!("/_audit?patient={new}")).await.body["entries"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(entries[0]["related"], old.as_str());
    assert_eq!(
        bo.get_patient(&old).await.body["meta"]["security"][0]["code"],
        "REDACTED"
    );
}

#[tokio::test]
async fn invalidate_and_revalidate() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let (bo, hcw) = (server.api_as("back-office"), server.api());
    let params = |id: &str, reason: Option<&str>| {
        let mut p = vec![json!({"name": "nhs-number", "valueIdentifier": ident(id)})];
        if let Some(r) = reason {
            p.push(json!({"name": "reason", "valueString": r}));
        }
        Value::Array(p)
    };
    operation(&bo, "$invalidate", params(RESTRICTED, None))
        .await
        .expect(400, "MISSING_VALUE");
    operation(&hcw, "$invalidate", params(RESTRICTED, Some("x")))
        .await
        .expect(403, "ACCESS_DENIED");
    let r = operation(
        &bo,
        "$invalidate",
        params(RESTRICTED, Some("created in error")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    for api in [&hcw, &server.api_as("application-restricted")] {
        api.get_patient(RESTRICTED)
            .await
            .expect(404, "INVALIDATED_RESOURCE");
        assert_eq!(
            api.get("/Patient?family=Tregarthen&birthdate=1988-11-23")
                .await
                .body["total"],
            0
        );
    }
    assert_eq!(
        bo.get_patient(RESTRICTED).await.status,
        200,
        "the back office still sees it"
    );
    assert_eq!(
        bo.get("/Patient?family=Tregarthen&birthdate=1988-11-23")
            .await
            .body["total"],
        0,
        "never in search results"
    );
    for api in [&hcw, &bo] {
        api.patch(
            RESTRICTED,
            2,
            json!({"patches": [{"op": "replace", "path": "/gender", "value": "unknown"}]}),
        )
        .await
        .expect(404, "INVALIDATED_RESOURCE");
    }
    operation(&bo, "$invalidate", params(RESTRICTED, Some("again")))
        .await
        .expect(400, "INVALID_UPDATE");
    let r = operation(
        &bo,
        "$revalidate",
        params(RESTRICTED, Some("was right after all")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let back = hcw.get_patient(RESTRICTED).await;
    assert_eq!((back.status, back.header("etag")), (200, Some("W/\"3\"")));
    assert_eq!(
        back.body["meta"]["security"][0]["code"], "R",
        "its confidentiality is restored"
    );
    assert!(
        back.body.get("address").is_none(),
        "and so is its redaction"
    );
    let ops: Vec<String> = bo.get(&format!("/_audit?patient={RESTRICTED}")).await.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["operation"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ops, ["invalidate", "revalidate"]);
    assert_eq!(
        bo.get(&format!("/Patient/{RESTRICTED}/_history"))
            .await
            .body["total"],
        3
    );
}

#[tokio::test]
async fn gp_registration_is_corrected_by_the_back_office() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let (bo, hcw) = (server.api_as("back-office"), server.api());
    let id = HOME_AND_TEMP;
    let replace = |code: &str| {
        json!({"patches": [{"op": "test", "path": "/generalPractitioner/0/id", "value": "GPY04680"},
        {"op": "replace", "path": "/generalPractitioner/0/identifier/value", "value": code}]})
    };
    hcw.patch(id, 1, replace("Y99999"))
        .await
        .expect(403, "FORBIDDEN_UPDATE")
        .expect_diagnostics(
            "Forbidden update with error - source not permitted to update 'generalPractitioner'",
        );
    hcw.patch(id, 1, json!({"patches": [{"op": "test", "path": "/generalPractitioner/0/id", "value": "GPY04680"}, {"op": "remove", "path": "/generalPractitioner/0"}]}))
        .await
        .expect(403, "FORBIDDEN_UPDATE")
        .expect_diagnostics("Forbidden update with error - source not permitted to remove 'generalPractitioner'");
    bo.patch(id, 1, replace("y9"))
        .await
        .expect(400, "INVALID_VALUE");
    let r = bo.patch(id, 1, replace("Y99999")).await;
    assert_eq!(
        (
            r.status,
            r.body["generalPractitioner"][0]["identifier"]["value"].as_str()
        ),
        (200, Some("Y99999")),
        "{}",
        r.body
    );
    let ops: Vec<String> = bo.get(&format!("/_audit?patient={id}")).await.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["operation"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ops, ["patch"]);
    assert_eq!(
        bo.get(&format!("/Patient/{id}/_history/1")).await.body["generalPractitioner"][0]
            ["identifier"]["value"],
        "Y04680"
    );
}

/// PDS's create request as its specification documents it (our own patient): a usual name with
/// a title and a period, a home address with a period and a UPRN address key, a telecom with a
/// period, and the registering authority extension PDS requires.
fn pds_create_request() -> Value {
    json!({
        "name": [{"use": "usual", "given": ["Edith"], "family": "Blackwood", "prefix": ["Mrs"],
                  "period": {"start": "1986-07-01"}}],
        "address": [{"line": ["7 Alder Court", "Boar Lane", "City Centre", "Leeds", "West Yorkshire"],
                     "period": {"start": "2020-01-01"}, "postalCode": "LS1 6AE", "use": "home",
                     "extension": [{"extension": [
                         {"url": "type", "valueCoding": {"code": "UPRN", "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-AddressKeyType"}},
                         {"url": "value", "valueString": "100023336956"}],
                         "url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-AddressKey"}]}],
        "gender": "female",
        "birthDate": "1982-07-10",
        "telecom": [{"use": "home", "system": "phone", "value": "01632960123",
                     "period": {"start": "2020-01-02", "end": "2021-01-02"}}],
        "extension": [registering_authority()],
        "resourceType": "Patient"
    })
}

#[tokio::test]
async fn create_takes_the_request_pds_documents() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let api = server.api();
    let r = create(&api, &pds_create_request()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    // the registering authority says who registers the patient: checked, not stored
    assert!(r.body.get("extension").is_none(), "{}", r.body);
    assert_eq!(r.body["address"][0]["postalCode"], "LS1 6AE");
    // without it, refused as PDS refuses it: the extension is missing
    let mut without = pds_create_request();
    without.as_object_mut().unwrap().remove("extension");
    create(&api, &without)
        .await
        .expect(400, "MISSING_VALUE")
        .expect_diagnostics("Missing value - 'extension'");
    let mut other = pds_create_request();
    other["extension"] = json!([{"url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSCommunication",
        "extension": [{"url": "language", "valueCodeableConcept": {"coding": [{"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-HumanLanguage", "code": "fr"}]}}]}]);
    create(&api, &other).await.expect(400, "MISSING_VALUE");
    let mut bad = pds_create_request();
    bad["extension"][0]["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] = json!("zz");
    create(&api, &bad).await.expect(400, "INVALID_VALUE");
    // an unknown property is ADDITIONAL_PROPERTIES (PDS's own example: 'pets')
    let mut pets = pds_create_request();
    pets["pets"] = json!("cat");
    create(&api, &pets)
        .await
        .expect(400, "ADDITIONAL_PROPERTIES")
        .expect_diagnostics(
            "Invalid request with error - Additional properties are not allowed ('pets' was unexpected)",
        );
    let mut nested = pds_create_request();
    nested["name"][0]["pets"] = json!("cat");
    create(&api, &nested)
        .await
        .expect(400, "ADDITIONAL_PROPERTIES");
    // missing fields come in PDS's order (its create tests): name, address, gender, birthDate,
    // then the addresses' periods, then the extension
    for (body, missing) in [
        (json!({"bananas": "in pyjamas"}), "name"),
        (json!({"name": {"family": "Smith"}}), "address"),
        (
            json!({"name": {"family": "Smith"}, "address": [{"line": ["1"]}]}),
            "gender",
        ),
        (
            json!({"name": {"family": "Smith"}, "address": [{"line": ["1"]}], "gender": "male"}),
            "birthDate",
        ),
        (
            json!({"name": [{"family": "ToRemove", "given": ["No-Extensions"], "period": {"start": "2024-01-12"}}],
            "address": [{"line": ["1"]}], "gender": "male", "birthDate": "2023-12-12"}),
            "address/0/period",
        ),
    ] {
        create(&api, &body)
            .await
            .expect(400, "MISSING_VALUE")
            .expect_diagnostics(&format!("Missing value - '{missing}'"));
    }
    // values as PDS reports them
    let mut given = pds_create_request();
    given["name"][0]["given"] = json!("not an array");
    create(&api, &given)
        .await
        .expect(400, "INVALID_VALUE")
        .expect_diagnostics("Invalid value - 'not an array' in field 'name/0/given'");
    let mut six = pds_create_request();
    six["name"][0]["given"] = json!(["One", "Two", "Three", "Four", "Five", "six"]);
    let r = create(&api, &six).await;
    r.expect(400, "TOO_MANY_VALUES_SUBMITTED");
    assert!(r.diagnostics().unwrap().starts_with(
        "Too many values submitted - ['One', 'Two', 'Three', 'Four', 'Five', 'six'] in field 'name/0/given'"
    ));
    // PDS's create rules
    let mut lines = pds_create_request();
    lines["address"][0]["line"] = json!(["7 Alder Court"]);
    let mut ended = pds_create_request();
    ended["name"][0]["period"]["end"] = json!("2024-01-01");
    let mut email = pds_create_request();
    email["telecom"] = json!([{"use": "home", "system": "email", "value": "testemail"}]);
    for (body, detail) in [
        (
            lines,
            "address lines 1 and 4 or 2 and 4 must be completed as a minimum",
        ),
        (ended, "An end date can not be provided on usual name"),
        (email, "email format is invalid"),
    ] {
        create(&api, &body)
            .await
            .expect(400, "INVALID_CREATE")
            .expect_diagnostics(&format!(
                "Invalid patient create data provided - '{detail}'"
            ));
    }
    // lines 2 and 4 are enough (premises left blank), and blank titles and suffixes go
    let mut blank = pds_create_request();
    blank["name"][0]["given"] = json!(["Nora"]);
    blank["name"][0]["prefix"] = json!([""]);
    blank["name"][0]["suffix"] = json!([""]);
    blank["address"][0]["line"] = json!(["", "8 Alder Court", "", "Leeds", ""]);
    let r = create(&api, &blank).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.body["name"][0].get("prefix").is_none() && r.body["name"][0].get("suffix").is_none());
    assert_eq!(
        r.body["address"][0]["line"],
        json!(["8 Alder Court", "Leeds"])
    );
    // and an operation's Parameters with a member it does not have
    let bo = server.api_as("back-office");
    let r = bo
        .post_with(
            "/Patient/$invalidate",
            &json!({"resourceType": "Parameters", "pets": "cat", "parameter": [
                {"name": "nhs-number", "valueIdentifier": ident(FULL)},
                {"name": "reason", "valueString": "x"}]}),
            &request_id(),
        )
        .await;
    r.expect(400, "ADDITIONAL_PROPERTIES");
    let r = bo
        .operation(
            "$invalidate",
            json!([{"name": "nhs-number", "valueIdentifier": ident(FULL), "pets": "cat"},
                   {"name": "reason", "valueString": "x"}]),
        )
        .await;
    r.expect(400, "ADDITIONAL_PROPERTIES");
    assert_eq!(
        server.api().get_patient(FULL).await.status,
        200,
        "nothing invalidated"
    );
}
