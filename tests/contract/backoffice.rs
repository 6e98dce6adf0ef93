//! Back-office corrections: merges and unmerges, the sensitive flag, death corrections, roles,
//! history, audit and idempotent retries.

use serde_json::{json, Value};

use crate::helpers::*;

/// Demo NHS numbers by index (0..32).
fn nhs(i: usize) -> String {
    pds_facade::demo::nhs_numbers()[i].to_string()
}

fn ident(n: &str) -> Value {
    json!({"system": "https://fhir.nhs.uk/Id/nhs-number", "value": n})
}

fn merge_body(source: &str, target: &str, preview: bool, reason: Option<&str>) -> Value {
    let mut p = vec![
        json!({"name": "source-patient-identifier", "valueIdentifier": ident(source)}),
        json!({"name": "target-patient-identifier", "valueIdentifier": ident(target)}),
        json!({"name": "preview", "valueBoolean": preview}),
    ];
    if let Some(r) = reason {
        p.push(json!({"name": "reason", "valueString": r}));
    }
    json!({"resourceType": "Parameters", "parameter": p})
}

fn unmerge_body(source: &str) -> Value {
    json!({"resourceType": "Parameters", "parameter": [
        {"name": "source-patient-identifier", "valueIdentifier": ident(source)},
        {"name": "reason", "valueString": "merged in error"}]})
}

async fn post(api: &Api, path: &str, body: &Value) -> Reply {
    api.post_with(path, body, &request_id()).await
}

async fn audit(api: &Api, id: &str) -> Vec<Value> {
    let r = api.get(&format!("/_audit?patient={id}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["entries"].as_array().unwrap().clone()
}

fn operations(entries: &[Value]) -> Vec<&str> {
    entries
        .iter()
        .map(|e| e["operation"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn merge_resolve_edit_and_unmerge() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let (bo, hcw) = (server.api_as("back-office"), server.api());
    let (source, target) = (nhs(9), nhs(8));
    let source_name = hcw.get_patient(&source).await.body["name"].clone();

    let r = post(
        &bo,
        "/Patient/$merge",
        &merge_body(&source, &target, false, Some("duplicate registration")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["resourceType"], "Parameters");
    let result = &r.body["parameter"][1]["resource"];
    assert_eq!(result["id"], target.as_str());
    assert_eq!(result["link"][0]["type"], "replaces");

    // the superseded number resolves to the survivor, in PDS's shape for other roles
    let g = hcw.get_patient(&source).await;
    assert_eq!(
        (g.status, g.body["id"].as_str()),
        (200, Some(target.as_str())),
        "GET of a merged number returns the survivor"
    );
    assert!(
        g.body.get("link").is_none() && g.body.get("active").is_none(),
        "no merge state for healthcare workers"
    );
    assert_eq!(g.header("etag"), Some("W/\"2\""), "the survivor's version");
    let g = hcw
        .get(&format!("/personal-demographics/FHIR/R4/Patient/{source}"))
        .await;
    assert_eq!(g.body["id"], target.as_str());
    let b = bo.get_patient(&source).await;
    assert_eq!(b.body["id"], target.as_str());
    assert_eq!(
        b.body["link"][0]["other"]["reference"],
        format!("Patient/{source}")
    );

    // updates of the merged number are refused, for every role
    for api in [&hcw, &bo] {
        api.patch(&source, 2, json!({"patches": [{"op": "replace", "path": "/gender", "value": "unknown"}]}))
            .await
            .expect(403, "FORBIDDEN_UPDATE")
            .expect_diagnostics("Forbidden update with error - Update Failed - NHS No. supplied has been superseded in a merge");
    }
    // clients cannot write merge state themselves
    bo.patch(
        &target,
        2,
        json!({"patches": [{"op": "remove", "path": "/link"}]}),
    )
    .await
    .expect(400, "INVALID_UPDATE");

    // the survivor is edited, then the merge is undone: both keep their own data
    let edited = hcw
        .patch(
            &target,
            2,
            json!({"patches": [{"op": "replace", "path": "/gender", "value": "unknown"}]}),
        )
        .await;
    assert_eq!(edited.status, 200, "{}", edited.body);
    let u = post(&bo, "/Patient/$unmerge", &unmerge_body(&source)).await;
    assert_eq!(u.status, 200, "{}", u.body);
    let s = hcw.get_patient(&source).await;
    assert_eq!(
        (s.body["id"].as_str(), s.header("etag")),
        (Some(source.as_str()), Some("W/\"3\""))
    );
    assert_eq!(
        s.body["name"], source_name,
        "the source has its own data back"
    );
    let s = bo.get_patient(&source).await;
    assert!(
        s.body.get("link").is_none() && s.body.get("active").is_none(),
        "{}",
        s.body
    );
    let t = bo.get_patient(&target).await;
    assert!(t.body.get("link").is_none(), "{}", t.body);
    assert_eq!(
        (t.body["gender"].as_str(), t.header("etag")),
        (Some("unknown"), Some("W/\"4\"")),
        "the edit made after the merge is kept"
    );
    // the source can be updated again
    let r = hcw
        .patch(
            &source,
            3,
            json!({"patches": [{"op": "replace", "path": "/gender", "value": "unknown"}]}),
        )
        .await;
    assert_eq!(r.status, 200);

    // every step is in the history and the audit trail
    let h = bo.get(&format!("/Patient/{source}/_history")).await;
    assert_eq!(h.body["type"], "history");
    let versions: Vec<&str> = h.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["meta"]["versionId"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["4", "3", "2", "1"]);
    assert_eq!(
        h.body["entry"][2]["resource"]["active"], false,
        "the merged version is kept"
    );
    let a = audit(&bo, &source).await;
    assert_eq!(operations(&a), ["merge", "unmerge", "patch"]);
    assert_eq!(a[0]["reason"], "duplicate registration");
    assert_eq!(a[0]["subject"], "test-back-office");
    assert_eq!(a[0]["role"], "back-office");
    assert_eq!(
        (
            a[0]["version_before"].as_u64(),
            a[0]["version_after"].as_u64()
        ),
        (Some(1), Some(2))
    );
    assert_eq!(a[2]["subject"], "anonymous");
    assert_eq!(
        operations(&audit(&bo, &target).await),
        ["merge", "patch", "unmerge"]
    );
}

#[tokio::test]
async fn chains_cycles_self_preview_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let bo = server.api_as("back-office");
    let (a, b, c, x) = (nhs(10), nhs(11), nhs(12), nhs(13));
    // preview changes nothing
    let p = post(
        &bo,
        "/Patient/$merge",
        &merge_body(&a, &b, true, Some("check")),
    )
    .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(
        p.body["parameter"][0]["resource"]["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("Preview")
    );
    assert_eq!(bo.get_patient(&a).await.body["id"], a.as_str());
    assert_eq!(bo.get_patient(&b).await.header("etag"), Some("W/\"1\""));
    assert!(audit(&bo, &a).await.is_empty());

    // a → b, then b → c: a resolves through the chain
    assert_eq!(
        post(
            &bo,
            "/Patient/$merge",
            &merge_body(&a, &b, false, Some("dup"))
        )
        .await
        .status,
        200
    );
    assert_eq!(
        post(
            &bo,
            "/Patient/$merge",
            &merge_body(&b, &c, false, Some("dup"))
        )
        .await
        .status,
        200
    );
    assert_eq!(bo.get_patient(&a).await.body["id"], c.as_str());
    // merging into a superseded record goes to its survivor
    let r = post(
        &bo,
        "/Patient/$merge",
        &merge_body(&x, &a, false, Some("dup")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["parameter"][1]["resource"]["id"], c.as_str());
    // cycle: c into a (a's survivor is c)
    let r = post(
        &bo,
        "/Patient/$merge",
        &merge_body(&c, &a, false, Some("dup")),
    )
    .await;
    r.expect(400, "INVALID_UPDATE");
    assert!(r.diagnostics().unwrap().contains("cycle"), "{}", r.body);
    // self
    post(
        &bo,
        "/Patient/$merge",
        &merge_body(&c, &c, false, Some("dup")),
    )
    .await
    .expect(400, "INVALID_UPDATE");
    // an already merged source
    let r = post(
        &bo,
        "/Patient/$merge",
        &merge_body(&a, &nhs(14), false, Some("dup")),
    )
    .await;
    r.expect(400, "INVALID_UPDATE");
    assert!(r.diagnostics().unwrap().contains("already been merged"));
    // a live record cannot be unmerged
    post(&bo, "/Patient/$unmerge", &unmerge_body(&c))
        .await
        .expect(400, "INVALID_UPDATE");
    // no reason, unknown numbers, bad numbers, unknown parameters
    post(
        &bo,
        "/Patient/$merge",
        &merge_body(&nhs(15), &nhs(16), false, None),
    )
    .await
    .expect(400, "MISSING_VALUE")
    .expect_diagnostics("Missing value - 'reason'");
    post(
        &bo,
        "/Patient/$merge",
        &merge_body(UNKNOWN, &nhs(16), false, Some("dup")),
    )
    .await
    .expect(404, "RESOURCE_NOT_FOUND");
    post(
        &bo,
        "/Patient/$merge",
        &merge_body("9000000000", &nhs(16), false, Some("dup")),
    )
    .await
    .expect(400, "INVALID_VALUE");
    let mut extra = merge_body(&nhs(15), &nhs(16), false, Some("dup"));
    extra["parameter"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "colour", "valueString": "blue"}));
    post(&bo, "/Patient/$merge", &extra)
        .await
        .expect(400, "ADDITIONAL_PROPERTIES");
    let rid = request_id();
    bo.send(
        "POST",
        "/Patient/$merge",
        &[("X-Request-ID", &rid), ("Content-Type", "text/plain")],
        Some("x".into()),
    )
    .await
    .expect(400, "UNSUPPORTED_SERVICE");
}

#[tokio::test]
async fn role_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let roles = [
        (
            "application-restricted",
            server.api_as("application-restricted"),
        ),
        ("healthcare-worker", server.api_as("healthcare-worker")),
        ("sandbox, no token", server.api()),
    ];
    let patch = json!({"patches": [{"op": "replace", "path": "/gender", "value": "unknown"}]});
    let flag = json!({"patches": [{"op": "replace", "path": "/meta/security/0/code", "value": "R"}], "reason": "at risk"});
    for (name, api) in &roles {
        // reads
        assert_eq!(api.get_patient(FULL).await.status, 200, "{name}");
        assert_eq!(
            api.get(&format!("/Patient/{FULL}/_history")).await.status,
            200,
            "{name}"
        );
        // back-office only
        api.get(&format!("/Patient/{FULL}/_history/1"))
            .await
            .expect(403, "ACCESS_DENIED");
        api.get(&format!("/_audit?patient={FULL}"))
            .await
            .expect(403, "ACCESS_DENIED");
        post(
            api,
            "/Patient/$merge",
            &merge_body(&nhs(17), &nhs(18), false, Some("dup")),
        )
        .await
        .expect(403, "ACCESS_DENIED");
        post(api, "/Patient/$unmerge", &unmerge_body(&nhs(17)))
            .await
            .expect(403, "ACCESS_DENIED");
        // updates
        if *name == "application-restricted" {
            api.patch(FULL, 1, patch.clone())
                .await
                .expect(403, "INVALID_METHOD");
            api.patch(FULL, 1, flag.clone())
                .await
                .expect(403, "INVALID_METHOD");
        } else {
            api.patch(FULL, 1, flag.clone())
                .await
                .expect(403, "FORBIDDEN_UPDATE");
            api.patch(RESTRICTED, 1, patch.clone())
                .await
                .expect(403, "FORBIDDEN_UPDATE");
        }
    }
    // nothing above changed anything; the back office can do all of it
    let bo = server.api_as("back-office");
    assert_eq!(bo.get_patient(FULL).await.header("etag"), Some("W/\"1\""));
    assert_eq!(
        bo.get(&format!("/Patient/{FULL}/_history/1")).await.status,
        200
    );
    assert_eq!(bo.patch(RESTRICTED, 1, patch.clone()).await.status, 200);
    assert_eq!(bo.patch(FULL, 1, flag).await.status, 200);
    assert_eq!(
        post(
            &bo,
            "/Patient/$merge",
            &merge_body(&nhs(17), &nhs(18), false, Some("dup"))
        )
        .await
        .status,
        200
    );
    bo.get(&format!("/Patient/{FULL}/_history/9"))
        .await
        .expect(404, "RESOURCE_NOT_FOUND");
    bo.get(&format!("/Patient/{FULL}/_history/x"))
        .await
        .expect(400, "INVALID_VALUE");
    bo.get("/_audit").await.expect(400, "MISSING_VALUE");
}

#[tokio::test]
async fn sensitive_flag_set_and_cleared_by_the_back_office() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let (bo, hcw) = (server.api_as("back-office"), server.api());
    let id = SEVERAL_TELECOMS;
    let set = |code: &str, display: &str| {
        json!([
        {"op": "replace", "path": "/meta/security/0/code", "value": code},
        {"op": "replace", "path": "/meta/security/0/display", "value": display}])
    };
    bo.patch(id, 1, json!({"patches": set("R", "restricted")}))
        .await
        .expect(400, "MISSING_VALUE");
    let r = bo
        .patch(
            id,
            1,
            json!({"patches": set("R", "restricted"), "reason": "at risk of harm"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["telecom"][0]["value"], "01632960406",
        "the back office sees all"
    );
    let h = hcw.get_patient(id).await;
    assert!(
        h.body.get("telecom").is_none() && h.body.get("address").is_none(),
        "{}",
        h.body
    );
    // the unrestricted version 1 is redacted in the history too
    let hist = hcw.get(&format!("/Patient/{id}/_history")).await;
    assert!(
        !hist.body.to_string().contains("01632960406"),
        "{}",
        hist.body
    );
    assert!(bo
        .get(&format!("/Patient/{id}/_history"))
        .await
        .body
        .to_string()
        .contains("01632960406"));

    // V is at least as strict as R
    let r = bo
        .patch(
            id,
            2,
            json!({"patches": set("V", "very restricted"), "reason": "court order"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(hcw.get_patient(id).await.body.get("telecom").is_none());
    hcw.patch(
        id,
        3,
        json!({"patches": [{"op": "replace", "path": "/gender", "value": "unknown"}]}),
    )
    .await
    .expect(403, "FORBIDDEN_UPDATE");

    let r = bo
        .patch(
            id,
            3,
            json!({"patches": set("U", "unrestricted"), "reason": "risk has passed"}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        hcw.get_patient(id).await.body["telecom"][0]["value"],
        "01632960406"
    );
    assert_eq!(operations(&audit(&bo, id).await), ["flag", "flag", "flag"]);
}

#[tokio::test]
async fn death_corrections() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let (bo, hcw) = (server.api_as("back-office"), server.api());
    let url =
        "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-DeathNotificationStatus";
    let remove = json!([{"op": "test", "path": "/extension/0/url", "value": url}, {"op": "remove", "path": "/extension/0"}, {"op": "remove", "path": "/deceasedDateTime"}]);
    hcw.patch(INFORMAL_DEATH, 1, json!({"patches": remove}))
        .await
        .expect(403, "FORBIDDEN_UPDATE");
    bo.patch(INFORMAL_DEATH, 1, json!({"patches": remove}))
        .await
        .expect(400, "MISSING_VALUE");
    let r = bo
        .patch(
            INFORMAL_DEATH,
            1,
            json!({"patches": remove, "reason": "recorded against the wrong patient"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.get("deceasedDateTime").is_none() && r.body.get("extension").is_none());
    assert!(
        hcw.get_patient(INFORMAL_DEATH)
            .await
            .body
            .get("deceasedDateTime")
            .is_none(),
        "alive again"
    );
    let old = bo
        .get(&format!("/Patient/{INFORMAL_DEATH}/_history/1"))
        .await;
    assert_eq!(
        old.body["deceasedDateTime"], "2025-10-03T00:00:00+00:00",
        "history keeps what was removed"
    );
    let a = audit(&bo, INFORMAL_DEATH).await;
    assert_eq!(
        (a[0]["operation"].as_str(), a[0]["reason"].as_str()),
        (
            Some("death-correction"),
            Some("recorded against the wrong patient")
        )
    );
    assert_eq!(a[0]["patch"][1]["path"], "/extension/0");

    // the back office may correct a formal death too
    let r = bo.patch(FORMAL_DEATH, 1, json!({"patches": [{"op": "replace", "path": "/deceasedDateTime", "value": "2024-12-18T00:00:00+00:00"}], "reason": "registrar's correction"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn retries_with_the_same_request_id_apply_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let hcw = server.api();
    let bo = server.api_as("back-office");
    let rid = request_id();
    let body =
        json!({"patches": [{"op": "replace", "path": "/gender", "value": "unknown"}]}).to_string();
    let send = |rid: String, body: String, if_match: &'static str| {
        let api = &hcw;
        async move {
            api.send(
                "PATCH",
                &format!("/Patient/{FULL}"),
                &[
                    ("X-Request-ID", &rid),
                    ("If-Match", if_match),
                    ("Content-Type", "application/json-patch+json"),
                ],
                Some(body),
            )
            .await
        }
    };
    let first = send(rid.clone(), body.clone(), "W/\"1\"").await;
    let again = send(rid.clone(), body.clone(), "W/\"1\"").await;
    assert_eq!((first.status, again.status), (200, 200));
    assert_eq!(first.body, again.body);
    assert_eq!(again.header("etag"), Some("W/\"2\""));
    assert_eq!(
        hcw.get_patient(FULL).await.header("etag"),
        Some("W/\"2\""),
        "applied once"
    );
    // the same id for a different request
    let other =
        json!({"patches": [{"op": "replace", "path": "/gender", "value": "male"}]}).to_string();
    let r = send(rid.clone(), other, "W/\"2\"").await;
    r.expect(422, "INVALID_VALUE");
    assert!(
        r.diagnostics().unwrap().contains("already used"),
        "{}",
        r.body
    );
    // ...or the same request from someone else
    let r = bo
        .send(
            "PATCH",
            &format!("/Patient/{FULL}"),
            &[
                ("X-Request-ID", &rid),
                ("If-Match", "W/\"1\""),
                ("Content-Type", "application/json-patch+json"),
            ],
            Some(body.clone()),
        )
        .await;
    r.expect(422, "INVALID_VALUE");

    // concurrent duplicates of one request: one change, every answer the same
    let rid2 = request_id();
    let body2 =
        json!({"patches": [{"op": "replace", "path": "/gender", "value": "female"}]}).to_string();
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (api, rid2, body2) = (server.api(), rid2.clone(), body2.clone());
        tasks.push(tokio::spawn(async move {
            api.send(
                "PATCH",
                &format!("/Patient/{FULL}"),
                &[
                    ("X-Request-ID", &rid2),
                    ("If-Match", "W/\"2\""),
                    ("Content-Type", "application/json-patch+json"),
                ],
                Some(body2),
            )
            .await
        }));
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(
            (r.status, r.header("etag")),
            (200, Some("W/\"3\"")),
            "{}",
            r.body
        );
    }
    assert_eq!(hcw.get_patient(FULL).await.header("etag"), Some("W/\"3\""));
    assert_eq!(audit(&bo, FULL).await.len(), 2);

    // merges too
    let m = merge_body(&nhs(20), &nhs(21), false, Some("dup"));
    let mrid = request_id();
    let r1 = bo.post_with("/Patient/$merge", &m, &mrid).await;
    let r2 = bo.post_with("/Patient/$merge", &m, &mrid).await;
    assert_eq!((r1.status, r2.status), (200, 200));
    assert_eq!(r1.body, r2.body);
    assert_eq!(audit(&bo, &nhs(20)).await.len(), 1, "merged once");
}

/// A restricted patient whose every locating value carries `marker`.
fn restricted_patient(rng: &mut Rng, nhs: &str, k: usize) -> (Value, Vec<String>) {
    let postcode = format!("ZX{} {}QQ", k % 90 + 1, k % 9);
    let phone = format!("07700900{:03}", 100 + k);
    let email = format!("hidden{k}.marker@example.com");
    let line = format!("{} Hiddenmarker Road", 10 + k);
    let gp = format!("H{:05}", k);
    let pharmacy = format!("PH{:03}", k);
    let city = format!("Secretown{k}");
    let mut p = json!({"resourceType": "Patient", "id": nhs,
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs}],
        "meta": {"versionId": "1", "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
            "code": if rng.chance(30) { "V" } else { "R" }, "display": "restricted"}]},
        "name": [{"use": "usual", "family": "Concealed", "given": ["Person"]}],
        "gender": "female", "birthDate": "1985-05-05"});
    let mut markers = vec![];
    if rng.chance(80) {
        p["address"] = json!([{"use": "home", "line": [line], "postalCode": postcode}]);
        markers.extend([line, postcode]);
    }
    if rng.chance(70) {
        p["telecom"] = json!([{"system": "phone", "use": "mobile", "value": phone}, {"system": "email", "use": "home", "value": email}]);
        markers.extend([phone, email]);
    }
    if rng.chance(60) {
        p["generalPractitioner"] = json!([{"type": "Organization", "identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": gp}}]);
        markers.push(gp);
    }
    let mut ext = vec![];
    if rng.chance(50) {
        ext.push(json!({"url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NominatedPharmacy",
            "valueReference": {"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": pharmacy}}}));
        markers.push(pharmacy);
    }
    if rng.chance(50) {
        ext.push(json!({"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace", "valueAddress": {"city": city}}));
        markers.push(city);
    }
    if !ext.is_empty() {
        p["extension"] = Value::Array(ext);
    }
    if rng.chance(30) {
        p["contact"] = json!([{"relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131", "code": "C"}]}],
            "telecom": [{"system": "phone", "value": format!("07700900{:03}", 600 + k)}]}]);
        markers.push(format!("07700900{:03}", 600 + k));
    }
    (p, markers)
}

#[tokio::test]
async fn no_restricted_field_reaches_other_roles() {
    restricted_fields_reach_no_other_role("text").await
}

#[tokio::test]
async fn no_restricted_field_reaches_other_roles_nor_the_json_log() {
    restricted_fields_reach_no_other_role("json").await
}

/// The restricted-data property test, the server logging in `log_format`.
async fn restricted_fields_reach_no_other_role(log_format: &str) {
    let mut rng = Rng(0x5EED_2026_1127);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pds.redb");
    let ids: Vec<String> = (0..24)
        .filter_map(|i| {
            pds_facade::domain::NhsNumber::from_prefix(999_200_000 + i).map(|n| n.to_string())
        })
        .collect();
    let mut lines = String::new();
    let mut markers = Vec::new();
    for (k, id) in ids.iter().enumerate() {
        let (p, m) = restricted_patient(&mut rng, id, k);
        lines.push_str(&p.to_string());
        lines.push('\n');
        markers.extend(m);
    }
    let file = dir.path().join("restricted.ndjson");
    std::fs::write(&file, lines).unwrap();
    let out = std::process::Command::new(BIN)
        .arg("import")
        .args(store_of(&db))
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let server = Server::start(&db, &["--demo", "--log-format", log_format]);
    let bo = server.api_as("back-office");
    // some restricted records take part in merges, both as source and as target
    for i in 0..4 {
        let (s, t) = (&ids[rng.below(ids.len())], &ids[rng.below(ids.len())]);
        let _ = post(
            &bo,
            "/Patient/$merge",
            &merge_body(s, t, false, Some("property test")),
        )
        .await;
        let _ = post(
            &bo,
            "/Patient/$merge",
            &merge_body(&nhs(22 + i), s, false, Some("property test")),
        )
        .await;
    }
    // and some were edited by the back office, so they have history
    for id in ids.iter().take(6) {
        let v = bo
            .get_patient(id)
            .await
            .header("etag")
            .map(str::to_string)
            .unwrap();
        let v: u32 = v
            .trim_start_matches("W/\"")
            .trim_end_matches('"')
            .parse()
            .unwrap();
        let _ = bo.patch(id, v, json!({"patches": [{"op": "replace", "path": "/birthDate", "value": "1985-05-06"}]})).await;
    }
    let others = [
        server.api(),
        server.api_as("healthcare-worker"),
        server.api_as("application-restricted"),
    ];
    let mut checked = 0;
    let mut request_ids = Vec::new();
    for round in 0..150 {
        let api = &others[round % others.len()];
        let id = &ids[rng.below(ids.len())];
        let base = if rng.chance(50) {
            ""
        } else {
            "/personal-demographics/FHIR/R4"
        };
        let reply = match rng.below(9) {
            0 | 1 => api.get(&format!("{base}/Patient/{id}")).await,
            2 => api.get(&format!("{base}/Patient/{id}/_history")).await,
            3 => api.get(&format!("{base}/Patient/{id}/_history/1")).await,
            4 => {
                let ops = match rng.below(4) {
                    0 => {
                        json!([{"op": "test", "path": "/address/0/postalCode", "value": "AB1 2CD"}])
                    }
                    1 => {
                        json!([{"op": "replace", "path": "/telecom/0/id", "value": "nope"}, {"op": "replace", "path": "/telecom/0/value", "value": "1"}])
                    }
                    2 => json!([{"op": "remove", "path": "/generalPractitioner/0"}]),
                    _ => json!([{"op": "replace", "path": "/gender", "value": "male"}]),
                };
                api.patch(id, 1 + rng.below(3) as u32, json!({ "patches": ops }))
                    .await
            }
            5 => api.get(&format!("/_audit?patient={id}")).await,
            6 => {
                // by name: restricted records come back, redacted
                let r = api.get(&format!("{base}/Patient?family=Concealed&birthdate=ge1985-05-05&birthdate=le1985-05-06")).await;
                assert!(r.status == 200, "{}", r.body);
                r
            }
            7 => {
                // by one of their own postcodes or GP codes: never found, not even counted
                let m = &markers[rng.below(markers.len())];
                let q = if m.starts_with("ZX") {
                    format!("address-postalcode={}", m.replace(' ', "%20"))
                } else {
                    format!("general-practitioner={m}")
                };
                let r = api.get(&format!("{base}/Patient?family=Concealed&birthdate=ge1985-05-05&birthdate=le1985-05-06&{q}")).await;
                assert!(r.status == 200 && r.body["total"] == 0, "{q}: {}", r.body);
                r
            }
            _ => api.get(&format!("{base}/Patient?_fuzzy-match=true&family=Concealed&given=Person&birthdate=1985-05-05")).await,
        };
        request_ids.extend(reply.header("x-request-id").map(str::to_string));
        let text = shown(&reply);
        for m in &markers {
            assert!(
                !text.contains(m.as_str()),
                "restricted value {m} reached a non-back-office role: {text}"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 150);
    // the markers are really there for the back office
    let all: String = {
        let mut s = String::new();
        for id in &ids {
            s.push_str(
                &bo.get(&format!("/Patient/{id}/_history"))
                    .await
                    .body
                    .to_string(),
            );
        }
        s
    };
    assert!(
        markers.iter().all(|m| all.contains(m.as_str())),
        "the test data carries every marker"
    );
    // the log at the default level (info) has a line per request, carrying its X-Request-ID,
    // and none of the restricted values, NHS numbers (routes are templates), names searched
    // for, or credentials — whoever asked
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert_eq!(request_ids.len(), 150);
    let logged_ids: Vec<String> = match log_format {
        "json" => log
            .lines()
            .map(|line| {
                serde_json::from_str::<Value>(line)
                    .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"))
            })
            .filter(|l| l["fields"]["message"] == "request")
            .filter_map(|l| l["span"]["request_id"].as_str().map(str::to_string))
            .collect(),
        _ => log
            .lines()
            .filter(|l| l.contains("}: request "))
            .filter_map(|l| {
                let (_, rest) = l.split_once("request_id=\"")?;
                Some(rest.split_once('"')?.0.to_string())
            })
            .collect(),
    };
    for rid in &request_ids {
        assert!(
            logged_ids.contains(rid),
            "no request line carries X-Request-ID {rid}:\n{log}"
        );
    }
    let tokens: Vec<&String> = others
        .iter()
        .chain([&bo])
        .filter_map(|a| a.token.as_ref())
        .collect();
    for secret in markers
        .iter()
        .chain(tokens)
        .chain(&ids)
        .map(String::as_str)
        .chain(["Concealed", "Person", RESTRICTED, FULL])
    {
        assert!(!log.contains(secret), "{secret} is in the log:\n{log}");
    }
}
