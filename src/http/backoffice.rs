//! National Back Office operations beyond PDS's API: merges, unmerges and the audit trail.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::caller::require_back_office;
use super::error::ApiError;
use super::headers::RequestId;
use super::idempotency;
use super::openapi::docs;
use super::patient::{commit, load, parse_id, Actor};
use super::render::{fhir, parameters, parse_stored};
use super::AppState;
use crate::auth::Caller;
use crate::domain::confidentiality::{self, BeforeMerge, Label};
use crate::domain::merge::{self, MergeRequest, Merged};
use crate::domain::patch::{Operation, PatchContext};
use crate::domain::{ErrorCode, NhsNumber, Patient, PdsError};
use crate::env::{new_object_id, today};
use crate::store::{Change, RecordWrite, SavedBody, SavedResponse};

pub(crate) fn not_found(what: &str, id: NhsNumber) -> ApiError {
    ApiError::new(
        ErrorCode::ResourceNotFound,
        format!("Resource not found - {what} {id}"),
    )
}

pub(crate) fn load_named(
    app: &AppState,
    what: &str,
    id: NhsNumber,
) -> Result<(Patient, crate::store::StoredRecord), ApiError> {
    let stored = load(app.store.as_ref(), id).map_err(|_| not_found(what, id))?;
    Ok((parse_stored(&stored)?, stored))
}

/// What both operations share: the caller check, the body, idempotency.
struct OperationRequest {
    request: MergeRequest,
    fingerprint: [u8; 32],
}

fn begin(
    app: &AppState,
    caller: &Caller,
    request_id: &RequestId,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    name: &str,
) -> Result<Result<OperationRequest, Response>, ApiError> {
    require_back_office(caller)?;
    let (body, fingerprint) =
        match idempotency::read_json_body(app, caller, request_id, headers, body, name)? {
            Ok(b) => b,
            Err(replayed) => return Ok(Err(replayed)),
        };
    let request = MergeRequest::parse(&body, name == "$merge")?;
    Ok(Ok(OperationRequest {
        request,
        fingerprint,
    }))
}

/// Writes both sides of a merge or unmerge with their audit entries, in one transaction.
#[allow(clippy::too_many_arguments)]
async fn finish(
    app: &AppState,
    actor: &Actor<'_>,
    op: &OperationRequest,
    operation: Operation,
    before: (&Patient, &Patient),
    merged: Merged,
    outcome: String,
    result_is_source: bool,
) -> Result<Response, ApiError> {
    let reason = Some(op.request.reason.as_str());
    let ops_json =
        |ops: &[crate::domain::patch::Op]| Value::Array(ops.iter().map(|o| o.to_json()).collect());
    let (source_id, target_id) = (merged.source.id(), merged.target.id());
    let mut audit = vec![
        actor.audit(
            operation,
            Some(before.0),
            &merged.source,
            ops_json(&merged.source_ops),
            reason,
        ),
        actor.audit(
            operation,
            Some(before.1),
            &merged.target,
            ops_json(&merged.target_ops),
            reason,
        ),
    ];
    audit[0].related = Some(target_id.to_string());
    audit[1].related = Some(source_id.to_string());
    let result = if result_is_source {
        &merged.source
    } else {
        &merged.target
    };
    let response = SavedResponse {
        status: 200,
        etag: None,
        location: None,
        body: SavedBody::parameters(outcome, result),
    };
    let mut change = Change {
        writes: vec![
            RecordWrite::update(before.0, merged.source),
            RecordWrite::update(before.1, merged.target),
        ],
        audit,
        request: Some(idempotency::record(
            actor.request_id,
            op.fingerprint,
            response,
        )),
        forget_requests_before: idempotency::forget_before(app),
        ..Change::default()
    };
    match operation {
        Operation::Merge => change.supersede.push((source_id, target_id)),
        _ => change.unsupersede.push(source_id),
    }
    commit(app, actor.caller.role, change).await
}

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
    let op = match begin(&app, &caller, &request_id, &headers, body, "$merge")? {
        Ok(op) => op,
        Err(replayed) => return Ok(replayed),
    };
    let result = do_merge(&app, &caller, &request_id, &headers, &op).await;
    idempotency::unless_duplicate(&app, &caller, &request_id.0, &op.fingerprint, result)
}

async fn do_merge(
    app: &AppState,
    caller: &Caller,
    request_id: &RequestId,
    headers: &HeaderMap,
    op: &OperationRequest,
) -> Result<Response, ApiError> {
    let (source_id, target_requested) = (op.request.source, op.request.target.expect("parsed"));
    let (source, _) = load_named(app, "source-patient-identifier", source_id)?;
    if let Some(survivor) = app.store.superseded_by(source_id)? {
        return Err(ApiError(PdsError::invalid_update(format!(
            "source {source_id} has already been merged into {survivor}; unmerge it first"
        ))));
    }
    if source.is_invalidated() {
        return Err(ApiError(PdsError::invalid_update(format!(
            "source {source_id} is invalidated"
        ))));
    }
    load_named(app, "target-patient-identifier", target_requested)?;
    let target_id = app.store.survivor(target_requested)?;
    if target_id == source_id {
        let why = if target_requested == source_id {
            "a record cannot be merged into itself".to_string()
        } else {
            format!("target {target_requested} was merged into {source_id}: this merge would create a cycle")
        };
        return Err(ApiError(PdsError::invalid_update(why)));
    }
    let (target, _) = load_named(app, "target-patient-identifier", target_id)?;
    if target.is_invalidated() {
        return Err(ApiError(PdsError::invalid_update(format!(
            "target {target_id} is invalidated"
        ))));
    }
    let merged = {
        let mut new_id = new_object_id;
        let mut ctx = PatchContext {
            role: caller.role,
            today: today(),
            new_id: &mut new_id,
        };
        merge::merge(
            &source,
            &target,
            op.request.result_patient.as_ref(),
            &mut ctx,
            &app.schemas,
        )?
    };
    if op.request.preview {
        let outcome = format!(
            "Preview only, nothing was changed: {source_id} would be superseded by {target_id}{}",
            merged.label_note().replace("now carries", "would carry")
        );
        return Ok(fhir(
            StatusCode::OK,
            None,
            parameters(&outcome, merged.target.doc()),
        ));
    }
    let actor = Actor::new(caller, request_id, headers);
    let outcome = format!(
        "Merge completed: {source_id} is superseded by {target_id}{}",
        merged.label_note()
    );
    finish(
        app,
        &actor,
        op,
        Operation::Merge,
        (&source, &target),
        merged,
        outcome,
        false,
    )
    .await
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
    let op = match begin(&app, &caller, &request_id, &headers, body, "$unmerge")? {
        Ok(op) => op,
        Err(replayed) => return Ok(replayed),
    };
    let result = do_unmerge(&app, &caller, &request_id, &headers, &op).await;
    idempotency::unless_duplicate(&app, &caller, &request_id.0, &op.fingerprint, result)
}

async fn do_unmerge(
    app: &AppState,
    caller: &Caller,
    request_id: &RequestId,
    headers: &HeaderMap,
    op: &OperationRequest,
) -> Result<Response, ApiError> {
    let source_id = op.request.source;
    let (source, _) = load_named(app, "source-patient-identifier", source_id)?;
    let Some(target_id) = app.store.superseded_by(source_id)? else {
        return Err(ApiError(PdsError::invalid_update(format!(
            "{source_id} is not superseded in a merge"
        ))));
    };
    if let Some(named) = op.request.target {
        if named != target_id {
            return Err(ApiError(PdsError::invalid_update(format!(
                "{source_id} was merged into {target_id}, not {named}"
            ))));
        }
    }
    let (target, _) = load_named(app, "target", target_id)?;
    let label = label_after_unmerge(app, &target, source_id)?;
    let merged = {
        let mut new_id = new_object_id;
        let mut ctx = PatchContext {
            role: caller.role,
            today: today(),
            new_id: &mut new_id,
        };
        merge::unmerge(&source, &target, label, &mut ctx, &app.schemas)?
    };
    if op.request.preview {
        let outcome = format!(
            "Preview only, nothing was changed: {source_id} would be live again{}",
            merged.label_note().replace("now carries", "would carry")
        );
        return Ok(fhir(
            StatusCode::OK,
            None,
            parameters(&outcome, merged.source.doc()),
        ));
    }
    let actor = Actor::new(caller, request_id, headers);
    let outcome = format!(
        "Unmerge completed: {source_id} is live again and no longer linked to {target_id}{}",
        merged.label_note()
    );
    finish(
        app,
        &actor,
        op,
        Operation::Unmerge,
        (&source, &target),
        merged,
        outcome,
        true,
    )
    .await
}

/// The label the target of a merge gets back when `source` is unmerged from it, if any (see
/// [`confidentiality::after_unmerge`]: never lowered when the label was set or the content
/// changed since the merge, or the target is invalidated).
fn label_after_unmerge(
    app: &AppState,
    target: &Patient,
    source: NhsNumber,
) -> Result<Option<Label>, ApiError> {
    let history = app
        .store
        .history(target.id())?
        .iter()
        .map(parse_stored)
        .collect::<Result<Vec<_>, _>>()?;
    let Some(at) = merge::merged_at(&history, source) else {
        return Ok(None);
    };
    let merged_version = at.version().get();
    let Some(version) = history
        .iter()
        .find(|v| v.version().get() + 1 == merged_version)
    else {
        return Ok(None);
    };
    let label_set_since = app
        .store
        .audit(target.id())?
        .iter()
        .any(|e| e.operation == Operation::Flag.name() && e.version_after > merged_version);
    let mut still_merged = Vec::new();
    for other in merge::other_sources(target, source) {
        if let Some(stored) = app.store.get(other)? {
            still_merged.extend(Label::of(&parse_stored(&stored)?));
        }
    }
    let before = BeforeMerge {
        version,
        label_set_since,
    };
    Ok(confidentiality::after_unmerge(
        target,
        &before,
        &still_merged,
    ))
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
    let entries = app.store.audit(id)?;
    Ok(
        axum::Json(json!({"patient": id.to_string(), "total": entries.len(), "entries": entries}))
            .into_response(),
    )
}
