//! What practices are told, as FHIR R4 `Communication`s: PCSE's questions about a case, and the
//! outcome of a completed case with the follow-on actions the practice must take.
//!
//! A message is unread while its `status` is `in-progress`; the practice marks it read by
//! moving it to `completed`, and the service records when (`received`).

use serde_json::{json, Value};

use super::task::{ods_of, patient_reference, practice_reference};
use super::{OdsCode, Owner, MESSAGE_CATEGORY_SYSTEM};
use crate::domain::{ErrorCode, NhsNumber, PdsError, Role};

/// The kinds of message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    /// PCSE (or the NBO) asks the practice for information about its case.
    InformationRequest,
    /// A case is completed: its outcome and what the practice must do.
    Outcome,
}

impl Category {
    pub fn code(self) -> &'static str {
        match self {
            Category::InformationRequest => "information-request",
            Category::Outcome => "case-outcome",
        }
    }

    pub fn display(self) -> &'static str {
        match self {
            Category::InformationRequest => "Information request",
            Category::Outcome => "Case outcome",
        }
    }
}

/// Unread / read.
pub const UNREAD: &str = "in-progress";
pub const READ: &str = "completed";

/// A message to one practice.
pub struct Message<'a> {
    pub category: Category,
    pub recipient: &'a OdsCode,
    /// The patient it is about (for a change of identity: the new record only).
    pub subject: Option<NhsNumber>,
    /// The case it is about (`None` for a change of identity: the case names the old number).
    pub about: Option<&'a str>,
    pub sender: Owner,
    pub text: &'a str,
    /// Follow-on actions, each a payload entry after the text.
    pub actions: &'a [String],
}

impl Message<'_> {
    /// The Communication as first stored (version 1, unread).
    pub fn to_doc(&self, id: &str, now: &str) -> Value {
        let mut payload = vec![json!({"contentString": self.text})];
        payload.extend(
            self.actions
                .iter()
                .map(|a| json!({"contentString": format!("Follow-on action: {a}")})),
        );
        let mut doc = json!({
            "resourceType": "Communication",
            "id": id,
            "meta": {"versionId": "1", "lastUpdated": now},
            "status": UNREAD,
            "category": [{"coding": [{"system": MESSAGE_CATEGORY_SYSTEM, "code": self.category.code(), "display": self.category.display()}]}],
            "sent": now,
            "recipient": [practice_reference(self.recipient)],
            "sender": self.sender.reference(),
            "payload": payload,
        });
        if let Some(s) = self.subject {
            doc["subject"] = patient_reference(s);
        }
        if let Some(t) = self.about {
            doc["about"] = json!([{"reference": format!("Task/{t}")}]);
        }
        doc
    }
}

/// What the service reads back from a stored Communication.
#[derive(Clone, Debug, PartialEq)]
pub struct MessageFacts {
    pub recipient: OdsCode,
    pub read: bool,
    /// `Task/<id>`.
    pub about: Option<String>,
    pub sent: String,
    /// The patient it is about (`subject`), if it names one.
    pub subject: Option<crate::domain::NhsNumber>,
}

impl MessageFacts {
    pub fn of(doc: &Value) -> Result<MessageFacts, String> {
        let bad = |what: &str| format!("a stored Communication without a valid {what}");
        let recipient = doc
            .pointer("/recipient/0")
            .and_then(ods_of)
            .ok_or_else(|| bad("recipient"))?;
        let read = match doc.get("status").and_then(Value::as_str) {
            Some(UNREAD) => false,
            Some(READ) => true,
            _ => return Err(bad("status")),
        };
        Ok(MessageFacts {
            recipient,
            read,
            about: doc
                .pointer("/about/0/reference")
                .and_then(Value::as_str)
                .map(str::to_string),
            sent: doc
                .get("sent")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("sent"))?
                .to_string(),
            subject: doc
                .pointer("/subject/identifier/value")
                .and_then(Value::as_str)
                .and_then(|n| crate::domain::NhsNumber::parse(n).ok()),
        })
    }

    pub fn status(&self) -> &'static str {
        if self.read {
            READ
        } else {
            UNREAD
        }
    }

    /// The index keys (read in order sent): by recipient, by recipient and status, by case,
    /// and all.
    pub fn index_keys(&self) -> Vec<String> {
        let mut keys = vec![
            "all".to_string(),
            format!("recipient={}", self.recipient),
            format!("recipient-status={}|{}", self.recipient, self.status()),
            format!("status={}", self.status()),
        ];
        keys.extend(self.about.iter().map(|a| format!("about={a}")));
        keys
    }

    /// The NBO reads every message, PCSE every message about a case, a practice those
    /// addressed to it. A change of identity's outcome (sent about no case, to the new
    /// record's practice) is the recipient's and the NBO's alone: beside the case it would
    /// link the old number to the new.
    pub fn readable_by(&self, role: Role, ods: Option<&OdsCode>) -> bool {
        match role {
            Role::BackOffice => true,
            Role::Pcse => self.about.is_some(),
            Role::Practice => ods == Some(&self.recipient),
            _ => false,
        }
    }
}

/// The message marked read by its recipient: `status` `completed` and `received` now — the
/// one change a message takes (a JSON Patch replacing `/status` with `completed`).
pub fn mark_read(
    before: &Value,
    after: &Value,
    role: Role,
    ods: Option<&OdsCode>,
    version: u32,
    now: &str,
) -> Result<Value, PdsError> {
    let facts = MessageFacts::of(before).map_err(|_| PdsError::bare(ErrorCode::UnknownError))?;
    if role != Role::Practice || ods != Some(&facts.recipient) {
        return Err(PdsError::new(
            ErrorCode::AccessForbidden,
            "Only the practice a message is addressed to marks it read",
        ));
    }
    let mut expected = before.clone();
    expected["status"] = json!(READ);
    if *after != expected {
        return Err(PdsError::invalid_update(
            "a message takes one change: /status replaced with completed (read)",
        ));
    }
    if facts.read {
        return Err(PdsError::new(
            ErrorCode::CaseConflict,
            "The message is already marked read",
        ));
    }
    expected["received"] = json!(now);
    expected["meta"] = json!({"versionId": version.to_string(), "lastUpdated": now});
    Ok(expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_read_once_by_its_recipient() {
        let me = OdsCode::parse("Y12345").unwrap();
        let other = OdsCode::parse("A81001").unwrap();
        let msg = Message {
            category: Category::Outcome,
            recipient: &me,
            subject: None,
            about: Some("t1"),
            sender: Owner::Nbo,
            text: "Merged",
            actions: &["Re-register the patient".into()],
        }
        .to_doc("m1", "2026-12-02T10:00:00Z");
        let facts = MessageFacts::of(&msg).unwrap();
        assert!(!facts.read && facts.readable_by(Role::Practice, Some(&me)));
        assert!(!facts.readable_by(Role::Practice, Some(&other)));
        assert!(facts
            .index_keys()
            .contains(&"recipient-status=Y12345|in-progress".into()));
        let mut read = msg.clone();
        read["status"] = json!(READ);
        let now = "2026-12-02T11:00:00Z";
        let done = mark_read(&msg, &read, Role::Practice, Some(&me), 2, now).unwrap();
        assert_eq!(done["received"], now);
        assert!(MessageFacts::of(&done).unwrap().read);
        assert_eq!(
            mark_read(&msg, &read, Role::Practice, Some(&other), 2, now)
                .unwrap_err()
                .code,
            ErrorCode::AccessForbidden
        );
        assert_eq!(
            mark_read(&done, &done, Role::Practice, Some(&me), 3, now)
                .unwrap_err()
                .code,
            ErrorCode::CaseConflict
        );
        let mut sneaky = read.clone();
        sneaky["payload"] = json!([]);
        assert_eq!(
            mark_read(&msg, &sneaky, Role::Practice, Some(&me), 2, now)
                .unwrap_err()
                .code,
            ErrorCode::InvalidUpdate
        );
    }
}
