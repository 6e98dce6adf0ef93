//! FHIR conventions generic FHIR tooling relies on: content negotiation, the capability
//! statement, result parameters, Bundle links, last-updated times.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn only_json_is_served_and_anything_else_is_406() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let api = server.api();
    let path = format!("/Patient/{FULL}");
    for accept in [
        "application/fhir+json",
        "application/json",
        "application/fhir+json; fhirVersion=4.0",
        "*/*",
    ] {
        let r = api
            .send(
                "GET",
                &path,
                &[("X-Request-ID", &request_id()), ("Accept", accept)],
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{accept}: {}", r.body);
        assert_eq!(r.header("content-type"), Some("application/fhir+json"));
    }
    for accept in [
        "application/fhir+xml",
        "application/xml",
        "text/html",
        "text/turtle",
    ] {
        let r = api
            .send(
                "GET",
                &path,
                &[("X-Request-ID", &request_id()), ("Accept", accept)],
                None,
            )
            .await;
        r.expect(406, "UNSUPPORTED_SERVICE");
        assert_eq!(r.body["issue"][0]["code"], "not-supported");
        assert!(r.diagnostics().unwrap().contains(accept), "{}", r.body);
        assert!(
            !r.body.to_string().contains("Patient\""),
            "no record in the refusal"
        );
    }
    // _format overrides Accept, on reads, searches and changes alike, and is no search parameter
    let search = "/Patient?family=Smith&gender=female&birthdate=eq2010-10-22";
    for (query, status) in [
        (format!("{path}?_format=json"), 200),
        (format!("{path}?_format=application/fhir%2Bjson"), 200),
        (format!("{path}?_format=xml"), 406),
        (format!("{path}?_format=application/fhir%2Bxml"), 406),
        (format!("{search}&_format=json"), 200),
        (format!("{search}&_format=xml"), 406),
    ] {
        let r = api
            .send(
                "GET",
                &query,
                &[
                    ("X-Request-ID", &request_id()),
                    ("Accept", "application/fhir+xml"),
                ],
                None,
            )
            .await;
        assert_eq!(r.status, status, "{query}: {}", r.body);
    }
    let searched = api.get(&format!("{search}&_format=json")).await;
    assert_eq!(searched.body["resourceType"], "Bundle", "{}", searched.body);
    // a change that asks for XML is refused before anything is written
    let r = api
        .send(
            "PATCH",
            &path,
            &[
                ("X-Request-ID", &request_id()),
                ("If-Match", "W/\"1\""),
                ("Content-Type", "application/json-patch+json"),
                ("Accept", "application/fhir+xml"),
            ],
            Some(r#"{"patches":[{"op":"replace","path":"/gender","value":"male"}]}"#.into()),
        )
        .await;
    r.expect(406, "UNSUPPORTED_SERVICE");
    assert_eq!(api.get_patient(FULL).await.version(), 1, "nothing written");
    // health checks answer whatever the prober accepts
    let ping = api
        .send("GET", "/_ping", &[("Accept", "text/plain")], None)
        .await;
    assert_eq!(ping.status, 200);
}

#[tokio::test]
async fn metadata_is_a_capability_statement_read_without_a_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let api = server.api();
    for base in ["", "/personal-demographics/FHIR/R4"] {
        let r = api
            .send("GET", &format!("{base}/metadata"), &[], None)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["resourceType"], "CapabilityStatement");
        assert_eq!(r.body["fhirVersion"], "4.0.1");
        assert_eq!(r.body["kind"], "instance");
    }
    let cs = api.send("GET", "/metadata", &[], None).await.body;
    let resources = cs["rest"][0]["resource"].as_array().unwrap();
    let patient = resources.iter().find(|r| r["type"] == "Patient").unwrap();
    let merge = patient["operation"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "merge")
        .unwrap();
    let definition = merge["definition"].as_str().unwrap();
    let id = definition.rsplit('/').next().unwrap();
    assert_eq!(id, "Patient-merge");
    // every other route keeps PDS's X-Request-ID rule
    api.send("GET", &format!("/OperationDefinition/{id}"), &[], None)
        .await
        .expect(400, "MISSING_VALUE");
    let od = api.get(&format!("/OperationDefinition/{id}")).await;
    assert_eq!(od.status, 200, "{}", od.body);
    assert_eq!(od.body["resourceType"], "OperationDefinition");
    assert_eq!(od.body["url"], definition);
    let reason = od.body["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "reason")
        .unwrap();
    assert_eq!(
        (reason["min"].as_u64(), reason["type"].as_str()),
        (Some(1), Some("string"))
    );
    api.get("/OperationDefinition/Patient-teleport")
        .await
        .expect(404, "RESOURCE_NOT_FOUND");
    let cs = api
        .send(
            "GET",
            "/metadata",
            &[("Accept", "application/fhir+xml")],
            None,
        )
        .await;
    cs.expect(406, "UNSUPPORTED_SERVICE");
}

/// `PDS_TEST_FHIRCLIENT`: a Python with SMART on FHIR's `fhirclient` installed (`.ci/run`
/// sets one up); without it the test says so and passes.
#[tokio::test]
async fn fhirclient_prepares_and_reads_through_its_strict_models() {
    let Some(python) = std::env::var("PDS_TEST_FHIRCLIENT")
        .ok()
        .filter(|p| !p.is_empty())
    else {
        eprintln!("fhirclient test not run: set PDS_TEST_FHIRCLIENT to a Python with fhirclient");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let base = format!("{}/personal-demographics/FHIR/R4", server.base);
    // a change, so the audit trail has an event to read
    let bo = server.api_as("back-office");
    let changed = bo
        .patch(
            FULL,
            1,
            json!({"patches": [{"op": "replace", "path": "/gender", "value": "male"}]}),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    let token = bo.token.clone().unwrap();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&python)
            .arg(std::path::Path::new(ROOT).join("tests/fhirclient/check.py"))
            .args([&base, FULL, &token])
            .output()
            .unwrap_or_else(|e| panic!("cannot run PDS_TEST_FHIRCLIENT={python}: {e}"))
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "fhirclient failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn every_version_says_when_it_was_written_and_bundles_link_to_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let api = server.api();
    let first = api.get_patient(FULL).await;
    let written = first.body["meta"]["lastUpdated"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(written.ends_with('Z') || written.contains('+'), "{written}");
    let modified = first.header("last-modified").unwrap().to_string();
    assert!(modified.ends_with(" GMT"), "{modified}");
    // no browser or shared cache keeps personal data (it would hand it to the next token)
    assert_eq!(first.header("cache-control"), Some("no-store"));
    assert_eq!(first.header("vary"), Some("Authorization"));
    // a restricted record does not say when it changed, but to the back office
    let hidden = api.get_patient(RESTRICTED).await;
    assert!(
        hidden.body["meta"].get("lastUpdated").is_none(),
        "{}",
        hidden.body["meta"]
    );
    assert!(hidden.header("last-modified").is_none());
    let bo = server.api_as("back-office").get_patient(RESTRICTED).await;
    assert!(bo.body["meta"]["lastUpdated"].is_string() && bo.header("last-modified").is_some());
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let changed = api
        .patch(
            FULL,
            1,
            json!({"patches": [{"op": "replace", "path": "/gender", "value": "male"}]}),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    let later = changed.body["meta"]["lastUpdated"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(later > written, "{later} after {written}");
    let read = api.get_patient(FULL).await;
    assert_eq!(
        read.body["meta"]["lastUpdated"],
        later.as_str(),
        "the answer is what was stored"
    );
    assert_ne!(read.header("last-modified"), Some(modified.as_str()));
    // a PATCH of /meta/lastUpdated is refused: the server sets it
    api.patch(FULL, 2, json!({"patches": [{"op": "replace", "path": "/meta/lastUpdated", "value": "2000-01-01T00:00:00Z"}]}))
        .await
        .expect(400, "INVALID_UPDATE");

    let history = api.get(&format!("/Patient/{FULL}/_history")).await;
    assert_eq!(history.status, 200);
    let self_link = &history.body["link"][0];
    assert_eq!(self_link["relation"], "self");
    assert!(self_link["url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/Patient/{FULL}/_history")));
    let entries = history.body["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    for e in entries {
        assert!(
            e["fullUrl"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/Patient/{FULL}")),
            "{e}"
        );
        let at = e["resource"]["meta"]["lastUpdated"].as_str().unwrap();
        assert_eq!(e["response"]["lastModified"], at);
    }
    assert_eq!(
        entries[0]["resource"]["meta"]["lastUpdated"],
        later.as_str()
    );
    assert_eq!(
        entries[1]["resource"]["meta"]["lastUpdated"],
        written.as_str()
    );

    // a search's self link is the query as understood (the deprecated postcode name renamed)
    let search = api
        .get("/Patient?family=Smith&gender=female&birthdate=eq2010-10-22&address-postcode=LS1%201AA&&_format=json&phone=")
        .await;
    assert_eq!(search.status, 200, "{}", search.body);
    let url = search.body["link"][0]["url"].as_str().unwrap();
    assert!(
        url.ends_with(
            "/Patient?family=Smith&gender=female&birthdate=eq2010-10-22&address-postalcode=LS1+1AA"
        ),
        "{url}"
    );
}

#[tokio::test]
async fn a_read_returns_the_part_asked_for_and_refuses_what_it_does_not_know() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let api = server.api();
    let keys = |r: &Reply| -> Vec<String> { r.body.as_object().unwrap().keys().cloned().collect() };
    let some = api
        .get(&format!("/Patient/{FULL}?_elements=gender,birthDate"))
        .await;
    assert_eq!(some.status, 200, "{}", some.body);
    assert_eq!(
        keys(&some),
        [
            "resourceType",
            "id",
            "identifier",
            "meta",
            "gender",
            "birthDate"
        ]
    );
    assert_eq!(some.body["meta"]["tag"][0]["code"], "SUBSETTED");
    assert_eq!(some.header("etag"), Some("W/\"1\""));
    let summary = api.get(&format!("/Patient/{FULL}?_summary=true")).await;
    assert!(summary.body.get("name").is_some() && summary.body.get("extension").is_none());
    assert!(
        summary.body.get("generalPractitioner").is_none(),
        "not a summary element"
    );
    let whole = api.get(&format!("/Patient/{FULL}?_summary=false")).await;
    assert_eq!(whole.body, api.get_patient(FULL).await.body);
    // a part is cut from what the caller may see: nothing hidden comes back by asking for it
    let hidden = api
        .get(&format!(
            "/Patient/{RESTRICTED}?_elements=address,telecom,generalPractitioner,contact"
        ))
        .await;
    assert_eq!(hidden.status, 200, "{}", hidden.body);
    assert_eq!(keys(&hidden), ["resourceType", "id", "identifier", "meta"]);
    // never silently ignored
    for (query, code) in [
        ("_count=1", "ADDITIONAL_PROPERTIES"),
        ("family=Smith", "ADDITIONAL_PROPERTIES"),
        ("_summary=count", "INVALID_VALUE"),
        ("_elements=pets", "INVALID_VALUE"),
        ("_summary=true&_elements=name", "INVALID_VALUE"),
    ] {
        api.get(&format!("/Patient/{FULL}?{query}"))
            .await
            .expect(400, code);
    }
}

#[tokio::test]
async fn related_people_are_the_contacts_and_none_of_a_restricted_patient() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let api = server.api();
    let r = api.get(&format!("/Patient/{FULL}/RelatedPerson")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (r.body["resourceType"].as_str(), r.body["type"].as_str()),
        (Some("Bundle"), Some("searchset"))
    );
    assert_eq!(r.body["total"], 1);
    let entry = &r.body["entry"][0];
    let person = &entry["resource"];
    assert_eq!(person["resourceType"], "RelatedPerson");
    assert_eq!(person["patient"]["identifier"]["value"], FULL);
    assert_eq!(person["telecom"][0]["value"], "07700900102");
    assert!(entry["fullUrl"].as_str().unwrap().ends_with(&format!(
        "/Patient/{FULL}/RelatedPerson/{}",
        person["id"].as_str().unwrap()
    )));
    let none = api.get(&format!("/Patient/{MINIMAL}/RelatedPerson")).await;
    assert_eq!((none.status, &none.body["total"]), (200, &json!(0)));
    assert!(none.body.get("entry").is_none());

    // the back office gives the restricted patient a contact; only the back office sees it
    let bo = server.api_as("back-office");
    let v = bo.get_patient(RESTRICTED).await.version();
    let added = bo.patch(RESTRICTED, v, json!({"patches": [{"op": "add", "path": "/contact/-", "value": {
        "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131", "code": "C"}]}],
        "telecom": [{"system": "phone", "value": "07700900987"}]}}]}))
        .await;
    assert_eq!(added.status, 200, "{}", added.body);
    let seen = bo
        .get(&format!("/Patient/{RESTRICTED}/RelatedPerson"))
        .await;
    assert_eq!(seen.body["total"], 1, "{}", seen.body);
    for role in ["healthcare-worker", "application-restricted"] {
        let other = server
            .api_as(role)
            .get(&format!("/Patient/{RESTRICTED}/RelatedPerson"))
            .await;
        assert_eq!(
            (other.status, &other.body["total"]),
            (200, &json!(0)),
            "{role}: {}",
            other.body
        );
        assert!(!shown(&other).contains("07700900987"), "{role}");
    }
    api.get(&format!("/Patient/{UNKNOWN}/RelatedPerson"))
        .await
        .expect(404, "RESOURCE_NOT_FOUND");
    api.get("/Patient/123/RelatedPerson")
        .await
        .expect(400, "INVALID_RESOURCE_ID");
}

#[tokio::test]
async fn the_audit_trail_reads_as_fhir_audit_events_for_the_back_office() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let bo = server.api_as("back-office");
    let rid = request_id();
    let r = bo
        .send(
            "PATCH",
            &format!("/Patient/{FULL}"),
            &[
                ("X-Request-ID", &rid),
                ("X-Correlation-ID", "corr-audit-1"),
                ("If-Match", "W/\"1\""),
                ("Content-Type", "application/json-patch+json"),
            ],
            Some(
                json!({"patches": [{"op": "replace", "path": "/gender", "value": "male"}]})
                    .to_string(),
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let events = bo.get(&format!("/AuditEvent?entity=Patient/{FULL}")).await;
    assert_eq!(events.status, 200, "{}", events.body);
    assert_eq!(events.body["total"], 1);
    let event = &events.body["entry"][0]["resource"];
    assert_eq!(event["resourceType"], "AuditEvent");
    assert_eq!(event["action"], "U");
    assert_eq!(
        event["agent"][0]["who"]["identifier"]["value"],
        "test-back-office"
    );
    assert_eq!(event["agent"][0]["role"][0]["text"], "back-office");
    assert_eq!(
        event["entity"][0]["what"]["reference"],
        format!("Patient/{FULL}/_history/2")
    );
    let details = event["entity"][0]["detail"].to_string();
    for expected in [rid.as_str(), "corr-audit-1", "\"patch\""] {
        assert!(details.contains(expected), "{expected} in {details}");
    }
    // the same answer by `patient`; nothing for a patient never changed
    let same = bo.get(&format!("/AuditEvent?patient={FULL}")).await;
    assert_eq!(same.body["entry"], events.body["entry"]);
    let none = bo
        .get(&format!("/AuditEvent?entity=Patient/{MINIMAL}"))
        .await;
    assert_eq!(
        (none.body["total"].as_u64(), none.body.get("entry")),
        (Some(0), None)
    );
    bo.get("/AuditEvent").await.expect(400, "MISSING_VALUE");
    bo.get(&format!("/AuditEvent?entity=Patient/{FULL}&agent=x"))
        .await
        .expect(400, "ADDITIONAL_PROPERTIES");
    // the back office's alone
    for role in ["healthcare-worker", "application-restricted", "pcse"] {
        server
            .api_as(role)
            .get(&format!("/AuditEvent?entity=Patient/{FULL}"))
            .await
            .expect(403, "ACCESS_DENIED");
    }
}
