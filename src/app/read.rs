//! Reading records: a patient, its history, one version, its audit trail.

use serde_json::{json, Value};

use super::{answer, require_back_office, Answer, App};
use crate::auth::Caller;
use crate::domain::related_person;
use crate::domain::subset::Subset;
use crate::domain::view::RecordHistory;
use crate::domain::{ErrorCode, NhsNumber, PdsError, Version};
use crate::store::{AuditEntry, StoredRecord};

impl App {
    /// The record a read of `id` shows: the survivor's, when `id` was merged into another.
    ///
    /// An invalidated record is 404 INVALIDATED_RESOURCE for every role but the back office —
    /// after following merges, since an invalidated but superseded number shows its survivor
    /// (PDS).
    pub(crate) async fn load_current(
        &self,
        id: NhsNumber,
        caller: &Caller,
    ) -> Result<StoredRecord, PdsError> {
        let mut record = self.load(id).await?;
        if record.merged {
            let survivor = self.store.survivor(id).await?;
            if survivor != id {
                record = self.load(survivor).await?;
            }
        }
        if record.invalidated && !caller.role.is_back_office() {
            return Err(PdsError::bare(ErrorCode::InvalidatedResource));
        }
        Ok(record)
    }

    /// `GET /Patient/{id}`: the current record as the caller may see it, with its ETag; with
    /// `_summary` / `_elements`, the part of that asked for.
    pub async fn read(
        &self,
        caller: &Caller,
        id: NhsNumber,
        subset: &Subset,
    ) -> Result<Answer, PdsError> {
        self.require_own_record(caller, id).await?;
        let record = self.load_current(id, caller).await?;
        let version = record.version;
        if *subset == Subset::Full {
            return Ok(Answer::record(
                version,
                answer::current(record, caller.role)?,
            ));
        }
        let doc = answer::current_doc(&record, caller.role)?;
        let part = subset.apply(&doc).unwrap_or(doc);
        Ok(Answer::record(version, answer::to_bytes(&part)))
    }

    /// `GET /Patient/{id}/RelatedPerson`: the contacts of the record a read shows, as a
    /// searchset Bundle of RelatedPerson — from the caller's view of it, so empty for a
    /// restricted record (PDS), and with no `entry` when empty (as a search).
    pub async fn related_people(&self, caller: &Caller, id: NhsNumber) -> Result<Answer, PdsError> {
        self.require_own_record(caller, id).await?;
        let record = self.load_current(id, caller).await?;
        let doc = answer::current_doc(&record, caller.role)?;
        let shown_id = doc
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let people = related_person::related_people(&doc, crate::env::today());
        let base = format!("{}/Patient/{shown_id}/RelatedPerson", self.base_url);
        let mut bundle = json!({"resourceType": "Bundle", "type": "searchset",
            "timestamp": answer::bundle_timestamp(), "total": people.len(),
            "link": [{"relation": "self", "url": base}]});
        if !people.is_empty() {
            let entries: Vec<Value> = people
                .into_iter()
                .map(|p| {
                    json!({"fullUrl": format!("{base}/{}", p["id"].as_str().unwrap_or_default()),
                    "search": {"mode": "match"}, "resource": p})
                })
                .collect();
            bundle["entry"] = Value::Array(entries);
        }
        Ok(Answer::ok(answer::json_bytes(&bundle)))
    }

    /// Every version of a record, newest first, as a FHIR `history` Bundle. Other roles see
    /// what a read shows them — the survivor of a merge, nothing of an invalidated record — and
    /// each version in the view [`RecordHistory`] decides: what a record held while restricted
    /// stays hidden in every past version. PDS offers patients no history: 403, even of their
    /// own record.
    pub async fn history(&self, caller: &Caller, id: NhsNumber) -> Result<Answer, PdsError> {
        super::refuse_patient(caller)?;
        let mut id = id;
        let current = self.load(id).await?;
        if !caller.role.is_back_office() {
            if current.merged {
                id = self.store.survivor(id).await?;
            }
            self.load_current(id, caller).await?;
        }
        let versions = self.store.history(id).await?;
        let seen = RecordHistory::of(versions.iter().map(|v| (v.version.get(), v.restricted)));
        let mut entries = Vec::with_capacity(versions.len());
        for v in &versions {
            let redact = seen.redacts(v.version.get(), v.restricted);
            let resource: Value =
                serde_json::from_slice(&answer::version(v, caller.role, redact)?).expect("JSON");
            let first = v.version == Version::FIRST;
            let mut response = json!({"status": if first { "201 Created" } else { "200 OK" }, "etag": v.version.etag()});
            if let Some(at) = resource["meta"]["lastUpdated"].as_str() {
                response["lastModified"] = json!(at);
            }
            entries.push(json!({
                "fullUrl": format!("{}/Patient/{id}", self.base_url),
                "resource": resource,
                "request": {"method": if first { "POST" } else { "PATCH" }, "url": format!("Patient/{id}")},
                "response": response,
            }));
        }
        let bundle = json!({"resourceType": "Bundle", "type": "history", "total": entries.len(),
            "link": [{"relation": "self", "url": format!("{}/Patient/{id}/_history", self.base_url)}],
            "entry": entries});
        Ok(Answer::ok(serde_json::to_vec(&bundle).expect("JSON")))
    }

    /// One version of a record, as stored (back office).
    pub async fn read_version(
        &self,
        caller: &Caller,
        id: NhsNumber,
        version: Version,
    ) -> Result<Answer, PdsError> {
        require_back_office(caller)?;
        let record = self
            .store
            .get_version(id, version)
            .await?
            .ok_or_else(|| PdsError::bare(ErrorCode::ResourceNotFound))?;
        Ok(Answer::record(version, record.json))
    }

    /// The audit trail of a patient, oldest first (back office).
    pub async fn audit_trail(
        &self,
        caller: &Caller,
        id: NhsNumber,
    ) -> Result<Vec<AuditEntry>, PdsError> {
        require_back_office(caller)?;
        Ok(self.store.audit(id).await?)
    }
}
