//! Case work: raising, reading, searching and moving cases (`Task`s), the messages they send
//! practices (`Communication`s), and tying a back-office correction to its case.
//!
//! Every change of a case is one [`Change`]: the Task's new version (with its audit entry and
//! index entries), the messages it sends, and — for a correction — the patient records, all
//! in one transaction, once per request id.

use std::collections::HashSet;

use serde_json::{json, Value};

use super::idempotency::{remember, Key};
use super::{answer, Answer, App, Request};
use crate::auth::Caller;
use crate::domain::case::edit::{self, Editor};
use crate::domain::case::message::{self, Category, Message, MessageFacts};
use crate::domain::case::query::{MessageQuery, TaskQuery};
use crate::domain::case::task::{self, valid_id, Facts, NewCase};
use crate::domain::case::{part, CaseKind, Needs, OdsCode, Owner, Status, REQUEST_ID_SYSTEM};
use crate::domain::{json as fhir_json, patient, ErrorCode, NhsNumber, PdsError, Role, Version};
use crate::store::resource::{
    IndexEntry, IndexQuery, ResourceAudit, ResourceKind, ResourceVersion, ResourceWrite,
};
use crate::store::{Change, Committed, SavedBody, SavedResponse, StoreError};

/// Case work is for practices, PCSE and the NBO.
pub fn require_case_role(caller: &Caller) -> Result<(), PdsError> {
    match caller.role {
        Role::Practice | Role::Pcse | Role::BackOffice => Ok(()),
        Role::Patient => Err(PdsError::patient_forbidden()),
        role => Err(PdsError::new(
            ErrorCode::AccessForbidden,
            format!("Case work is for GP practices, PCSE and the National Back Office; the caller has the {role} role"),
        )),
    }
}

fn not_found() -> PdsError {
    PdsError::bare(ErrorCode::ResourceNotFound)
}

fn corrupt(kind: ResourceKind, id: &str) -> impl Fn(String) -> PdsError + '_ {
    move |why| StoreError::Corrupt(format!("{} {id}: {why}", kind.name())).into()
}

fn etag(v: u32) -> String {
    Version::new(v).map(Version::etag).unwrap_or_default()
}

fn body_json(body: &[u8]) -> Result<Value, PdsError> {
    fhir_json::parse(body).map_err(|e| {
        PdsError::new(
            ErrorCode::InvalidValue,
            format!("the request body is not valid JSON - {e}"),
        )
    })
}

/// The JSON Patch of a PATCH body: a bare array or `{"patches": [...]}`.
fn json_patch_of(body: &Value) -> Result<json_patch::Patch, PdsError> {
    let ops = match body {
        Value::Array(_) => body,
        Value::Object(o) if o.len() == 1 && o.contains_key("patches") => &o["patches"],
        _ => {
            return Err(PdsError::invalid_update(
                "the body is a JSON Patch: a list of operations, or {\"patches\": [...]}",
            ))
        }
    };
    if ops.as_array().is_some_and(Vec::is_empty) {
        return Err(PdsError::invalid_update("No patches found"));
    }
    serde_json::from_value(ops.clone())
        .map_err(|e| PdsError::invalid_update(format!("the JSON Patch is malformed - {e}")))
}

/// The lists a case grows by appending (`/note/-`, …): present, if empty, while a patch is
/// applied, so that the first entry is added the same way as every later one.
const APPENDED: [&str; 3] = ["note", "input", "output"];

fn patched(doc: &Value, patch: &json_patch::Patch) -> Result<Value, PdsError> {
    let mut out = doc.clone();
    if let Some(o) = out.as_object_mut() {
        for list in APPENDED {
            o.entry(list).or_insert_with(|| json!([]));
        }
    }
    json_patch::patch(&mut out, patch).map_err(|e| {
        PdsError::invalid_update(format!("operation {} failed - {}", e.operation, e.kind))
    })?;
    if let Some(o) = out.as_object_mut() {
        // FHIR has no empty lists
        o.retain(|k, v| {
            !(APPENDED.contains(&k.as_str()) && v.as_array().is_some_and(Vec::is_empty))
        });
    }
    Ok(out)
}

/// The next stored version of a case edited through the caller's `seen` view: the edit's
/// document with the outputs the view hid kept, in order, before those the edit added
/// (outputs are append-only, so those are the ones past the view's).
fn with_hidden_outputs(stored: &Value, seen: &Value, mut edited: Value) -> Value {
    let list = |d: &Value| {
        d.get("output")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let shown = list(seen).len();
    let mut outputs = list(stored);
    outputs.extend(list(&edited).into_iter().skip(shown));
    if let Some(o) = edited.as_object_mut() {
        if outputs.is_empty() {
            o.remove("output");
        } else {
            o.insert("output".into(), Value::Array(outputs));
        }
    }
    edited
}

/// A change made at the If-Match version, or refused: someone else changed the resource since
/// the caller read it.
fn at_version(current: &ResourceVersion, expected: Version) -> Result<(), PdsError> {
    if current.version == expected.get() {
        return Ok(());
    }
    Err(PdsError::new(
        ErrorCode::ResourceVersionMismatch,
        format!(
            "Invalid update with error - the If-Match version {} is not the current version, {}: read the {} again and re-apply the change to it",
            expected.etag(),
            etag(current.version),
            current.kind.name()
        ),
    ))
}

/// A searchset Bundle: the first `count` of `found` (in order) as `role` may see them, and
/// how many matched.
fn searchset(base_url: &str, found: &[&ResourceVersion], count: usize, role: Role) -> Answer {
    let entries: Vec<Value> = found
        .iter()
        .take(count)
        .map(|v| {
            json!({
                "fullUrl": format!("{base_url}/{}/{}", v.kind.name(), v.id),
                "resource": shown(v.kind, &v.doc, role),
                "search": {"mode": "match"},
            })
        })
        .collect();
    let bundle = json!({"resourceType": "Bundle", "type": "searchset", "total": found.len(), "entry": entries});
    Answer::ok(answer::json_bytes(&bundle))
}

/// The index entries of `keys`, each sorted by `sort`.
fn entries(keys: Vec<String>, sort: &str) -> Vec<IndexEntry> {
    keys.into_iter()
        .map(|key| IndexEntry {
            key,
            sort: sort.to_string(),
        })
        .collect()
}

/// A GP practice code of a record (its first `generalPractitioner`).
fn practice_of(doc: &serde_json::Map<String, Value>) -> Option<OdsCode> {
    patient::list(doc, "generalPractitioner")
        .first()?
        .pointer("/identifier/value")?
        .as_str()
        .and_then(|s| OdsCode::parse(s).ok())
}

impl Request<'_> {
    fn resource_audit(&self, operation: &str, patch: Option<Value>, now: &str) -> ResourceAudit {
        ResourceAudit {
            at: now.to_string(),
            subject: self.caller.subject.clone(),
            role: self.caller.role.name().to_string(),
            ods: self.caller.ods.as_ref().map(|o| o.to_string()),
            request_id: self.request_id.to_string(),
            correlation_id: self.correlation_id.map(str::to_string),
            operation: operation.to_string(),
            patch,
        }
    }
}

/// A Task version as stored: its document, facts, index entries and reach.
pub(crate) fn task_version(
    id: &str,
    version: u32,
    doc: Value,
    reach: Vec<String>,
    audit: ResourceAudit,
) -> Result<ResourceVersion, PdsError> {
    let facts = Facts::of(&doc).map_err(corrupt(ResourceKind::Task, id))?;
    Ok(ResourceVersion {
        kind: ResourceKind::Task,
        id: id.to_string(),
        version,
        index: entries(facts.index_keys(&reach), &facts.due),
        doc,
        audit,
        reach,
    })
}

pub(crate) fn message_version(
    id: &str,
    doc: Value,
    version: u32,
    audit: ResourceAudit,
) -> ResourceVersion {
    let facts = MessageFacts::of(&doc).expect("the service's own message");
    ResourceVersion {
        kind: ResourceKind::Communication,
        id: id.to_string(),
        version,
        index: entries(facts.index_keys(), &facts.sent),
        doc,
        audit,
        reach: Vec::new(),
    }
}

/// The saved response of a resource change.
fn saved(
    kind: ResourceKind,
    v: &ResourceVersion,
    status: u16,
    location: Option<String>,
) -> SavedResponse {
    SavedResponse {
        status,
        etag: Some(etag(v.version)),
        location,
        body: SavedBody::Resource {
            kind,
            id: v.id.clone(),
            version: v.version,
        },
    }
}

/// What a resource looks like to `role`.
fn shown(kind: ResourceKind, doc: &Value, role: Role) -> Value {
    match kind {
        ResourceKind::Task => task::view(doc, role),
        ResourceKind::Communication => doc.clone(),
    }
}

/// A case a correction is recorded on: read and checked before the correction, written with
/// it (the Task's next version, with an `output` entry per record the correction changed).
#[derive(Clone)]
pub(crate) struct OpenCase {
    current: ResourceVersion,
    facts: Facts,
    audit: ResourceAudit,
    now: String,
}

impl OpenCase {
    /// A correction may be recorded on this case: it changes the case's own patients (or only
    /// creates records), and a change of identity goes on a change-of-identity case alone —
    /// anywhere else its outcome would reach the new record's practice beside the old number.
    pub(crate) fn check(
        &self,
        change_of_identity: bool,
        records: &[NhsNumber],
    ) -> Result<(), PdsError> {
        if change_of_identity && self.facts.kind != CaseKind::ChangeOfIdentity {
            return Err(PdsError::new(
                ErrorCode::CaseConflict,
                format!(
                    "A change of identity is recorded on a change-of-identity case, not on this case ({})",
                    self.facts.kind.code()
                ),
            ));
        }
        if let Some(other) = records.iter().find(|r| !self.facts.patients.contains(r)) {
            return Err(PdsError::new(
                ErrorCode::CaseConflict,
                format!("{other} is not a patient of this case: a correction is recorded on the case it resolves"),
            ));
        }
        Ok(())
    }

    /// Adds the case's next version to `change`: an output for each record version the change
    /// writes, the case `in-progress` if it was only `accepted`.
    pub(crate) fn attach(&self, change: &mut Change) {
        let mut doc = self.current.doc.clone();
        let mut outputs: Vec<Value> = doc
            .get("output")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let added: Vec<Value> = change
            .audit
            .iter()
            .map(|a| {
                let mut reference = json!({
                    "reference": format!("Patient/{}/_history/{}", a.patient, a.version_after),
                    "identifier": {"system": REQUEST_ID_SYSTEM, "value": a.request_id},
                });
                if a.version_before.is_none() {
                    reference["display"] = json!("new record");
                }
                json!({
                    "type": {"coding": [{"system": crate::domain::case::CASE_PART_SYSTEM, "code": part::CORRECTION}], "text": a.operation},
                    "valueReference": reference,
                })
            })
            .collect();
        outputs.extend(added.iter().cloned());
        doc["output"] = Value::Array(outputs);
        if self.facts.status == Status::Accepted {
            doc["status"] = json!(Status::InProgress.code());
        }
        let version = self.current.version + 1;
        edit::stamp(&mut doc, version, &self.now);
        let facts = Facts::of(&doc).expect("the case was read as a Task");
        let mut audit = self.audit.clone();
        audit.patch = Some(json!([{"op": "add", "path": "/output/-", "value": added}]));
        let new = ResourceVersion {
            kind: ResourceKind::Task,
            id: self.current.id.clone(),
            version,
            index: entries(facts.index_keys(&self.current.reach), &facts.due),
            doc,
            audit,
            reach: self.current.reach.clone(),
        };
        change
            .resources
            .push(ResourceWrite::update(&self.current, new));
    }
}

impl App {
    async fn current(&self, kind: ResourceKind, id: &str) -> Result<ResourceVersion, PdsError> {
        if !valid_id(id) {
            return Err(not_found());
        }
        self.store.resource(kind, id).await?.ok_or_else(not_found)
    }

    /// A case the caller may read (404 for one it may not: its existence is not told).
    async fn readable_case(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(ResourceVersion, Facts), PdsError> {
        require_case_role(caller)?;
        let current = self.current(ResourceKind::Task, id).await?;
        let facts = Facts::of(&current.doc).map_err(corrupt(ResourceKind::Task, id))?;
        if !self.may_read_case(caller, &facts, &current).await? {
            return Err(not_found());
        }
        Ok((current, facts))
    }

    /// Whether `caller` may read the case. A practice other than the requester reaches a case
    /// through its patients' records as they are now — not as they were when the case was last
    /// written: a record restricted since no longer lets its practice in.
    async fn may_read_case(
        &self,
        caller: &Caller,
        facts: &Facts,
        v: &ResourceVersion,
    ) -> Result<bool, PdsError> {
        if !facts.readable_by(caller.role, caller.ods.as_ref(), &v.reach) {
            return Ok(false);
        }
        match (caller.role, &caller.ods) {
            (Role::Practice, Some(ods)) if *ods != facts.requester => Ok(self
                .reach(&facts.patients)
                .await?
                .iter()
                .any(|r| r == ods.as_str())),
            _ => Ok(true),
        }
    }

    /// Whether `caller` may read the message: as [`MessageFacts::readable_by`], and for PCSE
    /// not one about a patient whose record is restricted now (its recipient may be the
    /// patient's practice, a hidden field).
    async fn may_read_message(
        &self,
        caller: &Caller,
        facts: &MessageFacts,
    ) -> Result<bool, PdsError> {
        if !facts.readable_by(caller.role, caller.ods.as_ref()) {
            return Ok(false);
        }
        if caller.role != Role::Pcse {
            return Ok(true);
        }
        let Some(subject) = facts.subject else {
            return Ok(true);
        };
        Ok(match self.store.get(subject).await? {
            Some(stored) => !stored.restricted,
            None => true,
        })
    }

    async fn readable_message(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(ResourceVersion, MessageFacts), PdsError> {
        require_case_role(caller)?;
        let current = self.current(ResourceKind::Communication, id).await?;
        let facts =
            MessageFacts::of(&current.doc).map_err(corrupt(ResourceKind::Communication, id))?;
        if !self.may_read_message(caller, &facts).await? {
            return Err(not_found());
        }
        Ok((current, facts))
    }

    /// The practice a patient is registered with, as a case may name it: never a restricted
    /// record's, whose GP is a hidden field (PCSE reads every case and message).
    ///
    /// A number merged away counts as its survivor: if the survivor is restricted, the
    /// merged-away record's practice is not named either (it would point at the patient).
    async fn visible_practice(&self, nhs: NhsNumber) -> Result<Option<OdsCode>, PdsError> {
        let Some(stored) = self.store.get(nhs).await? else {
            return Ok(None);
        };
        if stored.merged {
            let survivor = self.store.survivor(nhs).await?;
            if survivor != nhs {
                if let Some(s) = self.store.get(survivor).await? {
                    if s.restricted {
                        return Ok(None);
                    }
                }
            }
        }
        let record = super::parse(&stored)?;
        Ok(if record.is_restricted() {
            None
        } else {
            practice_of(record.doc())
        })
    }

    /// The practices a case may be read by besides its requester: those its patients are
    /// registered with (see [`Self::visible_practice`]).
    pub(crate) async fn reach(&self, patients: &[NhsNumber]) -> Result<Vec<String>, PdsError> {
        let mut reach = Vec::new();
        for p in patients {
            if let Some(o) = self.visible_practice(*p).await? {
                reach.push(o.to_string());
            }
        }
        reach.sort();
        reach.dedup();
        Ok(reach)
    }

    /// Commits a change whose answer is a resource version, then answers with it as `role`
    /// may see it — or, for a retry of a change already made, with what that change showed.
    async fn commit_resource(
        &self,
        role: Role,
        change: Change,
        shown_version: &ResourceVersion,
    ) -> Result<Answer, PdsError> {
        let saved = change
            .request
            .as_ref()
            .expect("changes carry their response")
            .response
            .clone();
        let body = shown(shown_version.kind, &shown_version.doc, role);
        match self.store.commit(change).await? {
            Committed::Applied => Ok(Answer {
                status: saved.status,
                etag: saved.etag,
                location: saved.location,
                body: serde_json::to_vec(&body).expect("JSON"),
            }),
            Committed::Replayed(original) => self.replayed(role, &original).await,
        }
    }

    /// A retry's answer for a Task or Communication change: the version it produced, as the
    /// caller's role may see it now.
    pub(crate) async fn replayed_resource(
        &self,
        role: Role,
        response: &SavedResponse,
    ) -> Result<Answer, PdsError> {
        let SavedBody::Resource { kind, id, version } = &response.body else {
            unreachable!("called for resource responses")
        };
        let stored = self
            .store
            .resource_history(*kind, id)
            .await?
            .into_iter()
            .find(|v| v.version == *version)
            .ok_or_else(|| {
                PdsError::from(StoreError::Corrupt(format!(
                    "a saved response refers to {} {id} v{version}",
                    kind.name()
                )))
            })?;
        Ok(Answer {
            status: response.status,
            etag: response.etag.clone(),
            location: response.location.clone(),
            body: serde_json::to_vec(&shown(*kind, &stored.doc, role)).expect("JSON"),
        })
    }

    /// `POST /Task`: raises a case (`requested`, owned by PCSE, due by its kind's table).
    pub async fn create_case(&self, req: &Request<'_>, body: &[u8]) -> Result<Answer, PdsError> {
        require_case_role(req.caller)?;
        let key = Key::new(req, "POST", "Task", "", body);
        self.once(req, &key, || async {
            let body = body_json(body)?;
            let case = NewCase::parse(&body, req.caller.role, req.caller.ods.as_ref())?;
            for (what, p) in case
                .patient
                .iter()
                .map(|p| ("for", *p))
                .chain(case.other.iter().map(|p| ("the other NHS number", *p)))
            {
                // a body naming an unknown patient is bad input (400), not a missing resource
                let Some(stored) = self.store.get(p).await? else {
                    return Err(PdsError::new(
                        ErrorCode::InvalidValue,
                        format!("{what} {p} is not a known patient: a case is raised for a record PDS holds"),
                    ));
                };
                let record = super::parse(&stored)?;
                if record.is_invalidated() {
                    return Err(PdsError::new(
                        ErrorCode::InvalidValue,
                        format!("{what} {p} is an invalidated record: a case is raised for a valid one"),
                    ));
                }
            }
            let now = crate::env::now();
            let due = crate::env::today()
                + time::Duration::days(i64::from(self.case_due.days(case.kind)));
            let id = uuid::Uuid::new_v4().to_string();
            let doc = case.to_task(&id, &now, due);
            let reach = self.reach(&case.patients()).await?;
            let audit = req.resource_audit("create", None, &now);
            let v = task_version(&id, 1, doc, reach, audit)?;
            let location = format!("{}/Task/{id}", self.base_url);
            let change = Change {
                resources: vec![ResourceWrite::create(v.clone())],
                request: Some(remember(&key, saved(ResourceKind::Task, &v, 201, Some(location)))),
                forget_requests_before: self.forget_before(),
                ..Change::default()
            };
            self.commit_resource(req.caller.role, change, &v).await
        })
        .await
    }

    /// `GET /Task/{id}`.
    pub async fn read_case(&self, caller: &Caller, id: &str) -> Result<Answer, PdsError> {
        let (current, _) = self.readable_case(caller, id).await?;
        Ok(Answer {
            etag: Some(etag(current.version)),
            ..Answer::ok(answer::json_bytes(&task::view(&current.doc, caller.role)))
        })
    }

    /// `GET /Task/{id}/_history`: every version, newest first. (Who may read the case now
    /// reads its past versions, through the same view.)
    pub async fn case_history(&self, caller: &Caller, id: &str) -> Result<Answer, PdsError> {
        let (current, _) = self.readable_case(caller, id).await?;
        let versions = self
            .store
            .resource_history(ResourceKind::Task, &current.id)
            .await?;
        let entries: Vec<Value> = versions
            .iter()
            .map(|v| {
                let first = v.version == 1;
                json!({
                    "fullUrl": format!("{}/Task/{}/_history/{}", self.base_url, v.id, v.version),
                    "resource": task::view(&v.doc, caller.role),
                    "request": {"method": if first { "POST" } else { "PATCH" }, "url": format!("Task/{}", v.id)},
                    "response": {"status": if first { "201 Created" } else { "200 OK" }, "etag": etag(v.version), "lastModified": v.audit.at},
                })
            })
            .collect();
        let bundle = json!({"resourceType": "Bundle", "type": "history", "total": entries.len(), "entry": entries});
        Ok(Answer::ok(answer::json_bytes(&bundle)))
    }

    /// The ids under every key of `keys` (a union), in index order.
    async fn ids_under(
        &self,
        kind: ResourceKind,
        keys: &[String],
        below: Option<&str>,
    ) -> Result<Vec<String>, PdsError> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for key in keys {
            let query = IndexQuery {
                kind,
                key: key.clone(),
                below: below.map(str::to_string),
            };
            for id in self.store.resource_ids(&query).await? {
                if seen.insert(id.clone()) {
                    out.push(id);
                }
            }
        }
        Ok(out)
    }

    /// Ids in every one of `sets` (each a union of keys), in the first set's order.
    async fn intersect(
        &self,
        kind: ResourceKind,
        sets: &[(Vec<String>, Option<String>)],
    ) -> Result<Vec<String>, PdsError> {
        let mut lists = Vec::with_capacity(sets.len());
        for (keys, below) in sets {
            lists.push(self.ids_under(kind, keys, below.as_deref()).await?);
        }
        lists.sort_by_key(Vec::len);
        let mut lists = lists.into_iter();
        let first = lists.next().unwrap_or_default();
        let rest: Vec<HashSet<String>> = lists.map(|l| l.into_iter().collect()).collect();
        Ok(first
            .into_iter()
            .filter(|id| rest.iter().all(|s| s.contains(id)))
            .collect())
    }

    /// `GET /Task?…`: cases by status, kind, owner, requester, patient, overdue — read from
    /// the index, sorted by due date. A practice gets only the cases it may read.
    pub async fn search_cases(
        &self,
        caller: &Caller,
        pairs: &[(String, String)],
    ) -> Result<Answer, PdsError> {
        require_case_role(caller)?;
        let q = TaskQuery::parse(pairs)?;
        let mut sets: Vec<(Vec<String>, Option<String>)> =
            q.keys().into_iter().map(|k| (k, None)).collect();
        if q.overdue {
            sets.push((vec!["open".into()], Some(task::date(crate::env::today()))));
        }
        if caller.role == Role::Practice {
            let own = caller
                .ods
                .as_ref()
                .ok_or_else(|| PdsError::bare(ErrorCode::AccessForbidden))?;
            sets.push((
                vec![format!("requester={own}"), format!("reach={own}")],
                None,
            ));
        }
        if sets.is_empty() {
            sets.push((vec!["all".into()], None));
        }
        let ids = self.intersect(ResourceKind::Task, &sets).await?;
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(v) = self.store.resource(ResourceKind::Task, &id).await? else {
                continue;
            };
            let facts = Facts::of(&v.doc).map_err(corrupt(ResourceKind::Task, &id))?;
            if self.may_read_case(caller, &facts, &v).await? {
                found.push((facts.due, v));
            }
        }
        found.sort_by(|a, b| (&a.0, &a.1.id).cmp(&(&b.0, &b.1.id)));
        if q.descending {
            found.reverse();
        }
        let found: Vec<&ResourceVersion> = found.iter().map(|(_, v)| v).collect();
        Ok(searchset(&self.base_url, &found, q.count, caller.role))
    }

    /// `PATCH /Task/{id}`: a JSON Patch under the case rules ([`edit::check`]), at `expected`;
    /// an information request sends the practice the question, a completion sends each
    /// practice concerned the outcome. Once per request id.
    pub async fn update_case(
        &self,
        req: &Request<'_>,
        id: &str,
        expected: Version,
        body: &[u8],
    ) -> Result<Answer, PdsError> {
        require_case_role(req.caller)?;
        let key = Key::new(req, "PATCH", &format!("Task/{id}"), &expected.etag(), body);
        self.once(req, &key, || async {
            let patch = json_patch_of(&body_json(body)?)?;
            let (current, facts) = self.readable_case(req.caller, id).await?;
            at_version(&current, expected)?;
            // the patch works on what the caller may see: a `test` or `copy` cannot reach a
            // hidden output; what it adds is put back beside the hidden ones
            let seen = task::view(&current.doc, req.caller.role);
            let after = patched(&seen, &patch)?;
            let now = crate::env::now();
            let editor = Editor {
                role: req.caller.role,
                ods: req.caller.ods.as_ref(),
                subject: &req.caller.subject,
                now: &now,
            };
            let mut edit = edit::check(&seen, &after, &editor, current.version + 1)?;
            edit.doc = with_hidden_outputs(&current.doc, &seen, edit.doc);
            let mut messages = Vec::new();
            match edit.moved {
                Some((_, _, Needs::InformationRequest)) => {
                    let sender = if req.caller.role == Role::BackOffice {
                        Owner::Nbo
                    } else {
                        Owner::Pcse
                    };
                    let text = edit.notes.join("\n\n");
                    let msg = Message {
                        category: Category::InformationRequest,
                        recipient: &facts.requester,
                        subject: facts.patients.first().copied(),
                        about: Some(&current.id),
                        sender,
                        text: &text,
                        actions: &[],
                    };
                    messages.push(msg.to_doc(&uuid::Uuid::new_v4().to_string(), &now));
                }
                Some((_, _, Needs::Completion)) => {
                    messages = self.outcome_messages(&current, &facts, &edit, &now).await?;
                }
                _ => {}
            }
            let reach = self.reach(&facts.patients).await?;
            let audit = req.resource_audit(
                "patch",
                Some(serde_json::to_value(&patch).expect("JSON")),
                &now,
            );
            let next = task_version(
                &current.id,
                current.version + 1,
                edit.doc,
                reach,
                audit.clone(),
            )?;
            let mut resources = vec![ResourceWrite::update(&current, next.clone())];
            for m in messages {
                let mid = m["id"].as_str().expect("an id").to_string();
                let mut a = audit.clone();
                a.operation = "create".into();
                a.patch = None;
                resources.push(ResourceWrite::create(message_version(&mid, m, 1, a)));
            }
            let change = Change {
                resources,
                request: Some(remember(&key, saved(ResourceKind::Task, &next, 200, None))),
                forget_requests_before: self.forget_before(),
                ..Change::default()
            };
            self.commit_resource(req.caller.role, change, &next).await
        })
        .await
    }

    /// The messages a completed case sends: to the requester and to the practice each
    /// affected patient is registered with, about the case; for a change of identity only to
    /// the new record's practice, about the new record alone (nothing names the old number).
    async fn outcome_messages(
        &self,
        current: &ResourceVersion,
        facts: &Facts,
        edit: &edit::Edit,
        now: &str,
    ) -> Result<Vec<Value>, PdsError> {
        let resolution = edit.resolution.clone().unwrap_or_default();
        let corrections: Vec<(String, NhsNumber, bool)> = current
            .doc
            .get("output")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|o| task::part_code(o) == Some(part::CORRECTION))
            .filter_map(|o| {
                let op = o.pointer("/type/text")?.as_str()?.to_string();
                let r = o.pointer("/valueReference/reference")?.as_str()?;
                let nhs = NhsNumber::parse(r.strip_prefix("Patient/")?.split('/').next()?).ok()?;
                let new = o.pointer("/valueReference/display").and_then(Value::as_str)
                    == Some("new record");
                Some((op, nhs, new))
            })
            .collect();
        let new_identity: Vec<NhsNumber> = corrections
            .iter()
            .filter(|(op, _, new)| op == "change-identity" && *new)
            .map(|(_, n, _)| *n)
            .collect();
        let mut out = Vec::new();
        if facts.kind == CaseKind::ChangeOfIdentity {
            for old in &facts.patients {
                let o = old.to_string();
                if resolution.contains(&o) || edit.actions.iter().any(|a| a.contains(&o)) {
                    return Err(PdsError::new(
                        ErrorCode::InvalidValue,
                        "A change of identity's resolution and follow-on actions go to the new record's practice and must not name the old NHS number",
                    ));
                }
            }
            for nhs in new_identity {
                if let Some(gp) = self.visible_practice(nhs).await? {
                    let msg = Message {
                        category: Category::Outcome,
                        recipient: &gp,
                        subject: Some(nhs),
                        about: None,
                        sender: Owner::Nbo,
                        text: &resolution,
                        actions: &edit.actions,
                    };
                    out.push(msg.to_doc(&uuid::Uuid::new_v4().to_string(), now));
                }
            }
            return Ok(out);
        }
        let mut recipients = vec![facts.requester.clone()];
        let mut affected: Vec<NhsNumber> = facts.patients.clone();
        affected.extend(corrections.iter().map(|(_, n, _)| *n));
        for nhs in affected {
            recipients.extend(self.visible_practice(nhs).await?);
        }
        let mut seen = HashSet::new();
        for r in recipients {
            if !seen.insert(r.clone()) {
                continue;
            }
            let msg = Message {
                category: Category::Outcome,
                recipient: &r,
                subject: facts.patients.first().copied(),
                about: Some(&current.id),
                sender: Owner::Nbo,
                text: &resolution,
                actions: &edit.actions,
            };
            out.push(msg.to_doc(&uuid::Uuid::new_v4().to_string(), now));
        }
        Ok(out)
    }

    /// Reads and checks the case a back-office correction names, to be written with it.
    pub(crate) async fn open_case(
        &self,
        req: &Request<'_>,
        case: Option<String>,
    ) -> Result<Option<OpenCase>, PdsError> {
        let Some(id) = case else { return Ok(None) };
        super::require_back_office(req.caller)?;
        let current = self
            .store
            .resource(ResourceKind::Task, &id)
            .await?
            .ok_or_else(|| {
                PdsError::new(ErrorCode::ResourceNotFound, "Resource not found - case")
            })?;
        let facts = Facts::of(&current.doc).map_err(corrupt(ResourceKind::Task, &id))?;
        if !facts.status.takes_corrections() {
            return Err(PdsError::new(
                ErrorCode::CaseConflict,
                format!(
                    "The case is {}: corrections are recorded on a case the NBO has accepted or is working on",
                    facts.status.code()
                ),
            ));
        }
        let now = crate::env::now();
        Ok(Some(OpenCase {
            audit: req.resource_audit("correction", None, &now),
            current,
            facts,
            now,
        }))
    }

    /// `GET /Communication/{id}`.
    pub async fn read_message(&self, caller: &Caller, id: &str) -> Result<Answer, PdsError> {
        let (current, _) = self.readable_message(caller, id).await?;
        Ok(Answer {
            etag: Some(etag(current.version)),
            ..Answer::ok(answer::json_bytes(&current.doc))
        })
    }

    /// `GET /Communication?recipient=&status=&about=`: newest first. A practice reads those
    /// addressed to it (its own ODS code is the recipient when none is given).
    pub async fn search_messages(
        &self,
        caller: &Caller,
        pairs: &[(String, String)],
    ) -> Result<Answer, PdsError> {
        require_case_role(caller)?;
        let mut q = MessageQuery::parse(pairs)?;
        if caller.role == Role::Practice {
            let own = caller
                .ods
                .clone()
                .ok_or_else(|| PdsError::bare(ErrorCode::AccessForbidden))?;
            if q.recipient.as_ref().is_some_and(|r| *r != own) {
                return Err(PdsError::new(
                    ErrorCode::AccessForbidden,
                    "A practice reads the messages addressed to it: recipient must be its own ODS code",
                ));
            }
            q.recipient = Some(own);
        }
        let sets: Vec<(Vec<String>, Option<String>)> =
            q.keys().into_iter().map(|k| (vec![k], None)).collect();
        let ids = self.intersect(ResourceKind::Communication, &sets).await?;
        let mut found = Vec::new();
        for id in ids {
            let Some(v) = self
                .store
                .resource(ResourceKind::Communication, &id)
                .await?
            else {
                continue;
            };
            let facts =
                MessageFacts::of(&v.doc).map_err(corrupt(ResourceKind::Communication, &id))?;
            if self.may_read_message(caller, &facts).await? {
                found.push((facts.sent, v));
            }
        }
        found.sort_by(|a, b| (&b.0, &b.1.id).cmp(&(&a.0, &a.1.id)));
        let found: Vec<&ResourceVersion> = found.iter().map(|(_, v)| v).collect();
        Ok(searchset(&self.base_url, &found, q.count, caller.role))
    }

    /// `PATCH /Communication/{id}`: the recipient marks it read. Once per request id.
    pub async fn update_message(
        &self,
        req: &Request<'_>,
        id: &str,
        expected: Version,
        body: &[u8],
    ) -> Result<Answer, PdsError> {
        require_case_role(req.caller)?;
        let key = Key::new(
            req,
            "PATCH",
            &format!("Communication/{id}"),
            &expected.etag(),
            body,
        );
        self.once(req, &key, || async {
            let patch = json_patch_of(&body_json(body)?)?;
            let (current, _) = self.readable_message(req.caller, id).await?;
            at_version(&current, expected)?;
            let after = patched(&current.doc, &patch)?;
            let now = crate::env::now();
            let version = current.version + 1;
            let doc = message::mark_read(
                &current.doc,
                &after,
                req.caller.role,
                req.caller.ods.as_ref(),
                version,
                &now,
            )?;
            let audit = req.resource_audit(
                "read",
                Some(serde_json::to_value(&patch).expect("JSON")),
                &now,
            );
            let next = message_version(&current.id, doc, version, audit);
            let change = Change {
                resources: vec![ResourceWrite::update(&current, next.clone())],
                request: Some(remember(
                    &key,
                    saved(ResourceKind::Communication, &next, 200, None),
                )),
                forget_requests_before: self.forget_before(),
                ..Change::default()
            };
            self.commit_resource(req.caller.role, change, &next).await
        })
        .await
    }
}
