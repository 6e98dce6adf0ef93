//! The caller of a request, from its bearer token (see [`crate::auth`]).

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::error::ApiError;
use super::AppState;
use crate::auth::{AuthError, Caller};
use crate::domain::{ErrorCode, Role};

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION).map(|v| v.as_bytes());
        state.keys.authenticate(header).map_err(ApiError::from)
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

/// Refuses callers without the back-office role (403 ACCESS_DENIED).
pub fn require_back_office(caller: &Caller) -> Result<(), ApiError> {
    if caller.role == Role::BackOffice {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::AccessForbidden,
            format!(
                "This operation needs the back-office role; the caller has the {} role",
                caller.role
            ),
        ))
    }
}
