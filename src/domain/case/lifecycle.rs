//! A case's life: its statuses (FHIR Task statuses) and who may move it from which to which,
//! with what each move must bring.

use crate::domain::Role;

/// The statuses a case goes through (FHIR R4 `Task.status` codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    Requested,
    Received,
    OnHold,
    Accepted,
    InProgress,
    Completed,
    Rejected,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 8] = [
        Status::Requested,
        Status::Received,
        Status::OnHold,
        Status::Accepted,
        Status::InProgress,
        Status::Completed,
        Status::Rejected,
        Status::Cancelled,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Status::Requested => "requested",
            Status::Received => "received",
            Status::OnHold => "on-hold",
            Status::Accepted => "accepted",
            Status::InProgress => "in-progress",
            Status::Completed => "completed",
            Status::Rejected => "rejected",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn parse(code: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.code() == code)
    }

    /// Closed: nothing more happens to the case.
    pub fn is_closed(self) -> bool {
        matches!(
            self,
            Status::Completed | Status::Rejected | Status::Cancelled
        )
    }

    /// With the NBO: corrections may be recorded on it.
    pub fn takes_corrections(self) -> bool {
        matches!(self, Status::Accepted | Status::InProgress)
    }
}

/// What a move must bring besides the new status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    Nothing,
    /// `businessStatus` "awaiting practice information" and a new note: the question, which
    /// the practice is sent.
    InformationRequest,
    /// From the practice, a new note: its answer.
    Answer,
    /// The case passes to the NBO: `owner` becomes the NBO (the service sets it).
    PassToNbo,
    /// An `output` resolution and at least one follow-on action.
    Completion,
    /// A `statusReason` (text).
    Reason,
}

/// The `businessStatus` text of a case waiting for its practice.
pub const AWAITING_PRACTICE: &str = "awaiting practice information";

use Status::*;

const TRIAGE: &[Role] = &[Role::Pcse, Role::BackOffice];
const NBO: &[Role] = &[Role::BackOffice];

/// `(from, to, who may, what it needs)`: every move a case can make. Anything else is refused
/// with the moves the caller could make instead.
pub const TRANSITIONS: &[(Status, Status, &[Role], Needs)] = &[
    (Requested, Received, TRIAGE, Needs::Nothing),
    (Received, OnHold, TRIAGE, Needs::InformationRequest),
    (
        OnHold,
        Received,
        &[Role::Practice, Role::Pcse, Role::BackOffice],
        Needs::Answer,
    ),
    (Received, Accepted, TRIAGE, Needs::PassToNbo),
    (Accepted, InProgress, NBO, Needs::Nothing),
    (InProgress, Completed, NBO, Needs::Completion),
    (Requested, Rejected, TRIAGE, Needs::Reason),
    (Received, Rejected, TRIAGE, Needs::Reason),
    (OnHold, Rejected, TRIAGE, Needs::Reason),
    (Accepted, Rejected, NBO, Needs::Reason),
    (InProgress, Rejected, NBO, Needs::Reason),
    (Requested, Cancelled, TRIAGE, Needs::Reason),
    (Received, Cancelled, TRIAGE, Needs::Reason),
    (OnHold, Cancelled, TRIAGE, Needs::Reason),
    (Accepted, Cancelled, NBO, Needs::Reason),
    (InProgress, Cancelled, NBO, Needs::Reason),
];

/// What moving from `from` to `to` needs, if `role` may make the move.
pub fn allowed(role: Role, from: Status, to: Status) -> Option<Needs> {
    TRANSITIONS
        .iter()
        .find(|(f, t, roles, _)| *f == from && *t == to && roles.contains(&role))
        .map(|(_, _, _, needs)| *needs)
}

/// The statuses `role` may move a case at `from` to.
pub fn moves(role: Role, from: Status) -> Vec<Status> {
    TRANSITIONS
        .iter()
        .filter(|(f, _, roles, _)| *f == from && roles.contains(&role))
        .map(|(_, t, _, _)| *t)
        .collect()
}

/// The sentence a refused move gets: what the caller could do instead.
pub fn refusal(role: Role, from: Status, to: Status) -> String {
    let options = moves(role, from);
    let choices = if options.is_empty() {
        "none".to_string()
    } else {
        options
            .iter()
            .map(|s| s.code())
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "The {role} role may not move a case from {} to {}; the moves it may make from {} are: {choices}",
        from.code(),
        to.code(),
        from.code()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_move_is_listed_once_and_closed_cases_stay_closed() {
        for (i, a) in TRANSITIONS.iter().enumerate() {
            for b in &TRANSITIONS[i + 1..] {
                assert!(!(a.0 == b.0 && a.1 == b.1), "{:?} → {:?} twice", a.0, a.1);
            }
            assert!(!a.0.is_closed(), "{:?} is closed but has a way out", a.0);
        }
        for role in Role::ALL {
            for s in Status::ALL.into_iter().filter(|s| s.is_closed()) {
                assert!(moves(role, s).is_empty());
            }
        }
    }

    #[test]
    fn practices_only_answer_and_pcse_never_completes() {
        for from in Status::ALL {
            for to in Status::ALL {
                if let Some(n) = allowed(Role::Practice, from, to) {
                    assert_eq!((from, to, n), (OnHold, Received, Needs::Answer));
                }
                assert!(allowed(Role::HealthcareWorker, from, to).is_none());
                assert!(allowed(Role::ApplicationRestricted, from, to).is_none());
            }
        }
        assert_eq!(allowed(Role::Pcse, InProgress, Completed), None);
        assert_eq!(
            allowed(Role::BackOffice, InProgress, Completed),
            Some(Needs::Completion)
        );
        let refusal = refusal(Role::Pcse, Received, Completed);
        assert!(
            refusal.contains("on-hold, accepted, rejected, cancelled"),
            "{refusal}"
        );
    }
}
