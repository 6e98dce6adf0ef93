//! `/Patient` handlers: thin — parse the request, call the patch layer and the store, render.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::error::ApiError;
use super::headers::{
    if_match, is_patch_content_type, unsupported_content_type, RequestId, PATCH_CONTENT_TYPES,
};
use super::idempotency;
use super::openapi::docs;
use super::render::{self, fhir, parse_stored};
use super::AppState;
use crate::auth::Caller;
use crate::domain::patch::{self, Operation, PatchContext, PatchRequest};
use crate::domain::search::{self, SearchQuery};
use crate::domain::{view, ErrorCode, NhsNumber, Patient, PdsError, Role, Version};
use crate::env::{new_object_id, today};
use crate::store::{
    AuditEntry, Change, Committed, PatientStore, RecordWrite, SavedBody, SavedResponse,
    StoredRecord,
};

pub(crate) fn parse_id(id: &str) -> Result<NhsNumber, ApiError> {
    NhsNumber::parse(id).map_err(|_| ApiError::bare(ErrorCode::InvalidResourceId))
}

/// Reads are short redb read transactions on cached pages; they run on the request task.
pub(crate) fn load(store: &dyn PatientStore, id: NhsNumber) -> Result<StoredRecord, ApiError> {
    store
        .get(id)?
        .ok_or_else(|| ApiError::bare(ErrorCode::ResourceNotFound))
}

/// 409 RESOURCE_VERSION_MISMATCH saying which version is current (every caller that gets this
/// far may read the record: its version is in the ETag of any GET).
pub(crate) fn version_mismatch(expected: Version, current: Version) -> PdsError {
    PdsError::new(
        ErrorCode::ResourceVersionMismatch,
        format!(
            "Invalid update with error - the If-Match version {} is not the current version, {}: read the record again and re-apply the change to it",
            expected.etag(),
            current.etag()
        ),
    )
}

/// The 403 PDS gives for an update to a number that was merged away.
pub(crate) fn superseded() -> ApiError {
    ApiError(PdsError::forbidden_update(
        "Update Failed - NHS No. supplied has been superseded in a merge",
    ))
}

/// The record a read of `id` shows: the survivor's, when `id` was merged into another.
///
/// An invalidated record is 404 INVALIDATED_RESOURCE for every role but the back office — after
/// following merges, since an invalidated but superseded number shows its survivor (PDS).
pub(crate) fn load_current(
    store: &dyn PatientStore,
    id: NhsNumber,
    role: Role,
) -> Result<StoredRecord, ApiError> {
    let mut record = load(store, id)?;
    if record.merged {
        let survivor = store.survivor(id)?;
        if survivor != id {
            record = load(store, survivor)?;
        }
    }
    if record.invalidated && !role.is_back_office() {
        return Err(ApiError::bare(ErrorCode::InvalidatedResource));
    }
    Ok(record)
}

/// The parts of a request every audit entry records.
pub(crate) struct Actor<'a> {
    pub caller: &'a Caller,
    pub request_id: &'a str,
    pub correlation_id: Option<String>,
}

impl<'a> Actor<'a> {
    pub fn new(caller: &'a Caller, request_id: &'a RequestId, headers: &HeaderMap) -> Self {
        let correlation_id = headers
            .get(super::headers::X_CORRELATION_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_string);
        Actor {
            caller,
            request_id: &request_id.0,
            correlation_id,
        }
    }

    /// The audit entry for one record's change.
    pub fn audit(
        &self,
        operation: Operation,
        before: Option<&Patient>,
        after: &Patient,
        patch: Value,
        reason: Option<&str>,
    ) -> AuditEntry {
        AuditEntry {
            at: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .expect("RFC 3339"),
            subject: self.caller.subject.clone(),
            role: self.caller.role.name().to_string(),
            request_id: self.request_id.to_string(),
            correlation_id: self.correlation_id.clone(),
            operation: operation.name().to_string(),
            patient: after.id().to_string(),
            version_before: before.map(|b| b.version().get()),
            version_after: after.version().get(),
            patch: Some(patch),
            reason: reason.map(str::to_string),
            related: None,
        }
    }
}

/// Hands a change to the store's writer and awaits its durable outcome (no thread waits for
/// the fsync), then answers with its saved response — rendered from the record in hand when it
/// was applied, or again from the store when this was a retry of a change already made.
pub(crate) async fn commit(
    app: &AppState,
    role: Role,
    change: Change,
) -> Result<Response, ApiError> {
    let saved = &change
        .request
        .as_ref()
        .expect("changes carry their response")
        .response;
    let (id, version) = saved.body.record();
    let shown = change
        .writes
        .iter()
        .map(|w| &w.record)
        .find(|r| r.id().to_string() == id && r.version().get() == version)
        .expect("a saved response shows a record the change writes");
    // rendered before the change goes: the writer takes the change, and the record is current
    // if the change is applied
    let answer = render::applied(saved, shown, role);
    let store = app.store.clone();
    let committed = crate::store::durable(|reply| store.submit(change, reply)).await?;
    match committed {
        Committed::Applied => Ok(answer),
        Committed::Replayed(original) => render::replayed(app, role, &original),
    }
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
    let record = load_current(app.store.as_ref(), id, caller.role)?;
    let etag = record.version.etag();
    let body = render::current(record, caller.role)?;
    Ok(fhir(StatusCode::OK, Some(etag), body))
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
    super::caller::require_change_permission(&caller)?;
    let id = parse_id(&id)?;
    let expected = if_match(&headers)?;
    if !is_patch_content_type(&headers) {
        return Err(ApiError(unsupported_content_type(
            &headers,
            PATCH_CONTENT_TYPES,
        )));
    }
    let bytes = body.map_err(body_rejection)?;
    let fingerprint =
        idempotency::fingerprint(&caller, "PATCH", &id.to_string(), &expected.etag(), &bytes);
    if let Some(original) = idempotency::replay(&app, &caller, &request_id.0, &fingerprint)? {
        return Ok(original);
    }
    let result = apply_patch(
        &app,
        &caller,
        &request_id,
        &headers,
        id,
        expected,
        &bytes,
        fingerprint,
    )
    .await;
    idempotency::unless_duplicate(&app, &caller, &request_id.0, &fingerprint, result)
}

/// The PATCH after its headers were checked and it was found not to be a retry.
#[allow(clippy::too_many_arguments)]
async fn apply_patch(
    app: &AppState,
    caller: &Caller,
    request_id: &RequestId,
    headers: &HeaderMap,
    id: NhsNumber,
    expected: Version,
    bytes: &[u8],
    fingerprint: [u8; 32],
) -> Result<Response, ApiError> {
    let role = caller.role;
    let body: Value = super::json::parse(bytes).map_err(|e| {
        PdsError::invalid_update(format!("the request body is not valid JSON - {e}"))
    })?;
    let stored = load(app.store.as_ref(), id)?;
    if stored.merged && app.store.superseded_by(id)?.is_some() {
        return Err(superseded());
    }
    if stored.invalidated {
        return Err(ApiError::bare(ErrorCode::InvalidatedResource));
    }
    let request = PatchRequest::parse(&body, &app.schemas)?;
    if stored.version != expected {
        return Err(ApiError(version_mismatch(expected, stored.version)));
    }
    let current = parse_stored(&stored)?;
    let updated = {
        let mut new_id = new_object_id;
        let mut ctx = PatchContext {
            role,
            today: today(),
            new_id: &mut new_id,
        };
        patch::apply(&current, &request, &mut ctx, &app.schemas)?
    };
    if request.is_test_only() {
        // every test passed and nothing changes: no new version, no audit entry (a FHIR
        // server answers a no-op update with the record as it is)
        return Ok(fhir(
            StatusCode::OK,
            Some(current.version().etag()),
            render::current(stored, role)?,
        ));
    }
    let operation = patch::classify(&current, &updated, &request.ops, role);
    let actor = Actor::new(caller, request_id, headers);
    let patches = Value::Array(request.ops.iter().map(|o| o.to_json()).collect());
    let audit = actor.audit(
        operation,
        Some(&current),
        &updated,
        patches,
        request.reason.as_deref(),
    );
    let response = SavedResponse {
        status: 200,
        etag: Some(updated.version().etag()),
        location: None,
        body: SavedBody::patient(&updated),
    };
    let change = Change {
        writes: vec![RecordWrite::update(&current, updated)],
        audit: vec![audit],
        request: Some(idempotency::record(&request_id.0, fingerprint, response)),
        forget_requests_before: idempotency::forget_before(app),
        ..Change::default()
    };
    commit(app, role, change).await
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
    path = "/Patient",
    tag = "Patient",
    security((), ("bearer" = [])),
    summary = "Search for patients (PDS trace)",
    description = "Exact search needs `family` and `birthdate`; fuzzy search (`_fuzzy-match=true`) needs given+family+birthdate, family+birthdate+gender+postcode or given+birthdate+gender+postcode. Results are a `searchset` Bundle sorted by `search.score` (1 = exact on every supplied field; see the README for the formula), at most `_max-results` (1-50, default 50; application-restricted: 1); more matches give a 200 OperationOutcome TOO_MANY_MATCHES instead. Superseded and invalidated records never appear. Restricted records appear redacted; for every role but the back office they are left out, before counting and scoring, of any search that reads an element their restricted view hides (postcode, GP, phone, e-mail), and what a record held while restricted never matches. Phone and e-mail are exact filters in every mode.",
    params(docs::SearchParams, docs::RequestHeaders),
    responses(
        (status = 200, description = "A searchset Bundle, or an OperationOutcome TOO_MANY_MATCHES", body = docs::Bundle, content_type = "application/fhir+json"),
        (status = 400, description = "UNSUPPORTED_SERVICE (no parameters), ADDITIONAL_PROPERTIES (unknown parameter), INVALID_VALUE (a bad value, e.g. a date), MISSING_VALUE (no birthdate), INVALID_SEARCH_DATA (minimum or fuzzy criteria not met, both postcode parameters), TOO_MANY_VALUES_SUBMITTED", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_search_400())),
        (status = 401, description = "ACCESS_DENIED (missing or invalid bearer token; not in sandbox mode without a token)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_401())),
        (status = 403, description = "INVALID_VALUE (application-restricted access with `_max-results` other than 1); ACCESS_DENIED (no PDS role)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_403_role())),
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
    let pairs: Vec<(String, String)> =
        form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let query = SearchQuery::parse(&pairs, caller.role)?;
    let store = app.store.clone();
    let role = caller.role;
    let outcome =
        tokio::task::spawn_blocking(move || crate::search::run(store.as_ref(), &query, role))
            .await
            .map_err(|_| ApiError::bare(ErrorCode::UnknownError))??;
    let hits = match outcome {
        crate::search::Outcome::TooManyMatches => {
            return Err(ApiError::bare(ErrorCode::TooManyMatches))
        }
        crate::search::Outcome::Hits(hits) => hits,
    };
    let timestamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]+00:00"
        ))
        .expect("timestamp");
    let mut bundle = json!({"resourceType": "Bundle", "type": "searchset", "timestamp": timestamp, "total": hits.len()});
    if !hits.is_empty() {
        let entries: Vec<Value> = hits
            .iter()
            .map(|h| {
                let subset = search::result_view(&h.doc);
                let resource = view::for_role(&subset, caller.role, h.restricted);
                let resource = resource.as_ref();
                json!({"fullUrl": format!("{}/Patient/{}", app.base_url, h.id), "search": {"score": h.score}, "resource": resource})
            })
            .collect();
        bundle["entry"] = Value::Array(entries);
    }
    Ok(fhir(
        StatusCode::OK,
        None,
        serde_json::to_vec(&bundle).expect("JSON"),
    ))
}
