//! The extensions of PDS's create request (`POST /Patient`, `PatientCreateRequest`): which it
//! requires, which it keeps, and which it accepts without storing — as a table, with PDS's
//! own labels beside each.

use serde_json::{Map, Value};

use super::outcome::PdsError;
use super::patient::{
    list, BIRTH_PLACE_URL, COMMUNICATION_URL, CONTACT_PREFERENCE_URL, DEATH_NOTIFICATION_URL,
};

pub const REGISTERING_AUTHORITY_URL: &str =
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-RegisteringAuthority";
const REGISTERING_AUTHORITY_TYPE_SYSTEM: &str =
    "https://fhir.nhs.uk/CodeSystem/UKCore-RegisteringAuthorityType";

/// What becomes of an extension sent in a create request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Required; checked, and not part of the stored record (PDS's Patient has no such
    /// extension: it says who registers the patient, not something about them).
    Required,
    /// Stored with the record.
    Kept,
    /// Accepted and dropped (PDS: "not persisted").
    NotPersisted,
}

/// PDS's `PatientCreateRequest.extension` list.
#[rustfmt::skip]
pub const EXTENSIONS: &[(&str, Fate)] = &[
    (REGISTERING_AUTHORITY_URL, Fate::Required),
    (COMMUNICATION_URL, Fate::Kept),
    (CONTACT_PREFERENCE_URL, Fate::Kept),
    (BIRTH_PLACE_URL, Fate::NotPersisted),
    ("https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-BirthSex", Fate::NotPersisted),
    ("http://hl7.org/fhir/StructureDefinition/patient-cadavericDonor", Fate::NotPersisted),
    (DEATH_NOTIFICATION_URL, Fate::NotPersisted),
    ("https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory", Fate::NotPersisted),
    ("https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-ResidentialStatus", Fate::NotPersisted),
    ("http://hl7.org/fhir/StructureDefinition/patient-interpreterRequired", Fate::NotPersisted),
    ("https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberUnavailableReason", Fate::NotPersisted),
];

/// Whether a create request keeps one of PDS's create rules.
pub type CreateRule = fn(&Map<String, Value>) -> bool;

/// PDS's create rules (its INVALID_CREATE diagnostics), on the request as sent: the address
/// lines before blank ones are dropped, since PDS counts lines by position.
#[rustfmt::skip]
pub const CREATE_RULES: &[(&str, CreateRule)] = &[
    ("An end date can not be provided on usual name", usual_name_without_end),
    ("address lines 1 and 4 or 2 and 4 must be completed as a minimum", address_lines),
    ("email format is invalid", emails_valid),
];

/// The first of [`CREATE_RULES`] the request breaks, as 400 INVALID_CREATE.
pub fn check_rules(body: &Map<String, Value>) -> Result<(), PdsError> {
    match CREATE_RULES.iter().find(|(_, holds)| !holds(body)) {
        Some((detail, _)) => Err(PdsError::invalid_create(detail)),
        None => Ok(()),
    }
}

fn usual_name_without_end(body: &Map<String, Value>) -> bool {
    list(body, "name")
        .iter()
        .filter(|n| n.get("use").and_then(Value::as_str) == Some("usual"))
        .all(|n| n.pointer("/period/end").is_none())
}

/// Lines 1 and 4, or 2 and 4 (premises or street, and post town), not blank.
fn address_lines(body: &Map<String, Value>) -> bool {
    list(body, "address").iter().all(|a| {
        let line = |i: usize| {
            a.get("line")
                .and_then(|l| l.get(i))
                .and_then(Value::as_str)
                .is_some_and(|s| !s.trim().is_empty())
        };
        (line(0) || line(1)) && line(3)
    })
}

fn emails_valid(body: &Map<String, Value>) -> bool {
    list(body, "telecom")
        .iter()
        .filter(|t| t.get("system").and_then(Value::as_str) == Some("email"))
        .all(|t| {
            t.get("value")
                .and_then(Value::as_str)
                .is_some_and(super::rules::valid_email)
        })
}

/// Registering authority type codes PDS's schema allows.
const AUTHORITY_TYPES: [&str; 25] = [
    "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s",
    "t", "u", "v", "w", "x", "1",
];

/// Checks the create request's extensions and returns the ones to store. `required`: the
/// registering authority must be there (PDS's create); a back-office change of identity may
/// leave it out.
pub fn stored_extensions(extensions: &[Value], required: bool) -> Result<Vec<Value>, PdsError> {
    let mut kept = Vec::new();
    let mut authority = false;
    for (i, e) in extensions.iter().enumerate() {
        let url = e.get("url").and_then(Value::as_str).unwrap_or_default();
        let fate = EXTENSIONS.iter().find(|(u, _)| *u == url).map(|(_, f)| *f);
        match fate {
            None => return Err(PdsError::invalid_value(url, &format!("extension/{i}/url"))),
            Some(Fate::Required) => {
                registering_authority(e, i)?;
                authority = true;
            }
            Some(Fate::Kept) => kept.push(e.clone()),
            Some(Fate::NotPersisted) => {}
        }
    }
    if required && !authority {
        return Err(PdsError::missing_value(if extensions.is_empty() {
            "extension"
        } else {
            "extension/Extension-UKCore-RegisteringAuthority"
        }));
    }
    Ok(kept)
}

/// PDS's RegisteringAuthority: exactly a `registeringAuthorityType` coding and an
/// `organisationIdentifier` (2–15 characters).
fn registering_authority(e: &Value, i: usize) -> Result<(), PdsError> {
    let at = |k: &str| format!("extension/{i}/{k}");
    let parts = list_of(e);
    if parts.len() != 2 {
        return Err(PdsError::invalid_value(&e.to_string(), &at("extension")));
    }
    let part = |name: &str| {
        parts
            .iter()
            .find(|p| p.get("url").and_then(Value::as_str) == Some(name))
    };
    let kind = part("registeringAuthorityType")
        .ok_or_else(|| PdsError::missing_value(&at("extension/registeringAuthorityType")))?;
    let coding = kind.pointer("/valueCodeableConcept/coding/0");
    let system = coding.and_then(|c| c.get("system")).and_then(Value::as_str);
    if system != Some(REGISTERING_AUTHORITY_TYPE_SYSTEM) {
        return Err(PdsError::invalid_value(
            system.unwrap_or_default(),
            &at("extension/registeringAuthorityType/valueCodeableConcept/coding/0/system"),
        ));
    }
    let code = coding
        .and_then(|c| c.get("code"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !AUTHORITY_TYPES.contains(&code) {
        return Err(PdsError::invalid_value(
            code,
            &at("extension/registeringAuthorityType/valueCodeableConcept/coding/0/code"),
        ));
    }
    let org = part("organisationIdentifier")
        .ok_or_else(|| PdsError::missing_value(&at("extension/organisationIdentifier")))?;
    let value = org
        .get("valueString")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !(2..=15).contains(&value.chars().count()) {
        return Err(PdsError::invalid_value(
            value,
            &at("extension/organisationIdentifier/valueString"),
        ));
    }
    Ok(())
}

fn list_of(e: &Value) -> &[Value] {
    e.get("extension")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The extensions of a create body (empty when none).
pub fn extensions_of(body: &Map<String, Value>) -> &[Value] {
    list(body, "extension")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub fn authority() -> Value {
        json!({"url": REGISTERING_AUTHORITY_URL, "extension": [
            {"url": "registeringAuthorityType", "valueCodeableConcept": {"coding": [{"system": REGISTERING_AUTHORITY_TYPE_SYSTEM, "code": "x"}]}},
            {"url": "organisationIdentifier", "valueString": "RGS"}]})
    }

    #[test]
    fn the_registering_authority_is_required_checked_and_not_stored() {
        let language = json!({"url": COMMUNICATION_URL, "extension": []});
        let sex =
            json!({"url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-BirthSex"});
        assert_eq!(
            stored_extensions(&[authority(), language.clone(), sex], true).unwrap(),
            std::slice::from_ref(&language)
        );
        assert_eq!(
            stored_extensions(&[], true)
                .unwrap_err()
                .diagnostics
                .unwrap(),
            "Missing value - 'extension'"
        );
        assert!(stored_extensions(std::slice::from_ref(&language), true).is_err());
        assert!(stored_extensions(&[language], false).is_ok());
        let mut bad = authority();
        bad["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] = json!("z");
        assert!(stored_extensions(&[bad], true).is_err());
        let mut bad = authority();
        bad["extension"][1]["valueString"] = json!("R");
        assert!(stored_extensions(&[bad], true).is_err());
        assert!(stored_extensions(
            &[authority(), json!({"url": "https://example.com/x"})],
            true
        )
        .is_err());
    }
}
