//! What a caller may see of a record — the one place that decides it.
//!
//! A restricted (sensitive, confidentiality R or V) record protects someone whose whereabouts
//! must not be found. For every role but the back office it must behave as if the elements its
//! restricted view hides did not exist: in responses, in search matching and scoring, in counts,
//! in error texts and in replays. So every path that shows, matches or explains a record goes
//! through this module, and the decision is a table: [`ELEMENTS`] lists every element of the
//! stored Patient with who may see it and why. An element that is not in the table is hidden
//! from a restricted record (default deny), and a unit test keeps the table complete against the
//! Patient schema.
//!
//! History: what a record held while it was restricted stays hidden for ever. A record that was
//! ever restricted shows its past versions to other roles only in the restricted view; its
//! current version follows its current label (the back office decided to lift it).

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::patient::{
    is_restricted, BIRTH_PLACE_URL, COMMUNICATION_URL, CONTACT_PREFERENCE_URL,
    DEATH_NOTIFICATION_URL, PHARMACY_URLS, REMOVAL_FROM_REGISTRATION_URL,
};
use super::role::Role;

/// A part of a Patient the view decides on: a top-level field, or a top-level extension by url.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Element<'a> {
    Field(&'a str),
    Extension(&'a str),
}

/// Who sees an element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shown {
    /// Every reading role, restricted record or not.
    Always,
    /// Every reading role, but not on a restricted record (the restricted view removes it).
    Unrestricted,
    /// Only the back office (merge state, which PDS's own view does not have).
    BackOffice,
}

/// One row of the view table: an element, who sees it, and why.
pub struct Decision {
    pub element: Element<'static>,
    pub shown: Shown,
    pub why: &'static str,
}

const fn row(element: Element<'static>, shown: Shown, why: &'static str) -> Decision {
    Decision {
        element,
        shown,
        why,
    }
}

use Element::{Extension, Field};
use Shown::{Always, BackOffice, Unrestricted};

/// Every element of a stored Patient and who may see it. PDS's restricted record (reference §5,
/// example 9000000025) keeps identity, names, gender, dates, the death notification and the
/// confidentiality label, and loses address, telecom, contact, GP, pharmacies and birth place;
/// the rows that go further than PDS say so.
#[rustfmt::skip]
pub const ELEMENTS: &[Decision] = &[
    row(Field("resourceType"),           Always,       "the resource type"),
    row(Field("id"),                     Always,       "the NHS number the caller asked for"),
    row(Field("identifier"),             Always,       "the NHS number and its verification status"),
    row(Field("meta"),                   Always,       "the version and the confidentiality label itself (PDS §5 shows R); not lastUpdated in the restricted view (see LAST_UPDATED)"),
    row(Field("name"),                   Always,       "PDS keeps names on a restricted record: needed to confirm who the patient is"),
    row(Field("gender"),                 Always,       "PDS keeps it (§5); needed for care"),
    row(Field("birthDate"),              Always,       "PDS keeps it (§5); needed to confirm identity"),
    row(Field("multipleBirthInteger"),   Always,       "PDS keeps it (§5); birth order says nothing of where the person is"),
    row(Field("deceasedDateTime"),       Always,       "PDS keeps it (§5); whether someone has died is needed for care"),
    row(Field("address"),                Unrestricted, "where the person lives (PDS §5)"),
    row(Field("telecom"),                Unrestricted, "reaches the person, and a number can be traced to a place (PDS §5)"),
    row(Field("contact"),                Unrestricted, "emergency contacts' numbers lead to the person (PDS §5)"),
    row(Field("generalPractitioner"),    Unrestricted, "the practice places the person in an area (PDS §5)"),
    row(Field("managingOrganization"),   Unrestricted, "an organisation code, as locating as the GP (absent from PDS's restricted example)"),
    row(Field("extension"),              Always,       "the list itself; each extension is decided by its url below"),
    row(Field("active"),                 BackOffice,   "merge state: PDS's own view has none"),
    row(Field("link"),                   BackOffice,   "merge links: PDS's own view has none, and they connect numbers"),
    row(Extension(DEATH_NOTIFICATION_URL), Always,     "PDS keeps the death notification (§5)"),
    row(Extension(COMMUNICATION_URL),    Always,       "language and interpreter need are needed to treat the patient safely and say nothing of where they are (PDS keeps it)"),
    row(Extension(PHARMACY_URLS[0]),     Unrestricted, "a nominated pharmacy's code places the person near it (PDS §5)"),
    row(Extension(PHARMACY_URLS[1]),     Unrestricted, "a dispensing doctor's code places the person near it (PDS §5)"),
    row(Extension(PHARMACY_URLS[2]),     Unrestricted, "an appliance supplier's code places the person near it (PDS §5)"),
    row(Extension(BIRTH_PLACE_URL),      Unrestricted, "the place of birth (PDS §5)"),
    row(Extension(CONTACT_PREFERENCE_URL), Unrestricted, "beyond PDS: its free-text contact times can say where and when the person is reached, and it is of no use while contact details are withheld"),
    row(Extension(REMOVAL_FROM_REGISTRATION_URL), Unrestricted, "beyond PDS: says the person left (abroad, to Scotland or Northern Ireland) and when"),
];

/// Who sees `element` (an element the table does not list is hidden on a restricted record).
pub fn shown(element: Element) -> Shown {
    ELEMENTS
        .iter()
        .find(|d| d.element == element)
        .map_or(Unrestricted, |d| d.shown)
}

/// Whether `role` sees `element` of a record that is (or, for this version, must be treated as)
/// restricted when `redact` is true.
pub fn visible(element: Element, role: Role, redact: bool) -> bool {
    if role.is_back_office() {
        return true;
    }
    match shown(element) {
        Always => true,
        Unrestricted => !redact,
        BackOffice => false,
    }
}

/// `doc` as `role` may see it; `redact` says whether to apply the restricted view (a
/// restricted record, or a version that must be treated as one — see [`RecordHistory`]). A
/// record is also redacted when its own label says restricted, whatever `redact` says.
///
/// Borrowed when nothing is hidden (the back office, or most unrestricted records).
pub fn for_role(doc: &Map<String, Value>, role: Role, redact: bool) -> Cow<'_, Map<String, Value>> {
    if role.is_back_office() {
        return Cow::Borrowed(doc);
    }
    let redact = redact || is_restricted(doc);
    let hides = |element| !visible(element, role, redact);
    let field_hidden = doc.keys().any(|k| hides(Field(k)));
    let extension_hidden = extensions(doc).any(|url| hides(Extension(url)));
    // when a restricted version was written would date the changes to what it hides
    let dated = redact && doc.get("meta").and_then(|m| m.get(LAST_UPDATED)).is_some();
    if !field_hidden && !extension_hidden && !dated {
        return Cow::Borrowed(doc);
    }
    let mut out = Map::with_capacity(doc.len());
    for (k, v) in doc {
        if hides(Field(k)) {
            continue;
        }
        if k == "meta" && dated {
            let mut meta = v.clone();
            if let Some(m) = meta.as_object_mut() {
                m.remove(LAST_UPDATED);
            }
            out.insert(k.clone(), meta);
            continue;
        }
        if k == "extension" {
            let kept: Vec<Value> = v
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| !hides(Extension(url_of(e))))
                .cloned()
                .collect();
            if !kept.is_empty() {
                out.insert(k.clone(), Value::Array(kept));
            }
            continue;
        }
        out.insert(k.clone(), v.clone());
    }
    Cow::Owned(out)
}

/// `meta.lastUpdated`: shown with a record, but not in the restricted view, where the time a
/// version was written would say when a hidden field changed (the version number says only
/// that something did).
const LAST_UPDATED: &str = "lastUpdated";

/// The restricted view of a record, as every role but the back office sees a restricted one.
pub fn redact(doc: &Map<String, Value>) -> Map<String, Value> {
    for_role(doc, Role::HealthcareWorker, true).into_owned()
}

fn url_of(extension: &Value) -> &str {
    extension
        .get("url")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn extensions(doc: &Map<String, Value>) -> impl Iterator<Item = &str> {
    doc.get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(url_of)
}

/// The top-level fields only the back office sees (merge state), as they are in `doc`: a
/// change made by another role works on the record without them and gets them back after.
pub fn back_office_fields(doc: &Map<String, Value>) -> Vec<(String, Value)> {
    doc.iter()
        .filter(|(k, _)| shown(Field(k)) == BackOffice)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// What a role may see of a record's versions, from the record's history of labels.
///
/// A version is shown in the restricted view when it was itself restricted, or when it is a
/// past version of a record that was ever restricted: what the record held while restricted —
/// an address it moved away from, a number it gave up — must not surface through history,
/// `_history` searches, fuzzy searches (which always look at history) or replays, even after
/// the label is lifted. The current version of a record that is unrestricted now is shown as it
/// is: the back office lifted the label, and a GET shows it anyway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHistory {
    /// Some version (current or past) was restricted.
    pub ever_restricted: bool,
    /// The current version number.
    pub current: u32,
}

impl RecordHistory {
    /// From `(version, restricted)` of every version of a record.
    pub fn of(versions: impl IntoIterator<Item = (u32, bool)>) -> RecordHistory {
        let mut h = RecordHistory {
            ever_restricted: false,
            current: 0,
        };
        for (v, restricted) in versions {
            h.ever_restricted |= restricted;
            h.current = h.current.max(v);
        }
        h
    }

    /// Whether version `version` (restricted itself or not) is shown in the restricted view.
    pub fn redacts(&self, version: u32, restricted: bool) -> bool {
        restricted || (self.ever_restricted && version != self.current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(code: &str) -> Map<String, Value> {
        let doc = json!({"resourceType": "Patient", "id": "9000000009",
            "meta": {"versionId": "1", "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": code}]},
            "name": [{"use": "usual", "family": "Smith"}], "address": [{"use": "home"}], "telecom": [{"system": "phone", "value": "1"}],
            "generalPractitioner": [{"identifier": {"value": "Y12345"}}], "active": true,
            "link": [{"type": "replaces"}],
            "extension": [{"url": PHARMACY_URLS[0]}, {"url": BIRTH_PLACE_URL}, {"url": DEATH_NOTIFICATION_URL},
                {"url": CONTACT_PREFERENCE_URL}, {"url": REMOVAL_FROM_REGISTRATION_URL}, {"url": COMMUNICATION_URL}]});
        let Value::Object(m) = doc else {
            unreachable!()
        };
        m
    }

    #[test]
    fn the_restricted_view_strips_what_locates_the_person() {
        let m = record("R");
        assert_eq!(
            *for_role(&m, Role::BackOffice, false),
            m,
            "the back office sees all"
        );
        let r = for_role(&m, Role::HealthcareWorker, false);
        assert_eq!(*r, redact(&m), "a restricted label redacts by itself");
        for gone in [
            "address",
            "telecom",
            "generalPractitioner",
            "active",
            "link",
        ] {
            assert!(r.get(gone).is_none(), "{gone}");
        }
        let urls: Vec<&str> = r["extension"]
            .as_array()
            .unwrap()
            .iter()
            .map(url_of)
            .collect();
        assert_eq!(urls, [DEATH_NOTIFICATION_URL, COMMUNICATION_URL]);
        assert_eq!(r["name"], m["name"]);
    }

    #[test]
    fn the_restricted_view_does_not_say_when_a_version_was_written() {
        let mut m = record("R");
        m["meta"]["lastUpdated"] = json!("2026-12-04T01:00:00Z");
        let r = for_role(&m, Role::HealthcareWorker, false);
        assert!(r["meta"].get("lastUpdated").is_none(), "{:?}", r["meta"]);
        assert_eq!(r["meta"]["versionId"], "1");
        assert_eq!(
            for_role(&m, Role::BackOffice, false)["meta"]["lastUpdated"],
            "2026-12-04T01:00:00Z"
        );
        // a past version of a once-restricted record, shown in the restricted view
        let mut u = record("U");
        u.remove("link");
        u.remove("active");
        u["meta"]["lastUpdated"] = json!("2026-12-04T01:00:00Z");
        assert!(for_role(&u, Role::HealthcareWorker, true)["meta"]
            .get("lastUpdated")
            .is_none());
        assert_eq!(
            for_role(&u, Role::HealthcareWorker, false)["meta"]["lastUpdated"],
            "2026-12-04T01:00:00Z"
        );
    }

    #[test]
    fn unrestricted_records_lose_only_merge_state() {
        let m = record("U");
        let r = for_role(&m, Role::ApplicationRestricted, false);
        assert!(r.get("link").is_none() && r.get("active").is_none());
        assert_eq!(r["address"], m["address"]);
        assert_eq!(r["extension"], m["extension"]);
        let mut plain = m.clone();
        plain.remove("link");
        plain.remove("active");
        assert!(
            matches!(
                for_role(&plain, Role::HealthcareWorker, false),
                Cow::Borrowed(_)
            ),
            "nothing hidden: no copy"
        );
        assert!(!matches!(
            for_role(&plain, Role::HealthcareWorker, true),
            Cow::Borrowed(_)
        ));
    }

    /// The table decides every element the stored Patient schema allows, so that a field or an
    /// extension added to the schema cannot slip through by being forgotten here.
    #[test]
    fn every_schema_element_has_a_decision() {
        let schema: Value = serde_json::from_str(super::super::schema::PATIENT_SCHEMA).unwrap();
        for field in schema["properties"].as_object().unwrap().keys() {
            assert!(
                ELEMENTS
                    .iter()
                    .any(|d| matches!(d.element, Field(f) if f == field)),
                "no view decision for field {field}"
            );
        }
        for url in schema["$defs"]["extension"]["properties"]["url"]["enum"]
            .as_array()
            .unwrap()
        {
            let url = url.as_str().unwrap();
            assert!(
                ELEMENTS
                    .iter()
                    .any(|d| matches!(d.element, Extension(u) if u == url)),
                "no view decision for extension {url}"
            );
        }
        // and an element nobody listed is hidden on a restricted record
        assert_eq!(shown(Field("pets")), Unrestricted);
    }

    #[test]
    fn history_of_a_once_restricted_record() {
        let h = RecordHistory::of([(1, false), (2, true), (3, false)]);
        assert!(h.redacts(1, false) && h.redacts(2, true));
        assert!(!h.redacts(3, false), "the current, lifted version");
        let never = RecordHistory::of([(1, false), (2, false)]);
        assert!(!never.redacts(1, false));
    }
}
