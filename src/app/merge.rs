//! Merging duplicate records and undoing a merge (back office).

use super::idempotency::{remember, Key};
use super::{answer, ops_json, require_back_office, Answer, App, Request};
use crate::domain::confidentiality::{self, BeforeMerge, Label};
use crate::domain::merge::{self, MergeRequest, Merged};
use crate::domain::patch::Operation;
use crate::domain::{json, NhsNumber, Patient, PdsError};
use crate::store::{Change, RecordWrite, SavedResponse};

/// An operation's JSON body (FHIR `Parameters`), strictly parsed.
pub(crate) fn parameters_body(body: &[u8]) -> Result<serde_json::Value, PdsError> {
    json::parse(body).map_err(|e| {
        PdsError::invalid_value(&format!("the request body is not valid JSON - {e}"), "body")
    })
}

impl App {
    /// `$merge`: `source-patient-identifier` superseded by `target-patient-identifier` (followed
    /// to its survivor), both as new versions with audit entries in one transaction; the
    /// survivor takes the stricter label of the two. `preview` answers without changing
    /// anything. Once per request id.
    pub async fn merge(&self, req: &Request<'_>, body: &[u8]) -> Result<Answer, PdsError> {
        require_back_office(req.caller)?;
        let key = Key::new(req, "POST", "$merge", "", body);
        self.once(req, &key, || async {
            let request = MergeRequest::parse(&parameters_body(body)?, true)?;
            self.do_merge(req, &key, &request).await
        })
        .await
    }

    /// `$unmerge`: the source live again with its own data, the links removed, each side a new
    /// version; the target's label restored where that is safe. Once per request id.
    pub async fn unmerge(&self, req: &Request<'_>, body: &[u8]) -> Result<Answer, PdsError> {
        require_back_office(req.caller)?;
        let key = Key::new(req, "POST", "$unmerge", "", body);
        self.once(req, &key, || async {
            let request = MergeRequest::parse(&parameters_body(body)?, false)?;
            self.do_unmerge(req, &key, &request).await
        })
        .await
    }

    async fn do_merge(
        &self,
        req: &Request<'_>,
        key: &Key,
        op: &MergeRequest,
    ) -> Result<Answer, PdsError> {
        let (source_id, target_requested) = (op.source, op.target.expect("parsed"));
        let source = self
            .load_named("source-patient-identifier", source_id)
            .await?;
        if let Some(survivor) = self.store.superseded_by(source_id).await? {
            return Err(PdsError::invalid_update(format!(
                "source {source_id} has already been merged into {survivor}; unmerge it first"
            )));
        }
        if source.is_invalidated() {
            return Err(PdsError::invalid_update(format!(
                "source {source_id} is invalidated"
            )));
        }
        self.load_named("target-patient-identifier", target_requested)
            .await?;
        let target_id = self.store.survivor(target_requested).await?;
        if target_id == source_id {
            let why = if target_requested == source_id {
                "a record cannot be merged into itself".to_string()
            } else {
                format!("target {target_requested} was merged into {source_id}: this merge would create a cycle")
            };
            return Err(PdsError::invalid_update(why));
        }
        let target = self
            .load_named("target-patient-identifier", target_id)
            .await?;
        if target.is_invalidated() {
            return Err(PdsError::invalid_update(format!(
                "target {target_id} is invalidated"
            )));
        }
        let merged = super::with_context(req.caller.role, |ctx| {
            merge::merge(
                &source,
                &target,
                op.result_patient.as_ref(),
                ctx,
                &self.schemas,
            )
        })?;
        if op.preview {
            let outcome = format!(
                "Preview only, nothing was changed: {source_id} would be superseded by {target_id}{}",
                merged.label_note().replace("now carries", "would carry")
            );
            return Ok(Answer::ok(answer::parameters(
                &outcome,
                merged.target.doc(),
            )));
        }
        let outcome = format!(
            "Merge completed: {source_id} is superseded by {target_id}{}",
            merged.label_note()
        );
        self.finish(
            req,
            key,
            op,
            Operation::Merge,
            (&source, &target),
            merged,
            outcome,
        )
        .await
    }

    async fn do_unmerge(
        &self,
        req: &Request<'_>,
        key: &Key,
        op: &MergeRequest,
    ) -> Result<Answer, PdsError> {
        let source_id = op.source;
        let source = self
            .load_named("source-patient-identifier", source_id)
            .await?;
        let Some(target_id) = self.store.superseded_by(source_id).await? else {
            return Err(PdsError::invalid_update(format!(
                "{source_id} is not superseded in a merge"
            )));
        };
        if let Some(named) = op.target {
            if named != target_id {
                return Err(PdsError::invalid_update(format!(
                    "{source_id} was merged into {target_id}, not {named}"
                )));
            }
        }
        let target = self.load_named("target", target_id).await?;
        let label = self.label_after_unmerge(&target, source_id).await?;
        let merged = super::with_context(req.caller.role, |ctx| {
            merge::unmerge(&source, &target, label, ctx, &self.schemas)
        })?;
        if op.preview {
            let outcome = format!(
                "Preview only, nothing was changed: {source_id} would be live again{}",
                merged.label_note().replace("now carries", "would carry")
            );
            return Ok(Answer::ok(answer::parameters(
                &outcome,
                merged.source.doc(),
            )));
        }
        let outcome = format!(
            "Unmerge completed: {source_id} is live again and no longer linked to {target_id}{}",
            merged.label_note()
        );
        self.finish(
            req,
            key,
            op,
            Operation::Unmerge,
            (&source, &target),
            merged,
            outcome,
        )
        .await
    }

    /// Writes both sides of a merge or unmerge with their audit entries, in one transaction; the
    /// answer shows the target after a merge, the source after an unmerge.
    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        req: &Request<'_>,
        key: &Key,
        op: &MergeRequest,
        operation: Operation,
        before: (&Patient, &Patient),
        merged: Merged,
        outcome: String,
    ) -> Result<Answer, PdsError> {
        let reason = Some(op.reason.as_str());
        let (source_id, target_id) = (merged.source.id(), merged.target.id());
        let mut audit = vec![
            req.audit(
                operation,
                Some(before.0),
                &merged.source,
                ops_json(&merged.source_ops),
                reason,
            ),
            req.audit(
                operation,
                Some(before.1),
                &merged.target,
                ops_json(&merged.target_ops),
                reason,
            ),
        ];
        audit[0].related = Some(target_id.to_string());
        audit[1].related = Some(source_id.to_string());
        let result = if operation == Operation::Merge {
            &merged.target
        } else {
            &merged.source
        };
        let response = SavedResponse::operation(outcome, result);
        let mut change = Change {
            writes: vec![
                RecordWrite::update(before.0, merged.source),
                RecordWrite::update(before.1, merged.target),
            ],
            audit,
            request: Some(remember(key, response)),
            forget_requests_before: self.forget_before(),
            ..Change::default()
        };
        match operation {
            Operation::Merge => change.supersede.push((source_id, target_id)),
            _ => change.unsupersede.push(source_id),
        }
        if let Some(case) = self.open_case(req, op.case.clone()).await? {
            case.check(false, &[source_id, target_id])?;
            case.attach(&mut change);
        }
        self.commit(req.caller.role, change).await
    }

    /// The label the target of a merge gets back when `source` is unmerged from it, if any (see
    /// [`confidentiality::after_unmerge`]: never lowered when the label was set or the content
    /// changed since the merge, or the target is invalidated).
    async fn label_after_unmerge(
        &self,
        target: &Patient,
        source: NhsNumber,
    ) -> Result<Option<Label>, PdsError> {
        let history = self
            .store
            .history(target.id())
            .await?
            .iter()
            .map(super::parse)
            .collect::<Result<Vec<_>, _>>()?;
        let Some(at) = merge::merged_at(&history, source) else {
            return Ok(None);
        };
        let merged_version = at.version().get();
        let Some(version) = history
            .iter()
            .find(|v| v.version().get() + 1 == merged_version)
        else {
            return Ok(None);
        };
        let label_set_since = self
            .store
            .audit(target.id())
            .await?
            .iter()
            .any(|e| e.operation == Operation::Flag.name() && e.version_after > merged_version);
        let mut still_merged = Vec::new();
        for other in merge::other_sources(target, source) {
            if let Some(stored) = self.store.get(other).await? {
                still_merged.extend(Label::of(&super::parse(&stored)?));
            }
        }
        let before = BeforeMerge {
            version,
            label_set_since,
        };
        Ok(confidentiality::after_unmerge(
            target,
            &before,
            &still_merged,
        ))
    }
}
