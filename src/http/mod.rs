//! The HTTP layer: routes, headers, status codes and OperationOutcome rendering. Handlers parse a
//! request, call one use case of [`crate::app`] and render its answer; they know nothing of the
//! store beyond handing it to the use cases.

pub mod backoffice;
pub mod caller;
pub mod capability;
pub mod case;
pub mod console;
pub mod error;
pub mod export;
pub mod headers;
pub mod history;
pub mod identity;
pub mod metrics;
mod middleware;
pub mod negotiate;
pub mod openapi;
pub mod patient;
pub mod query;
pub mod rate_limit;
pub mod render;

use std::future::Future;
use std::sync::Arc;

use axum::http::Uri;
use axum::routing::get;
use axum::{Json, Router};
use tower_http::catch_panic::CatchPanicLayer;

use crate::app::App;
use crate::auth::KeySet;
use crate::domain::ErrorCode;
use crate::store::PatientStore;
use error::ApiError;

/// Largest request body accepted (larger → 413 OperationOutcome).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The PDS base path; every FHIR route is served under it as well as at `/`.
pub const PDS_BASE: &str = "/personal-demographics/FHIR/R4";

/// What every handler shares: the [`Settings`] behind one `Arc`, so handing the state to each
/// extractor costs one reference count, not one per field (measurable on the GET path).
#[derive(Clone)]
pub struct AppState(Arc<Settings>);

impl From<Settings> for AppState {
    fn from(settings: Settings) -> Self {
        AppState(Arc::new(settings))
    }
}

impl std::ops::Deref for AppState {
    type Target = Settings;
    fn deref(&self) -> &Settings {
        &self.0
    }
}

/// The service's use cases and the settings of its HTTP interface.
pub struct Settings {
    /// The use cases, with the store and the service's settings.
    pub app: App,
    pub keys: Arc<KeySet>,
    /// A request still unanswered after this gets 503 SERVICE_UNAVAILABLE (PDS: 10 s); a change
    /// it started may still complete — retry with the same X-Request-ID to get its answer.
    pub request_timeout: std::time::Duration,
    /// Per-client rate limit, if on.
    pub rate_limit: Option<Arc<rate_limit::RateLimiter>>,
    /// A client gets this long to send its request headers (else the connection is closed) and
    /// again its body (else 408), so slow or stalled clients cannot hold connections and handlers.
    pub client_timeout: std::time::Duration,
}

impl Settings {
    pub fn new(store: Arc<dyn PatientStore>, keys: KeySet) -> Self {
        let mut app = App::new(store);
        app.base_url = format!("http://localhost{PDS_BASE}");
        Settings {
            app,
            keys: Arc::new(keys),
            request_timeout: std::time::Duration::from_secs(10),
            rate_limit: None,
            client_timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// The whole application as an axum router.
pub fn router(state: AppState) -> Router {
    let timeout = state.request_timeout;
    let client_timeout = state.client_timeout;
    let state_for_console = state.clone();
    let fhir = Router::new()
        .route(
            "/Patient",
            get(patient::search_patients).post(identity::create),
        )
        .route(
            "/Patient/$change-identity",
            axum::routing::post(identity::change_identity),
        )
        .route(
            "/Patient/$invalidate",
            axum::routing::post(identity::invalidate),
        )
        .route(
            "/Patient/$revalidate",
            axum::routing::post(identity::revalidate),
        )
        .route("/Patient/", get(missing_id).patch(missing_id))
        .route(
            "/Patient/{id}",
            get(patient::get_patient).patch(patient::patch_patient),
        )
        .route("/Patient/{id}/RelatedPerson", get(patient::related_people))
        .route("/Patient/{id}/_history", get(history::history))
        .route("/Patient/{id}/_history/{vid}", get(history::version))
        .route("/Patient/$merge", axum::routing::post(backoffice::merge))
        .route(
            "/Patient/$unmerge",
            axum::routing::post(backoffice::unmerge),
        )
        .route("/Task", get(case::search_tasks).post(case::create_task))
        .route("/Task/{id}", get(case::read_task).patch(case::patch_task))
        .route("/Task/{id}/_history", get(case::task_history))
        .route("/Communication", get(case::search_communications))
        .route(
            "/Communication/{id}",
            get(case::read_communication).patch(case::patch_communication),
        )
        .route("/CodeSystem/case-kind", get(case::case_kinds))
        .route("/_audit", get(backoffice::audit))
        .route("/AuditEvent", get(backoffice::audit_events))
        .route("/metadata", get(capability::metadata))
        .route(
            "/OperationDefinition/{id}",
            get(capability::read_operation_definition),
        )
        .route_layer(axum::middleware::from_fn(negotiate::negotiate))
        // health checks answer whatever the prober accepts
        .route("/_ping", get(ping))
        .merge(bulk_export())
        .route("/_status", get(status))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    let docs = utoipa_swagger_ui::SwaggerUi::new("/docs")
        .external_url_unchecked("/openapi.json", openapi::openapi_json());
    let console = console::router(state_for_console);
    Router::new()
        .merge(fhir.clone())
        .nest(PDS_BASE, fhir)
        .merge(docs)
        .merge(console)
        .route_layer(axum::middleware::from_fn(middleware::matched))
        .fallback(unknown_path)
        .layer(axum::middleware::from_fn_with_state(
            timeout,
            middleware::deadline,
        ))
        .layer(axum::middleware::from_fn_with_state(
            client_timeout,
            middleware::around,
        ))
        .layer(CatchPanicLayer::custom(middleware::panic_response))
}

/// FHIR Bulk Data export (back office), one group: the kick-off and status answer JSON and
/// are content-negotiated like the FHIR routes; the output file is NDJSON, outside that.
fn bulk_export() -> Router<AppState> {
    Router::new()
        .route("/Patient/$export", get(export::kick_off))
        .route("/_export/{id}", get(export::status).delete(export::delete))
        .route_layer(axum::middleware::from_fn(negotiate::negotiate))
        .route("/_export/{id}/Patient.ndjson", get(export::file))
}

/// The HTTP parser's own limit on request headers: beyond it the connection gets a bare 431 and
/// is closed. Below it, more than [`middleware::MAX_HEADERS`] get a 431 OperationOutcome.
pub const HARD_MAX_HEADERS: usize = 200;

/// Serves until `shutdown` completes, then stops accepting, lets in-flight requests finish and
/// closes idle connections.
///
/// A hand-written accept loop rather than `axum::serve`, which sets no header read timeout: a
/// client that opens connections and trickles header bytes (slowloris) would hold each forever.
/// Here every connection gets [`AppState::client_timeout`] to deliver its request headers.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::extract::ConnectInfo;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;

    let header_timeout = state.client_timeout;
    let app = router(state);
    let (closing, closed) = tokio::sync::watch::channel(());
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // out of file descriptors and the like: back off rather than spin
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(request.map(axum::body::Body::new))
        });
        let mut closed = closed.clone();
        connections.spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .max_headers(HARD_MAX_HEADERS)
                .serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = closed.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = closing.send(());
    while connections.join_next().await.is_some() {}
    Ok(())
}

#[utoipa::path(
    get,
    path = "/_ping",
    tag = "Service",
    summary = "Liveness check",
    responses((status = 200, description = "The service is running", body = openapi::docs::Ping))
)]
pub async fn ping() -> Json<openapi::docs::Ping> {
    Json(openapi::docs::Ping {
        status: "pass".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

#[utoipa::path(
    get,
    path = "/_status",
    tag = "Service",
    summary = "Readiness check",
    description = "200 when the store can be read and written now (a read and a small durable \
                   write); 503 SERVICE_UNAVAILABLE saying why not (disk full, PostgreSQL \
                   unreachable, …). No X-Request-ID needed.",
    responses(
        (status = 200, description = "Ready: the store is readable and writable", body = openapi::docs::Status),
        (status = 503, description = "SERVICE_UNAVAILABLE: not ready, the diagnostics say why", body = openapi::docs::OperationOutcome, content_type = "application/fhir+json", example = json!(openapi::docs::example_status_503())),
    )
)]
pub async fn status(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<Json<openapi::docs::Status>, ApiError> {
    let started = std::time::Instant::now();
    match state.app.readiness().await {
        Ok(()) => Ok(Json(openapi::docs::Status {
            status: "pass".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            checks: openapi::docs::StatusChecks {
                store: openapi::docs::StatusCheck {
                    status: "pass".into(),
                    response_time_ms: started.elapsed().as_millis() as u64,
                },
            },
        })),
        Err(reason) => {
            tracing::warn!(%reason, "not ready");
            Err(ApiError::new(
                ErrorCode::ServiceUnavailable,
                format!("Not ready: {reason}"),
            ))
        }
    }
}

/// `GET /Patient/` — PDS answers a missing id with UNSUPPORTED_SERVICE.
async fn missing_id() -> ApiError {
    ApiError::bare(ErrorCode::UnsupportedService)
}

/// PDS answers unsupported methods (e.g. PUT on a Patient) with 400 UNSUPPORTED_SERVICE.
async fn method_not_allowed() -> ApiError {
    ApiError::bare(ErrorCode::UnsupportedService)
}

/// Paths PDS does not route: 400 UNSUPPORTED_REQUEST naming the path.
async fn unknown_path(uri: Uri) -> ApiError {
    ApiError::new(
        ErrorCode::UnsupportedRequest,
        format!(
            "Unsupported path - '{}'",
            crate::domain::outcome::clip(uri.path())
        ),
    )
}
