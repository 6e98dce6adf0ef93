//! Rendering a use case's [`Answer`] as an HTTP response, and taking an operation's body.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, FHIR_JSON};
use super::headers::{is_fhir_json_content_type, unsupported_content_type, FHIR_CONTENT_TYPES};
use crate::app::Answer;

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

/// The response for an answer: its status, ETag and Location, a FHIR JSON body.
pub(crate) fn answer(a: Answer) -> Response {
    let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::OK);
    let mut response = fhir(status, a.etag, a.body);
    if let Some(location) = a.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// The bytes of a resource or `Parameters` body, sent as FHIR JSON (or JSON).
pub(crate) fn operation_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, ApiError> {
    if !is_fhir_json_content_type(headers) {
        return Err(ApiError(unsupported_content_type(
            headers,
            FHIR_CONTENT_TYPES,
        )));
    }
    body.map_err(super::patient::body_rejection)
}
