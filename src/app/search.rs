//! Searching (PDS "trace"): index lookups for candidates, then each candidate checked and scored
//! against its record (and, for `_history` and fuzzy searches, its past versions) as the caller
//! may see them; the answer a searchset Bundle.
//!
//! Pure matching and scoring live in [`crate::domain::search`], what a role may see in
//! [`crate::domain::view`].

use serde_json::{json, Map, Value};

use super::{Answer, App};
use crate::auth::Caller;
use crate::domain::search::{self, SearchQuery};
use crate::domain::view::{self, RecordHistory};
use crate::domain::{ErrorCode, NhsNumber, Patient, PdsError, Role};
use crate::store::{PatientStore, StoreError, StoredRecord};

impl App {
    /// `GET /Patient?…`: the query's parameters validated in PDS's order, the matches as a
    /// searchset Bundle (best first), or TOO_MANY_MATCHES.
    pub async fn search(
        &self,
        caller: &Caller,
        pairs: &[(String, String)],
    ) -> Result<Answer, PdsError> {
        // PDS: patient access may not search, not even for itself
        super::refuse_patient(caller)?;
        let query = SearchQuery::parse(pairs, caller.role)?;
        let hits = match run(self.store.as_ref(), &query, caller.role).await? {
            Outcome::TooManyMatches => return Err(PdsError::bare(ErrorCode::TooManyMatches)),
            Outcome::Hits(hits) => hits,
        };
        let timestamp = super::answer::bundle_timestamp();
        let mut bundle = json!({"resourceType": "Bundle", "type": "searchset", "timestamp": timestamp, "total": hits.len(),
            "link": [{"relation": "self", "url": self.search_url(pairs)}]});
        if !hits.is_empty() {
            let entries: Vec<Value> = hits
                .iter()
                .map(|h| {
                    let subset = search::result_view(&h.doc);
                    let resource = view::for_role(&subset, caller.role, h.restricted);
                    json!({"fullUrl": format!("{}/Patient/{}", self.base_url, h.id),
                        "search": {"score": h.score}, "resource": resource.as_ref()})
                })
                .collect();
            bundle["entry"] = Value::Array(entries);
        }
        Ok(Answer::ok(serde_json::to_vec(&bundle).expect("JSON")))
    }
}

impl App {
    /// The search as understood, for the Bundle's `self` link: the parameters given (those
    /// with no name or no value are ignored, as by the search), the deprecated
    /// `address-postcode` under its current name.
    fn search_url(&self, pairs: &[(String, String)]) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs.iter().filter(|(k, v)| !k.is_empty() && !v.is_empty()) {
            let k = if k == "address-postcode" {
                "address-postalcode"
            } else {
                k
            };
            query.append_pair(k, v);
        }
        format!("{}/Patient?{}", self.base_url, query.finish())
    }
}

/// One matching record.
#[derive(Clone, Debug)]
pub struct Hit {
    pub id: NhsNumber,
    pub score: f64,
    pub restricted: bool,
    /// The current record.
    pub doc: Map<String, Value>,
}

#[derive(Debug)]
pub enum Outcome {
    /// Best first.
    Hits(Vec<Hit>),
    /// More matches than `_max-results`.
    TooManyMatches,
}

/// Runs a validated query for `role`. Superseded and invalidated records never match. Every
/// version is matched and scored in the view `role` has of it, so a value the role may not see
/// can neither match nor change a score; and a restricted record is left out altogether —
/// before counting, so not even TOO_MANY_MATCHES reveals it — when the query reads an element
/// its restricted view hides (postcode, GP, phone, e-mail: see
/// [`SearchQuery::excludes_restricted_for`]).
pub async fn run(
    store: &dyn PatientStore,
    query: &SearchQuery,
    role: Role,
) -> Result<Outcome, StoreError> {
    let excludes_restricted = query.excludes_restricted_for(role);
    let mut hits = Vec::new();
    let mut candidates = store.candidates(&query.lookups()).await?;
    if let Some(narrowing) = query.narrowing() {
        let also: std::collections::HashSet<NhsNumber> =
            store.candidates(&[narrowing]).await?.into_iter().collect();
        candidates.retain(|id| also.contains(id));
    }
    // fetched a few at a time: a search often stops early (one match more than may be shown)
    for chunk in candidates.chunks(CANDIDATES_PER_FETCH) {
        for (id, stored) in store.get_many(chunk).await? {
            let Some(hit) = consider(store, query, role, excludes_restricted, id, stored).await?
            else {
                continue;
            };
            if hits.len() == query.max_results {
                // one more than may be returned: the answer is known, the rest need no look
                return Ok(Outcome::TooManyMatches);
            }
            hits.push(hit);
        }
    }
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
    Ok(Outcome::Hits(hits))
}

/// Candidate records fetched together (one round trip on a networked store).
const CANDIDATES_PER_FETCH: usize = 64;

/// Checks and scores one candidate: `None` when it does not match (or may not be found by
/// `role`), else its hit.
async fn consider(
    store: &dyn PatientStore,
    query: &SearchQuery,
    role: Role,
    excludes_restricted: bool,
    id: NhsNumber,
    stored: StoredRecord,
) -> Result<Option<Hit>, StoreError> {
    if stored.invalidated || (stored.restricted && excludes_restricted) {
        return Ok(None);
    }
    let record = Patient::from_stored(&stored.json).map_err(StoreError::Corrupt)?;
    if record.doc().get("active") == Some(&Value::Bool(false)) {
        return Ok(None); // superseded in a merge: its survivor is the one to find
    }
    let score = {
        let current = view::for_role(record.doc(), role, false);
        let past = if query.history_can_change(&current) {
            past_views(store, id, role).await?
        } else {
            Vec::new()
        };
        query.score(&current, &past)
    };
    Ok(score.map(|score| Hit {
        id,
        score,
        restricted: stored.restricted,
        doc: record.into_doc(),
    }))
}

/// The past versions of record `id`, newest first, each in `role`'s view of it: what a record
/// held while restricted stays hidden in every version ([`RecordHistory`]).
async fn past_views(
    store: &dyn PatientStore,
    id: NhsNumber,
    role: Role,
) -> Result<Vec<Map<String, Value>>, StoreError> {
    let versions = store.history(id).await?;
    let seen = RecordHistory::of(versions.iter().map(|v| (v.version.get(), v.restricted)));
    versions
        .iter()
        .skip(1)
        .map(|v| {
            let p = Patient::from_stored(&v.json).map_err(StoreError::Corrupt)?;
            let redact = seen.redacts(v.version.get(), v.restricted);
            Ok(view::for_role(p.doc(), role, redact).into_owned())
        })
        .collect()
}
