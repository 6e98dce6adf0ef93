//! FHIR conventions generic FHIR tooling relies on: content negotiation, the capability
//! statement, result parameters, Bundle links, last-updated times.

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
