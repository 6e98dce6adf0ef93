//! The use cases: what the service does, once, whatever interface asks.
//!
//! Each use case takes who asks ([`Request`]: the caller, the request's ids) and plain inputs —
//! NHS numbers, versions, the request body's bytes — and returns an [`Answer`] (or a domain
//! value) or the PDS error that stops it. Nothing here knows HTTP: the `http` layer parses a
//! request, calls one use case and renders what comes back. Nothing here knows redb or SQL
//! either: storage is the [`PatientStore`] trait.
//!
//! Changes are idempotent by one mechanism, [`App::once`]: a request id already answered is
//! replayed (rendered again for the caller from the record version it showed), one not seen yet
//! runs — never both, never a call a use case could forget.

pub mod answer;
pub mod audit_event;
pub mod case;
pub mod create;
mod demo_cases;
pub mod error;
pub mod export;
pub mod idempotency;
pub mod identity;
pub mod merge;
pub mod read;
pub mod search;
pub mod status;
pub mod update;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

pub use answer::Answer;

use crate::auth::Caller;
use crate::domain::patch::{Operation, PatchContext};
use crate::domain::{ErrorCode, NhsNumber, Patient, PdsError, Role, Schemas};
use crate::store::{AuditEntry, PatientStore, StoreError, StoredRecord};

/// What every use case shares: the store and the service's settings.
pub struct App {
    pub store: Arc<dyn PatientStore>,
    pub schemas: Arc<Schemas>,
    /// How long a change's request id is remembered for idempotent retries.
    pub idempotency_window: Duration,
    /// The public base URL of the FHIR API, for search results' `fullUrl` and `Location`.
    pub base_url: String,
    /// New NHS numbers come from these first-nine-digit prefixes (inclusive).
    pub allocation_range: (u64, u64),
    /// How many days each kind of case has from logging to its due date.
    pub case_due: crate::domain::case::DueDays,
    /// The bulk export jobs and where their files go.
    pub exports: Arc<export::Exports>,
}

/// Default allocation range: 999 300 000 0 – 999 399 999 9, inside the 999 range that is never
/// issued to real patients, and apart from the demo (999 100 …) and generated (990–991 …) data.
pub const DEFAULT_ALLOCATION_RANGE: (u64, u64) = (999_300_000, 999_399_999);

/// Default idempotency window: a day, far beyond any client's retry schedule.
pub const DEFAULT_IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);

impl App {
    pub fn new(store: Arc<dyn PatientStore>) -> App {
        App {
            store,
            schemas: Arc::new(Schemas::compile()),
            idempotency_window: DEFAULT_IDEMPOTENCY_WINDOW,
            base_url: "http://localhost/personal-demographics/FHIR/R4".into(),
            allocation_range: DEFAULT_ALLOCATION_RANGE,
            case_due: crate::domain::case::DueDays::default(),
            exports: Arc::new(export::Exports::new(
                std::env::temp_dir().join(format!("pds-facade-exports-{}", std::process::id())),
                export::DEFAULT_EXPIRY,
            )),
        }
    }

    /// The current record stored under `id` (superseded ones included); 404 when there is none.
    pub(crate) async fn load(&self, id: NhsNumber) -> Result<StoredRecord, PdsError> {
        self.store
            .get(id)
            .await?
            .ok_or_else(|| PdsError::bare(ErrorCode::ResourceNotFound))
    }

    /// A record an operation names in its `what` parameter: 404 saying which one is missing.
    pub(crate) async fn load_named(&self, what: &str, id: NhsNumber) -> Result<Patient, PdsError> {
        match self.store.get(id).await? {
            Some(stored) => parse(&stored),
            None => Err(PdsError::new(
                ErrorCode::ResourceNotFound,
                format!("Resource not found - {what} {id}"),
            )),
        }
    }
}

/// Runs `f` with the patch layer's context for `role`: today's date and fresh object ids for
/// new list items — what the pure patch layer takes from outside.
pub(crate) fn with_context<T>(role: Role, f: impl FnOnce(&mut PatchContext) -> T) -> T {
    let mut new_id = crate::env::new_object_id;
    let mut ctx = PatchContext {
        role,
        today: crate::env::today(),
        new_id: &mut new_id,
    };
    f(&mut ctx)
}

/// Refuses callers without the back-office role (403 ACCESS_DENIED; to a patient, in PDS's
/// patient-access words).
pub fn require_back_office(caller: &Caller) -> Result<(), PdsError> {
    if caller.role == Role::BackOffice {
        Ok(())
    } else if caller.role == Role::Patient {
        Err(PdsError::patient_forbidden())
    } else {
        Err(PdsError::new(
            ErrorCode::AccessForbidden,
            format!(
                "This operation needs the back-office role; the caller has the {} role",
                caller.role
            ),
        ))
    }
}

/// Refuses patient access to anything but a patient's own record: the routes that serve one
/// record (read, RelatedPerson, PATCH) call [`App::require_own_record`]; every other route
/// refuses a patient outright with this (PDS: 403 ACCESS_DENIED, `Patient cannot perform this
/// action`). Other roles pass.
pub fn refuse_patient(caller: &Caller) -> Result<(), PdsError> {
    if caller.role == Role::Patient {
        Err(PdsError::patient_forbidden())
    } else {
        Ok(())
    }
}

/// The check a PATCH makes before it reads its target: application-restricted and case-work
/// callers are refused as [`require_change_permission`] says; a patient below P9 gets PDS's
/// patient-access 403, one at P9 goes on to [`App::require_own_record`].
pub fn require_patch_permission(caller: &Caller) -> Result<(), PdsError> {
    match caller.role {
        Role::Patient => caller
            .own_record()
            .map(|_| ())
            .ok_or_else(PdsError::patient_forbidden),
        _ => require_change_permission(caller),
    }
}

impl App {
    /// Patient access reaches only the patient's own record (PDS): the NHS number of the token,
    /// or the record a merge moved it to (its survivor — the patient's record now; reading the
    /// old number shows it too, as it does for everyone). Anything else, and anything at all
    /// below P9, is 403 ACCESS_DENIED `Patient cannot perform this action` — whether or not
    /// the record exists, so the answer tells the patient nothing of other numbers. Other
    /// roles pass.
    pub async fn require_own_record(&self, caller: &Caller, id: NhsNumber) -> Result<(), PdsError> {
        if caller.role != Role::Patient {
            return Ok(());
        }
        let own = caller
            .own_record()
            .ok_or_else(PdsError::patient_forbidden)?;
        if id == own {
            return Ok(());
        }
        let merged = self.store.get(own).await?.is_some_and(|r| r.merged);
        if merged && self.store.survivor(own).await? == id {
            return Ok(());
        }
        Err(PdsError::patient_forbidden())
    }
}

/// Refuses changes from application-restricted callers (PDS: 403 INVALID_METHOD), from the
/// case-work roles and from patients (who change only their own record, through PATCH: see
/// [`require_patch_permission`]).
pub fn require_change_permission(caller: &Caller) -> Result<(), PdsError> {
    refuse_patient(caller)?;
    if caller.role == Role::ApplicationRestricted {
        return Err(PdsError::new(
            ErrorCode::InvalidMethod,
            "Your app has insufficient permissions to use this method. Please contact support.",
        ));
    }
    if !caller.role.changes_patients() {
        return Err(PdsError::new(
            ErrorCode::AccessForbidden,
            format!(
                "The {} role reads patient records but does not change them: corrections are made by the National Back Office",
                caller.role
            ),
        ));
    }
    Ok(())
}

/// The record a stored version holds.
pub(crate) fn parse(stored: &StoredRecord) -> Result<Patient, PdsError> {
    Ok(Patient::from_stored(&stored.json).map_err(StoreError::Corrupt)?)
}

/// Who asks, as every audited change and every idempotency record needs it.
pub struct Request<'a> {
    pub caller: &'a Caller,
    /// The X-Request-ID (also the idempotency key).
    pub request_id: &'a str,
    pub correlation_id: Option<&'a str>,
}

impl Request<'_> {
    /// The audit entry for one record's change.
    pub(crate) fn audit(
        &self,
        operation: Operation,
        before: Option<&Patient>,
        after: &Patient,
        patch: Value,
        reason: Option<&str>,
    ) -> AuditEntry {
        AuditEntry {
            at: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .expect("RFC 3339"),
            subject: self.caller.subject.clone(),
            role: self.caller.role.name().to_string(),
            request_id: self.request_id.to_string(),
            correlation_id: self.correlation_id.map(str::to_string),
            operation: operation.name().to_string(),
            patient: after.id().to_string(),
            version_before: before.map(|b| b.version().get()),
            version_after: after.version().get(),
            patch: Some(patch),
            reason: reason.map(str::to_string),
            related: None,
        }
    }
}

/// The operations of a change as RFC 6902 JSON, for the audit trail.
pub(crate) fn ops_json(ops: &[crate::domain::patch::Op]) -> Value {
    Value::Array(ops.iter().map(|o| o.to_json()).collect())
}
