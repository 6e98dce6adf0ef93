//! The OpenAPI description, generated from the handlers' annotations (utoipa).
//!
//! Resource bodies are described by the very JSON Schemas the service validates with
//! (`schemas/`): the generated document references `Patient`, `OperationOutcome` and
//! `PatchRequest` components, and [`openapi_json`] fills those in from the embedded schema
//! files, hoisting their `$defs` into components. One source of truth for both.

use serde_json::{json, Map, Value};
use utoipa::OpenApi;

use super::patient;
use crate::domain::schema::{OPERATION_OUTCOME_SCHEMA, PATCH_REQUEST_SCHEMA, PATIENT_SCHEMA};
use crate::domain::{ErrorCode, PdsError};

/// Documentation-only types: names for components and parameters in the generated document.
pub mod docs {
    use serde::Deserialize;
    use utoipa::{IntoParams, ToSchema};

    /// A FHIR R4 Patient (replaced by `schemas/patient.schema.json`).
    #[derive(ToSchema)]
    pub struct Patient {}

    /// A FHIR R4 OperationOutcome (replaced by `schemas/operation-outcome.schema.json`).
    #[derive(Deserialize, ToSchema)]
    pub struct OperationOutcome {}

    /// A PDS PATCH body (replaced by `schemas/patch-request.schema.json`).
    #[derive(ToSchema)]
    pub struct PatchRequest {}

    /// PDS's create request (replaced by [`super::create_request_schema`]).
    #[derive(ToSchema)]
    pub struct PatientCreateRequest {}

    #[derive(Deserialize, IntoParams)]
    #[into_params(parameter_in = Path)]
    #[allow(dead_code)]
    pub struct NhsNumberParam {
        /// The patient's NHS number: 10 digits with a modulus-11 check digit.
        #[param(pattern = "^[0-9]{10}$", example = "9991000003")]
        id: String,
    }

    #[derive(Deserialize, IntoParams)]
    #[into_params(parameter_in = Header)]
    #[allow(dead_code)]
    pub struct RequestHeaders {
        /// A UUID identifying this request; required. Re-send a timed-out request with the same
        /// value. Echoed in the response.
        #[serde(rename = "X-Request-ID")]
        #[param(
            pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
            example = "60e0b220-8136-4ca5-ae46-1d97ef59d068"
        )]
        x_request_id: String,
        /// Optional; echoed in the response. Best without `.` (PDS joins ids with dots).
        #[serde(rename = "X-Correlation-ID")]
        #[param(required = false, example = "11C46F5F-CDEF-4865-94B2-0EE0EDCC26DA")]
        x_correlation_id: String,
        /// Optional: the user's role profile id (CIS2 URID), digits only; a malformed value
        /// is 400 INVALID_VALUE for every role but application-restricted (which ignores it).
        #[serde(rename = "NHSD-Session-URID")]
        #[param(required = false, pattern = "^[0-9]+$", example = "555254240100")]
        nhsd_session_urid: String,
    }

    #[derive(Deserialize, IntoParams)]
    #[into_params(parameter_in = Query)]
    #[allow(dead_code)]
    pub struct ReadParams {
        /// `true`: only R4's summary elements; `text`, `data`, `false` as FHIR defines them
        /// (`count` is for searches). A part is tagged `SUBSETTED` in `meta.tag`.
        #[serde(rename = "_summary")]
        #[param(required = false, pattern = "^(true|false|text|data)$")]
        summary: Option<String>,
        /// Comma-separated top-level elements to return (`name,birthDate`); `id`, `identifier`
        /// and `meta` always come. Not with `_summary`.
        #[serde(rename = "_elements")]
        #[param(required = false, example = "name,gender,birthDate")]
        elements: Option<String>,
    }

    #[derive(Deserialize, IntoParams)]
    #[into_params(parameter_in = Header)]
    #[allow(dead_code)]
    pub struct IfNoneMatchHeader {
        /// Conditional read: the version the client holds, `W/"<versionId>"`; 304 with no
        /// body when it is the current one.
        #[serde(rename = "If-None-Match")]
        #[param(required = false, example = "W/\"1\"")]
        if_none_match: String,
    }

    #[derive(Deserialize, IntoParams)]
    #[into_params(parameter_in = Header)]
    #[allow(dead_code)]
    pub struct IfMatchHeader {
        /// The current version, as the `ETag` of the last GET: `W/"<versionId>"`.
        #[serde(rename = "If-Match")]
        #[param(pattern = "^W/\"[0-9]+\"$", example = "W/\"1\"")]
        if_match: String,
    }

    use crate::domain::{ErrorCode, PdsError};
    use serde_json::{json, Value};

    fn outcome(code: ErrorCode, diagnostics: Option<&str>) -> Value {
        match diagnostics {
            Some(d) => PdsError::new(code, d),
            None => PdsError::bare(code),
        }
        .to_operation_outcome()
    }

    #[derive(Deserialize, IntoParams)]
    #[into_params(parameter_in = Query)]
    #[allow(dead_code)]
    pub struct SearchParams {
        /// Family name, case-insensitive; `*` wildcard after two characters (not in fuzzy search).
        family: Option<String>,
        /// Given name(s), in order; the first may hold several names (`given=John%20Paul&given=James`).
        given: Option<Vec<String>>,
        gender: Option<GenderParam>,
        /// `[eq|ge|le]yyyy-mm-dd`; repeat for a range (`birthdate=ge2010-01-01&birthdate=le2010-12-31`). Required.
        birthdate: Option<Vec<String>>,
        /// `[eq|ge|le]yyyy-mm-dd`.
        #[serde(rename = "death-date")]
        death_date: Option<String>,
        /// Postcode, spaces ignored; `*` wildcard after two characters.
        #[serde(rename = "address-postalcode")]
        address_postalcode: Option<String>,
        /// Deprecated alias of `address-postalcode` (not both).
        #[serde(rename = "address-postcode")]
        address_postcode: Option<String>,
        /// GP practice ODS code.
        #[serde(rename = "general-practitioner")]
        general_practitioner: Option<String>,
        /// Exact, case-insensitive.
        email: Option<String>,
        /// Exact.
        phone: Option<String>,
        /// Phonetic and edit-distance matching, history included.
        #[serde(rename = "_fuzzy-match")]
        fuzzy_match: Option<bool>,
        /// Only results scoring 1.
        #[serde(rename = "_exact-match")]
        exact_match: Option<bool>,
        /// Also match past names, addresses and telecoms.
        #[serde(rename = "_history")]
        history: Option<bool>,
        /// 1-50, default 50 (application-restricted: must be 1).
        #[serde(rename = "_max-results")]
        #[param(minimum = 1, maximum = 50)]
        max_results: Option<u32>,
    }

    #[derive(Deserialize, ToSchema)]
    #[serde(rename_all = "lowercase")]
    #[allow(dead_code)]
    pub enum GenderParam {
        Male,
        Female,
        Other,
        Unknown,
    }

    /// The errors of the back-office operations (`$merge`, `$unmerge`, `$change-identity`,
    /// `$invalidate`, `$revalidate`).
    #[derive(utoipa::IntoResponses)]
    #[allow(dead_code)]
    pub enum OperationErrors {
        #[response(status = 400, description = "MISSING_VALUE (a parameter, `reason`), INVALID_VALUE (identifiers, the body), ADDITIONAL_PROPERTIES (unknown parameters), INVALID_UPDATE (self-merge, cycle, not merged, already merged or invalidated, business rules), UNSUPPORTED_SERVICE (content type)", content_type = "application/fhir+json", example = json!(example_merge_400()))]
        BadRequest(OperationOutcome),
        #[response(status = 401, description = "ACCESS_DENIED (bad token)", content_type = "application/fhir+json", example = json!(example_401()))]
        Unauthorised(OperationOutcome),
        #[response(status = 403, description = "ACCESS_DENIED (not back office); FORBIDDEN_UPDATE (a business rule, e.g. on `result-patient`)", content_type = "application/fhir+json", example = json!(example_403_role()))]
        Forbidden(OperationOutcome),
        #[response(status = 404, description = "RESOURCE_NOT_FOUND (a named record)", content_type = "application/fhir+json", example = json!(example_404()))]
        NotFound(OperationOutcome),
        #[response(status = 409, description = "RESOURCE_VERSION_MISMATCH (a record changed meanwhile; retry); INVALID_UPDATE with issue code business-rule (the `case` named is not with the NBO)", content_type = "application/fhir+json", example = json!(example_409()))]
        Conflict(OperationOutcome),
        #[response(status = 413, description = "Request body over 1 MiB", content_type = "application/fhir+json", example = json!(example_413()))]
        TooLarge(OperationOutcome),
        #[response(status = 422, description = "X-Request-ID re-used for a different request", content_type = "application/fhir+json", example = json!(example_422()))]
        RequestIdReused(OperationOutcome),
        #[response(status = 500, description = "UNKNOWN_ERROR", content_type = "application/fhir+json", example = json!(example_500()))]
        Unknown(OperationOutcome),
        #[response(status = 503, description = "SERVICE_UNAVAILABLE (retry with the same X-Request-ID)", content_type = "application/fhir+json", example = json!(example_503()))]
        Unavailable(OperationOutcome),
    }

    /// A FHIR R4 Bundle (replaced by [`super::bundle_schema`]).
    #[derive(Deserialize, ToSchema)]
    pub struct Bundle {}

    /// What a patient search answers with: a `searchset` Bundle, or (more matches than
    /// `_max-results`) a 200 OperationOutcome TOO_MANY_MATCHES.
    #[derive(Deserialize, ToSchema)]
    #[serde(untagged)]
    #[allow(dead_code)]
    pub enum SearchResult {
        Bundle(Bundle),
        OperationOutcome(OperationOutcome),
    }

    /// A FHIR R4 Task: a data-quality case.
    #[derive(ToSchema)]
    pub struct Task {}

    /// A FHIR R4 Communication: a message to a GP practice.
    #[derive(ToSchema)]
    pub struct Communication {}

    /// A FHIR R4 CodeSystem.
    #[derive(ToSchema)]
    pub struct CodeSystem {}

    #[derive(Deserialize, IntoParams)]
    #[into_params(parameter_in = Path)]
    #[allow(dead_code)]
    pub struct ResourceIdParam {
        /// The resource's id.
        #[param(
            pattern = "^[A-Za-z0-9\\-.]{1,64}$",
            example = "5b0c7c3e-8f6a-4c49-9d1e-6f3f0c1a2b3c"
        )]
        id: String,
    }

    #[derive(Deserialize, IntoParams)]
    #[into_params(parameter_in = Query)]
    #[allow(dead_code)]
    pub struct CaseParam {
        /// Back office: the case this correction is recorded on (`Task/<id>`), written in the
        /// same transaction; the case must be `accepted` or `in-progress`.
        case: Option<String>,
    }

    #[derive(Deserialize, IntoParams)]
    #[into_params(parameter_in = Query)]
    #[allow(dead_code)]
    pub struct TaskSearchParams {
        /// Comma-separated statuses (`requested`, `received`, `on-hold`, `accepted`, `in-progress`, `completed`, `rejected`, `cancelled`).
        status: Option<String>,
        /// A `case-kind` code.
        code: Option<String>,
        /// `pcse` or `nbo`.
        owner: Option<String>,
        /// The practice that raised it (ODS code).
        requester: Option<String>,
        /// An NHS number the case is about.
        patient: Option<String>,
        /// `true`: open cases past their due date.
        overdue: Option<bool>,
        /// `due` (default) or `-due`.
        _sort: Option<String>,
        /// 1-500, default 100.
        _count: Option<u32>,
    }

    #[derive(Deserialize, IntoParams)]
    #[into_params(parameter_in = Query)]
    #[allow(dead_code)]
    pub struct MessageSearchParams {
        /// The practice's ODS code.
        recipient: Option<String>,
        /// `in-progress` (unread) or `completed` (read).
        status: Option<String>,
        /// `Task/<id>`.
        about: Option<String>,
        /// 1-500, default 100.
        _count: Option<u32>,
    }

    /// The error answers of the case work routes.
    #[derive(utoipa::IntoResponses)]
    #[allow(dead_code)]
    pub enum CaseErrors {
        #[response(status = 400, description = "MISSING_VALUE, INVALID_VALUE, ADDITIONAL_PROPERTIES (unknown property or search parameter), INVALID_UPDATE (a fixed element changed, a list entry changed or removed, a failed JSON Patch), TOO_MANY_VALUES_SUBMITTED, UNSUPPORTED_SERVICE (content type)", content_type = "application/fhir+json", example = json!(example_merge_400()))]
        BadRequest(OperationOutcome),
        #[response(status = 401, description = "ACCESS_DENIED (bad token)", content_type = "application/fhir+json", example = json!(example_401()))]
        Unauthorised(OperationOutcome),
        #[response(status = 403, description = "ACCESS_DENIED (not a practice, PCSE or the NBO; a practice acting for another)", content_type = "application/fhir+json", example = json!(example_403_role()))]
        Forbidden(OperationOutcome),
        #[response(status = 404, description = "RESOURCE_NOT_FOUND (no such case or message, or not one the caller may read)", content_type = "application/fhir+json", example = json!(example_404()))]
        NotFound(OperationOutcome),
        #[response(status = 409, description = "RESOURCE_VERSION_MISMATCH (If-Match not current); INVALID_UPDATE with issue code business-rule (a move the role may not make, naming those it may; a closed case)", content_type = "application/fhir+json", example = json!(example_409()))]
        Conflict(OperationOutcome),
        #[response(status = 412, description = "PRECONDITION_FAILED (If-Match missing or malformed)", content_type = "application/fhir+json", example = json!(example_412()))]
        Precondition(OperationOutcome),
        #[response(status = 422, description = "X-Request-ID re-used for a different request", content_type = "application/fhir+json", example = json!(example_422()))]
        RequestIdReused(OperationOutcome),
        #[response(status = 500, description = "UNKNOWN_ERROR", content_type = "application/fhir+json", example = json!(example_500()))]
        Unknown(OperationOutcome),
        #[response(status = 503, description = "SERVICE_UNAVAILABLE (retry with the same X-Request-ID)", content_type = "application/fhir+json", example = json!(example_503()))]
        Unavailable(OperationOutcome),
    }

    pub fn example_task_create() -> Value {
        json!({
            "resourceType": "Task",
            "code": {"coding": [{"system": crate::domain::case::CASE_KIND_SYSTEM, "code": "duplicate-nhs-number"}]},
            "for": {"identifier": {"system": crate::domain::case::NHS_NUMBER_SYSTEM, "value": "9991000003"}},
            "description": "The patient has two NHS numbers",
            "input": [
                {"type": {"coding": [{"system": crate::domain::case::CASE_PART_SYSTEM, "code": "other-nhs-number"}]},
                 "valueIdentifier": {"system": crate::domain::case::NHS_NUMBER_SYSTEM, "value": "9991000011"}},
                {"type": {"coding": [{"system": crate::domain::case::CASE_PART_SYSTEM, "code": "evidence"}]},
                 "valueString": "Same name, birth date and address on both"}
            ]
        })
    }

    pub fn example_task_patch() -> Value {
        json!([
            {"op": "replace", "path": "/status", "value": "on-hold"},
            {"op": "add", "path": "/note/-", "value": {"text": "Please send the patient's previous address"}}
        ])
    }

    /// A FHIR R4 Parameters resource (replaced by [`super::parameters_schema`]).
    #[derive(ToSchema)]
    pub struct Parameters {}

    /// A FHIR R4 CapabilityStatement (`GET /metadata`).
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct CapabilityStatement {
        /// `CapabilityStatement`
        #[schema(example = "CapabilityStatement")]
        #[serde(rename = "resourceType")]
        resource_type: String,
        /// `4.0.1`
        #[serde(rename = "fhirVersion")]
        fhir_version: String,
        /// `active`
        status: String,
        /// `instance`
        kind: String,
        format: Vec<String>,
        rest: Vec<serde_json::Value>,
    }

    /// A FHIR R4 OperationDefinition.
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct OperationDefinition {
        /// `OperationDefinition`
        #[serde(rename = "resourceType")]
        resource_type: String,
        id: String,
        url: String,
        name: String,
        status: String,
        kind: String,
        code: String,
        resource: Vec<String>,
        system: bool,
        r#type: bool,
        instance: bool,
        parameter: Vec<serde_json::Value>,
    }

    /// A patient's audit trail.
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct AuditTrail {
        /// The NHS number.
        patient: String,
        total: usize,
        entries: Vec<AuditEntry>,
    }

    /// One audited change.
    #[derive(ToSchema)]
    #[allow(dead_code)]
    pub struct AuditEntry {
        /// RFC 3339 UTC time.
        at: String,
        /// Token subject (`anonymous` in sandbox mode without a token).
        subject: String,
        role: String,
        request_id: String,
        correlation_id: Option<String>,
        /// `patch`, `flag`, `death-correction`, `merge` or `unmerge`.
        operation: String,
        patient: String,
        version_before: Option<u32>,
        version_after: u32,
        /// The operations applied (JSON Patch).
        #[schema(value_type = Option<Vec<Object>>)]
        patch: Option<Value>,
        reason: Option<String>,
    }

    fn nhs(n: &str) -> Value {
        json!({"system": "https://fhir.nhs.uk/Id/nhs-number", "value": n})
    }

    pub fn example_merge() -> Value {
        json!({"resourceType": "Parameters", "parameter": [
            {"name": "source-patient-identifier", "valueIdentifier": nhs("9991000194")},
            {"name": "target-patient-identifier", "valueIdentifier": nhs("9991000186")},
            {"name": "preview", "valueBoolean": false},
            {"name": "reason", "valueString": "Duplicate registration at the same practice"}]})
    }

    pub fn example_unmerge() -> Value {
        json!({"resourceType": "Parameters", "parameter": [
            {"name": "source-patient-identifier", "valueIdentifier": nhs("9991000194")},
            {"name": "reason", "valueString": "Merged in error: different people"}]})
    }

    pub fn example_merge_400() -> Value {
        outcome(
            ErrorCode::InvalidUpdate,
            Some("Invalid update with error - a record cannot be merged into itself"),
        )
    }

    pub fn example_422() -> Value {
        outcome(ErrorCode::RequestIdReused, Some("Invalid value - '60e0b220-8136-4ca5-ae46-1d97ef59d068' in header 'X-Request-ID' - it was already used for a different request; use a new X-Request-ID for a new request"))
    }

    pub fn example_create() -> Value {
        json!({"resourceType": "Patient",
            "name": [{"use": "usual", "given": ["Imogen"], "family": "Hartley", "prefix": ["Ms"]}],
            "gender": "female", "birthDate": "2026-11-20",
            "address": [{"use": "home", "period": {"start": "2026-11-20"}, "line": ["12 Rosemary Lane", "", "", "Ripon"], "postalCode": "HG4 1AA"}],
            "telecom": [{"system": "phone", "use": "mobile", "value": "07700900777"}],
            "extension": [{"url": crate::domain::create_request::REGISTERING_AUTHORITY_URL, "extension": [
                {"url": "registeringAuthorityType", "valueCodeableConcept": {"coding": [
                    {"system": "https://fhir.nhs.uk/CodeSystem/UKCore-RegisteringAuthorityType", "code": "x"}]}},
                {"url": "organisationIdentifier", "valueString": "Y12345"}]}]})
    }

    pub fn example_single_match() -> Value {
        outcome(
            ErrorCode::SingleMatch,
            Some("Single match found - NHS number 9991000097"),
        )
    }

    pub fn example_change_identity() -> Value {
        json!({"resourceType": "Parameters", "parameter": [
            {"name": "nhs-number", "valueIdentifier": nhs("9991000119")},
            {"name": "patient", "resource": example_create()},
            {"name": "reason", "valueString": "Adoption order"}]})
    }

    pub fn example_invalidate() -> Value {
        json!({"resourceType": "Parameters", "parameter": [
            {"name": "nhs-number", "valueIdentifier": nhs("9991000119")},
            {"name": "reason", "valueString": "Created in error: a duplicate registration"}]})
    }

    pub fn example_patient() -> Value {
        json!({
            "resourceType": "Patient", "id": "9991000089",
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9991000089"}],
            "meta": {"versionId": "2", "lastUpdated": "2026-11-30T14:02:11+00:00", "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "U", "display": "unrestricted"}]},
            "name": [{"id": "N1", "use": "usual", "period": {"start": "2012-02-29"}, "given": ["Mary Ann", "Josephine"], "family": "O'Sullivan"}],
            "gender": "female", "birthDate": "2012-02-29",
            "address": [{"id": "A1", "use": "home", "period": {"start": "2012-02-29"}, "line": ["41 Scotland Road", "Liverpool"], "postalCode": "L5 5AE"}],
            "generalPractitioner": [{"id": "GPY06802", "type": "Organization", "identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "Y06802", "period": {"start": "2012-03-10"}}}]
        })
    }

    pub fn example_patch_request() -> Value {
        json!({"patches": [
            {"op": "replace", "path": "/address/0/id", "value": "A1"},
            {"op": "replace", "path": "/address/0/line/0", "value": "43 Scotland Road"},
            {"op": "add", "path": "/telecom/-", "value": {"system": "phone", "use": "mobile", "value": "07700900111"}}]})
    }

    pub fn example_searchset() -> Value {
        json!({"resourceType": "Bundle", "type": "searchset", "timestamp": "2026-11-27T10:00:00+00:00", "total": 1,
            "entry": [{"fullUrl": "http://127.0.0.1:9000/personal-demographics/FHIR/R4/Patient/9991000089",
                "search": {"score": 1}, "resource": example_patient()}]})
    }

    pub fn example_too_many_matches() -> Value {
        outcome(ErrorCode::TooManyMatches, None)
    }

    pub fn example_get_400() -> Value {
        outcome(ErrorCode::InvalidResourceId, None)
    }

    pub fn example_patch_400() -> Value {
        outcome(
            ErrorCode::InvalidUpdate,
            Some("Invalid update with error - no id or url found for path with root /address/0"),
        )
    }

    pub fn example_search_400() -> Value {
        outcome(ErrorCode::InvalidSearchData, Some("Invalid search data provided - 'No searches were performed as the search criteria did not meet the minimum requirements'"))
    }

    pub fn example_403() -> Value {
        outcome(
            ErrorCode::ForbiddenUpdate,
            Some("Forbidden update with error - source not permitted to remove 'gender'"),
        )
    }

    pub fn example_401() -> Value {
        outcome(ErrorCode::AccessDenied, Some("Invalid Access Token"))
    }

    pub fn example_403_role() -> Value {
        outcome(ErrorCode::AccessForbidden, Some("This operation needs the back-office role; the caller has the healthcare-worker role"))
    }

    pub fn example_403_patient() -> Value {
        outcome(
            ErrorCode::PatientForbidden,
            Some(crate::domain::outcome::PATIENT_FORBIDDEN_DIAGNOSTICS),
        )
    }

    pub fn example_404() -> Value {
        outcome(ErrorCode::ResourceNotFound, None)
    }

    pub fn example_409() -> Value {
        outcome(ErrorCode::ResourceVersionMismatch, None)
    }

    pub fn example_412() -> Value {
        outcome(ErrorCode::PreconditionFailed, Some("Invalid request with error - If-Match header must be supplied to update this resource"))
    }

    pub fn example_413() -> Value {
        outcome(
            ErrorCode::PayloadTooLarge,
            Some("Invalid value - the request body is larger than 1048576 bytes"),
        )
    }

    pub fn example_500() -> Value {
        outcome(
            ErrorCode::UnknownError,
            Some("An unknown error occurred processing this request."),
        )
    }

    pub fn example_503() -> Value {
        outcome(ErrorCode::ServiceUnavailable, Some("The service cannot reach its storage right now. Using the same 'X-Request-ID' header, retry your request after the time specified by the 'Retry-After' response header."))
    }

    pub fn example_export_400() -> Value {
        outcome(ErrorCode::MissingValue, Some("Invalid request with error - an export runs asynchronously: send the header 'Prefer: respond-async'"))
    }

    pub fn example_export_404() -> Value {
        outcome(ErrorCode::ResourceNotFound, Some("Resource not found - no such export job (jobs do not survive a restart, and expire)"))
    }

    /// The Bulk Data completion manifest of an export.
    #[derive(serde::Serialize, ToSchema)]
    #[allow(dead_code)]
    #[schema(example = json!({"transactionTime": "2026-12-04T02:00:00Z", "request": "http://localhost:9000/personal-demographics/FHIR/R4/Patient/$export", "requiresAccessToken": true, "output": [{"type": "Patient", "url": "http://localhost:9000/personal-demographics/FHIR/R4/_export/0b6f3e8a-3c1d-4b8e-9a4f-2f5d6c7e8a9b/Patient.ndjson", "count": 10}], "error": []}))]
    pub struct ExportManifest {
        /// When the export began (RFC 3339): it holds the records as of about then.
        #[serde(rename = "transactionTime")]
        transaction_time: String,
        /// The kick-off request's URL.
        request: String,
        /// Always true: the file needs the back office's bearer token.
        #[serde(rename = "requiresAccessToken")]
        requires_access_token: bool,
        output: Vec<ExportOutput>,
        /// Always empty: a record is either exported or the job fails.
        error: Vec<ExportOutput>,
    }

    /// One output file.
    #[derive(serde::Serialize, ToSchema)]
    #[allow(dead_code)]
    pub struct ExportOutput {
        /// `Patient`.
        #[serde(rename = "type")]
        kind: String,
        /// Where to download it (with the bearer token).
        url: String,
        /// How many records it holds.
        count: u64,
    }

    pub fn example_status_503() -> Value {
        outcome(
            ErrorCode::ServiceUnavailable,
            Some(
                "Not ready: storage unavailable: I/O error: No space left on device (os error 28)",
            ),
        )
    }

    /// Readiness answer: the store can be read and written.
    #[derive(serde::Serialize, ToSchema)]
    pub struct Status {
        /// `pass`: ready for requests.
        #[schema(example = "pass")]
        pub status: String,
        /// The pds-facade version.
        pub version: String,
        pub checks: StatusChecks,
    }

    /// What the readiness check looked at.
    #[derive(serde::Serialize, ToSchema)]
    pub struct StatusChecks {
        /// The store: a read and a small durable write.
        pub store: StatusCheck,
    }

    /// One check's result.
    #[derive(serde::Serialize, ToSchema)]
    pub struct StatusCheck {
        #[schema(example = "pass")]
        pub status: String,
        /// How long the check took, in milliseconds.
        #[serde(rename = "responseTimeMs")]
        pub response_time_ms: u64,
    }

    /// Liveness answer.
    #[derive(serde::Serialize, ToSchema)]
    pub struct Ping {
        /// Always `pass` when the service answers.
        #[schema(example = "pass")]
        pub status: String,
        /// The pds-facade version.
        pub version: String,
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "pds-facade",
        description = "A self-hostable service that serves FHIR R4 Patient resources the way NHS England's Personal Demographics Service (PDS) FHIR API does: same URLs, headers, JSON Patch bodies and OperationOutcome error codes. Routes are served at `/` and under `/personal-demographics/FHIR/R4`.",
        license(name = "MIT", identifier = "MIT"),
    ),
    servers((url = "/", description = "Root"), (url = "/personal-demographics/FHIR/R4", description = "PDS base path")),
    paths(patient::get_patient, patient::patch_patient, patient::search_patients, patient::related_people,
          super::history::history, super::history::version,
          super::backoffice::merge, super::backoffice::unmerge, super::backoffice::audit, super::backoffice::audit_events,
          super::identity::create, super::identity::change_identity, super::identity::invalidate, super::identity::revalidate,
          super::case::create_task, super::case::read_task, super::case::task_history, super::case::search_tasks, super::case::patch_task,
          super::case::search_communications, super::case::read_communication, super::case::patch_communication, super::case::case_kinds,
          super::export::kick_off, super::export::status, super::export::delete, super::export::file,
          super::ping, super::status, super::capability::metadata, super::capability::read_operation_definition),
    components(schemas(docs::Task, docs::Communication, docs::CodeSystem, docs::Patient, docs::PatientCreateRequest, docs::OperationOutcome, docs::PatchRequest, docs::Bundle, docs::SearchResult, docs::Parameters, docs::AuditTrail, docs::GenderParam, docs::Ping, docs::Status, docs::StatusChecks, docs::StatusCheck, docs::ExportManifest, docs::ExportOutput, docs::CapabilityStatement, docs::OperationDefinition)),
    tags((name = "Patient", description = "PDS Patient read and update"),
         (name = "History", description = "Every version of a record"),
         (name = "Back office", description = "National Back Office corrections and audit"),
         (name = "Identity", description = "NHS number allocation, changes of identity, invalidation"),
         (name = "Case work", description = "Data-quality cases from GP practices through PCSE to the National Back Office, and the messages practices are sent"),
         (name = "Bulk export", description = "FHIR Bulk Data export of the current records (back office)"),
         (name = "Service", description = "Operational endpoints")),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

/// The `bearer` security scheme: a JWT whose `scope` gives the role. In sandbox mode (no key
/// configured) requests may omit it and act as a healthcare worker.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT (HS256, RS256 or ES256) whose `scope` claim gives the role: `urn:nhsd:apim:app:level3:personal-demographics-service` (application-restricted), `urn:nhsd:apim:user-nhs-cis2:aal3:personal-demographics-service` (healthcare worker; also aal2 and user-nhs-id:aal3), `urn:pds-facade:back-office` (National Back Office), `urn:pds-facade:practice` with an `ods` claim (GP practice, case work), `urn:pds-facade:pcse` (Primary Care Support England, case work), `urn:nhsd:apim:user-nhs-login:P9:personal-demographics-service` with NHS login's `nhs_number` and `vot` claims (patient access: the patient's own record only, read and PATCH within the patient-access rules; a P5 or P0 scope, or a vot other than P9.Cp.Cd, P9.Cp.Ck or P9.Cm, may do nothing — 403; no valid `nhs_number` — 401). `pds-facade token --role ROLE` mints one (`--role patient --nhs-number N [--vot P9.Cp.Cd]`).",
                    ))
                    .build(),
            ),
        );
    }
}

/// [`openapi_json`], built once: the capability statement is derived from it.
pub fn document() -> &'static Value {
    static DOCUMENT: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    DOCUMENT.get_or_init(openapi_json)
}

/// The OpenAPI document as served at `/openapi.json` and committed at `openapi/openapi.json`.
pub fn openapi_json() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("OpenAPI serialises");
    doc["info"]["version"] = Value::String(env!("CARGO_PKG_VERSION").into());
    // every operation that authenticates may be rate limited
    let too_many = json!({"description": "TOO_MANY_REQUESTS (the client's rate limit; retry after `Retry-After` seconds)",
        "headers": {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "string"}}},
        "content": {"application/fhir+json": {"schema": {"$ref": "#/components/schemas/OperationOutcome"},
            "example": PdsError::new(ErrorCode::TooManyRequests, "Your application has exceeded its quota of 50 requests every 1 second and is being rate limited. Retry after the time in the Retry-After header.").to_operation_outcome()}}});
    // and any request may be sent too slowly or with too many headers (the transport limits)
    let transport = |code: ErrorCode, description: &str, diagnostics: &str| {
        json!({"description": description,
            "content": {"application/fhir+json": {"schema": {"$ref": "#/components/schemas/OperationOutcome"},
                "example": PdsError::new(code, diagnostics).to_operation_outcome()}}})
    };
    let slow = transport(
        ErrorCode::RequestTimeout,
        "The request body did not arrive within the client timeout (`--client-timeout`)",
        "The request body was not received within 10 seconds",
    );
    let headers = transport(
        ErrorCode::HeadersTooLarge,
        "More than 100 request headers, or more than 16 KiB of them",
        "Invalid value - more than 100 request headers",
    );
    // FHIR routes answer only in JSON (`Accept`, `_format`)
    let not_acceptable = transport(
        ErrorCode::NotAcceptable,
        "UNSUPPORTED_SERVICE: `Accept` or `_format` asks for something other than JSON",
        "Not acceptable - this service answers only in JSON (application/fhir+json or application/json); the Accept header asked for 'application/fhir+xml'",
    );
    // every response echoes the request's X-Request-ID and X-Correlation-ID (when sent)
    doc["components"]["headers"] = json!({
        "X-Request-ID": {"description": "The request's `X-Request-ID`, echoed (when it was sent)", "schema": {"type": "string"}},
        "X-Correlation-ID": {"description": "The request's `X-Correlation-ID`, echoed (when it was sent)", "schema": {"type": "string"}},
    });
    let echoed = json!({
        "X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"},
        "X-Correlation-ID": {"$ref": "#/components/headers/X-Correlation-ID"},
    });
    let unavailable = transport(
        ErrorCode::ServiceUnavailable,
        "SERVICE_UNAVAILABLE (not answered in time; retry after `Retry-After` seconds)",
        "The request did not complete in time. Using the same 'X-Request-ID' header, retry your request after the time specified by the 'Retry-After' response header.",
    );
    // a change may set its own wait (PDS's X-Sync-Wait)
    let sync_wait = json!({"name": "X-Sync-Wait", "in": "header", "required": false,
        "description": "Seconds (0.25-29) to wait for the change before answering 503 SERVICE_UNAVAILABLE with `Retry-After`; absent or out of range: the server's `--request-timeout` (default 10, as PDS). A change cut short may still complete: retry with the same X-Request-ID to get its answer.",
        "schema": {"type": "number", "minimum": 0.25, "maximum": 29}, "example": 10});
    for (path, item) in doc["paths"].as_object_mut().expect("paths") {
        for (method, op) in item.as_object_mut().expect("path item") {
            if matches!(method.as_str(), "post" | "patch") {
                if let Some(params) = op
                    .as_object_mut()
                    .expect("operation")
                    .entry("parameters")
                    .or_insert_with(|| json!([]))
                    .as_array_mut()
                {
                    params.push(sync_wait.clone());
                }
            }
            if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
                if path != "/_ping" {
                    responses.insert("429".into(), too_many.clone());
                }
                // the export's NDJSON file is outside content negotiation (it is not JSON)
                if path != "/_ping" && !path.ends_with(".ndjson") {
                    responses.insert("406".into(), not_acceptable.clone());
                }
                responses.insert("408".into(), slow.clone());
                // any request still unanswered after its deadline
                responses
                    .entry("503")
                    .or_insert_with(|| unavailable.clone());
                responses.insert("431".into(), headers.clone());
                for response in responses.values_mut() {
                    let declared = response
                        .as_object_mut()
                        .expect("response")
                        .entry("headers")
                        .or_insert_with(|| json!({}));
                    for (name, header) in echoed.as_object().expect("headers") {
                        declared[name] = header.clone();
                    }
                }
            }
        }
    }
    let schemas = doc["components"]["schemas"]
        .as_object_mut()
        .expect("components.schemas");
    schemas.insert("PatientCreateRequest".into(), create_request_schema());
    schemas.insert("Bundle".into(), bundle_schema());
    schemas.insert("Parameters".into(), parameters_schema());
    for (name, schema) in resource_schemas() {
        schemas.insert(name.into(), schema);
    }
    for (name, text) in [
        ("Patient", PATIENT_SCHEMA),
        ("OperationOutcome", OPERATION_OUTCOME_SCHEMA),
        ("PatchRequest", PATCH_REQUEST_SCHEMA),
    ] {
        let schema: Value = serde_json::from_str(text).expect("embedded schema");
        hoist(name, schema, schemas);
    }
    for schema in schemas.values_mut() {
        for_generators(schema);
    }
    doc
}

/// A FHIR resource of any type: `resourceType` and whatever else it holds (a Bundle entry's
/// `resource`, a Parameters `resource`).
fn any_resource() -> Value {
    json!({"type": "object", "required": ["resourceType"],
        "properties": {"resourceType": {"type": "string"}}, "additionalProperties": true})
}

/// The Bundles the service answers with: a `searchset` (search results) or a `history`.
pub fn bundle_schema() -> Value {
    json!({"type": "object",
        "description": "A FHIR R4 Bundle: a `searchset` (search results; for patients sorted by `search.score`, with `timestamp`) or a `history` (every version, newest first, with each version's `request` and `response`).",
        "required": ["resourceType", "type", "total"],
        "properties": {
            "resourceType": {"type": "string", "const": "Bundle"},
            "type": {"type": "string", "enum": ["searchset", "history"]},
            "timestamp": {"type": "string", "description": "When the search ran (RFC 3339)"},
            "total": {"type": "integer", "minimum": 0},
            "link": {"type": "array", "items": {"type": "object", "required": ["relation", "url"],
                "properties": {"relation": {"type": "string"}, "url": {"type": "string"}}}},
            "entry": {"type": "array", "items": {"type": "object", "required": ["resource"],
                "properties": {
                    "fullUrl": {"type": "string"},
                    "resource": any_resource(),
                    "search": {"type": "object", "properties": {
                        "score": {"type": "number", "minimum": 0, "maximum": 1},
                        "mode": {"type": "string", "enum": ["match"]}}},
                    "request": {"type": "object", "required": ["method", "url"], "properties": {
                        "method": {"type": "string", "enum": ["POST", "PATCH"]},
                        "url": {"type": "string"}}},
                    "response": {"type": "object", "required": ["status"], "properties": {
                        "status": {"type": "string"},
                        "etag": {"type": "string"},
                        "lastModified": {"type": "string"}}},
                }}},
        },
        "example": docs::example_searchset(),
    })
}

/// The Parameters of the back-office and identity operations, in and out.
pub fn parameters_schema() -> Value {
    json!({"type": "object",
        "description": "A FHIR R4 Parameters resource: named parameters, each with one `value[x]` or a `resource`. Requests name theirs in each operation's description; answers carry `outcome` (an OperationOutcome) and `result` (the resulting Patient).",
        "required": ["resourceType", "parameter"],
        "properties": {
            "resourceType": {"type": "string", "const": "Parameters"},
            "parameter": {"type": "array", "items": {"type": "object", "required": ["name"],
                "properties": {
                    "name": {"type": "string"},
                    "valueString": {"type": "string"},
                    "valueBoolean": {"type": "boolean"},
                    "valueCode": {"type": "string"},
                    "valueIdentifier": {"type": "object", "properties": {
                        "system": {"type": "string"}, "value": {"type": "string"}}},
                    "valueReference": {"type": "object", "properties": {
                        "reference": {"type": "string"}}},
                    "resource": any_resource(),
                },
                "additionalProperties": true}},
        },
        "example": docs::example_merge(),
    })
}

/// Task, Communication and CodeSystem: their `resourceType`, and whatever else they hold.
fn resource_schemas() -> Vec<(&'static str, Value)> {
    [
        ("Task", "A FHIR R4 Task: a data-quality case."),
        ("Communication", "A FHIR R4 Communication: a message to a GP practice."),
        ("CodeSystem", "A FHIR R4 CodeSystem."),
    ]
    .into_iter()
    .map(|(name, description)| {
        (
            name,
            json!({"type": "object", "description": description, "required": ["resourceType"],
                "properties": {"resourceType": {"type": "string", "const": name}, "id": {"type": "string"}},
                "additionalProperties": true}),
        )
    })
    .collect()
}

/// What client generators need spelled out that a validator does not: an enum or const of
/// strings says `"type": "string"`, and an object with no declared properties allows any
/// (`additionalProperties: true`, not the "no properties" some generators read it as).
fn for_generators(v: &mut Value) {
    match v {
        Value::Object(m) => {
            let strings = |v: &Value| match v {
                Value::String(_) => true,
                Value::Array(a) => a.iter().all(Value::is_string),
                _ => false,
            };
            let typed = m.contains_key("type");
            if !typed && (m.get("enum").is_some_and(strings) || m.get("const").is_some_and(strings))
            {
                m.insert("type".into(), "string".into());
            }
            if m.get("type").and_then(Value::as_str) == Some("object")
                && !["properties", "additionalProperties", "patternProperties"]
                    .iter()
                    .any(|k| m.contains_key(*k))
            {
                m.insert("additionalProperties".into(), Value::Bool(true));
            }
            for (k, c) in m.iter_mut() {
                if k != "example" && k != "examples" {
                    for_generators(c);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(for_generators),
        _ => {}
    }
}

/// PDS's create request: the stored Patient's parts (by reference), the fields PDS requires,
/// and the extensions of [`crate::domain::create_request::EXTENSIONS`] (the registering
/// authority required).
pub fn create_request_schema() -> Value {
    use crate::domain::create_request::EXTENSIONS;
    let part = |def: &str| json!({"$ref": format!("#/components/schemas/Patient.{def}")});
    let urls: Vec<&str> = EXTENSIONS.iter().map(|(u, _)| *u).collect();
    json!({"type": "object",
        "description": "A new patient in PDS's create shape: a usual name, a home address, gender, birth date and the UKCore-RegisteringAuthority extension; no id, identifier or meta (the service allocates the NHS number). Communication and contact preference extensions are stored; the registering authority and PDS's not-persisted extensions (birth sex, ethnic category, place of birth, …) are checked and not stored.",
        "required": ["name", "address", "gender", "birthDate", "extension"],
        "properties": {
            "resourceType": {"const": "Patient"},
            "name": {"type": "array", "minItems": 1, "items": part("name")},
            "gender": {"enum": ["male", "female", "unknown"]},
            "birthDate": part("date"),
            "address": {"type": "array", "minItems": 1, "items": part("address")},
            "telecom": {"type": "array", "items": part("telecom")},
            "extension": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["url"],
                "properties": {"url": {"enum": urls}}}},
        },
        "example": docs::example_create(),
    })
}

/// Puts a JSON Schema into `components.schemas` as `name`, its `$defs` beside it as
/// `<name>.<def>`, with `#/$defs/x` references rewritten to match.
fn hoist(name: &str, mut schema: Value, components: &mut Map<String, Value>) {
    let obj = schema.as_object_mut().expect("schema object");
    obj.remove("$schema");
    obj.remove("$id");
    let defs = obj.remove("$defs");
    rewrite_refs(&mut schema, name);
    components.insert(name.to_string(), schema);
    if let Some(Value::Object(defs)) = defs {
        for (def, mut body) in defs {
            rewrite_refs(&mut body, name);
            components.insert(format!("{name}.{def}"), body);
        }
    }
}

fn rewrite_refs(v: &mut Value, name: &str) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get_mut("$ref") {
                if let Some(def) = r.strip_prefix("#/$defs/") {
                    *r = format!("#/components/schemas/{name}.{def}");
                }
            }
            m.values_mut().for_each(|c| rewrite_refs(c, name));
        }
        Value::Array(a) => a.iter_mut().for_each(|c| rewrite_refs(c, name)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    /// Generators name a function after each operation id: two alike and one is lost.
    #[test]
    fn operation_ids_are_unique() {
        let doc = super::openapi_json();
        let mut seen = std::collections::BTreeSet::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{method}: no id"));
                assert!(seen.insert(id.to_string()), "operation id {id} twice");
            }
        }
    }
}
