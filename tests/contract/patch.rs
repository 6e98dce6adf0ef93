//! PATCH /Patient/{id}: headers, versions, the PDS list rules and the business rules, each
//! with the PDS code.

use serde_json::{json, Value};

use crate::helpers::*;

const DEATH_URL: &str =
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-DeathNotificationStatus";

fn death_status(code: &str) -> Value {
    json!({"url": DEATH_URL, "extension": [{"url": "deathNotificationStatus", "valueCodeableConcept": {"coding": [{
        "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-DeathNotificationStatus", "version": "1.0.0", "code": code,
        "display": "Informal - death notice received via an update from a local NHS Organisation such as GP or Trust"}]}}]})
}

#[tokio::test]
async fn update_increments_version_and_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let api = server.api();
    let rid = request_id();
    let r = api
        .send(
            "PATCH",
            &format!("/Patient/{COMPOUND_GIVEN}"),
            &[
                ("X-Request-ID", &rid),
                ("X-Correlation-ID", "c-1"),
                ("If-Match", "W/\"1\""),
                ("Content-Type", "application/json-patch+json"),
            ],
            Some(
                json!({"patches": [{"op": "replace", "path": "/gender", "value": "unknown"}]})
                    .to_string(),
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("etag"), Some("W/\"2\""));
    assert_eq!(r.header("x-request-id"), Some(rid.as_str()));
    assert_eq!(r.header("x-correlation-id"), Some("c-1"));
    assert_eq!(r.body["gender"], "unknown");
    assert_eq!(r.body["meta"]["versionId"], "2");
    assert_eq!(
        r.body["name"][0]["given"][0], "Mary Ann",
        "the full record comes back"
    );

    let again = api
        .patch(
            COMPOUND_GIVEN,
            2,
            json!({"patches": [{"op": "replace", "path": "/gender", "value": "female"}]}),
        )
        .await;
    assert_eq!(again.header("etag"), Some("W/\"3\""));
    let got = api.get_patient(COMPOUND_GIVEN).await;
    assert_eq!(
        (got.header("etag"), got.body["gender"].as_str()),
        (Some("W/\"3\""), Some("female"))
    );
}

#[tokio::test]
async fn if_match_rules() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let api = server.api();
    let body =
        json!({"patches": [{"op": "replace", "path": "/gender", "value": "male"}]}).to_string();
    let path = format!("/Patient/{FULL}");
    let rid = request_id();
    let r = api
        .send(
            "PATCH",
            &path,
            &[
                ("X-Request-ID", &rid),
                ("Content-Type", "application/json-patch+json"),
            ],
            Some(body.clone()),
        )
        .await;
    r.expect(412, "PRECONDITION_FAILED").expect_diagnostics(
        "Invalid request with error - If-Match header must be supplied to update this resource",
    );
    for bad in ["2", "\"1\"", "W/1", "W/\"one\"", "*"] {
        let r = api
            .send(
                "PATCH",
                &path,
                &[
                    ("X-Request-ID", &rid),
                    ("If-Match", bad),
                    ("Content-Type", "application/json-patch+json"),
                ],
                Some(body.clone()),
            )
            .await;
        // it was supplied: the message says what is wrong with it instead
        r.expect(412, "PRECONDITION_FAILED").expect_diagnostics(&format!(
            "Invalid request with error - If-Match header '{bad}' is not of the form W/\"<version>\"; send the ETag of the record as returned, e.g. W/\"2\""
        ));
    }
    // a stale version: the message names the current one
    let r = api
        .patch(FULL, 7, serde_json::from_str(&body).unwrap())
        .await;
    r.expect(409, "RESOURCE_VERSION_MISMATCH").expect_diagnostics(
        "Invalid update with error - the If-Match version W/\"7\" is not the current version, W/\"1\": read the record again and re-apply the change to it",
    );
    assert_eq!(api.get_patient(FULL).await.version(), 1, "nothing applied");
}

#[tokio::test]
async fn content_types_and_body_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let api = server.api();
    let path = format!("/Patient/{FULL}");
    let rid = request_id();
    let body =
        json!({"patches": [{"op": "replace", "path": "/gender", "value": "male"}]}).to_string();
    for ct in [
        Some("application/bananas"),
        Some("application/fhir+json"),
        Some("text/plain"),
        None,
    ] {
        let mut headers = vec![("X-Request-ID", rid.as_str()), ("If-Match", "W/\"1\"")];
        if let Some(ct) = ct {
            headers.push(("Content-Type", ct));
        }
        let got = ct.map_or("none".to_string(), |c| format!("'{c}'"));
        api.send("PATCH", &path, &headers, Some(body.clone()))
            .await
            .expect(400, "UNSUPPORTED_SERVICE")
            .expect_diagnostics(&format!("Invalid request with error - the Content-Type must be application/json-patch+json (application/json is accepted too); it was {got}"));
    }
    // application/json is accepted, as PDS's sandbox does, and so is a bare JSON Patch array
    let r = api
        .send(
            "PATCH",
            &path,
            &[
                ("X-Request-ID", &rid),
                ("If-Match", "W/\"1\""),
                ("Content-Type", "application/json; charset=utf-8"),
            ],
            Some(json!([{"op": "replace", "path": "/gender", "value": "male"}]).to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    for empty in [json!({}), json!({"patches": []})] {
        api.patch(FULL, 2, empty)
            .await
            .expect(400, "INVALID_UPDATE")
            .expect_diagnostics("Invalid update with error - No patches found");
    }
    let fresh = request_id();
    let r = api
        .send(
            "PATCH",
            &path,
            &[
                ("X-Request-ID", &fresh),
                ("If-Match", "W/\"2\""),
                ("Content-Type", "application/json-patch+json"),
            ],
            Some("{\"patches\": [".into()),
        )
        .await;
    r.expect(400, "INVALID_UPDATE");
    api.patch(
        FULL,
        2,
        json!({"patches": [{"op": "bad_value", "path": "/gender", "value": "male"}]}),
    )
    .await
    .expect(400, "INVALID_VALUE")
    .expect_diagnostics("Invalid value - 'bad_value' in field '0/op'");
    api.patch(FULL, 2, json!({"patches": [{"op": "replace", "path": "/gender", "value": "male"}, {"op": "move", "from": "/a", "path": "/b"}]}))
        .await
        .expect(400, "INVALID_VALUE")
        .expect_diagnostics("Invalid value - 'move' in field '1/op'");
    api.patch(
        FULL,
        2,
        json!({"patches": [{"op": "add", "path": "/pets", "value": "cat"}]}),
    )
    .await
    .expect(400, "INVALID_UPDATE")
    .expect_diagnostics("Invalid update with error - Update unsupported for resource - 'pets'");
    // an unknown property inside a value is one the Patient does not allow (PDS's code)
    api.patch(
        FULL,
        2,
        json!({"patches": [{"op": "add", "path": "/telecom/-", "value": {"system": "phone", "use": "temp", "value": "07700900123", "pets": "cat"}}]}),
    )
    .await
    .expect(400, "ADDITIONAL_PROPERTIES");
    // extra keys beside `patches` (PDS clients send `correction`) are tolerated
    let r = api.patch(FULL, 2, json!({"patches": [{"op": "replace", "path": "/gender", "value": "female"}], "correction": false})).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn id_and_existence_checks() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let api = server.api();
    let body = json!({"patches": [{"op": "replace", "path": "/gender", "value": "male"}]});
    api.patch("9000000000", 1, body.clone())
        .await
        .expect(400, "INVALID_RESOURCE_ID");
    api.patch(UNKNOWN, 1, body.clone())
        .await
        .expect(404, "RESOURCE_NOT_FOUND");
    let r = api
        .send(
            "PATCH",
            &format!("/Patient/{FULL}"),
            &[
                ("If-Match", "W/\"1\""),
                ("Content-Type", "application/json-patch+json"),
            ],
            Some(body.to_string()),
        )
        .await;
    r.expect(400, "MISSING_VALUE");
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let api = server.api();
    let huge = json!({"patches": [{"op": "replace", "path": "/gender", "value": "x".repeat(1024 * 1024 + 1024)}]});
    let r = api.patch(FULL, 1, huge).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.code(), "INVALID_VALUE");
    assert_eq!(api.get_patient(FULL).await.version(), 1);
}

#[tokio::test]
async fn list_rules() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let api = server.api();
    // new items only at /-, with a server-assigned id and today's period
    let r = api.patch_current(SEVERAL_TELECOMS, json!([{"op": "add", "path": "/name/-", "value": {"use": "nickname", "given": ["Pri"], "family": "Raman"}}])).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let nick = &r.body["name"][1];
    assert!(nick["id"].as_str().is_some_and(|s| !s.is_empty()), "{nick}");
    assert!(nick["period"]["start"].is_string());
    api.patch_current(
        SEVERAL_TELECOMS,
        json!([{"op": "add", "path": "/name/0", "value": {"use": "nickname", "family": "X"}}]),
    )
    .await
    .expect(400, "INVALID_UPDATE");
    api.patch_current(SEVERAL_TELECOMS, json!([{"op": "add", "path": "/telecom/-", "value": {"id": "mine", "system": "phone", "use": "temp", "value": "01632960999"}}]))
        .await
        .expect(400, "INVALID_UPDATE");

    // edits inside an item must assert its id first
    api.patch_current(
        SEVERAL_TELECOMS,
        json!([{"op": "replace", "path": "/address/0/line/0", "value": "6 Victoria Terrace"}]),
    )
    .await
    .expect(400, "INVALID_UPDATE")
    .expect_diagnostics(
        "Invalid update with error - no id or url found for path with root /address/0",
    );
    api.patch_current(SEVERAL_TELECOMS, json!([{"op": "replace", "path": "/address/0/id", "value": "123456"}, {"op": "replace", "path": "/address/0/line/0", "value": "x"}]))
        .await
        .expect(400, "INVALID_UPDATE")
        .expect_diagnostics("Invalid update with error - no 'address' resources with object id '123456'");
    let r = api
        .patch_current(SEVERAL_TELECOMS, json!([{"op": "replace", "path": "/address/0/id", "value": "A1"}, {"op": "replace", "path": "/address/0/line/0", "value": "6 Victoria Terrace"}]))
        .await;
    assert_eq!(
        (r.status, r.body["address"][0]["line"][0].as_str()),
        (200, Some("6 Victoria Terrace")),
        "{}",
        r.body
    );
    api.patch_current(
        SEVERAL_TELECOMS,
        json!([{"op": "replace", "path": "/address/3/id", "value": "A1"}]),
    )
    .await
    .expect(400, "INVALID_UPDATE")
    .expect_diagnostics("Invalid update with error - Invalid patch - index '3' is out of bounds");

    // removal must be immediately preceded by a test of the item
    api.patch_current(SEVERAL_TELECOMS, json!([{"op": "remove", "path": "/telecom/1"}]))
        .await
        .expect(400, "INVALID_UPDATE")
        .expect_diagnostics("Invalid update with error - removal '/telecom/1' is not immediately preceded by equivalent test - instead it is the first item");
    // a failing test stops everything
    api.patch_current(SEVERAL_TELECOMS, json!([{"op": "test", "path": "/telecom/1/id", "value": "T9"}, {"op": "remove", "path": "/telecom/1"}]))
        .await
        .expect(400, "INVALID_UPDATE");
    let r = api.patch_current(SEVERAL_TELECOMS, json!([{"op": "test", "path": "/telecom/1/id", "value": "T2"}, {"op": "remove", "path": "/telecom/1"}])).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ids: Vec<&str> = r.body["telecom"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["T1", "T3", "T4", "T5"]);
}

#[tokio::test]
async fn business_rules_with_pds_codes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let api = server.api();
    let p = HOME_AND_TEMP;
    let cases: Vec<(Value, u16, &str, Option<&str>)> = vec![
        (
            json!([{"op": "add", "path": "/name/-", "value": {"use": "usual", "family": "Other"}}]),
            403,
            "FORBIDDEN_UPDATE",
            Some("Forbidden update with error - multiple usual names cannot be added"),
        ),
        (
            json!([{"op": "test", "path": "/name/0/id", "value": "N1"}, {"op": "remove", "path": "/name/0"}]),
            403,
            "FORBIDDEN_UPDATE",
            Some("Forbidden update with error - not permitted to remove usual name"),
        ),
        (
            json!([{"op": "remove", "path": "/gender"}]),
            403,
            "FORBIDDEN_UPDATE",
            Some("Forbidden update with error - source not permitted to remove 'gender'"),
        ),
        (
            json!([{"op": "remove", "path": "/birthDate"}]),
            403,
            "FORBIDDEN_UPDATE",
            Some("Forbidden update with error - source not permitted to remove 'birthDate'"),
        ),
        (
            json!([{"op": "replace", "path": "/gender", "value": "other"}]),
            400,
            "INVALID_VALUE",
            Some("Invalid value - 'other' in field 'gender'"),
        ),
        (
            json!([{"op": "replace", "path": "/gender", "value": "mal"}]),
            400,
            "INVALID_VALUE",
            Some("Invalid value - 'mal' in field 'gender'"),
        ),
        (
            json!([{"op": "replace", "path": "/birthDate", "value": "2099-01-01"}]),
            400,
            "INVALID_VALUE",
            Some("Invalid value - '2099-01-01' in field 'birthDate'"),
        ),
        (
            json!([{"op": "replace", "path": "/birthDate", "value": "20050901"}]),
            400,
            "INVALID_VALUE",
            Some("Invalid value - '20050901' in field 'birthDate'"),
        ),
        (
            json!([{"op": "add", "path": "/deceasedDateTime", "value": "2025-01-01T00:00:00+00:00"}]),
            400,
            "INVALID_UPDATE",
            None,
        ),
        (
            json!([{"op": "add", "path": "/extension/-", "value": death_status("1")}, {"op": "add", "path": "/deceasedDateTime", "value": "2025-01-01T00:00:00+01:00"}]),
            400,
            "INVALID_VALUE",
            Some("Invalid value - '2025-01-01T00:00:00+01:00' in field 'deceasedDateTime'"),
        ),
        (
            json!([{"op": "add", "path": "/extension/-", "value": death_status("1")}, {"op": "add", "path": "/deceasedDateTime", "value": "2001-01-01T00:00:00+00:00"}]),
            400,
            "INVALID_UPDATE",
            Some("Invalid update with error - deceasedDateTime cannot be before birthDate"),
        ),
        (
            json!([{"op": "add", "path": "/extension/-", "value": death_status("2")}, {"op": "add", "path": "/deceasedDateTime", "value": "2025-01-01T00:00:00+00:00"}]),
            403,
            "FORBIDDEN_UPDATE",
            None,
        ),
        (
            json!([{"op": "add", "path": "/extension/-", "value": death_status("U")}, {"op": "add", "path": "/deceasedDateTime", "value": "2025-01-01T00:00:00+00:00"}]),
            400,
            "UNSUPPORTED_VALUE",
            None,
        ),
        (
            json!([{"op": "add", "path": "/address/-", "value": {"use": "home", "line": ["1 Road"], "postalCode": "CF10 1AA"}}]),
            400,
            "INVALID_UPDATE",
            None,
        ),
        (
            json!([{"op": "add", "path": "/address/-", "value": {"use": "work", "line": ["1 Road"], "postalCode": "CF10 1AA"}}]),
            400,
            "INVALID_UPDATE",
            None,
        ),
        (
            json!([{"op": "test", "path": "/address/1/id", "value": "A2"}, {"op": "remove", "path": "/address/1/period/end"}]),
            400,
            "MISSING_VALUE",
            Some("Missing value - 'address/1/period/end'"),
        ),
        (
            json!([{"op": "add", "path": "/telecom/-", "value": {"system": "email", "use": "home", "value": "nope"}}]),
            400,
            "INVALID_VALUE",
            None,
        ),
        (
            json!([{"op": "test", "path": "/generalPractitioner/0/id", "value": "GPY04680"}, {"op": "remove", "path": "/generalPractitioner/0"}]),
            403,
            "FORBIDDEN_UPDATE",
            None,
        ),
        (
            json!([{"op": "replace", "path": "/multipleBirthInteger", "value": 12}]),
            400,
            "INVALID_UPDATE",
            None,
        ),
        (
            json!([{"op": "add", "path": "/multipleBirthInteger", "value": 12}]),
            400,
            "INVALID_VALUE",
            Some("Invalid value - '12' in field 'multipleBirthInteger'"),
        ),
        (
            json!([{"op": "replace", "path": "/meta/security/0/code", "value": "R"}]),
            403,
            "FORBIDDEN_UPDATE",
            None,
        ),
        (
            json!([{"op": "replace", "path": "/id", "value": "9000000009"}]),
            400,
            "INVALID_UPDATE",
            None,
        ),
        (
            json!([{"op": "test", "path": "/name/0/id", "value": "N1"}, {"op": "replace", "path": "/name/0/family", "value": "Pryce<Davies>"}]),
            400,
            "UNSUPPORTED_CHARACTERS_IN_FIELD",
            None,
        ),
    ];
    for (patches, status, code, diagnostics) in cases {
        let r = api.patch(p, 1, json!({ "patches": patches })).await;
        r.expect(status, code);
        if let Some(d) = diagnostics {
            r.expect_diagnostics(d);
        }
        assert!(
            r.diagnostics().is_some_and(|d| !d.is_empty()),
            "every rule explains itself: {}",
            r.body
        );
    }
    // none of that changed anything
    assert_eq!(api.get_patient(p).await.version(), 1);
    // FORBIDDEN_UPDATE has severity information, as in PDS
    let r = api
        .patch(
            p,
            1,
            json!({"patches": [{"op": "remove", "path": "/gender"}]}),
        )
        .await;
    assert_eq!(
        (
            r.body["issue"][0]["severity"].as_str(),
            r.body["issue"][0]["code"].as_str()
        ),
        (Some("information"), Some("forbidden"))
    );
}

#[tokio::test]
async fn deaths() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let api = server.api();
    // the PDS documentation's way of recording an informal death
    let r = api
        .patch(
            HOME_AND_TEMP,
            1,
            json!({"patches": [
            {"op": "add", "path": "/extension/-", "value": death_status("1")},
            {"op": "add", "path": "/deceasedDateTime", "value": "2025-03-04T00:00:00"}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["deceasedDateTime"], "2025-03-04T00:00:00+00:00",
        "shown in UTC"
    );
    // an informal death can be corrected but not removed
    let r = api.patch(HOME_AND_TEMP, 2, json!({"patches": [{"op": "replace", "path": "/deceasedDateTime", "value": "2025-03-05T00:00:00+00:00"}]})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    api.patch(
        HOME_AND_TEMP,
        3,
        json!({"patches": [{"op": "remove", "path": "/deceasedDateTime"}]}),
    )
    .await
    .expect(403, "FORBIDDEN_UPDATE");
    // a formal death cannot be changed by a healthcare worker
    api.patch(FORMAL_DEATH, 1, json!({"patches": [{"op": "replace", "path": "/deceasedDateTime", "value": "2024-12-18T00:00:00+00:00"}]}))
        .await
        .expect(403, "FORBIDDEN_UPDATE");
    // informal → formal is not theirs to make either
    api.patch(INFORMAL_DEATH, 1, json!({"patches": [
        {"op": "test", "path": "/extension/0/url", "value": DEATH_URL},
        {"op": "replace", "path": "/extension/0/extension/0/valueCodeableConcept/coding/0/code", "value": "2"}]}))
        .await
        .expect(403, "FORBIDDEN_UPDATE");
}

#[tokio::test]
async fn sensitive_patients_cannot_be_updated() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let r = server
        .api()
        .patch(
            RESTRICTED,
            1,
            json!({"patches": [{"op": "replace", "path": "/gender", "value": "male"}]}),
        )
        .await;
    r.expect(403, "FORBIDDEN_UPDATE");
    let text = r.body.to_string();
    assert!(
        !text.contains("TR1 2HE") && !text.contains("Tregarthen"),
        "{text}"
    );
}

#[tokio::test]
async fn concurrent_updates_with_the_same_version_apply_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let api = std::sync::Arc::new(server.api());
    let mut tasks = Vec::new();
    for i in 0..20 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let value = if i % 2 == 0 { "male" } else { "unknown" };
            api.patch(
                FULL,
                1,
                json!({"patches": [{"op": "replace", "path": "/gender", "value": value}]}),
            )
            .await
            .status
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "{statuses:?}"
    );
    assert_eq!(api.get_patient(FULL).await.version(), 2);
}

#[tokio::test]
async fn records_pds_holds_with_old_style_values_load_and_take_changes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pds.redb");
    let nhs = nhs_from(999_258_000, 0);
    // as PDS holds them: upper-case titles, a lower-case suffix, an e-mail and a contact time
    // today's rules would not let a change bring in
    let legacy = json!({"resourceType": "Patient", "id": nhs,
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs}],
        "name": [{"id": "N1", "use": "usual", "family": "OAKENSHAW", "given": ["ALBERT"], "prefix": ["MR"], "suffix": ["esq"]},
                 {"id": "N2", "use": "maiden", "family": "OAKENSHAW", "prefix": ["MRS"]}],
        "gender": "male", "birthDate": "1931-03-03",
        "telecom": [{"id": "T1", "system": "email", "value": "a@b.c"}],
        "extension": [{"url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-ContactPreference",
            "extension": [{"url": "PreferredContactTimes", "valueString": "mornings"}]}]});
    import(&db, std::slice::from_ref(&legacy));
    let server = Server::start(&db, &[]);
    let api = server.api();
    // served as stored
    let r = api.get_patient(&nhs).await;
    assert_eq!(r.body["name"][0]["prefix"], json!(["MR"]));
    assert_eq!(r.body["name"][1]["prefix"], json!(["MRS"]));
    // a change elsewhere is judged on what it brings
    let r = api
        .patch(
            &nhs,
            1,
            json!({"patches": [{"op": "replace", "path": "/gender", "value": "female"}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api
        .patch(
            &nhs,
            2,
            json!({"patches": [{"op": "replace", "path": "/name/0/id", "value": "N1"},
            {"op": "replace", "path": "/name/0/given/0", "value": "Albert"}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["name"][0]["prefix"], json!(["MR"]), "kept as stored");
    // but a value it brings in meets today's rules
    api.patch(
        &nhs,
        3,
        json!({"patches": [{"op": "add", "path": "/name/-",
        "value": {"use": "nickname", "family": "Oakenshaw", "prefix": ["DR"]}}]}),
    )
    .await
    .expect(400, "INVALID_VALUE")
    .expect_diagnostics("Invalid value - 'DR' in field 'name/2/prefix/0'");
    api.patch(
        &nhs,
        3,
        json!({"patches": [{"op": "add", "path": "/telecom/-",
        "value": {"system": "email", "use": "work", "value": "x@y"}}]}),
    )
    .await
    .expect(400, "INVALID_VALUE");
    assert_eq!(api.get_patient(&nhs).await.version(), 3);
}

#[tokio::test]
async fn a_patch_of_only_tests_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let (api, bo) = (server.api(), server.api_as("back-office"));
    let r = api
        .patch(
            FULL,
            1,
            json!({"patches": [{"op": "test", "path": "/gender", "value": "female"},
            {"op": "test", "path": "/name/0/id", "value": "N1"}]}),
        )
        .await;
    assert_eq!(
        (r.status, r.header("etag")),
        (200, Some("W/\"1\"")),
        "{}",
        r.body
    );
    assert_eq!(r.version(), 1);
    let audit = bo.get(&format!("/_audit?patient={FULL}")).await;
    assert_eq!(audit.body["total"], 0, "no audit entry: {}", audit.body);
    // a failing test is still an error, and a real change with an equal value is a change
    api.patch(
        FULL,
        1,
        json!({"patches": [{"op": "test", "path": "/gender", "value": "male"}]}),
    )
    .await
    .expect(400, "INVALID_UPDATE");
    let r = api
        .patch(
            FULL,
            1,
            json!({"patches": [{"op": "replace", "path": "/gender", "value": "female"}]}),
        )
        .await;
    assert_eq!((r.status, r.version()), (200, 2));
}
