//! `/Patient` handlers: thin — parse the request, call one use case ([`crate::app`]), render.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::error::ApiError;
use super::headers::{
    if_match, is_patch_content_type, unsupported_content_type, RequestId, PATCH_CONTENT_TYPES,
    X_CORRELATION_ID,
};
use super::openapi::docs;
use super::render::answer;
use super::AppState;
use crate::app::{require_patch_permission, Request};
use crate::auth::Caller;
use crate::domain::subset::Subset;
use crate::domain::{ErrorCode, NhsNumber, PdsError};

pub(crate) fn parse_id(id: &str) -> Result<NhsNumber, ApiError> {
    NhsNumber::parse(id).map_err(|_| ApiError::bare(ErrorCode::InvalidResourceId))
}

/// Who asks: the caller, the X-Request-ID and (when sent) the X-Correlation-ID.
pub(crate) fn request<'a>(
    caller: &'a Caller,
    request_id: &'a RequestId,
    headers: &'a HeaderMap,
) -> Request<'a> {
    let correlation_id = headers
        .get(X_CORRELATION_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty());
    Request {
        caller,
        request_id: &request_id.0,
        correlation_id,
    }
}

/// A body the handler could not take. (Size and time limits are applied before any handler,
/// in `middleware::receive`, so an oversized body never gets here.)
pub fn body_rejection(e: BytesRejection) -> ApiError {
    ApiError(PdsError::invalid_update(format!(
        "the request body could not be read - {e}"
    )))
}

#[utoipa::path(
    get,
    path = "/Patient/{id}",
    tag = "Patient",
    security((), ("bearer" = [])),
    summary = "Get a patient by NHS number",
    description = "Returns the patient's current record. For a restricted (sensitive) record, address, telecom, contact, GP, pharmacy and place of birth are removed for every role but the National Back Office.",
    params(docs::NhsNumberParam, docs::ReadParams, docs::RequestHeaders, docs::IfNoneMatchHeader),
    responses(
        (status = 200, description = "The patient", body = docs::Patient, content_type = "application/fhir+json", 
            headers(("ETag" = String, description = "The record version, `W/\"<versionId>\"`"),
                ("Last-Modified" = String, description = "When the version was written (`meta.lastUpdated`)")), example = json!(docs::example_patient())),
        (status = 304, description = "Not modified: `If-None-Match` names the current version; no body",
            headers(("ETag" = String, description = "The record version, `W/\"<versionId>\"`"))),
        (status = 400, description = "INVALID_RESOURCE_ID (not a valid NHS number), MISSING_VALUE / INVALID_VALUE (X-Request-ID), INVALID_VALUE (`_summary`, `_elements`), ADDITIONAL_PROPERTIES (any other query parameter)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_get_400())),
        (status = 401, description = "ACCESS_DENIED (missing or invalid bearer token; not in sandbox mode without a token)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_401())),
        (status = 403, description = "ACCESS_DENIED (the token grants no PDS role; patient access to a record not its own, or below P9: `Patient cannot perform this action`)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_403_patient())),
        (status = 404, description = "RESOURCE_NOT_FOUND", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_404())),
        (status = 500, description = "UNKNOWN_ERROR", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_500())),
        (status = 503, description = "SERVICE_UNAVAILABLE (retry after `Retry-After` seconds)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_503())),
    )
)]
pub async fn get_patient(
    State(app): State<AppState>,
    caller: Caller,
    _request_id: RequestId,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let subset = Subset::parse(&super::query::pairs(&uri))?;
    let found = app.app.read(&caller, id, &subset).await?;
    // conditional read: the client's copy is current, so no body (RFC 9110 §13.1.2)
    if let (Some(etag), Some(held)) = (&found.etag, headers.get(axum::http::header::IF_NONE_MATCH))
    {
        let held = held.to_str().unwrap_or_default();
        // weak comparison: W/"2" and "2" name the same version
        let weak = |t: &str| t.trim().trim_start_matches("W/").to_string();
        if held
            .split(',')
            .any(|t| weak(t) == weak(etag) || t.trim() == "*")
        {
            let mut r =
                axum::response::IntoResponse::into_response(axum::http::StatusCode::NOT_MODIFIED);
            if let Ok(v) = axum::http::HeaderValue::from_str(etag) {
                r.headers_mut().insert(axum::http::header::ETAG, v);
            }
            super::render::private(r.headers_mut());
            return Ok(r);
        }
    }
    Ok(super::render::record(found))
}

#[utoipa::path(
    patch,
    path = "/Patient/{id}",
    tag = "Patient",
    security((), ("bearer" = [])),
    summary = "Update a patient with JSON Patch",
    description = "Applies RFC 6902 operations (add, replace, remove, test) under the PDS rules, all or nothing. `If-Match` must carry the current version from the ETag. New list items are added at `/<list>/-` and get a server-assigned `id`; changes inside a list item must first assert its `id` (extensions: `url`); removing a list item must immediately follow a `test` of it.",
    params(docs::NhsNumberParam, docs::RequestHeaders, docs::IfMatchHeader),
    request_body(content = docs::PatchRequest, content_type = "application/json-patch+json",
        description = "`{\"patches\": [...]}`; a bare JSON Patch array and `application/json` are accepted too.", example = json!(docs::example_patch_request())),
    responses(
        (status = 200, description = "The updated patient, version + 1", body = docs::Patient, content_type = "application/fhir+json", 
            headers(("ETag" = String, description = "The new record version, `W/\"<versionId>\"`")), example = json!(docs::example_patient())),
        (status = 400, description = "INVALID_RESOURCE_ID, UNSUPPORTED_SERVICE (content type), MISSING_VALUE / INVALID_VALUE (headers, values), INVALID_UPDATE (malformed patch or business rule; a field patient access may not update, or one not sent whole), UNSUPPORTED_VALUE, UNSUPPORTED_CHARACTERS_IN_FIELD, TOO_FEW_VALUES_SUBMITTED, TOO_MANY_VALUES_SUBMITTED", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_patch_400())),
        (status = 401, description = "ACCESS_DENIED (missing or invalid bearer token; not in sandbox mode without a token)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_401())),
        (status = 403, description = "FORBIDDEN_UPDATE (a permission rule: removing the usual name, gender, birthDate or a death; a formal death; a sensitive patient); INVALID_METHOD (application-restricted access); ACCESS_DENIED (no PDS role; patient access to a record not its own, or below P9)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_403())),
        (status = 404, description = "RESOURCE_NOT_FOUND", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_404())),
        (status = 409, description = "RESOURCE_VERSION_MISMATCH (If-Match is not the current version)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_409())),
        (status = 412, description = "PRECONDITION_FAILED (If-Match missing or not `W/\"<n>\"`)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_412())),
        (status = 413, description = "Request body over 1 MiB", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_413())),
        (status = 422, description = "X-Request-ID re-used for a different request (a retry of the same request gets the original answer instead)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_422())),
        (status = 500, description = "UNKNOWN_ERROR", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_500())),
        (status = 503, description = "SERVICE_UNAVAILABLE (retry with the same X-Request-ID after `Retry-After` seconds)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_503())),
    )
)]
pub async fn patch_patient(
    State(app): State<AppState>,
    caller: Caller,
    request_id: RequestId,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // PDS's order: the access mode, the NHS number, If-Match, the content type, the body
    require_patch_permission(&caller)?;
    let id = parse_id(&id)?;
    let expected = if_match(&headers)?;
    if !is_patch_content_type(&headers) {
        return Err(ApiError(unsupported_content_type(
            &headers,
            PATCH_CONTENT_TYPES,
        )));
    }
    let bytes = body.map_err(body_rejection)?;
    let req = request(&caller, &request_id, &headers);
    Ok(answer(app.app.update(&req, id, expected, &bytes).await?))
}

#[utoipa::path(
    get,
    path = "/Patient",
    tag = "Patient",
    security((), ("bearer" = [])),
    summary = "Search for patients (PDS trace)",
    description = "Exact search needs `family` and `birthdate`; fuzzy search (`_fuzzy-match=true`) needs given+family+birthdate, family+birthdate+gender+postcode or given+birthdate+gender+postcode. Results are a `searchset` Bundle sorted by `search.score` (1 = exact on every supplied field; see the README for the formula), at most `_max-results` (1-50, default 50; application-restricted: 1); more matches give a 200 OperationOutcome TOO_MANY_MATCHES instead. Superseded and invalidated records never appear. Restricted records appear redacted; for every role but the back office they are left out, before counting and scoring, of any search that reads an element their restricted view hides (postcode, GP, phone, e-mail), and what a record held while restricted never matches. Phone and e-mail are exact filters in every mode.",
    params(docs::SearchParams, docs::RequestHeaders),
    responses(
        (status = 200, description = "A searchset Bundle, or an OperationOutcome TOO_MANY_MATCHES", body = docs::SearchResult, content_type = "application/fhir+json",
            examples(("Bundle" = (summary = "Matches", value = json!(docs::example_searchset()))),
                     ("TOO_MANY_MATCHES" = (summary = "More matches than `_max-results`", value = json!(docs::example_too_many_matches()))))),
        (status = 400, description = "UNSUPPORTED_SERVICE (no parameters), ADDITIONAL_PROPERTIES (unknown parameter), INVALID_VALUE (a bad value, e.g. a date), MISSING_VALUE (no birthdate), INVALID_SEARCH_DATA (minimum or fuzzy criteria not met, both postcode parameters), TOO_MANY_VALUES_SUBMITTED", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_search_400())),
        (status = 401, description = "ACCESS_DENIED (missing or invalid bearer token; not in sandbox mode without a token)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_401())),
        (status = 403, description = "INVALID_VALUE (application-restricted access with `_max-results` other than 1); ACCESS_DENIED (no PDS role; patient access, which may not search)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_403_role())),
        (status = 500, description = "UNKNOWN_ERROR", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_500())),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_503())),
    )
)]
pub async fn search_patients(
    State(app): State<AppState>,
    caller: Caller,
    _request_id: RequestId,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    Ok(answer(
        app.app.search(&caller, &super::query::pairs(&uri)).await?,
    ))
}

#[utoipa::path(
    get,
    path = "/Patient/{id}/RelatedPerson",
    tag = "Patient",
    security((), ("bearer" = [])),
    summary = "Get a patient's related people",
    description = "The patient's contacts as a `searchset` Bundle of RelatedPerson (PDS's shape: each at `.../Patient/{id}/RelatedPerson/{contact id}`, `patient` naming the NHS number). For a restricted patient the Bundle is empty for every role but the National Back Office, as PDS answers; a patient with no contacts gets an empty Bundle too. A superseded number shows its survivor's.",
    params(docs::NhsNumberParam, docs::RequestHeaders),
    responses(
        (status = 200, description = "A searchset Bundle of RelatedPerson (no `entry` when there are none)", body = docs::Bundle, content_type = "application/fhir+json"),
        (status = 400, description = "INVALID_RESOURCE_ID (not a valid NHS number), MISSING_VALUE / INVALID_VALUE (X-Request-ID), ADDITIONAL_PROPERTIES (any query parameter)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_get_400())),
        (status = 401, description = "ACCESS_DENIED (missing or invalid bearer token; not in sandbox mode without a token)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_401())),
        (status = 403, description = "ACCESS_DENIED (the token grants no PDS role; patient access to a record not its own, or below P9: `Patient cannot perform this action`)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_403_patient())),
        (status = 404, description = "RESOURCE_NOT_FOUND; INVALIDATED_RESOURCE", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_404())),
        (status = 500, description = "UNKNOWN_ERROR", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_500())),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_503())),
    )
)]
pub async fn related_people(
    State(app): State<AppState>,
    caller: Caller,
    _request_id: RequestId,
    Path(id): Path<String>,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    super::query::only(&uri, &[])?;
    Ok(answer(app.app.related_people(&caller, id).await?))
}
