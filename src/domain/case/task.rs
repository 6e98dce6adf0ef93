//! A case as a FHIR R4 `Task`: raising one from a practice's request, the facts read back from
//! it, the index entries it is found under, and who may read it.

use serde_json::{json, Value};

use super::kind::Patients;
use super::{
    part, CaseKind, OdsCode, Owner, Status, CASE_KIND_SYSTEM, CASE_PART_SYSTEM, NHS_NUMBER_SYSTEM,
    ODS_SYSTEM,
};
use crate::domain::{ErrorCode, NhsNumber, PdsError, Role};

/// The longest description, evidence or note text taken (characters).
pub const MAX_TEXT: usize = 4000;

/// A case as raised, parsed from a `POST /Task` body.
#[derive(Clone, Debug, PartialEq)]
pub struct NewCase {
    pub kind: CaseKind,
    pub patient: Option<NhsNumber>,
    /// The other NHS number of a duplicate (or of the record a confused one is mixed with).
    pub other: Option<NhsNumber>,
    pub requester: OdsCode,
    pub description: String,
    pub evidence: Vec<String>,
}

/// The properties a new case may carry; the rest are the service's to set.
const CREATE_PROPERTIES: &[&str] = &[
    "resourceType",
    "status",
    "intent",
    "code",
    "for",
    "requester",
    "description",
    "input",
];

fn invalid(detail: impl Into<String>) -> PdsError {
    PdsError::new(ErrorCode::InvalidValue, detail.into())
}

fn text(v: Option<&Value>, what: &str) -> Result<String, PdsError> {
    let s = v
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| PdsError::missing_value(what))?;
    if s.chars().count() > MAX_TEXT {
        return Err(invalid(format!(
            "{what} is longer than {MAX_TEXT} characters"
        )));
    }
    Ok(s.to_string())
}

/// An NHS number from a Reference (`identifier` with the NHS number system, or
/// `reference` `Patient/<nhs>`) or an Identifier.
fn nhs_number(v: &Value, what: &str) -> Result<NhsNumber, PdsError> {
    fn from_identifier(i: &Value) -> Option<&str> {
        (i.get("system").and_then(Value::as_str) == Some(NHS_NUMBER_SYSTEM))
            .then(|| i.get("value").and_then(Value::as_str))
            .flatten()
    }
    let raw = from_identifier(v)
        .or_else(|| v.get("identifier").and_then(from_identifier))
        .or_else(|| {
            v.get("reference")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("Patient/"))
        })
        .ok_or_else(|| {
            invalid(format!(
                "{what} must name a patient by NHS number (identifier system {NHS_NUMBER_SYSTEM}, or reference Patient/<NHS number>)"
            ))
        })?;
    NhsNumber::parse(raw).map_err(|_| invalid(format!("{what} is not a valid NHS number")))
}

/// The `type` code of an `input` / `output` entry.
pub fn part_code(entry: &Value) -> Option<&str> {
    entry
        .pointer("/type/coding")?
        .as_array()?
        .iter()
        .find(|c| c.get("system").and_then(Value::as_str) == Some(CASE_PART_SYSTEM))?
        .get("code")?
        .as_str()
}

impl NewCase {
    /// Parses a new case. A practice raises cases as itself (`requester`, if given, must be
    /// its own ODS code); PCSE and the NBO raise them on a practice's behalf (`requester`
    /// required).
    pub fn parse(body: &Value, role: Role, ods: Option<&OdsCode>) -> Result<NewCase, PdsError> {
        let obj = body
            .as_object()
            .ok_or_else(|| invalid("the request body must be a Task resource (a JSON object)"))?;
        if let Some(extra) = obj
            .keys()
            .find(|k| !CREATE_PROPERTIES.contains(&k.as_str()))
        {
            return Err(PdsError::new(
                ErrorCode::AdditionalProperties,
                format!("Invalid property for a new case: {}; the service sets it or it is not part of a case", crate::domain::outcome::clip(extra)),
            ));
        }
        if obj.get("resourceType").and_then(Value::as_str) != Some("Task") {
            return Err(invalid("resourceType must be Task"));
        }
        if let Some(s) = obj.get("status") {
            if s.as_str() != Some(Status::Requested.code()) {
                return Err(invalid("a new case's status is requested"));
            }
        }
        if let Some(i) = obj.get("intent") {
            if i.as_str() != Some("order") {
                return Err(invalid("a case's intent is order"));
            }
        }
        let coding = obj
            .get("code")
            .and_then(|c| c.get("coding"))
            .and_then(Value::as_array)
            .ok_or_else(|| PdsError::missing_value("code"))?;
        let kind = coding
            .iter()
            .find(|c| c.get("system").and_then(Value::as_str) == Some(CASE_KIND_SYSTEM))
            .and_then(|c| c.get("code").and_then(Value::as_str))
            .and_then(CaseKind::parse)
            .ok_or_else(|| {
                let known: Vec<&str> = CaseKind::all().map(CaseKind::code).collect();
                invalid(format!(
                    "code must be one coding from {CASE_KIND_SYSTEM}: {}",
                    known.join(", ")
                ))
            })?;
        let requester = match (role, obj.get("requester")) {
            (Role::Practice, given) => {
                let own = ods.ok_or_else(|| PdsError::bare(ErrorCode::AccessForbidden))?;
                if let Some(r) = given {
                    if ods_of(r).as_ref() != Some(own) {
                        return Err(PdsError::new(
                            ErrorCode::AccessForbidden,
                            "A practice raises cases as itself: requester must be its own ODS code",
                        ));
                    }
                }
                own.clone()
            }
            (Role::Pcse | Role::BackOffice, Some(r)) => ods_of(r).ok_or_else(|| {
                invalid(format!(
                    "requester must be the practice's Organization identifier ({ODS_SYSTEM})"
                ))
            })?,
            (Role::Pcse | Role::BackOffice, None) => {
                return Err(PdsError::missing_value("requester"))
            }
            _ => return Err(PdsError::bare(ErrorCode::AccessForbidden)),
        };
        let patient = obj.get("for").map(|f| nhs_number(f, "for")).transpose()?;
        let mut other = None;
        let mut evidence = Vec::new();
        let inputs = match obj.get("input") {
            None => &Vec::new(),
            Some(Value::Array(a)) => a,
            Some(_) => return Err(invalid("input must be a list")),
        };
        for entry in inputs {
            match part_code(entry) {
                Some(part::OTHER_NHS_NUMBER) if other.is_none() => {
                    let value = entry
                        .get("valueIdentifier")
                        .ok_or_else(|| PdsError::missing_value("input.valueIdentifier"))?;
                    other = Some(nhs_number(value, "the other NHS number")?);
                }
                Some(part::OTHER_NHS_NUMBER) => {
                    return Err(invalid("a case names at most one other NHS number"))
                }
                Some(part::EVIDENCE) => {
                    evidence.push(text(entry.get("valueString"), "input.valueString")?)
                }
                _ => {
                    return Err(invalid(format!(
                        "each input is typed by {CASE_PART_SYSTEM}: {} or {}",
                        part::OTHER_NHS_NUMBER,
                        part::EVIDENCE
                    )))
                }
            }
        }
        match (kind.patients(), patient, other) {
            (Patients::NoneOrOne, _, None) => {}
            (Patients::One | Patients::OneOrTwo, Some(_), None) => {}
            (Patients::OneOrTwo, Some(p), Some(o)) | (Patients::Two, Some(p), Some(o))
                if p != o => {}
            (Patients::OneOrTwo | Patients::Two, Some(_), Some(_)) => {
                return Err(invalid("the two NHS numbers of a case must differ"))
            }
            (Patients::Two, Some(_), None) => {
                return Err(PdsError::new(
                    ErrorCode::MissingValue,
                    format!(
                        "A {} case names the other NHS number too (input {})",
                        kind.display().to_lowercase(),
                        part::OTHER_NHS_NUMBER
                    ),
                ))
            }
            (_, None, _) if kind.patients() != Patients::NoneOrOne => {
                return Err(PdsError::missing_value("for"))
            }
            _ => {
                return Err(invalid(format!(
                    "a {} case names one patient",
                    kind.display().to_lowercase()
                )))
            }
        }
        Ok(NewCase {
            kind,
            patient,
            other,
            requester,
            description: text(obj.get("description"), "description")?,
            evidence,
        })
    }

    /// The patients the case is about.
    pub fn patients(&self) -> Vec<NhsNumber> {
        self.patient.into_iter().chain(self.other).collect()
    }

    /// The Task as first stored (version 1, `requested`, owned by PCSE).
    pub fn to_task(&self, id: &str, now: &str, due: time::Date) -> Value {
        let mut task = json!({
            "resourceType": "Task",
            "id": id,
            "meta": {"versionId": "1", "lastUpdated": now},
            "status": Status::Requested.code(),
            "intent": "order",
            "code": {"coding": [{"system": CASE_KIND_SYSTEM, "code": self.kind.code(), "display": self.kind.display()}]},
            "description": self.description,
            "authoredOn": now,
            "lastModified": now,
            "requester": practice_reference(&self.requester),
            "owner": Owner::Pcse.reference(),
            "restriction": {"period": {"end": date(due)}},
        });
        let map = task.as_object_mut().expect("an object");
        if let Some(p) = self.patient {
            map.insert("for".into(), patient_reference(p));
        }
        let mut input = Vec::new();
        if let Some(o) = self.other {
            input.push(json!({
                "type": part_type(part::OTHER_NHS_NUMBER),
                "valueIdentifier": {"system": NHS_NUMBER_SYSTEM, "value": o.to_string()},
            }));
        }
        for e in &self.evidence {
            input.push(json!({"type": part_type(part::EVIDENCE), "valueString": e}));
        }
        if !input.is_empty() {
            map.insert("input".into(), Value::Array(input));
        }
        task
    }
}

/// A date as FHIR writes it (`YYYY-MM-DD`).
pub fn date(d: time::Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

pub fn part_type(code: &str) -> Value {
    json!({"coding": [{"system": CASE_PART_SYSTEM, "code": code}]})
}

pub fn patient_reference(nhs: NhsNumber) -> Value {
    json!({
        "reference": format!("Patient/{nhs}"),
        "identifier": {"system": NHS_NUMBER_SYSTEM, "value": nhs.to_string()},
    })
}

pub fn practice_reference(ods: &OdsCode) -> Value {
    json!({"type": "Organization", "identifier": {"system": ODS_SYSTEM, "value": ods.as_str()}})
}

/// The ODS code of an Organization reference.
pub fn ods_of(reference: &Value) -> Option<OdsCode> {
    let id = reference.get("identifier")?;
    if id.get("system")?.as_str()? != ODS_SYSTEM {
        return None;
    }
    OdsCode::parse(id.get("value")?.as_str()?).ok()
}

/// The case a correction names: `"Task/<id>"` or `{"reference": "Task/<id>"}` beside
/// `patches`, or a `case` Parameters part (`valueReference` or `valueString`).
pub fn case_of(body: &Value) -> Result<Option<String>, PdsError> {
    let value = match body.get("resourceType").and_then(Value::as_str) {
        Some("Parameters") => body
            .get("parameter")
            .and_then(Value::as_array)
            .and_then(|ps| {
                ps.iter()
                    .find(|p| p.get("name").and_then(Value::as_str) == Some("case"))
            })
            .map(|p| {
                p.get("valueReference")
                    .or_else(|| p.get("valueString"))
                    .cloned()
                    .unwrap_or(Value::Null)
            }),
        _ => body.get("case").cloned(),
    };
    let Some(value) = value else {
        return Ok(None);
    };
    let text = match &value {
        Value::String(s) => Some(s.as_str()),
        Value::Object(o) => o.get("reference").and_then(Value::as_str),
        _ => None,
    };
    let id = text
        .map(|t| t.strip_prefix("Task/").unwrap_or(t))
        .filter(|id| valid_id(id))
        .ok_or_else(|| {
            PdsError::new(
                ErrorCode::InvalidValue,
                "case must name a case: Task/<id> (a string, or a Reference)",
            )
        })?;
    Ok(Some(id.to_string()))
}

/// A FHIR id: 1–64 letters, digits, `-` and `.`.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// What the service reads back from a stored Task.
#[derive(Clone, Debug, PartialEq)]
pub struct Facts {
    pub kind: CaseKind,
    pub status: Status,
    pub owner: Owner,
    pub requester: OdsCode,
    pub patients: Vec<NhsNumber>,
    /// `YYYY-MM-DD`.
    pub due: String,
}

impl Facts {
    /// The facts of a Task the service wrote (an error means the stored document is not one).
    pub fn of(task: &Value) -> Result<Facts, String> {
        let bad = |what: &str| format!("a stored Task without a valid {what}");
        let kind = task
            .pointer("/code/coding/0/code")
            .and_then(Value::as_str)
            .and_then(CaseKind::parse)
            .ok_or_else(|| bad("code"))?;
        let status = task
            .get("status")
            .and_then(Value::as_str)
            .and_then(Status::parse)
            .ok_or_else(|| bad("status"))?;
        let owner = task
            .pointer("/owner/identifier/value")
            .and_then(Value::as_str)
            .and_then(Owner::parse)
            .ok_or_else(|| bad("owner"))?;
        let requester = task
            .get("requester")
            .and_then(ods_of)
            .ok_or_else(|| bad("requester"))?;
        let mut patients = Vec::new();
        if let Some(f) = task.get("for") {
            patients.push(nhs_number(f, "for").map_err(|_| bad("for"))?);
        }
        for entry in task
            .get("input")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if part_code(entry) == Some(part::OTHER_NHS_NUMBER) {
                let v = entry.get("valueIdentifier").ok_or_else(|| bad("input"))?;
                patients.push(nhs_number(v, "input").map_err(|_| bad("input"))?);
            }
        }
        let due = task
            .pointer("/restriction/period/end")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("due date"))?
            .to_string();
        Ok(Facts {
            kind,
            status,
            owner,
            requester,
            patients,
            due,
        })
    }

    /// The index keys of this version (each read in due-date order, [`Facts::due`]): by
    /// status, kind, owner, requester, each patient, each practice that may read it (`reach`),
    /// and `open` while it is not closed (the overdue queue).
    pub fn index_keys(&self, reach: &[String]) -> Vec<String> {
        let mut keys = vec![
            "all".to_string(),
            format!("status={}", self.status.code()),
            format!("code={}", self.kind.code()),
            format!("owner={}", self.owner.code()),
            format!("requester={}", self.requester),
        ];
        keys.extend(self.patients.iter().map(|p| format!("patient={p}")));
        keys.extend(reach.iter().map(|o| format!("reach={o}")));
        if !self.status.is_closed() {
            keys.push("open".into());
        }
        keys.sort();
        keys.dedup();
        keys
    }

    /// Whether a caller may read the case: PCSE and the NBO every case; a practice the cases it
    /// raised and those whose patients were registered with it when the case was last written
    /// (`reach`, which never includes the practice of a restricted record); nobody else.
    pub fn readable_by(&self, role: Role, ods: Option<&OdsCode>, reach: &[String]) -> bool {
        match role {
            Role::Pcse | Role::BackOffice => true,
            Role::Practice => {
                ods.is_some_and(|o| *o == self.requester || reach.iter().any(|r| r == o.as_str()))
            }
            _ => false,
        }
    }
}

/// The Task as `role` may see it. The NBO sees everything; others do not see what a change
/// of identity's case produced — its corrections, resolution and follow-on actions may name
/// the new NHS number, and nothing may link the old one to it for anyone but the NBO.
pub fn view(task: &Value, role: Role) -> Value {
    if role.is_back_office() {
        return task.clone();
    }
    let mut shown = task.clone();
    let identity = task.pointer("/code/coding/0/code").and_then(Value::as_str)
        == Some(CaseKind::ChangeOfIdentity.code());
    let Some(Value::Array(out)) = shown.get_mut("output") else {
        return shown;
    };
    out.retain(|o| {
        !(identity
            || part_code(o) == Some(part::CORRECTION)
                && o.pointer("/type/text").and_then(Value::as_str) == Some("change-identity"))
    });
    if out.is_empty() {
        if let Some(m) = shown.as_object_mut() {
            m.remove("output");
        }
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ods(s: &str) -> OdsCode {
        OdsCode::parse(s).unwrap()
    }

    fn duplicate(other: &str) -> Value {
        json!({
            "resourceType": "Task",
            "code": {"coding": [{"system": CASE_KIND_SYSTEM, "code": "duplicate-nhs-number"}]},
            "for": {"identifier": {"system": NHS_NUMBER_SYSTEM, "value": "9991000003"}},
            "description": "Two records for one patient",
            "input": [
                {"type": part_type(part::OTHER_NHS_NUMBER), "valueIdentifier": {"system": NHS_NUMBER_SYSTEM, "value": other}},
                {"type": part_type(part::EVIDENCE), "valueString": "Same name, birth date and address"},
            ],
        })
    }

    #[test]
    fn a_practice_raises_a_duplicate_as_itself() {
        let me = ods("Y12345");
        let case = NewCase::parse(&duplicate("9991000011"), Role::Practice, Some(&me)).unwrap();
        assert_eq!(case.requester, me);
        assert_eq!(case.patients().len(), 2);
        let task = case.to_task(
            "t1",
            "2026-12-02T10:00:00Z",
            time::macros::date!(2027 - 02 - 10),
        );
        let facts = Facts::of(&task).unwrap();
        assert_eq!(
            (facts.status, facts.owner, facts.due.as_str()),
            (Status::Requested, Owner::Pcse, "2027-02-10")
        );
        assert_eq!(facts.patients, case.patients());
        assert!(facts.readable_by(Role::Practice, Some(&me), &[]));
        assert!(!facts.readable_by(Role::Practice, Some(&ods("A81001")), &[]));
        assert!(facts.readable_by(Role::Practice, Some(&ods("A81001")), &["A81001".into()]));
        assert!(!facts.readable_by(Role::HealthcareWorker, None, &[]));
        let keys = facts.index_keys(&[]);
        assert!(
            keys.contains(&"open".to_string()) && keys.contains(&"patient=9991000011".to_string())
        );
    }

    #[test]
    fn bad_cases_are_refused_with_the_reason() {
        let me = ods("Y12345");
        let refused = |body: Value, role: Role| NewCase::parse(&body, role, Some(&me)).unwrap_err();
        assert_eq!(
            refused(duplicate("9991000003"), Role::Practice).code,
            ErrorCode::InvalidValue
        );
        assert_eq!(
            refused(duplicate("9991000012"), Role::Practice).code,
            ErrorCode::InvalidValue
        );
        let mut extra = duplicate("9991000011");
        extra["owner"] = json!("nbo");
        assert_eq!(
            refused(extra, Role::Practice).code,
            ErrorCode::AdditionalProperties
        );
        let mut alone = duplicate("9991000011");
        alone.as_object_mut().unwrap().remove("input");
        assert_eq!(refused(alone, Role::Practice).code, ErrorCode::MissingValue);
        // PCSE names the practice; a practice cannot raise a case as another
        assert_eq!(
            refused(duplicate("9991000011"), Role::Pcse).code,
            ErrorCode::MissingValue
        );
        let mut other = duplicate("9991000011");
        other["requester"] = practice_reference(&ods("A81001"));
        assert_eq!(
            refused(other, Role::Practice).code,
            ErrorCode::AccessForbidden
        );
        assert_eq!(
            refused(duplicate("9991000011"), Role::HealthcareWorker).code,
            ErrorCode::AccessForbidden
        );
    }

    #[test]
    fn others_do_not_see_a_change_of_identity_correction() {
        let task = json!({"resourceType": "Task", "output": [
            {"type": {"coding": [{"system": CASE_PART_SYSTEM, "code": part::CORRECTION}], "text": "change-identity"},
             "valueReference": {"reference": "Patient/9993000001/_history/1"}}]});
        assert!(view(&task, Role::Pcse).get("output").is_none());
        assert_eq!(view(&task, Role::BackOffice), task);
    }
}
