//! Merging duplicate records and undoing a merge, as pure functions over the patch layer.
//!
//! A merge (FHIR R5 `$merge` style) marks the source `active: false` with a `replaced-by` link
//! to the target, and gives the target a `replaces` link back. Nothing else of the source
//! changes, so an unmerge — removing those links — brings it back with its own data however
//! much the target was edited in between. Both sides go through [`patch::apply_system`]: the
//! same normalisation, schema and business rules as every change.

use serde_json::{json, Value};

use super::confidentiality::{self, Label};
use super::nhs_number::NhsNumber;
use super::outcome::PdsError;
use super::parameters::Parameters;
use super::patch::{self, Op, OpKind, PatchContext};
use super::patient::{Patient, NHS_NUMBER_SYSTEM};
use super::schema::Schemas;

/// A `$merge` or `$unmerge` request, parsed from a FHIR `Parameters` body.
#[derive(Clone, Debug, PartialEq)]
pub struct MergeRequest {
    pub source: NhsNumber,
    /// Required for `$merge`; `$unmerge` takes the target from the merge record.
    pub target: Option<NhsNumber>,
    pub preview: bool,
    /// The target as it should read after the merge (server fields are kept from the target).
    pub result_patient: Option<Value>,
    pub reason: String,
    /// The case the correction is recorded on (`case` part: `Task/<id>`).
    pub case: Option<String>,
}

impl MergeRequest {
    /// Parses `Parameters` (`source-patient-identifier`, `target-patient-identifier` as
    /// `valueIdentifier` with the NHS number system, `preview`, `result-patient`, `reason`).
    pub fn parse(body: &Value, needs_target: bool) -> Result<MergeRequest, PdsError> {
        let signature = if needs_target {
            &super::operation::MERGE
        } else {
            &super::operation::UNMERGE
        };
        let params = Parameters::parse(body, &signature.names())?;
        let source = params.required_nhs_number("source-patient-identifier")?;
        let target = params.nhs_number("target-patient-identifier")?;
        if needs_target && target.is_none() {
            return Err(PdsError::missing_value("target-patient-identifier"));
        }
        let preview = params.boolean("preview")?.unwrap_or(false);
        let result_patient = params.resource("result-patient")?.cloned();
        let reason = params.reason()?;
        Ok(MergeRequest {
            source,
            target,
            preview,
            result_patient,
            reason,
            case: super::case::task::case_of(body)?,
        })
    }
}

fn link(other: NhsNumber, kind: &str) -> Value {
    json!({"other": {"reference": format!("Patient/{other}"), "type": "Patient",
                     "identifier": {"system": NHS_NUMBER_SYSTEM, "value": other.to_string()}},
           "type": kind})
}

fn links(p: &Patient) -> Vec<Value> {
    p.doc()
        .get("link")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn points_to(l: &Value, other: NhsNumber, kind: &str) -> bool {
    l.get("type").and_then(Value::as_str) == Some(kind)
        && l.pointer("/other/reference").and_then(Value::as_str)
            == Some(format!("Patient/{other}").as_str())
}

/// The operations that set a record's `link` list to `new`.
fn set_links(p: &Patient, new: Vec<Value>) -> Op {
    match (p.doc().contains_key("link"), new.is_empty()) {
        (true, true) => Op::new(OpKind::Remove, "/link", None),
        (true, false) => Op::new(OpKind::Replace, "/link", Some(Value::Array(new))),
        (false, _) => Op::new(OpKind::Add, "/link", Some(Value::Array(new))),
    }
}

/// Ops that turn the target's content into `result` (server fields and merge state kept).
fn result_ops(target: &Patient, result: &Value) -> Result<Vec<Op>, PdsError> {
    const KEPT: [&str; 6] = ["resourceType", "id", "identifier", "meta", "link", "active"];
    let Some(result) = result.as_object() else {
        return Err(PdsError::invalid_value("not a Patient", "result-patient"));
    };
    if result.get("resourceType").and_then(Value::as_str) != Some("Patient") {
        return Err(PdsError::invalid_value("not a Patient", "result-patient"));
    }
    if let Some(id) = result.get("id").and_then(Value::as_str) {
        if id != target.id().to_string() {
            return Err(PdsError::invalid_value(id, "result-patient/id"));
        }
    }
    let mut ops = Vec::new();
    for (field, value) in result.iter().filter(|(k, _)| !KEPT.contains(&k.as_str())) {
        ops.push(Op::new(
            OpKind::Add,
            &format!("/{}", escape(field)),
            Some(value.clone()),
        ));
    }
    for field in target
        .doc()
        .keys()
        .filter(|k| !KEPT.contains(&k.as_str()) && !result.contains_key(*k))
    {
        ops.push(Op::new(
            OpKind::Remove,
            &format!("/{}", escape(field)),
            None,
        ));
    }
    Ok(ops)
}

fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// The merged pair: `(source, target)` at their next versions, and the operations each got.
pub struct Merged {
    pub source: Patient,
    pub source_ops: Vec<Op>,
    pub target: Patient,
    pub target_ops: Vec<Op>,
    /// The label the target took on (a merge: the source's, when stricter; an unmerge: the
    /// one it gets back).
    pub label_change: Option<Label>,
}

impl Merged {
    /// What the outcome message says about the label, if it changed.
    pub fn label_note(&self) -> String {
        match self.label_change {
            Some(l) => format!(
                "; {} now carries confidentiality {} ({})",
                self.target.id(),
                l.code(),
                if l == Label::Unrestricted {
                    "its label from before the merge"
                } else {
                    "the stricter label of the two records"
                }
            ),
            None => String::new(),
        }
    }
}

/// Merges `source` into `target` (the caller has followed the target's chain to its survivor
/// and checked that source is neither the target nor superseded).
pub fn merge(
    source: &Patient,
    target: &Patient,
    result_patient: Option<&Value>,
    ctx: &mut PatchContext,
    schemas: &Schemas,
) -> Result<Merged, PdsError> {
    if source.id() == target.id() {
        return Err(PdsError::invalid_update(
            "a record cannot be merged into itself",
        ));
    }
    let mut source_links = links(source);
    source_links.push(link(target.id(), "replaced-by"));
    let source_ops = vec![
        Op::new(OpKind::Add, "/active", Some(Value::Bool(false))),
        set_links(source, source_links),
    ];
    let mut target_ops = match result_patient {
        Some(r) => result_ops(target, r)?,
        None => Vec::new(),
    };
    let mut target_links = links(target);
    target_links.push(link(source.id(), "replaces"));
    target_ops.push(set_links(target, target_links));
    // the survivor answers for both numbers: it must be as protected as the stricter of them
    let label_change = confidentiality::for_survivor(source, target);
    if let Some(l) = label_change {
        target_ops.extend(confidentiality::set_ops(target, l.to_json()));
    }
    Ok(Merged {
        source: patch::apply_system(source, &source_ops, ctx, schemas)?,
        target: patch::apply_system(target, &target_ops, ctx, schemas)?,
        source_ops,
        target_ops,
        label_change,
    })
}

/// Undoes the merge of `source` into `target`: source active again with its own data (and its
/// own label, which the merge never changed), the links between the two removed, the target
/// given `label` back when one is due ([`confidentiality::after_unmerge`]); each side a new
/// version.
pub fn unmerge(
    source: &Patient,
    target: &Patient,
    label: Option<Label>,
    ctx: &mut PatchContext,
    schemas: &Schemas,
) -> Result<Merged, PdsError> {
    let source_links: Vec<Value> = links(source)
        .into_iter()
        .filter(|l| !points_to(l, target.id(), "replaced-by"))
        .collect();
    let mut source_ops = vec![set_links(source, source_links)];
    if source.doc().contains_key("active") {
        source_ops.insert(0, Op::new(OpKind::Remove, "/active", None));
    }
    let target_links: Vec<Value> = links(target)
        .into_iter()
        .filter(|l| !points_to(l, source.id(), "replaces"))
        .collect();
    let mut target_ops = vec![set_links(target, target_links)];
    if let Some(l) = label {
        target_ops.extend(confidentiality::set_ops(target, l.to_json()));
    }
    Ok(Merged {
        source: patch::apply_system(source, &source_ops, ctx, schemas)?,
        target: patch::apply_system(target, &target_ops, ctx, schemas)?,
        source_ops,
        target_ops,
        label_change: label,
    })
}

/// The version of `target` at which `source` was merged into it: the oldest of the newest run
/// of versions carrying the `replaces` link to `source` (`history` newest first).
pub fn merged_at(history: &[Patient], source: NhsNumber) -> Option<&Patient> {
    history
        .iter()
        .take_while(|v| links(v).iter().any(|l| points_to(l, source, "replaces")))
        .last()
}

/// The other records still merged into `target` once `source` is unmerged.
pub fn other_sources(target: &Patient, source: NhsNumber) -> Vec<NhsNumber> {
    links(target)
        .iter()
        .filter(|l| l.get("type").and_then(Value::as_str) == Some("replaces"))
        .filter_map(|l| l.pointer("/other/identifier/value")?.as_str())
        .filter_map(|n| NhsNumber::parse(n).ok())
        .filter(|n| *n != source)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Role;
    use time::macros::date;

    fn patient(id: &str, family: &str) -> Patient {
        let doc = json!({"resourceType": "Patient", "id": id,
            "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": id}],
            "name": [{"id": "N1", "use": "usual", "family": family}], "gender": "female", "birthDate": "1980-01-01"});
        Patient::parse(doc, &Schemas::compile(), date!(2026 - 11 - 27)).unwrap()
    }

    fn ctx_do<T>(f: impl FnOnce(&mut PatchContext) -> T) -> T {
        let mut id = || "X".to_string();
        let mut ctx = PatchContext {
            role: Role::BackOffice,
            today: date!(2026 - 11 - 27),
            new_id: &mut id,
        };
        f(&mut ctx)
    }

    #[test]
    fn merge_then_unmerge_restores_the_source() {
        let s = Schemas::compile();
        let (a, b) = (
            patient("9000000009", "Source"),
            patient("9000000017", "Target"),
        );
        let m = ctx_do(|c| merge(&a, &b, None, c, &s)).unwrap();
        assert_eq!(m.source.doc()["active"], false);
        assert_eq!(m.source.doc()["link"][0]["type"], "replaced-by");
        assert_eq!(
            m.source.doc()["link"][0]["other"]["reference"],
            "Patient/9000000017"
        );
        assert_eq!(m.target.doc()["link"][0]["type"], "replaces");
        assert_eq!((m.source.version().get(), m.target.version().get()), (2, 2));
        let u = ctx_do(|c| unmerge(&m.source, &m.target, None, c, &s)).unwrap();
        assert!(!u.source.has_merge_state() && !u.target.has_merge_state());
        assert_eq!(u.source.doc()["name"], a.doc()["name"]);
        assert_eq!(u.source.version().get(), 3);
    }

    #[test]
    fn result_patient_replaces_target_content_under_the_rules() {
        let s = Schemas::compile();
        let (a, b) = (
            patient("9000000009", "Source"),
            patient("9000000017", "Target"),
        );
        let result = json!({"resourceType": "Patient", "name": [{"id": "N1", "use": "usual", "family": "Merged"}], "gender": "female", "birthDate": "1980-01-01"});
        let m = ctx_do(|c| merge(&a, &b, Some(&result), c, &s)).unwrap();
        assert_eq!(m.target.doc()["name"][0]["family"], "Merged");
        assert_eq!(m.target.doc()["identifier"], b.doc()["identifier"]);
        // removing the gender is refused even for the back office
        let bad = json!({"resourceType": "Patient", "name": [{"id": "N1", "use": "usual", "family": "Merged"}], "birthDate": "1980-01-01"});
        assert!(ctx_do(|c| merge(&a, &b, Some(&bad), c, &s)).is_err());
    }

    #[test]
    fn parses_parameters() {
        let ident = |n: &str| json!({"system": NHS_NUMBER_SYSTEM, "value": n});
        let body = json!({"resourceType": "Parameters", "parameter": [
            {"name": "source-patient-identifier", "valueIdentifier": ident("9000000009")},
            {"name": "target-patient-identifier", "valueIdentifier": ident("9000000017")},
            {"name": "preview", "valueBoolean": true},
            {"name": "reason", "valueString": "duplicate registration"}]});
        let r = MergeRequest::parse(&body, true).unwrap();
        assert!(r.preview);
        assert_eq!(r.target.unwrap().to_string(), "9000000017");
        let mut no_reason = body.clone();
        no_reason["parameter"].as_array_mut().unwrap().pop();
        assert_eq!(
            MergeRequest::parse(&no_reason, true)
                .unwrap_err()
                .diagnostics
                .unwrap(),
            "Missing value - 'reason'"
        );
        let mut bad = body.clone();
        bad["parameter"][0]["valueIdentifier"]["value"] = json!("9000000000");
        assert_eq!(
            MergeRequest::parse(&bad, true).unwrap_err().code,
            crate::domain::ErrorCode::InvalidValue
        );
    }
}
