//! The JSON Schemas in `schemas/`, compiled once at start-up and shared.
//!
//! The schema files are embedded in the binary, so the service validates with exactly the
//! documents that are committed and published in the OpenAPI description.

use jsonschema::error::ValidationErrorKind;
use jsonschema::{ValidationError, Validator};
use serde_json::Value;

use super::outcome::{clip, ErrorCode, PdsError};

pub const PATIENT_SCHEMA: &str = include_str!("../../schemas/patient.schema.json");
pub const PATCH_REQUEST_SCHEMA: &str = include_str!("../../schemas/patch-request.schema.json");
pub const OPERATION_OUTCOME_SCHEMA: &str =
    include_str!("../../schemas/operation-outcome.schema.json");

/// Compiled validators (thread-safe; build one and share it).
pub struct Schemas {
    patient: Validator,
    patch_request: Validator,
}

impl Schemas {
    /// Compiles the embedded schemas. They are part of the program, so failure is a bug.
    pub fn compile() -> Self {
        Schemas {
            patient: compile(PATIENT_SCHEMA),
            patch_request: compile(PATCH_REQUEST_SCHEMA),
        }
    }

    /// Checks a whole Patient document; the error names the JSON pointer of the first bad value.
    pub fn check_patient(&self, doc: &Value) -> Result<(), PdsError> {
        first_error(&self.patient, doc, "")
    }

    /// Checks a PATCH body (`{"patches":[…]}`); fields are reported as PDS does (`0/op`).
    pub fn check_patch_request(&self, body: &Value) -> Result<(), PdsError> {
        first_error(&self.patch_request, body, "patches/")
    }
}

fn compile(text: &str) -> Validator {
    let schema: Value = serde_json::from_str(text).expect("embedded schema is JSON");
    jsonschema::draft202012::new(&schema).expect("embedded schema compiles")
}

fn first_error(validator: &Validator, doc: &Value, strip: &str) -> Result<(), PdsError> {
    if validator.is_valid(doc) {
        return Ok(());
    }
    let error = validator
        .iter_errors(doc)
        .next()
        .expect("invalid document has an error");
    Err(to_pds_error(&error, strip))
}

/// Maps a schema violation to the PDS code a client would get for it.
fn to_pds_error(error: &ValidationError<'_>, strip: &str) -> PdsError {
    let pointer = error.instance_path().as_str();
    let field = pointer.trim_start_matches('/');
    let field = field.strip_prefix(strip).unwrap_or(field);
    let instance = render(error.instance());
    match error.kind() {
        ValidationErrorKind::Required { property } => {
            let prop = property.as_str().unwrap_or_default();
            let full = if field.is_empty() {
                prop.to_string()
            } else {
                format!("{field}/{prop}")
            };
            PdsError::missing_value(&full)
        }
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let names: Vec<String> = unexpected
                .iter()
                .map(|p| {
                    if field.is_empty() {
                        p.clone()
                    } else {
                        format!("{field}/{p}")
                    }
                })
                .collect();
            // PDS: ADDITIONAL_PROPERTIES — "sending a patient post and attempting to include
            // 'pets', which is not an allowed field within the patient resource"
            additional_properties(&names)
        }
        ValidationErrorKind::MaxItems { limit } => PdsError::new(
            ErrorCode::TooManyValues,
            format!("Too many values submitted - {instance} in field '{field}' (at most {limit})"),
        ),
        ValidationErrorKind::MinItems { limit } => PdsError::new(
            ErrorCode::TooFewValues,
            format!("Too few values submitted - at least {limit} required in field '{field}'"),
        ),
        _ => PdsError::invalid_value(&instance, field),
    }
}

/// 400 ADDITIONAL_PROPERTIES naming the unexpected properties, in the words PDS uses for them.
pub fn additional_properties(names: &[String]) -> PdsError {
    let quoted = names
        .iter()
        .map(|n| format!("'{}'", clip(n)))
        .collect::<Vec<_>>()
        .join(", ");
    let verb = if names.len() == 1 { "was" } else { "were" };
    PdsError::new(
        ErrorCode::AdditionalProperties,
        format!("Invalid request with error - Additional properties are not allowed ({quoted} {verb} unexpected)"),
    )
}

/// A value as quoted in a message: strings bare, lists the way PDS quotes them
/// (`['One', 'Two']`), anything else as compact JSON.
fn render(v: &Value) -> String {
    match v {
        Value::String(s) => clip(s),
        Value::Array(items) => clip(&format!(
            "[{}]",
            items
                .iter()
                .map(|i| match i {
                    Value::String(s) => format!("'{s}'"),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        )),
        other => clip(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn minimal() -> Value {
        json!({"resourceType": "Patient", "id": "9000000009",
               "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"}]})
    }

    #[test]
    fn minimal_record_is_valid() {
        Schemas::compile().check_patient(&minimal()).unwrap();
    }

    #[test]
    fn reports_pointer_and_code() {
        let s = Schemas::compile();
        let mut p = minimal();
        p["gender"] = json!("mal");
        let e = s.check_patient(&p).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidValue);
        assert_eq!(
            e.diagnostics.unwrap(),
            "Invalid value - 'mal' in field 'gender'"
        );

        let mut p = minimal();
        p["pets"] = json!(["cat"]);
        let e = s.check_patient(&p).unwrap_err();
        assert_eq!(e.code, ErrorCode::AdditionalProperties);
        assert_eq!(
            e.diagnostics.unwrap(),
            "Invalid request with error - Additional properties are not allowed ('pets' was unexpected)"
        );
        let mut p = minimal();
        p["name"] = json!([{"use": "usual", "family": "X", "pets": 1}]);
        assert!(s
            .check_patient(&p)
            .unwrap_err()
            .diagnostics
            .unwrap()
            .contains("'name/0/pets'"));

        let mut p = minimal();
        p["name"] =
            json!([{"use": "usual", "family": "X", "given": ["a", "b", "c", "d", "e", "f"]}]);
        let e = s.check_patient(&p).unwrap_err();
        assert_eq!(e.code, ErrorCode::TooManyValues);
        assert!(e.diagnostics.unwrap().contains("name/0/given"));
    }

    #[test]
    fn non_utc_death_is_invalid_value() {
        let s = Schemas::compile();
        let mut p = minimal();
        p["deceasedDateTime"] = json!("2020-01-01T00:00:00+01:00");
        let e = s.check_patient(&p).unwrap_err();
        assert_eq!(
            e.diagnostics.unwrap(),
            "Invalid value - '2020-01-01T00:00:00+01:00' in field 'deceasedDateTime'"
        );
    }

    #[test]
    fn patch_request_errors_name_the_op() {
        let s = Schemas::compile();
        let e = s
            .check_patch_request(&json!({"patches": [{"op": "test", "path": "/gender", "value": "male"}, {"op": "move", "path": "/x"}]}))
            .unwrap_err();
        assert_eq!(
            e.diagnostics.unwrap(),
            "Invalid value - 'move' in field '1/op'"
        );
        let e = s
            .check_patch_request(
                &json!({"patches": [{"op": "remove", "path": "/gender", "value": 1}]}),
            )
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidValue);
    }
}
