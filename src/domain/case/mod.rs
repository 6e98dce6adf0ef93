//! Case work: a GP practice's data-quality incident, triaged by Primary Care Support England
//! (PCSE) and resolved by the National Back Office (NBO), as FHIR R4 `Task`s; what the practice
//! is told, as `Communication`s. Pure: documents in, documents out, no I/O.
//!
//! The rules are tables: the kinds of case with their due dates ([`KINDS`]), and who may move
//! a case from which status to which ([`TRANSITIONS`]).

pub mod edit;
pub mod kind;
pub mod lifecycle;
pub mod message;
pub mod ods;
pub mod query;
pub mod task;

pub use kind::{CaseKind, DueDays, KINDS};
pub use lifecycle::{Needs, Status, TRANSITIONS};
pub use ods::OdsCode;

/// The CodeSystem of case kinds the service publishes (served at `/CodeSystem/case-kind`).
pub const CASE_KIND_SYSTEM: &str = "urn:pds-facade:fhir:CodeSystem:case-kind";
/// The CodeSystem of what a case's `input` and `output` entries are.
pub const CASE_PART_SYSTEM: &str = "urn:pds-facade:fhir:CodeSystem:case-part";
/// Who owns a case: `pcse` or `nbo`.
pub const CASE_OWNER_SYSTEM: &str = "urn:pds-facade:fhir:CodeSystem:case-owner";
/// The kinds of message the service sends practices.
pub const MESSAGE_CATEGORY_SYSTEM: &str = "urn:pds-facade:fhir:CodeSystem:case-message";
/// Organisation Data Service codes (GP practices).
pub const ODS_SYSTEM: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
/// NHS numbers.
pub const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
/// The X-Request-ID of the change an output entry records (its audit entry's key).
pub const REQUEST_ID_SYSTEM: &str = "urn:pds-facade:fhir:Id:request-id";

/// The parts of a case (`input` / `output` type codes, [`CASE_PART_SYSTEM`]).
pub mod part {
    /// Input: the other NHS number of a duplicate or confused record.
    pub const OTHER_NHS_NUMBER: &str = "other-nhs-number";
    /// Input: the practice's evidence (text).
    pub const EVIDENCE: &str = "evidence";
    /// Output: a correction applied for the case.
    pub const CORRECTION: &str = "correction";
    /// Output: the NBO's resolution, on completion.
    pub const RESOLUTION: &str = "resolution";
    /// Output: a follow-on action the practices concerned must take, on completion.
    pub const FOLLOW_ON_ACTION: &str = "follow-on-action";
}

/// Who owns a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    Pcse,
    Nbo,
}

impl Owner {
    pub fn code(self) -> &'static str {
        match self {
            Owner::Pcse => "pcse",
            Owner::Nbo => "nbo",
        }
    }

    pub fn display(self) -> &'static str {
        match self {
            Owner::Pcse => "Primary Care Support England",
            Owner::Nbo => "National Back Office",
        }
    }

    pub fn parse(code: &str) -> Option<Owner> {
        [Owner::Pcse, Owner::Nbo]
            .into_iter()
            .find(|o| o.code() == code)
    }

    /// The `owner` reference of a Task.
    pub fn reference(self) -> serde_json::Value {
        serde_json::json!({
            "type": "Organization",
            "identifier": {"system": CASE_OWNER_SYSTEM, "value": self.code()},
            "display": self.display(),
        })
    }
}
