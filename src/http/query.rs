//! Query strings: decoded pairs, and the refusal of parameters a route does not take — FHIR
//! result parameters (`_count`, `_sort`…) included: never silently ignored.

use axum::http::Uri;

use super::error::ApiError;

/// The query's name/value pairs, decoded.
pub fn pairs(uri: &Uri) -> Vec<(String, String)> {
    form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// ADDITIONAL_PROPERTIES naming every parameter not in `taken` (empty pairs are ignored, as
/// in search).
pub fn only(uri: &Uri, taken: &[&str]) -> Result<(), ApiError> {
    let pairs = pairs(uri);
    crate::domain::query::refuse_unknown(&crate::domain::query::given(&pairs), taken)
        .map_err(ApiError)
}
