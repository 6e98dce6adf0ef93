//! Reading FHIR `Parameters` bodies of the back-office operations.

use serde_json::Value;

use super::nhs_number::NhsNumber;
use super::outcome::{clip, ErrorCode, PdsError};
use super::patient::NHS_NUMBER_SYSTEM;

/// A `Parameters` resource whose parameter names were checked against the operation's list.
pub struct Parameters<'a> {
    params: &'a [Value],
}

impl<'a> Parameters<'a> {
    /// Accepts a `Parameters` resource with only `known` parameter names (others →
    /// ADDITIONAL_PROPERTIES naming them).
    pub fn parse(body: &'a Value, known: &[&str]) -> Result<Parameters<'a>, PdsError> {
        let kind = body.get("resourceType").and_then(Value::as_str);
        if kind != Some("Parameters") {
            return Err(PdsError::invalid_value(
                kind.unwrap_or("(none)"),
                "resourceType",
            ));
        }
        // a Parameters resource has these members, and each parameter a name and one value
        const RESOURCE: [&str; 4] = ["resourceType", "id", "meta", "parameter"];
        let mut unexpected: Vec<String> = body
            .as_object()
            .into_iter()
            .flat_map(|m| m.keys())
            .filter(|k| !RESOURCE.contains(&k.as_str()))
            .cloned()
            .collect();
        let params = body
            .get("parameter")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for (i, p) in params.iter().enumerate() {
            unexpected.extend(
                p.as_object()
                    .into_iter()
                    .flat_map(|m| m.keys())
                    .filter(|k| {
                        !matches!(
                            k.as_str(),
                            "name" | "resource" | "part" | "id" | "extension"
                        ) && !k.starts_with("value")
                    })
                    .map(|k| format!("parameter/{i}/{k}")),
            );
        }
        if !unexpected.is_empty() {
            return Err(super::schema::additional_properties(&unexpected));
        }
        if let Some(unknown) = params
            .iter()
            .filter_map(|p| p.get("name").and_then(Value::as_str))
            .find(|n| !known.contains(n))
        {
            return Err(PdsError::new(
                ErrorCode::AdditionalProperties,
                format!("Invalid request with error - Additional properties are not allowed ('{}' was unexpected)", clip(unknown)),
            ));
        }
        Ok(Parameters { params })
    }

    fn find(&self, name: &str) -> Option<&'a Value> {
        self.params
            .iter()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
    }

    /// An NHS number given as `valueIdentifier` with the NHS number system.
    pub fn nhs_number(&self, name: &str) -> Result<Option<NhsNumber>, PdsError> {
        let Some(p) = self.find(name) else {
            return Ok(None);
        };
        let ident = p
            .get("valueIdentifier")
            .ok_or_else(|| PdsError::missing_value(&format!("{name}/valueIdentifier")))?;
        let system = ident
            .get("system")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if system != NHS_NUMBER_SYSTEM {
            return Err(PdsError::invalid_value(
                system,
                &format!("{name}/valueIdentifier/system"),
            ));
        }
        let value = ident
            .get("value")
            .and_then(Value::as_str)
            .unwrap_or_default();
        NhsNumber::parse(value)
            .map(Some)
            .map_err(|_| PdsError::invalid_value(value, &format!("{name}/valueIdentifier/value")))
    }

    pub fn required_nhs_number(&self, name: &str) -> Result<NhsNumber, PdsError> {
        self.nhs_number(name)?
            .ok_or_else(|| PdsError::missing_value(name))
    }

    pub fn boolean(&self, name: &str) -> Result<Option<bool>, PdsError> {
        self.find(name)
            .map(|p| {
                p.get("valueBoolean")
                    .and_then(Value::as_bool)
                    .ok_or_else(|| PdsError::invalid_value(&p.to_string(), name))
            })
            .transpose()
    }

    pub fn resource(&self, name: &str) -> Result<Option<&'a Value>, PdsError> {
        self.find(name)
            .map(|p| {
                p.get("resource")
                    .ok_or_else(|| PdsError::missing_value(&format!("{name}/resource")))
            })
            .transpose()
    }

    /// The required, non-blank `reason` (`valueString`).
    pub fn reason(&self) -> Result<String, PdsError> {
        self.find("reason")
            .and_then(|p| p.get("valueString"))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_string)
            .ok_or_else(|| PdsError::missing_value("reason"))
    }
}
