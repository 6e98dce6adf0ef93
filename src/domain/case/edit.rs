//! Changing a case: a JSON Patch applied to the Task, then the result checked against the
//! case rules — what may change at all, who may move it where, what each move must bring —
//! and stamped by the service (note authors and times, `lastModified`, the version).
//!
//! Checking the patched document rather than the patch's operations keeps the rules in one
//! place whatever route the client's operations take to the same result.

use serde_json::{json, Map, Value};

use super::lifecycle::{allowed, refusal, Needs, Status, AWAITING_PRACTICE};
use super::task::{part_code, part_type, Facts, MAX_TEXT};
use super::{part, OdsCode, Owner};
use crate::domain::{ErrorCode, PdsError, Role};

/// The Task elements a PATCH may change; the rest are the service's or fixed when raised.
const EDITABLE: &[&str] = &[
    "status",
    "businessStatus",
    "statusReason",
    "note",
    "input",
    "output",
];

/// Who changes the case and when.
pub struct Editor<'a> {
    pub role: Role,
    pub ods: Option<&'a OdsCode>,
    pub subject: &'a str,
    /// RFC 3339 UTC.
    pub now: &'a str,
}

impl Editor<'_> {
    /// How notes name their author: the practice by its ODS code, PCSE and the NBO by the
    /// token's subject.
    pub fn author(&self) -> String {
        match (self.role, self.ods) {
            (Role::Practice, Some(o)) => format!("GP practice {o}"),
            (Role::Pcse, _) => format!("PCSE ({})", self.subject),
            (Role::BackOffice, _) => format!("NBO ({})", self.subject),
            (role, _) => format!("{role} ({})", self.subject),
        }
    }
}

/// A checked change of a case.
#[derive(Clone, Debug, PartialEq)]
pub struct Edit {
    /// The Task's next version, stamped.
    pub doc: Value,
    /// The move made, if the status changed.
    pub moved: Option<(Status, Status, Needs)>,
    /// The text of each note added.
    pub notes: Vec<String>,
    /// On completion: the resolution and the follow-on actions.
    pub resolution: Option<String>,
    pub actions: Vec<String>,
}

fn invalid(detail: impl Into<String>) -> PdsError {
    PdsError::invalid_update(detail.into())
}

fn conflict(detail: impl Into<String>) -> PdsError {
    PdsError::new(ErrorCode::CaseConflict, detail.into())
}

fn list(doc: &Value, field: &str) -> Vec<Value> {
    doc.get(field)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The entries `after` adds to `before`'s list `field`: a list may only grow at its end.
fn added(before: &Value, after: &Value, field: &str) -> Result<Vec<Value>, PdsError> {
    if after.get(field).is_some_and(|v| !v.is_array()) {
        return Err(invalid(format!("{field} must be a list")));
    }
    let (old, new) = (list(before, field), list(after, field));
    if new.len() < old.len() || new[..old.len()] != old[..] {
        return Err(invalid(format!(
            "{field} entries are never changed or removed: add new ones at /{field}/-"
        )));
    }
    Ok(new[old.len()..].to_vec())
}

fn text_of(entry: &Value, field: &str, what: &str) -> Result<String, PdsError> {
    let s = entry
        .get(field)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| PdsError::missing_value(what))?;
    if s.chars().count() > MAX_TEXT {
        return Err(PdsError::new(
            ErrorCode::InvalidValue,
            format!("{what} is longer than {MAX_TEXT} characters"),
        ));
    }
    Ok(s.to_string())
}

/// An added entry has exactly these members.
fn only(entry: &Value, members: &[&str], what: &str) -> Result<(), PdsError> {
    let obj = entry
        .as_object()
        .ok_or_else(|| invalid(format!("each {what} is an object")))?;
    if let Some(extra) = obj.keys().find(|k| !members.contains(&k.as_str())) {
        return Err(PdsError::new(
            ErrorCode::AdditionalProperties,
            format!(
                "Invalid property in a new {what}: {} (the service sets it, or it is not part of one)",
                crate::domain::outcome::clip(extra)
            ),
        ));
    }
    Ok(())
}

/// A typed text entry of `input` / `output`.
fn typed_text(
    entry: &Value,
    allowed_parts: &[&str],
    what: &str,
) -> Result<(String, String), PdsError> {
    only(entry, &["type", "valueString"], what)?;
    let code = part_code(entry)
        .filter(|c| allowed_parts.contains(c))
        .ok_or_else(|| {
            invalid(format!(
                "a new {what} is typed by {}: {}",
                super::CASE_PART_SYSTEM,
                allowed_parts.join(" or ")
            ))
        })?;
    Ok((
        code.to_string(),
        text_of(entry, "valueString", &format!("{what}.valueString"))?,
    ))
}

fn reason_text(doc: &Value) -> Option<&str> {
    doc.pointer("/statusReason/text")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Checks and stamps `after` (the stored Task `before` with the client's JSON Patch applied).
/// `version` is the next version number.
pub fn check(
    before: &Value,
    after: &Value,
    editor: &Editor,
    version: u32,
) -> Result<Edit, PdsError> {
    let facts = Facts::of(before).map_err(|_| PdsError::bare(ErrorCode::UnknownError))?;
    let (Some(old), Some(new)) = (before.as_object(), after.as_object()) else {
        return Err(invalid("the patched case must be a Task resource"));
    };
    for key in old.keys().chain(new.keys()) {
        if !EDITABLE.contains(&key.as_str()) && old.get(key) != new.get(key) {
            return Err(PdsError::new(
                ErrorCode::InvalidUpdate,
                format!(
                    "Invalid update with error - {} cannot be changed: only {} may be",
                    crate::domain::outcome::clip(key),
                    EDITABLE.join(", ")
                ),
            ));
        }
    }
    if facts.status.is_closed() {
        return Err(conflict(format!(
            "The case is {}: a closed case does not change",
            facts.status.code()
        )));
    }
    if editor.role == Role::Practice && editor.ods != Some(&facts.requester) {
        return Err(PdsError::new(
            ErrorCode::AccessForbidden,
            "Only the practice that raised a case adds to it",
        ));
    }
    let to = match new.get("status") {
        Some(Value::String(s)) => Status::parse(s).ok_or_else(|| {
            let known: Vec<&str> = Status::ALL.iter().map(|s| s.code()).collect();
            PdsError::new(
                ErrorCode::InvalidValue,
                format!("status must be one of {}", known.join(", ")),
            )
        })?,
        _ => return Err(PdsError::missing_value("status")),
    };
    let from = facts.status;
    let needs = if to == from {
        None
    } else {
        Some(
            allowed(editor.role, from, to)
                .ok_or_else(|| conflict(refusal(editor.role, from, to)))?,
        )
    };

    // notes: added at the end, text only; the service names the author and the time
    let mut notes = Vec::new();
    let mut stamped_notes = list(before, "note");
    for n in added(before, after, "note")? {
        only(&n, &["text"], "note")?;
        let text = text_of(&n, "text", "note.text")?;
        stamped_notes
            .push(json!({"authorString": editor.author(), "time": editor.now, "text": text}));
        notes.push(text);
    }
    // inputs: the practice's further evidence
    let new_inputs = added(before, after, "input")?;
    for i in &new_inputs {
        typed_text(i, &[part::EVIDENCE], "input")?;
    }
    // outputs: a resolution and follow-on actions, on completion only (corrections are
    // recorded by the correction itself)
    let mut resolution = None;
    let mut actions = Vec::new();
    let new_outputs = added(before, after, "output")?;
    for o in &new_outputs {
        let (code, text) = typed_text(o, &[part::RESOLUTION, part::FOLLOW_ON_ACTION], "output")?;
        match code.as_str() {
            part::RESOLUTION if resolution.is_none() => resolution = Some(text),
            part::RESOLUTION => return Err(invalid("a case has one resolution")),
            _ => actions.push(text),
        }
    }
    if !new_outputs.is_empty() && needs != Some(Needs::Completion) {
        return Err(invalid(
            "a resolution and follow-on actions are added when the case is completed",
        ));
    }
    let business_changed = old.get("businessStatus") != new.get("businessStatus");
    let reason_changed = old.get("statusReason") != new.get("statusReason");

    let mut doc: Map<String, Value> = old.clone();
    doc.insert("status".into(), json!(to.code()));
    match needs {
        None => {
            if business_changed || reason_changed {
                return Err(invalid(
                    "businessStatus and statusReason change only with the status",
                ));
            }
            if notes.is_empty() && new_inputs.is_empty() {
                return Err(invalid("the patch changes nothing"));
            }
        }
        Some(needs) => {
            if reason_changed && needs != Needs::Reason {
                return Err(invalid(format!(
                    "statusReason is given when a case is rejected or cancelled, not when it becomes {}",
                    to.code()
                )));
            }
            if business_changed
                && !(needs == Needs::InformationRequest
                    && after
                        .pointer("/businessStatus/text")
                        .and_then(Value::as_str)
                        == Some(AWAITING_PRACTICE))
            {
                return Err(invalid("businessStatus is the service's to set"));
            }
            match needs {
                Needs::Nothing => {}
                Needs::InformationRequest => {
                    if notes.is_empty() {
                        return Err(PdsError::new(
                            ErrorCode::MissingValue,
                            "Asking the practice for information needs a note: the question it is sent",
                        ));
                    }
                    doc.insert("businessStatus".into(), json!({"text": AWAITING_PRACTICE}));
                }
                Needs::Answer => {
                    if notes.is_empty() && new_inputs.is_empty() {
                        return Err(PdsError::new(
                            ErrorCode::MissingValue,
                            "Answering needs a note or new evidence: the information asked for",
                        ));
                    }
                }
                Needs::PassToNbo => {
                    doc.insert("owner".into(), Owner::Nbo.reference());
                }
                Needs::Completion => {
                    if resolution.is_none() || actions.is_empty() {
                        return Err(PdsError::new(
                            ErrorCode::MissingValue,
                            format!(
                                "Completing a case needs an output {} and at least one output {} (what the practices concerned must do)",
                                part::RESOLUTION,
                                part::FOLLOW_ON_ACTION
                            ),
                        ));
                    }
                }
                Needs::Reason => {
                    let text = reason_text(after).ok_or_else(|| {
                        PdsError::new(
                            ErrorCode::MissingValue,
                            format!("A case is {} with a reason: statusReason.text", to.code()),
                        )
                    })?;
                    if text.chars().count() > MAX_TEXT {
                        return Err(PdsError::new(
                            ErrorCode::InvalidValue,
                            format!("statusReason.text is longer than {MAX_TEXT} characters"),
                        ));
                    }
                    doc.insert("statusReason".into(), json!({"text": text}));
                }
            }
            if needs != Needs::InformationRequest {
                doc.remove("businessStatus");
            }
        }
    }
    if !stamped_notes.is_empty() {
        doc.insert("note".into(), Value::Array(stamped_notes));
    }
    let mut inputs = list(before, "input");
    inputs.extend(new_inputs.iter().map(|i| {
        json!({"type": part_type(part::EVIDENCE), "valueString": i["valueString"].as_str().unwrap_or_default().trim()})
    }));
    if !inputs.is_empty() {
        doc.insert("input".into(), Value::Array(inputs));
    }
    let mut outputs = list(before, "output");
    if let Some(r) = &resolution {
        outputs.push(json!({"type": part_type(part::RESOLUTION), "valueString": r}));
    }
    outputs.extend(
        actions
            .iter()
            .map(|a| json!({"type": part_type(part::FOLLOW_ON_ACTION), "valueString": a})),
    );
    if !outputs.is_empty() {
        doc.insert("output".into(), Value::Array(outputs));
    }
    let mut doc = Value::Object(doc);
    stamp(&mut doc, version, editor.now);
    Ok(Edit {
        doc,
        moved: needs.map(|n| (from, to, n)),
        notes,
        resolution,
        actions,
    })
}

/// Sets a Task's version and last-modified time.
pub fn stamp(doc: &mut Value, version: u32, now: &str) {
    doc["meta"] = json!({"versionId": version.to_string(), "lastUpdated": now});
    doc["lastModified"] = json!(now);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::case::task::{practice_reference, NewCase};
    use crate::domain::case::{CASE_KIND_SYSTEM, NHS_NUMBER_SYSTEM};

    fn ods(s: &str) -> OdsCode {
        OdsCode::parse(s).unwrap()
    }

    fn case() -> Value {
        let body = json!({
            "resourceType": "Task",
            "code": {"coding": [{"system": CASE_KIND_SYSTEM, "code": "incorrect-death-status"}]},
            "for": {"identifier": {"system": NHS_NUMBER_SYSTEM, "value": "9991000003"}},
            "description": "Recorded as dead; seen in surgery today",
        });
        NewCase::parse(&body, Role::Practice, Some(&ods("Y12345")))
            .unwrap()
            .to_task(
                "t1",
                "2026-12-01T09:00:00Z",
                time::macros::date!(2026 - 12 - 15),
            )
    }

    fn editor(role: Role) -> Editor<'static> {
        static PRACTICE: std::sync::OnceLock<OdsCode> = std::sync::OnceLock::new();
        Editor {
            role,
            ods: (role == Role::Practice).then(|| PRACTICE.get_or_init(|| ods("Y12345"))),
            subject: "tester",
            now: "2026-12-02T10:00:00Z",
        }
    }

    fn with(doc: &Value, f: impl FnOnce(&mut Value)) -> Value {
        let mut d = doc.clone();
        f(&mut d);
        d
    }

    #[test]
    fn the_journey_each_move_with_what_it_needs() {
        let t = case();
        let received = check(
            &t,
            &with(&t, |d| d["status"] = json!("received")),
            &editor(Role::Pcse),
            2,
        )
        .unwrap();
        assert_eq!(received.doc["meta"]["versionId"], "2");
        let t = received.doc;
        // asking the practice needs the question
        let bare = with(&t, |d| d["status"] = json!("on-hold"));
        assert_eq!(
            check(&t, &bare, &editor(Role::Pcse), 3).unwrap_err().code,
            ErrorCode::MissingValue
        );
        let ask = with(&bare, |d| {
            d["note"] = json!([{"text": "Which date was the patient seen?"}])
        });
        let held = check(&t, &ask, &editor(Role::Pcse), 3).unwrap();
        assert_eq!(held.doc["businessStatus"]["text"], AWAITING_PRACTICE);
        assert_eq!(held.doc["note"][0]["authorString"], "PCSE (tester)");
        let t = held.doc;
        // the practice answers: back to received, businessStatus gone
        let answer = with(&t, |d| {
            d["status"] = json!("received");
            d["note"]
                .as_array_mut()
                .unwrap()
                .push(json!({"text": "Seen on 1 December"}));
        });
        let answered = check(&t, &answer, &editor(Role::Practice), 4).unwrap();
        assert!(answered.doc.get("businessStatus").is_none());
        assert_eq!(
            answered.doc["note"][1]["authorString"],
            "GP practice Y12345"
        );
        let t = answered.doc;
        let passed = check(
            &t,
            &with(&t, |d| d["status"] = json!("accepted")),
            &editor(Role::Pcse),
            5,
        )
        .unwrap();
        assert_eq!(passed.doc["owner"]["identifier"]["value"], "nbo");
        let t = passed.doc;
        // PCSE cannot start the NBO's work; the refusal names what it could do
        let e = check(
            &t,
            &with(&t, |d| d["status"] = json!("in-progress")),
            &editor(Role::Pcse),
            6,
        )
        .unwrap_err();
        assert_eq!(
            (e.code, e.code.info().status),
            (ErrorCode::CaseConflict, 409)
        );
        let t = check(
            &t,
            &with(&t, |d| d["status"] = json!("in-progress")),
            &editor(Role::BackOffice),
            6,
        )
        .unwrap()
        .doc;
        let done = with(&t, |d| {
            d["status"] = json!("completed");
            d["output"] = json!([
                {"type": part_type(part::RESOLUTION), "valueString": "Death status removed"},
                {"type": part_type(part::FOLLOW_ON_ACTION), "valueString": "Reinstate the record"}]);
        });
        let completed = check(&t, &done, &editor(Role::BackOffice), 7).unwrap();
        assert_eq!(completed.actions, vec!["Reinstate the record".to_string()]);
        let t = completed.doc;
        let e = check(
            &t,
            &with(&t, |d| d["note"] = json!([{"text": "more"}])),
            &editor(Role::BackOffice),
            8,
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::CaseConflict);
    }

    #[test]
    fn fixed_fields_history_and_other_practices_are_refused() {
        let t = case();
        let refuse =
            |after: Value, role: Role| check(&t, &after, &editor(role), 2).unwrap_err().code;
        assert_eq!(
            refuse(with(&t, |d| d["code"] = json!({})), Role::Pcse),
            ErrorCode::InvalidUpdate
        );
        assert_eq!(
            refuse(
                with(&t, |d| d["owner"] = Owner::Nbo.reference()),
                Role::Pcse
            ),
            ErrorCode::InvalidUpdate
        );
        assert_eq!(
            refuse(
                with(&t, |d| d["status"] = json!("received")),
                Role::Practice
            ),
            ErrorCode::CaseConflict
        );
        assert_eq!(
            refuse(with(&t, |d| d["status"] = json!("rejected")), Role::Pcse),
            ErrorCode::MissingValue
        );
        let rejected = with(&t, |d| {
            d["status"] = json!("rejected");
            d["statusReason"] = json!({"text": "Not a data-quality incident"});
        });
        assert!(check(&t, &rejected, &editor(Role::Pcse), 2).is_ok());
        assert_eq!(
            refuse(
                with(&t, |d| d["note"] =
                    json!([{"text": "x", "time": "2020-01-01"}])),
                Role::Pcse
            ),
            ErrorCode::AdditionalProperties
        );
        let mut other = t.clone();
        other["requester"] = practice_reference(&ods("A81001"));
        let note = with(&other, |d| d["note"] = json!([{"text": "hello"}]));
        assert_eq!(
            check(&other, &note, &editor(Role::Practice), 2)
                .unwrap_err()
                .code,
            ErrorCode::AccessForbidden
        );
        assert_eq!(refuse(t.clone(), Role::Pcse), ErrorCode::InvalidUpdate);
    }
}
