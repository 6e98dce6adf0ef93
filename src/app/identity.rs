//! Identity corrections (back office): a change of identity, invalidating a record created in
//! error and making it valid again.

use serde_json::json;

use super::idempotency::{remember, Key};
use super::merge::parameters_body;
use super::{ops_json, require_back_office, Answer, App, Request};
use crate::domain::confidentiality::Label;
use crate::domain::identity;
use crate::domain::operation;
use crate::domain::parameters::Parameters;
use crate::domain::patch::Operation;
use crate::domain::{Patient, PdsError};
use crate::store::{Change, RecordWrite, SavedResponse};

/// `$invalidate` or `$revalidate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    Invalidate,
    Revalidate,
}

impl Validity {
    fn operation(self) -> Operation {
        match self {
            Validity::Invalidate => Operation::Invalidate,
            Validity::Revalidate => Operation::Revalidate,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Validity::Invalidate => "$invalidate",
            Validity::Revalidate => "$revalidate",
        }
    }
}

impl App {
    /// `$change-identity`: in one transaction, a new record under a newly allocated NHS number
    /// (with the old record's confidentiality label), the old record invalidated, and a sealed
    /// old → new link only the back office sees. Once per request id.
    pub async fn change_identity(
        &self,
        req: &Request<'_>,
        body: &[u8],
    ) -> Result<Answer, PdsError> {
        require_back_office(req.caller)?;
        let key = Key::new(req, "POST", "$change-identity", "", body);
        self.once(req, &key, || self.do_change_identity(req, &key, body))
            .await
    }

    async fn do_change_identity(
        &self,
        req: &Request<'_>,
        key: &Key,
        body: &[u8],
    ) -> Result<Answer, PdsError> {
        let body = parameters_body(body)?;
        let params = Parameters::parse(&body, &operation::CHANGE_IDENTITY.names())?;
        let case = self
            .open_case(req, crate::domain::case::task::case_of(&body)?)
            .await?;
        let old_id = params.required_nhs_number("nhs-number")?;
        let data = params
            .resource("patient")?
            .ok_or_else(|| PdsError::missing_value("patient"))?
            .clone();
        let reason = params.reason()?;
        if let Some(case) = &case {
            case.check(true, &[old_id])?;
        }
        let old = self.load_named("nhs-number", old_id).await?;
        self.refuse_unless_live(&old).await?;
        let (new, (invalidated, ops)) = super::with_context(req.caller.role, |ctx| {
            let new = identity::new_patient(
                &data,
                req.caller.role,
                ctx.today,
                ctx.new_id,
                &self.schemas,
                false,
            )?;
            // the new identity is as protected as the old one
            let new = match Label::of(&old) {
                Some(label) if label != Label::Unrestricted => identity::with_label(&new, label),
                _ => new,
            };
            Ok::<_, PdsError>((new, identity::invalidate(&old, ctx, &self.schemas)?))
        })?;
        let old_audit = req.audit(
            Operation::ChangeIdentity,
            Some(&old),
            &invalidated,
            ops_json(&ops),
            Some(&reason),
        );
        let new_template = req.audit(
            Operation::ChangeIdentity,
            None,
            &new,
            json!([]),
            Some(&reason),
        );
        let (key, forget) = (key.clone(), self.forget_before());
        // built here, not in the closure: the closure runs on the writer's thread
        let old_write = RecordWrite::update(&old, invalidated);
        self.commit_allocating(
            req.caller.role,
            std::sync::Arc::new(move |nhs| {
                let record = identity::with_nhs_number(&new, nhs);
                let mut old_audit = old_audit.clone();
                old_audit.related = Some(nhs.to_string());
                let mut new_audit = new_template.clone();
                new_audit.patient = nhs.to_string();
                new_audit.related = Some(old_id.to_string());
                new_audit.patch = Some(json!([{"op": "add", "path": "", "value": record.doc()}]));
                let outcome = format!(
                    "Change of identity completed: {old_id} is invalidated; the new record is {nhs}"
                );
                let response = SavedResponse::operation(outcome, &record);
                let mut change = Change {
                    writes: vec![old_write.clone(), RecordWrite::create(record)],
                    identity_links: vec![(old_id, nhs)],
                    audit: vec![old_audit, new_audit],
                    request: Some(remember(&key, response)),
                    forget_requests_before: forget,
                    ..Change::default()
                };
                if let Some(case) = &case {
                    case.attach(&mut change);
                }
                change
            }),
        )
        .await
    }

    /// Identity operations act on live records: not merged away, not invalidated.
    async fn refuse_unless_live(&self, p: &Patient) -> Result<(), PdsError> {
        if let Some(survivor) = self.store.superseded_by(p.id()).await? {
            return Err(PdsError::invalid_update(format!(
                "{} was merged into {survivor}",
                p.id()
            )));
        }
        if p.is_invalidated() {
            return Err(PdsError::invalid_update(format!(
                "{} is invalidated",
                p.id()
            )));
        }
        Ok(())
    }

    /// `$invalidate` / `$revalidate`: one record, one new version, one audit entry. An
    /// invalidated record keeps its data and history; revalidation restores the label it had.
    /// Once per request id.
    pub async fn set_validity(
        &self,
        req: &Request<'_>,
        validity: Validity,
        body: &[u8],
    ) -> Result<Answer, PdsError> {
        require_back_office(req.caller)?;
        let key = Key::new(req, "POST", validity.name(), "", body);
        self.once(req, &key, || {
            self.do_set_validity(req, &key, validity, body)
        })
        .await
    }

    async fn do_set_validity(
        &self,
        req: &Request<'_>,
        key: &Key,
        validity: Validity,
        body: &[u8],
    ) -> Result<Answer, PdsError> {
        let body = parameters_body(body)?;
        let params = Parameters::parse(
            &body,
            &match validity {
                Validity::Invalidate => &operation::INVALIDATE,
                Validity::Revalidate => &operation::REVALIDATE,
            }
            .names(),
        )?;
        let case = crate::domain::case::task::case_of(&body)?;
        let id = params.required_nhs_number("nhs-number")?;
        let reason = params.reason()?;
        let current = self.load_named("nhs-number", id).await?;
        let previous = match validity {
            Validity::Invalidate => {
                if let Some(survivor) = self.store.superseded_by(id).await? {
                    return Err(PdsError::invalid_update(format!(
                        "{id} was merged into {survivor}"
                    )));
                }
                None
            }
            // back to the confidentiality the record had before it was invalidated
            Validity::Revalidate => self
                .store
                .history(id)
                .await?
                .iter()
                .filter(|v| !v.invalidated)
                .find_map(|v| Patient::from_stored(&v.json).ok())
                .and_then(|p| p.doc().get("meta")?.get("security")?.get(0).cloned()),
        };
        let (updated, ops) = super::with_context(req.caller.role, |ctx| match validity {
            Validity::Invalidate => identity::invalidate(&current, ctx, &self.schemas),
            Validity::Revalidate => identity::revalidate(&current, previous, ctx, &self.schemas),
        })?;
        let audit = req.audit(
            validity.operation(),
            Some(&current),
            &updated,
            ops_json(&ops),
            Some(&reason),
        );
        let outcome = match validity {
            Validity::Invalidate => {
                format!("{id} is invalidated: other roles now get 404 INVALIDATED_RESOURCE")
            }
            Validity::Revalidate => format!("{id} is valid again"),
        };
        let response = SavedResponse::operation(outcome, &updated);
        let case = self.open_case(req, case).await?;
        if let Some(case) = &case {
            case.check(false, &[id])?;
        }
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
        self.commit(req.caller.role, change).await
    }
}
