//! Who is calling, as far as PDS rules care: the four PDS-style access modes (application-
//! restricted, healthcare worker, patient, and the National Back Office), and the two roles of
//! the case work (a GP practice, Primary Care Support England).

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Application-restricted access: read only (GET, single-result search).
    ApplicationRestricted,
    /// Healthcare worker (CIS2): read and ordinary updates under the PDS rules.
    HealthcareWorker,
    /// National Back Office: everything, including corrections PDS does not offer publicly.
    BackOffice,
    /// GP practice staff (the token names the practice's ODS code): raise incidents, read their
    /// own cases and messages, read patients as a healthcare worker does; change no record.
    Practice,
    /// Primary Care Support England: triage every case and pass it to the NBO; read patients
    /// as a healthcare worker does; change no record.
    Pcse,
    /// Patient access (NHS login): the patient the token names reads and updates their own
    /// record only, within PDS's patient-access rules (the token carries the NHS number and the
    /// vector of trust, see [`crate::auth::PatientAccess`]).
    Patient,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::ApplicationRestricted,
        Role::HealthcareWorker,
        Role::BackOffice,
        Role::Practice,
        Role::Pcse,
        Role::Patient,
    ];

    /// The name used on the command line, in tokens' documentation and in errors.
    pub fn name(self) -> &'static str {
        match self {
            Role::ApplicationRestricted => "application-restricted",
            Role::HealthcareWorker => "healthcare-worker",
            Role::BackOffice => "back-office",
            Role::Practice => "practice",
            Role::Pcse => "pcse",
            Role::Patient => "patient",
        }
    }

    /// The case-work roles read patients but change none through the PDS routes. (A patient
    /// changes only their own record, within the patient-access rules: see
    /// `app::require_own_record` and `domain::patient_access`.)
    pub fn changes_patients(self) -> bool {
        matches!(self, Role::HealthcareWorker | Role::BackOffice)
    }

    pub fn is_back_office(self) -> bool {
        self == Role::BackOffice
    }

    /// Whether this role sees restricted (sensitive) records unredacted.
    pub fn sees_restricted(self) -> bool {
        self == Role::BackOffice
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| format!("unknown role '{s}' (expected application-restricted, healthcare-worker, back-office, practice, pcse or patient)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for r in Role::ALL {
            assert_eq!(r.name().parse::<Role>(), Ok(r));
        }
        assert!("admin".parse::<Role>().is_err());
    }
}
