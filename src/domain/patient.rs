//! The Patient document: a FHIR R4 Patient in the PDS shape, held as JSON.
//!
//! A [`Patient`] is only made by [`Patient::parse`] (schema + the rules every stored record
//! obeys) or from bytes the store wrote after such a parse, so holding one means holding a
//! valid record with a known NHS number and version.

use serde_json::{Map, Value};
use time::Date;

use super::nhs_number::NhsNumber;
use super::outcome::PdsError;
use super::rules;
use super::schema::Schemas;
use super::version::Version;

pub const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
pub const CONFIDENTIALITY_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
pub const DEATH_NOTIFICATION_URL: &str =
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-DeathNotificationStatus";
pub const COMMUNICATION_URL: &str =
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSCommunication";
pub const CONTACT_PREFERENCE_URL: &str =
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-ContactPreference";
pub const REMOVAL_FROM_REGISTRATION_URL: &str =
    "https://fhir.nhs.uk/StructureDefinition/Extension-PDS-RemovalFromRegistration";
pub const BIRTH_PLACE_URL: &str = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace";
pub const PHARMACY_URLS: [&str; 3] = [
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NominatedPharmacy",
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-PreferredDispenserOrganization",
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-MedicalApplianceSupplier",
];

/// The list fields of a Patient and the key that identifies an item in each: PDS object ids,
/// except extensions, which are told apart by `url`.
pub const LIST_FIELDS: [(&str, &str); 6] = [
    ("name", "id"),
    ("address", "id"),
    ("telecom", "id"),
    ("contact", "id"),
    ("generalPractitioner", "id"),
    ("extension", "url"),
];

/// The key that identifies an item of list field `field`, if it is one.
pub fn item_key(field: &str) -> Option<&'static str> {
    LIST_FIELDS
        .iter()
        .find(|(f, _)| *f == field)
        .map(|(_, k)| *k)
}

/// A valid stored Patient record.
#[derive(Clone, Debug, PartialEq)]
pub struct Patient {
    doc: Map<String, Value>,
    id: NhsNumber,
    version: Version,
}

impl Patient {
    /// Validates a document as a stored record: the Patient schema, then every rule that holds
    /// for any record (valid NHS number matching the identifier, formats, code values...).
    /// `meta.versionId` becomes the version (1 when absent).
    pub fn parse(doc: Value, schemas: &Schemas, today: Date) -> Result<Patient, PdsError> {
        let Value::Object(mut doc) = doc else {
            return Err(PdsError::invalid_value("not a JSON object", "Patient"));
        };
        normalise(&mut doc);
        let as_value = Value::Object(doc);
        schemas.check_patient(&as_value)?;
        let Value::Object(mut doc) = as_value else {
            unreachable!()
        };
        // a part of a record, as a read with `_elements` returns it, is not a record
        if doc.get("meta").and_then(|m| m.get("tag")).is_some() {
            return Err(PdsError::invalid_value("SUBSETTED", "meta/tag"));
        }
        let id_str = doc["id"].as_str().unwrap_or_default();
        let id = NhsNumber::parse(id_str).map_err(|_| PdsError::invalid_value(id_str, "id"))?;
        let version = match doc
            .get("meta")
            .and_then(|m| m.get("versionId"))
            .and_then(Value::as_str)
        {
            Some(v) => {
                Version::parse(v).ok_or_else(|| PdsError::invalid_value(v, "meta/versionId"))?
            }
            None => Version::FIRST,
        };
        set_version(&mut doc, version);
        rules::check_record(&doc, today)?;
        Ok(Patient { doc, id, version })
    }

    /// Rebuilds a record from bytes this program stored after [`Patient::parse`].
    pub fn from_stored(bytes: &[u8]) -> Result<Patient, String> {
        let doc: Map<String, Value> = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let id = doc
            .get("id")
            .and_then(Value::as_str)
            .and_then(|s| NhsNumber::parse(s).ok())
            .ok_or("stored record has no valid id")?;
        let version = doc
            .get("meta")
            .and_then(|m| m.get("versionId"))
            .and_then(Value::as_str)
            .and_then(Version::parse)
            .ok_or("stored record has no valid meta.versionId")?;
        Ok(Patient { doc, id, version })
    }

    pub fn id(&self) -> NhsNumber {
        self.id
    }

    pub fn version(&self) -> Version {
        self.version
    }

    pub fn doc(&self) -> &Map<String, Value> {
        &self.doc
    }

    /// A copy with another version number (for import `--replace`, which appends a version).
    pub fn with_version(mut self, version: Version) -> Patient {
        set_version(&mut self.doc, version);
        self.version = version;
        self
    }

    /// This version as written at `at` (an RFC 3339 instant): `meta.lastUpdated`, kept with
    /// the version, so a read and every history entry say when the record changed.
    pub fn stamp(&mut self, at: &str) {
        if let Some(Value::Object(m)) = self.doc.get_mut("meta") {
            m.insert("lastUpdated".into(), Value::String(at.to_string()));
        }
    }

    /// [`Patient::stamp`] unless the record says already when it was last changed (an
    /// imported record keeps its source's time).
    pub fn stamped_unless_dated(mut self, at: &str) -> Patient {
        if self.last_updated().is_none() {
            self.stamp(at);
        }
        self
    }

    pub fn last_updated(&self) -> Option<&str> {
        self.doc.get("meta")?.get("lastUpdated")?.as_str()
    }

    /// Restricted (sensitive) records: confidentiality R, or V which is treated at least as
    /// strictly (reference §5).
    pub fn is_restricted(&self) -> bool {
        is_restricted(&self.doc)
    }

    /// Invalidated (created in error, or replaced by a change of identity): confidentiality
    /// `REDACTED`, which PDS never returns (404 INVALIDATED_RESOURCE).
    pub fn is_invalidated(&self) -> bool {
        is_invalidated(&self.doc)
    }

    /// Whether the record carries merge state (`link` or `active`), which only the back office sees.
    pub fn has_merge_state(&self) -> bool {
        has_merge_state(&self.doc)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.doc).expect("a JSON map serialises")
    }

    pub fn into_doc(self) -> Map<String, Value> {
        self.doc
    }

    pub fn into_value(self) -> Value {
        Value::Object(self.doc)
    }

    /// Builds the record that a validated change produced (used by the patch layer only).
    pub(crate) fn from_parts(doc: Map<String, Value>, id: NhsNumber, version: Version) -> Patient {
        Patient { doc, id, version }
    }
}

/// `meta.lastUpdated` of a stored record, read from its bytes without parsing the document
/// (the GET path sends stored bytes as they are). Sound for bytes this program wrote: compact
/// JSON in which `"lastUpdated":"` can only be that key (inside a string every `"` is escaped),
/// and the Patient schema has no other element of that name.
pub fn last_updated_of(json: &[u8]) -> Option<&str> {
    const KEY: &[u8] = b"\"lastUpdated\":\"";
    let start = json.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = json[start..].iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&json[start..start + len]).ok()
}

pub(crate) fn set_version(doc: &mut Map<String, Value>, version: Version) {
    let meta = doc
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(m) = meta {
        m.insert("versionId".into(), Value::String(version.to_string()));
    }
}

pub fn is_invalidated(doc: &Map<String, Value>) -> bool {
    security_code(doc) == Some("REDACTED")
}

pub fn has_merge_state(doc: &Map<String, Value>) -> bool {
    doc.contains_key("link") || doc.contains_key("active")
}

pub fn is_restricted(doc: &Map<String, Value>) -> bool {
    matches!(security_code(doc), Some("R" | "V" | "REDACTED"))
}

pub fn security_code(doc: &Map<String, Value>) -> Option<&str> {
    doc.get("meta")?
        .get("security")?
        .get(0)?
        .get("code")?
        .as_str()
}

/// The items of a list field (empty when absent).
pub fn list<'a>(doc: &'a Map<String, Value>, field: &str) -> &'a [Value] {
    doc.get(field)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The top-level extension with this url.
pub fn extension<'a>(doc: &'a Map<String, Value>, url: &str) -> Option<&'a Value> {
    list(doc, "extension")
        .iter()
        .find(|e| e.get("url").and_then(Value::as_str) == Some(url))
}

/// A sub-extension of an extension, by url.
pub fn sub_extension<'a>(ext: &'a Value, url: &str) -> Option<&'a Value> {
    ext.get("extension")?
        .as_array()?
        .iter()
        .find(|e| e.get("url").and_then(Value::as_str) == Some(url))
}

/// The death notification status code (`1`, `2` or `U`), if the record has one.
pub fn death_status(doc: &Map<String, Value>) -> Option<&str> {
    let ext = extension(doc, DEATH_NOTIFICATION_URL)?;
    sub_extension(ext, "deathNotificationStatus")?
        .get("valueCodeableConcept")?
        .get("coding")?
        .get(0)?
        .get("code")?
        .as_str()
}

/// Gives every list item that lacks one a server object id (extensions are keyed by `url`
/// instead), so that every item of a stored record can be addressed by a PATCH.
pub fn assign_missing_ids(doc: &mut Map<String, Value>, new_id: &mut dyn FnMut() -> String) {
    for (field, key) in LIST_FIELDS {
        if key != "id" {
            continue;
        }
        if let Some(Value::Array(items)) = doc.get_mut(field) {
            for item in items.iter_mut() {
                if let Value::Object(m) = item {
                    if !m.contains_key("id") {
                        m.insert("id".into(), Value::String(new_id()));
                    }
                }
            }
        }
    }
}

/// Tidies a document the way PDS presents records: blank address lines, titles and suffixes
/// dropped, a trailing `.` removed from name prefixes, UTC offsets made explicit on death dates, the
/// confidentiality display matching its code, empty lists and objects left out (absent values
/// are omitted, never null or empty), fields in PDS order.
pub fn normalise(doc: &mut Map<String, Value>) {
    if let Some(Value::Array(addresses)) = doc.get_mut("address") {
        for a in addresses.iter_mut() {
            if let Some(Value::Array(lines)) = a.get_mut("line") {
                lines.retain(|l| l.as_str().is_some_and(|s| !s.trim().is_empty()));
            }
        }
    }
    if let Some(Value::Array(names)) = doc.get_mut("name") {
        for n in names.iter_mut() {
            // blank titles and suffixes are dropped, as blank address lines are (PDS accepts
            // `"prefix": [""]` on a create and returns no prefix)
            for key in ["prefix", "suffix"] {
                if let Some(Value::Array(items)) = n.get_mut(key) {
                    items.retain(|p| !p.as_str().is_some_and(|s| s.trim().is_empty()));
                }
            }
            if let Some(Value::Array(prefixes)) = n.get_mut("prefix") {
                for p in prefixes.iter_mut() {
                    if let Some(s) = p.as_str() {
                        if s.len() > 1 && s.ends_with('.') {
                            *p = Value::String(s.trim_end_matches('.').to_string());
                        }
                    }
                }
            }
        }
    }
    if let Some(Value::String(d)) = doc.get_mut("deceasedDateTime") {
        utc_suffix(d);
    }
    if let Some(Value::Array(exts)) = doc.get_mut("extension") {
        for e in exts.iter_mut() {
            if e.get("url").and_then(Value::as_str) != Some(DEATH_NOTIFICATION_URL) {
                continue;
            }
            if let Some(Value::Array(subs)) = e.get_mut("extension") {
                for s in subs.iter_mut() {
                    if let Some(Value::String(d)) = s.get_mut("valueDateTime") {
                        utc_suffix(d);
                    }
                }
            }
        }
    }
    if let Some(Value::Array(security)) = doc.get_mut("meta").and_then(|m| m.get_mut("security")) {
        for label in security.iter_mut() {
            let display = match label.get("code").and_then(Value::as_str) {
                Some("U") => "unrestricted",
                Some("R") => "restricted",
                Some("V") => "very restricted",
                Some("REDACTED") => "redacted",
                _ => continue,
            };
            label["display"] = Value::String(display.into());
        }
    }
    drop_empty(doc);
    canonical_order(doc);
}

/// Top-level fields in the order PDS presents them; unknown keys (rejected by the schema
/// anyway) go last.
const FIELD_ORDER: [&str; 17] = [
    "resourceType",
    "id",
    "identifier",
    "meta",
    "active",
    "name",
    "gender",
    "birthDate",
    "multipleBirthInteger",
    "deceasedDateTime",
    "address",
    "telecom",
    "contact",
    "generalPractitioner",
    "managingOrganization",
    "extension",
    "link",
];

fn canonical_order(doc: &mut Map<String, Value>) {
    let rank = |k: &str| {
        FIELD_ORDER
            .iter()
            .position(|f| *f == k)
            .unwrap_or(FIELD_ORDER.len())
    };
    let mut entries: Vec<(String, Value)> = std::mem::take(doc).into_iter().collect();
    entries.sort_by_key(|(k, _)| rank(k));
    doc.extend(entries);
}

/// `yyyy-mm-ddTHH:MM:SS` means UTC in PDS; responses always show `+00:00`.
fn utc_suffix(d: &mut String) {
    if d.len() == 19 && d.as_bytes()[10] == b'T' {
        d.push_str("+00:00");
    }
}

fn drop_empty(map: &mut Map<String, Value>) {
    map.retain(|_, v| {
        drop_empty_value(v);
        !matches!(v, Value::Array(a) if a.is_empty())
            && !matches!(v, Value::Object(o) if o.is_empty())
    });
}

fn drop_empty_value(v: &mut Value) {
    match v {
        Value::Object(m) => drop_empty(m),
        Value::Array(a) => a.iter_mut().for_each(drop_empty_value),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn normalise_tidies() {
        let mut doc = json!({
            "address": [{"use": "home", "line": ["1 High St", " ", ""]}, {"use": "temp", "line": [""]}],
            "name": [{"use": "usual", "family": "X", "prefix": ["Mrs."]}],
            "deceasedDateTime": "2020-01-01T10:00:00",
            "telecom": [],
            "meta": {"security": [{"code": "R", "display": "unrestricted"}]},
        });
        let Value::Object(m) = &mut doc else {
            unreachable!()
        };
        normalise(m);
        assert_eq!(doc["address"][0]["line"], json!(["1 High St"]));
        assert!(doc["address"][1].get("line").is_none());
        assert_eq!(doc["name"][0]["prefix"], json!(["Mrs"]));
        assert_eq!(doc["deceasedDateTime"], "2020-01-01T10:00:00+00:00");
        assert!(doc.get("telecom").is_none());
        assert_eq!(doc["meta"]["security"][0]["display"], "restricted");
    }
}
