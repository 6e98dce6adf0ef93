//! The NBO's side of a case: the patient record(s) — two side by side for a duplicate or a
//! confused record, with their version histories — and the corrections as forms, each needing
//! a reason and each recorded on the case (the use cases' `case` part: the correction and the
//! case's output entry are one transaction). A merge is previewed before it is made.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{html, Markup};
use serde_json::{json, Value};

use super::case_page::case_response;
use super::layout::{form_keys, input, page, text, textarea};
use super::session::Session;
use super::{
    body_of, error_text, html_page, posted, records, request, see_other, status_of, Fields,
};
use crate::app::identity::Validity;
use crate::domain::case::task::Facts;
use crate::domain::case::{CaseKind, NHS_NUMBER_SYSTEM, ODS_SYSTEM};
use crate::domain::patient::DEATH_NOTIFICATION_URL;
use crate::domain::subset::Subset;
use crate::domain::{NhsNumber, PdsError, Version};
use crate::http::AppState;

/// The records of the case's patients as the NBO sees them, in the case's order.
async fn records_of(state: &AppState, session: &Session, facts: &Facts) -> Vec<Value> {
    let mut out = Vec::new();
    for nhs in &facts.patients {
        if let Ok(a) = state.app.read(&session.caller, *nhs, &Subset::Full).await {
            out.push(body_of(&a));
        }
    }
    out
}

/// The records, their histories and (while the NBO holds the case) the correction forms.
pub async fn records_section(
    state: &AppState,
    session: &Session,
    task: &Value,
    facts: &Facts,
) -> Markup {
    let recs = records_of(state, session, facts).await;
    let mut histories = Vec::new();
    for nhs in &facts.patients {
        let entries = state
            .app
            .audit_trail(&session.caller, *nhs)
            .await
            .unwrap_or_default();
        histories.push(records::history(&nhs.to_string(), &entries));
    }
    let open = facts.status.takes_corrections();
    html! {
        h2 { @if recs.len() > 1 { "The records" } @else { "The record" } }
        @if recs.is_empty() { p.muted { "No record yet." } } @else { (records::compare(&recs)) }
        @for h in histories { (h) }
        @if open {
            h2 { "Corrections" }
            p.hint { "Each correction needs a reason and is recorded on this case in the same transaction." }
            div.actions-grid { (forms(session, task, facts, &recs)) }
        } @else if !facts.status.is_closed() {
            p.muted { "Corrections are made once the case has been passed to the NBO." }
        }
    }
}

fn patient_choice(name: &str, label: &str, recs: &[Value]) -> Markup {
    let id = format!("f-{name}");
    html! {
        div.field {
            label for=(id) { (label) }
            select id=(id) name=(name) {
                @for r in recs { option value=(text(r, "/id")) { (text(r, "/id")) " — " (records::one_line(r)) } }
            }
        }
    }
}

fn form_head(session: &Session, action: &str, anchor: &str, title: &str) -> Markup {
    html! {
        h3 { (title) }
        (form_keys(session))
        input type="hidden" name="anchor" value=(anchor);
        input type="hidden" name="action" value=(action);
    }
}

/// The correction forms that fit the case and its records.
fn forms(session: &Session, task: &Value, facts: &Facts, recs: &[Value]) -> Markup {
    let id = text(task, "/id");
    let action = |what: &str| format!("/console/cases/{id}/correct/{what}");
    let reason = |what: &str| textarea(&format!("reason-{what}"), "Reason", None, true);
    let two = recs.len() > 1;
    let dead: Vec<Value> = recs
        .iter()
        .filter(|r| r.get("deceasedDateTime").is_some() || death_index(r).is_some())
        .cloned()
        .collect();
    html! {
        @if two {
            form.panel method="post" action=(action("merge-preview")) id="merge" {
                (form_head(session, "merge", "merge", "Merge the records"))
                fieldset {
                    legend { "Which record survives?" }
                    @for (i, r) in recs.iter().enumerate() {
                        div.radio {
                            input type="radio" id={"f-target-" (i)} name="target" value=(text(r, "/id")) checked[i == 0];
                            label for={"f-target-" (i)} { "Keep " (text(r, "/id")) " — " (records::one_line(r)) }
                        }
                    }
                }
                (reason("merge"))
                button type="submit" { "Preview the merge" }
            }
        }
        form.panel method="post" action=(action("unmerge")) id="unmerge" {
            (form_head(session, "unmerge", "unmerge", "Undo a merge"))
            (input("source", "NHS number of the record merged away", None, true, ""))
            (reason("unmerge"))
            button type="submit" { "Undo the merge" }
        }
        form.panel method="post" action=(action("flag")) id="flag" {
            (form_head(session, "flag", "flag", "Sensitive flag"))
            (patient_choice("patient-flag", "Record", recs))
            div.field {
                label for="f-code" { "Confidentiality" }
                select #f-code name="code" {
                    option value="R" selected[facts.kind == CaseKind::SensitiveFlag] { "Restricted (sensitive, S flag)" }
                    option value="U" { "Unrestricted (remove the flag)" }
                }
            }
            (reason("flag"))
            button type="submit" { "Set the flag" }
        }
        @if !dead.is_empty() {
            form.panel method="post" action=(action("death")) id="death" {
                (form_head(session, "death", "death", "Remove a wrongly recorded death"))
                (patient_choice("patient-death", "Record", &dead))
                (reason("death"))
                button type="submit" { "Remove the death" }
            }
        }
        form.panel method="post" action=(action("demographics")) id="demographics" {
            (form_head(session, "demographics", "demographics", "Correct a demographic detail"))
            (patient_choice("patient-demographics", "Record", recs))
            div.field {
                label for="f-field" { "Field" }
                select #f-field name="field" {
                    option value="gender" { "Gender (male, female, unknown)" }
                    option value="birthDate" { "Birth date (YYYY-MM-DD)" }
                    option value="family" { "Family name" }
                    option value="given" { "Given names" }
                }
            }
            (input("value", "New value", None, true, ""))
            (reason("demographics"))
            button type="submit" { "Correct the detail" }
        }
        form.panel method="post" action=(action("gp")) id="gp" {
            (form_head(session, "gp", "gp", "Correct the GP registration"))
            (patient_choice("patient-gp", "Record", recs))
            (input("ods", "Practice ODS code", Some("The practice the patient is registered with, e.g. Y12345"), true, ""))
            (reason("gp"))
            button type="submit" { "Correct the GP" }
        }
        @if facts.kind == CaseKind::ChangeOfIdentity && !recs.is_empty() {
            form.panel method="post" action=(action("change-identity")) id="change-identity" {
                (form_head(session, "change-identity", "change-identity", "Change of identity"))
                p.hint { "A new record under a new NHS number; the old record is sealed. Only the NBO can link the two." }
                (patient_choice("patient-identity", "Old record", recs))
                (input("given", "Given names", None, true, ""))
                (input("family", "Family name", None, true, ""))
                div.field {
                    label for="f-gender" { "Gender" }
                    select #f-gender name="gender" {
                        option value="female" { "Female" } option value="male" { "Male" } option value="unknown" { "Unknown" }
                    }
                }
                (input("birthDate", "Birth date", Some("YYYY-MM-DD"), true, ""))
                (input("line", "Address (first line and town, comma separated)", None, true, ""))
                (input("postcode", "Postcode", None, true, ""))
                (input("new-gp", "GP practice ODS code of the new record", None, false, ""))
                (reason("change-identity"))
                button type="submit" { "Create the new identity" }
            }
        }
    }
}

/// The index of the record's death notification extension.
fn death_index(p: &Value) -> Option<usize> {
    p["extension"]
        .as_array()?
        .iter()
        .position(|e| e["url"] == DEATH_NOTIFICATION_URL)
}

/// The `case` part that records a correction on case `id`.
fn case_part(id: &str) -> Value {
    json!({"name": "case", "valueReference": {"reference": format!("Task/{id}")}})
}

fn ident(n: &str) -> Value {
    json!({"system": NHS_NUMBER_SYSTEM, "value": n.split_whitespace().collect::<String>()})
}

fn missing(what: &str) -> PdsError {
    PdsError::missing_value(what)
}

/// `POST /console/cases/{id}/correct/{what}`.
pub async fn correct(
    State(state): State<AppState>,
    session: Session,
    Path((id, what)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (fields, rid) = match posted(&session, &headers, &body) {
        Ok(p) => p,
        Err(refused) => return *refused,
    };
    let case_part = case_part(&id);
    let done = match what.as_str() {
        "merge-preview" => return merge_preview(&state, &session, &id, &fields, &rid).await,
        "merge" => {
            let r = merge_params(&fields, false, &case_part).map(|p| p.to_string());
            match r {
                Ok(body) => state
                    .app
                    .merge(&request(&session, &rid), body.as_bytes())
                    .await
                    .map(|_| ()),
                Err(e) => Err(e),
            }
        }
        "unmerge" => {
            let body = json!({"resourceType": "Parameters", "parameter": [
                {"name": "source-patient-identifier", "valueIdentifier": ident(fields.get("source").unwrap_or_default())},
                {"name": "reason", "valueString": fields.get("reason-unmerge").unwrap_or_default()}, case_part]});
            state
                .app
                .unmerge(&request(&session, &rid), body.to_string().as_bytes())
                .await
                .map(|_| ())
        }
        "change-identity" => change_identity(&state, &session, &fields, &rid, case_part).await,
        "flag" | "death" | "demographics" | "gp" => {
            patch_record(&state, &session, &id, &what, &fields, &rid).await
        }
        "invalidate" => {
            let body = json!({"resourceType": "Parameters", "parameter": [
                {"name": "nhs-number", "valueIdentifier": ident(fields.get("nhs").unwrap_or_default())},
                {"name": "reason", "valueString": fields.get("reason-invalidate").unwrap_or_default()}, case_part]});
            state
                .app
                .set_validity(
                    &request(&session, &rid),
                    Validity::Invalidate,
                    body.to_string().as_bytes(),
                )
                .await
                .map(|_| ())
        }
        _ => return see_other(&format!("/console/cases/{id}")),
    };
    match done {
        Ok(()) => see_other(&format!(
            "/console/cases/{id}#{}",
            fields.get("anchor").unwrap_or("corrections")
        )),
        Err(e) => case_response(&state, &session, &id, Some(&e), StatusCode::OK).await,
    }
}

fn merge_params(fields: &Fields, preview: bool, case_part: &Value) -> Result<Value, PdsError> {
    let target = fields.get("target").ok_or_else(|| missing("target"))?;
    let source = fields.get("source").ok_or_else(|| missing("source"))?;
    Ok(json!({"resourceType": "Parameters", "parameter": [
        {"name": "source-patient-identifier", "valueIdentifier": ident(source)},
        {"name": "target-patient-identifier", "valueIdentifier": ident(target)},
        {"name": "preview", "valueBoolean": preview},
        {"name": "reason", "valueString": fields.get("reason-merge").unwrap_or_default()},
        case_part]}))
}

/// The merge's preview: the record that would survive, beside the two as they are, and a form
/// to make the merge (with a fresh request id of its own).
async fn merge_preview(
    state: &AppState,
    session: &Session,
    id: &str,
    fields: &Fields,
    rid: &str,
) -> Response {
    let task = match state.app.read_case(&session.caller, id).await {
        Ok(a) => body_of(&a),
        Err(e) => {
            return html_page(
                status_of(&e),
                page(
                    "Case not found",
                    Some(session),
                    Some(&error_text(&e)),
                    html! {},
                ),
            )
        }
    };
    let Ok(facts) = Facts::of(&task) else {
        return see_other("/console/");
    };
    let target = fields.get("target").unwrap_or_default().to_string();
    let source = facts
        .patients
        .iter()
        .map(NhsNumber::to_string)
        .find(|p| *p != target);
    let refusal = if !facts.status.takes_corrections() {
        Some("Corrections are made once the case has been passed to the NBO")
    } else if !facts.patients.iter().any(|p| p.to_string() == target) {
        Some("Choose which of the case's two records survives")
    } else {
        None
    };
    let (Some(source), None) = (source, refusal) else {
        let why = refusal.unwrap_or("Choose which of the case's two records survives");
        let e = PdsError::new(crate::domain::ErrorCode::InvalidValue, why);
        return case_response(state, session, id, Some(&e), StatusCode::OK).await;
    };
    let mut with_source: Vec<(String, String)> = vec![
        ("target".into(), target.clone()),
        ("source".into(), source.clone()),
    ];
    with_source.extend(
        fields
            .get("reason-merge")
            .map(|r| ("reason-merge".to_string(), r.to_string())),
    );
    let fields = Fields(with_source);
    let case_part = case_part(id);
    let preview = match merge_params(&fields, true, &case_part) {
        Ok(p) => {
            state
                .app
                .merge(&request(session, rid), p.to_string().as_bytes())
                .await
        }
        Err(e) => Err(e),
    };
    let result = match preview {
        Ok(a) => body_of(&a),
        Err(e) => return case_response(state, session, id, Some(&e), StatusCode::OK).await,
    };
    let merged = result["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "result")
        .map(|p| p["resource"].clone())
        .unwrap_or(Value::Null);
    let recs = records_of(state, session, &facts).await;
    html_page(
        StatusCode::OK,
        page(
            "Merge preview",
            Some(session),
            None,
            html! {
                p { "Nothing has changed yet. Merging keeps " span.nhs { (target) } " and supersedes " span.nhs { (source) } "." }
                h2 { "The surviving record after the merge" }
                (records::compare(std::slice::from_ref(&merged)))
                h2 { "The records now" }
                (records::compare(&recs))
                form.panel method="post" action={"/console/cases/" (id) "/correct/merge"} {
                    (form_keys(session))
                    input type="hidden" name="anchor" value="merge";
                    input type="hidden" name="target" value=(target);
                    input type="hidden" name="source" value=(source);
                    input type="hidden" name="reason-merge" value=(fields.get("reason-merge").unwrap_or_default());
                    button type="submit" { "Merge the records" }
                    " "
                    a href={"/console/cases/" (id)} { "Back to the case without merging" }
                }
            },
        ),
    )
}

async fn change_identity(
    state: &AppState,
    session: &Session,
    fields: &Fields,
    rid: &str,
    case_part: Value,
) -> Result<(), PdsError> {
    let old = fields
        .get("patient-identity")
        .ok_or_else(|| missing("patient-identity"))?;
    let lines: Vec<&str> = fields
        .get("line")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut patient = json!({
        "resourceType": "Patient",
        "name": [{"use": "usual", "given": fields.get("given").unwrap_or_default().split_whitespace().collect::<Vec<_>>(),
                  "family": fields.get("family").unwrap_or_default()}],
        "gender": fields.get("gender").unwrap_or("unknown"),
        "birthDate": fields.get("birthDate").unwrap_or_default(),
        "address": [{"use": "home", "line": lines, "postalCode": fields.get("postcode").unwrap_or_default()}],
    });
    if let Some(gp) = fields.get("new-gp") {
        patient["generalPractitioner"] =
            json!([{"type": "Organization", "identifier": {"system": ODS_SYSTEM, "value": gp}}]);
    }
    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "nhs-number", "valueIdentifier": ident(old)},
        {"name": "patient", "resource": patient},
        {"name": "reason", "valueString": fields.get("reason-change-identity").unwrap_or_default()}, case_part]});
    state
        .app
        .change_identity(&request(session, rid), body.to_string().as_bytes())
        .await
        .map(|_| ())
}

/// A correction by PATCH of the record at its current version (read again as the form is
/// sent, through the same rules as the API's PATCH).
async fn patch_record(
    state: &AppState,
    session: &Session,
    case: &str,
    what: &str,
    fields: &Fields,
    rid: &str,
) -> Result<(), PdsError> {
    let nhs = fields
        .get(&format!("patient-{what}"))
        .ok_or_else(|| missing("patient"))?;
    let nhs = NhsNumber::parse(nhs).map_err(|_| {
        PdsError::new(
            crate::domain::ErrorCode::InvalidValue,
            "Choose one of the case's records",
        )
    })?;
    let record = body_of(&state.app.read(&session.caller, nhs, &Subset::Full).await?);
    let version = record
        .pointer("/meta/versionId")
        .and_then(Value::as_str)
        .and_then(|v| v.parse().ok())
        .and_then(Version::new)
        .ok_or_else(|| PdsError::bare(crate::domain::ErrorCode::UnknownError))?;
    let patches = match what {
        "flag" => {
            json!([{"op": "replace", "path": "/meta/security/0/code", "value": fields.get("code").unwrap_or("R")}])
        }
        "death" => {
            let mut ops = Vec::new();
            if let Some(i) = death_index(&record) {
                ops.push(json!({"op": "test", "path": format!("/extension/{i}/url"), "value": DEATH_NOTIFICATION_URL}));
                ops.push(json!({"op": "remove", "path": format!("/extension/{i}")}));
            }
            if record.get("deceasedDateTime").is_some() {
                ops.push(json!({"op": "remove", "path": "/deceasedDateTime"}));
            }
            Value::Array(ops)
        }
        "gp" => {
            // PDS's list rules: the old registration removed (a test of it immediately before)
            // and the new one added, not the list replaced whole
            let ods = fields.get("ods").ok_or_else(|| missing("ods"))?;
            let gp = json!({"type": "Organization", "identifier": {"system": ODS_SYSTEM, "value": ods,
                            "period": {"start": crate::domain::case::task::date(crate::env::today())}}});
            match record.pointer("/generalPractitioner/0") {
                Some(old) => json!([
                    {"op": "test", "path": "/generalPractitioner/0", "value": old},
                    {"op": "remove", "path": "/generalPractitioner/0"},
                    {"op": "add", "path": "/generalPractitioner/-", "value": gp}]),
                None => json!([{"op": "add", "path": "/generalPractitioner", "value": [gp]}]),
            }
        }
        _ => {
            let field = fields.get("field").unwrap_or_default();
            let value = fields.get("value").ok_or_else(|| missing("value"))?;
            let name = record["name"]
                .as_array()
                .and_then(|n| n.iter().position(|n| n["use"] == "usual"))
                .unwrap_or(0);
            // a name is changed in place, after a test naming which one (PDS's list rule)
            let which = match record.pointer(&format!("/name/{name}/id")) {
                Some(id) => json!({"op": "test", "path": format!("/name/{name}/id"), "value": id}),
                None => {
                    json!({"op": "test", "path": format!("/name/{name}"), "value": record["name"][name]})
                }
            };
            match field {
                "family" => {
                    json!([which, {"op": "replace", "path": format!("/name/{name}/family"), "value": value}])
                }
                "given" => {
                    json!([which, {"op": "replace", "path": format!("/name/{name}/given"), "value": value.split_whitespace().collect::<Vec<_>>()}])
                }
                "birthDate" => json!([{"op": "replace", "path": "/birthDate", "value": value}]),
                _ => json!([{"op": "replace", "path": "/gender", "value": value}]),
            }
        }
    };
    let reason = fields.get(&format!("reason-{what}")).unwrap_or_default();
    let body = json!({"patches": patches, "reason": reason, "case": format!("Task/{case}")});
    state
        .app
        .update(
            &request(session, rid),
            nhs,
            version,
            body.to_string().as_bytes(),
        )
        .await
        .map(|_| ())
}
