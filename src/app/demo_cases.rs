//! The demo database's open cases: two of each kind, raised days or weeks ago and moved on
//! through the same rules as the API's (`edit::check`), so the console shows a real queue —
//! some new, some waiting for a practice, some with the NBO, some overdue — at first start.

use serde_json::{json, Value};

use super::App;
use crate::domain::case::edit::{self, Editor};
use crate::domain::case::message::{Category, Message};
use crate::domain::case::task::NewCase;
use crate::domain::case::{CaseKind, OdsCode, Owner};
use crate::domain::{NhsNumber, PdsError, Role};
use crate::store::resource::{ResourceAudit, ResourceWrite};
use crate::store::Change;

/// `(kind, patient, other, days ago raised, how far it has got, description)`; patients are
/// indexes into the demo set.
type DemoCase = (
    CaseKind,
    Option<usize>,
    Option<usize>,
    i64,
    &'static str,
    &'static str,
);

const CASES: &[DemoCase] = &[
    (
        CaseKind::DuplicateNhsNumber,
        Some(8),
        Some(9),
        75,
        "accepted",
        "Jane Smith and Jayne Smyth look like one patient: same birth date, similar names",
    ),
    (
        CaseKind::ConfusedRecord,
        Some(0),
        Some(5),
        20,
        "on-hold",
        "A letter for another patient was filed on this record after a registration",
    ),
    (
        CaseKind::IncorrectDemographics,
        Some(7),
        None,
        12,
        "received",
        "The birth date on the record differs from the patient's passport",
    ),
    (
        CaseKind::IncorrectDeathStatus,
        Some(3),
        None,
        30,
        "in-progress",
        "The patient attended the surgery this week but the record shows a death notice",
    ),
    (
        CaseKind::ChangeOfIdentity,
        Some(1),
        None,
        3,
        "requested",
        "Adoption order received: a new identity is needed",
    ),
    (
        CaseKind::SensitiveFlag,
        Some(6),
        None,
        9,
        "requested",
        "The patient has asked for their address to be protected",
    ),
    (
        CaseKind::NhsNumberAllocation,
        None,
        None,
        2,
        "requested",
        "A newborn registered with the practice has no NHS number yet",
    ),
    (
        CaseKind::CivilRegistration,
        Some(4),
        None,
        40,
        "accepted",
        "A death registration could not be matched automatically",
    ),
    (
        CaseKind::DuplicateNhsNumber,
        Some(20),
        Some(21),
        50,
        "received",
        "Registered twice after moving house: two NHS numbers on the practice system",
    ),
    (
        CaseKind::ConfusedRecord,
        Some(22),
        None,
        66,
        "accepted",
        "Test results of another patient appear on this record",
    ),
    (
        CaseKind::IncorrectDemographics,
        Some(23),
        None,
        35,
        "in-progress",
        "The gender on the record is not the one the patient gave",
    ),
    (
        CaseKind::IncorrectDeathStatus,
        Some(24),
        None,
        1,
        "requested",
        "The record shows an informal death notice; the patient rang the surgery today",
    ),
    (
        CaseKind::ChangeOfIdentity,
        Some(25),
        None,
        18,
        "received",
        "Gender re-assignment: the patient has asked for a new NHS number",
    ),
    (
        CaseKind::SensitiveFlag,
        Some(26),
        None,
        16,
        "accepted",
        "Court order: the patient's whereabouts must not be disclosed",
    ),
    (
        CaseKind::NhsNumberAllocation,
        None,
        None,
        6,
        "received",
        "A patient arrived from overseas and has no NHS number",
    ),
    (
        CaseKind::CivilRegistration,
        Some(27),
        None,
        10,
        "requested",
        "A birth registration names a different family name than the record",
    ),
];

/// The moves from `requested` to `status`, each `(status, note)`.
fn path_to(status: &str) -> Vec<(&'static str, Option<&'static str>)> {
    let mut steps = Vec::new();
    if status == "requested" {
        return steps;
    }
    steps.push(("received", None));
    if status == "on-hold" {
        steps.push((
            "on-hold",
            Some("Please send the date the letter was filed and its sender"),
        ));
        return steps;
    }
    if status == "received" {
        return steps;
    }
    steps.push(("accepted", None));
    if status == "in-progress" {
        steps.push(("in-progress", None));
    }
    steps
}

fn instant(t: time::OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .expect("RFC 3339")
}

impl App {
    /// Writes the demo cases (after the demo patients), each version as its own change.
    pub async fn insert_demo_cases(&self) -> Result<usize, PdsError> {
        let numbers = crate::demo::nhs_numbers();
        let now = time::OffsetDateTime::now_utc();
        for (i, (kind, patient, other, age, status, description)) in CASES.iter().enumerate() {
            let nhs = |i: &Option<usize>| i.map(|i| numbers[i]);
            let (patient, other): (Option<NhsNumber>, Option<NhsNumber>) =
                (nhs(patient), nhs(other));
            let reach = self
                .reach(&patient.into_iter().chain(other).collect::<Vec<_>>())
                .await?;
            let requester = reach
                .first()
                .and_then(|r| OdsCode::parse(r).ok())
                .unwrap_or_else(|| OdsCode::parse("Y12345").expect("an ODS code"));
            let case = NewCase {
                kind: *kind,
                patient,
                other,
                requester: requester.clone(),
                description: description.to_string(),
                evidence: vec![],
            };
            let raised = now - time::Duration::days(*age);
            let due = raised.date() + time::Duration::days(i64::from(self.case_due.days(*kind)));
            let id = format!("demo-case-{}", i + 1);
            let at = instant(raised);
            let mut doc = case.to_task(&id, &at, due);
            if let (None, CaseKind::NhsNumberAllocation) = (patient, kind) {
                doc["input"] = json!([{"type": crate::domain::case::task::part_type(crate::domain::case::part::EVIDENCE),
                    "valueString": "Born 2026-11-28; registered by the parents at the practice"}]);
            }
            let audit = |op: &str, role: Role, at: &str| ResourceAudit {
                at: at.to_string(),
                subject: "demo".into(),
                role: role.name().into(),
                ods: (role == Role::Practice).then(|| requester.to_string()),
                request_id: format!("demo-{id}-{op}"),
                correlation_id: None,
                operation: op.into(),
                patch: None,
            };
            let mut version = super::case::task_version(
                &id,
                1,
                doc.clone(),
                reach.clone(),
                audit("create", Role::Practice, &at),
            )?;
            let mut write = ResourceWrite::create(version.clone());
            let mut question = None;
            for (step, (to, note)) in path_to(status).into_iter().enumerate() {
                let when = instant(raised + time::Duration::hours(20 * (step as i64 + 1)));
                let role = if to == "in-progress" {
                    Role::BackOffice
                } else {
                    Role::Pcse
                };
                let mut after: Value = doc.clone();
                after["status"] = json!(to);
                if let Some(n) = note {
                    after["note"] = json!([{"text": n}]);
                    if to == "on-hold" {
                        question = Some((n, when.clone()));
                    }
                }
                let editor = Editor {
                    role,
                    ods: None,
                    subject: "demo",
                    now: &when,
                };
                let next = edit::check(&doc, &after, &editor, version.version + 1)?;
                doc = next.doc;
                let nv = super::case::task_version(
                    &id,
                    version.version + 1,
                    doc.clone(),
                    reach.clone(),
                    audit(&format!("patch-{}", step + 1), role, &when),
                )?;
                // every version is kept: write the earlier ones, then chain on
                self.write_demo(write).await?;
                write = ResourceWrite::update(&version, nv.clone());
                version = nv;
            }
            self.write_demo(write).await?;
            // the practice was sent the question, as the API sends it
            if let Some((text, when)) = question {
                let msg = Message {
                    category: Category::InformationRequest,
                    recipient: &requester,
                    subject: patient,
                    about: Some(&id),
                    sender: Owner::Pcse,
                    text,
                    actions: &[],
                };
                let mid = format!("demo-message-{}", i + 1);
                let v = super::case::message_version(
                    &mid,
                    msg.to_doc(&mid, &when),
                    1,
                    audit("create-message", Role::Pcse, &when),
                );
                self.write_demo(ResourceWrite::create(v)).await?;
            }
        }
        Ok(CASES.len())
    }

    async fn write_demo(&self, write: ResourceWrite) -> Result<(), PdsError> {
        let change = Change {
            resources: vec![write],
            ..Change::default()
        };
        self.store.commit(change).await?;
        Ok(())
    }
}
