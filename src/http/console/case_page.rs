//! A case: reporting one (a form per kind), its page (what it is about, the conversation, the
//! corrections recorded on it) and the moves the signed-in role may make from where it is —
//! each move a form, drawn from the life-cycle table itself.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{html, Markup};
use serde_json::{json, Value};

use super::layout::{
    days_between, form_keys, input, kind_name, nhs_input, overdue, page, status_tag, text,
    textarea, textarea_with, when,
};
use super::session::Session;
use super::{
    body_of, corrections, error_text, html_page, posted, request, see_other, status_of, Fields,
};
use crate::domain::case::kind::Patients;
use crate::domain::case::lifecycle::{moves, Needs, TRANSITIONS};
use crate::domain::case::task::{self, part_code, Facts};
use crate::domain::case::{
    part, CaseKind, Status, CASE_KIND_SYSTEM, NHS_NUMBER_SYSTEM, ODS_SYSTEM,
};
use crate::domain::{PdsError, Role, Version};
use crate::http::AppState;

#[derive(serde::Deserialize)]
pub struct KindQuery {
    kind: Option<String>,
}

/// `GET /console/cases/new[?kind=…]`: the kinds to choose from, then that kind's form.
pub async fn new_case(
    State(_): State<AppState>,
    session: Session,
    Query(q): Query<KindQuery>,
) -> Response {
    match q.kind.as_deref().and_then(CaseKind::parse) {
        Some(kind) => html_page(
            StatusCode::OK,
            case_form(&session, kind, &Fields::parse(b""), None),
        ),
        None => html_page(
            StatusCode::OK,
            page(
                "Report an incident",
                Some(&session),
                None,
                html! {
                    p { "What is wrong with the record, or what change does the patient need?" }
                    ul.kinds {
                        @for kind in CaseKind::all() {
                            li {
                                a href={"/console/cases/new?kind=" (kind.code())} { (kind_name(kind)) }
                                p.hint { (kind.definition()) }
                            }
                        }
                    }
                },
            ),
        ),
    }
}

fn case_form(
    session: &Session,
    kind: CaseKind,
    values: &Fields,
    error: Option<&str>,
) -> maud::Markup {
    let v = |name: &str| values.get(name).unwrap_or_default().to_string();
    let patients = kind.patients();
    page(
        &format!("Report: {}", kind_name(kind)),
        Some(session),
        error,
        html! {
            p.hint { (kind.definition()) }
            form.panel method="post" action="/console/cases" novalidate {
                (form_keys(session))
                input type="hidden" name="kind" value=(kind.code());
                @if session.role() != Role::Practice {
                    (input("requester", "The practice that reported it (ODS code)", Some("e.g. Y12345"), true, &v("requester")))
                }
                @match patients {
                    Patients::NoneOrOne => {
                        div.field {
                            label for="f-patient" { "NHS number, if the person has one" }
                            input.nhs #f-patient type="text" name="patient" value=(v("patient")) inputmode="numeric"
                                autocomplete="off" aria-describedby="f-patient-check";
                            p.check #f-patient-check aria-live="polite" {}
                        }
                    }
                    _ => { (nhs_input("patient", "The patient's NHS number", &v("patient"))) }
                }
                @match patients {
                    Patients::Two => { (nhs_input("other", "The patient's other NHS number", &v("other"))) }
                    Patients::OneOrTwo => {
                        div.field {
                            label for="f-other" { "The other patient's NHS number, if known" }
                            input.nhs #f-other type="text" name="other" value=(v("other")) inputmode="numeric"
                                autocomplete="off" aria-describedby="f-other-check";
                            p.check #f-other-check aria-live="polite" {}
                        }
                    }
                    _ => {}
                }
                (textarea_with("description", "What is wrong", Some("What you found and where; no more personal detail than the NBO needs"), true, &v("description")))
                (textarea_with("evidence", "Evidence (optional)", Some("e.g. documents seen, dates, who confirmed it"), false, &v("evidence")))
                button type="submit" { "Send the report" }
            }
        },
    )
}

/// `POST /console/cases`: raises the case through the same use case as `POST /Task`.
pub async fn raise(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (fields, rid) = match posted(&session, &headers, &body) {
        Ok(p) => p,
        Err(refused) => return *refused,
    };
    let Some(kind) = fields.get("kind").and_then(CaseKind::parse) else {
        return super::see_other("/console/cases/new");
    };
    let nhs = |n: &str| json!({"system": NHS_NUMBER_SYSTEM, "value": n.split_whitespace().collect::<String>()});
    let mut task = json!({
        "resourceType": "Task",
        "code": {"coding": [{"system": CASE_KIND_SYSTEM, "code": kind.code()}]},
        "description": fields.get("description").unwrap_or_default(),
    });
    if let Some(p) = fields.get("patient") {
        task["for"] = json!({"identifier": nhs(p)});
    }
    let mut inputs = Vec::new();
    if let Some(o) = fields.get("other") {
        inputs.push(
            json!({"type": task::part_type(part::OTHER_NHS_NUMBER), "valueIdentifier": nhs(o)}),
        );
    }
    if let Some(e) = fields.get("evidence") {
        inputs.push(json!({"type": task::part_type(part::EVIDENCE), "valueString": e}));
    }
    if !inputs.is_empty() {
        task["input"] = Value::Array(inputs);
    }
    if let Some(r) = fields.get("requester") {
        task["requester"] = json!({"identifier": {"system": ODS_SYSTEM, "value": r}});
    }
    match state
        .app
        .create_case(&request(&session, &rid), task.to_string().as_bytes())
        .await
    {
        Ok(a) => see_other(&format!(
            "/console/cases/{}",
            body_of(&a)["id"].as_str().unwrap_or_default()
        )),
        Err(e) => html_page(
            status_of(&e),
            case_form(&session, kind, &fields, Some(&error_text(&e))),
        ),
    }
}

/// `GET /console/cases/{id}`.
pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    case_response(&state, &session, &id, None, StatusCode::OK).await
}

/// The case page, with `error` (a refused action's words) at the top.
pub async fn case_response(
    state: &AppState,
    session: &Session,
    id: &str,
    error: Option<&PdsError>,
    status: StatusCode,
) -> Response {
    let task = match state.app.read_case(&session.caller, id).await {
        Ok(a) => body_of(&a),
        Err(e) => {
            return html_page(
                status_of(&e),
                page(
                    "Case not found",
                    Some(session),
                    None,
                    html! {
                        p { "There is no case with this id that you may see. " a href="/console/" { "Back to the start" } }
                    },
                ),
            )
        }
    };
    let Ok(facts) = Facts::of(&task) else {
        return html_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            page("Case unreadable", Some(session), None, html! {}),
        );
    };
    let status = error.map(status_of).unwrap_or(status);
    let error = error.map(error_text);
    let nbo = session.role() == Role::BackOffice;
    let records = if nbo {
        corrections::records_section(state, session, &task, &facts).await
    } else {
        html! {}
    };
    html_page(
        status,
        page(
            &format!("{} case", kind_name(facts.kind)),
            Some(session),
            error.as_deref(),
            html! {
                (summary(&task, &facts))
                (conversation(&task))
                (outcome(&task))
                (records)
                (move_forms(session, &task, &facts))
            },
        ),
    )
}

fn summary(task: &Value, f: &Facts) -> Markup {
    let today = crate::env::today();
    let overdue = overdue(f);
    html! {
        dl.summary {
            dt { "Status" } dd { (status_tag(f.status))
                @if let Some(b) = task.pointer("/businessStatus/text").and_then(Value::as_str) { " — " (b) } }
            @if let Some(r) = task.pointer("/statusReason/text").and_then(Value::as_str) { dt { "Reason" } dd { (r) } }
            dt { "Patient" } dd {
                @for (i, p) in f.patients.iter().enumerate() { @if i > 0 { " and " } span.nhs { (p.to_string()) } }
                @if f.patients.is_empty() { "no NHS number yet" }
            }
            dt { "Reported by" } dd { "GP practice " (f.requester.to_string()) }
            dt { "With" } dd { (text(task, "/owner/display")) }
            dt { "Raised" } dd { (when(text(task, "/authoredOn")))
                " (" (days_between(text(task, "/authoredOn"), today).unwrap_or(0)) " days ago)" }
            dt { "Due" } dd { (f.due) @if overdue { " " strong.overdue { "Overdue" } } }
            dt { "What is wrong" } dd { (text(task, "/description")) }
        }
    }
}

fn conversation(task: &Value) -> Markup {
    let evidence: Vec<&str> = task["input"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| part_code(i) == Some(part::EVIDENCE))
        .filter_map(|i| i["valueString"].as_str())
        .collect();
    let notes = task["note"].as_array().cloned().unwrap_or_default();
    html! {
        @if !evidence.is_empty() {
            h2 { "Evidence" }
            ul { @for e in evidence { li { (e) } } }
        }
        h2 { "Conversation" }
        @if notes.is_empty() { p.muted { "No notes yet." } }
        ol.notes {
            @for n in &notes {
                li {
                    p.meta { strong { (text(n, "/authorString")) } ", " (when(text(n, "/time"))) }
                    p { (text(n, "/text")) }
                }
            }
        }
    }
}

/// Corrections recorded on the case, and on completion its resolution and follow-on actions.
fn outcome(task: &Value) -> Markup {
    let outputs = task["output"].as_array().cloned().unwrap_or_default();
    if outputs.is_empty() {
        return html! {};
    }
    let of = |code: &str| {
        outputs
            .iter()
            .filter(move |o| part_code(o) == Some(code))
            .cloned()
            .collect::<Vec<_>>()
    };
    let corrections = of(part::CORRECTION);
    let resolution = of(part::RESOLUTION);
    let actions = of(part::FOLLOW_ON_ACTION);
    html! {
        @if !corrections.is_empty() {
            h2 { "Corrections made" }
            ul {
                @for c in &corrections {
                    li { (text(c, "/type/text")) ": " (text(c, "/valueReference/reference").trim_start_matches("Patient/").replace("/_history/", " version "))
                         @if let Some(d) = c.pointer("/valueReference/display").and_then(Value::as_str) { " (" (d) ")" } }
                }
            }
        }
        @for r in &resolution { h2 { "Resolution" } p { (text(r, "/valueString")) } }
        @if !actions.is_empty() {
            h2 { "What the practice must do next" }
            ul.actions { @for a in &actions { li { (text(a, "/valueString")) } } }
        }
    }
}

/// The button label of a move, and the heading of its form.
fn move_label(role: Role, from: Status, to: Status) -> &'static str {
    match (from, to) {
        (Status::Requested, Status::Received) => "Receive the case",
        (Status::Received, Status::OnHold) => "Ask the practice for information",
        (Status::OnHold, Status::Received) if role == Role::Practice => "Send the answer",
        (Status::OnHold, Status::Received) => "Record the practice's answer",
        (Status::Received, Status::Accepted) => "Pass the case to the NBO",
        (Status::Accepted, Status::InProgress) => "Start work on the case",
        (Status::InProgress, Status::Completed) => "Complete the case",
        (_, Status::Rejected) => "Reject the case",
        (_, Status::Cancelled) => "Cancel the case",
        _ => "Move the case",
    }
}

/// A form for each move the signed-in role may make from the case's status (from the
/// life-cycle table), and one to add a note without moving it.
fn move_forms(session: &Session, task: &Value, f: &Facts) -> Markup {
    let role = session.role();
    if role == Role::Practice && session.caller.ods.as_ref() != Some(&f.requester) {
        return html! {};
    }
    let id = text(task, "/id");
    let version = text(task, "/meta/versionId");
    let action = format!("/console/cases/{id}/move");
    let needs = |to: Status| {
        TRANSITIONS
            .iter()
            .find(|(from, t, _, _)| *from == f.status && *t == to)
            .map(|r| r.3)
            .unwrap_or(Needs::Nothing)
    };
    let targets = moves(role, f.status);
    if f.status.is_closed() {
        return html! { p.muted { "This case is closed." } };
    }
    html! {
        h2 { "What you can do" }
        div.actions-grid {
            @for to in &targets {
                @let label = move_label(role, f.status, *to);
                @let anchor = if *to == Status::Received && f.status == Status::OnHold { "answer" } else { to.code() };
                form.panel method="post" action=(action) id=(anchor) {
                    h3 { (label) }
                    (form_keys(session))
                    input type="hidden" name="version" value=(version);
                    input type="hidden" name="to" value=(to.code());
                    @match needs(*to) {
                        Needs::InformationRequest => { (textarea(&format!("note-{}", to.code()), "Your question to the practice", None, true)) }
                        Needs::Answer => {
                            @let label = if role == Role::Practice { "Your answer" } else { "The practice's answer" };
                            (textarea(&format!("note-{}", to.code()), label, Some("The information PCSE asked for"), true))
                        }
                        Needs::Completion => {
                            (textarea("resolution", "Resolution", Some("What was done, e.g. the records were merged"), true))
                            (textarea("actions", "Follow-on actions for the practices", Some("One per line, e.g. Re-register the patient under NHS number …"), true))
                        }
                        Needs::Reason => { (textarea(&format!("reason-{}", to.code()), "Reason", None, true)) }
                        Needs::PassToNbo | Needs::Nothing => {
                            (textarea(&format!("note-{}", to.code()), "Note (optional)", None, false))
                        }
                    }
                    button type="submit" { (label) }
                }
            }
            form.panel method="post" action=(action) id="note" {
                h3 { "Add a note" }
                (form_keys(session))
                input type="hidden" name="version" value=(version);
                input type="hidden" name="to" value=(f.status.code());
                (textarea(&format!("note-{}", f.status.code()), "Note", None, true))
                button type="submit" { "Add the note" }
            }
        }
    }
}

/// `POST /console/cases/{id}/move`: the move (or note) as a JSON Patch through the same use
/// case as `PATCH /Task/{id}`.
pub async fn move_case(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (fields, rid) = match posted(&session, &headers, &body) {
        Ok(p) => p,
        Err(refused) => return *refused,
    };
    let to = fields.get("to").unwrap_or_default().to_string();
    let mut ops = vec![json!({"op": "replace", "path": "/status", "value": to})];
    if let Some(n) = fields.get(&format!("note-{to}")) {
        ops.push(json!({"op": "add", "path": "/note/-", "value": {"text": n}}));
    }
    if let Some(r) = fields.get(&format!("reason-{to}")) {
        ops.push(json!({"op": "add", "path": "/statusReason", "value": {"text": r}}));
    }
    if let Some(r) = fields.get("resolution") {
        ops.push(json!({"op": "add", "path": "/output/-", "value": {"type": task::part_type(part::RESOLUTION), "valueString": r}}));
    }
    for a in fields.lines("actions") {
        ops.push(json!({"op": "add", "path": "/output/-", "value": {"type": task::part_type(part::FOLLOW_ON_ACTION), "valueString": a}}));
    }
    let version = fields
        .get("version")
        .and_then(|v| v.parse().ok())
        .and_then(Version::new);
    let Some(version) = version else {
        let e = PdsError::missing_value("version");
        return case_response(&state, &session, &id, Some(&e), StatusCode::OK).await;
    };
    let patch = Value::Array(ops).to_string();
    match state
        .app
        .update_case(&request(&session, &rid), &id, version, patch.as_bytes())
        .await
    {
        Ok(_) => see_other(&format!("/console/cases/{id}")),
        Err(e) => case_response(&state, &session, &id, Some(&e), StatusCode::OK).await,
    }
}
