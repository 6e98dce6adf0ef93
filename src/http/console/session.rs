//! Who is signed in to the console, and the checks every form post passes.
//!
//! The session is the bearer token itself, kept in an `HttpOnly`, `SameSite=Strict` cookie
//! (`Secure` behind TLS) and verified on every request by the same code as the API's
//! `Authorization` header — so expiry, keys and roles are the API's, and a server restart or a
//! second node behind a load balancer keeps everyone signed in. No session table to lose.
//!
//! Forms carry a CSRF token: a hash of the session's token, which a page of another origin
//! cannot compute (it cannot read the cookie). Posts from another site are refused before
//! that, by the browser's `Sec-Fetch-Site` / `Origin` headers.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::header::{COOKIE, HOST, ORIGIN};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};

use super::super::AppState;
use crate::auth::Caller;
use crate::domain::Role;

/// The session cookie's name.
pub const COOKIE_NAME: &str = "pds_console";

/// How long a sandbox sign-in lasts.
pub const SANDBOX_TTL: Duration = Duration::from_secs(8 * 3600);

/// A signed-in user of the console.
#[derive(Clone)]
pub struct Session {
    pub caller: Caller,
    token: String,
}

impl Session {
    /// The CSRF token every form of this session carries.
    pub fn csrf(&self) -> String {
        csrf_of(&self.token)
    }

    /// Whether a posted CSRF token is this session's (compared in constant time).
    pub fn csrf_ok(&self, sent: Option<&str>) -> bool {
        let want = self.csrf();
        let Some(sent) = sent else { return false };
        sent.len() == want.len()
            && sent
                .bytes()
                .zip(want.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    pub fn role(&self) -> Role {
        self.caller.role
    }

    /// Who the header names: "GP practice Y12345", "PCSE", "National Back Office".
    pub fn who(&self) -> String {
        match (self.caller.role, &self.caller.ods) {
            (Role::Practice, Some(ods)) => format!("GP practice {ods}"),
            (Role::Pcse, _) => "PCSE".into(),
            (Role::BackOffice, _) => "National Back Office".into(),
            (role, _) => role.name().to_string(),
        }
    }
}

fn csrf_of(token: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"pds-facade console csrf\0")
        .chain_update(token.as_bytes())
        .finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The session cookie's value, if the request has one.
fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE_NAME)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

/// The session a token opens, if it verifies.
pub fn open(state: &AppState, token: &str) -> Option<Session> {
    let header = format!("Bearer {token}");
    let caller = state.keys.authenticate(Some(header.as_bytes())).ok()?;
    matches!(caller.role, Role::Practice | Role::Pcse | Role::BackOffice).then(|| Session {
        caller,
        token: token.to_string(),
    })
}

/// A page that needs a session sends those without one to sign in.
pub struct SignInFirst;

impl IntoResponse for SignInFirst {
    fn into_response(self) -> Response {
        Redirect::to("/console/sign-in").into_response()
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = SignInFirst;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, SignInFirst> {
        cookie_token(&parts.headers)
            .and_then(|t| open(state, &t))
            .ok_or(SignInFirst)
    }
}

/// Whether the request came over TLS (directly or, as the proxy in front says, to it).
fn secure(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// The `Set-Cookie` that signs in with `token` (or, with `None`, signs out).
pub fn set_cookie(headers: &HeaderMap, token: Option<&str>) -> HeaderValue {
    let secure = if secure(headers) { "; Secure" } else { "" };
    let value = match token {
        // a session cookie: gone when the browser closes (the token's own expiry still holds)
        Some(t) => format!("{COOKIE_NAME}={t}; Path=/console; HttpOnly; SameSite=Strict{secure}"),
        None => {
            format!("{COOKIE_NAME}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
        }
    };
    HeaderValue::from_str(&value).expect("a token is header-safe")
}

/// A form post from this site: refused when the browser says it came from another
/// (`Sec-Fetch-Site: cross-site` / `same-site`), or its `Origin` is not this host.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if let Some(site) = header("sec-fetch-site") {
        if !matches!(site, "same-origin" | "none") {
            return false;
        }
    }
    match (header(ORIGIN.as_str()), header(HOST.as_str())) {
        (Some("null"), _) => false,
        (Some(origin), Some(host)) => origin.split_once("://").is_some_and(|(scheme, rest)| {
            matches!(scheme, "http" | "https") && rest.eq_ignore_ascii_case(host)
        }),
        (Some(_), None) => false,
        (None, _) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_differ_per_session_and_posts_from_elsewhere_are_refused() {
        assert_ne!(csrf_of("a.b.c"), csrf_of("a.b.d"));
        assert_eq!(csrf_of("a.b.c").len(), 64);
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_static("127.0.0.1:9000"));
        assert!(same_origin(&h));
        h.insert(ORIGIN, HeaderValue::from_static("http://127.0.0.1:9000"));
        assert!(same_origin(&h));
        h.insert(ORIGIN, HeaderValue::from_static("http://evil.example"));
        assert!(!same_origin(&h));
        h.insert(ORIGIN, HeaderValue::from_static("http://127.0.0.1:9000"));
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&h));
    }
}
