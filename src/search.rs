//! Running a search: index lookups for candidates, then each candidate checked and scored
//! against its record (and, for `_history` and fuzzy searches, its past versions).
//!
//! Between the HTTP layer and the store; pure matching and scoring live in
//! [`crate::domain::search`].

use serde_json::{Map, Value};

use crate::domain::search::SearchQuery;
use crate::domain::{NhsNumber, Patient};
use crate::store::{PatientStore, StoreError};

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

/// Runs a validated query. Superseded records never match; restricted records never match a
/// search by postcode or GP (they are left out before counting, so not even a count leaks).
pub fn run(store: &dyn PatientStore, query: &SearchQuery) -> Result<Outcome, StoreError> {
    let mut hits = Vec::new();
    for id in store.candidates(&query.lookups())? {
        let Some(stored) = store.get(id)? else {
            continue;
        };
        if stored.invalidated || (stored.restricted && query.excludes_restricted()) {
            continue;
        }
        let record = Patient::from_stored(&stored.json).map_err(StoreError::Corrupt)?;
        if record.doc().get("active") == Some(&Value::Bool(false)) {
            continue; // superseded in a merge: its survivor is the one to find
        }
        let past: Vec<Map<String, Value>> = if query.history {
            store
                .history(id)?
                .into_iter()
                .skip(1)
                .map(|v| {
                    Patient::from_stored(&v.json)
                        .map(|p| p.doc().clone())
                        .map_err(StoreError::Corrupt)
                })
                .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        if let Some(score) = query.score(record.doc(), &past) {
            if hits.len() == query.max_results {
                // one more than may be returned: the answer is known, the rest need no look
                return Ok(Outcome::TooManyMatches);
            }
            hits.push(Hit {
                id,
                score,
                restricted: stored.restricted,
                doc: record.doc().clone(),
            });
        }
    }
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
    Ok(Outcome::Hits(hits))
}
