//! Version history: every version of a record is kept and can be read back.

use axum::extract::{Path, State};
use axum::response::Response;

use super::error::ApiError;
use super::headers::RequestId;
use super::openapi::docs;
use super::patient::parse_id;
use super::render::answer;
use super::AppState;
use crate::auth::Caller;
use crate::domain::{PdsError, Version};

#[utoipa::path(
    get,
    path = "/Patient/{id}/_history",
    tag = "History",
    security((), ("bearer" = [])),
    summary = "Every version of a patient, newest first",
    description = "A FHIR `history` Bundle. Roles other than the back office see each version without merge links, and in the restricted view when the version was restricted or, for a record that was ever restricted, when it is a past version (what a record held while restricted stays hidden). For a number merged into another, other roles get the survivor's history (as GET returns the survivor); the back office gets the number's own.",
    params(docs::NhsNumberParam, docs::RequestHeaders),
    responses(
        (status = 200, description = "History Bundle", body = docs::Bundle, content_type = "application/fhir+json"),
        (status = 400, description = "INVALID_RESOURCE_ID; MISSING_VALUE / INVALID_VALUE (X-Request-ID); ADDITIONAL_PROPERTIES (any query parameter)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_get_400())),
        (status = 401, description = "ACCESS_DENIED (bad token)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_401())),
        (status = 403, description = "ACCESS_DENIED (no PDS role; patient access, which has no history)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_403_role())),
        (status = 404, description = "RESOURCE_NOT_FOUND", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_404())),
        (status = 500, description = "UNKNOWN_ERROR", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_500())),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_503())),
    )
)]
pub async fn history(
    State(app): State<AppState>,
    caller: Caller,
    _request_id: RequestId,
    Path(id): Path<String>,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    super::query::only(&uri, &[])?;
    Ok(answer(app.app.history(&caller, id).await?))
}

#[utoipa::path(
    get,
    path = "/Patient/{id}/_history/{vid}",
    tag = "History",
    security(("bearer" = [])),
    summary = "One version of a patient (back office)",
    params(docs::NhsNumberParam, ("vid" = String, Path, description = "The version (`meta.versionId`)", pattern = "^[1-9][0-9]*$"), docs::RequestHeaders),
    responses(
        (status = 200, description = "That version", body = docs::Patient, content_type = "application/fhir+json",
            headers(("ETag" = String, description = "`W/\"<vid>\"`"),
                ("Last-Modified" = String, description = "When the version was written (`meta.lastUpdated`)")), example = json!(docs::example_patient())),
        (status = 400, description = "INVALID_RESOURCE_ID; INVALID_VALUE (vid); MISSING_VALUE / INVALID_VALUE (X-Request-ID); ADDITIONAL_PROPERTIES (any query parameter)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_get_400())),
        (status = 401, description = "ACCESS_DENIED (bad token)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_401())),
        (status = 403, description = "ACCESS_DENIED (not back office)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_403_role())),
        (status = 404, description = "RESOURCE_NOT_FOUND (no such record or version)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_404())),
        (status = 500, description = "UNKNOWN_ERROR", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_500())),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_503())),
    )
)]
pub async fn version(
    State(app): State<AppState>,
    caller: Caller,
    _request_id: RequestId,
    Path((id, vid)): Path<(String, String)>,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    crate::app::require_back_office(&caller)?;
    let id = parse_id(&id)?;
    super::query::only(&uri, &[])?;
    let vid = Version::parse(&vid).ok_or_else(|| ApiError(PdsError::invalid_value(&vid, "vid")))?;
    Ok(super::render::record(
        app.app.read_version(&caller, id, vid).await?,
    ))
}
