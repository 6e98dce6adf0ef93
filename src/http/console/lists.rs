//! The lists each role starts from: a practice's cases, PCSE's inbox by status and age, the
//! NBO's queue by due date with counts per kind, and a practice's messages.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{html, Markup};
use serde_json::Value;

use super::layout::{days_between, form_keys, kind_name, overdue, page, status_tag, text, when};
use super::session::Session;
use super::{body_of, error_text, html_page, posted, request, see_other, status_of};
use crate::domain::case::task::{part_code, Facts};
use crate::domain::case::{part, Status};
use crate::domain::{PdsError, Role, Version};
use crate::http::AppState;

/// The resources of a searchset Bundle.
pub(crate) fn resources(bundle: &Value) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["resource"].clone())
        .collect()
}

/// Cases found by `query` (the API's `GET /Task` parameters), as the session may see them.
pub(crate) async fn cases(
    state: &AppState,
    session: &Session,
    query: &[(&str, &str)],
) -> Result<Vec<(Facts, Value)>, PdsError> {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    pairs.push(("_count".into(), "500".into()));
    let answer = state.app.search_cases(&session.caller, &pairs).await?;
    Ok(resources(&body_of(&answer))
        .into_iter()
        .filter_map(|t| Facts::of(&t).ok().map(|f| (f, t)))
        .collect())
}

fn today() -> time::Date {
    crate::env::today()
}

fn patients_cell(f: &Facts) -> Markup {
    html! {
        @for (i, p) in f.patients.iter().enumerate() {
            @if i > 0 { br; }
            span.nhs { (p.to_string()) }
        }
        @if f.patients.is_empty() { span.muted { "no NHS number yet" } }
    }
}

fn due_cell(f: &Facts) -> Markup {
    html! {
        (f.due)
        @if overdue(f) { " " strong.overdue { "Overdue" } }
    }
}

fn case_link(t: &Value, f: &Facts) -> Markup {
    let id = text(t, "/id");
    html! { a href={"/console/cases/" (id)} { (kind_name(f.kind)) } }
}

/// The follow-on actions a completed case asks of the practices.
fn follow_on(t: &Value) -> Vec<&str> {
    t["output"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| part_code(o) == Some(part::FOLLOW_ON_ACTION))
        .filter_map(|o| o["valueString"].as_str())
        .collect()
}

fn failed(session: &Session, title: &str, e: &PdsError) -> Response {
    html_page(
        status_of(e),
        page(title, Some(session), Some(&error_text(e)), html! {}),
    )
}

/// A practice's start page: its cases with status, due date and what it must do next.
pub async fn my_cases(state: &AppState, session: &Session) -> Response {
    let found = match cases(state, session, &[("_sort", "-due")]).await {
        Ok(f) => f,
        Err(e) => return failed(session, "My cases", &e),
    };
    let unread = unread_count(state, session).await;
    html_page(
        StatusCode::OK,
        page(
            "My cases",
            Some(session),
            None,
            html! {
                @if unread > 0 {
                    p.notice { "You have " (unread) " unread " (if unread == 1 { "message" } else { "messages" }) ". "
                        a href="/console/messages" { "Read them" } }
                }
                p { a.button href="/console/cases/new" { "Report an incident" } }
                @if found.is_empty() {
                    p { "No cases yet." }
                } @else {
                    table {
                        caption { "Cases raised by this practice or about its patients" }
                        thead { tr { th scope="col" { "Case" } th scope="col" { "Patient" } th scope="col" { "Status" }
                                      th scope="col" { "Due" } th scope="col" { "What to do next" } } }
                        tbody {
                            @for (f, t) in &found {
                                tr {
                                    td { (case_link(t, f)) }
                                    td { (patients_cell(f)) }
                                    td { (status_tag(f.status)) }
                                    td { (due_cell(f)) }
                                    td {
                                        @if f.status == Status::OnHold && session.caller.ods.as_ref() == Some(&f.requester) {
                                            a href={"/console/cases/" (text(t, "/id")) "#answer"} { "Answer PCSE's question" }
                                        }
                                        @let actions = follow_on(t);
                                        @if !actions.is_empty() {
                                            ul.actions { @for a in actions { li { (a) } } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            },
        ),
    )
}

async fn unread_count(state: &AppState, session: &Session) -> usize {
    let Some(ods) = &session.caller.ods else {
        return 0;
    };
    let pairs = vec![
        ("recipient".to_string(), ods.to_string()),
        ("status".to_string(), "in-progress".to_string()),
    ];
    match state.app.search_messages(&session.caller, &pairs).await {
        Ok(a) => body_of(&a)["total"].as_u64().unwrap_or(0) as usize,
        Err(_) => 0,
    }
}

/// The statuses PCSE's inbox shows, as tabs.
const INBOX: [(&str, &str); 5] = [
    ("requested", "New"),
    ("received", "Received"),
    ("on-hold", "Waiting for a practice"),
    ("accepted,in-progress", "With the NBO"),
    ("completed,rejected,cancelled", "Closed"),
];

#[derive(serde::Deserialize)]
pub struct InboxQuery {
    status: Option<String>,
}

/// PCSE's inbox: cases of one status group, oldest first, with their age.
pub async fn inbox(state: &AppState, session: &Session, status: Option<&str>) -> Response {
    let status = INBOX
        .iter()
        .find(|(s, _)| Some(*s) == status)
        .unwrap_or(&INBOX[0]);
    let mut counts = Vec::new();
    for (s, label) in INBOX {
        let n = cases(state, session, &[("status", s)])
            .await
            .map(|c| c.len())
            .unwrap_or(0);
        counts.push((s, label, n));
    }
    let mut found = match cases(state, session, &[("status", status.0)]).await {
        Ok(f) => f,
        Err(e) => return failed(session, "Inbox", &e),
    };
    found.sort_by(|a, b| text(&a.1, "/authoredOn").cmp(text(&b.1, "/authoredOn")));
    html_page(
        StatusCode::OK,
        page(
            "Inbox",
            Some(session),
            None,
            html! {
                nav.tabs aria-label="Case status" {
                    ul {
                        @for (s, label, n) in &counts {
                            li {
                                a href={"/console/inbox?status=" (s)} aria-current=[(*s == status.0).then_some("page")] {
                                    (label) " (" (n) ")"
                                }
                            }
                        }
                    }
                }
                h2 { (status.1) }
                @if found.is_empty() { p { "No cases." } } @else {
                    table {
                        caption { (status.1) ", oldest first" }
                        thead { tr { th scope="col" { "Case" } th scope="col" { "Patient" } th scope="col" { "Practice" }
                                      th scope="col" { "Status" } th scope="col" { "Age (days)" } th scope="col" { "Due" } } }
                        tbody {
                            @for (f, t) in &found {
                                tr {
                                    td { (case_link(t, f)) }
                                    td { (patients_cell(f)) }
                                    td { (f.requester.to_string()) }
                                    td { (status_tag(f.status)) }
                                    td { (days_between(text(t, "/authoredOn"), today()).unwrap_or(0)) }
                                    td { (due_cell(f)) }
                                }
                            }
                        }
                    }
                }
            },
        ),
    )
}

pub async fn inbox_page(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<InboxQuery>,
) -> Response {
    inbox(&state, &session, q.status.as_deref()).await
}

/// The NBO's queue: the cases it holds, by due date, overdue ones marked, counts per kind.
pub async fn queue(state: &AppState, session: &Session) -> Response {
    let found = match cases(
        state,
        session,
        &[("status", "accepted,in-progress"), ("_sort", "due")],
    )
    .await
    {
        Ok(f) => f,
        Err(e) => return failed(session, "Queue", &e),
    };
    let mut per_kind: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (f, _) in &found {
        let e = per_kind.entry(kind_name(f.kind)).or_default();
        e.0 += 1;
        if overdue(f) {
            e.1 += 1;
        }
    }
    let late = found.iter().filter(|(f, _)| overdue(f)).count();
    html_page(
        StatusCode::OK,
        page(
            "Queue",
            Some(session),
            None,
            html! {
                p { (found.len()) " cases with the National Back Office, " strong { (late) " overdue" } "." }
                table.counts {
                    caption { "Cases per kind" }
                    thead { tr { th scope="col" { "Kind" } th scope="col" { "Cases" } th scope="col" { "Overdue" } } }
                    tbody {
                        @for (kind, (n, o)) in &per_kind { tr { th scope="row" { (kind) } td { (n) } td { (o) } } }
                    }
                }
                table {
                    caption { "By due date, soonest first" }
                    thead { tr { th scope="col" { "Due" } th scope="col" { "Case" } th scope="col" { "Patient" }
                                  th scope="col" { "Practice" } th scope="col" { "Status" } } }
                    tbody {
                        @for (f, t) in &found {
                            tr class=[overdue(f).then_some("late")] {
                                td { (due_cell(f)) }
                                td { (case_link(t, f)) }
                                td { (patients_cell(f)) }
                                td { (f.requester.to_string()) }
                                td { (status_tag(f.status)) }
                            }
                        }
                    }
                }
            },
        ),
    )
}

/// Every case (NBO and PCSE), newest due last.
pub async fn all_cases(State(state): State<AppState>, session: Session) -> Response {
    let found = match cases(&state, &session, &[("_sort", "due")]).await {
        Ok(f) => f,
        Err(e) => return failed(&session, "All cases", &e),
    };
    html_page(
        StatusCode::OK,
        page(
            "All cases",
            Some(&session),
            None,
            html! {
                table {
                    caption { "Every case, by due date" }
                    thead { tr { th scope="col" { "Due" } th scope="col" { "Case" } th scope="col" { "Patient" }
                                  th scope="col" { "Practice" } th scope="col" { "Status" } } }
                    tbody {
                        @for (f, t) in &found {
                            tr { td { (due_cell(f)) } td { (case_link(t, f)) } td { (patients_cell(f)) }
                                 td { (f.requester.to_string()) } td { (status_tag(f.status)) } }
                        }
                    }
                }
            },
        ),
    )
}

/// A practice's messages, newest first; unread ones can be marked read.
pub async fn messages(State(state): State<AppState>, session: Session) -> Response {
    let pairs: Vec<(String, String)> = match (&session.caller.role, &session.caller.ods) {
        (Role::Practice, Some(ods)) => vec![("recipient".into(), ods.to_string())],
        _ => vec![],
    };
    let found = match state.app.search_messages(&session.caller, &pairs).await {
        Ok(a) => resources(&body_of(&a)),
        Err(e) => return failed(&session, "Messages", &e),
    };
    html_page(
        StatusCode::OK,
        page(
            "Messages",
            Some(&session),
            None,
            html! {
                @if found.is_empty() { p { "No messages." } }
                @for m in &found {
                    @let unread = m["status"] == "in-progress";
                    @let question = text(m, "/category/0/coding/0/code") == "information-request";
                    article.message.unread[unread] {
                        h2 {
                            (if question { "PCSE asks for information" } else { "Outcome of a case" })
                            @if unread { " " span.tag.tag-new { "Unread" } }
                        }
                        p.meta { "Sent " (when(text(m, "/sent"))) " by " (text(m, "/sender/display"))
                            @if let Some(nhs) = m.pointer("/subject/identifier/value").and_then(Value::as_str) {
                                " about patient " span.nhs { (nhs) }
                            }
                        }
                        @for p in m["payload"].as_array().into_iter().flatten() {
                            p { (p["contentString"].as_str().unwrap_or_default()) }
                        }
                        @if let Some(task) = m.pointer("/about/0/reference").and_then(Value::as_str) {
                            p { a href={"/console/cases/" (task.trim_start_matches("Task/"))} {
                                (if question { "Answer on the case" } else { "See the case" }) } }
                        }
                        @if unread && session.caller.role == Role::Practice {
                            form method="post" action={"/console/messages/" (text(m, "/id")) "/read"} {
                                (form_keys(&session))
                                input type="hidden" name="version" value=(text(m, "/meta/versionId"));
                                button type="submit" { "Mark as read" }
                            }
                        }
                    }
                }
            },
        ),
    )
}

pub async fn mark_read(
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
    let Some(version) = fields
        .get("version")
        .and_then(|v| v.parse().ok())
        .and_then(Version::new)
    else {
        return failed(&session, "Messages", &PdsError::missing_value("version"));
    };
    let patch =
        serde_json::json!([{"op": "replace", "path": "/status", "value": "completed"}]).to_string();
    match state
        .app
        .update_message(&request(&session, &rid), &id, version, patch.as_bytes())
        .await
    {
        Ok(_) => see_other("/console/messages"),
        Err(e) => failed(&session, "Messages", &e),
    }
}
