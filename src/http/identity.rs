//! Identity management: allocating NHS numbers (`POST /Patient`), changes of identity, and
//! invalidating / revalidating records created in error.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use super::error::ApiError;
use super::headers::RequestId;
use super::openapi::docs;
use super::patient::request;
use super::render::{answer, operation_body};
use super::AppState;
use crate::app::identity::Validity;
use crate::app::{require_back_office, require_change_permission};
use crate::auth::Caller;

#[utoipa::path(
    post,
    path = "/Patient",
    tag = "Identity",
    security((), ("bearer" = [])),
    summary = "Create a patient and allocate an NHS number",
    description = "A Patient in PDS's create shape (usual name, home address, gender, birth date and the UKCore-RegisteringAuthority extension, which is checked and not stored; optional telecom etc.; no id, identifier or meta). Problems are reported in PDS's order: missing name, address, gender, birthDate, an address without a period (MISSING_VALUE); bad values (INVALID_VALUE, TOO_MANY_VALUES_SUBMITTED, ADDITIONAL_PROPERTIES for an unknown property); PDS's create rules (INVALID_CREATE: address lines 1 and 4 or 2 and 4, no end date on the usual name, valid e-mail); then the extension. First a duplicate check — a fuzzy trace on family, given name, birth date and gender; a record scoring at least 0.9 is a likely match: one → 200 OperationOutcome SINGLE_MATCH naming its NHS number, several → 200 MULTIPLE_MATCHES. Otherwise 201 with the new Patient (version 1, ETag, Location) under an NHS number from the configured allocation range, allocated in the same transaction as the record and never reused. A retry with the same X-Request-ID returns the first answer and allocates nothing.",
    params(docs::RequestHeaders, docs::CaseParam),
    request_body(content = docs::PatientCreateRequest, content_type = "application/fhir+json", example = json!(docs::example_create())),
    responses(
        (status = 201, description = "Created", body = docs::Patient, content_type = "application/fhir+json",
            headers(("ETag" = String, description = "`W/\"1\"`"), ("Location" = String, description = "The new record's URL"))),
        (status = 200, description = "SINGLE_MATCH or MULTIPLE_MATCHES: the patient probably has a record already", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_single_match())),
        (status = 400, description = "MISSING_VALUE, INVALID_VALUE, ADDITIONAL_PROPERTIES, INVALID_CREATE, INVALID_UPDATE, TOO_FEW/TOO_MANY_VALUES_SUBMITTED, UNSUPPORTED_SERVICE (content type)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_search_400())),
        (status = 401, description = "ACCESS_DENIED (bad token)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_401())),
        (status = 403, description = "INVALID_METHOD (application-restricted); FORBIDDEN_UPDATE (e.g. a GP set by other than the back office)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_403())),
        (status = 404, description = "RESOURCE_NOT_FOUND (the `case` named does not exist)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_404())),
        (status = 409, description = "INVALID_UPDATE (business-rule): the `case` named is not with the NBO (accepted or in progress)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_409())),
        (status = 413, description = "Request body over 1 MiB", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_413())),
        (status = 422, description = "X-Request-ID re-used for a different request", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_422())),
        (status = 500, description = "UNKNOWN_ERROR", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_500())),
        (status = 503, description = "SERVICE_UNAVAILABLE (also: allocation range exhausted)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_503())),
    )
)]
pub async fn create(
    State(app): State<AppState>,
    caller: Caller,
    request_id: RequestId,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    require_change_permission(&caller)?;
    let mut case = None;
    for (k, v) in form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "case" if case.is_none() => case = Some(v.into_owned()),
            other => {
                return Err(ApiError(crate::domain::PdsError::new(
                    crate::domain::ErrorCode::AdditionalProperties,
                    format!(
                        "Invalid parameter - '{}'; POST /Patient takes only case",
                        crate::domain::outcome::clip(other)
                    ),
                )))
            }
        }
    }
    let bytes = operation_body(&headers, body)?;
    let req = request(&caller, &request_id, &headers);
    Ok(answer(app.app.create(&req, &bytes, case.as_deref()).await?))
}

#[utoipa::path(
    post,
    path = "/Patient/$change-identity",
    tag = "Identity",
    security(("bearer" = [])),
    summary = "Move a patient to a new identity (back office)",
    description = "For adoption or gender re-assignment. Parameters: `nhs-number` (the current record), `patient` (the new identity, in the create shape), `reason`. In one transaction: a new record under a newly allocated NHS number, the old record invalidated, and a sealed link old → new that only the back office sees (audit). To every other role the two records are unrelated: the old number is 404 INVALIDATED_RESOURCE and nothing of the new record refers to it.",
    params(docs::RequestHeaders),
    request_body(content = docs::Parameters, content_type = "application/fhir+json", example = json!(docs::example_change_identity())),
    responses(
        (status = 200, description = "Parameters: `outcome` and `result` (the new record)", body = docs::Parameters, content_type = "application/fhir+json"),
        docs::OperationErrors,
    )
)]
pub async fn change_identity(
    State(app): State<AppState>,
    caller: Caller,
    request_id: RequestId,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    require_back_office(&caller)?;
    let bytes = operation_body(&headers, body)?;
    let req = request(&caller, &request_id, &headers);
    Ok(answer(app.app.change_identity(&req, &bytes).await?))
}

/// `$invalidate` and `$revalidate`.
async fn set_validity(
    app: AppState,
    caller: Caller,
    request_id: RequestId,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    validity: Validity,
) -> Result<Response, ApiError> {
    require_back_office(&caller)?;
    let bytes = operation_body(&headers, body)?;
    let req = request(&caller, &request_id, &headers);
    Ok(answer(app.app.set_validity(&req, validity, &bytes).await?))
}

#[utoipa::path(
    post,
    path = "/Patient/$invalidate",
    tag = "Identity",
    security(("bearer" = [])),
    summary = "Invalidate a record created in error (back office)",
    description = "Parameters: `nhs-number`, `reason`. The record is kept (every version) but is 404 INVALIDATED_RESOURCE to every role but the back office, never in search results, and PATCH gives 404 INVALIDATED_RESOURCE. Its NHS number is never allocated again.",
    params(docs::RequestHeaders),
    request_body(content = docs::Parameters, content_type = "application/fhir+json", example = json!(docs::example_invalidate())),
    responses(
        (status = 200, description = "Parameters: `outcome` and `result`", body = docs::Parameters, content_type = "application/fhir+json"),
        docs::OperationErrors,
    )
)]
pub async fn invalidate(
    State(app): State<AppState>,
    caller: Caller,
    request_id: RequestId,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    set_validity(app, caller, request_id, headers, body, Validity::Invalidate).await
}

#[utoipa::path(
    post,
    path = "/Patient/$revalidate",
    tag = "Identity",
    security(("bearer" = [])),
    summary = "Make an invalidated record valid again (back office)",
    description = "Parameters: `nhs-number`, `reason`. A new version with the confidentiality the record had before it was invalidated.",
    params(docs::RequestHeaders),
    request_body(content = docs::Parameters, content_type = "application/fhir+json", example = json!(docs::example_invalidate())),
    responses(
        (status = 200, description = "Parameters: `outcome` and `result`", body = docs::Parameters, content_type = "application/fhir+json"),
        docs::OperationErrors,
    )
)]
pub async fn revalidate(
    State(app): State<AppState>,
    caller: Caller,
    request_id: RequestId,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    set_validity(app, caller, request_id, headers, body, Validity::Revalidate).await
}
