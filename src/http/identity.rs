//! Identity management: allocating NHS numbers (`POST /Patient`), changes of identity, and
//! invalidating / revalidating records created in error.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::json;

use super::backoffice::load_named;
use super::caller::require_back_office;
use super::error::ApiError;
use super::headers::RequestId;
use super::idempotency;
use super::openapi::docs;
use super::patient::Actor;
use super::render;
use super::AppState;
use crate::auth::Caller;
use crate::domain::confidentiality::Label;
use crate::domain::identity::{self, DUPLICATE_THRESHOLD};
use crate::domain::parameters::Parameters;
use crate::domain::patch::{Operation, PatchContext};
use crate::domain::{ErrorCode, NhsNumber, Patient, PdsError, Role};
use crate::env::{new_object_id, today};
use crate::store::{AllocatingChange, Change, Committed, RecordWrite, SavedBody, SavedResponse};

/// Records whose fuzzy trace scores at least [`DUPLICATE_THRESHOLD`] against `new`, as `role`
/// may see them (the trace reads only what every role sees: names, gender, birth date).
fn likely_duplicates(
    app: &AppState,
    role: Role,
    new: &Patient,
) -> Result<Vec<NhsNumber>, ApiError> {
    let Some(query) = identity::duplicate_query(new) else {
        return Ok(Vec::new());
    };
    Ok(
        match crate::search::run(app.store.as_ref(), &query, role)? {
            crate::search::Outcome::Hits(hits) => hits
                .iter()
                .filter(|h| h.score >= DUPLICATE_THRESHOLD)
                .map(|h| h.id)
                .collect(),
            crate::search::Outcome::TooManyMatches => vec![new.id(); 2],
        },
    )
}

/// Commits a change that needs a newly allocated NHS number and answers with its response
/// (the original one, rendered again, for a retry).
async fn commit_allocating(
    app: &AppState,
    role: Role,
    build: AllocatingChange,
) -> Result<Response, ApiError> {
    let (store, range, builder) = (app.store.clone(), app.allocation_range, build.clone());
    let (committed, nhs) =
        crate::store::durable(|reply| store.submit_allocating(range, builder, reply)).await?;
    match committed {
        // the builder is deterministic for a number: rebuild the change to answer from it
        Committed::Applied => {
            let change = build(nhs);
            let saved = &change
                .request
                .as_ref()
                .expect("changes carry their response")
                .response;
            let record = change
                .writes
                .iter()
                .map(|w| &w.record)
                .find(|r| r.id() == nhs)
                .expect("the change writes the new record");
            Ok(render::applied(saved, record, role))
        }
        Committed::Replayed(original) => render::replayed(app, role, &original),
    }
}

#[utoipa::path(
    post,
    path = "/Patient",
    tag = "Identity",
    security((), ("bearer" = [])),
    summary = "Create a patient and allocate an NHS number",
    description = "A Patient in PDS's create shape (usual name, home address, gender, birth date and the UKCore-RegisteringAuthority extension, which is checked and not stored; optional telecom etc.; no id, identifier or meta). Problems are reported in PDS's order: missing name, address, gender, birthDate, an address without a period (MISSING_VALUE); bad values (INVALID_VALUE, TOO_MANY_VALUES_SUBMITTED, ADDITIONAL_PROPERTIES for an unknown property); PDS's create rules (INVALID_CREATE: address lines 1 and 4 or 2 and 4, no end date on the usual name, valid e-mail); then the extension. First a duplicate check — a fuzzy trace on family, given name, birth date and gender; a record scoring at least 0.9 is a likely match: one → 200 OperationOutcome SINGLE_MATCH naming its NHS number, several → 200 MULTIPLE_MATCHES. Otherwise 201 with the new Patient (version 1, ETag, Location) under an NHS number from the configured allocation range, allocated in the same transaction as the record and never reused. A retry with the same X-Request-ID returns the first answer and allocates nothing.",
    params(docs::RequestHeaders),
    request_body(content = docs::PatientCreateRequest, content_type = "application/fhir+json", example = json!(docs::example_create())),
    responses(
        (status = 201, description = "Created", body = docs::Patient, content_type = "application/fhir+json",
            headers(("ETag" = String, description = "`W/\"1\"`"), ("Location" = String, description = "The new record's URL"))),
        (status = 200, description = "SINGLE_MATCH or MULTIPLE_MATCHES: the patient probably has a record already", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_single_match())),
        (status = 400, description = "MISSING_VALUE, INVALID_VALUE, ADDITIONAL_PROPERTIES, INVALID_CREATE, INVALID_UPDATE, TOO_FEW/TOO_MANY_VALUES_SUBMITTED, UNSUPPORTED_SERVICE (content type)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_search_400())),
        (status = 401, description = "ACCESS_DENIED (bad token)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_401())),
        (status = 403, description = "INVALID_METHOD (application-restricted); FORBIDDEN_UPDATE (e.g. a GP set by other than the back office)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_403())),
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
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    super::caller::require_change_permission(&caller)?;
    let (body, fingerprint) = match idempotency::read_json_body(
        &app,
        &caller,
        &request_id,
        &headers,
        body,
        "/Patient",
    )? {
        Ok(b) => b,
        Err(replayed) => return Ok(replayed),
    };
    let new = {
        let mut new_id = new_object_id;
        identity::new_patient(&body, caller.role, today(), &mut new_id, &app.schemas, true)?
    };
    match likely_duplicates(&app, caller.role, &new)?.as_slice() {
        [] => {}
        [one] => {
            return Err(ApiError::new(
                ErrorCode::SingleMatch,
                format!("Single match found - NHS number {one}"),
            ));
        }
        _ => {
            return Err(ApiError::new(
                ErrorCode::MultipleMatches,
                "Multiple matches found - the patient probably has a record already",
            ))
        }
    }
    let actor = Actor::new(&caller, &request_id, &headers);
    let (audit_template, base) = (
        actor.audit(Operation::Create, None, &new, json!([]), None),
        app.base_url.clone(),
    );
    let (rid, forget) = (request_id.0.clone(), idempotency::forget_before(&app));
    let result = commit_allocating(
        &app,
        caller.role,
        std::sync::Arc::new(move |nhs| {
            let record = identity::with_nhs_number(&new, nhs);
            let mut audit = audit_template.clone();
            audit.patient = nhs.to_string();
            audit.patch = Some(json!([{"op": "add", "path": "", "value": record.doc()}]));
            let response = SavedResponse {
                status: 201,
                etag: Some(record.version().etag()),
                location: Some(format!("{base}/Patient/{nhs}")),
                body: SavedBody::patient(&record),
            };
            Change {
                writes: vec![RecordWrite::create(record)],
                audit: vec![audit],
                request: Some(idempotency::record(&rid, fingerprint, response)),
                forget_requests_before: forget,
                ..Change::default()
            }
        }),
    )
    .await;
    idempotency::unless_duplicate(&app, &caller, &request_id.0, &fingerprint, result)
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
    let (body, fingerprint) = match idempotency::read_json_body(
        &app,
        &caller,
        &request_id,
        &headers,
        body,
        "$change-identity",
    )? {
        Ok(b) => b,
        Err(replayed) => return Ok(replayed),
    };
    let params = Parameters::parse(&body, &["nhs-number", "patient", "reason"])?;
    let old_id = params.required_nhs_number("nhs-number")?;
    let data = params
        .resource("patient")?
        .ok_or_else(|| PdsError::missing_value("patient"))?
        .clone();
    let reason = params.reason()?;
    let (old, _) = load_named(&app, "nhs-number", old_id)?;
    refuse_unless_live(&app, &old)?;
    let (new, (invalidated, ops)) = {
        let mut new_id = new_object_id;
        let mut ctx = PatchContext {
            role: caller.role,
            today: today(),
            new_id: &mut new_id,
        };
        let new = identity::new_patient(
            &data,
            caller.role,
            ctx.today,
            ctx.new_id,
            &app.schemas,
            false,
        )?;
        // the new identity is as protected as the old one
        let new = match Label::of(&old) {
            Some(label) if label != Label::Unrestricted => identity::with_label(&new, label),
            _ => new,
        };
        (new, identity::invalidate(&old, &mut ctx, &app.schemas)?)
    };
    let actor = Actor::new(&caller, &request_id, &headers);
    let ops_json = json!(ops.iter().map(|o| o.to_json()).collect::<Vec<_>>());
    let old_audit = actor.audit(
        Operation::ChangeIdentity,
        Some(&old),
        &invalidated,
        ops_json,
        Some(&reason),
    );
    let new_template = actor.audit(
        Operation::ChangeIdentity,
        None,
        &new,
        json!([]),
        Some(&reason),
    );
    let (rid, forget) = (request_id.0.clone(), idempotency::forget_before(&app));
    // built here, not in the closure: the closure runs on the writer's thread
    let old_write = RecordWrite::update(&old, invalidated);
    let result = commit_allocating(
        &app,
        caller.role,
        std::sync::Arc::new(move |nhs| {
            let record = identity::with_nhs_number(&new, nhs);
            let mut old_audit = old_audit.clone();
            old_audit.related = Some(nhs.to_string());
            let mut new_audit = new_template.clone();
            new_audit.patient = nhs.to_string();
            new_audit.related = Some(old_id.to_string());
            new_audit.patch = Some(json!([{"op": "add", "path": "", "value": record.doc()}]));
            let outcome = format!(
                "Change of identity completed: {old_id} is invalidated; the new record is {nhs}"
            );
            let response = SavedResponse {
                status: 200,
                etag: None,
                location: None,
                body: SavedBody::parameters(outcome, &record),
            };
            Change {
                writes: vec![old_write.clone(), RecordWrite::create(record)],
                identity_links: vec![(old_id, nhs)],
                audit: vec![old_audit, new_audit],
                request: Some(idempotency::record(&rid, fingerprint, response)),
                forget_requests_before: forget,
                ..Change::default()
            }
        }),
    )
    .await;
    idempotency::unless_duplicate(&app, &caller, &request_id.0, &fingerprint, result)
}

/// Identity operations act on live records: not merged away, not invalidated.
fn refuse_unless_live(app: &AppState, p: &Patient) -> Result<(), ApiError> {
    if let Some(survivor) = app.store.superseded_by(p.id())? {
        return Err(ApiError(PdsError::invalid_update(format!(
            "{} was merged into {survivor}",
            p.id()
        ))));
    }
    if p.is_invalidated() {
        return Err(ApiError(PdsError::invalid_update(format!(
            "{} is invalidated",
            p.id()
        ))));
    }
    Ok(())
}

/// `$invalidate` and `$revalidate`: one record, one new version, one audit entry.
async fn set_validity(
    app: AppState,
    caller: Caller,
    request_id: RequestId,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    operation: Operation,
) -> Result<Response, ApiError> {
    require_back_office(&caller)?;
    let name = if operation == Operation::Invalidate {
        "$invalidate"
    } else {
        "$revalidate"
    };
    let (body, fingerprint) =
        match idempotency::read_json_body(&app, &caller, &request_id, &headers, body, name)? {
            Ok(b) => b,
            Err(replayed) => return Ok(replayed),
        };
    let params = Parameters::parse(&body, &["nhs-number", "reason"])?;
    let id = params.required_nhs_number("nhs-number")?;
    let reason = params.reason()?;
    let (current, _) = load_named(&app, "nhs-number", id)?;
    let previous = if operation == Operation::Invalidate {
        if let Some(survivor) = app.store.superseded_by(id)? {
            return Err(ApiError(PdsError::invalid_update(format!(
                "{id} was merged into {survivor}"
            ))));
        }
        None
    } else {
        // back to the confidentiality the record had before it was invalidated
        app.store
            .history(id)?
            .iter()
            .filter(|v| !v.invalidated)
            .find_map(|v| Patient::from_stored(&v.json).ok())
            .and_then(|p| p.doc().get("meta")?.get("security")?.get(0).cloned())
    };
    let (updated, ops) = {
        let mut new_id = new_object_id;
        let mut ctx = PatchContext {
            role: caller.role,
            today: today(),
            new_id: &mut new_id,
        };
        if operation == Operation::Invalidate {
            identity::invalidate(&current, &mut ctx, &app.schemas)?
        } else {
            identity::revalidate(&current, previous, &mut ctx, &app.schemas)?
        }
    };
    let actor = Actor::new(&caller, &request_id, &headers);
    let audit = actor.audit(
        operation,
        Some(&current),
        &updated,
        json!(ops.iter().map(|o| o.to_json()).collect::<Vec<_>>()),
        Some(&reason),
    );
    let outcome = if operation == Operation::Invalidate {
        format!("{id} is invalidated: other roles now get 404 INVALIDATED_RESOURCE")
    } else {
        format!("{id} is valid again")
    };
    let response = SavedResponse {
        status: 200,
        etag: None,
        location: None,
        body: SavedBody::parameters(outcome, &updated),
    };
    let change = Change {
        writes: vec![RecordWrite::update(&current, updated)],
        audit: vec![audit],
        request: Some(idempotency::record(&request_id.0, fingerprint, response)),
        forget_requests_before: idempotency::forget_before(&app),
        ..Change::default()
    };
    let result = super::patient::commit(&app, caller.role, change).await;
    idempotency::unless_duplicate(&app, &caller, &request_id.0, &fingerprint, result)
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
    set_validity(
        app,
        caller,
        request_id,
        headers,
        body,
        Operation::Invalidate,
    )
    .await
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
    set_validity(
        app,
        caller,
        request_id,
        headers,
        body,
        Operation::Revalidate,
    )
    .await
}
