//! Idempotent changes: a change re-sent with the same request id gets the original answer and
//! changes nothing again (PDS asks clients to retry timed-out requests with the same
//! X-Request-ID). The decision is taken once, by [`App::once`]; the answer is saved in the same
//! transaction as the change, as a reference to the record version it showed, and rendered
//! again for each retry.

use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::{answer, Answer, App, Request};
use crate::domain::{NhsNumber, PdsError, Role};
use crate::store::{AllocatingChange, Change, Committed, RequestRecord, SavedResponse};

/// "The same request": who sends it (subject and role, so that an answer is never replayed to
/// someone else) and what (method, target, precondition, body), under its request id.
#[derive(Clone)]
pub struct Key {
    pub request_id: String,
    pub fingerprint: [u8; 32],
}

impl Key {
    pub fn new(req: &Request, method: &str, target: &str, precondition: &str, body: &[u8]) -> Key {
        let mut h = Sha256::new();
        for part in [
            req.caller.subject.as_bytes(),
            req.caller.role.name().as_bytes(),
            method.as_bytes(),
            target.as_bytes(),
            precondition.as_bytes(),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        // a practice's token acts for its practice: the same subject for another practice is
        // someone else (hashed only when present, so other roles' fingerprints are unchanged)
        if let Some(ods) = &req.caller.ods {
            h.update(b"ods");
            h.update(ods.as_str().as_bytes());
        }
        h.update(body);
        Key {
            request_id: req.request_id.to_string(),
            fingerprint: h.finalize().into(),
        }
    }
}

/// What to do with a change request.
pub enum NextAction {
    /// Not seen within the window: run it.
    Run,
    /// Already answered: answer the same again.
    Replay(SavedResponse),
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl App {
    /// Saved requests older than this (Unix seconds) are forgotten.
    pub fn forget_before(&self) -> u64 {
        now_secs().saturating_sub(self.idempotency_window.as_secs())
    }

    /// Run or replay: a request id answered within the window for the same request is
    /// replayed; for another request it is refused (422).
    async fn next_action(&self, key: &Key) -> Result<NextAction, PdsError> {
        let Some(saved) = self.store.request(&key.request_id).await? else {
            return Ok(NextAction::Run);
        };
        if saved.saved_at < self.forget_before() {
            return Ok(NextAction::Run);
        }
        if saved.fingerprint != key.fingerprint {
            return Err(PdsError::request_id_reused(&key.request_id));
        }
        Ok(NextAction::Replay(saved.response))
    }

    /// Runs a change request once: replays the saved answer of an earlier identical request, or
    /// runs it. A run that fails may have lost a race with an identical copy of itself (which
    /// changed the version it expected, say): if that copy saved an answer, it is this one's too.
    pub async fn once<F, Fut>(
        &self,
        req: &Request<'_>,
        key: &Key,
        run: F,
    ) -> Result<Answer, PdsError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Answer, PdsError>>,
    {
        if let NextAction::Replay(saved) = self.next_action(key).await? {
            return self.replayed(req.caller.role, &saved).await;
        }
        match run().await {
            Ok(answer) => Ok(answer),
            Err(e) => match self.next_action(key).await {
                Ok(NextAction::Replay(saved)) => self.replayed(req.caller.role, &saved).await,
                _ => Err(e),
            },
        }
    }

    /// Hands a change to the store and awaits its durable outcome (no thread waits for the
    /// fsync), then answers with its saved response — rendered from the record in hand when it
    /// was applied, or again from the store when it was a retry of a change already made.
    pub(crate) async fn commit(&self, role: Role, mut change: Change) -> Result<Answer, PdsError> {
        stamp(&mut change, &crate::env::now());
        let saved = &change
            .request
            .as_ref()
            .expect("changes carry their response")
            .response;
        // rendered before the change goes to the writer: the record is current if it applies
        let answer = answer::applied(saved, shown(&change, saved), role);
        match self.store.commit(change).await? {
            Committed::Applied => Ok(answer),
            Committed::Replayed(original) => self.replayed(role, &original).await,
        }
    }

    /// [`App::commit`] for a change that needs a newly allocated NHS number.
    pub(crate) async fn commit_allocating(
        &self,
        role: Role,
        build: AllocatingChange,
    ) -> Result<Answer, PdsError> {
        // one time for every build, so the change rebuilt to answer is the one committed
        let now = crate::env::now();
        let build: AllocatingChange = std::sync::Arc::new(move |nhs| {
            let mut change = build(nhs);
            stamp(&mut change, &now);
            change
        });
        let (committed, nhs): (Committed, NhsNumber) = self
            .store
            .commit_allocating(self.allocation_range, build.clone())
            .await?;
        match committed {
            // the builder is deterministic for a number: rebuild the change to answer from it
            Committed::Applied => {
                let change = build(nhs);
                let saved = &change
                    .request
                    .as_ref()
                    .expect("changes carry their response")
                    .response;
                Ok(answer::applied(saved, shown(&change, saved), role))
            }
            Committed::Replayed(original) => self.replayed(role, &original).await,
        }
    }
}

/// Dates every record version a change writes (`meta.lastUpdated`).
pub(crate) fn stamp(change: &mut Change, at: &str) {
    for write in &mut change.writes {
        write.record.stamp(at);
    }
}

/// The idempotency record a change saves with itself.
pub(crate) fn remember(key: &Key, response: SavedResponse) -> RequestRecord {
    RequestRecord {
        request_id: key.request_id.clone(),
        fingerprint: key.fingerprint,
        saved_at: now_secs(),
        response,
    }
}

/// The record of `change` its saved response shows.
fn shown<'c>(change: &'c Change, saved: &SavedResponse) -> &'c crate::domain::Patient {
    let (id, version) = saved
        .body
        .record()
        .expect("a change's saved response shows a patient record");
    change
        .writes
        .iter()
        .map(|w| &w.record)
        .find(|r| r.id().to_string() == id && r.version().get() == version)
        .expect("a saved response shows a record the change writes")
}
