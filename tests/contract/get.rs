//! GET /Patient/{id}

use crate::helpers::*;

#[tokio::test]
async fn returns_the_patient_with_etag_and_echoed_ids() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let api = server.api();
    let rid = request_id();
    let r = api
        .send(
            "GET",
            &format!("/Patient/{FULL}"),
            &[("X-Request-ID", &rid), ("X-Correlation-ID", "corr-123")],
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("etag"), Some("W/\"1\""));
    assert_eq!(r.header("x-request-id"), Some(rid.as_str()));
    assert_eq!(r.header("x-correlation-id"), Some("corr-123"));
    assert_eq!(r.body["resourceType"], "Patient");
    assert_eq!(r.body["id"], FULL);
    assert_eq!(r.body["identifier"][0]["value"], FULL);
    assert_eq!(r.body["meta"]["versionId"], "1");
    // PDS field order: resourceType first
    assert_eq!(
        r.body
            .as_object()
            .unwrap()
            .keys()
            .next()
            .map(String::as_str),
        Some("resourceType")
    );
}

#[tokio::test]
async fn served_under_the_pds_base_path_too() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let r = server
        .api()
        .get(&format!("/personal-demographics/FHIR/R4/Patient/{MINIMAL}"))
        .await;
    assert_eq!(r.status, 200);
    // a minimal record: identifier and meta only
    let keys: Vec<&String> = r.body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["resourceType", "id", "identifier", "meta"]);
}

#[tokio::test]
async fn x_request_id_is_required_and_must_be_a_uuid() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let api = server.api();
    let path = format!("/Patient/{FULL}");
    api.send("GET", &path, &[], None)
        .await
        .expect(400, "MISSING_VALUE")
        .expect_diagnostics("Invalid request with error - X-Request-ID header must be supplied to access this resource");
    let r = api
        .send("GET", &path, &[("X-Request-ID", "1234")], None)
        .await;
    r.expect(400, "INVALID_VALUE")
        .expect_diagnostics("Invalid value - '1234' in header 'X-Request-ID'");
    assert_eq!(
        r.header("x-request-id"),
        Some("1234"),
        "echoed even when invalid"
    );
    let r = api.send("GET", &path, &[("X-Request-ID", "")], None).await;
    r.expect(400, "INVALID_VALUE")
        .expect_diagnostics("Invalid value - '' in header 'X-Request-ID'");
    assert_eq!(
        r.header("x-request-id"),
        None,
        "empty values are not echoed"
    );
    // headers are checked before the NHS number
    api.send("GET", "/Patient/123", &[], None)
        .await
        .expect(400, "MISSING_VALUE");
    // any UUID version, upper or lower case
    let r = api
        .send(
            "GET",
            &path,
            &[("X-Request-ID", "60E0B220-8136-1CA5-AE46-1D97EF59D068")],
            None,
        )
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn invalid_nhs_numbers_are_invalid_resource_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let api = server.api();
    // too short, bad check digit, check digit 10, letters, too long
    for id in [
        "123",
        "9000000000",
        "1000000010",
        "abcdefghij",
        "99910000030",
    ] {
        let r = api.get_patient(id).await;
        r.expect(400, "INVALID_RESOURCE_ID");
        assert_eq!(r.diagnostics(), None, "PDS sends no diagnostics for {id}");
        assert_eq!(r.body["issue"][0]["code"], "value");
    }
}

#[tokio::test]
async fn unknown_patient_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let r = server.api().get_patient(UNKNOWN).await;
    r.expect(404, "RESOURCE_NOT_FOUND");
    assert_eq!(r.body["issue"][0]["severity"], "information");
    assert_eq!(r.body["issue"][0]["code"], "not-found");
    assert_eq!(r.header("etag"), None);
}

#[tokio::test]
async fn restricted_patients_are_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let r = server.api().get_patient(RESTRICTED).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["meta"]["security"][0]["code"], "R");
    for field in [
        "address",
        "telecom",
        "contact",
        "generalPractitioner",
        "managingOrganization",
        "extension",
    ] {
        assert!(r.body.get(field).is_none(), "{field} leaked: {}", r.body);
    }
    assert_eq!(r.body["name"][0]["family"], "Tregarthen");
    assert_eq!(r.header("etag"), Some("W/\"1\""));
    let text = r.body.to_string();
    for secret in ["TR1 2HE", "07700900203", "Y02468", "FQ246", "Penzance"] {
        assert!(!text.contains(secret), "{secret} leaked");
    }
}

#[tokio::test]
async fn every_demo_patient_is_served_and_valid() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let api = server.api();
    for id in [
        FULL,
        MINIMAL,
        RESTRICTED,
        INFORMAL_DEATH,
        FORMAL_DEATH,
        HOME_AND_TEMP,
        SEVERAL_TELECOMS,
        COMPOUND_GIVEN,
    ] {
        let r = api.get_patient(id).await;
        assert_eq!(r.status, 200, "{id}");
    }
    let full = api.get_patient(FULL).await.body;
    let urls: Vec<&str> = full["extension"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["url"].as_str().unwrap())
        .collect();
    assert!(urls.len() >= 7, "{urls:?}");
    let formal = api.get_patient(FORMAL_DEATH).await.body;
    assert_eq!(
        formal["extension"][0]["extension"][0]["valueCodeableConcept"]["coding"][0]["code"],
        "2"
    );
    let compound = api.get_patient(COMPOUND_GIVEN).await.body;
    assert_eq!(compound["name"][0]["given"][0], "Mary Ann");
}

/// Conditional read: `If-None-Match` with the current version → 304 and no body; an older
/// version → the record.
#[tokio::test]
async fn conditional_read_answers_not_modified_for_the_current_version() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let api = server.api();
    let rid = request_id();
    let r = api
        .send(
            "GET",
            &format!("/Patient/{FULL}"),
            &[("X-Request-ID", &rid), ("If-None-Match", "W/\"1\"")],
            None,
        )
        .await;
    assert_eq!(r.status, 304);
    assert_eq!(r.body, serde_json::Value::Null, "no body");
    assert_eq!(r.header("etag"), Some("W/\"1\""));
    let r = api
        .send(
            "GET",
            &format!("/Patient/{FULL}"),
            &[("X-Request-ID", &rid), ("If-None-Match", "\"1\"")],
            None,
        )
        .await;
    assert_eq!(r.status, 304, "weak comparison");
    let changed = api
        .patch_current(
            FULL,
            serde_json::json!([{"op": "replace", "path": "/birthDate", "value": "2010-10-23"}]),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    let r = api
        .send(
            "GET",
            &format!("/Patient/{FULL}"),
            &[
                ("X-Request-ID", &request_id()),
                ("If-None-Match", "W/\"1\""),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.version(), 2);
}

/// `NHSD-Session-URID` is checked as PDS checks it for user-restricted access.
#[tokio::test]
async fn a_malformed_session_urid_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let api = server.api();
    let get = |urid: &'static str| {
        let api = &api;
        async move {
            api.send(
                "GET",
                &format!("/Patient/{FULL}"),
                &[("X-Request-ID", &request_id()), ("NHSD-Session-URID", urid)],
                None,
            )
            .await
        }
    };
    assert_eq!(get("555254240100").await.status, 200);
    get("invalid").await.expect(400, "INVALID_VALUE").expect_diagnostics(
        "Invalid value - 'invalid' in header 'NHSD-Session-URID'. Refer to the guidance for this header in our API Specification https://digital.nhs.uk/developer/api-catalogue/personal-demographics-service-fhir",
    );
    get("").await.expect(400, "INVALID_VALUE");
    // application-restricted access ignores it
    let app = server.api_as("application-restricted");
    let r = app
        .send(
            "GET",
            &format!("/Patient/{FULL}"),
            &[
                ("X-Request-ID", &request_id()),
                ("NHSD-Session-URID", "invalid"),
            ],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}
