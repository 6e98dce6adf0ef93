//! National Back Office operations beyond PDS's API: merges, unmerges and the audit trail.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::error::ApiError;
use super::headers::RequestId;
use super::openapi::docs;
use super::patient::{parse_id, request};
use super::render::{answer, operation_body};
use super::AppState;
use crate::app::require_back_office;
use crate::auth::Caller;
use crate::domain::PdsError;

#[utoipa::path(
    post,
    path = "/Patient/$merge",
    tag = "Back office",
    security(("bearer" = [])),
    summary = "Merge a duplicate record into another (back office)",
    description = "FHIR R5 `$merge` style. The source becomes superseded by the target (`active: false`, `link` replaced-by; the target gets a `replaces` link), both as new versions in one transaction with audit entries. Afterwards GET of the source returns the target, and PATCH of the source is 403. A superseded target is followed to its survivor; merging a record into itself or creating a cycle is refused. `preview` answers without changing anything. `result-patient` replaces the target's content (under the usual rules). `reason` is required.",
    params(docs::RequestHeaders),
    request_body(content = docs::Parameters, content_type = "application/fhir+json", example = json!(docs::example_merge())),
    responses(
        (status = 200, description = "Parameters: `outcome` and `result` (the target after the merge)", body = docs::Parameters, content_type = "application/fhir+json"),
        docs::OperationErrors,
    )
)]
pub async fn merge(
    State(app): State<AppState>,
    caller: Caller,
    request_id: RequestId,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    require_back_office(&caller)?;
    let bytes = operation_body(&headers, body)?;
    let req = request(&caller, &request_id, &headers);
    Ok(answer(app.app.merge(&req, &bytes).await?))
}

#[utoipa::path(
    post,
    path = "/Patient/$unmerge",
    tag = "Back office",
    security(("bearer" = [])),
    summary = "Undo a merge (back office)",
    description = "The superseded source becomes live again with its own data; the links between it and its target are removed; each side is a new version. Works however the target was edited after the merge. Parameters: `source-patient-identifier`, `reason`, optional `preview`.",
    params(docs::RequestHeaders),
    request_body(content = docs::Parameters, content_type = "application/fhir+json", example = json!(docs::example_unmerge())),
    responses(
        (status = 200, description = "Parameters: `outcome` and `result` (the source, live again)", body = docs::Parameters, content_type = "application/fhir+json"),
        docs::OperationErrors,
    )
)]
pub async fn unmerge(
    State(app): State<AppState>,
    caller: Caller,
    request_id: RequestId,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    require_back_office(&caller)?;
    let bytes = operation_body(&headers, body)?;
    let req = request(&caller, &request_id, &headers);
    Ok(answer(app.app.unmerge(&req, &bytes).await?))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// The patient's NHS number.
    #[param(pattern = "^[0-9]{10}$", example = "9991000003")]
    patient: Option<String>,
}

#[utoipa::path(
    get,
    path = "/_audit",
    tag = "Back office",
    security(("bearer" = [])),
    summary = "The audit trail of a patient (back office)",
    description = "Every change to the patient, oldest first: time, subject and role from the token, X-Request-ID, X-Correlation-ID, operation (`patch`, `flag`, `death-correction`, `merge`, `unmerge`), the operations applied, versions before and after, and the reason where one is required.",
    params(AuditQuery, docs::RequestHeaders),
    responses(
        (status = 200, description = "The audit entries", body = docs::AuditTrail, content_type = "application/json"),
        (status = 400, description = "MISSING_VALUE / INVALID_VALUE (patient, X-Request-ID)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_get_400())),
        (status = 401, description = "ACCESS_DENIED (bad token)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_401())),
        (status = 403, description = "ACCESS_DENIED (not back office)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_403_role())),
        (status = 500, description = "UNKNOWN_ERROR", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_500())),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_503())),
    )
)]
pub async fn audit(
    State(app): State<AppState>,
    caller: Caller,
    _request_id: RequestId,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    require_back_office(&caller)?;
    let patient = query
        .ok()
        .and_then(|q| q.0.patient)
        .ok_or_else(|| ApiError(PdsError::missing_value("patient")))?;
    let id =
        parse_id(&patient).map_err(|_| ApiError(PdsError::invalid_value(&patient, "patient")))?;
    let entries = app.app.audit_trail(&caller, id).await?;
    Ok(
        axum::Json(json!({"patient": id.to_string(), "total": entries.len(), "entries": entries}))
            .into_response(),
    )
}

#[utoipa::path(
    get,
    path = "/AuditEvent",
    tag = "Back office",
    security(("bearer" = [])),
    summary = "The audit trail of a patient as FHIR AuditEvents (back office)",
    description = "A `searchset` Bundle of R4 AuditEvents, oldest first, one per change: `agent` the token's subject and role, `entity` the patient version the change produced (and the other record of a merge or change of identity), the operation, X-Request-ID, X-Correlation-ID, version before and operations applied as the entity's `detail`, the reason as `purposeOfEvent`. The same trail as `/_audit`.",
    params(
        ("entity" = Option<String>, Query, description = "The patient: `Patient/<NHS number>` (or its full URL)", example = "Patient/9991000003"),
        ("patient" = Option<String>, Query, description = "The patient's NHS number (instead of `entity`)"),
        docs::RequestHeaders),
    responses(
        (status = 200, description = "A searchset Bundle of AuditEvent (no `entry` when the patient has none)", body = docs::Bundle, content_type = "application/fhir+json"),
        (status = 400, description = "MISSING_VALUE (no patient), INVALID_VALUE (not an NHS number; two patients), ADDITIONAL_PROPERTIES (another parameter); MISSING_VALUE / INVALID_VALUE (X-Request-ID)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_get_400())),
        (status = 401, description = "ACCESS_DENIED (bad token)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_401())),
        (status = 403, description = "ACCESS_DENIED (not back office)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_403_role())),
        (status = 500, description = "UNKNOWN_ERROR", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_500())),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_503())),
    )
)]
pub async fn audit_events(
    State(app): State<AppState>,
    caller: Caller,
    _request_id: RequestId,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    require_back_office(&caller)?;
    let id = crate::app::audit_event::patient_of(&super::query::pairs(&uri))?;
    Ok(answer(app.app.audit_events(&caller, id).await?))
}
