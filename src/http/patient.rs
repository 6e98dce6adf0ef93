//! `/Patient` handlers: thin — parse the request, call the patch layer and the store, render.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::error::{ApiError, FHIR_JSON};
use super::headers::{if_match, is_patch_content_type, RequestId};
use super::openapi::docs;
use super::AppState;
use crate::auth::Caller;
use crate::domain::patch::{self, PatchContext, PatchRequest};
use crate::domain::{view, ErrorCode, NhsNumber, Patient, PdsError, Role, Version};
use crate::env::{new_object_id, today};
use crate::store::{PatientStore, StoredRecord};

fn parse_id(id: &str) -> Result<NhsNumber, ApiError> {
    NhsNumber::parse(id).map_err(|_| ApiError::bare(ErrorCode::InvalidResourceId))
}

/// Reads are short redb read transactions on cached pages; they run on the request task.
fn load(store: &dyn PatientStore, id: NhsNumber) -> Result<StoredRecord, ApiError> {
    store
        .get(id)?
        .ok_or_else(|| ApiError::bare(ErrorCode::ResourceNotFound))
}

/// A Patient response with its ETag, redacted when the role may not see a restricted record.
fn patient_response(
    status: StatusCode,
    record: &StoredRecord,
    role: Role,
) -> Result<Response, ApiError> {
    let body = if record.restricted && !role.sees_restricted() {
        let patient =
            Patient::from_stored(&record.json).map_err(crate::store::StoreError::Corrupt)?;
        serde_json::to_vec(&view::redact(patient.doc())).expect("JSON")
    } else {
        record.json.clone()
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(&record.version.etag()).expect("ASCII"),
    );
    Ok(response)
}

#[utoipa::path(
    get,
    path = "/Patient/{id}",
    tag = "Patient",
    security((), ("bearer" = [])),
    summary = "Get a patient by NHS number",
    description = "Returns the patient's current record. For a restricted (sensitive) record, address, telecom, contact, GP, pharmacy and place of birth are removed for every role but the National Back Office.",
    params(docs::NhsNumberParam, docs::RequestHeaders),
    responses(
        (status = 200, description = "The patient", body = docs::Patient, content_type = "application/fhir+json", 
            headers(("ETag" = String, description = "The record version, `W/\"<versionId>\"`")), example = json!(docs::example_patient())),
        (status = 400, description = "INVALID_RESOURCE_ID (not a valid NHS number), MISSING_VALUE / INVALID_VALUE (X-Request-ID)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_get_400())),
        (status = 401, description = "ACCESS_DENIED (missing or invalid bearer token; not in sandbox mode without a token)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_401())),
        (status = 403, description = "ACCESS_DENIED (the token grants no PDS role)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_403_role())),
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
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let record = load(app.store.as_ref(), id)?;
    patient_response(StatusCode::OK, &record, caller.role)
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
        (status = 400, description = "INVALID_RESOURCE_ID, UNSUPPORTED_SERVICE (content type), MISSING_VALUE / INVALID_VALUE (headers, values), INVALID_UPDATE (malformed patch or business rule), UNSUPPORTED_VALUE, UNSUPPORTED_CHARACTERS_IN_FIELD, TOO_FEW_VALUES_SUBMITTED, TOO_MANY_VALUES_SUBMITTED", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_patch_400())),
        (status = 401, description = "ACCESS_DENIED (missing or invalid bearer token; not in sandbox mode without a token)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_401())),
        (status = 403, description = "FORBIDDEN_UPDATE (a permission rule: removing the usual name, gender, birthDate or a death; a formal death; a sensitive patient); INVALID_METHOD (application-restricted access); ACCESS_DENIED (no PDS role)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_403())),
        (status = 404, description = "RESOURCE_NOT_FOUND", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_404())),
        (status = 409, description = "RESOURCE_VERSION_MISMATCH (If-Match is not the current version)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_409())),
        (status = 412, description = "PRECONDITION_FAILED (If-Match missing or not `W/\"<n>\"`)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_412())),
        (status = 413, description = "Request body over 1 MiB", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_413())),
        (status = 500, description = "UNKNOWN_ERROR", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_500())),
        (status = 503, description = "SERVICE_UNAVAILABLE (retry with the same X-Request-ID after `Retry-After` seconds)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_503())),
    )
)]
pub async fn patch_patient(
    State(app): State<AppState>,
    caller: Caller,
    _request_id: RequestId,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let role = caller.role;
    if role == Role::ApplicationRestricted {
        return Err(ApiError::new(
            ErrorCode::InvalidMethod,
            "Your app has insufficient permissions to use this method. Please contact support.",
        ));
    }
    let id = parse_id(&id)?;
    let expected = if_match(&headers)?;
    if !is_patch_content_type(&headers) {
        return Err(ApiError::bare(ErrorCode::UnsupportedService));
    }
    let body = body.map_err(body_rejection)?;
    let body: Value = serde_json::from_slice(&body).map_err(|e| {
        PdsError::invalid_update(format!("the request body is not valid JSON - {e}"))
    })?;
    let stored = load(app.store.as_ref(), id)?;
    let request = PatchRequest::parse(&body, &app.schemas)?;
    if stored.version != expected {
        return Err(ApiError::bare(ErrorCode::ResourceVersionMismatch));
    }
    let current = Patient::from_stored(&stored.json).map_err(crate::store::StoreError::Corrupt)?;
    let updated = {
        let mut new_id = new_object_id;
        let mut ctx = PatchContext {
            role,
            today: today(),
            new_id: &mut new_id,
        };
        patch::apply(&current, &request, &mut ctx, &app.schemas)?
    };
    let record = StoredRecord {
        version: updated.version(),
        restricted: updated.is_restricted(),
        json: updated.to_bytes(),
    };
    write(app.store.clone(), expected, updated).await?;
    patient_response(StatusCode::OK, &record, role)
}

/// Runs the durable write on a blocking thread (a redb commit waits for fsync).
async fn write(
    store: Arc<dyn PatientStore>,
    expected: Version,
    record: Patient,
) -> Result<(), ApiError> {
    tokio::task::spawn_blocking(move || store.update(expected, &record))
        .await
        .map_err(|_| ApiError::bare(ErrorCode::UnknownError))?
        .map_err(ApiError::from)
}

pub fn body_rejection(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "Invalid value - the request body is larger than {} bytes",
                super::BODY_LIMIT
            ),
        )
    } else {
        ApiError(PdsError::invalid_update(format!(
            "the request body could not be read - {e}"
        )))
    }
}

#[utoipa::path(
    get,
    path = "/Patient",
    tag = "Patient",
    security((), ("bearer" = [])),
    summary = "Search for patients",
    description = "Patient search is not available in this version; every request is refused as PDS refuses a search without parameters.",
    params(docs::RequestHeaders),
    responses(
        (status = 400, description = "UNSUPPORTED_SERVICE; MISSING_VALUE / INVALID_VALUE (X-Request-ID)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_search_400())),
        (status = 401, description = "ACCESS_DENIED (missing or invalid bearer token; not in sandbox mode without a token)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_401())),
        (status = 403, description = "ACCESS_DENIED (the token grants no PDS role)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_403_role())),
    )
)]
pub async fn search_patients(_caller: Caller, _request_id: RequestId) -> ApiError {
    ApiError::bare(ErrorCode::UnsupportedService)
}
