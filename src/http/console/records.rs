//! Patient records as the console shows them: one line for a lookup, a table of the fields
//! that matter to a correction — two records side by side with the fields that differ marked —
//! and a record's version history from its audit trail.

use maud::{html, Markup};
use serde_json::Value;

use super::layout::when;
use crate::domain::patient::{CONFIDENTIALITY_SYSTEM, DEATH_NOTIFICATION_URL};
use crate::store::AuditEntry;

fn usual_name(p: &Value) -> Option<&Value> {
    let names = p["name"].as_array()?;
    names
        .iter()
        .find(|n| n["use"] == "usual")
        .or_else(|| names.first())
}

fn name(p: &Value) -> String {
    let Some(n) = usual_name(p) else {
        return String::new();
    };
    let given: Vec<&str> = n["given"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let family = n["family"].as_str().unwrap_or_default().to_uppercase();
    format!("{} {family}", given.join(" ")).trim().to_string()
}

/// "Jane Florence SMITH, born 2010-10-22" — who a looked-up NHS number is.
pub fn one_line(p: &Value) -> String {
    let mut s = name(p);
    if let Some(b) = p["birthDate"].as_str() {
        s.push_str(&format!(", born {b}"));
    }
    if p.get("deceasedDateTime").is_some() {
        s.push_str(" (recorded as dead)");
    }
    if s.is_empty() {
        "A record with no name".into()
    } else {
        s
    }
}

fn address(p: &Value) -> String {
    p["address"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let mut parts: Vec<&str> = a["line"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            parts.extend(a["postalCode"].as_str());
            format!(
                "{} ({})",
                parts.join(", "),
                a["use"].as_str().unwrap_or("address")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn telecom(p: &Value) -> String {
    p["telecom"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["value"].as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

fn death_status(p: &Value) -> String {
    p["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["url"] == DEATH_NOTIFICATION_URL)
        .and_then(|e| {
            e["extension"]
                .as_array()?
                .iter()
                .find(|s| s["url"] == "deathNotificationStatus")?
                .pointer("/valueCodeableConcept/coding/0/display")?
                .as_str()
                .map(str::to_string)
        })
        .unwrap_or_default()
}

fn confidentiality(p: &Value) -> String {
    p.pointer("/meta/security")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|s| s["system"] == CONFIDENTIALITY_SYSTEM)
        .and_then(|s| s["display"].as_str().or(s["code"].as_str()))
        .unwrap_or_default()
        .to_string()
}

/// The rows a correction looks at: `(label, value)`.
pub fn rows(p: &Value) -> Vec<(&'static str, String)> {
    vec![
        (
            "NHS number",
            p["id"].as_str().unwrap_or_default().to_string(),
        ),
        (
            "Version",
            p.pointer("/meta/versionId")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        ),
        ("Name", name(p)),
        (
            "Gender",
            p["gender"].as_str().unwrap_or_default().to_string(),
        ),
        (
            "Birth date",
            p["birthDate"].as_str().unwrap_or_default().to_string(),
        ),
        (
            "Died",
            p["deceasedDateTime"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        ),
        ("Death notification", death_status(p)),
        ("Address", address(p)),
        ("Telephone and e-mail", telecom(p)),
        (
            "GP practice",
            p.pointer("/generalPractitioner/0/identifier/value")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        ),
        ("Confidentiality", confidentiality(p)),
    ]
}

/// One or more records side by side; with two, the rows that differ are marked (in words as
/// well as colour). Version and NHS number always differ and are not marked.
pub fn compare(records: &[Value]) -> Markup {
    let columns: Vec<Vec<(&str, String)>> = records.iter().map(rows).collect();
    let Some(first) = columns.first() else {
        return html! {};
    };
    html! {
        table.records {
            caption { @if records.len() > 1 { "The records side by side; rows marked “differs” are not the same" } @else { "The record" } }
            thead { tr {
                th scope="col" { "Field" }
                @for p in records { th scope="col" { "Record " span.nhs { (p["id"].as_str().unwrap_or_default()) } } }
            } }
            tbody {
                @for (i, (label, _)) in first.iter().enumerate() {
                    @let values: Vec<&str> = columns.iter().map(|c| c[i].1.as_str()).collect();
                    @let differs = records.len() > 1 && i > 1 && values.iter().any(|v| *v != values[0]);
                    tr.differs[differs] {
                        th scope="row" { (label) @if differs { " " span.flag { "differs" } } }
                        @for v in &values { td { @if v.is_empty() { span.muted { "—" } } @else { (v) } } }
                    }
                }
            }
        }
    }
}

/// A record's versions, newest first, from its audit trail.
pub fn history(nhs: &str, entries: &[AuditEntry]) -> Markup {
    html! {
        details.history {
            summary { "Version history of " span.nhs { (nhs) } " (" (entries.len()) " changes)" }
            @if entries.is_empty() { p { "Version 1 only: never changed." } } @else {
                table {
                    caption.visually-hidden { "Changes to " (nhs) }
                    thead { tr { th scope="col" { "Version" } th scope="col" { "When" } th scope="col" { "What" }
                                  th scope="col" { "Who" } th scope="col" { "Reason" } } }
                    tbody {
                        @for e in entries.iter().rev() {
                            tr {
                                td { (e.version_after) }
                                td { (when(&e.at)) }
                                td { (e.operation) }
                                td { (e.subject) " (" (e.role) ")" }
                                td { (e.reason.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
    }
}
