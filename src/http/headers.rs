//! Request headers PDS requires, as extractors that fail with the PDS error.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;

use super::error::ApiError;
use crate::domain::{ErrorCode, PdsError, Version};

pub const X_REQUEST_ID: &str = "x-request-id";
pub const X_CORRELATION_ID: &str = "x-correlation-id";

/// The `X-Request-ID` of a Patient request: required, and a UUID (any version) in the
/// 8-4-4-4-12 hex form PDS checks.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// `^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`
pub fn is_pds_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        request_id(&parts.headers).map_err(ApiError)
    }
}

pub fn request_id(headers: &HeaderMap) -> Result<RequestId, PdsError> {
    let Some(value) = headers.get(X_REQUEST_ID) else {
        return Err(PdsError::new(
            ErrorCode::MissingValue,
            "Invalid request with error - X-Request-ID header must be supplied to access this resource",
        ));
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    if !is_pds_uuid(&text) {
        return Err(PdsError::new(
            ErrorCode::InvalidValue,
            format!(
                "Invalid value - '{}' in header 'X-Request-ID'",
                crate::domain::outcome::clip(&text)
            ),
        ));
    }
    Ok(RequestId(text.into_owned()))
}

/// The version an update expects, from `If-Match: W/"<n>"`; missing or malformed → 412, saying
/// which of the two it was.
pub fn if_match(headers: &HeaderMap) -> Result<Version, PdsError> {
    let Some(value) = headers.get(axum::http::header::IF_MATCH) else {
        return Err(PdsError::new(
            ErrorCode::PreconditionFailed,
            "Invalid request with error - If-Match header must be supplied to update this resource",
        ));
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    Version::parse_if_match(&text).ok_or_else(|| {
        PdsError::new(
            ErrorCode::PreconditionFailed,
            format!(
                "Invalid request with error - If-Match header '{}' is not of the form W/\"<version>\"; send the ETag of the record as returned, e.g. W/\"2\"",
                crate::domain::outcome::clip(&text)
            ),
        )
    })
}

/// 400 UNSUPPORTED_SERVICE for a body of the wrong media type, saying which ones are accepted.
pub fn unsupported_content_type(headers: &HeaderMap, accepted: &str) -> PdsError {
    let got = match media_type(headers).as_str() {
        "" => "none".to_string(),
        t => format!("'{}'", crate::domain::outcome::clip(t)),
    };
    PdsError::new(
        ErrorCode::UnsupportedService,
        format!("Invalid request with error - the Content-Type must be {accepted}; it was {got}"),
    )
}

/// What a PATCH body may be sent as.
pub const PATCH_CONTENT_TYPES: &str =
    "application/json-patch+json (application/json is accepted too)";
/// What a resource or Parameters body may be sent as.
pub const FHIR_CONTENT_TYPES: &str = "application/fhir+json or application/json";

/// The media type of the request body: `Content-Type` without parameters, lower case.
fn media_type(headers: &HeaderMap) -> String {
    let value = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// PATCH bodies are JSON Patch: `application/json-patch+json`, or `application/json` (which
/// PDS's own sandbox accepts too). Parameters such as `charset` are ignored.
pub fn is_patch_content_type(headers: &HeaderMap) -> bool {
    matches!(
        media_type(headers).as_str(),
        "application/json-patch+json" | "application/json"
    )
}

/// Resource and `Parameters` bodies: `application/fhir+json` or `application/json`.
pub fn is_fhir_json_content_type(headers: &HeaderMap) -> bool {
    matches!(
        media_type(headers).as_str(),
        "application/fhir+json" | "application/json"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_forms() {
        assert!(is_pds_uuid("60E0B220-8136-4CA5-AE46-1D97EF59D068"));
        assert!(is_pds_uuid("00000000-0000-0000-0000-000000000000"));
        for bad in [
            "",
            "1234",
            "60E0B220-8136-4CA5-AE46-1D97EF59D06",
            "60E0B220_8136-4CA5-AE46-1D97EF59D068",
            "{60e0b220-8136-4ca5-ae46-1d97ef59d068}",
        ] {
            assert!(!is_pds_uuid(bad), "{bad}");
        }
    }
}
