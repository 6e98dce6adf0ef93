//! The case-work console (`/console/`): server-rendered pages in which a GP practice reports an
//! incident, PCSE triages it and the National Back Office corrects the record and closes the
//! case — without curl.
//!
//! Thin like the API's handlers: every page reads through the same use cases
//! ([`crate::app::App`]) as the API, as the signed-in caller, so a role sees exactly what its
//! token would over the API (a restricted record's hidden fields included: they are not there).
//! Every form post is a use case call with the form's own request id, so a form sent twice is
//! one change. No JavaScript is needed: the one script only checks NHS numbers as they are
//! typed. Nothing is loaded from another origin; the Content Security Policy says so.

mod case_page;
mod corrections;
mod layout;
mod lists;
mod records;
pub mod session;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde_json::Value;

use super::AppState;
use crate::app::Request;
use crate::domain::subset::Subset;
use crate::domain::{NhsNumber, PdsError, Role};
use layout::page;
use session::Session;

/// The console's pages' content type (the API middleware leaves such error pages alone).
pub const HTML: &str = "text/html; charset=utf-8";

const CSS: &str = include_str!("console.css");
const JS: &str = include_str!("console.js");
const ICON: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\"><rect width=\"16\" height=\"16\" fill=\"#005eb8\"/><path d=\"M4 3h5a3 3 0 0 1 0 6H6v4H4z\" fill=\"#fff\"/></svg>";

/// Every console response: no inline script, nothing from elsewhere, never framed, not cached.
/// (Referrer-Policy `same-origin`, not `no-referrer`: with the latter browsers send form posts
/// with `Origin: null`, which the origin check must refuse.)
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's routes, all under `/console/` (merged into the service's router).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/console/", get(home))
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/sign-in", get(sign_in_page).post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route(
            "/console/static/console.css",
            get(|| async { asset(CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/console/static/console.js",
            get(|| async { asset(JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/console/static/icon.svg",
            get(|| async { asset(ICON, "image/svg+xml") }),
        )
        .route("/console/lookup", get(lookup))
        .route("/console/all", get(lists::all_cases))
        .route("/console/inbox", get(lists::inbox_page))
        .route("/console/messages", get(lists::messages))
        .route("/console/messages/{id}/read", post(lists::mark_read))
        .route("/console/cases/new", get(case_page::new_case))
        .route("/console/cases", post(case_page::raise))
        .route("/console/cases/{id}", get(case_page::show))
        .route("/console/cases/{id}/move", post(case_page::move_case))
        .route(
            "/console/cases/{id}/correct/{what}",
            post(corrections::correct),
        )
        .route("/console/{*rest}", get(not_found).post(not_found))
        .layer(axum::middleware::map_response(secure_headers))
        .with_state(state)
}

async fn secure_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// An HTML page with `status`.
pub(crate) fn html_page(status: StatusCode, markup: Markup) -> Response {
    (status, [(header::CONTENT_TYPE, HTML)], markup.into_string()).into_response()
}

async fn not_found(session: Option<Session>) -> Response {
    html_page(
        StatusCode::NOT_FOUND,
        page(
            "Page not found",
            session.as_ref(),
            None,
            html! {
                p { "There is no such page. " a href="/console/" { "Back to the start" } }
            },
        ),
    )
}

/// What a refused action says to the person who tried it: the use case's own words (which
/// never carry a value the caller may not read), else the error's title.
pub(crate) fn error_text(e: &PdsError) -> String {
    e.diagnostics
        .clone()
        .unwrap_or_else(|| e.code.info().display.to_string())
}

pub(crate) fn status_of(e: &PdsError) -> StatusCode {
    StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST)
}

/// A posted form's fields, in order (a name may repeat).
pub(crate) struct Fields(Vec<(String, String)>);

impl Fields {
    pub(crate) fn parse(body: &[u8]) -> Fields {
        Fields(form_urlencoded::parse(body).into_owned().collect())
    }

    /// The field's value, trimmed; `None` when absent or blank.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// Non-blank lines of a text area.
    pub(crate) fn lines(&self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|v| {
                v.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A form post's checks: from this site, with this session's CSRF token. Returns the fields
/// and the request id the form carries (a fresh one if it carries none that is well formed).
pub(crate) fn posted(
    session: &Session,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(Fields, String), Box<Response>> {
    let fields = Fields::parse(body);
    if !session::same_origin(headers) || !session.csrf_ok(fields.get("csrf")) {
        return Err(Box::new(html_page(
            StatusCode::FORBIDDEN,
            page(
                "Form refused",
                Some(session),
                None,
                html! {
                    p { "The form was not sent from this console's own page, or it is too old. "
                        a href="/console/" { "Start again" } }
                },
            ),
        )));
    }
    let rid = fields
        .get("request_id")
        .filter(|r| super::headers::is_pds_uuid(r))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    Ok((fields, rid))
}

/// The use-case request of a form post.
pub(crate) fn request<'a>(session: &'a Session, request_id: &'a str) -> Request<'a> {
    Request {
        caller: &session.caller,
        request_id,
        correlation_id: None,
    }
}

/// The JSON body of a use case's answer.
pub(crate) fn body_of(answer: &crate::app::Answer) -> Value {
    serde_json::from_slice(&answer.body).unwrap_or(Value::Null)
}

/// Redirect after a successful post (so a reload does not post again).
///
/// Only to a path made of safe characters: an id or anchor from a request that is not one
/// (a newline, a non-ASCII letter) would make an invalid `Location`, so it goes to the start.
pub(crate) fn see_other(to: &str) -> Response {
    let safe = to
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/-_.#".contains(&b));
    Redirect::to(if safe { to } else { "/console/" }).into_response()
}

async fn home(State(state): State<AppState>, session: Session) -> Response {
    match session.role() {
        Role::Practice => lists::my_cases(&state, &session).await,
        Role::Pcse => lists::inbox(&state, &session, None).await,
        _ => lists::queue(&state, &session).await,
    }
}

async fn sign_in_page(State(state): State<AppState>) -> Response {
    html_page(StatusCode::OK, sign_in_form(&state, None))
}

fn sign_in_form(state: &AppState, error: Option<&str>) -> Markup {
    let sandbox = state.keys.is_sandbox();
    page(
        "Sign in",
        None,
        error,
        html! {
            form.panel method="post" action="/console/sign-in" {
                @if sandbox {
                    p { "This service runs in sandbox mode: choose who you are." }
                    div.field {
                        label for="f-role" { "Role" }
                        select #f-role name="role" {
                            option value="practice" { "GP practice" }
                            option value="pcse" { "Primary Care Support England (PCSE)" }
                            option value="back-office" { "National Back Office (NBO)" }
                        }
                    }
                    div.field {
                        label for="f-ods" { "Practice ODS code" }
                        p.hint #f-ods-hint { "For a GP practice only, e.g. Y12345" }
                        input #f-ods type="text" name="ods" value="Y12345" aria-describedby="f-ods-hint" autocomplete="off";
                    }
                } @else {
                    div.field {
                        label for="f-token" { "Bearer token" }
                        p.hint #f-token-hint { "Paste the token you were issued, once: the console keeps it in a secure cookie until it expires or you sign out." }
                        textarea #f-token name="token" rows="4" required aria-describedby="f-token-hint" autocomplete="off" {}
                    }
                }
                button type="submit" name="sign-in" { "Sign in" }
            }
        },
    )
}

async fn sign_in(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let fields = Fields::parse(&body);
    let refuse = |why: &str| html_page(StatusCode::BAD_REQUEST, sign_in_form(&state, Some(why)));
    if !session::same_origin(&headers) {
        return refuse("Sign in from this console's own page.");
    }
    let token = if state.keys.is_sandbox() {
        let role = match fields.get("role").map(str::parse::<Role>) {
            Some(Ok(r @ (Role::Practice | Role::Pcse | Role::BackOffice))) => r,
            _ => return refuse("Choose a role: GP practice, PCSE or National Back Office."),
        };
        let ods = (role == Role::Practice).then(|| fields.get("ods").unwrap_or_default());
        let subject = match ods {
            Some(o) => format!("console-practice-{o}"),
            None => format!("console-{role}"),
        };
        match state.keys.mint_for(role, &subject, session::SANDBOX_TTL, ods) {
            Ok(t) => t,
            Err(_) => return refuse("A GP practice signs in with its ODS code: a letter and up to five more letters or digits, e.g. Y12345."),
        }
    } else {
        match fields.get("token") {
            Some(t) => t.strip_prefix("Bearer ").unwrap_or(t).trim().to_string(),
            None => return refuse("Paste your bearer token."),
        }
    };
    if session::open(&state, &token).is_none() {
        return refuse("That token is not valid here, has expired, or is not for case work (practice, pcse or back-office).");
    }
    let mut response = see_other("/console/");
    response.headers_mut().insert(
        header::SET_COOKIE,
        session::set_cookie(&headers, Some(&token)),
    );
    response
}

async fn sign_out(session: Session, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(refused) = posted(&session, &headers, &body) {
        return *refused;
    }
    let mut response = see_other("/console/sign-in");
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session::set_cookie(&headers, None));
    response
}

#[derive(serde::Deserialize)]
struct LookupQuery {
    nhs: String,
}

/// `GET /console/lookup?nhs=…`: who an NHS number is, as the caller may see — for the check as
/// an NHS number is typed (`{"ok": bool, "text": "…"}`).
async fn lookup(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<LookupQuery>,
) -> Response {
    let digits: String = q.nhs.chars().filter(|c| !c.is_whitespace()).collect();
    let (ok, text) = match NhsNumber::parse(&digits) {
        Err(_) if digits.len() != 10 || !digits.chars().all(|c| c.is_ascii_digit()) => {
            (false, "An NHS number is 10 digits".to_string())
        }
        Err(_) => (
            false,
            "Not a valid NHS number: the check digit does not match".to_string(),
        ),
        Ok(nhs) => match state.app.read(&session.caller, nhs, &Subset::Full).await {
            Ok(a) => (true, records::one_line(&body_of(&a))),
            Err(e) => (false, error_text(&e)),
        },
    };
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({"ok": ok, "text": text}).to_string(),
    )
        .into_response()
}

impl axum::extract::OptionalFromRequestParts<AppState> for Session {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(
            <Session as axum::extract::FromRequestParts<AppState>>::from_request_parts(
                parts, state,
            )
            .await
            .ok(),
        )
    }
}
