//! What happens around every request: a span carrying its X-Request-ID and X-Correlation-ID
//! (so every line logged for it has them), one log line naming its route template (never the
//! raw path, which may hold an NHS number), the ids echoed, and a guarantee that no error
//! leaves without an OperationOutcome body.

use std::any::Any;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::HttpBody as _;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;

use super::error::{outcome_response, FHIR_JSON};
use super::headers::{X_CORRELATION_ID, X_REQUEST_ID};
use crate::domain::{ErrorCode, PdsError};

/// Most request headers accepted, and most bytes of them (names + values); more → 431.
/// (The HTTP parser itself closes the connection at [`super::HARD_MAX_HEADERS`].)
pub const MAX_HEADERS: usize = 100;
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Where the router leaves the template of the route a request matched (see [`matched`]), for
/// [`around`], which runs before routing, to log it.
#[derive(Clone, Default)]
struct Route(Arc<OnceLock<MatchedPath>>);

/// What a request that matched no route is logged as (its path may hold anything).
pub const UNMATCHED: &str = "(unmatched)";

/// A route layer: records the matched route's template for [`around`].
pub async fn matched(request: Request, next: Next) -> Response {
    if let (Some(slot), Some(path)) = (
        request.extensions().get::<Route>(),
        request.extensions().get::<MatchedPath>(),
    ) {
        let _ = slot.0.set(path.clone());
    }
    next.run(request).await
}

/// A caller-chosen id as logged: visible ASCII only, at most 64 characters.
fn loggable_id(value: &HeaderValue) -> String {
    value
        .as_bytes()
        .iter()
        .take(64)
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
        .collect()
}

pub async fn around(
    State(client_timeout): State<Duration>,
    mut request: Request,
    next: Next,
) -> Response {
    use tracing::Instrument;
    let started = Instant::now();
    let method = request.method().clone();
    let route = Route::default();
    request.extensions_mut().insert(route.clone());
    let span = {
        let id = |name: &str| {
            request
                .headers()
                .get(name)
                .filter(|v| !v.is_empty())
                .map(loggable_id)
        };
        tracing::info_span!(
            "request",
            request_id = id(X_REQUEST_ID),
            correlation_id = id(X_CORRELATION_ID),
        )
    };
    let echo: Vec<(&'static str, HeaderValue)> = [X_REQUEST_ID, X_CORRELATION_ID]
        .into_iter()
        .filter_map(|name| {
            request
                .headers()
                .get(name)
                .filter(|v| !v.is_empty())
                .map(|v| (name, v.clone()))
        })
        .collect();

    let mut response = async {
        match receive(request, client_timeout).await {
            Ok(request) => next.run(request).await,
            Err(e) => outcome_response(&e),
        }
    }
    .instrument(span.clone())
    .await;
    let status = response.status();
    if (status.is_client_error() || status.is_server_error()) && !is_fhir(&response) {
        response = outcome_response(&fallback_error(status));
    }
    for (name, value) in echo {
        response.headers_mut().insert(name, value);
    }
    let route = route.0.get().map_or(UNMATCHED, MatchedPath::as_str);
    let elapsed = started.elapsed();
    crate::telemetry::request(route, method.as_str(), response.status().as_u16(), elapsed);
    tracing::info!(
        parent: &span,
        %method,
        route,
        status = response.status().as_u16(),
        micros = elapsed.as_micros() as u64,
        "request"
    );
    response
}

/// What a request may take before it is answered 503 SERVICE_UNAVAILABLE (with
/// `Retry-After`): a change (PATCH, POST) may set its own wait in `X-Sync-Wait`, seconds from
/// 0.25 to 29 as PDS allows; absent or outside that range — where PDS's proxy puts 10 — the
/// server's `--request-timeout` (default 10 s). A change cut short may still complete: its
/// retry with the same X-Request-ID gets its answer.
pub async fn deadline(State(default): State<Duration>, request: Request, next: Next) -> Response {
    let wait = if matches!(*request.method(), Method::PATCH | Method::POST) {
        sync_wait(request.headers()).unwrap_or(default)
    } else {
        default
    };
    match tokio::time::timeout(wait, next.run(request)).await {
        Ok(response) => response,
        Err(_) => outcome_response(&fallback_error(StatusCode::SERVICE_UNAVAILABLE)),
    }
}

pub const X_SYNC_WAIT: &str = "x-sync-wait";

/// `X-Sync-Wait` when it is a number of seconds PDS accepts (0.25–29).
fn sync_wait(headers: &axum::http::HeaderMap) -> Option<Duration> {
    let seconds: f64 = headers
        .get(X_SYNC_WAIT)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (0.25..=29.0)
        .contains(&seconds)
        .then(|| Duration::from_secs_f64(seconds))
}

/// Checks the headers and reads the whole body before any handler runs, so a client that
/// trickles its body gets 408 after `client_timeout` instead of holding a handler (and its
/// request timeout) hostage, and an oversized body is refused before anything else happens.
async fn receive(request: Request, client_timeout: Duration) -> Result<Request, PdsError> {
    let headers = request.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > MAX_HEADERS {
        return Err(PdsError::new(
            ErrorCode::HeadersTooLarge,
            format!("Invalid value - more than {MAX_HEADERS} request headers"),
        ));
    }
    if bytes > MAX_HEADER_BYTES {
        return Err(PdsError::new(
            ErrorCode::HeadersTooLarge,
            format!("Invalid value - the request headers are larger than {MAX_HEADER_BYTES} bytes"),
        ));
    }
    if request.body().size_hint().exact() == Some(0) {
        return Ok(request);
    }
    let (parts, body) = request.into_parts();
    let limited = http_body_util::Limited::new(body, super::BODY_LIMIT);
    match tokio::time::timeout(client_timeout, limited.collect()).await {
        Err(_) => Err(PdsError::new(
            ErrorCode::RequestTimeout,
            format!(
                "The request body was not received within {} seconds",
                client_timeout.as_secs_f64()
            ),
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(_)) => Err(PdsError::new(
            ErrorCode::UnsupportedRequest,
            "The request body could not be read",
        )),
        Ok(Ok(collected)) => Ok(Request::from_parts(
            parts,
            axum::body::Body::from(collected.to_bytes()),
        )),
    }
}

fn too_large() -> PdsError {
    PdsError::new(
        ErrorCode::PayloadTooLarge,
        format!(
            "Invalid value - the request body is larger than {} bytes",
            super::BODY_LIMIT
        ),
    )
}

/// A response that already says what went wrong: FHIR JSON, or one of the console's HTML pages.
fn is_fhir(response: &Response) -> bool {
    let ct = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    ct == Some(FHIR_JSON) || ct == Some(super::console::HTML)
}

/// The OperationOutcome for an error some layer produced without one.
fn fallback_error(status: StatusCode) -> PdsError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => too_large(),
        StatusCode::METHOD_NOT_ALLOWED | StatusCode::UNSUPPORTED_MEDIA_TYPE => PdsError::bare(ErrorCode::UnsupportedService),
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => PdsError::new(
            ErrorCode::ServiceUnavailable,
            "The request did not complete in time. Using the same 'X-Request-ID' header, retry your request after the time specified by the 'Retry-After' response header.",
        ),
        s if s.is_client_error() => PdsError::new(ErrorCode::UnsupportedRequest, format!("The request could not be processed ({s})")),
        _ => PdsError::new(ErrorCode::UnknownError, "An unknown error occurred processing this request."),
    }
}

/// A handler panicked: answer 500 UNKNOWN_ERROR (the panic itself is logged, not sent).
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(detail, "handler panicked");
    outcome_response(&PdsError::new(
        ErrorCode::UnknownError,
        "An unknown error occurred processing this request.",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_wait_is_taken_within_pds_bounds_only() {
        let h = |v: &str| {
            let mut m = axum::http::HeaderMap::new();
            m.insert(X_SYNC_WAIT, HeaderValue::from_str(v).unwrap());
            sync_wait(&m)
        };
        assert_eq!(h("0.25"), Some(Duration::from_millis(250)));
        assert_eq!(h("29"), Some(Duration::from_secs(29)));
        assert_eq!(h(" 2.5 "), Some(Duration::from_millis(2500)));
        for out in ["0.2", "29.5", "-1", "NaN", "inf", "ten", ""] {
            assert_eq!(h(out), None, "{out}");
        }
        assert_eq!(sync_wait(&axum::http::HeaderMap::new()), None);
    }
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;
    use tower_http::catch_panic::CatchPanicLayer;

    #[tokio::test]
    async fn a_panicking_handler_answers_unknown_error() {
        let app = Router::new()
            .route(
                "/boom",
                get(|| async { panic!("secret detail") as StatusCode }),
            )
            .layer(axum::middleware::from_fn_with_state(
                Duration::from_secs(10),
                around,
            ))
            .layer(CatchPanicLayer::custom(panic_response));
        let response = app
            .oneshot(Request::get("/boom").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()[header::CONTENT_TYPE], FHIR_JSON);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.contains("UNKNOWN_ERROR") && !text.contains("secret detail"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn errors_without_a_body_become_operation_outcomes() {
        let app = Router::new()
            .route("/teapot", get(|| async { StatusCode::IM_A_TEAPOT }))
            .layer(axum::middleware::from_fn_with_state(
                Duration::from_secs(10),
                around,
            ));
        let response = app
            .oneshot(
                Request::get("/teapot")
                    .header(X_CORRELATION_ID, "c-9")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.headers()[header::CONTENT_TYPE], FHIR_JSON);
        assert_eq!(response.headers()[X_CORRELATION_ID], "c-9");
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&body).contains("OperationOutcome"));
    }
}
