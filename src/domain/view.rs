//! What a caller may see of a record.
//!
//! Restricted (sensitive) records lose everything that could locate the patient before they
//! reach any role but the back office (reference §5): addresses, telecoms, contacts, the GP,
//! the managing organisation, and the pharmacy and birth-place extensions.

use serde_json::{Map, Value};

use super::patient::{is_restricted, BIRTH_PLACE_URL, PHARMACY_URLS};
use super::role::Role;

/// Fields removed from a restricted record.
pub const RESTRICTED_FIELDS: [&str; 5] = [
    "address",
    "telecom",
    "contact",
    "generalPractitioner",
    "managingOrganization",
];

/// Merge state (`link`, `active`) is back-office information: PDS's own view has neither.
pub const MERGE_FIELDS: [&str; 2] = ["link", "active"];

/// What `role` may see of a record: merge state only for the back office, and a restricted
/// record (or one whose history was ever restricted: `restricted`) redacted for other roles.
pub fn for_role(doc: &Map<String, Value>, role: Role, restricted: bool) -> Map<String, Value> {
    if role.is_back_office() {
        return doc.clone();
    }
    let mut out = if restricted || is_restricted(doc) {
        redact(doc)
    } else {
        doc.clone()
    };
    for f in MERGE_FIELDS {
        out.remove(f);
    }
    out
}

/// The restricted view of a record.
pub fn redact(doc: &Map<String, Value>) -> Map<String, Value> {
    let mut out = doc.clone();
    for f in RESTRICTED_FIELDS {
        out.remove(f);
    }
    if let Some(Value::Array(exts)) = out.get_mut("extension") {
        exts.retain(|e| {
            let url = e.get("url").and_then(Value::as_str).unwrap_or_default();
            url != BIRTH_PLACE_URL && !PHARMACY_URLS.contains(&url)
        });
        if exts.is_empty() {
            out.remove("extension");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strips_locating_fields() {
        let doc = json!({"resourceType": "Patient", "id": "9000000009",
            "meta": {"versionId": "1", "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]},
            "name": [{"use": "usual", "family": "Smith"}], "address": [{"use": "home"}], "telecom": [{"system": "phone", "value": "1"}],
            "generalPractitioner": [{"identifier": {"value": "Y12345"}}],
            "extension": [{"url": PHARMACY_URLS[0]}, {"url": BIRTH_PLACE_URL}]});
        let Value::Object(m) = doc else {
            unreachable!()
        };
        assert_eq!(
            for_role(&m, Role::BackOffice, false),
            m,
            "the back office sees all"
        );
        assert_eq!(for_role(&m, Role::HealthcareWorker, false), redact(&m));
        let r = redact(&m);
        assert!(
            r.get("address").is_none()
                && r.get("telecom").is_none()
                && r.get("generalPractitioner").is_none()
        );
        assert!(r.get("extension").is_none());
        assert_eq!(r["name"], m["name"]);
    }
}
