//! The caller of a request, from its bearer token (see [`crate::auth`]).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::error::ApiError;
use super::AppState;
use crate::auth::{AuthError, Caller};
use crate::domain::ErrorCode;

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION).map(|v| v.as_bytes());
        let caller = state.keys.authenticate(header).map_err(ApiError::from)?;
        session_urid(&parts.headers, &caller)?;
        if let Some(limiter) = &state.rate_limit {
            // the token's subject identifies a client; without a token, the peer address
            let client = match (header, parts.extensions.get::<ConnectInfo<SocketAddr>>()) {
                (None, Some(ConnectInfo(peer))) => format!("ip:{}", peer.ip()),
                _ => format!("sub:{}:{}", caller.role, caller.subject),
            };
            if limiter.check(&client).is_err() {
                crate::telemetry::rate_limited();
                return Err(ApiError::new(
                    ErrorCode::TooManyRequests,
                    format!(
                        "Your application has exceeded its quota of {} requests every 1 second and is being rate limited. Retry after the time in the Retry-After header.",
                        limiter.per_second()
                    ),
                ));
            }
        }
        Ok(caller)
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::NoRole => ApiError::new(ErrorCode::AccessForbidden, e.to_string()),
            other => ApiError::new(ErrorCode::AccessDenied, other.to_string()),
        }
    }
}

/// PDS validates `NHSD-Session-URID` (the user's role profile) for user-restricted access:
/// digits only, or 400 INVALID_VALUE; application-restricted and patient access (a patient
/// has no role profile) ignore it.
fn session_urid(headers: &axum::http::HeaderMap, caller: &Caller) -> Result<(), ApiError> {
    use crate::domain::Role;
    if matches!(caller.role, Role::ApplicationRestricted | Role::Patient) {
        return Ok(());
    }
    let Some(value) = headers.get("nhsd-session-urid") else {
        return Ok(());
    };
    let v = value.to_str().unwrap_or_default();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::InvalidValue,
        format!(
            "Invalid value - '{}' in header 'NHSD-Session-URID'. Refer to the guidance for this header in our API Specification https://digital.nhs.uk/developer/api-catalogue/personal-demographics-service-fhir",
            crate::domain::outcome::clip(v)
        ),
    ))
}
