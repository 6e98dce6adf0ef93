//! The kick-off parameters of a FHIR Bulk Data export (`GET /Patient/$export`).

use super::{ErrorCode, PdsError};

/// The `_outputFormat` values meaning NDJSON (the Bulk Data IG's names for it).
pub const OUTPUT_FORMATS: [&str; 3] = ["application/fhir+ndjson", "application/ndjson", "ndjson"];

/// What an export is asked for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExportRequest {
    /// Only records last updated at or after this instant (`_since`).
    pub since: Option<time::OffsetDateTime>,
}

/// Parses a kick-off query: `_outputFormat` (NDJSON only), `_type` (`Patient` only) and
/// `_since` (an RFC 3339 instant with a time zone); anything else is ADDITIONAL_PROPERTIES.
pub fn parse(pairs: &[(String, String)]) -> Result<ExportRequest, PdsError> {
    let mut request = ExportRequest::default();
    let mut unexpected = Vec::new();
    for (name, value) in pairs {
        match name.as_str() {
            "_outputFormat" => {
                if !OUTPUT_FORMATS.contains(&value.as_str()) {
                    return Err(PdsError::new(
                        ErrorCode::InvalidValue,
                        format!(
                            "Invalid value - '{}' in field '_outputFormat': exports are written as NDJSON (application/fhir+ndjson)",
                            super::outcome::clip(value)
                        ),
                    ));
                }
            }
            "_type" => {
                if value.split(',').any(|t| t.trim() != "Patient") {
                    return Err(PdsError::new(
                        ErrorCode::InvalidValue,
                        format!(
                            "Invalid value - '{}' in field '_type': only Patient resources are exported",
                            super::outcome::clip(value)
                        ),
                    ));
                }
            }
            "_since" => {
                let at = time::OffsetDateTime::parse(
                    value,
                    &time::format_description::well_known::Rfc3339,
                )
                .map_err(|_| {
                    PdsError::new(
                        ErrorCode::InvalidValue,
                        format!(
                            "Invalid value - '{}' in field '_since': an instant with a time zone, e.g. 2026-01-01T00:00:00Z",
                            super::outcome::clip(value)
                        ),
                    )
                })?;
                request.since = Some(at);
            }
            _ => unexpected.push(name.clone()),
        }
    }
    if !unexpected.is_empty() {
        return Err(super::schema::additional_properties(&unexpected));
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::domain::query::pairs;

    #[test]
    fn kick_off_parameters() {
        assert_eq!(parse(&[]), Ok(ExportRequest::default()));
        for format in OUTPUT_FORMATS {
            assert!(parse(&pairs(&[("_outputFormat", format)])).is_ok());
        }
        assert!(parse(&pairs(&[("_type", "Patient"), ("_outputFormat", "ndjson")])).is_ok());
        let since = parse(&pairs(&[("_since", "2026-01-02T03:04:05+00:00")])).unwrap();
        assert_eq!(since.since.unwrap().year(), 2026);
        for bad in [
            ("_outputFormat", "application/fhir+json"),
            ("_type", "Patient,Observation"),
            ("_since", "2026-01-02"),
        ] {
            assert_eq!(
                parse(&pairs(&[bad])).unwrap_err().code,
                ErrorCode::InvalidValue,
                "{bad:?}"
            );
        }
        assert_eq!(
            parse(&pairs(&[("_typeFilter", "x")])).unwrap_err().code,
            ErrorCode::AdditionalProperties
        );
    }
}
