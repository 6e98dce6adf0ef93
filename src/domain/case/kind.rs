//! The kinds of case, each with its code, what it needs when raised, and how long the NBO has.

use std::collections::BTreeMap;

/// One kind of case (a code of the `case-kind` CodeSystem).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CaseKind {
    DuplicateNhsNumber,
    ConfusedRecord,
    IncorrectDemographics,
    IncorrectDeathStatus,
    ChangeOfIdentity,
    SensitiveFlag,
    NhsNumberAllocation,
    CivilRegistration,
}

/// What a kind asks of a new case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Patients {
    /// `for` the patient, and another NHS number (`input` other-nhs-number), different.
    Two,
    /// `for` the patient, another NHS number optional (a confused record may name it).
    OneOrTwo,
    /// `for` the patient.
    One,
    /// `for` optional: a person who has no NHS number yet.
    NoneOrOne,
}

/// `(kind, code, display, default days to resolve, patients, definition)`.
pub const KINDS: &[(CaseKind, &str, &str, u32, Patients, &str)] = &[
    (CaseKind::DuplicateNhsNumber, "duplicate-nhs-number", "Duplicate NHS number", 70, Patients::Two,
     "A patient has two NHS numbers: the records are to be merged (up to 10 weeks)."),
    (CaseKind::ConfusedRecord, "confused-record", "Confused record", 70, Patients::OneOrTwo,
     "A record holds another patient's details, or the patient is registered at the wrong practice (up to 10 weeks)."),
    (CaseKind::IncorrectDemographics, "incorrect-demographics", "Incorrect demographics", 28, Patients::One,
     "A wrong gender, birth date or other detail the practice cannot correct itself."),
    (CaseKind::IncorrectDeathStatus, "incorrect-death-status", "Incorrect death status", 14, Patients::One,
     "A patient wrongly recorded as dead."),
    (CaseKind::ChangeOfIdentity, "change-of-identity", "Change of identity", 56, Patients::One,
     "Adoption, gender re-assignment or protection: a new identity under a new NHS number."),
    (CaseKind::SensitiveFlag, "sensitive-flag", "Sensitive flag", 14, Patients::One,
     "The record's confidentiality (the 'S' flag) is to be set or removed."),
    (CaseKind::NhsNumberAllocation, "nhs-number-allocation", "NHS number allocation", 14, Patients::NoneOrOne,
     "A person needs an NHS number the practice could not have allocated."),
    (CaseKind::CivilRegistration, "civil-registration", "Civil registration", 28, Patients::NoneOrOne,
     "A birth, death or other civil registration that could not be processed automatically."),
];

impl CaseKind {
    fn row(
        self,
    ) -> &'static (
        CaseKind,
        &'static str,
        &'static str,
        u32,
        Patients,
        &'static str,
    ) {
        KINDS
            .iter()
            .find(|r| r.0 == self)
            .expect("every kind is in the table")
    }

    pub fn code(self) -> &'static str {
        self.row().1
    }

    pub fn display(self) -> &'static str {
        self.row().2
    }

    pub fn patients(self) -> Patients {
        self.row().4
    }

    pub fn definition(self) -> &'static str {
        self.row().5
    }

    pub fn parse(code: &str) -> Option<CaseKind> {
        KINDS.iter().find(|r| r.1 == code).map(|r| r.0)
    }

    pub fn all() -> impl Iterator<Item = CaseKind> {
        KINDS.iter().map(|r| r.0)
    }
}

/// How many days each kind of case has from logging to its due date: the table's defaults,
/// overridden per kind by configuration (`serve --case-due duplicate-nhs-number=49`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueDays(BTreeMap<CaseKind, u32>);

impl Default for DueDays {
    fn default() -> Self {
        DueDays(KINDS.iter().map(|r| (r.0, r.3)).collect())
    }
}

impl DueDays {
    /// The defaults with `overrides` (`code=days`) applied.
    pub fn with(overrides: &[String]) -> Result<DueDays, String> {
        let mut due = DueDays::default();
        for o in overrides {
            let (code, days) = o
                .split_once('=')
                .ok_or_else(|| format!("'{o}' is not KIND=DAYS"))?;
            let kind = CaseKind::parse(code).ok_or_else(|| {
                let known: Vec<&str> = KINDS.iter().map(|r| r.1).collect();
                format!("unknown case kind '{code}' (known: {})", known.join(", "))
            })?;
            let days: u32 = days
                .parse()
                .ok()
                .filter(|d| (1..=3650).contains(d))
                .ok_or_else(|| format!("'{days}' is not a number of days from 1 to 3650"))?;
            due.0.insert(kind, days);
        }
        Ok(due)
    }

    pub fn days(&self, kind: CaseKind) -> u32 {
        self.0[&kind]
    }
}

/// The `case-kind` CodeSystem as the service publishes it (`GET /CodeSystem/case-kind`), with
/// each kind's default days to resolve as a property.
pub fn code_system(due: &DueDays) -> serde_json::Value {
    let concepts: Vec<serde_json::Value> = KINDS
        .iter()
        .map(|r| {
            serde_json::json!({
                "code": r.1,
                "display": r.2,
                "definition": r.5,
                "property": [{"code": "days-to-resolve", "valueInteger": due.days(r.0)}],
            })
        })
        .collect();
    serde_json::json!({
        "resourceType": "CodeSystem",
        "id": "case-kind",
        "url": super::CASE_KIND_SYSTEM,
        "name": "CaseKind",
        "title": "Kinds of data-quality case",
        "status": "active",
        "content": "complete",
        "caseSensitive": true,
        "count": concepts.len(),
        "property": [{"code": "days-to-resolve", "type": "integer",
                      "description": "Days from logging to the due date (Task.restriction.period.end)"}],
        "concept": concepts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_one_row_and_codes_round_trip() {
        for kind in CaseKind::all() {
            assert_eq!(CaseKind::parse(kind.code()), Some(kind));
        }
        assert_eq!(KINDS.len(), 8);
        assert_eq!(DueDays::default().days(CaseKind::DuplicateNhsNumber), 70);
        assert_eq!(DueDays::default().days(CaseKind::ConfusedRecord), 70);
    }

    #[test]
    fn due_days_are_configurable_per_kind() {
        let due = DueDays::with(&["sensitive-flag=7".into()]).unwrap();
        assert_eq!(due.days(CaseKind::SensitiveFlag), 7);
        assert_eq!(due.days(CaseKind::DuplicateNhsNumber), 70);
        assert!(DueDays::with(&["nope=7".into()]).is_err());
        assert!(DueDays::with(&["sensitive-flag=0".into()]).is_err());
        assert!(DueDays::with(&["sensitive-flag".into()]).is_err());
    }
}
