//! National Back Office identity management, pure: new records for allocation, invalidation
//! and revalidation, and the duplicate check that precedes an allocation.
//!
//! An invalidated record keeps its data; its confidentiality becomes `REDACTED` (PDS never
//! returns such a record: 404 INVALIDATED_RESOURCE), and revalidation restores the label it had.

use std::collections::HashSet;

use serde_json::{json, Map, Value};
use time::Date;

use super::confidentiality::{self, Label};
use super::create_request;
use super::nhs_number::NhsNumber;
use super::outcome::PdsError;
use super::patch::{self, Op, PatchContext};
use super::patient::{self, list, Patient, CONFIDENTIALITY_SYSTEM, LIST_FIELDS, NHS_NUMBER_SYSTEM};
use super::role::Role;
use super::rules;
use super::schema::{self, Schemas};
use super::search::SearchQuery;

/// A likely duplicate: a fuzzy match on family, given name, birth date and gender scoring at
/// least this (1 = the same on all four).
pub const DUPLICATE_THRESHOLD: f64 = 0.9;

/// Stands in for the NHS number while a new record is validated (the real one is allocated in
/// the transaction that stores it).
pub fn placeholder() -> NhsNumber {
    NhsNumber::parse("9999999999").expect("valid check digit")
}

/// Fields the service writes on a new record; a create body must not carry them.
const SERVER_FIELDS: [&str; 5] = ["id", "identifier", "meta", "link", "active"];

fn identifier(nhs: NhsNumber) -> Value {
    json!([{"system": NHS_NUMBER_SYSTEM, "value": nhs.to_string(),
        "extension": [{"url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus",
            "valueCodeableConcept": {"coding": [{"system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatus",
                "version": "1.0.0", "code": "01", "display": "Number present and verified"}]}}]}])
}

/// Validates a create (allocation) body as PDS's create shape — a usual name, home address,
/// gender and birth date (checked in PDS's order), the registering authority extension when
/// `pds_create` (PDS's `POST /Patient` requires it; a back-office change of identity does not);
/// no id, identifier or meta — and builds the new record (version 1, unrestricted, object ids
/// assigned, periods starting today) under the rules for `role`.
pub fn new_patient(
    body: &Value,
    role: Role,
    today: Date,
    new_id: &mut dyn FnMut() -> String,
    schemas: &Schemas,
    pds_create: bool,
) -> Result<Patient, PdsError> {
    let Some(body) = body.as_object() else {
        return Err(PdsError::invalid_value("not a JSON object", "Patient"));
    };
    match body.get("resourceType").and_then(Value::as_str) {
        Some("Patient") | None if pds_create => {}
        Some("Patient") => {}
        Some(other) => return Err(PdsError::invalid_value(other, "resourceType")),
        None => return Err(PdsError::missing_value("resourceType")),
    }
    // PDS's order (its create tests): name, address, gender, birthDate present; then the
    // addresses' periods; then every value; then its create rules; then the extension
    for field in ["name", "address", "gender", "birthDate"] {
        if !body.contains_key(field) {
            return Err(PdsError::missing_value(field));
        }
    }
    if pds_create {
        for (i, a) in list(body, "address").iter().enumerate() {
            if a.is_object() && a.get("period").is_none() {
                return Err(PdsError::missing_value(&format!("address/{i}/period")));
            }
        }
    }
    let server: Vec<String> = SERVER_FIELDS
        .iter()
        .filter(|f| body.contains_key(**f))
        .map(|f| f.to_string())
        .collect();
    if !server.is_empty() {
        let mut e = schema::additional_properties(&server);
        if let Some(d) = e.diagnostics.as_mut() {
            d.push_str("; the service allocates the NHS number");
        }
        return Err(e);
    }
    for (field, key) in LIST_FIELDS {
        for (i, item) in list(body, field).iter().enumerate() {
            if key == "id" && item.get("id").is_some() {
                return Err(PdsError::invalid_value(
                    item["id"].as_str().unwrap_or_default(),
                    &format!("{field}/{i}/id"),
                ));
            }
        }
    }
    // the extension is judged after the values (PDS's order); what is kept goes on the record
    let extensions =
        create_request::stored_extensions(create_request::extensions_of(body), pds_create);
    let mut doc: Map<String, Value> = body.clone();
    doc.insert("resourceType".into(), Value::String("Patient".into()));
    match &extensions {
        Ok(kept) if !kept.is_empty() => {
            doc.insert("extension".into(), Value::Array(kept.clone()));
        }
        _ => {
            doc.remove("extension");
        }
    }
    let nhs = placeholder();
    doc.insert("id".into(), Value::String(nhs.to_string()));
    doc.insert("identifier".into(), identifier(nhs));
    doc.insert("meta".into(), json!({"versionId": "1", "security": [{"system": CONFIDENTIALITY_SYSTEM, "code": "U", "display": "unrestricted"}]}));
    patient::assign_missing_ids(&mut doc, new_id);
    let created: HashSet<(String, String)> = LIST_FIELDS
        .iter()
        .flat_map(|(field, _)| {
            list(&doc, field)
                .iter()
                .filter_map(|i| i.get("id")?.as_str())
                .map(|id| (field.to_string(), id.to_string()))
                .collect::<Vec<_>>()
        })
        .collect();
    patch::default_periods(&mut doc, &created, today);
    let new = Patient::parse(Value::Object(doc), schemas, today)?;
    let usual = list(new.doc(), "name")
        .iter()
        .any(|n| n.get("use").and_then(Value::as_str) == Some("usual"));
    if !usual {
        return Err(PdsError::missing_value("name/0/use (a usual name)"));
    }
    if !list(new.doc(), "address")
        .iter()
        .any(|a| a.get("use").and_then(Value::as_str) == Some("home"))
    {
        return Err(PdsError::missing_value("address/0/use (a home address)"));
    }
    if pds_create {
        create_request::check_rules(body)?;
    }
    extensions?;
    let empty = Map::new();
    rules::check_change(&rules::Change {
        old: &empty,
        new: new.doc(),
        role,
        today,
    })?;
    Ok(new)
}

/// The same record under another NHS number (the allocated one).
pub fn with_nhs_number(p: &Patient, nhs: NhsNumber) -> Patient {
    let mut doc = p.doc().clone();
    doc.insert("id".into(), Value::String(nhs.to_string()));
    if let Some(Value::Array(ids)) = doc.get_mut("identifier") {
        if let Some(first) = ids.first_mut() {
            first["value"] = Value::String(nhs.to_string());
        }
    }
    Patient::from_parts(doc, nhs, p.version())
}

/// A new record (from [`new_patient`], not stored yet) with another confidentiality label: a
/// change of identity keeps the old record's, so a restricted patient's new identity is as
/// protected as the old one.
pub fn with_label(p: &Patient, label: Label) -> Patient {
    let mut doc = p.doc().clone();
    if let Some(Value::Object(meta)) = doc.get_mut("meta") {
        meta.insert("security".into(), Value::Array(vec![label.to_json()]));
    }
    Patient::from_parts(doc, p.id(), p.version())
}

/// The fuzzy trace that looks for the new record among existing ones (family, first given
/// name, birth date, gender), if the record has enough for one.
pub fn duplicate_query(p: &Patient) -> Option<SearchQuery> {
    let doc = p.doc();
    let usual = list(doc, "name")
        .iter()
        .find(|n| n.get("use").and_then(Value::as_str) == Some("usual"))?;
    let family = usual.get("family")?.as_str()?;
    let given = usual.get("given")?.get(0)?.as_str()?;
    let birth = doc.get("birthDate")?.as_str()?;
    let mut pairs = vec![
        ("_fuzzy-match".to_string(), "true".to_string()),
        ("family".to_string(), family.to_string()),
        ("given".to_string(), given.to_string()),
        ("birthdate".to_string(), birth.to_string()),
    ];
    if let Some(g) = doc.get("gender").and_then(Value::as_str) {
        pairs.push(("gender".into(), g.into()));
    }
    SearchQuery::parse(&pairs, Role::BackOffice).ok()
}

/// Marks a record invalid (created in error, or replaced by a change of identity).
pub fn invalidate(
    p: &Patient,
    ctx: &mut PatchContext,
    schemas: &Schemas,
) -> Result<(Patient, Vec<Op>), PdsError> {
    if p.is_invalidated() {
        return Err(PdsError::invalid_update(format!(
            "{} is already invalidated",
            p.id()
        )));
    }
    let ops = confidentiality::set_ops(
        p,
        json!({"system": CONFIDENTIALITY_SYSTEM, "code": "REDACTED", "display": "redacted"}),
    );
    Ok((patch::apply_system(p, &ops, ctx, schemas)?, ops))
}

/// Makes an invalidated record valid again with the confidentiality it had before
/// (`previous`, from its history; unrestricted when it had none).
pub fn revalidate(
    p: &Patient,
    previous: Option<Value>,
    ctx: &mut PatchContext,
    schemas: &Schemas,
) -> Result<(Patient, Vec<Op>), PdsError> {
    if !p.is_invalidated() {
        return Err(PdsError::invalid_update(format!(
            "{} is not invalidated",
            p.id()
        )));
    }
    let label = previous.unwrap_or_else(
        || json!({"system": CONFIDENTIALITY_SYSTEM, "code": "U", "display": "unrestricted"}),
    );
    let ops = confidentiality::set_ops(p, label);
    Ok((patch::apply_system(p, &ops, ctx, schemas)?, ops))
}

#[cfg(test)]
mod tests {
    use super::super::outcome::ErrorCode;
    use super::*;
    use time::macros::date;

    const TODAY: Date = date!(2026 - 11 - 27);

    fn body() -> Value {
        json!({"resourceType": "Patient", "name": [{"use": "usual", "family": "Newman", "given": ["Ada"]}], "gender": "female",
            "birthDate": "2026-11-20", "address": [{"use": "home", "period": {"start": "2026-11-20"}, "line": ["1 New Road", "", "", "Leeds"], "postalCode": "LS1 1AA"}],
            "extension": [{"url": create_request::REGISTERING_AUTHORITY_URL, "extension": [
                {"url": "registeringAuthorityType", "valueCodeableConcept": {"coding": [{"system": "https://fhir.nhs.uk/CodeSystem/UKCore-RegisteringAuthorityType", "code": "x"}]}},
                {"url": "organisationIdentifier", "valueString": "RGS"}]}]})
    }

    fn create(b: &Value, role: Role) -> Result<Patient, PdsError> {
        let mut n = 0;
        let mut id = || {
            n += 1;
            format!("ID{n}")
        };
        new_patient(b, role, TODAY, &mut id, &Schemas::compile(), true)
    }

    #[test]
    fn builds_a_new_record() {
        let p = create(&body(), Role::HealthcareWorker).unwrap();
        assert_eq!(p.version().get(), 1);
        assert_eq!(p.doc()["name"][0]["id"], "ID1");
        assert_eq!(p.doc()["name"][0]["period"]["start"], "2026-11-27");
        assert_eq!(p.doc()["meta"]["security"][0]["code"], "U");
        let real = NhsNumber::parse("9993000019").unwrap();
        let q = with_nhs_number(&p, real);
        assert_eq!(
            (
                q.doc()["id"].as_str(),
                q.doc()["identifier"][0]["value"].as_str()
            ),
            (Some("9993000019"), Some("9993000019"))
        );
        assert_eq!(q.id(), real);
        assert!(duplicate_query(&q).is_some());
    }

    #[test]
    fn refuses_what_the_service_assigns_or_what_is_missing() {
        let mut b = body();
        b["id"] = json!("9000000009");
        assert_eq!(
            create(&b, Role::HealthcareWorker).unwrap_err().code,
            ErrorCode::AdditionalProperties
        );
        for field in ["name", "gender", "birthDate", "address", "extension"] {
            let mut b = body();
            b.as_object_mut().unwrap().remove(field);
            let e = create(&b, Role::HealthcareWorker).unwrap_err();
            assert_eq!(e.diagnostics.unwrap(), format!("Missing value - '{field}'"));
        }
        let mut b = body();
        b["name"][0]["id"] = json!("mine");
        assert_eq!(
            create(&b, Role::HealthcareWorker).unwrap_err().code,
            ErrorCode::InvalidValue
        );
        let mut b = body();
        b["gender"] = json!("mal");
        assert_eq!(
            create(&b, Role::HealthcareWorker).unwrap_err().code,
            ErrorCode::InvalidValue
        );
        let mut b = body();
        b["pets"] = json!(1);
        assert_eq!(
            create(&b, Role::HealthcareWorker).unwrap_err().code,
            ErrorCode::AdditionalProperties
        );
        // PDS checks what is missing first: {"bananas": ...} is missing its name
        assert_eq!(
            create(&json!({"bananas": "in pyjamas"}), Role::HealthcareWorker)
                .unwrap_err()
                .diagnostics
                .unwrap(),
            "Missing value - 'name'"
        );
        // a GP is set by the back office only
        let mut b = body();
        b["generalPractitioner"] = json!([{"type": "Organization", "identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "Y12345"}}]);
        assert_eq!(
            create(&b, Role::HealthcareWorker).unwrap_err().code,
            ErrorCode::ForbiddenUpdate
        );
        create(&b, Role::BackOffice).unwrap();
    }

    #[test]
    fn invalidate_and_revalidate() {
        let p = with_nhs_number(
            &create(&body(), Role::BackOffice).unwrap(),
            NhsNumber::parse("9993000019").unwrap(),
        );
        let mut id = || "X".to_string();
        let mut ctx = PatchContext {
            role: Role::BackOffice,
            today: TODAY,
            new_id: &mut id,
        };
        let s = Schemas::compile();
        let (gone, _) = invalidate(&p, &mut ctx, &s).unwrap();
        assert!(gone.is_invalidated() && gone.version().get() == 2);
        assert!(invalidate(&gone, &mut ctx, &s).is_err());
        let (back, _) = revalidate(
            &gone,
            Some(p.doc()["meta"]["security"][0].clone()),
            &mut ctx,
            &s,
        )
        .unwrap();
        assert!(!back.is_invalidated());
        assert_eq!(back.doc()["meta"]["security"], p.doc()["meta"]["security"]);
    }
}
