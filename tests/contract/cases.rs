//! Case work through the API: a practice's incident as a `Task`, moved through its life cycle
//! by the roles the table allows, the NBO's corrections recorded on it in the same
//! transaction, and the practices concerned told the outcome by `Communication`s.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::helpers::*;

const KIND: &str = "urn:pds-facade:fhir:CodeSystem:case-kind";
const PART: &str = "urn:pds-facade:fhir:CodeSystem:case-part";
const NHS_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
const REQUEST_ID_SYSTEM: &str = "urn:pds-facade:fhir:Id:request-id";

/// Demo NHS numbers by index.
fn nhs(i: usize) -> String {
    pds_facade::demo::nhs_numbers()[i].to_string()
}

fn ident(n: &str) -> Value {
    json!({"system": NHS_SYSTEM, "value": n})
}

fn part(code: &str) -> Value {
    json!({"coding": [{"system": PART, "code": code}]})
}

/// A new case's body: its kind, patient, (for a duplicate) the other number, and evidence.
fn case_body(kind: &str, patient: Option<&str>, other: Option<&str>) -> Value {
    let mut body = json!({
        "resourceType": "Task",
        "code": {"coding": [{"system": KIND, "code": kind}]},
        "description": format!("A {kind} incident seen at the surgery"),
        "input": [{"type": part("evidence"), "valueString": "Seen on the practice system"}],
    });
    if let Some(p) = patient {
        body["for"] = json!({"identifier": ident(p)});
    }
    if let Some(o) = other {
        body["input"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": part("other-nhs-number"), "valueIdentifier": ident(o)}));
    }
    body
}

async fn raise(api: &Api, body: &Value) -> Reply {
    api.post_with("/Task", body, &request_id()).await
}

/// Raises a case and checks it was stored; returns the Task.
async fn raised(api: &Api, body: &Value) -> Value {
    let r = raise(api, body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body
}

async fn patch_task(api: &Api, id: &str, version: u32, ops: Value) -> Reply {
    let if_match = format!("W/\"{version}\"");
    api.send(
        "PATCH",
        &format!("/Task/{id}"),
        &[
            ("X-Request-ID", &request_id()),
            ("If-Match", &if_match),
            ("Content-Type", "application/json-patch+json"),
        ],
        Some(ops.to_string()),
    )
    .await
}

/// Moves `task` (read again first) with `ops`, expecting success; returns the new version.
async fn step(api: &Api, id: &str, ops: Value) -> Value {
    let current = api.get(&format!("/Task/{id}")).await;
    assert_eq!(current.status, 200, "{}", current.body);
    let r = patch_task(api, id, current.version(), ops).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("etag"),
        Some(format!("W/\"{}\"", current.version() + 1).as_str())
    );
    r.body
}

fn to(status: &str) -> Value {
    json!({"op": "replace", "path": "/status", "value": status})
}

fn note(text: &str) -> Value {
    json!({"op": "add", "path": "/note/-", "value": {"text": text}})
}

fn output(code: &str, text: &str) -> Value {
    json!({"op": "add", "path": "/output/-", "value": {"type": part(code), "valueString": text}})
}

fn id_of(task: &Value) -> String {
    task["id"].as_str().unwrap().to_string()
}

/// The ODS code of the practice a patient is registered with (read by the back office).
async fn gp_of(bo: &Api, nhs: &str) -> String {
    let r = bo.get_patient(nhs).await;
    r.body["generalPractitioner"][0]["identifier"]["value"]
        .as_str()
        .unwrap_or_else(|| panic!("{nhs} has a GP: {}", r.body))
        .to_string()
}

fn entries(bundle: &Reply) -> Vec<Value> {
    assert_eq!(bundle.status, 200, "{}", bundle.body);
    bundle.body["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e["resource"].clone())
        .collect()
}

fn ids(resources: &[Value]) -> BTreeSet<String> {
    resources.iter().map(id_of).collect()
}

/// The corrections recorded on a Task: `(operation, patient reference, request id)`.
fn corrections(task: &Value) -> Vec<(String, String, String)> {
    task["output"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["type"]["coding"][0]["code"] == "correction")
        .map(|o| {
            assert_eq!(
                o["valueReference"]["identifier"]["system"],
                REQUEST_ID_SYSTEM
            );
            (
                o["type"]["text"].as_str().unwrap().to_string(),
                o["valueReference"]["reference"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                o["valueReference"]["identifier"]["value"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect()
}

fn case_param(id: &str) -> Value {
    json!({"name": "case", "valueReference": {"reference": format!("Task/{id}")}})
}

/// A practice raises a duplicate; PCSE asks it for more, it answers, PCSE passes the case to
/// the NBO, the NBO merges the two records on the case and completes it; both practices are
/// told what to do. Every refused move on the way names the moves the caller could make.
#[tokio::test]
async fn a_duplicate_from_incident_to_merge_and_follow_on_action() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let (bo, pcse) = (server.api_as("back-office"), server.api_as("pcse"));
    let (target, source) = (nhs(10), nhs(11));
    let (gp, other_gp) = (gp_of(&bo, &target).await, gp_of(&bo, &source).await);
    assert_ne!(
        gp, other_gp,
        "the demo patients 10 and 11 are at different practices"
    );
    let practice = server.api_as_practice(&gp);

    // only case-work roles raise cases
    let body = case_body("duplicate-nhs-number", Some(&target), Some(&source));
    raise(&server.api(), &body)
        .await
        .expect(403, "ACCESS_DENIED");
    let r = raise(&practice, &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let task = r.body.clone();
    let id = id_of(&task);
    assert_eq!(r.header("etag"), Some("W/\"1\""));
    assert!(r
        .header("location")
        .unwrap()
        .ends_with(&format!("/Task/{id}")));
    assert_eq!(task["status"], "requested");
    assert_eq!(task["intent"], "order");
    assert_eq!(task["owner"]["identifier"]["value"], "pcse");
    assert_eq!(task["requester"]["identifier"]["value"], gp.as_str());
    assert_eq!(task["for"]["identifier"]["value"], target.as_str());
    // due ten weeks after it was logged
    let authored = &task["authoredOn"].as_str().unwrap()[..10];
    let due = task["restriction"]["period"]["end"].as_str().unwrap();
    let day = |s: &str| {
        time::Date::parse(
            s,
            &time::macros::format_description!("[year]-[month]-[day]"),
        )
        .unwrap()
    };
    assert_eq!(day(due) - day(authored), time::Duration::days(70));

    // who sees it: the requester, the other patient's practice, PCSE — not a third practice
    let stranger = server.api_as_practice("Y99999");
    stranger
        .get(&format!("/Task/{id}"))
        .await
        .expect(404, "RESOURCE_NOT_FOUND");
    assert!(!ids(&entries(&stranger.get("/Task").await)).contains(&id));
    assert!(!ids(&entries(
        &stranger.get(&format!("/Task?patient={target}")).await
    ))
    .contains(&id));
    let other_practice = server.api_as_practice(&other_gp);
    assert_eq!(other_practice.get(&format!("/Task/{id}")).await.status, 200);
    assert!(ids(&entries(&practice.get("/Task").await)).contains(&id));
    assert!(ids(&entries(
        &pcse
            .get("/Task?status=requested&code=duplicate-nhs-number")
            .await
    ))
    .contains(&id));
    server
        .api()
        .get(&format!("/Task/{id}"))
        .await
        .expect(403, "ACCESS_DENIED");

    // the practice may not triage, PCSE may not complete: each refusal names the moves allowed
    patch_task(&practice, &id, 1, json!([to("received")]))
        .await
        .expect(409, "INVALID_UPDATE")
        .expect_diagnostics("The practice role may not move a case from requested to received; the moves it may make from requested are: none");
    patch_task(&pcse, &id, 1, json!([to("completed")]))
        .await
        .expect(409, "INVALID_UPDATE")
        .expect_diagnostics("The pcse role may not move a case from requested to completed; the moves it may make from requested are: received, rejected, cancelled");
    // a stale version is refused
    step(&pcse, &id, json!([to("received")])).await;
    patch_task(&pcse, &id, 1, json!([note("late")]))
        .await
        .expect(409, "RESOURCE_VERSION_MISMATCH");

    // PCSE asks the practice: a question is needed; the practice is sent it
    let r = patch_task(&pcse, &id, 2, json!([to("on-hold")])).await;
    r.expect(400, "MISSING_VALUE");
    let held = step(
        &pcse,
        &id,
        json!([to("on-hold"), note("Which address did the patient give?")]),
    )
    .await;
    assert_eq!(
        held["businessStatus"]["text"],
        "awaiting practice information"
    );
    assert_eq!(
        held["note"][0]["authorString"]
            .as_str()
            .unwrap()
            .split(' ')
            .next(),
        Some("PCSE")
    );
    let inbox = entries(
        &practice
            .get(&format!("/Communication?recipient={gp}&status=in-progress"))
            .await,
    );
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    let question = &inbox[0];
    assert_eq!(
        question["category"][0]["coding"][0]["code"],
        "information-request"
    );
    assert_eq!(question["about"][0]["reference"], format!("Task/{id}"));
    assert!(question["payload"][0]["contentString"]
        .as_str()
        .unwrap()
        .contains("Which address"));
    // another practice may not read this practice's messages
    stranger
        .get(&format!("/Communication?recipient={gp}"))
        .await
        .expect(403, "ACCESS_DENIED");
    stranger
        .get(&format!("/Communication/{}", id_of(question)))
        .await
        .expect(404, "RESOURCE_NOT_FOUND");
    // the practice marks it read, once
    let read = [
        ("Content-Type", "application/json-patch+json"),
        ("If-Match", "W/\"1\""),
    ];
    let mark = json!([to("completed")]).to_string();
    let path = format!("/Communication/{}", id_of(question));
    let rid = request_id();
    let headers = [read[0], read[1], ("X-Request-ID", rid.as_str())];
    let r = stranger
        .send("PATCH", &path, &headers, Some(mark.clone()))
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = practice.send("PATCH", &path, &headers, Some(mark)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "completed");
    assert!(entries(
        &practice
            .get(&format!("/Communication?recipient={gp}&status=unread"))
            .await
    )
    .is_empty());

    // the practice answers; the case is back with PCSE
    stranger
        .send(
            "PATCH",
            &format!("/Task/{id}"),
            &[
                ("Content-Type", "application/json-patch+json"),
                ("If-Match", "W/\"3\""),
                ("X-Request-ID", &request_id()),
            ],
            Some(json!([to("received"), note("x")]).to_string()),
        )
        .await
        .expect(404, "RESOURCE_NOT_FOUND");
    patch_task(
        &other_practice,
        &id,
        3,
        json!([to("received"), note("Not ours to answer")]),
    )
    .await
    .expect(403, "ACCESS_DENIED");
    let answered = step(
        &practice,
        &id,
        json!([
            to("received"),
            note("12 Acre Lane, as on the second record")
        ]),
    )
    .await;
    assert!(answered.get("businessStatus").is_none());
    assert_eq!(
        answered["note"][1]["authorString"],
        format!("GP practice {gp}")
    );

    // the NBO may not take corrections for a case PCSE still holds
    let merge = |preview: bool, case: Option<&str>| {
        let mut p = vec![
            json!({"name": "source-patient-identifier", "valueIdentifier": ident(&source)}),
            json!({"name": "target-patient-identifier", "valueIdentifier": ident(&target)}),
            json!({"name": "preview", "valueBoolean": preview}),
            json!({"name": "reason", "valueString": "duplicate registration"}),
        ];
        p.extend(case.map(case_param));
        p
    };
    bo.operation("$merge", json!(merge(false, Some(&id))))
        .await
        .expect(409, "INVALID_UPDATE");
    assert_eq!(bo.get_patient(&source).await.version(), 1, "nothing merged");

    // PCSE passes it to the NBO
    let accepted = step(&pcse, &id, json!([to("accepted")])).await;
    assert_eq!(accepted["owner"]["identifier"]["value"], "nbo");
    assert!(ids(&entries(&bo.get("/Task?owner=nbo&status=accepted").await)).contains(&id));
    patch_task(
        &pcse,
        &id,
        accepted["meta"]["versionId"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
        json!([to("in-progress")]),
    )
    .await
    .expect(409, "INVALID_UPDATE");

    // the merge preview changes nothing; the merge itself is recorded on the case
    let before = bo.get(&format!("/Task/{id}")).await.version();
    let r = bo.operation("$merge", json!(merge(true, Some(&id)))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(bo.get(&format!("/Task/{id}")).await.version(), before);
    let mrid = request_id();
    let body = json!({"resourceType": "Parameters", "parameter": merge(false, Some(&id))});
    let r = bo.post_with("/Patient/$merge", &body, &mrid).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let worked = bo.get(&format!("/Task/{id}")).await;
    assert_eq!(worked.version(), before + 1);
    assert_eq!(worked.body["status"], "in-progress");
    let recorded = corrections(&worked.body);
    let target_version = bo.get_patient(&target).await.version();
    assert!(
        recorded.contains(&(
            "merge".into(),
            format!("Patient/{target}/_history/{target_version}"),
            mrid.clone()
        )),
        "{recorded:?}"
    );
    assert!(recorded.iter().all(|(_, _, rid)| *rid == mrid));
    let audit = bo.get(&format!("/_audit?patient={target}")).await.body;
    assert!(audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["request_id"] == mrid.as_str()));
    // a retry of the merge records nothing twice
    let r = bo.post_with("/Patient/$merge", &body, &mrid).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(bo.get(&format!("/Task/{id}")).await.version(), before + 1);

    // completion needs a resolution and a follow-on action
    let version = before + 1;
    patch_task(
        &bo,
        &id,
        version,
        json!([to("completed"), output("resolution", "Records merged")]),
    )
    .await
    .expect(400, "MISSING_VALUE");
    let done = step(
        &bo,
        &id,
        json!([to("completed"), output("resolution", format!("Merged: the patient is now known by NHS number {target}").as_str()),
               output("follow-on-action", format!("Re-register the patient under NHS number {target} and merge the practice records").as_str())]),
    )
    .await;
    assert_eq!(done["status"], "completed");

    // both practices are told, once each
    for (ods, api) in [(&gp, &practice), (&other_gp, &other_practice)] {
        let told: Vec<Value> = entries(
            &api.get(&format!(
                "/Communication?recipient={ods}&status=in-progress"
            ))
            .await,
        )
        .into_iter()
        .filter(|m| m["category"][0]["coding"][0]["code"] == "case-outcome")
        .collect();
        assert_eq!(told.len(), 1, "{ods}: {told:?}");
        let text: Vec<&str> = told[0]["payload"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["contentString"].as_str().unwrap())
            .collect();
        assert!(
            text.iter().any(|t| t.contains("Re-register the patient")),
            "{text:?}"
        );
        assert_eq!(told[0]["about"][0]["reference"], format!("Task/{id}"));
    }
    assert!(
        ids(&entries(
            &pcse.get(&format!("/Communication?about=Task/{id}")).await
        ))
        .len()
            >= 3
    );

    // a closed case takes nothing more: no move, no note, no correction
    patch_task(&bo, &id, version + 1, json!([note("one more thing")]))
        .await
        .expect(409, "INVALID_UPDATE");
    let unmerge = json!([{"name": "source-patient-identifier", "valueIdentifier": ident(&source)},
                         {"name": "reason", "valueString": "merged in error"}, case_param(&id)]);
    let merged = bo.get(&format!("/Patient/{source}/_history")).await.body;
    bo.operation("$unmerge", unmerge)
        .await
        .expect(409, "INVALID_UPDATE");
    assert_eq!(
        bo.get(&format!("/Patient/{source}/_history")).await.body,
        merged,
        "still merged"
    );

    // every version of the case is kept, newest first
    let history = entries(&pcse.get(&format!("/Task/{id}/_history")).await);
    let versions: Vec<&str> = history
        .iter()
        .map(|t| t["meta"]["versionId"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (1..=version + 1).rev().map(|v| v.to_string()).collect();
    assert_eq!(versions, expected);
    let statuses: Vec<&str> = history
        .iter()
        .rev()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "requested",
            "received",
            "on-hold",
            "received",
            "accepted",
            "in-progress",
            "completed"
        ]
    );
    stranger
        .get(&format!("/Task/{id}/_history"))
        .await
        .expect(404, "RESOURCE_NOT_FOUND");
}

/// PCSE rejects and cancels with a reason; the reason is needed and kept.
#[tokio::test]
async fn rejected_and_cancelled_cases_carry_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let bo = server.api_as("back-office");
    let pcse = server.api_as("pcse");
    let p = nhs(12);
    let practice = server.api_as_practice(&gp_of(&bo, &p).await);
    for end in ["rejected", "cancelled"] {
        let id = id_of(
            &raised(
                &practice,
                &case_body("incorrect-demographics", Some(&p), None),
            )
            .await,
        );
        patch_task(&pcse, &id, 1, json!([to(end)]))
            .await
            .expect(400, "MISSING_VALUE");
        let reason =
            json!({"op": "add", "path": "/statusReason", "value": {"text": "Raised in error"}});
        let closed = step(&pcse, &id, json!([to(end), reason])).await;
        assert_eq!(closed["statusReason"]["text"], "Raised in error");
        assert!(ids(&entries(&pcse.get(&format!("/Task?status={end}")).await)).contains(&id));
        assert!(!ids(&entries(&pcse.get("/Task?status=requested,received").await)).contains(&id));
    }
}

/// A correction refused for any reason leaves both the record and its case as they were; one
/// for a case that does not exist is refused before anything is written.
#[tokio::test]
async fn a_refused_correction_changes_neither_record_nor_case() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let (bo, pcse) = (server.api_as("back-office"), server.api_as("pcse"));
    let p = nhs(13);
    let practice = server.api_as_practice(&gp_of(&bo, &p).await);
    let id = id_of(
        &raised(
            &practice,
            &case_body("incorrect-demographics", Some(&p), None),
        )
        .await,
    );
    let gender = |g: &str| json!([{"op": "replace", "path": "/gender", "value": g}]);
    let now = bo.get_patient(&p).await.body["gender"].clone();
    let new = if now == "unknown" { "male" } else { "unknown" };
    let patch = |case: &str| json!({"patches": gender(new), "reason": "the patient's passport", "case": case});

    // the case is not with the NBO yet
    bo.patch(&p, 1, patch(&format!("Task/{id}")))
        .await
        .expect(409, "INVALID_UPDATE");
    // no such case
    bo.patch(&p, 1, patch("Task/no-such-case"))
        .await
        .expect(404, "RESOURCE_NOT_FOUND");
    // only the back office records corrections
    step(&pcse, &id, json!([to("received")])).await;
    step(&pcse, &id, json!([to("accepted")])).await;
    let hcw = server.api();
    assert_eq!(hcw.patch(&p, 1, patch(&id)).await.status, 403);
    // a correction PDS's rules refuse (a stale version)
    bo.patch(&p, 7, patch(&id))
        .await
        .expect(409, "RESOURCE_VERSION_MISMATCH");
    // a correction PDS's rules refuse (bad value)
    let bad = json!({"patches": gender("other"), "reason": "r", "case": id});
    assert_eq!(bo.patch(&p, 1, bad).await.status, 400);

    assert_eq!(
        bo.get_patient(&p).await.version(),
        1,
        "the record is unchanged"
    );
    let case = bo.get(&format!("/Task/{id}")).await;
    assert_eq!(
        (case.version(), case.body["status"].as_str()),
        (3, Some("accepted"))
    );
    assert!(corrections(&case.body).is_empty());

    // the same correction, allowed: both written
    let r = bo.patch(&p, 1, patch(&id)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let case = bo.get(&format!("/Task/{id}")).await;
    assert_eq!(case.body["status"], "in-progress");
    assert_eq!(
        corrections(&case.body)[0].1,
        format!("Patient/{p}/_history/2")
    );
}

/// kill -9 while corrections tied to a case are being written: afterwards every correction the
/// record's audit trail holds is on the case and every one on the case is in the audit trail,
/// and none that was acknowledged is missing.
#[tokio::test]
async fn kill_9_keeps_a_correction_and_its_case_entry_together() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pds.redb");
    let server = Server::start(&db, &["--demo"]);
    let (bo, pcse) = (server.api_as("back-office"), server.api_as("pcse"));
    let p = nhs(14);
    let practice = server.api_as_practice(&gp_of(&bo, &p).await);
    let id = id_of(
        &raised(
            &practice,
            &case_body("incorrect-demographics", Some(&p), None),
        )
        .await,
    );
    step(&pcse, &id, json!([to("received")])).await;
    step(&pcse, &id, json!([to("accepted")])).await;

    let writer = {
        let (base, token, p, id) = (bo.base.clone(), bo.token.clone(), p.clone(), id.clone());
        tokio::spawn(async move {
            let api = Api {
                http: reqwest::Client::new(),
                base,
                token,
            };
            let mut acknowledged = Vec::new();
            for i in 0u32.. {
                let g = if i % 2 == 0 { "male" } else { "unknown" };
                let rid = request_id();
                let if_match = format!("W/\"{}\"", i + 1);
                let body = json!({"patches": [{"op": "replace", "path": "/gender", "value": g}],
                                  "reason": "correction under test", "case": format!("Task/{id}")});
                let sent = api
                    .http
                    .patch(format!("{}/Patient/{p}", api.base))
                    .bearer_auth(api.token.as_deref().unwrap())
                    .header("X-Request-ID", &rid)
                    .header("If-Match", &if_match)
                    .header("Content-Type", "application/json-patch+json")
                    .body(body.to_string())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 200 => acknowledged.push(rid),
                    _ => break,
                }
            }
            acknowledged
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    server.kill();
    let acknowledged = writer.await.unwrap();
    assert!(
        acknowledged.len() > 2,
        "some corrections were written before the kill"
    );

    let server = Server::start(&db, &[]);
    let bo = server.api_as("back-office");
    let case = bo.get(&format!("/Task/{id}")).await;
    let on_case: BTreeSet<String> = corrections(&case.body)
        .into_iter()
        .map(|(_, _, rid)| rid)
        .collect();
    let audit = bo.get(&format!("/_audit?patient={p}")).await.body;
    let in_audit: BTreeSet<String> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["operation"] == "patch")
        .map(|e| e["request_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        on_case, in_audit,
        "a correction and its case entry are one write"
    );
    for rid in &acknowledged {
        assert!(on_case.contains(rid), "acknowledged correction {rid} lost");
    }
    let record = bo.get_patient(&p).await.version() as usize;
    assert_eq!(record, 1 + in_audit.len());
    server.stop();
    let (ok, report) = check_indexes(&db);
    assert!(ok, "{report}");
}

/// A case about a restricted patient names nothing of the record's hidden fields to a
/// practice or PCSE: its practice is not reached, not told, and appears nowhere.
#[tokio::test]
async fn a_restricted_patients_case_reveals_nothing_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let (bo, pcse) = (server.api_as("back-office"), server.api_as("pcse"));
    let hidden_gp = gp_of(&bo, RESTRICTED).await;
    let hidden = bo.get_patient(RESTRICTED).await.body;
    let postcode = hidden["address"][0]["postalCode"]
        .as_str()
        .unwrap()
        .to_string();
    let raiser = server.api_as_practice("Y12345");
    let id = id_of(
        &raised(
            &raiser,
            &case_body("sensitive-flag", Some(RESTRICTED), None),
        )
        .await,
    );

    let its_practice = server.api_as_practice(&hidden_gp);
    its_practice
        .get(&format!("/Task/{id}"))
        .await
        .expect(404, "RESOURCE_NOT_FOUND");
    assert!(!ids(&entries(
        &its_practice
            .get(&format!("/Task?patient={RESTRICTED}"))
            .await
    ))
    .contains(&id));

    step(&pcse, &id, json!([to("received")])).await;
    step(&pcse, &id, json!([to("accepted")])).await;
    let r = bo
        .patch_current_because(
            RESTRICTED,
            json!([{"op": "replace", "path": "/gender", "value": "female"}]),
            "patient's request",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = bo.get_patient(RESTRICTED).await.version();
    let r = bo
        .patch(
            RESTRICTED,
            v,
            json!({"patches": [{"op": "replace", "path": "/gender", "value": "male"}],
                                     "reason": "patient's request", "case": format!("Task/{id}")}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    step(
        &bo,
        &id,
        json!([
            to("completed"),
            output("resolution", "Done"),
            output("follow-on-action", "Check the record")
        ]),
    )
    .await;

    // told: the requester only
    // PCSE no longer sees messages about a record restricted now (the recipient could be its
    // practice); the NBO sees who was told
    assert!(entries(&pcse.get(&format!("/Communication?about=Task/{id}")).await).is_empty());
    let told = entries(&bo.get(&format!("/Communication?about=Task/{id}")).await);
    let recipients: BTreeSet<String> = told
        .iter()
        .map(|m| {
            m["recipient"][0]["identifier"]["value"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(recipients, BTreeSet::from(["Y12345".to_string()]));
    assert!(entries(
        &its_practice
            .get(&format!("/Communication?recipient={hidden_gp}"))
            .await
    )
    .is_empty());

    // nothing the case routes return to practices or PCSE carries a hidden value
    let mut seen = vec![
        pcse.get(&format!("/Task/{id}")).await.body,
        pcse.get(&format!("/Task/{id}/_history")).await.body,
        pcse.get(&format!("/Task?patient={RESTRICTED}")).await.body,
        pcse.get("/Communication").await.body,
        raiser.get(&format!("/Task/{id}")).await.body,
        raiser.get("/Communication?recipient=Y12345").await.body,
    ];
    seen.push(pcse.get(&format!("/Task?requester={hidden_gp}")).await.body);
    for body in &seen {
        let text = body.to_string();
        assert!(!text.contains(&hidden_gp), "GP leaked: {text}");
        assert!(!text.contains(&postcode), "address leaked: {text}");
    }
}

/// Bad input is refused with a clear OperationOutcome, and nothing is stored.
#[tokio::test]
async fn bad_cases_are_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let pcse = server.api_as("pcse");
    let practice = server.api_as_practice("Y12345");
    let count = |r: Reply| r.body["total"].as_u64().unwrap();
    let before = count(pcse.get("/Task?_count=500").await);

    let mut unknown_kind = case_body("incorrect-demographics", Some(FULL), None);
    unknown_kind["code"]["coding"][0]["code"] = json!("lost-cat");
    let mut extra = case_body("incorrect-demographics", Some(FULL), None);
    extra["priority"] = json!("urgent");
    let mut bad_number = case_body("incorrect-demographics", Some(FULL), None);
    bad_number["for"]["identifier"]["value"] = json!("9991000004");
    let cases: Vec<(Value, &str)> = vec![
        (
            case_body("duplicate-nhs-number", Some(FULL), Some(FULL)),
            "INVALID_VALUE",
        ),
        (
            case_body("duplicate-nhs-number", Some(FULL), None),
            "MISSING_VALUE",
        ),
        (
            case_body("incorrect-demographics", None, None),
            "MISSING_VALUE",
        ),
        (
            case_body("incorrect-demographics", Some(UNKNOWN), None),
            "INVALID_VALUE",
        ),
        (unknown_kind, "INVALID_VALUE"),
        (extra, "ADDITIONAL_PROPERTIES"),
        (bad_number, "INVALID_VALUE"),
        (json!({"resourceType": "Patient"}), "INVALID_VALUE"),
        (json!([1, 2]), "INVALID_VALUE"),
    ];
    for (body, code) in cases {
        let r = raise(&practice, &body).await;
        assert_eq!((r.status, r.code()), (400, code), "{body}: {}", r.body);
        let text = r.diagnostics().unwrap_or_default();
        assert!(!text.is_empty(), "{body}: says what is wrong");
    }
    let r = practice
        .send(
            "POST",
            "/Task",
            &[
                ("X-Request-ID", &request_id()),
                ("Content-Type", "application/fhir+json"),
            ],
            Some("{not json".into()),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    // a practice raises cases as itself, never as another practice
    let mut as_other = case_body("incorrect-demographics", Some(FULL), None);
    as_other["requester"] = json!({"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "A81001"}});
    assert_eq!(raise(&practice, &as_other).await.status / 100, 4);
    assert_eq!(
        count(pcse.get("/Task?_count=500").await),
        before,
        "nothing stored"
    );

    // searches with unknown or malformed parameters are refused, not ignored
    for (q, code) in [
        ("/Task?colour=red", "ADDITIONAL_PROPERTIES"),
        ("/Task?status=lost", "INVALID_VALUE"),
        (
            "/Task?status=requested&status=received",
            "TOO_MANY_VALUES_SUBMITTED",
        ),
        ("/Task?_count=0", "INVALID_VALUE"),
        ("/Task?overdue=maybe", "INVALID_VALUE"),
        ("/Communication?status=lost", "INVALID_VALUE"),
    ] {
        let r = pcse.get(q).await;
        assert_eq!((r.status, r.code()), (400, code), "{q}: {}", r.body);
    }
    // a patch of what the service keeps: refused, the case unchanged
    let id = id_of(
        &raised(
            &practice,
            &case_body("incorrect-demographics", Some(FULL), None),
        )
        .await,
    );
    for ops in [
        json!([{"op": "replace", "path": "/code/coding/0/code", "value": "sensitive-flag"}]),
        json!([{"op": "replace", "path": "/restriction/period/end", "value": "2099-01-01"}]),
        json!([{"op": "remove", "path": "/input/0"}]),
        json!([to("received"), {"op": "add", "path": "/businessStatus", "value": {"text": "fast track"}}]),
        json!([{"op": "test", "path": "/status", "value": "completed"}, to("received")]),
        json!([]),
        json!({"op": "replace"}),
    ] {
        let r = patch_task(&pcse, &id, 1, ops.clone()).await;
        assert_eq!(r.status, 400, "{ops}: {}", r.body);
    }
    assert_eq!(pcse.get(&format!("/Task/{id}")).await.version(), 1);
}

/// The demo cases form a queue: sorted by due date, the overdue ones found by `overdue=true`.
#[tokio::test]
async fn due_dates_sort_the_queue_and_overdue_finds_the_late() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let pcse = server.api_as("pcse");
    let queue = entries(
        &pcse
            .get("/Task?_sort=due&status=requested,received,on-hold,accepted,in-progress")
            .await,
    );
    assert!(queue.len() >= 8, "the demo holds a case of every kind");
    let kinds: BTreeSet<&str> = queue
        .iter()
        .map(|t| t["code"]["coding"][0]["code"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 8, "{kinds:?}");
    let due: Vec<&str> = queue
        .iter()
        .map(|t| t["restriction"]["period"]["end"].as_str().unwrap())
        .collect();
    let mut sorted = due.clone();
    sorted.sort();
    assert_eq!(due, sorted);
    let latest_first: Vec<String> = entries(&pcse.get("/Task?_sort=-due").await)
        .iter()
        .map(|t| {
            t["restriction"]["period"]["end"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut reversed = latest_first.clone();
    reversed.sort();
    reversed.reverse();
    assert_eq!(latest_first, reversed);

    let today = time::OffsetDateTime::now_utc().date().to_string();
    let late: BTreeSet<String> = queue
        .iter()
        .filter(|t| t["restriction"]["period"]["end"].as_str().unwrap() < today.as_str())
        .map(id_of)
        .collect();
    assert!(!late.is_empty(), "some demo cases are overdue");
    let overdue = entries(&pcse.get("/Task?overdue=true").await);
    assert_eq!(ids(&overdue), late);
    let duplicates = entries(
        &pcse
            .get("/Task?overdue=true&code=duplicate-nhs-number")
            .await,
    );
    assert!(duplicates
        .iter()
        .all(|t| t["code"]["coding"][0]["code"] == "duplicate-nhs-number"));
    assert!(entries(&pcse.get("/Task?_count=2").await).len() <= 2);
}

/// `serve --case-due KIND=DAYS` sets a kind's deadline: published in the CodeSystem and used
/// for new cases.
#[tokio::test]
async fn the_due_table_is_configurable_and_published() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("pds.redb"),
        &["--demo", "--case-due", "duplicate-nhs-number=5"],
    );
    let system = server
        .api()
        .send("GET", "/CodeSystem/case-kind", &[], None)
        .await;
    assert_eq!(system.status, 200, "{}", system.body);
    assert_eq!(system.body["url"], KIND);
    let concepts = system.body["concept"].as_array().unwrap();
    assert_eq!(concepts.len(), 8);
    let days = |code: &str| {
        concepts.iter().find(|c| c["code"] == code).unwrap()["property"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["code"] == "days-to-resolve")
            .unwrap()["valueInteger"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(days("duplicate-nhs-number"), 5);
    assert_eq!(days("confused-record"), 70);
    let task = raised(&server.api_as("pcse"), &{
        let mut b = case_body("duplicate-nhs-number", Some(&nhs(15)), Some(&nhs(16)));
        b["requester"] = json!({"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "Y12345"}});
        b
    })
    .await;
    let authored = time::Date::parse(
        &task["authoredOn"].as_str().unwrap()[..10],
        &time::macros::format_description!("[year]-[month]-[day]"),
    )
    .unwrap();
    let due = time::Date::parse(
        task["restriction"]["period"]["end"].as_str().unwrap(),
        &time::macros::format_description!("[year]-[month]-[day]"),
    )
    .unwrap();
    assert_eq!(due - authored, time::Duration::days(5));

    // a bad table entry stops the server starting, with the reason
    let out = std::process::Command::new(BIN)
        .args(["serve", "--db"])
        .arg(dir.path().join("other.redb"))
        .args(["--listen", "127.0.0.1:0", "--case-due", "lost-cat=5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("lost-cat"));
}

/// A retried POST /Task with the same X-Request-ID answers with the same case and stores one.
#[tokio::test]
async fn a_retried_raise_stores_one_case() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let practice = server.api_as_practice("Y12345");
    let body = case_body("incorrect-death-status", Some(&nhs(8)), None);
    let rid = request_id();
    let first = practice.post_with("/Task", &body, &rid).await;
    let again = practice.post_with("/Task", &body, &rid).await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(again.status, 201, "{}", again.body);
    assert_eq!(first.body, again.body);
    let mine = entries(&practice.get("/Task?code=incorrect-death-status").await);
    assert_eq!(
        mine.iter().filter(|t| t["id"] == first.body["id"]).count(),
        1
    );
    assert_eq!(
        entries(
            &server
                .api_as("pcse")
                .get(&format!(
                    "/Task?patient={}&code=incorrect-death-status",
                    nhs(8)
                ))
                .await
        )
        .len(),
        1
    );
    // the same request id from another practice is another request
    let other = server.api_as_practice("Y23456");
    let r = other.post_with("/Task", &body, &rid).await;
    assert_ne!(r.body["id"], first.body["id"]);
}

/// A change of identity's case: the corrections that name the new record are hidden from all
/// but the NBO, and only the new record's practice is told, with nothing linking the numbers.
#[tokio::test]
async fn a_change_of_identity_case_links_nothing_for_anyone_else() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let (bo, pcse) = (server.api_as("back-office"), server.api_as("pcse"));
    let old = nhs(17);
    let old_gp = gp_of(&bo, &old).await;
    let practice = server.api_as_practice(&old_gp);
    let id = id_of(
        &raised(
            &practice,
            &case_body("change-of-identity", Some(&old), None),
        )
        .await,
    );
    step(&pcse, &id, json!([to("received")])).await;
    step(&pcse, &id, json!([to("accepted")])).await;
    let new_gp = "Y55555";
    let identity = json!({"resourceType": "Patient", "name": [{"use": "usual", "given": ["Robin"], "family": "Kestrel"}],
        "gender": "unknown", "birthDate": "2001-02-03",
        "address": [{"use": "home", "line": ["4 Mill Lane", "York"], "postalCode": "YO1 7HH"}],
        "generalPractitioner": [{"type": "Organization", "identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": new_gp}}]});
    let r = bo
        .operation("$change-identity", json!([{"name": "nhs-number", "valueIdentifier": ident(&old)},
            {"name": "patient", "resource": identity}, {"name": "reason", "valueString": "adoption"}, case_param(&id)]))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let new = r.body["parameter"][1]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let nbo_view = bo.get(&format!("/Task/{id}")).await.body;
    assert!(
        nbo_view.to_string().contains(&new),
        "the NBO sees the correction"
    );
    for api in [&pcse, &practice] {
        for path in [
            format!("/Task/{id}"),
            format!("/Task/{id}/_history"),
            format!("/Task?patient={old}"),
        ] {
            let text = api.get(&path).await.body.to_string();
            assert!(!text.contains(&new), "{path} links the new number: {text}");
        }
    }
    // a patch works on what its caller sees: nothing can be copied out of, or tested against,
    // the hidden corrections — a right guess and a wrong one get the same answer
    let v: u32 = nbo_view["meta"]["versionId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let copy = json!([note("x"), {"op": "copy", "from": "/output/1/valueReference/reference", "path": "/note/0/text"}]);
    let right = json!([{"op": "test", "path": "/output/1/valueReference/reference", "value": format!("Patient/{new}/_history/1")}, note("y")]);
    let wrong = json!([{"op": "test", "path": "/output/1/valueReference/reference", "value": "Patient/9000000009/_history/1"}, note("y")]);
    for api in [&pcse, &practice] {
        for ops in [&copy, &right, &wrong] {
            let r = patch_task(api, &id, v, ops.clone()).await;
            assert_eq!(r.status, 400, "{ops}: {}", r.body);
            assert!(!r.body.to_string().contains(&new));
        }
        assert_eq!(
            patch_task(api, &id, v, right.clone()).await.body["issue"][0]["diagnostics"],
            patch_task(api, &id, v, wrong.clone()).await.body["issue"][0]["diagnostics"]
        );
    }
    // a note added through the view keeps the hidden corrections
    step(&pcse, &id, json!([note("Checked the adoption order")])).await;
    let after = bo.get(&format!("/Task/{id}")).await.body;
    assert_eq!(corrections(&after), corrections(&nbo_view));
    let nbo_view = after;
    let r = patch_task(
        &bo,
        &id,
        nbo_view["meta"]["versionId"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
        json!([
            to("completed"),
            output("resolution", format!("Done for {old}").as_str()),
            output("follow-on-action", "Register the patient")
        ]),
    )
    .await;
    assert_eq!(
        r.status, 400,
        "the old number is not sent to the new practice: {}",
        r.body
    );
    step(
        &bo,
        &id,
        json!([
            to("completed"),
            output("resolution", "A new identity was created"),
            output("follow-on-action", "Register the patient")
        ]),
    )
    .await;
    // PCSE does not see the outcome at all: beside the case, it would link the numbers
    let pcse_sees = entries(&pcse.get("/Communication?_count=500").await);
    assert!(!pcse_sees
        .iter()
        .any(|m| m["category"][0]["coding"][0]["code"] == "case-outcome"
            && m["recipient"][0]["identifier"]["value"] == new_gp));
    let all = entries(&bo.get("/Communication?_count=500").await);
    let outcome: Vec<&Value> = all
        .iter()
        .filter(|m| m["category"][0]["coding"][0]["code"] == "case-outcome")
        .collect();
    assert_eq!(outcome.len(), 1, "{outcome:?}");
    assert_eq!(outcome[0]["recipient"][0]["identifier"]["value"], new_gp);
    let text = serde_json::to_string(&all).unwrap();
    assert!(
        !(text.contains(&old) && text.contains(&new)),
        "no message names both numbers"
    );
    assert!(outcome[0].get("about").is_none());
}

/// A correction goes on the case it resolves: a change of identity only on a change-of-identity
/// case, and only for the case's own patients.
#[tokio::test]
async fn a_correction_is_recorded_only_on_its_own_case() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let (bo, pcse) = (server.api_as("back-office"), server.api_as("pcse"));
    let (p, q) = (nhs(18), nhs(19));
    let practice = server.api_as_practice(&gp_of(&bo, &p).await);
    let id = id_of(
        &raised(
            &practice,
            &case_body("duplicate-nhs-number", Some(&p), Some(&q)),
        )
        .await,
    );
    step(&pcse, &id, json!([to("received")])).await;
    step(&pcse, &id, json!([to("accepted")])).await;
    let identity = json!({"resourceType": "Patient", "name": [{"use": "usual", "given": ["Alex"], "family": "Wren"}],
        "gender": "unknown", "birthDate": "1990-05-05",
        "address": [{"use": "home", "line": ["1 Quay Street", "Hull"], "postalCode": "HU1 1AA"}]});
    bo.operation("$change-identity", json!([{"name": "nhs-number", "valueIdentifier": ident(&p)},
            {"name": "patient", "resource": identity}, {"name": "reason", "valueString": "adoption"}, case_param(&id)]))
        .await
        .expect(409, "INVALID_UPDATE");
    let stranger = nhs(20);
    bo.patch(
        &stranger,
        1,
        json!({"patches": [{"op": "replace", "path": "/gender", "value": "unknown"}],
                                  "reason": "r", "case": format!("Task/{id}")}),
    )
    .await
    .expect(409, "INVALID_UPDATE");
    assert_eq!(bo.get_patient(&stranger).await.version(), 1);
    assert_eq!(bo.get_patient(&p).await.version(), 1, "no new identity");
    assert!(corrections(&bo.get(&format!("/Task/{id}")).await.body).is_empty());
}

/// A practice reaches a case through its patients' records as they are now: once a record is
/// restricted, its practice no longer reads the case, and PCSE no longer sees the messages
/// about it.
#[tokio::test]
async fn a_record_restricted_later_closes_its_cases_to_its_practice() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let (bo, pcse) = (server.api_as("back-office"), server.api_as("pcse"));
    let p = nhs(21);
    let gp = gp_of(&bo, &p).await;
    let raiser = server.api_as_practice("Y12345");
    let its_practice = server.api_as_practice(&gp);
    let id = id_of(
        &raised(
            &raiser,
            &case_body("incorrect-demographics", Some(&p), None),
        )
        .await,
    );
    assert_eq!(its_practice.get(&format!("/Task/{id}")).await.status, 200);
    step(&pcse, &id, json!([to("received")])).await;
    step(
        &pcse,
        &id,
        json!([to("on-hold"), note("When did the patient register?")]),
    )
    .await;
    assert_eq!(
        entries(&pcse.get(&format!("/Communication?about=Task/{id}")).await).len(),
        1
    );

    let r = bo
        .patch_current_because(
            &p,
            json!([{"op": "replace", "path": "/meta/security/0/code", "value": "R"}]),
            "at risk",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    its_practice
        .get(&format!("/Task/{id}"))
        .await
        .expect(404, "RESOURCE_NOT_FOUND");
    assert!(!ids(&entries(&its_practice.get("/Task").await)).contains(&id));
    assert_eq!(
        raiser.get(&format!("/Task/{id}")).await.status,
        200,
        "the requester still reads it"
    );
    assert!(entries(&pcse.get(&format!("/Communication?about=Task/{id}")).await).is_empty());
    assert_eq!(
        entries(&raiser.get("/Communication?recipient=Y12345").await).len(),
        1,
        "its own message stays"
    );
}

/// Every move from every open status, for every role: those the life cycle allows succeed
/// (each on a fresh case), every other is refused with the case unchanged; a closed case
/// takes no move at all.
#[tokio::test]
async fn every_move_for_every_role() {
    const ALL: [&str; 8] = [
        "requested",
        "received",
        "on-hold",
        "accepted",
        "in-progress",
        "completed",
        "rejected",
        "cancelled",
    ];
    // (from, to, roles allowed), written out from the issue, not read from the code
    const ALLOWED: &[(&str, &str, &[&str])] = &[
        ("requested", "received", &["pcse", "back-office"]),
        ("received", "on-hold", &["pcse", "back-office"]),
        ("on-hold", "received", &["practice", "pcse", "back-office"]),
        ("received", "accepted", &["pcse", "back-office"]),
        ("accepted", "in-progress", &["back-office"]),
        ("in-progress", "completed", &["back-office"]),
        ("requested", "rejected", &["pcse", "back-office"]),
        ("received", "rejected", &["pcse", "back-office"]),
        ("on-hold", "rejected", &["pcse", "back-office"]),
        ("accepted", "rejected", &["back-office"]),
        ("in-progress", "rejected", &["back-office"]),
        ("requested", "cancelled", &["pcse", "back-office"]),
        ("received", "cancelled", &["pcse", "back-office"]),
        ("on-hold", "cancelled", &["pcse", "back-office"]),
        ("accepted", "cancelled", &["back-office"]),
        ("in-progress", "cancelled", &["back-office"]),
    ];
    let dir = tempfile::tempdir().unwrap();
    let server = Server::demo(&dir);
    let bo = server.api_as("back-office");
    let p = nhs(29);
    let ods = gp_of(&bo, &p).await;
    let roles = [
        ("practice", server.api_as_practice(&ods)),
        ("pcse", server.api_as("pcse")),
        ("back-office", server.api_as("back-office")),
        ("healthcare-worker", server.api()),
    ];
    let practice = &roles[0].1;
    // what a move must bring
    let ops = |target: &str| -> Value {
        let mut ops = vec![to(target)];
        match target {
            "on-hold" | "received" => ops.push(note("the question or the answer")),
            "completed" => {
                ops.push(output("resolution", "Corrected"));
                ops.push(output("follow-on-action", "Update the practice record"));
            }
            "rejected" | "cancelled" => ops.push(
                json!({"op": "add", "path": "/statusReason", "value": {"text": "Not needed"}}),
            ),
            _ => {}
        }
        Value::Array(ops)
    };
    // a fresh case brought to `status` by the back office
    let at = |status: &'static str| {
        let (bo, practice, p) = (&bo, practice, p.clone());
        async move {
            let id = id_of(
                &raised(
                    practice,
                    &case_body("incorrect-demographics", Some(&p), None),
                )
                .await,
            );
            let path: &[&str] = match status {
                "requested" => &[],
                "received" => &["received"],
                "on-hold" => &["received", "on-hold"],
                "accepted" => &["received", "accepted"],
                "in-progress" => &["received", "accepted", "in-progress"],
                "completed" => &["received", "accepted", "in-progress", "completed"],
                "rejected" => &["rejected"],
                _ => &["cancelled"],
            };
            for s in path {
                step(bo, &id, ops(s)).await;
            }
            id
        }
    };
    for from in ALL {
        let id = at(from).await;
        let version = bo.get(&format!("/Task/{id}")).await.version();
        for (role, api) in &roles {
            for to in ALL.into_iter().filter(|t| *t != from) {
                let allowed = ALLOWED
                    .iter()
                    .any(|(f, t, rs)| *f == from && *t == to && rs.contains(role));
                if allowed {
                    let fresh = at(from).await;
                    let v = bo.get(&format!("/Task/{fresh}")).await.version();
                    let r = patch_task(api, &fresh, v, ops(to)).await;
                    assert_eq!(r.status, 200, "{role} {from} → {to}: {}", r.body);
                    assert_eq!(r.body["status"], to);
                } else {
                    let r = patch_task(api, &id, version, ops(to)).await;
                    let expected = if *role == "healthcare-worker" {
                        403
                    } else {
                        409
                    };
                    assert_eq!(
                        r.status, expected,
                        "{role} {from} → {to} should be refused: {}",
                        r.body
                    );
                }
            }
        }
        assert_eq!(
            bo.get(&format!("/Task/{id}")).await.version(),
            version,
            "{from}: refused moves changed nothing"
        );
    }
}
