//! Creating a record and allocating its NHS number (`POST /Patient`).

use serde_json::json;

use super::idempotency::{remember, Key};
use super::merge::parameters_body;
use super::search::{run, Outcome};
use super::{require_change_permission, Answer, App, Request};
use crate::domain::identity::{self, DUPLICATE_THRESHOLD};
use crate::domain::patch::Operation;
use crate::domain::{ErrorCode, NhsNumber, Patient, PdsError, Role};
use crate::env::{new_object_id, today};
use crate::store::{Change, RecordWrite, SavedResponse};

impl App {
    /// `POST /Patient`: a new patient in PDS's create shape. A likely existing record (a fuzzy
    /// trace scoring at least [`DUPLICATE_THRESHOLD`]) answers SINGLE_MATCH / MULTIPLE_MATCHES;
    /// otherwise the record is stored under a newly allocated NHS number (201). Once per
    /// request id: a retry allocates nothing.
    /// `case` (the `case` query parameter) records the allocation on an NBO case.
    pub async fn create(
        &self,
        req: &Request<'_>,
        body: &[u8],
        case: Option<&str>,
    ) -> Result<Answer, PdsError> {
        require_change_permission(req.caller)?;
        let target = match case {
            None => "/Patient".to_string(),
            Some(c) => format!("/Patient?case={c}"),
        };
        let key = Key::new(req, "POST", &target, "", body);
        self.once(req, &key, || self.do_create(req, &key, body, case))
            .await
    }

    async fn do_create(
        &self,
        req: &Request<'_>,
        key: &Key,
        body: &[u8],
        case: Option<&str>,
    ) -> Result<Answer, PdsError> {
        let case = match case {
            None => None,
            Some(c) => {
                let id = crate::domain::case::task::case_of(&json!({ "case": c }))?;
                self.open_case(req, id).await?
            }
        };
        let body = parameters_body(body)?;
        let role = req.caller.role;
        let new = {
            let mut new_id = new_object_id;
            identity::new_patient(&body, role, today(), &mut new_id, &self.schemas, true)?
        };
        match self.likely_duplicates(role, &new).await?.as_slice() {
            [] => {}
            [one] => {
                return Err(PdsError::new(
                    ErrorCode::SingleMatch,
                    format!("Single match found - NHS number {one}"),
                ));
            }
            _ => {
                return Err(PdsError::new(
                    ErrorCode::MultipleMatches,
                    "Multiple matches found - the patient probably has a record already",
                ))
            }
        }
        let audit_template = req.audit(Operation::Create, None, &new, json!([]), None);
        let (base, forget) = (self.base_url.clone(), self.forget_before());
        let key = key.clone();
        self.commit_allocating(
            role,
            std::sync::Arc::new(move |nhs| {
                let record = identity::with_nhs_number(&new, nhs);
                let mut audit = audit_template.clone();
                audit.patient = nhs.to_string();
                audit.patch = Some(json!([{"op": "add", "path": "", "value": record.doc()}]));
                let response = SavedResponse::created(&record, format!("{base}/Patient/{nhs}"));
                let mut change = Change {
                    writes: vec![RecordWrite::create(record)],
                    audit: vec![audit],
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

    /// Records whose fuzzy trace scores at least [`DUPLICATE_THRESHOLD`] against `new`, as
    /// `role` may see them (the trace reads only what every role sees: names, gender, birth
    /// date).
    async fn likely_duplicates(
        &self,
        role: Role,
        new: &Patient,
    ) -> Result<Vec<NhsNumber>, PdsError> {
        let Some(query) = identity::duplicate_query(new) else {
            return Ok(Vec::new());
        };
        Ok(match run(self.store.as_ref(), &query, role).await? {
            Outcome::Hits(hits) => hits
                .iter()
                .filter(|h| h.score >= DUPLICATE_THRESHOLD)
                .map(|h| h.id)
                .collect(),
            Outcome::TooManyMatches => vec![new.id(); 2],
        })
    }
}
