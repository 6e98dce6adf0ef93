//! Idempotent retries: a change request re-sent with the same `X-Request-ID` gets the
//! original response and changes nothing again (PDS asks clients to retry timed-out requests
//! with the same id). The response is saved in the same transaction as the change, as a
//! reference to the record version it showed, and rendered again for each retry.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::response::Response;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::render;
use super::AppState;
use crate::auth::Caller;
use crate::domain::{ErrorCode, PdsError};
use crate::store::{RequestRecord, SavedResponse};

/// Identifies "the same request": who sends it (subject and role, so a response is never
/// replayed to someone else) and what (method, path, precondition, body).
pub fn fingerprint(
    caller: &Caller,
    method: &str,
    path: &str,
    precondition: &str,
    body: &[u8],
) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [
        caller.subject.as_bytes(),
        caller.role.name().as_bytes(),
        method.as_bytes(),
        path.as_bytes(),
        precondition.as_bytes(),
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.update(body);
    h.finalize().into()
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Saved requests older than this (Unix seconds) are forgotten.
pub fn forget_before(app: &AppState) -> u64 {
    now_secs().saturating_sub(app.idempotency_window.as_secs())
}

pub fn reused(request_id: &str) -> ApiError {
    ApiError(PdsError::new(
        ErrorCode::RequestIdReused,
        format!(
            "Invalid value - '{}' in header 'X-Request-ID' - it was already used for a different request; use a new X-Request-ID for a new request",
            crate::domain::outcome::clip(request_id)
        ),
    ))
}

/// The answer to an earlier identical request, if one is saved within the window — rendered
/// again for the caller as the record stands now ([`render::replayed`]).
pub fn replay(
    app: &AppState,
    caller: &Caller,
    request_id: &str,
    fingerprint: &[u8; 32],
) -> Result<Option<Response>, ApiError> {
    let Some(saved) = app.store.request(request_id)? else {
        return Ok(None);
    };
    if saved.saved_at < forget_before(app) {
        return Ok(None);
    }
    if &saved.fingerprint != fingerprint {
        return Err(reused(request_id));
    }
    render::replayed(app, caller.role, &saved.response).map(Some)
}

pub fn record(request_id: &str, fingerprint: [u8; 32], response: SavedResponse) -> RequestRecord {
    RequestRecord {
        request_id: request_id.to_string(),
        fingerprint,
        saved_at: now_secs(),
        response,
    }
}

/// A request that failed after its retry check may have lost a race with an identical copy of
/// itself (which changed the version it expected, say). If that copy has saved its answer, the
/// answer is this request's too.
pub fn unless_duplicate(
    app: &AppState,
    caller: &Caller,
    request_id: &str,
    fingerprint: &[u8; 32],
    result: Result<Response, ApiError>,
) -> Result<Response, ApiError> {
    match result {
        Ok(r) => Ok(r),
        Err(e) => match replay(app, caller, request_id, fingerprint) {
            Ok(Some(original)) => Ok(original),
            _ => Err(e),
        },
    }
}

/// The JSON body of an operation (`POST`), after its retry check: `Ok(Err(response))` is the
/// saved answer of an earlier identical request. Also returns the request's fingerprint.
pub fn read_json_body(
    app: &AppState,
    caller: &Caller,
    request_id: &super::headers::RequestId,
    headers: &axum::http::HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
    name: &str,
) -> Result<Result<(serde_json::Value, [u8; 32]), Response>, ApiError> {
    if !super::headers::is_fhir_json_content_type(headers) {
        return Err(ApiError(super::headers::unsupported_content_type(
            headers,
            super::headers::FHIR_CONTENT_TYPES,
        )));
    }
    let bytes = body.map_err(super::patient::body_rejection)?;
    let fingerprint = fingerprint(caller, "POST", name, "", &bytes);
    if let Some(original) = replay(app, caller, &request_id.0, &fingerprint)? {
        return Ok(Err(original));
    }
    let value = super::json::parse(&bytes).map_err(|e| {
        ApiError(PdsError::invalid_value(
            &format!("the request body is not valid JSON - {e}"),
            "body",
        ))
    })?;
    Ok(Ok((value, fingerprint)))
}
