//! FHIR Bulk Data export of the current records (back office), the asynchronous pattern of
//! the Bulk Data Access IG: kick-off, status polling, the NDJSON output file, deletion. The
//! jobs are [`crate::app::export`]'s.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::headers::RequestId;
use super::openapi::docs;
use super::AppState;
use crate::app::export::ExportStatus;
use crate::auth::Caller;
use crate::domain::{ErrorCode, PdsError};

pub const NDJSON: &str = "application/fhir+ndjson";

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct KickOffParams {
    /// `application/fhir+ndjson` (also `application/ndjson`, `ndjson`): the only format.
    #[serde(rename = "_outputFormat")]
    #[param(
        required = false,
        pattern = "^(application/fhir\\+ndjson|application/ndjson|ndjson)$"
    )]
    output_format: Option<String>,
    /// `Patient`: the only type exported.
    #[serde(rename = "_type")]
    #[param(required = false, pattern = "^Patient$")]
    r#type: Option<String>,
    /// Only records whose `meta.lastUpdated` is at or after this instant (RFC 3339 with a time
    /// zone). Records written before versions were dated have no `meta.lastUpdated` and are
    /// always included.
    #[serde(rename = "_since")]
    #[param(required = false, example = "2026-01-01T00:00:00Z")]
    since: Option<String>,
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct PreferHeader {
    /// Must be `respond-async`: an export always runs in the background.
    #[serde(rename = "Prefer")]
    #[param(pattern = "^respond-async$", example = "respond-async")]
    prefer: String,
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct JobParam {
    /// The job id, from the kick-off's `Content-Location`.
    #[param(example = "0b6f3e8a-3c1d-4b8e-9a4f-2f5d6c7e8a9b")]
    id: String,
}

#[utoipa::path(
    get,
    path = "/Patient/$export",
    operation_id = "export_kick_off",
    tag = "Bulk export",
    security(("bearer" = [])),
    summary = "Start a bulk export of the current records (back office)",
    description = "FHIR Bulk Data Access (v2) kick-off, asynchronous: answers 202 at once with `Content-Location`, the job's status URL; the job writes every current record — unredacted, restricted ones included, exactly as `pds-facade export` writes them — as NDJSON. Poll the status URL until 200 (its manifest names the output file), download the file, then DELETE the job. At most 4 jobs run at once (more: 429 with Retry-After). Jobs live in the serving process: they do not survive a restart, and expire (files removed) 24 hours after they finish (`--export-expiry`).",
    params(KickOffParams, PreferHeader, docs::RequestHeaders),
    responses(
        (status = 202, description = "Accepted: the job runs in the background",
            headers(("Content-Location" = String, description = "The job's status URL, `<base>/_export/<job id>`"))),
        (status = 400, description = "MISSING_VALUE (`Prefer: respond-async`, X-Request-ID), INVALID_VALUE (`_outputFormat`, `_type`, `_since`, X-Request-ID), ADDITIONAL_PROPERTIES (another parameter)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_export_400())),
        (status = 401, description = "ACCESS_DENIED (bad token)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_401())),
        (status = 403, description = "ACCESS_DENIED (not back office)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_403_role())),
        (status = 500, description = "UNKNOWN_ERROR (the export directory cannot be created)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_500())),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_503())),
    )
)]
pub async fn kick_off(
    State(app): State<AppState>,
    caller: Caller,
    _request_id: RequestId,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    crate::app::require_back_office(&caller)?;
    let asynchronous = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("respond-async"));
    if !asynchronous {
        return Err(ApiError(PdsError::new(
            ErrorCode::MissingValue,
            "Invalid request with error - an export runs asynchronously: send the header 'Prefer: respond-async'",
        )));
    }
    let query = uri.query().unwrap_or_default();
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let request = crate::domain::export::parse(&pairs)?;
    let id = app.app.start_export(&caller, request, query).await?;
    let location = format!("{}/_export/{id}", app.app.base_url);
    let mut response = StatusCode::ACCEPTED.into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response
            .headers_mut()
            .insert(header::CONTENT_LOCATION, location);
    }
    Ok(response)
}

#[utoipa::path(
    get,
    path = "/_export/{id}",
    operation_id = "export_status",
    tag = "Bulk export",
    security(("bearer" = [])),
    summary = "The status of a bulk export (back office)",
    description = "202 with `X-Progress` while the job runs; 200 with the Bulk Data completion manifest when it is done (the output file's URL and record count); 500 with an OperationOutcome if it failed.",
    params(JobParam, docs::RequestHeaders),
    responses(
        (status = 200, description = "Complete: the manifest", body = docs::ExportManifest, content_type = "application/json"),
        (status = 202, description = "Still running",
            headers(("X-Progress" = String, description = "How far it is, e.g. `40% (400 of 1000 records read)`"),
                    ("Retry-After" = String, description = "Seconds to wait before polling again"))),
        (status = 400, description = "MISSING_VALUE / INVALID_VALUE (X-Request-ID)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_get_400())),
        (status = 401, description = "ACCESS_DENIED (bad token)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_401())),
        (status = 403, description = "ACCESS_DENIED (not back office)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_403_role())),
        (status = 404, description = "RESOURCE_NOT_FOUND (no such job: never started, deleted, expired, or started before a restart)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_export_404())),
        (status = 500, description = "UNKNOWN_ERROR (the job failed)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_500())),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_503())),
    )
)]
pub async fn status(
    State(app): State<AppState>,
    caller: Caller,
    _request_id: RequestId,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(match app.app.export_status(&caller, &id)? {
        ExportStatus::Running { read, total } => {
            let percent = (read * 100).checked_div(total).unwrap_or(0).min(99);
            let progress = format!("{percent}% ({read} of {total} records read)");
            let mut response = StatusCode::ACCEPTED.into_response();
            let headers = response.headers_mut();
            if let Ok(progress) = HeaderValue::from_str(&progress) {
                headers.insert("x-progress", progress);
            }
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
        ExportStatus::Complete(manifest) => axum::Json(manifest).into_response(),
        ExportStatus::Failed(why) => {
            return Err(ApiError::new(
                ErrorCode::UnknownError,
                format!("The export failed: {why}"),
            ))
        }
    })
}

#[utoipa::path(
    delete,
    path = "/_export/{id}",
    operation_id = "export_delete",
    tag = "Bulk export",
    security(("bearer" = [])),
    summary = "Cancel or delete a bulk export (back office)",
    description = "Stops the job if it is still running and removes it and its files; afterwards its status and file are 404.",
    params(JobParam, docs::RequestHeaders),
    responses(
        (status = 202, description = "Deleted (the job and its files are gone)"),
        (status = 400, description = "MISSING_VALUE / INVALID_VALUE (X-Request-ID)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_get_400())),
        (status = 401, description = "ACCESS_DENIED (bad token)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_401())),
        (status = 403, description = "ACCESS_DENIED (not back office)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_403_role())),
        (status = 404, description = "RESOURCE_NOT_FOUND (no such job)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_export_404())),
        (status = 500, description = "UNKNOWN_ERROR", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_500())),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_503())),
    )
)]
pub async fn delete(
    State(app): State<AppState>,
    caller: Caller,
    _request_id: RequestId,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    app.app.delete_export(&caller, &id).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

#[utoipa::path(
    get,
    path = "/_export/{id}/Patient.ndjson",
    operation_id = "export_file",
    tag = "Bulk export",
    security(("bearer" = [])),
    summary = "The output file of a bulk export (back office)",
    description = "Every current record the job exported, one Patient a line, in NHS-number order, unredacted — as `pds-facade export` writes them. Streamed from the job's private file. Only the back office can read it.",
    params(JobParam, docs::RequestHeaders),
    responses(
        (status = 200, description = "The records, NDJSON", body = String, content_type = "application/fhir+ndjson"),
        (status = 400, description = "MISSING_VALUE / INVALID_VALUE (X-Request-ID)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_get_400())),
        (status = 401, description = "ACCESS_DENIED (bad token)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_401())),
        (status = 403, description = "ACCESS_DENIED (not back office)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_403_role())),
        (status = 404, description = "RESOURCE_NOT_FOUND (no such job, or not complete yet)", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_export_404())),
        (status = 500, description = "UNKNOWN_ERROR", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_500())),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = docs::OperationOutcome, content_type = "application/fhir+json", example = json!(docs::example_503())),
    )
)]
pub async fn file(
    State(app): State<AppState>,
    caller: Caller,
    _request_id: RequestId,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let file = app.app.export_file(&caller, &id).await?;
    let length = file.metadata().await.ok().map(|m| m.len());
    let mut response = Body::new(FileBody {
        file,
        buf: vec![0; CHUNK].into_boxed_slice(),
    })
    .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(length) = length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    Ok(response)
}

/// Bytes read from the file per frame.
const CHUNK: usize = 64 * 1024;

/// A file sent a chunk at a time, never read whole into memory.
struct FileBody {
    file: tokio::fs::File,
    buf: Box<[u8]>,
}

impl hyper::body::Body for FileBody {
    type Data = axum::body::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let mut buf = tokio::io::ReadBuf::new(&mut this.buf);
        match tokio::io::AsyncRead::poll_read(Pin::new(&mut this.file), cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) if buf.filled().is_empty() => Poll::Ready(None),
            Poll::Ready(Ok(())) => Poll::Ready(Some(Ok(hyper::body::Frame::data(
                axum::body::Bytes::copy_from_slice(buf.filled()),
            )))),
        }
    }
}
