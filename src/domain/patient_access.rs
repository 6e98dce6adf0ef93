//! What patient access (NHS login, the `patient` role) may change in its own record: PDS's
//! patient-access update rule (reference §3, "Patient access may update only…"), as a table.
//!
//! A patient may change only address, communication (language and interpreter), emergency
//! contact, pharmacy, place of birth, and mobile or e-mail telecom — and, except when removing,
//! only by sending those objects whole (`/address/-`, `/address/0`, never `/address/0/line/0`).
//! Anything else is 400 INVALID_UPDATE `Invalid update with error - This user does not have
//! permission to update the fields in the patches provided.` — removing a telecom that is not a
//! mobile (or e-mail) included. `test` operations change nothing and are not limited; naming a
//! list item's identity (`/address/0/id`) is not a change either.
//!
//! Which record a patient may change at all is the app layer's `require_own_record`.

use serde_json::Value;

use super::outcome::PdsError;
use super::patch::{Op, OpKind};
use super::patient::{item_key, BIRTH_PLACE_URL, COMMUNICATION_URL, PHARMACY_URLS};

/// PDS's diagnostics for a change patient access may not make (after `Invalid update with
/// error - `).
pub const NOT_PERMITTED: &str =
    "This user does not have permission to update the fields in the patches provided.";

/// What a patient may change: a list field, or one kind of extension (by `url`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Updatable {
    /// Every item of this list field.
    List(&'static str),
    /// `telecom` items that are a mobile phone or an e-mail address.
    MobileOrEmail,
    /// The extension with this url.
    Extension(&'static str),
}

/// The patient-access update table, each entry with PDS's name for it (reference §3).
pub const PATIENT_UPDATABLE: [(Updatable, &str); 8] = [
    (Updatable::List("address"), "address"),
    (Updatable::List("contact"), "emergency contact"),
    (Updatable::MobileOrEmail, "mobile / email telecom"),
    (
        Updatable::Extension(COMMUNICATION_URL),
        "communication (language + interpreter)",
    ),
    (
        Updatable::Extension(PHARMACY_URLS[0]),
        "pharmacy (nominated)",
    ),
    (
        Updatable::Extension(PHARMACY_URLS[1]),
        "pharmacy (dispensing doctor)",
    ),
    (
        Updatable::Extension(PHARMACY_URLS[2]),
        "pharmacy (appliance supplier)",
    ),
    (Updatable::Extension(BIRTH_PLACE_URL), "place of birth"),
];

fn refused() -> PdsError {
    PdsError::invalid_update(NOT_PERMITTED)
}

/// Whether `item` of list `field` is one a patient may add, replace or remove.
fn item_allowed(field: &str, item: &Value) -> bool {
    PATIENT_UPDATABLE.iter().any(|(what, _)| match what {
        Updatable::List(list) => *list == field,
        Updatable::MobileOrEmail => {
            field == "telecom"
                && match item.get("system").and_then(Value::as_str) {
                    Some("email") => true,
                    Some("phone") => item.get("use").and_then(Value::as_str) == Some("mobile"),
                    _ => false,
                }
        }
        Updatable::Extension(url) => {
            field == "extension" && item.get("url").and_then(Value::as_str) == Some(url)
        }
    })
}

/// Whether the list field `field` holds anything a patient may change.
fn list_allowed(field: &str) -> bool {
    PATIENT_UPDATABLE.iter().any(|(what, _)| match what {
        Updatable::List(list) => *list == field,
        Updatable::MobileOrEmail => field == "telecom",
        Updatable::Extension(_) => field == "extension",
    })
}

/// Checks one operation of a patient's PATCH against the table, on the record `doc` as the
/// operations before it left it. An index that names no item passes here: the list rules
/// report it as they do for everyone.
pub fn check(doc: &Value, op: &Op) -> Result<(), PdsError> {
    if op.kind == OpKind::Test {
        return Ok(());
    }
    let field = op.tokens[0].as_str();
    if !list_allowed(field) || op.tokens.len() < 2 {
        return Err(refused());
    }
    let index = op.tokens[1].as_str();
    if index == "-" {
        // a new item, sent whole
        return match &op.value {
            Some(item) if op.tokens.len() == 2 && item_allowed(field, item) => Ok(()),
            _ => Err(refused()),
        };
    }
    let current = index
        .parse::<usize>()
        .ok()
        .and_then(|i| doc.get(field)?.as_array()?.get(i));
    let Some(current) = current else {
        return Ok(());
    };
    match op.tokens.len() {
        // naming the item's identity changes nothing (the list rules check the claim)
        3 if Some(op.tokens[2].as_str()) == item_key(field) && op.kind != OpKind::Remove => Ok(()),
        2 if item_allowed(field, current) => match (op.kind, &op.value) {
            (OpKind::Remove, _) => Ok(()),
            (_, Some(new)) if item_allowed(field, new) => Ok(()),
            _ => Err(refused()),
        },
        _ => Err(refused()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(kind: OpKind, path: &str, value: Option<Value>) -> Op {
        Op::new(kind, path, value)
    }

    fn doc() -> Value {
        json!({
            "gender": "female",
            "name": [{"id": "N1", "use": "usual", "family": "Smith"}],
            "address": [{"id": "A1", "use": "home", "line": ["1 Road"]}],
            "telecom": [
                {"id": "T1", "system": "phone", "use": "home", "value": "01632960001"},
                {"id": "T2", "system": "phone", "use": "mobile", "value": "07700900001"},
                {"id": "T3", "system": "email", "use": "home", "value": "a@example.com"}
            ],
            "extension": [
                {"url": COMMUNICATION_URL, "extension": []},
                {"url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-DeathNotificationStatus"}
            ]
        })
    }

    fn allowed(o: Op) -> bool {
        match check(&doc(), &o) {
            Ok(()) => true,
            Err(e) => {
                assert_eq!(
                    e.diagnostics.as_deref(),
                    Some(
                        "Invalid update with error - This user does not have permission to update the fields in the patches provided."
                    )
                );
                false
            }
        }
    }

    #[test]
    fn the_fields_of_the_table_sent_whole() {
        use OpKind::*;
        let mobile = json!({"system": "phone", "use": "mobile", "value": "07700900002"});
        let email = json!({"system": "email", "value": "b@example.com"});
        let home = json!({"system": "phone", "use": "home", "value": "01632960002"});
        for ok in [
            op(
                Add,
                "/address/-",
                Some(json!({"use": "home", "line": ["2 Road"]})),
            ),
            op(
                Replace,
                "/address/0",
                Some(json!({"id": "A1", "use": "home"})),
            ),
            op(Remove, "/address/0", None),
            op(Add, "/contact/-", Some(json!({"relationship": []}))),
            op(Add, "/telecom/-", Some(mobile.clone())),
            op(Add, "/telecom/-", Some(email.clone())),
            op(
                Replace,
                "/telecom/1",
                Some(
                    json!({"id": "T2", "system": "phone", "use": "mobile", "value": "07700900003"}),
                ),
            ),
            op(Remove, "/telecom/1", None),
            op(Remove, "/telecom/2", None),
            op(
                Add,
                "/extension/-",
                Some(json!({"url": BIRTH_PLACE_URL, "valueAddress": {"city": "Leeds"}})),
            ),
            op(Add, "/extension/-", Some(json!({"url": PHARMACY_URLS[0]}))),
            op(
                Replace,
                "/extension/0",
                Some(json!({"url": COMMUNICATION_URL})),
            ),
            op(Remove, "/extension/0", None),
            op(Add, "/address/0/id", Some(json!("A1"))),
            op(Test, "/gender", Some(json!("female"))),
            op(Test, "/name/0/family", Some(json!("Smith"))),
            // an index that names no item: the list rules answer, as for everyone
            op(Remove, "/address/7", None),
        ] {
            assert!(allowed(ok.clone()), "{} {}", ok.kind == Remove, ok.path);
        }
        for refused in [
            op(Replace, "/gender", Some(json!("male"))),
            op(Replace, "/birthDate", Some(json!("1990-01-01"))),
            op(
                Add,
                "/name/-",
                Some(json!({"use": "usual", "family": "Jones"})),
            ),
            op(Replace, "/name/0/family", Some(json!("Jones"))),
            op(Add, "/generalPractitioner/-", Some(json!({}))),
            op(Replace, "/meta/security/0/code", Some(json!("U"))),
            // not sent whole
            op(Replace, "/address/0/line/0", Some(json!("3 Road"))),
            op(Remove, "/address/0/line", None),
            op(Replace, "/telecom/1/value", Some(json!("07700900004"))),
            // telecoms other than mobile and e-mail
            op(Add, "/telecom/-", Some(home.clone())),
            op(Remove, "/telecom/0", None),
            op(
                Replace,
                "/telecom/0",
                Some(
                    json!({"id": "T1", "system": "phone", "use": "mobile", "value": "07700900005"}),
                ),
            ),
            op(
                Replace,
                "/telecom/1",
                Some(json!({"id": "T2", "system": "phone", "use": "home", "value": "01632960003"})),
            ),
            // extensions outside the table
            op(Remove, "/extension/1", None),
            op(
                Add,
                "/extension/-",
                Some(
                    json!({"url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-ContactPreference"}),
                ),
            ),
            op(
                Replace,
                "/extension/0",
                Some(
                    json!({"url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-DeathNotificationStatus"}),
                ),
            ),
            op(Replace, "/extension/0/extension", Some(json!([]))),
            // a whole list
            op(Add, "/address", Some(json!([]))),
        ] {
            assert!(!allowed(refused.clone()), "{}", refused.path);
        }
    }

    #[test]
    fn every_entry_names_what_pds_calls_it() {
        for (what, name) in PATIENT_UPDATABLE {
            assert!(!name.is_empty(), "{what:?}");
        }
    }
}
