//! Routes around the Patient resource: errors for unknown routes and methods, liveness, the
//! OpenAPI document and the docs page.

use crate::helpers::*;

#[tokio::test]
async fn unknown_paths_and_methods_get_operation_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let api = server.api();
    api.get("/HelloWorld")
        .await
        .expect(400, "UNSUPPORTED_REQUEST")
        .expect_diagnostics("Unsupported path - '/HelloWorld'");
    let rid = request_id();
    for method in ["PUT", "DELETE", "POST"] {
        api.send(
            method,
            &format!("/Patient/{FULL}"),
            &[("X-Request-ID", &rid)],
            Some("{}".into()),
        )
        .await
        .expect(400, "UNSUPPORTED_SERVICE");
    }
    api.get("/Patient/")
        .await
        .expect(400, "UNSUPPORTED_SERVICE");
    // search is not offered yet; PDS answers a search without parameters like this
    api.get("/Patient").await.expect(400, "UNSUPPORTED_SERVICE");
}

#[tokio::test]
async fn ping_openapi_and_docs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let api = server.api();
    let r = api.send("GET", "/_ping", &[], None).await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("pass")));

    let r = api.send("GET", "/openapi.json", &[], None).await;
    assert_eq!(r.status, 200);
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{ROOT}/openapi/openapi.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        r.body, committed,
        "the served OpenAPI document is the committed one"
    );

    // the docs page and its assets are served locally (no CDN)
    let page = api
        .http
        .get(format!("{}/docs/", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(
        !html.contains("https://"),
        "the docs page must not load anything from the internet"
    );
    let init = api
        .http
        .get(format!("{}/docs/swagger-initializer.js", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(init.status(), 200);
    assert!(init.text().await.unwrap().contains("/openapi.json"));
    let bundle = api
        .http
        .get(format!("{}/docs/swagger-ui-bundle.js", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(bundle.status(), 200);
}

#[test]
fn committed_openapi_matches_the_code() {
    let out = std::process::Command::new(BIN)
        .arg("openapi")
        .output()
        .unwrap();
    assert!(out.status.success());
    let generated: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{ROOT}/openapi/openapi.json")).unwrap(),
    )
    .unwrap();
    assert!(
        generated == committed,
        "openapi/openapi.json is out of date; regenerate it with:\n    cargo run -- openapi > openapi/openapi.json"
    );
}

#[tokio::test]
async fn declares_every_status_it_documents_with_an_operation_outcome() {
    // each error status in the document references the OperationOutcome schema
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{ROOT}/openapi/openapi.json")).unwrap(),
    )
    .unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (status, resp) in op["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    let schema = &resp["content"]["application/fhir+json"]["schema"]["$ref"];
                    assert_eq!(
                        schema, "#/components/schemas/OperationOutcome",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
}

#[test]
fn the_fhir_r4_check_really_checks() {
    // the conformance checker would catch a non-FHIR body (so passing tests mean something)
    assert!(
        fhir_errors(
            &serde_json::json!({"resourceType": "Patient", "id": "9000000009", "gender": "mal"})
        )
        .len()
            == 1
    );
    assert!(
        !fhir_errors(&serde_json::json!({"resourceType": "Patient", "birthDate": "1-1-1990"}))
            .is_empty()
    );
    assert!(
        !fhir_errors(&serde_json::json!({"resourceType": "OperationOutcome"})).is_empty(),
        "issue is required"
    );
    assert!(fhir_errors(
        &serde_json::json!({"resourceType": "Patient", "id": "9000000009", "gender": "male"})
    )
    .is_empty());
}

#[test]
fn every_openapi_reference_resolves() {
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{ROOT}/openapi/openapi.json")).unwrap(),
    )
    .unwrap();
    fn refs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(serde_json::Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|c| refs(c, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|c| refs(c, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("external reference {r}"));
        // JSON pointer tokens in component names may contain '.', which needs no escaping
        assert!(doc.pointer(pointer).is_some(), "unresolvable reference {r}");
    }
}
