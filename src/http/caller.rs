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
        if let Some(limiter) = &state.rate_limit {
            // the token's subject identifies a client; without a token, the peer address
            let client = match (header, parts.extensions.get::<ConnectInfo<SocketAddr>>()) {
                (None, Some(ConnectInfo(peer))) => format!("ip:{}", peer.ip()),
                _ => format!("sub:{}:{}", caller.role, caller.subject),
            };
            if limiter.check(&client).is_err() {
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
