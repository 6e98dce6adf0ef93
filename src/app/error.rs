//! What a storage error means to whoever asked: the PDS error it becomes.

use crate::domain::{ErrorCode, PdsError};
use crate::store::StoreError;

impl From<StoreError> for PdsError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => PdsError::bare(ErrorCode::ResourceNotFound),
            StoreError::VersionConflict {
                expected, current, ..
            } => PdsError::version_mismatch(expected, current),
            StoreError::RequestIdReused(id) => PdsError::request_id_reused(&id),
            StoreError::ResourceConflict { kind, .. } => PdsError::new(
                ErrorCode::ResourceVersionMismatch,
                format!(
                    "The {} changed while this request was being handled; read it again and retry",
                    kind.name()
                ),
            ),
            StoreError::AlreadyExists(_) | StoreError::DuplicateInBatch(_) => {
                PdsError::new(ErrorCode::InvalidValue, e.to_string())
            }
            StoreError::RangeExhausted => {
                crate::telemetry::store_error("range_exhausted");
                tracing::error!("NHS number allocation range exhausted");
                PdsError::new(
                    ErrorCode::ServiceUnavailable,
                    "No NHS number can be allocated: the configured allocation range is exhausted.",
                )
            }
            StoreError::Unavailable(reason) => {
                crate::telemetry::store_error("unavailable");
                tracing::error!(%reason, "storage unavailable");
                PdsError::new(
                    ErrorCode::ServiceUnavailable,
                    "The service cannot reach its storage right now. Using the same 'X-Request-ID' header, retry your request after the time specified by the 'Retry-After' response header.",
                )
            }
            StoreError::Aborted | StoreError::NotEmpty(_) => PdsError::new(
                ErrorCode::UnknownError,
                "An unknown error occurred processing this request.",
            ),
            StoreError::Internal(reason) => {
                crate::telemetry::store_error("internal");
                tracing::error!(%reason, "the database refused a statement");
                PdsError::new(
                    ErrorCode::UnknownError,
                    "An unknown error occurred processing this request.",
                )
            }
            StoreError::Corrupt(reason) => {
                crate::telemetry::store_error("corrupt");
                tracing::error!(%reason, "stored data is corrupt");
                PdsError::new(
                    ErrorCode::UnknownError,
                    "An unknown error occurred processing this request.",
                )
            }
        }
    }
}
