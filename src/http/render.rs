//! Response bodies: a record as the caller's role may see it ([`crate::domain::view`]), the
//! Parameters answer of an operation, and a saved answer rendered again for a retry.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::error::{ApiError, FHIR_JSON};
use super::AppState;
use crate::domain::view::{self, RecordHistory};
use crate::domain::{ErrorCode, NhsNumber, Patient, Role, Version};
use crate::store::{SavedBody, SavedResponse, StoreError, StoredRecord};

pub(crate) fn parse_stored(record: &StoredRecord) -> Result<Patient, ApiError> {
    Ok(Patient::from_stored(&record.json).map_err(StoreError::Corrupt)?)
}

/// The current record's bytes as `role` may see them. Most records need no parsing at all.
pub(crate) fn current(record: StoredRecord, role: Role) -> Result<Vec<u8>, ApiError> {
    if role.is_back_office() || !(record.restricted || record.merged) {
        return Ok(record.json); // shown as stored: the bytes go out without a copy
    }
    version(&record, role, false)
}

/// One version's bytes as `role` may see them; `redact` applies the restricted view whatever
/// the version's own label (see [`RecordHistory::redacts`]).
pub(crate) fn version(
    record: &StoredRecord,
    role: Role,
    redact: bool,
) -> Result<Vec<u8>, ApiError> {
    let patient = parse_stored(record)?;
    Ok(to_bytes(&view::for_role(patient.doc(), role, redact)))
}

fn to_bytes(doc: &Map<String, Value>) -> Vec<u8> {
    serde_json::to_vec(doc).expect("a JSON map serialises")
}

/// The Parameters answer of an operation: an outcome sentence and the resulting record (as the
/// caller may see it).
pub(crate) fn parameters(outcome: &str, result: &Map<String, Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({"resourceType": "Parameters", "parameter": [
        {"name": "outcome", "resource": {"resourceType": "OperationOutcome", "issue": [
            {"severity": "information", "code": "informational", "diagnostics": outcome}]}},
        {"name": "result", "resource": result}]}))
    .expect("JSON")
}

/// A FHIR JSON response, with an ETag when given.
pub(crate) fn fhir(status: StatusCode, etag: Option<String>, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    if let Some(etag) = etag.and_then(|e| HeaderValue::from_str(&e).ok()) {
        headers.insert(header::ETAG, etag);
    }
    response
}

/// The response a saved answer stands for, its body drawn from `shown` (the record version it
/// refers to, as the caller may see it now).
fn respond(saved: &SavedResponse, shown: &Map<String, Value>) -> Response {
    let body = match &saved.body {
        SavedBody::Patient { .. } => to_bytes(shown),
        SavedBody::Parameters { outcome, .. } => parameters(outcome, shown),
    };
    let status = StatusCode::from_u16(saved.status).unwrap_or(StatusCode::OK);
    let mut response = fhir(status, saved.etag.clone(), body);
    if let Some(location) = saved
        .location
        .as_deref()
        .and_then(|l| HeaderValue::from_str(l).ok())
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// The answer to a change that was just applied: the record it refers to is in hand and is
/// the current version, so its own label decides the view.
pub(crate) fn applied(saved: &SavedResponse, record: &Patient, role: Role) -> Response {
    respond(saved, &view::for_role(record.doc(), role, false))
}

/// The answer to a retry: the saved answer rendered again from the version it refers to, through
/// the view rules as they stand now — a record restricted since the first answer comes back
/// redacted, one invalidated since is 404 INVALIDATED_RESOURCE — for the same caller (the
/// request fingerprint includes subject and role).
pub(crate) fn replayed(
    app: &AppState,
    role: Role,
    saved: &SavedResponse,
) -> Result<Response, ApiError> {
    let (id, v) = saved.body.record();
    let corrupt = || StoreError::Corrupt(format!("a saved response refers to {id} v{v}"));
    let id = NhsNumber::parse(id).map_err(|_| corrupt())?;
    let v = Version::new(v).ok_or_else(corrupt)?;
    let record = app.store.get_version(id, v)?.ok_or_else(corrupt)?;
    let patient = parse_stored(&record)?;
    if role.is_back_office() {
        return Ok(respond(saved, patient.doc()));
    }
    let now = app.store.get(id)?.ok_or_else(corrupt)?;
    if now.invalidated {
        return Err(ApiError::bare(ErrorCode::InvalidatedResource));
    }
    let versions = app.store.history(id)?;
    let seen = RecordHistory::of(versions.iter().map(|v| (v.version.get(), v.restricted)));
    let redact = seen.redacts(v.get(), record.restricted);
    Ok(respond(saved, &view::for_role(patient.doc(), role, redact)))
}
