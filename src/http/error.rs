//! One error type for every handler: a PDS error rendered as an OperationOutcome.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::domain::{ErrorCode, PdsError};
use crate::store::StoreError;

pub const FHIR_JSON: &str = "application/fhir+json";

/// An error response. Handlers return `Result<_, ApiError>`; `?` converts domain and store
/// errors.
#[derive(Debug)]
pub struct ApiError(pub PdsError);

impl ApiError {
    pub fn bare(code: ErrorCode) -> Self {
        ApiError(PdsError::bare(code))
    }

    pub fn new(code: ErrorCode, diagnostics: impl Into<String>) -> Self {
        ApiError(PdsError::new(code, diagnostics))
    }
}

impl From<PdsError> for ApiError {
    fn from(e: PdsError) -> Self {
        ApiError(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        outcome_response(&self.0)
    }
}

/// The response for a PDS error: status, FHIR content type, OperationOutcome body, and
/// `Retry-After` on 503 as the PDS proxy sends it.
pub fn outcome_response(e: &PdsError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(&e.to_operation_outcome()).expect("JSON");
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    super::render::private(headers);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        // buckets refill at least one request a second
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}
