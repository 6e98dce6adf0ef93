//! Rendering a use case's [`Answer`] as an HTTP response, and taking an operation's body.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, FHIR_JSON};
use super::headers::{is_fhir_json_content_type, unsupported_content_type, FHIR_CONTENT_TYPES};
use crate::app::Answer;

/// Personal data is never kept by a shared or browser cache: a browser caches by URL, not by
/// token, and would hand one role's copy of a record to another (`Vary` says so to any cache
/// that keeps it anyway). Conditional reads still work for clients that keep their own copy.
pub(crate) fn private(headers: &mut axum::http::HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::VARY, HeaderValue::from_static("Authorization"));
}

/// A FHIR JSON response, with an ETag when given.
pub(crate) fn fhir(status: StatusCode, etag: Option<String>, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    private(headers);
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

/// A record's response with `Last-Modified` (RFC 9110 HTTP-date) from its `meta.lastUpdated`,
/// so HTTP caches and clients can tell when it changed.
pub(crate) fn record(a: Answer) -> Response {
    let modified = crate::domain::patient::last_updated_of(&a.body).and_then(http_date);
    let mut response = answer(a);
    if let Some(modified) = modified {
        response
            .headers_mut()
            .insert(header::LAST_MODIFIED, modified);
    }
    response
}

fn http_date(instant: &str) -> Option<HeaderValue> {
    use time::format_description::well_known::Rfc3339;
    let t = time::OffsetDateTime::parse(instant, &Rfc3339).ok()?;
    let text = t
        .to_offset(time::UtcOffset::UTC)
        .format(time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        ))
        .ok()?;
    HeaderValue::from_str(&text).ok()
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

#[cfg(test)]
mod tests {
    #[test]
    fn last_modified_is_an_http_date_in_gmt() {
        assert_eq!(
            super::http_date("2026-12-04T01:40:07+01:00").unwrap(),
            "Fri, 04 Dec 2026 00:40:07 GMT"
        );
        assert_eq!(
            super::http_date("2026-12-04T01:40:07Z").unwrap(),
            "Fri, 04 Dec 2026 01:40:07 GMT"
        );
        assert!(super::http_date("yesterday").is_none());
    }
}
