//! Case work routes: `/Task` (cases), `/Communication` (messages to practices) and the
//! `case-kind` CodeSystem. Thin: parse, call one use case, render.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;

use super::error::ApiError;
use super::headers::{if_match, RequestId};
use super::openapi::docs;
use super::patient::{body_rejection, request};
use super::render::{answer, fhir, operation_body};
use super::AppState;
use crate::app::case::require_case_role;
use crate::auth::Caller;
use crate::domain::Version;

fn pairs(uri: &Uri) -> Vec<(String, String)> {
    form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// A PATCH's If-Match version and body (JSON Patch as `application/json-patch+json` or JSON).
fn patch_parts(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Version, Bytes), ApiError> {
    let expected = if_match(headers)?;
    if !super::headers::is_patch_content_type(headers) {
        return Err(ApiError(super::headers::unsupported_content_type(
            headers,
            super::headers::PATCH_CONTENT_TYPES,
        )));
    }
    Ok((expected, body.map_err(body_rejection)?))
}

#[utoipa::path(
    post,
    path = "/Task",
    tag = "Case work",
    security(("bearer" = [])),
    summary = "Raise a case (practice, PCSE, NBO)",
    description = "A data-quality incident as a FHIR R4 Task: `code` one coding from the `case-kind` CodeSystem (`GET /CodeSystem/case-kind`), `for` the patient (Reference with the NHS number identifier), `description`, `input` entries typed by `urn:pds-facade:fhir:CodeSystem:case-part`: `other-nhs-number` (`valueIdentifier`; required for a duplicate, optional for a confused record) and `evidence` (`valueString`). A practice raises cases as itself; PCSE and the NBO name the practice in `requester` (Organization identifier with the ODS code). The service sets status `requested`, owner PCSE, `authoredOn`, `lastModified` and the due date (`restriction.period.end`, by kind). The patients must exist and not be invalidated.",
    params(docs::RequestHeaders),
    request_body(content = docs::Task, content_type = "application/fhir+json", example = json!(docs::example_task_create())),
    responses(
        (status = 201, description = "The case, version 1", body = docs::Task, content_type = "application/fhir+json",
            headers(("ETag" = String, description = "`W/\"1\"`"), ("Location" = String, description = "The case's URL"))),
        docs::CaseErrors,
    )
)]
pub async fn create_task(
    State(app): State<AppState>,
    caller: Caller,
    request_id: RequestId,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    require_case_role(&caller)?;
    let bytes = operation_body(&headers, body)?;
    let req = request(&caller, &request_id, &headers);
    Ok(answer(app.app.create_case(&req, &bytes).await?))
}

#[utoipa::path(
    get,
    path = "/Task/{id}",
    tag = "Case work",
    security(("bearer" = [])),
    summary = "Read a case",
    description = "PCSE and the NBO read every case; a practice the cases it raised and those about a patient registered with it (never through a restricted record's practice). Others get 404. Outside the NBO, what a change of identity produced is not shown.",
    params(docs::ResourceIdParam, docs::RequestHeaders),
    responses(
        (status = 200, description = "The case", body = docs::Task, content_type = "application/fhir+json",
            headers(("ETag" = String, description = "`W/\"<versionId>\"`"))),
        docs::CaseErrors,
    )
)]
pub async fn read_task(
    State(app): State<AppState>,
    caller: Caller,
    _request_id: RequestId,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(answer(app.app.read_case(&caller, &id).await?))
}

#[utoipa::path(
    get,
    path = "/Task/{id}/_history",
    tag = "Case work",
    security(("bearer" = [])),
    summary = "Every version of a case, newest first",
    params(docs::ResourceIdParam, docs::RequestHeaders),
    responses(
        (status = 200, description = "A history Bundle", body = docs::Bundle, content_type = "application/fhir+json"),
        docs::CaseErrors,
    )
)]
pub async fn task_history(
    State(app): State<AppState>,
    caller: Caller,
    _request_id: RequestId,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(answer(app.app.case_history(&caller, &id).await?))
}

#[utoipa::path(
    get,
    path = "/Task",
    tag = "Case work",
    security(("bearer" = [])),
    summary = "Search cases (queues)",
    description = "From the index, sorted by due date (`_sort=-due`: latest first). `status` takes a comma-separated list; `overdue=true` gives open cases past their due date. A practice gets only the cases it may read (without parameters: all of them).",
    params(docs::TaskSearchParams, docs::RequestHeaders),
    responses(
        (status = 200, description = "A searchset Bundle of Tasks", body = docs::Bundle, content_type = "application/fhir+json"),
        docs::CaseErrors,
    )
)]
pub async fn search_tasks(
    State(app): State<AppState>,
    caller: Caller,
    _request_id: RequestId,
    uri: Uri,
) -> Result<Response, ApiError> {
    Ok(answer(app.app.search_cases(&caller, &pairs(&uri)).await?))
}

#[utoipa::path(
    patch,
    path = "/Task/{id}",
    tag = "Case work",
    security(("bearer" = [])),
    summary = "Move a case on, or add to it (JSON Patch)",
    description = "JSON Patch on the Task; only `status`, `statusReason`, `note`, `input` and `output` may change, lists only grow. Moves (`requested`→`received`→`on-hold`↔`received`→`accepted`→`in-progress`→`completed`; `rejected`/`cancelled` with `statusReason.text`) are checked against who may make them: a refused move is 409 naming the moves the role may make. `on-hold` needs a new note (the question, sent to the practice; `businessStatus` becomes \"awaiting practice information\"); the practice answers with a note or evidence and status `received`; `accepted` passes the case to the NBO; `completed` needs an output `resolution` and at least one `follow-on-action` and sends each practice concerned a Communication. New notes carry `text` only: the service names the author and the time.",
    params(docs::ResourceIdParam, docs::RequestHeaders, docs::IfMatchHeader),
    request_body(content = docs::PatchRequest, content_type = "application/json-patch+json", example = json!(docs::example_task_patch())),
    responses(
        (status = 200, description = "The case, version + 1", body = docs::Task, content_type = "application/fhir+json",
            headers(("ETag" = String, description = "`W/\"<versionId>\"`"))),
        docs::CaseErrors,
    )
)]
pub async fn patch_task(
    State(app): State<AppState>,
    caller: Caller,
    request_id: RequestId,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    require_case_role(&caller)?;
    let (expected, bytes) = patch_parts(&headers, body)?;
    let req = request(&caller, &request_id, &headers);
    Ok(answer(
        app.app.update_case(&req, &id, expected, &bytes).await?,
    ))
}

#[utoipa::path(
    get,
    path = "/Communication",
    tag = "Case work",
    security(("bearer" = [])),
    summary = "Messages to practices, newest first",
    description = "`status` `in-progress` is unread, `completed` read. A practice reads those addressed to it (`recipient` defaults to its own ODS code and may not be another's).",
    params(docs::MessageSearchParams, docs::RequestHeaders),
    responses(
        (status = 200, description = "A searchset Bundle of Communications", body = docs::Bundle, content_type = "application/fhir+json"),
        docs::CaseErrors,
    )
)]
pub async fn search_communications(
    State(app): State<AppState>,
    caller: Caller,
    _request_id: RequestId,
    uri: Uri,
) -> Result<Response, ApiError> {
    Ok(answer(
        app.app.search_messages(&caller, &pairs(&uri)).await?,
    ))
}

#[utoipa::path(
    get,
    path = "/Communication/{id}",
    tag = "Case work",
    security(("bearer" = [])),
    summary = "Read a message",
    params(docs::ResourceIdParam, docs::RequestHeaders),
    responses(
        (status = 200, description = "The message", body = docs::Communication, content_type = "application/fhir+json"),
        docs::CaseErrors,
    )
)]
pub async fn read_communication(
    State(app): State<AppState>,
    caller: Caller,
    _request_id: RequestId,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(answer(app.app.read_message(&caller, &id).await?))
}

#[utoipa::path(
    patch,
    path = "/Communication/{id}",
    tag = "Case work",
    security(("bearer" = [])),
    summary = "Mark a message read (its practice)",
    description = "The one change a message takes: `[{\"op\": \"replace\", \"path\": \"/status\", \"value\": \"completed\"}]`; the service records `received`.",
    params(docs::ResourceIdParam, docs::RequestHeaders, docs::IfMatchHeader),
    request_body(content = docs::PatchRequest, content_type = "application/json-patch+json"),
    responses(
        (status = 200, description = "The message, read", body = docs::Communication, content_type = "application/fhir+json"),
        docs::CaseErrors,
    )
)]
pub async fn patch_communication(
    State(app): State<AppState>,
    caller: Caller,
    request_id: RequestId,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    require_case_role(&caller)?;
    let (expected, bytes) = patch_parts(&headers, body)?;
    let req = request(&caller, &request_id, &headers);
    Ok(answer(
        app.app.update_message(&req, &id, expected, &bytes).await?,
    ))
}

#[utoipa::path(
    get,
    path = "/CodeSystem/case-kind",
    tag = "Case work",
    summary = "The kinds of case (CodeSystem)",
    description = "Each kind's code, display, definition and days to resolve (as configured with `serve --case-due`).",
    responses((status = 200, description = "The CodeSystem", body = docs::CodeSystem, content_type = "application/fhir+json"))
)]
pub async fn case_kinds(State(app): State<AppState>) -> Response {
    let doc = crate::domain::case::kind::code_system(&app.app.case_due);
    fhir(
        axum::http::StatusCode::OK,
        None,
        serde_json::to_vec(&doc).expect("JSON"),
    )
}
