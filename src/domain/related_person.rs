//! `GET /Patient/{id}/RelatedPerson`: the patient's `contact` people as FHIR RelatedPerson
//! resources, the way PDS shapes them (its spec's `RelatedPersonBundle`: a `searchset` Bundle,
//! each entry at `<base>/Patient/<id>/RelatedPerson/<contact id>`).
//!
//! Built from the record *as the caller may see it*: a restricted record's view has no
//! contacts, so the Bundle is empty — PDS: "Related people are not returned for a restricted
//! patient and an empty bundle is returned."

use serde_json::{json, Map, Value};
use time::Date;

use super::patient::NHS_NUMBER_SYSTEM;

/// The RelatedPerson of each contact of `doc` (a Patient as the caller may see it).
pub fn related_people(doc: &Map<String, Value>, today: Date) -> Vec<Value> {
    let id = doc.get("id").and_then(Value::as_str).unwrap_or_default();
    doc.get("contact")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, contact)| {
            let contact_id = contact
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("C{}", i + 1));
            let mut person = json!({
                "resourceType": "RelatedPerson",
                "id": contact_id,
                "patient": {"type": "Patient", "reference": format!("Patient/{id}"),
                    "identifier": {"system": NHS_NUMBER_SYSTEM, "value": id}},
                "active": is_current(contact.get("period"), today),
            });
            for field in ["period", "relationship", "telecom"] {
                if let Some(v) = contact.get(field) {
                    person[field] = v.clone();
                }
            }
            person
        })
        .collect()
}

/// A contact whose period has ended is no longer active.
fn is_current(period: Option<&Value>, today: Date) -> bool {
    let end = period
        .and_then(|p| p.get("end"))
        .and_then(Value::as_str)
        .and_then(|e| e.get(..10))
        .and_then(|e| {
            Date::parse(e, time::macros::format_description!("[year]-[month]-[day]")).ok()
        });
    end.is_none_or(|end| end >= today)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_contact_is_a_related_person_of_the_patient() {
        let doc = json!({"resourceType": "Patient", "id": "9991000003", "contact": [
            {"id": "C1", "period": {"start": "2018-05-01"}, "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131", "code": "C"}]}],
             "telecom": [{"system": "phone", "value": "07700900102"}]},
            {"period": {"start": "2001-01-01", "end": "2002-01-01"}, "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131", "code": "C"}]}]}]});
        let today = time::macros::date!(2026 - 12 - 04);
        let people = related_people(doc.as_object().unwrap(), today);
        assert_eq!(people.len(), 2);
        assert_eq!(people[0]["id"], "C1");
        assert_eq!(people[0]["patient"]["identifier"]["value"], "9991000003");
        assert_eq!(people[0]["telecom"][0]["value"], "07700900102");
        assert_eq!(people[0]["active"], true);
        assert_eq!(people[1]["id"], "C2");
        assert_eq!(people[1]["active"], false);
        assert!(people[1].get("telecom").is_none());
        let none = json!({"resourceType": "Patient", "id": "9991000038"});
        assert!(related_people(none.as_object().unwrap(), today).is_empty());
    }
}
