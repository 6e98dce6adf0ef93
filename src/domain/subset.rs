//! FHIR's result parameters on a read (R4 §3.1.1.5.7–8): `_summary` and `_elements` ask for
//! part of a resource. Any other parameter on a read is refused (ADDITIONAL_PROPERTIES), never
//! silently ignored. A part is cut from the resource as the caller may see it, so it can show
//! nothing the whole would not; it is tagged SUBSETTED so no client takes it for the record.

use serde_json::{json, Map, Value};

use super::outcome::{clip, PdsError};

/// What part of a resource to return.
#[derive(Clone, Debug, PartialEq)]
pub enum Subset {
    Full,
    /// `_summary=true`: the elements R4 marks as summary.
    Summary,
    /// `_summary=text`: the narrative and the mandatory elements.
    Text,
    /// `_summary=data`: everything but the narrative.
    Data,
    /// `_elements=a,b`: those top-level elements (and the mandatory ones).
    Elements(Vec<String>),
}

/// R4 Patient's top-level elements (`deceased` and `multipleBirth` are choices).
const PATIENT_ELEMENTS: [&str; 23] = [
    "id",
    "meta",
    "implicitRules",
    "language",
    "text",
    "contained",
    "extension",
    "modifierExtension",
    "identifier",
    "active",
    "name",
    "telecom",
    "gender",
    "birthDate",
    "deceased",
    "address",
    "maritalStatus",
    "multipleBirth",
    "photo",
    "contact",
    "communication",
    "generalPractitioner",
    "managingOrganization",
];

/// R4 Patient's summary elements (`isSummary`), besides the mandatory `id` and `meta`.
const PATIENT_SUMMARY: [&str; 11] = [
    "implicitRules",
    "modifierExtension",
    "identifier",
    "active",
    "name",
    "telecom",
    "gender",
    "birthDate",
    "deceased",
    "address",
    "managingOrganization",
];

/// Always returned: what makes a resource one, and the NHS number identifier PDS's Patient
/// requires (the `id` says it already).
const MANDATORY: [&str; 4] = ["resourceType", "id", "identifier", "meta"];

impl Subset {
    /// The query of a read: `_summary` (once) or `_elements` (repeatable, comma-separated),
    /// not both; anything else → ADDITIONAL_PROPERTIES. Empty pairs are ignored, as in search.
    pub fn parse(pairs: &[(String, String)]) -> Result<Subset, PdsError> {
        let pairs = super::query::given(pairs);
        super::query::refuse_unknown(&pairs, &["_summary", "_elements"])?;
        let summaries: Vec<&str> = pairs
            .iter()
            .filter(|(k, _)| *k == "_summary")
            .map(|(_, v)| *v)
            .collect();
        let elements: Vec<&str> = pairs
            .iter()
            .filter(|(k, _)| *k == "_elements")
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        if !summaries.is_empty() && !elements.is_empty() {
            return Err(PdsError::invalid_value(
                "_summary and _elements",
                "_summary",
            ));
        }
        if summaries.len() > 1 {
            return Err(PdsError::invalid_value(&summaries.join(","), "_summary"));
        }
        if let Some(summary) = summaries.first() {
            return match *summary {
                "true" => Ok(Subset::Summary),
                "false" => Ok(Subset::Full),
                "text" => Ok(Subset::Text),
                "data" => Ok(Subset::Data),
                // `count` answers a search with its total only; a read has no total
                other => Err(PdsError::invalid_value(other, "_summary")),
            };
        }
        if elements.is_empty() {
            return Ok(Subset::Full);
        }
        let mut wanted = Vec::new();
        for e in elements {
            let base = choice_base(e);
            if !PATIENT_ELEMENTS.contains(&base) {
                return Err(PdsError::invalid_value(&clip(e), "_elements"));
            }
            if !wanted.iter().any(|w| w == base) {
                wanted.push(base.to_string());
            }
        }
        Ok(Subset::Elements(wanted))
    }

    /// The part of `doc` (a Patient as the caller may see it) this asks for; `None` for the
    /// whole resource.
    pub fn apply(&self, doc: &Map<String, Value>) -> Option<Map<String, Value>> {
        let keep: &dyn Fn(&str) -> bool = match self {
            Subset::Full => return None,
            Subset::Summary => &|k| PATIENT_SUMMARY.contains(&choice_base(k)),
            Subset::Text => &|k| k == "text",
            Subset::Data => &|k| k != "text",
            Subset::Elements(wanted) => &|k| wanted.iter().any(|w| w == choice_base(k)),
        };
        let mut out: Map<String, Value> = doc
            .iter()
            .filter(|(k, _)| MANDATORY.contains(&k.as_str()) || keep(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if *self != Subset::Data {
            if let Some(Value::Object(meta)) = out.get_mut("meta") {
                meta.insert("tag".into(), json!([subsetted()]));
            }
        }
        Some(out)
    }
}

/// FHIR's tag for a resource returned in part.
pub fn subsetted() -> Value {
    json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED", "display": "subsetted"})
}

/// `deceasedDateTime` → `deceased`, `multipleBirthInteger` → `multipleBirth`.
fn choice_base(element: &str) -> &str {
    for base in ["deceased", "multipleBirth"] {
        if element.starts_with(base) {
            return base;
        }
    }
    element
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::domain::query::pairs;

    fn doc() -> Map<String, Value> {
        json!({"resourceType": "Patient", "id": "9991000003", "identifier": [{"value": "9991000003"}], "meta": {"versionId": "2"},
            "name": [{"family": "Smith"}], "gender": "female", "birthDate": "2010-10-22",
            "deceasedDateTime": "2020-01-01T00:00:00+00:00", "address": [{"postalCode": "LS1 1AA"}],
            "generalPractitioner": [{"type": "Organization"}], "extension": [{"url": "x"}]})
        .as_object()
        .unwrap()
        .clone()
    }

    #[test]
    fn parameters_of_a_read() {
        assert_eq!(Subset::parse(&[]).unwrap(), Subset::Full);
        assert_eq!(
            Subset::parse(&pairs(&[("_summary", "true")])).unwrap(),
            Subset::Summary
        );
        assert_eq!(
            Subset::parse(&pairs(&[("_summary", "false")])).unwrap(),
            Subset::Full
        );
        assert_eq!(
            Subset::parse(&pairs(&[
                ("_elements", "name, gender"),
                ("_elements", "deceasedDateTime,name")
            ]))
            .unwrap(),
            Subset::Elements(vec!["name".into(), "gender".into(), "deceased".into()])
        );
        let code = |q: &[(&str, &str)]| Subset::parse(&pairs(q)).unwrap_err().code.info().code;
        assert_eq!(code(&[("_count", "1")]), "ADDITIONAL_PROPERTIES");
        assert_eq!(code(&[("family", "Smith")]), "ADDITIONAL_PROPERTIES");
        assert_eq!(code(&[("_summary", "count")]), "INVALID_VALUE");
        assert_eq!(code(&[("_summary", "maybe")]), "INVALID_VALUE");
        assert_eq!(
            code(&[("_summary", "true"), ("_summary", "false")]),
            "INVALID_VALUE"
        );
        assert_eq!(
            code(&[("_summary", "true"), ("_elements", "name")]),
            "INVALID_VALUE"
        );
        assert_eq!(code(&[("_elements", "pets")]), "INVALID_VALUE");
    }

    #[test]
    fn parts_keep_the_mandatory_elements_and_say_they_are_parts() {
        let summary = Subset::Summary.apply(&doc()).unwrap();
        let keys: Vec<&str> = summary.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "resourceType",
                "id",
                "identifier",
                "meta",
                "name",
                "gender",
                "birthDate",
                "deceasedDateTime",
                "address"
            ]
        );
        assert_eq!(summary["meta"]["tag"][0]["code"], "SUBSETTED");
        assert_eq!(summary["meta"]["versionId"], "2");
        let some = Subset::Elements(vec!["gender".into(), "deceased".into()])
            .apply(&doc())
            .unwrap();
        let keys: Vec<&str> = some.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "resourceType",
                "id",
                "identifier",
                "meta",
                "gender",
                "deceasedDateTime"
            ]
        );
        assert!(Subset::Full.apply(&doc()).is_none());
        assert!(Subset::Data
            .apply(&doc())
            .unwrap()
            .get("meta")
            .unwrap()
            .get("tag")
            .is_none());
    }
}
