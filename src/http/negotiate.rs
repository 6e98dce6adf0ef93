//! Content negotiation: the service answers only in FHIR JSON, so a request that asks for
//! anything else — `Accept: application/fhir+xml`, `_format=xml` — gets 406 with an
//! OperationOutcome rather than JSON it did not ask for.
//!
//! FHIR's `_format` parameter overrides `Accept` (R4 §3.1.0.1.9). It is handled here, for every
//! route, and taken out of the query, so no handler has to know about it.

use axum::extract::Request;
use axum::http::{header, HeaderMap, Uri};
use axum::middleware::Next;
use axum::response::Response;

use super::error::outcome_response;
use crate::domain::{outcome::clip, ErrorCode, PdsError};

/// Media types whose answer is the JSON this service writes (`application/json+fhir` is the
/// name DSTU2-era clients still send).
const JSON_TYPES: [&str; 5] = [
    "application/fhir+json",
    "application/json",
    "application/json+fhir",
    "application/*",
    "*/*",
];

/// `_format` values meaning JSON: the short form and the media types.
const JSON_FORMATS: [&str; 4] = [
    "json",
    "application/fhir+json",
    "application/json",
    "application/json+fhir",
];

pub async fn negotiate(mut request: Request, next: Next) -> Response {
    let format = request.uri().query().and_then(format_parameter);
    let refused = match &format {
        Some(format) => check_format(format),
        None => check_accept(request.headers()),
    };
    if let Err(e) = refused {
        return outcome_response(&e);
    }
    if format.is_some() {
        *request.uri_mut() = without_format(request.uri());
    }
    next.run(request).await
}

/// The last `_format` value in a query, if there is one.
fn format_parameter(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "_format")
        .map(|(_, v)| v.into_owned())
        .last()
}

fn media_type(range: &str) -> String {
    range
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// An empty `_format` states no preference.
fn check_format(format: &str) -> Result<(), PdsError> {
    let asked = media_type(format);
    if asked.is_empty() || JSON_FORMATS.contains(&asked.as_str()) {
        return Ok(());
    }
    Err(not_acceptable(format!(
        "the '_format' parameter asked for '{}'",
        clip(format)
    )))
}

/// `Accept` is acceptable when absent, empty, or when any range it gives a non-zero quality
/// covers JSON.
fn check_accept(headers: &HeaderMap) -> Result<(), PdsError> {
    let values: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .map(|v| v.to_str().unwrap_or("(not text)"))
        .collect();
    let ranges: Vec<&str> = values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .collect();
    if ranges.is_empty() || ranges.iter().any(|r| accepts_json(r)) {
        return Ok(());
    }
    Err(not_acceptable(format!(
        "the Accept header asked for '{}'",
        clip(&values.join(", "))
    )))
}

fn accepts_json(range: &str) -> bool {
    let refused = range.split(';').skip(1).any(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k.trim().eq_ignore_ascii_case("q") && v.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
    });
    !refused && JSON_TYPES.contains(&media_type(range).as_str())
}

fn not_acceptable(what: String) -> PdsError {
    PdsError::new(
        ErrorCode::NotAcceptable,
        format!("Not acceptable - this service answers only in JSON (application/fhir+json or application/json); {what}"),
    )
}

/// The URI with every `_format` pair taken out of its query.
fn without_format(uri: &Uri) -> Uri {
    let query = uri.query().unwrap_or_default();
    let kept: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| k != "_format"))
        .finish();
    let path_and_query = if kept.is_empty() {
        uri.path().to_string()
    } else {
        format!("{}?{kept}", uri.path())
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn accept(v: &str) -> Result<(), PdsError> {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        check_accept(&h)
    }

    #[test]
    fn json_and_wildcards_are_accepted() {
        for ok in [
            "application/fhir+json",
            "application/json",
            "application/fhir+json; fhirVersion=4.0",
            "application/fhir+xml;q=0.9, application/fhir+json",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            "application/*",
            "",
        ] {
            assert!(accept(ok).is_ok(), "{ok}");
        }
        assert!(check_accept(&HeaderMap::new()).is_ok());
    }

    #[test]
    fn anything_else_is_406() {
        for bad in [
            "application/fhir+xml",
            "application/xml",
            "text/html",
            "text/*",
            "application/json;q=0, application/xml",
            "*/*;q=0",
        ] {
            let e = accept(bad).unwrap_err();
            assert_eq!(e.status(), 406, "{bad}");
            assert_eq!(e.code.info().code, "UNSUPPORTED_SERVICE");
        }
    }

    #[test]
    fn format_overrides_accept_and_leaves_the_query() {
        assert!(check_format("json").is_ok());
        assert!(check_format("").is_ok());
        assert!(check_format("application/fhir+json;fhirVersion=4.0").is_ok());
        for bad in ["xml", "application/fhir+xml", "html", "ttl"] {
            assert_eq!(check_format(bad).unwrap_err().status(), 406, "{bad}");
        }
        assert_eq!(
            format_parameter("family=Smith&_format=xml"),
            Some("xml".into())
        );
        let uri: Uri = "/Patient?family=Sm%2A&_format=json&birthdate=eq2010-10-22"
            .parse()
            .unwrap();
        let kept = without_format(&uri);
        let pairs: Vec<(String, String)> = form_urlencoded::parse(kept.query().unwrap().as_bytes())
            .into_owned()
            .collect();
        assert_eq!(
            pairs,
            [
                ("family".to_string(), "Sm*".to_string()),
                ("birthdate".into(), "eq2010-10-22".into())
            ]
        );
        assert_eq!(
            without_format(&"/Patient/9000000009?_format=json".parse().unwrap()).to_string(),
            "/Patient/9000000009"
        );
    }
}
