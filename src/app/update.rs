//! Updating a record with a PDS PATCH.

use super::idempotency::{remember, Key};
use super::{answer, ops_json, require_change_permission, Answer, App, Request};
use crate::domain::patch::{self, PatchRequest};
use crate::domain::{json, ErrorCode, NhsNumber, PdsError, Role, Version};
use crate::store::{Change, RecordWrite, SavedResponse};

/// The 403 PDS gives for an update to a number that was merged away.
pub(crate) fn superseded() -> PdsError {
    PdsError::forbidden_update("Update Failed - NHS No. supplied has been superseded in a merge")
}

impl App {
    /// `PATCH /Patient/{id}`: applies `body` (`{"patches": […]}`) to the record if it is still
    /// at `expected`, under the PDS rules for the caller's role, all or nothing; answers the
    /// updated record (version + 1). Once per request id.
    pub async fn update(
        &self,
        req: &Request<'_>,
        id: NhsNumber,
        expected: Version,
        body: &[u8],
    ) -> Result<Answer, PdsError> {
        if req.caller.role == Role::Patient {
            self.require_own_record(req.caller, id).await?;
        } else {
            require_change_permission(req.caller)?;
        }
        let key = Key::new(req, "PATCH", &id.to_string(), &expected.etag(), body);
        self.once(req, &key, || {
            self.apply_patch(req, &key, id, expected, body)
        })
        .await
    }

    async fn apply_patch(
        &self,
        req: &Request<'_>,
        key: &Key,
        id: NhsNumber,
        expected: Version,
        body: &[u8],
    ) -> Result<Answer, PdsError> {
        let role = req.caller.role;
        let body = json::parse(body).map_err(|e| {
            PdsError::invalid_update(format!("the request body is not valid JSON - {e}"))
        })?;
        let stored = self.load(id).await?;
        if stored.merged && self.store.superseded_by(id).await?.is_some() {
            return Err(superseded());
        }
        if stored.invalidated {
            return Err(PdsError::bare(ErrorCode::InvalidatedResource));
        }
        let request = PatchRequest::parse(&body, &self.schemas)?;
        let case = crate::domain::case::task::case_of(&body)?;
        if stored.version != expected {
            return Err(PdsError::version_mismatch(expected, stored.version));
        }
        // the case is checked even for a patch that changes nothing
        let case = self.open_case(req, case).await?;
        if let Some(case) = &case {
            case.check(false, &[id])?;
        }
        let current = super::parse(&stored)?;
        let updated = super::with_context(role, |ctx| {
            patch::apply(&current, &request, ctx, &self.schemas)
        })?;
        if request.is_test_only() {
            // every test passed and nothing changes: no new version, no audit entry (a FHIR
            // server answers a no-op update with the record as it is)
            return Ok(Answer::record(
                current.version(),
                answer::current(stored, role)?,
            ));
        }
        let operation = patch::classify(&current, &updated, &request.ops, role);
        let audit = req.audit(
            operation,
            Some(&current),
            &updated,
            ops_json(&request.ops),
            request.reason.as_deref(),
        );
        let response = SavedResponse::updated(&updated);
        let mut change = Change {
            writes: vec![RecordWrite::update(&current, updated)],
            audit: vec![audit],
            request: Some(remember(key, response)),
            forget_requests_before: self.forget_before(),
            ..Change::default()
        };
        if let Some(case) = case {
            case.attach(&mut change);
        }
        self.commit(role, change).await
    }
}
