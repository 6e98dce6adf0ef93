//! PDS error codes and the OperationOutcome they produce.
//!
//! One table holds every code with its HTTP status, FHIR `issue.code`, severity and display text,
//! exactly as PDS sends them (reference §3 "Error catalogue"). The domain raises a [`PdsError`];
//! the HTTP layer only renders it.

use serde_json::{json, Value};

/// The Spine-ErrorOrWarningCode code system every OperationOutcome coding uses.
pub const SPINE_ERROR_SYSTEM: &str = "https://fhir.nhs.uk/R4/CodeSystem/Spine-ErrorOrWarningCode";

/// PDS's diagnostics for [`ErrorCode::PatientForbidden`].
pub const PATIENT_FORBIDDEN_DIAGNOSTICS: &str = "Your access token has insufficient permissions. See documentation regarding Patient access restrictions https://digital.nhs.uk/developer/api-catalogue/personal-demographics-service-fhir";

/// A PDS error code (`details.coding[0].code`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidResourceId,
    UnsupportedService,
    UnsupportedRequest,
    MissingValue,
    InvalidValue,
    InvalidSearchData,
    AdditionalProperties,
    InvalidUpdate,
    /// A create request breaks one of PDS's create rules.
    InvalidCreate,
    UnsupportedValue,
    UnsupportedCharacters,
    TooFewValues,
    TooManyValues,
    AccessDenied,
    /// Authenticated, but the role may not do this (403 ACCESS_DENIED).
    AccessForbidden,
    /// Patient access (NHS login) asked for something other than its own record, or with a
    /// proof level below P9 (403 ACCESS_DENIED, PDS's patient-access wording).
    PatientForbidden,
    InvalidMethod,
    ForbiddenUpdate,
    ResourceNotFound,
    InvalidatedResource,
    ResourceVersionMismatch,
    PreconditionFailed,
    PayloadTooLarge,
    /// The client sent its request body too slowly (408).
    RequestTimeout,
    /// Too many request headers, or too many bytes of them (431).
    HeadersTooLarge,
    /// Application-restricted callers may only ask for one search result. (PDS's proxy sends
    /// issue code `token`, which is not a FHIR R4 IssueType; `forbidden` keeps the body valid.)
    SearchLimitForRole,
    /// An X-Request-ID re-used for a different request.
    RequestIdReused,
    TooManyRequests,
    ServiceUnavailable,
    UnknownError,
    TooManyMatches,
    /// An allocation found one likely existing record for the patient.
    SingleMatch,
    /// An allocation found several likely existing records.
    MultipleMatches,
    /// A case cannot make this move from its status, or not for this role (409): PDS has no
    /// case work, so its update code is used, told apart by the status and `business-rule`.
    CaseConflict,
    /// The client asked (`Accept`, `_format`) for a format other than JSON. PDS answers only
    /// FHIR JSON and has no code of its own for this: its UNSUPPORTED_SERVICE, with HTTP's 406.
    NotAcceptable,
}

/// How one code is presented: `(code, HTTP status, issue.code, severity, display)`.
pub struct CodeInfo {
    pub code: &'static str,
    pub status: u16,
    pub issue_code: &'static str,
    pub severity: &'static str,
    pub display: &'static str,
}

const fn info(
    code: &'static str,
    status: u16,
    issue_code: &'static str,
    severity: &'static str,
    display: &'static str,
) -> CodeInfo {
    CodeInfo {
        code,
        status,
        issue_code,
        severity,
        display,
    }
}

impl ErrorCode {
    /// The PDS presentation of this code.
    pub const fn info(self) -> CodeInfo {
        use ErrorCode::*;
        match self {
            InvalidResourceId => info("INVALID_RESOURCE_ID", 400, "value", "error", "Resource Id is invalid"),
            UnsupportedService => info("UNSUPPORTED_SERVICE", 400, "processing", "error", "Unsupported Service"),
            UnsupportedRequest => info("UNSUPPORTED_REQUEST", 400, "value", "error", "The request is not one that is supported."),
            MissingValue => info("MISSING_VALUE", 400, "required", "error", "Required value is missing"),
            InvalidValue => info("INVALID_VALUE", 400, "value", "error", "Provided value is invalid"),
            InvalidSearchData => info("INVALID_SEARCH_DATA", 400, "value", "error", "Search data is invalid"),
            AdditionalProperties => info("ADDITIONAL_PROPERTIES", 400, "invariant", "error", "Additional properties should not be included"),
            InvalidUpdate => info("INVALID_UPDATE", 400, "structure", "error", "Update is invalid"),
            InvalidCreate => info("INVALID_CREATE", 400, "value", "error", "Patient create data is invalid"),
            UnsupportedValue => info("UNSUPPORTED_VALUE", 400, "value", "error", "Unsupported value"),
            UnsupportedCharacters => info("UNSUPPORTED_CHARACTERS_IN_FIELD", 400, "value", "error", "Unsupported characters in field"),
            TooFewValues => info("TOO_FEW_VALUES_SUBMITTED", 400, "value", "error", "Too few values submitted"),
            TooManyValues => info("TOO_MANY_VALUES_SUBMITTED", 400, "value", "error", "Too many values submitted"),
            AccessDenied => info("ACCESS_DENIED", 401, "forbidden", "error", "Access Denied - Unauthorised"),
            AccessForbidden => info("ACCESS_DENIED", 403, "forbidden", "error", "Access Denied - Forbidden"),
            PatientForbidden => info("ACCESS_DENIED", 403, "forbidden", "error", "Patient cannot perform this action"),
            InvalidMethod => info("INVALID_METHOD", 403, "forbidden", "error", "Cannot update resource with application-restricted access token"),
            ForbiddenUpdate => info("FORBIDDEN_UPDATE", 403, "forbidden", "information", "Update is forbidden"),
            ResourceNotFound => info("RESOURCE_NOT_FOUND", 404, "not-found", "information", "Resource not found"),
            InvalidatedResource => info("INVALIDATED_RESOURCE", 404, "processing", "error", "Resource that has been marked as invalid was requested - invalid resources cannot be retrieved"),
            ResourceVersionMismatch => info("RESOURCE_VERSION_MISMATCH", 409, "conflict", "error", "Resource version supplied does not match actual version"),
            PreconditionFailed => info("PRECONDITION_FAILED", 412, "structure", "error", "Required condition was not fulfilled"),
            // PDS has no code of its own for an oversized body; the coding says what was wrong
            // (INVALID_VALUE) and the status and issue code say how (413, too-long).
            PayloadTooLarge => info("INVALID_VALUE", 413, "too-long", "error", "Provided value is invalid"),
            // 408 is PDS's UNABLE_TO_CALL_SERVICE, the one code its catalogue gives that status;
            // the facade sends it when a client's request body does not arrive in time.
            RequestTimeout => info("UNABLE_TO_CALL_SERVICE", 408, "timeout", "error", "Unable to call service"),
            // no PDS code for oversized headers either: INVALID_VALUE, told apart by 431/too-long
            HeadersTooLarge => info("INVALID_VALUE", 431, "too-long", "error", "Provided value is invalid"),
            SearchLimitForRole => info("INVALID_VALUE", 403, "forbidden", "error", "Cannot retrieve more than one result with application-restricted access token"),
            RequestIdReused => info("INVALID_VALUE", 422, "duplicate", "error", "Provided value is invalid"),
            TooManyRequests => info("TOO_MANY_REQUESTS", 429, "value", "error", "Too many requests"),
            ServiceUnavailable => info("SERVICE_UNAVAILABLE", 503, "timeout", "error", "Service unavailable"),
            UnknownError => info("UNKNOWN_ERROR", 500, "unknown", "error", "Unknown Error"),
            SingleMatch => info("SINGLE_MATCH", 200, "value", "error", "Single match found"),
            MultipleMatches => info("MULTIPLE_MATCHES", 200, "value", "error", "Multiple matches found"),
            CaseConflict => info("INVALID_UPDATE", 409, "business-rule", "error", "Update is invalid"),
            NotAcceptable => info("UNSUPPORTED_SERVICE", 406, "not-supported", "error", "Unsupported Service"),
            TooManyMatches => info("TOO_MANY_MATCHES", 200, "multiple-matches", "information", "Too Many Matches"),
        }
    }
}

/// An error as PDS reports it: a code and, where PDS gives one, a diagnostics sentence.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}", .code.info().code, .diagnostics.as_deref().unwrap_or(.code.info().display))]
pub struct PdsError {
    pub code: ErrorCode,
    pub diagnostics: Option<String>,
}

impl PdsError {
    /// An error that PDS sends without diagnostics (e.g. RESOURCE_NOT_FOUND).
    pub fn bare(code: ErrorCode) -> Self {
        PdsError {
            code,
            diagnostics: None,
        }
    }

    pub fn new(code: ErrorCode, diagnostics: impl Into<String>) -> Self {
        PdsError {
            code,
            diagnostics: Some(diagnostics.into()),
        }
    }

    /// 403 ACCESS_DENIED as PDS answers patient access outside its own record (and any
    /// patient access below P9).
    pub fn patient_forbidden() -> Self {
        Self::new(ErrorCode::PatientForbidden, PATIENT_FORBIDDEN_DIAGNOSTICS)
    }

    /// 400 INVALID_UPDATE `Invalid update with error - <detail>`.
    pub fn invalid_update(detail: impl AsRef<str>) -> Self {
        Self::new(
            ErrorCode::InvalidUpdate,
            format!("Invalid update with error - {}", detail.as_ref()),
        )
    }

    /// 400 INVALID_CREATE `Invalid patient create data provided - '<detail>'`.
    pub fn invalid_create(detail: impl AsRef<str>) -> Self {
        Self::new(
            ErrorCode::InvalidCreate,
            format!(
                "Invalid patient create data provided - '{}'",
                detail.as_ref()
            ),
        )
    }

    /// 403 FORBIDDEN_UPDATE `Forbidden update with error - <detail>`.
    pub fn forbidden_update(detail: impl AsRef<str>) -> Self {
        Self::new(
            ErrorCode::ForbiddenUpdate,
            format!("Forbidden update with error - {}", detail.as_ref()),
        )
    }

    /// 400 INVALID_VALUE `Invalid value - '<value>' in field '<field>'`.
    pub fn invalid_value(value: &str, field: &str) -> Self {
        Self::new(
            ErrorCode::InvalidValue,
            format!("Invalid value - '{}' in field '{field}'", clip(value)),
        )
    }

    /// 409 RESOURCE_VERSION_MISMATCH saying which version is current (whoever gets as far as a
    /// version check may read the record: its version is in the ETag of any GET).
    pub fn version_mismatch(expected: super::Version, current: super::Version) -> Self {
        Self::new(
            ErrorCode::ResourceVersionMismatch,
            format!(
                "Invalid update with error - the If-Match version {} is not the current version, {}: read the record again and re-apply the change to it",
                expected.etag(),
                current.etag()
            ),
        )
    }

    /// 422: a request id already used, within the idempotency window, for another request.
    pub fn request_id_reused(request_id: &str) -> Self {
        Self::new(
            ErrorCode::RequestIdReused,
            format!(
                "Invalid value - '{}' in header 'X-Request-ID' - it was already used for a different request; use a new X-Request-ID for a new request",
                clip(request_id)
            ),
        )
    }

    /// 400 MISSING_VALUE `Missing value - '<field>'`.
    pub fn missing_value(field: &str) -> Self {
        Self::new(
            ErrorCode::MissingValue,
            format!("Missing value - '{field}'"),
        )
    }

    pub fn status(&self) -> u16 {
        self.code.info().status
    }

    /// The FHIR OperationOutcome for this error.
    pub fn to_operation_outcome(&self) -> Value {
        let info = self.code.info();
        let mut issue = json!({
            "severity": info.severity,
            "code": info.issue_code,
            "details": {"coding": [{
                "system": SPINE_ERROR_SYSTEM,
                "version": "1",
                "code": info.code,
                "display": info.display,
            }]},
        });
        if let Some(d) = &self.diagnostics {
            issue["diagnostics"] = Value::String(d.clone());
        }
        json!({"resourceType": "OperationOutcome", "issue": [issue]})
    }
}

/// Shortens a value quoted back in a message so that a huge input cannot make a huge error.
pub fn clip(s: &str) -> String {
    const MAX: usize = 120;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_pds_shape() {
        let oo = PdsError::invalid_update("Update unsupported for resource - 'pets'")
            .to_operation_outcome();
        assert_eq!(
            oo,
            json!({"resourceType": "OperationOutcome",
             "issue": [{"severity": "error", "code": "structure",
                        "details": {"coding": [{"system": SPINE_ERROR_SYSTEM, "version": "1",
                                                "code": "INVALID_UPDATE", "display": "Update is invalid"}]},
                        "diagnostics": "Invalid update with error - Update unsupported for resource - 'pets'"}]})
        );
        let bare = PdsError::bare(ErrorCode::ResourceNotFound).to_operation_outcome();
        assert!(bare["issue"][0].get("diagnostics").is_none());
        assert_eq!(bare["issue"][0]["severity"], "information");
    }

    #[test]
    fn clips_long_values() {
        let long = "x".repeat(1000);
        assert!(
            PdsError::invalid_value(&long, "gender")
                .diagnostics
                .unwrap()
                .len()
                < 200
        );
    }
}
