//! The console's page frame and the small pieces every screen uses (status tags, dates, the
//! hidden fields of a form, an error box).

use maud::{html, Markup, DOCTYPE};
use serde_json::Value;

use super::session::Session;
use crate::domain::case::{CaseKind, Status};
use crate::domain::Role;

/// A whole page: header with the signed-in user and the role's navigation, the title as the
/// page's one `h1`, then `content`; an `error` (what a refused action said) above it.
pub fn page(
    title: &str,
    session: Option<&Session>,
    error: Option<&str>,
    content: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — pds-facade console" }
                link rel="stylesheet" href="/console/static/console.css";
                link rel="icon" href="/console/static/icon.svg" type="image/svg+xml";
                script src="/console/static/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to main content" }
                header.top {
                    div.bar {
                        a.brand href="/console/" { "pds-facade " span { "case work" } }
                        @if let Some(s) = session {
                            nav aria-label="Main" {
                                ul {
                                    @for (href, label) in nav(s.role()) {
                                        li { a href=(href) { (label) } }
                                    }
                                }
                            }
                            div.who {
                                span { "Signed in as " strong { (s.who()) } }
                                form method="post" action="/console/sign-out" {
                                    input type="hidden" name="csrf" value=(s.csrf());
                                    button.link type="submit" { "Sign out" }
                                }
                            }
                        }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    @if let Some(e) = error {
                        div.error role="alert" {
                            h2 { "That was not done" }
                            p { (e) }
                        }
                    }
                    (content)
                }
            }
        }
    }
}

fn nav(role: Role) -> Vec<(&'static str, &'static str)> {
    match role {
        Role::Practice => vec![
            ("/console/", "My cases"),
            ("/console/cases/new", "Report an incident"),
            ("/console/messages", "Messages"),
        ],
        Role::Pcse => vec![("/console/", "Inbox"), ("/console/cases/new", "Log a case")],
        _ => vec![("/console/", "Queue"), ("/console/all", "All cases")],
    }
}

/// A status as a coloured tag with its words.
pub fn status_tag(status: Status) -> Markup {
    let words = match status {
        Status::Requested => "New",
        Status::Received => "With PCSE",
        Status::OnHold => "Waiting for the practice",
        Status::Accepted => "With the NBO",
        Status::InProgress => "NBO working on it",
        Status::Completed => "Completed",
        Status::Rejected => "Rejected",
        Status::Cancelled => "Cancelled",
    };
    html! { span class={"tag tag-" (status.code())} { (words) } }
}

pub fn kind_name(kind: CaseKind) -> &'static str {
    kind.display()
}

/// The hidden fields of a form that changes something: the CSRF token, and a fresh request id
/// (a form sent twice — a double click, a reload — is one change, replayed the second time).
pub fn form_keys(session: &Session) -> Markup {
    html! {
        input type="hidden" name="csrf" value=(session.csrf());
        input type="hidden" name="request_id" value=(uuid::Uuid::new_v4().to_string());
    }
}

/// A labelled text area.
pub fn textarea(name: &str, label: &str, hint: Option<&str>, required: bool) -> Markup {
    textarea_with(name, label, hint, required, "")
}

/// A labelled text area holding `value` (a refused form shown again keeps what was typed).
pub fn textarea_with(
    name: &str,
    label: &str,
    hint: Option<&str>,
    required: bool,
    value: &str,
) -> Markup {
    let id = format!("f-{name}");
    let hint_id = format!("{id}-hint");
    html! {
        div.field {
            label for=(id) { (label) }
            @if let Some(h) = hint { p.hint id=(hint_id) { (h) } }
            textarea id=(id) name=(name) rows="3" required[required]
                aria-describedby=[hint.map(|_| hint_id.clone())] { (value) }
        }
    }
}

/// A labelled one-line input.
pub fn input(name: &str, label: &str, hint: Option<&str>, required: bool, value: &str) -> Markup {
    let id = format!("f-{name}");
    let hint_id = format!("{id}-hint");
    html! {
        div.field {
            label for=(id) { (label) }
            @if let Some(h) = hint { p.hint id=(hint_id) { (h) } }
            input id=(id) type="text" name=(name) value=(value) required[required]
                aria-describedby=[hint.map(|_| hint_id.clone())];
        }
    }
}

/// An NHS number input: checked (mod 11) and looked up as it is typed when scripts run; the
/// server checks it again whatever the browser did.
pub fn nhs_input(name: &str, label: &str, value: &str) -> Markup {
    let id = format!("f-{name}");
    html! {
        div.field {
            label for=(id) { (label) }
            p.hint id={(id) "-hint"} { "10 digits, e.g. 999 100 0003" }
            input.nhs id=(id) type="text" name=(name) value=(value) inputmode="numeric"
                autocomplete="off" required aria-describedby={(id) "-hint " (id) "-check"};
            p.check id={(id) "-check"} aria-live="polite" {}
        }
    }
}

/// Days from `from` (a date or date-time) to `to`.
pub fn days_between(from: &str, to: time::Date) -> Option<i64> {
    let day = from.get(..10)?;
    let d = time::Date::parse(
        day,
        &time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()?;
    Some((to - d).whole_days())
}

/// A date-time shown as "2026-12-03 10:15".
pub fn when(instant: &str) -> String {
    instant.get(..16).unwrap_or(instant).replace('T', " ")
}

/// The string at `pointer` in a resource, or "" (pages show what is there).
pub fn text<'a>(t: &'a Value, pointer: &str) -> &'a str {
    t.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// An open case past its due date.
pub fn overdue(f: &crate::domain::case::task::Facts) -> bool {
    !f.status.is_closed()
        && f.due.as_str() < crate::domain::case::task::date(crate::env::today()).as_str()
}
