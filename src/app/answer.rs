//! What a use case answers with — status, ETag, Location and a FHIR JSON body — and how bodies
//! show a record: always as the caller's role may see it ([`crate::domain::view`]).

use serde_json::{json, Map, Value};

use super::App;
use crate::domain::view::{self, RecordHistory};
use crate::domain::{ErrorCode, NhsNumber, Patient, PdsError, Role, Version};
use crate::store::{SavedBody, SavedResponse, StoreError, StoredRecord};

/// A successful answer: the interface renders it (HTTP: status line, `ETag`, `Location`,
/// `Content-Type: application/fhir+json`).
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub etag: Option<String>,
    pub location: Option<String>,
    /// FHIR JSON.
    pub body: Vec<u8>,
}

impl Answer {
    /// 200 with this body and no ETag.
    pub fn ok(body: Vec<u8>) -> Answer {
        Answer {
            status: 200,
            etag: None,
            location: None,
            body,
        }
    }

    /// 200 with a record version's ETag.
    pub fn record(version: Version, body: Vec<u8>) -> Answer {
        Answer {
            etag: Some(version.etag()),
            ..Answer::ok(body)
        }
    }
}

/// The current record's bytes as `role` may see it. Most records need no parsing at all: the
/// stored bytes go out as they are.
pub(crate) fn current(record: StoredRecord, role: Role) -> Result<Vec<u8>, PdsError> {
    if role.is_back_office() || !(record.restricted || record.merged) {
        return Ok(record.json);
    }
    version(&record, role, false)
}

/// The current record as `role` may see it, as a document, for answers built from its parts
/// (`_elements`, RelatedPerson): parsed once, copied only when the view hides something.
pub(crate) fn current_doc(
    record: &StoredRecord,
    role: Role,
) -> Result<Map<String, Value>, PdsError> {
    let patient = super::parse(record)?;
    if let std::borrow::Cow::Owned(shown) = view::for_role(patient.doc(), role, false) {
        return Ok(shown);
    }
    Ok(patient.into_doc())
}

/// One version's bytes as `role` may see them; `redact` applies the restricted view whatever
/// the version's own label (see [`RecordHistory::redacts`]).
pub(crate) fn version(
    record: &StoredRecord,
    role: Role,
    redact: bool,
) -> Result<Vec<u8>, PdsError> {
    let patient = super::parse(record)?;
    Ok(to_bytes(&view::for_role(patient.doc(), role, redact)))
}

/// A searchset Bundle's `timestamp`, as PDS writes it (`+00:00`, whole seconds).
pub(crate) fn bundle_timestamp() -> String {
    time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]+00:00"
        ))
        .expect("timestamp")
}

/// Any JSON value's bytes (Bundles, Tasks, Communications).
pub(crate) fn json_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("a JSON value serialises")
}

pub(crate) fn to_bytes(doc: &Map<String, Value>) -> Vec<u8> {
    serde_json::to_vec(doc).expect("a JSON map serialises")
}

/// The Parameters answer of an operation: an outcome sentence and the resulting record (as the
/// caller may see it).
pub(crate) fn parameters(outcome: &str, result: &Map<String, Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({"resourceType": "Parameters", "parameter": [
        {"name": "outcome", "resource": {"resourceType": "OperationOutcome", "issue": [
            {"severity": "information", "code": "informational", "diagnostics": outcome}]}},
        {"name": "result", "resource": result}]}))
    .expect("JSON")
}

/// The answer a saved response stands for, its body drawn from `shown` (the record version it
/// refers to, as the caller may see it now).
fn saved(saved: &SavedResponse, shown: &Map<String, Value>) -> Answer {
    let body = match &saved.body {
        SavedBody::Patient { .. } => to_bytes(shown),
        SavedBody::Parameters { outcome, .. } => parameters(outcome, shown),
        SavedBody::Resource { .. } => to_bytes(shown),
    };
    Answer {
        status: saved.status,
        etag: saved.etag.clone(),
        location: saved.location.clone(),
        body,
    }
}

/// The answer to a change that was just applied: the record it refers to is in hand and is
/// the current version, so its own label decides the view.
pub(crate) fn applied(response: &SavedResponse, record: &Patient, role: Role) -> Answer {
    saved(response, &view::for_role(record.doc(), role, false))
}

impl App {
    /// The answer to a retry: the saved answer rendered again from the version it refers to,
    /// through the view rules as they stand now — a record restricted since the first answer
    /// comes back redacted, one invalidated since is 404 INVALIDATED_RESOURCE — for the same
    /// caller (the request fingerprint includes subject and role).
    pub(crate) async fn replayed(
        &self,
        role: Role,
        response: &SavedResponse,
    ) -> Result<Answer, PdsError> {
        if matches!(response.body, SavedBody::Resource { .. }) {
            return self.replayed_resource(role, response).await;
        }
        let corrupt_body =
            || StoreError::Corrupt("a saved response names no patient record".into());
        let (id, v) = response.body.record().ok_or_else(corrupt_body)?;
        let corrupt = || StoreError::Corrupt(format!("a saved response refers to {id} v{v}"));
        let id = NhsNumber::parse(id).map_err(|_| corrupt())?;
        let v = Version::new(v).ok_or_else(corrupt)?;
        let record = self.store.get_version(id, v).await?.ok_or_else(corrupt)?;
        let patient = super::parse(&record)?;
        if role.is_back_office() {
            return Ok(saved(response, patient.doc()));
        }
        let now = self.store.get(id).await?.ok_or_else(corrupt)?;
        if now.invalidated {
            return Err(PdsError::bare(ErrorCode::InvalidatedResource));
        }
        let versions = self.store.history(id).await?;
        let seen = RecordHistory::of(versions.iter().map(|v| (v.version.get(), v.restricted)));
        let redact = seen.redacts(v.get(), record.restricted);
        Ok(saved(
            response,
            &view::for_role(patient.doc(), role, redact),
        ))
    }
}
