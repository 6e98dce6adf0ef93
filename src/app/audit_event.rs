//! The audit trail as FHIR R4 `AuditEvent`s (`GET /AuditEvent?entity=Patient/{id}`), so FHIR
//! tooling can read who changed what without the private `/_audit` JSON. One event per audit
//! entry: the agent is the token's subject with its role, the entity the patient version the
//! change produced (and the other record of a merge or change of identity), the request ids,
//! operation and operations applied as the entity's details, the reason as the purpose.
//! Back office only, like the trail itself.

use serde_json::{json, Value};

use super::{answer, Answer, App};
use crate::auth::Caller;
use crate::domain::{query, NhsNumber, PdsError};
use crate::store::AuditEntry;

/// The parameters `GET /AuditEvent` takes: the patient as `entity` (`Patient/<nhs>`, or the
/// full URL) or as `patient` (`<nhs>` or `Patient/<nhs>`).
pub fn patient_of(pairs: &[(String, String)]) -> Result<NhsNumber, PdsError> {
    let pairs = query::given(pairs);
    query::refuse_unknown(&pairs, &["entity", "patient"])?;
    let mut ids = pairs.iter().map(|&(k, v)| {
        let nhs = v.rsplit_once("Patient/").map(|(_, n)| n).unwrap_or(v);
        NhsNumber::parse(nhs).map_err(|_| PdsError::invalid_value(v, k))
    });
    let first = ids
        .next()
        .ok_or_else(|| PdsError::missing_value("entity"))??;
    for other in ids {
        if other? != first {
            return Err(PdsError::invalid_value("more than one patient", "entity"));
        }
    }
    Ok(first)
}

impl App {
    /// The patient's audit trail as a searchset Bundle of AuditEvents, oldest first.
    pub async fn audit_events(&self, caller: &Caller, id: NhsNumber) -> Result<Answer, PdsError> {
        let entries = self.audit_trail(caller, id).await?;
        let events: Vec<Value> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                json!({"fullUrl": format!("urn:uuid:{}", event_uuid(id, i)),
                    "search": {"mode": "match"}, "resource": audit_event(e, &event_id(id, i))})
            })
            .collect();
        let mut bundle = json!({"resourceType": "Bundle", "type": "searchset",
            "timestamp": answer::bundle_timestamp(), "total": events.len(),
            "link": [{"relation": "self", "url": format!("{}/AuditEvent?entity=Patient/{id}", self.base_url)}]});
        if !events.is_empty() {
            bundle["entry"] = Value::Array(events);
        }
        Ok(Answer::ok(answer::json_bytes(&bundle)))
    }
}

/// An event's id: the patient and its place in the trail (the trail is append-only).
fn event_id(id: NhsNumber, i: usize) -> String {
    format!("{id}-{}", i + 1)
}

/// A stable UUID for the Bundle entry's `fullUrl` (there is no AuditEvent read route).
fn event_uuid(id: NhsNumber, i: usize) -> uuid::Uuid {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&id.as_u64().to_be_bytes());
    bytes[8..].copy_from_slice(&(i as u64).to_be_bytes());
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The RESTful interaction an audited operation was made through.
fn interaction(operation: &str) -> (&'static str, &'static str) {
    match operation {
        "patch" | "flag" | "death-correction" => ("patch", "U"),
        "create" => ("create", "C"),
        // merge, unmerge, invalidate, revalidate, change-identity: `$` operations
        _ => ("operation", "E"),
    }
}

fn audit_event(e: &AuditEntry, id: &str) -> Value {
    let (code, action) = interaction(&e.operation);
    let mut details = vec![
        json!({"type": "operation", "valueString": e.operation}),
        json!({"type": "X-Request-ID", "valueString": e.request_id}),
    ];
    if let Some(c) = &e.correlation_id {
        details.push(json!({"type": "X-Correlation-ID", "valueString": c}));
    }
    if let Some(v) = e.version_before {
        details.push(json!({"type": "version-before", "valueString": v.to_string()}));
    }
    if let Some(p) = &e.patch {
        details.push(json!({"type": "patch", "valueString": p.to_string()}));
    }
    let patient = |nhs: &str, version: Option<u32>, role: (&str, &str)| {
        let reference = match version {
            Some(v) => format!("Patient/{nhs}/_history/{v}"),
            None => format!("Patient/{nhs}"),
        };
        json!({"what": {"reference": reference, "type": "Patient",
                "identifier": {"system": crate::domain::patient::NHS_NUMBER_SYSTEM, "value": nhs}},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": role.0, "display": role.1}})
    };
    let mut changed = patient(&e.patient, Some(e.version_after), ("1", "Patient"));
    changed["detail"] = Value::Array(details);
    let mut entities = vec![changed];
    if let Some(other) = &e.related {
        entities.push(patient(other, None, ("4", "Domain Resource")));
    }
    let mut event = json!({
        "resourceType": "AuditEvent",
        "id": id,
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": code}],
        "action": action,
        "recorded": e.at,
        "outcome": "0",
        "agent": [{
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type", "code": "humanuser", "display": "human user"}]},
            "role": [{"coding": [{"system": "https://pds-facade.local/CodeSystem/role", "code": e.role}], "text": e.role}],
            "who": {"identifier": {"value": e.subject}, "display": e.subject},
            "requestor": true,
        }],
        "source": {"observer": {"display": "pds-facade"},
            "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}]},
        "entity": entities,
    });
    if let Some(reason) = &e.reason {
        event["purposeOfEvent"] = json!([{"text": reason}]);
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::domain::query::pairs;

    #[test]
    fn the_patient_is_named_by_entity_or_patient() {
        let nhs = "9991000003";
        for q in [
            vec![("entity", "Patient/9991000003")],
            vec![(
                "entity",
                "http://x/personal-demographics/FHIR/R4/Patient/9991000003",
            )],
            vec![("patient", "9991000003")],
            vec![
                ("patient", "Patient/9991000003"),
                ("entity", "Patient/9991000003"),
            ],
        ] {
            assert_eq!(patient_of(&pairs(&q)).unwrap().to_string(), nhs, "{q:?}");
        }
        let code = |q: &[(&str, &str)]| patient_of(&pairs(q)).unwrap_err().code.info().code;
        assert_eq!(code(&[]), "MISSING_VALUE");
        assert_eq!(code(&[("entity", "Patient/123")]), "INVALID_VALUE");
        assert_eq!(
            code(&[("entity", "Patient/9991000003"), ("patient", "9991000011")]),
            "INVALID_VALUE"
        );
        assert_eq!(
            code(&[("entity", "Patient/9991000003"), ("agent", "x")]),
            "ADDITIONAL_PROPERTIES"
        );
    }
}
